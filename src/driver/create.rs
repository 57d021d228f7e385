//! Create and Remove: a volume comes into the table and the state file,
//! and goes out of them. Each either happens whole or is undone: a failed
//! start or write leaves no volume, a failed write leaves it as it was.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::table::{Entry, Phase, Supervised};
use super::{Driver, DriverError};
use crate::config::Lifecycle;
use crate::name::VolumeName;
use crate::options::{BackendKind, VolumeOptions};
use crate::state::{Setup, StageRecord, VolumeRecord};

impl Driver {
    pub async fn create(
        &self,
        name: &str,
        opts: BTreeMap<String, String>,
    ) -> Result<(), DriverError> {
        self.create_at(name, None, opts).await
    }

    /// Creates a volume that mounts at the staging path of `stage` if
    /// given (left in place when the volume goes), else at its own mount
    /// point below the mount root.
    pub(super) async fn create_at(
        &self,
        name: &str,
        stage: Option<StageRecord>,
        opts: BTreeMap<String, String>,
    ) -> Result<(), DriverError> {
        let name = VolumeName::parse(name)?;
        let at = stage.as_ref().map(|s| s.staging_path.clone());
        let mount_point = at.clone().unwrap_or_else(|| self.mount_point(&name));
        let bad = |source| DriverError::Options {
            name: name.to_string(),
            source,
        };
        let options = VolumeOptions::parse(&opts).map_err(bad)?;
        let kind = options.kind.unwrap_or(self.config.default_type);
        self.check_policy(&name, &mount_point, &options, kind)
            .map_err(bad)?;
        if kind == BackendKind::Rclone {
            // For Status; the operator's rclone may be older than an option needs.
            let version = self.versions.rclone().await;
            tracing::debug!(volume = %name, rclone = %version, "rclone version");
        }
        let record = VolumeRecord {
            setup: Setup::Valid {
                backend: kind,
                options,
            },
            created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            mount_ids: Default::default(),
            devices: Vec::new(),
            stage,
        };
        loop {
            let taken = self
                .table()
                .entries
                .get(&name)
                .map(|e| (e.phase.stored(), e.busy.clone()));
            match taken {
                // An existing volume makes Create a no-op, as for Docker's
                // local driver.
                Some((true, _)) => return Ok(()),
                // Someone else is creating or removing this name: look
                // again once they are done.
                Some((false, busy)) => {
                    let _wait = busy.lock_owned().await;
                    continue;
                }
                None => {}
            }
            let process = self.process(&name, &mount_point, &record)?;
            let handle = process.handle.clone();
            let mut entry = Entry::new(
                record.clone(),
                mount_point.clone(),
                Phase::Creating { handle },
            );
            entry.given_mount_point = at.is_some();
            let guard = entry
                .busy
                .clone()
                .try_lock_owned()
                .expect("a new lock is free");
            {
                let mut table = self.table();
                if table.entries.contains_key(&name) {
                    // Taken while this one was built.
                    continue;
                }
                table.entries.insert(name.clone(), entry);
            }
            let result = self.finish_create(&name, process).await;
            drop(guard);
            return result;
        }
    }

    async fn finish_create(
        &self,
        name: &VolumeName,
        process: Supervised,
    ) -> Result<(), DriverError> {
        let handle = process.handle.clone();
        let started = match self.config.lifecycle {
            Lifecycle::Volume => handle.start().await,
            Lifecycle::Mount => Ok(()),
        };
        let result = match started {
            Ok(()) => self.store_created(name, process).await,
            Err(source) => Err(DriverError::Process {
                name: name.to_string(),
                source,
            }),
        };
        if let Err(e) = &result {
            tracing::warn!(volume = %name, error = %e, "create failed; nothing kept");
            handle.stop().await;
            let removed = self.table().entries.remove(name);
            if let Some(entry) = removed.as_ref().filter(|e| !e.given_mount_point) {
                self.remove_mount_point(&entry.mount_point);
            }
            if removed.is_some_and(|e| e.phase.stored()) {
                let snapshot = self.table().snapshot(&self.store);
                self.save_after_rollback(snapshot).await;
            }
        } else {
            tracing::info!(volume = %name, "created");
        }
        result
    }

    /// Makes a started volume ready, and stores it.
    async fn store_created(
        &self,
        name: &VolumeName,
        process: Supervised,
    ) -> Result<(), DriverError> {
        let snapshot = {
            let mut table = self.table();
            table.get_mut(name)?.phase = Phase::Ready(process);
            table.snapshot(&self.store)
        };
        Ok(self.save(snapshot).await?)
    }

    pub async fn remove(&self, name: &str) -> Result<(), DriverError> {
        let name = VolumeName::parse(name)?;
        // The state forgets the volume first: if that cannot be written the
        // volume is left whole and running. A crash after it leaves a tool
        // that the next start kills (see `leftovers`).
        let (_guard, (was, made, snapshot)) = self
            .lock(&name, |table| {
                let entry = table.get_mut(&name)?;
                let count = entry.record.mount_ids.len();
                if count > 0 {
                    return Err(DriverError::InUse {
                        name: name.to_string(),
                        count,
                    });
                }
                let handle = entry.phase.handle().cloned();
                let was = std::mem::replace(&mut entry.phase, Phase::Removing { handle });
                let made = (!entry.given_mount_point).then(|| entry.mount_point.clone());
                Ok((was, made, table.snapshot(&self.store)))
            })
            .await?;
        if let Err(e) = self.save(snapshot).await {
            let snapshot = {
                let mut table = self.table();
                table.get_mut(&name)?.phase = was;
                table.snapshot(&self.store)
            };
            self.save_after_rollback(snapshot).await;
            return Err(e.into());
        }
        if let Some(handle) = was.handle() {
            handle.stop().await;
        }
        if let Some(mount_point) = made {
            self.remove_mount_point(&mount_point);
        }
        self.table().entries.remove(&name);
        tracing::info!(volume = %name, "removed");
        Ok(())
    }
}
