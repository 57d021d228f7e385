//! Taking over from an earlier run and handing over at shutdown: stored
//! volumes come back into the table (refused ones too, with their reason),
//! their processes start in parallel, and at shutdown every one stops.

use std::time::SystemTime;

use super::leftovers;
use super::table::{Entry, Phase};
use super::Driver;
use crate::config::Lifecycle;
use crate::name::VolumeName;
use crate::options::BackendKind;
use crate::state::{Setup, Volumes};
use crate::supervisor::SupervisorHandle;

/// The volumes whose process [`Driver::restore`] starts.
pub struct Restore {
    starts: Vec<(VolumeName, SupervisorHandle)>,
}

impl Driver {
    /// Takes over from an earlier run: clears what it left under the mount
    /// root (see [`leftovers::clean_up`]) and puts every stored volume in
    /// the table. Called once the socket is ours and before serving, so no
    /// request finds a stored volume missing or races the clean-up. The
    /// processes are started by [`Driver::restore`].
    pub async fn recover(&self, volumes: Volumes) -> Restore {
        let stored = volumes.keys().cloned().collect();
        leftovers::clean_up(&self.config.mount_root, &stored, self.mounts.as_ref()).await;
        let rclone = volumes.values().any(|record| {
            matches!(&record.setup, Setup::Valid { backend, .. } if *backend == BackendKind::Rclone)
        });
        if rclone {
            // Its version says how rclone volumes are built (see build.rs).
            let version = self.versions.rclone().await;
            tracing::debug!(rclone = %version, "rclone version");
        }
        let mut starts = Vec::new();
        let mut entries = Vec::new();
        for (name, record) in volumes {
            let wanted = self.config.lifecycle == Lifecycle::Volume || !record.mount_ids.is_empty();
            // A volume created before its options were denied does not run
            // them again; one that cannot be built stays listed. Neither is
            // dropped: the state file keeps every stored volume.
            // A CSI stage mounts where it was staged.
            let given = record.stage.as_ref().map(|s| s.staging_path.clone());
            let mount_point = given.clone().unwrap_or_else(|| self.mount_point(&name));
            let built = match &record.setup {
                Setup::Unaccepted { reason, .. } => Err(reason.clone()),
                Setup::Valid { backend, options } => {
                    match self.check_policy(&name, &mount_point, options, *backend) {
                        Ok(()) => self
                            .process(&name, &mount_point, &record)
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                }
            };
            let phase = match built {
                Ok(process) => {
                    if wanted {
                        starts.push((name.clone(), process.handle.clone()));
                    }
                    Phase::Ready(process)
                }
                Err(reason) => {
                    tracing::error!(volume = %name, %reason, "stored volume refused under the current settings");
                    let since = SystemTime::now();
                    Phase::Refused { reason, since }
                }
            };
            let mut entry = Entry::new(record, mount_point, phase);
            entry.given_mount_point = given.is_some();
            entries.push((name, entry));
        }
        self.table().entries.extend(entries);
        Restore { starts }
    }

    /// Starts the processes of the volumes [`Driver::recover`] brought back,
    /// in parallel. A volume whose start fails stays listed and is retried
    /// by its supervisor.
    pub async fn restore(&self, restore: Restore) {
        let rclone =
            self.table().entries.values().any(|e| {
                e.record.setup.backend_name() == crate::options::BackendKind::Rclone.as_str()
            });
        if rclone {
            self.versions.rclone().await;
        }
        let mut starts = tokio::task::JoinSet::new();
        for (name, handle) in restore.starts {
            starts.spawn(async move {
                if let Err(e) = handle.restore().await {
                    tracing::warn!(volume = %name, error = %e, "restore failed; retrying in the background");
                }
            });
        }
        while starts.join_next().await.is_some() {}
    }

    /// Stops every volume's process (plugin shutdown); the state is kept.
    pub async fn shutdown(&self) {
        let handles: Vec<_> = self
            .table()
            .entries
            .values()
            .filter_map(|e| e.phase.handle().cloned())
            .collect();
        let mut stops = tokio::task::JoinSet::new();
        for handle in handles {
            stops.spawn(async move { handle.stop().await });
        }
        while stops.join_next().await.is_some() {}
        let snapshot = self.table().snapshot(&self.store);
        if let Err(e) = self.save(snapshot).await {
            tracing::error!(error = %e, "cannot save state at shutdown");
        }
    }
}
