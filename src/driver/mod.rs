//! The volume driver: what each call (Create, Remove, Mount, Unmount, Get,
//! List, restore) does to the volume table, the state file and the
//! volumes' supervisors. It speaks in volumes, never in HTTP or gRPC.

mod build;
mod create;
mod csi;
mod leftovers;
mod mount;
mod restore;
mod scrape;
mod status;
mod table;
#[cfg(test)]
pub(crate) mod tests;
mod versions;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, OwnedMutexGuard};

use crate::backend::{BackendError, Server};
use crate::config::Config;
use crate::connections::{self, Connections};
use crate::mounts::{self, MountTable};
use crate::name::{NameError, VolumeName};
use crate::options::OptionError;
use crate::pacing::Gate;
use crate::reattach::{self, Reattacher};
use crate::state::{self, StateError, StateStore, Volumes};
use crate::supervisor::{Launcher, ProcessError};

pub use csi::staged;
pub use restore::Restore;
pub use status::{ProcessReport, VolumeInfo, VolumeStatus};
use table::{Snapshot, Table};

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("volume {name}: {source}")]
    Options { name: String, source: OptionError },
    #[error("volume {name}: {source}")]
    Backend { name: String, source: BackendError },
    #[error("no such volume: {0}")]
    NotFound(String),
    #[error("volume {name} is in use by {count} container(s); stop them before removing it")]
    InUse { name: String, count: usize },
    #[error("volume {name}: {source}")]
    Process { name: String, source: ProcessError },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("volume {name} cannot be used: {reason}; remove it, or change the plugin's settings and restart netfs")]
    Refused { name: String, reason: String },
}

/// What the driver acts on besides its settings: how volumes' tools run,
/// the kernel's mount table, and how the state reaches the disk. Unit
/// tests put scripted and recording ones here.
pub(crate) struct Seams {
    pub launcher: Launcher,
    pub mounts: Arc<dyn MountTable>,
    pub writer: state::Writer,
    /// Where re-attach looks for holders and attaches (the kernel's and
    /// the host's `/proc` unless given).
    pub reattach: Option<Arc<dyn reattach::Host>>,
}

impl Seams {
    fn real() -> Self {
        Self {
            launcher: Launcher::processes(),
            mounts: Arc::new(mounts::Kernel),
            writer: Arc::new(state::write_atomic),
            reattach: None,
        }
    }
}

pub struct Driver {
    config: Arc<Config>,
    store: StateStore,
    table: Mutex<Table>,
    /// Start-ups take turns per server, across all volumes.
    pacing: Arc<Gate<Server>>,
    /// Shared ssh connections, when sharing is on.
    connections: Option<Arc<Connections>>,
    launcher: Launcher,
    mounts: Arc<dyn MountTable>,
    /// Puts remounted volumes back into running containers (if on).
    reattacher: Option<Arc<Reattacher>>,
    /// Told when a volume's mounts got new device numbers to keep.
    devices_changed: Arc<Notify>,
    /// The tools' own versions, for Status.
    versions: versions::Versions,
}

impl Driver {
    /// Loads the state file; refuses to start on a corrupt one.
    pub fn open(config: Arc<Config>) -> Result<(Self, Volumes), StateError> {
        Self::open_with(config, Seams::real())
    }

    pub(crate) fn open_with(
        config: Arc<Config>,
        seams: Seams,
    ) -> Result<(Self, Volumes), StateError> {
        let volumes = state::load(&config.state_file)?;
        let store = StateStore::with_writer(config.state_file.clone(), seams.writer);
        let pacing = Arc::new(Gate::new(config.max_startups_per_endpoint));
        let sharing = config.share_ssh_connections;
        let sessions = sharing.then_some(config.ssh_sessions_per_connection);
        let connections = sessions.and_then(|sessions| {
            let settings = connections::Settings {
                ssh: "ssh".into(),
                dir: control_dir(&config.state_file),
                sessions,
                connect_timeout: config.mount_timeout,
                stop_timeout: config.stop_timeout,
                mark_root: config.mount_root.clone(),
                pacing: pacing.clone(),
            };
            let dir = settings.dir.clone();
            Connections::new(settings)
                .inspect_err(|e| {
                    tracing::error!(
                        dir = %dir.display(), error = %e,
                        "cannot make the directory of the ssh control sockets; \
                         every volume gets a connection of its own"
                    )
                })
                .ok()
        });
        make_rc_dir(&rc_dir(&config.state_file));
        let devices_changed = Arc::new(Notify::new());
        let reattacher = config.reattach.then(|| {
            let host = seams
                .reattach
                .unwrap_or_else(|| Arc::new(reattach::Kernel::new(config.host_proc.clone())));
            Arc::new(Reattacher::new(host, devices_changed.clone()))
        });
        let driver = Self {
            reattacher,
            devices_changed,
            connections,
            pacing,
            config,
            store,
            table: Mutex::new(Table::default()),
            launcher: seams.launcher,
            mounts: seams.mounts,
            versions: Default::default(),
        };
        Ok((driver, volumes))
    }

