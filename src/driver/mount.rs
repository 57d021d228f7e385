//! Mount and Unmount: a container takes or lets go of a volume under a
//! mount ID. The IDs are stored before they count, and a write that fails
//! is undone, so memory and the state file agree on who holds a volume.

use std::path::PathBuf;

use super::table::Phase;
use super::{Driver, DriverError};
use crate::config::Lifecycle;
use crate::name::VolumeName;

impl Driver {
    /// Makes sure the volume is mounted and records `id` as using it;
    /// answers its mountpoint.
    pub async fn mount(&self, name: &str, id: &str) -> Result<PathBuf, DriverError> {
        let name = VolumeName::parse(name)?;
        let (_guard, handle) = self
            .lock(&name, |table| match &table.get_mut(&name)?.phase {
                Phase::Ready(process) => Ok(process.handle.clone()),
                Phase::Refused { reason, .. } => Err(DriverError::Refused {
                    name: name.to_string(),
                    reason: reason.clone(),
                }),
                Phase::Creating { .. } | Phase::Removing { .. } => {
                    Err(DriverError::NotFound(name.to_string()))
                }
            })
            .await?;
        handle
            .start()
            .await
            .map_err(|source| DriverError::Process {
                name: name.to_string(),
                source,
            })?;
        let generation = handle.status().generation;
        let (mount_point, new, snapshot) = {
            let mut table = self.table();
            let entry = table.get_mut(&name)?;
            let new = entry.record.mount_ids.insert(id.to_owned());
            if let Phase::Ready(process) = &mut entry.phase {
                process.mounted_at.insert(id.to_owned(), generation);
            }
            let mount_point = entry.mount_point.clone();
            (mount_point, new, table.snapshot(&self.store))
        };
        if let Err(e) = self.save(snapshot).await {
            // Docker does not Unmount a Mount that failed: an ID kept here
            // would hold the volume "in use" forever.
            if new {
                let (left, snapshot) = {
                    let mut table = self.table();
                    let entry = table.get_mut(&name)?;
                    entry.record.mount_ids.remove(id);
                    if let Phase::Ready(process) = &mut entry.phase {
                        process.mounted_at.remove(id);
                    }
                    let left = entry.record.mount_ids.len();
                    (left, table.snapshot(&self.store))
                };
                if left == 0 && self.config.lifecycle == Lifecycle::Mount {
                    handle.stop().await;
                }
                self.save_after_rollback(snapshot).await;
            }
            return Err(e.into());
        }
        Ok(mount_point)
    }

    pub async fn unmount(&self, name: &str, id: &str) -> Result<(), DriverError> {
        let name = VolumeName::parse(name)?;
        let (_guard, (handle, generation, left, snapshot)) = self
            .lock(&name, |table| {
                let entry = table.get_mut(&name)?;
                let known = entry.record.mount_ids.remove(id);
                let (handle, generation) = match &mut entry.phase {
                    Phase::Ready(process) => {
                        (Some(process.handle.clone()), process.mounted_at.remove(id))
                    }
                    _ => (None, None),
                };
                let left = entry.record.mount_ids.len();
                // An unknown ID changes nothing to write (Docker may retry).
                let snapshot = known.then(|| table.snapshot(&self.store));
                Ok((handle, generation, left, snapshot))
            })
            .await?;
        if let Some(snapshot) = snapshot {
            if let Err(e) = self.save(snapshot).await {
                // Undone like a failed Mount, so memory agrees with the disk:
                // Docker keeps the ID of an Unmount that failed and sends it
                // again at the container's next stop (or Mount, then Unmount).
                let snapshot = {
                    let mut table = self.table();
                    let entry = table.get_mut(&name)?;
                    entry.record.mount_ids.insert(id.to_owned());
                    if let (Phase::Ready(process), Some(g)) = (&mut entry.phase, generation) {
                        process.mounted_at.insert(id.to_owned(), g);
                    }
                    table.snapshot(&self.store)
                };
                self.save_after_rollback(snapshot).await;
                return Err(e.into());
            }
        }
        // Stopped only once the release is recorded: a refused Unmount
        // leaves the volume as it was, mounted.
        if left == 0 && self.config.lifecycle == Lifecycle::Mount {
            if let Some(handle) = handle {
                handle.stop().await;
            }
        }
        Ok(())
    }
}
