//! A scripted tool for unit tests of what runs volumes (the supervisor's
//! restart logic, the driver's calls): it mounts after [`MOUNTING`] of
//! tokio's clock, fails when told, and dies when killed. No process runs.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use super::child::Watch;
use super::tool::Tool;
use super::{ProcessError, ProcessSpec, Supervision, Tail};
use crate::mounts::recorded::Recorded;

/// How long the scripted tool takes to mount.
pub const MOUNTING: Duration = Duration::from_millis(10);

#[derive(Default)]
pub struct Script {
    pub spawns: u32,
    /// Runs that ended: stopped, or failed before mounting.
    pub ends: u32,
    /// The program is missing: spawning fails.
    pub missing: bool,
    /// Starts fail before mounting (the remote is down).
    pub refuse: bool,
}

#[derive(Clone, Default)]
pub struct Scripted {
    script: Arc<Mutex<Script>>,
    kill: Arc<Notify>,
    /// Where its mounts show, if a test looks at them; its mount point is
    /// then made as a real directory.
    mounts: Option<Arc<Recorded>>,
}

pub struct Run {
    pid: u32,
}

impl Scripted {
    /// A tool whose mounts show in `mounts`.
    pub fn mounting_in(mounts: Arc<Recorded>) -> Self {
        Self {
            mounts: Some(mounts),
            ..Self::default()
        }
    }

    pub fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Kills the running tool (it died unexpectedly).
    pub fn kill(&self) {
        self.kill.notify_one();
    }

    /// Runs started and not ended.
    pub fn running(&self) -> u32 {
        let script = self.script();
        script.spawns - script.ends
    }
}

impl Tool for Scripted {
    type Run = Run;

    fn spawn(&self, spec: &ProcessSpec) -> Result<Run, ProcessError> {
        let mut script = self.script();
        if script.missing {
            return Err(ProcessError::Spawn {
                program: "tool".into(),
                reason: "No such file or directory".into(),
            });
        }
        if self.mounts.is_some() {
            std::fs::create_dir_all(&spec.mount_point).map_err(|e| ProcessError::Mountpoint {
                path: spec.mount_point.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        script.spawns += 1;
        Ok(Run { pid: script.spawns })
    }

    fn pid(run: &Run) -> Option<u32> {
        Some(run.pid)
    }

    fn tail(_: &Run) -> Tail {
        Tail::default()
    }

    async fn wait_ready(
        &self,
        _: &mut Run,
        spec: &ProcessSpec,
        _: &Supervision,
        _: &mut Option<crate::pacing::Permit>,
    ) -> Result<(), ProcessError> {
        tokio::time::sleep(MOUNTING).await;
        let mut script = self.script();
        if script.refuse {
            script.ends += 1;
            return Err(ProcessError::Exited {
                program: "tool".into(),
                status: "exit status 1".into(),
                detail: ": Connection refused".into(),
            });
        }
        if let Some(mounts) = &self.mounts {
            mounts.mount(&spec.mount_point);
        }
        Ok(())
    }

    async fn watch(&self, _: &mut Run, spec: &ProcessSpec, _: Duration) -> Watch {
        self.kill.notified().await;
        self.end(spec);
        Watch::Died("tool exited unexpectedly (killed by signal 9, SIGKILL)".into())
    }

    async fn check_now(&self, _: &mut Run, _: &ProcessSpec) -> Option<String> {
        None
    }

    async fn stop(&self, _: &mut Run, spec: &ProcessSpec, _: &Supervision) {
        self.end(spec);
    }
}

impl Scripted {
    fn end(&self, spec: &ProcessSpec) {
        self.script().ends += 1;
        if let Some(mounts) = &self.mounts {
            mounts.unmount(&spec.mount_point);
        }
    }
}