    /// The mount table this driver works on, for what mounts beside its
    /// volumes (the CSI node's binds).
    pub fn mount_table(&self) -> Arc<dyn MountTable> {
        self.mounts.clone()
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes a snapshot of the table.
    async fn save(&self, snapshot: Result<Snapshot, StateError>) -> Result<(), StateError> {
        let Snapshot { generation, doc } = snapshot?;
        self.store.save(generation, doc).await
    }

    /// Keeps the state file's device numbers up to date after remounts
    /// (what a later netfs re-attaches); runs until dropped.
    pub async fn keep_devices_saved(&self) {
        loop {
            self.devices_changed.notified().await;
            let snapshot = self.table().snapshot(&self.store);
            if let Err(e) = self.save(snapshot).await {
                tracing::warn!(error = %e, "cannot save the volumes' device numbers");
            }
        }
    }

    /// Writes a snapshot taken after a failed write was undone in memory:
    /// another call's write may have caught the change meanwhile (best
    /// effort: the disk may still be full; the next change retries).
    async fn save_after_rollback(&self, snapshot: Result<Snapshot, StateError>) {
        if let Err(e) = self.save(snapshot).await {
            tracing::warn!(error = %e, "cannot write the state back after undoing a change");
        }
    }

    /// Waits for one volume's lock, then runs `f` on the table in the same
    /// hold of the table's lock that checks the volume is (still) stored.
    async fn lock<T>(
        &self,
        name: &VolumeName,
        f: impl FnOnce(&mut Table) -> Result<T, DriverError>,
    ) -> Result<(OwnedMutexGuard<()>, T), DriverError> {
        // Any entry: a call waits for a Create or Remove under way.
        let busy = self.table().get_mut(name)?.busy.clone();
        let guard = busy.lock_owned().await;
        let mut table = self.table();
        table.stored(name)?;
        Ok((guard, f(&mut table)?))
    }

    pub fn path(&self, name: &str) -> Result<PathBuf, DriverError> {
        let name = VolumeName::parse(name)?;
        let table = self.table();
        Ok(table.stored(&name)?.mount_point.clone())
    }

    pub fn get(&self, name: &str) -> Result<VolumeInfo, DriverError> {
        let name = VolumeName::parse(name)?;
        let table = self.table();
        Ok(status::volume(
            &name,
            table.stored(&name)?,
            Some(&self.versions),
            self.reattacher.is_some(),
        ))
    }

    pub fn list(&self) -> Vec<VolumeInfo> {
        let table = self.table();
        table
            .entries
            .iter()
            .filter(|(_, e)| e.phase.stored())
            .map(|(n, e)| status::volume(n, e, None, false))
            .collect()
    }

    /// Removes an empty, unmounted mountpoint; never anything else.
    fn remove_mount_point(&self, path: &Path) {
        if let Err(e) = self.mounts.remove_mount_point(path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "mountpoint left in place");
            }
        }
    }
}

/// The directory of the shared connections' control sockets, beside the
/// state file (short, so the socket paths fit a socket address).
/// Makes the directory of rclone volumes' remote control sockets, for root
/// alone (the sockets take no password), at start: a volume's Create then
/// makes nothing outside its mountpoint.
fn make_rc_dir(dir: &Path) {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let made = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)));
    if let Err(e) = made {
        tracing::warn!(dir = %dir.display(), error = %e,
            "cannot make the directory of rclone's remote control sockets; \
             rclone volumes stop without waiting for their uploads");
    }
}

/// The directory of rclone volumes' remote control sockets.
fn rc_dir(state_file: &Path) -> PathBuf {
    state_dir(state_file).join("rclone-rc")
}

fn control_dir(state_file: &Path) -> PathBuf {
    state_dir(state_file).join("ssh-control")
}

fn state_dir(state_file: &Path) -> &Path {
    state_file.parent().unwrap_or(Path::new("/"))
}
