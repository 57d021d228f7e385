//! The driver's calls against a scripted tool, a recorded mount table and
//! a state writer that fails when told, on tokio's paused clock: rollbacks,
//! mount IDs, restore and concurrency, in milliseconds and without root.
//! The real tools, mounts and dockerd are the integration tests' job.

mod restore;
mod rollback;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;

use super::{Driver, DriverError, ProcessReport, Seams, VolumeStatus};
use crate::config::{Config, Lifecycle, RecoveryMode};
use crate::mounts::recorded::Recorded;
use crate::options::{BackendKind, MountOptions, Policy, ProcessOptions};
use crate::state::{self, Volumes};
use crate::supervisor::scripted::Scripted;
use crate::supervisor::Launcher;

/// A driver on a temporary directory, with the fakes it runs on.
struct Harness {
    dir: TempDir,
    lifecycle: Lifecycle,
    driver: Arc<Driver>,
    tool: Scripted,
    mounts: Arc<Recorded>,
    /// State writes fail while set (a full disk).
    fail_writes: Arc<AtomicBool>,
}

impl Harness {
    fn new(lifecycle: Lifecycle) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        Self::open(dir, lifecycle)
    }

    /// A driver on `dir`, reading the state file there: a restart.
    fn open(dir: TempDir, lifecycle: Lifecycle) -> Self {
        let mounts = Arc::new(Recorded::default());
        let tool = Scripted::mounting_in(mounts.clone());
        let fail_writes = Arc::new(AtomicBool::new(false));
        let fail = fail_writes.clone();
        let seams = Seams {
            launcher: Launcher::tool(tool.clone()),
            mounts: mounts.clone(),
            writer: Arc::new(move |path: &Path, bytes: &[u8]| {
                if fail.load(Ordering::SeqCst) {
                    return Err(io::Error::other("no space left on device (test)"));
                }
                state::write_atomic(path, bytes)
            }),
            reattach: None,
        };
        let (driver, _) = Driver::open_with(Arc::new(config(dir.path(), lifecycle)), seams)
            .expect("open the driver");
        let driver = Arc::new(driver);
        Self {
            dir,
            lifecycle,
            driver,
            tool,
            mounts,
            fail_writes,
        }
    }

    /// Shuts this driver down and opens another on the same directory.
    async fn restart(self) -> (Self, Volumes) {
        self.driver.shutdown().await;
        self.reopen()
    }

    /// Opens another driver on this one's directory, as after a crash.
    fn reopen(self) -> (Self, Volumes) {
        let restarted = Self::open(self.dir, self.lifecycle);
        let volumes = restarted.stored();
        (restarted, volumes)
    }

    fn fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }

    fn state_file(&self) -> PathBuf {
        self.dir.path().join("state.json")
    }

    fn mount_point(&self, name: &str) -> PathBuf {
        self.dir.path().join("volumes").join(name)
    }

    /// What the state file holds now.
    fn stored(&self) -> Volumes {
        state::load(&self.state_file()).expect("a good state file")
    }

    /// Names of the volumes in the state file.
    fn stored_names(&self) -> Vec<String> {
        self.stored().keys().map(|n| n.to_string()).collect()
    }

    /// The mount IDs the state file holds for `name`.
    fn stored_ids(&self, name: &str) -> Vec<String> {
        let volumes = self.stored();
        let (_, record) = volumes
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .expect("stored");
        record.mount_ids.iter().cloned().collect()
    }

    fn listed(&self) -> Vec<String> {
        self.driver.list().into_iter().map(|v| v.name).collect()
    }

    /// The Status `docker volume inspect` shows.
    fn status(&self, name: &str) -> VolumeStatus {
        let volume = self.driver.get(name).expect("the volume exists");
        volume.status.expect("a status")
    }

    /// What runs the volume, as its Status shows it.
    fn process(&self, name: &str) -> ProcessReport {
        self.status(name).process.expect("a process")
    }

    async fn create(&self, name: &str) -> Result<(), DriverError> {
        let opts = [("source".to_owned(), "u@h:/x".to_owned())];
        self.driver.create(name, opts.into()).await
    }
}

/// A driver's settings on `dir`, as the unit tests run it.
pub(crate) fn config(dir: &Path, lifecycle: Lifecycle) -> Config {
    Config {
        socket: dir.join("netfs.sock"),
        mount_root: dir.join("volumes"),
        state_file: dir.join("state.json"),
        default_type: BackendKind::Sshfs,
        mount_timeout: Duration::from_secs(20),
        stop_timeout: Duration::from_secs(5),
        health_interval: Duration::from_secs(2),
        mount_options: MountOptions::default(),
        process_options: ProcessOptions::default(),
        lifecycle,
        recovery: RecoveryMode::Restart,
        recovery_max_per_min: 5,
        command_binary: None,
        command_mount_option_flag: None,
        max_startups_per_endpoint: 5,
        policy: Policy::new(&[], &[], dir.join("keys")).expect("the default policy"),
        share_ssh_connections: false,
        reattach: false,
        host_proc: "/proc".into(),
        ssh_sessions_per_connection: 8,
        csi: None,
        metrics: None,
    }
}
