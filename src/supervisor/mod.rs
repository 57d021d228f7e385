//! One supervisor task per volume, spawned at its first start, owns that
//! volume's process (an actor); the rest of netfs talks to it through a
//! cloneable [`SupervisorHandle`]. The task starts the tool, waits until its
//! mount answers, restarts it on an unexpected exit or a dead mount, and
//! stops it on request. It knows nothing of Docker: mount IDs and the state
//! file are the driver's.

mod actor;
mod budget;
mod child;
mod error;
mod tool;
mod uploads;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::backend::{Endpoint, Invocation, Server};
use crate::config::RecoveryMode;
use crate::connections::{ConnKey, Connections, Master};
use crate::name::VolumeName;
use crate::pacing::Gate;
use crate::reattach::{ReattachStatus, Reattacher};

pub use child::{MARK_ROOT, MARK_VOLUME};
pub use error::{ProcessError, Tail};
#[cfg(test)]
pub(crate) mod scripted;

/// Where a volume's process is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcState {
    Stopped,
    Mounting,
    Mounted,
    Restarting,
    Failed,
}

impl ProcState {
    pub const ALL: [Self; 5] = [
        Self::Stopped,
        Self::Mounting,
        Self::Mounted,
        Self::Restarting,
        Self::Failed,
    ];

    /// The name Status and metrics show.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Mounting => "mounting",
            Self::Mounted => "mounted",
            Self::Restarting => "restarting",
            Self::Failed => "failed",
        }
    }
}

/// What `docker volume inspect` shows of the process; published on every change.
#[derive(Clone, Debug)]
pub struct ProcessStatus {
    pub state: ProcState,
    pub pid: Option<u32>,
    pub restarts: u32,
    /// When the last restart began (a crash or a dead mount before it).
    pub last_restart: Option<SystemTime>,
    pub since: SystemTime,
    pub last_error: Option<String>,
    /// Grows with every successful mount, so a mount ID taken at an older
    /// generation belongs to a container that still holds the old mount.
    pub generation: u64,
    /// The shared ssh connection it runs through, once it has one.
    pub connection: Option<Arc<Master>>,
    /// Device numbers of this volume's mounts that containers may hold:
    /// the live mount's, and dead ones not yet replaced (see `reattach`).
    pub devices: Vec<String>,
    /// What re-attaching into running containers did.
    pub reattach: ReattachStatus,
    /// How long the last successful mount took, from the tool's spawn
    /// until its mount answered.
    pub mount_duration: Option<Duration>,
}

impl ProcessStatus {
    fn new() -> Self {
        Self {
            state: ProcState::Stopped,
            pid: None,
            restarts: 0,
            last_restart: None,
            since: SystemTime::now(),
            last_error: None,
            generation: 0,
            connection: None,
            devices: Vec::new(),
            reattach: ReattachStatus::default(),
            mount_duration: None,
        }
    }
}

/// How a supervisor behaves; the same for every volume of a plugin.
#[derive(Clone, Debug)]
pub struct Supervision {
    pub mount_timeout: Duration,
    pub stop_timeout: Duration,
    pub recovery: RecoveryMode,
    pub max_restarts_per_min: u32,
    /// How often a running mount is probed for "transport endpoint is not connected".
    pub health_interval: Duration,
    /// Start-ups to one server take turns (shared by every volume).
    pub pacing: Arc<Gate<Server>>,
    /// Puts each new mount into the running containers that hold a dead
    /// one; `None` when the operator turned it off.
    pub reattach: Option<Arc<Reattacher>>,
}

/// One volume's process as the supervisor needs it.
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    pub name: VolumeName,
    pub mount_point: PathBuf,
    pub invocation: Invocation,
    /// Where the tool connects: its start-up waits for a turn there.
    pub endpoint: Option<Endpoint>,
    /// The shared ssh connection it runs through (sshfs with sharing on).
    pub shared: Option<Shared>,
    /// Device numbers of mounts of an earlier run containers may hold.
    pub devices: Vec<String>,
}

/// Where a volume finds its shared connection.
#[derive(Clone, Debug)]
pub struct Shared {
    pub pool: Arc<Connections>,
    pub key: ConnKey,
}

/// What the handle asks of a volume's supervisor task, each with its reply.
enum Order {
    Start(oneshot::Sender<Result<(), ProcessError>>),
    Restore(oneshot::Sender<Result<(), ProcessError>>),
    Stop(oneshot::Sender<()>),
}

/// Spawns a volume's supervisor task with the tool it runs: real processes
/// in netfs ([`Launcher::processes`]), a scripted tool in unit tests.
#[derive(Clone)]
pub struct Launcher(Arc<LaunchFn>);

type LaunchFn = dyn Fn(ProcessSpec, Supervision, mpsc::Receiver<Order>, watch::Sender<ProcessStatus>)
    + Send
    + Sync;

impl Launcher {
    pub fn processes() -> Self {
        Self(Arc::new(|spec, supervision, rx, status| {
            tokio::spawn(actor::run(tool::Processes, spec, supervision, rx, status));
        }))
    }

    #[cfg(test)]
    pub(crate) fn tool<T: tool::Tool + Clone>(tool: T) -> Self {
        Self(Arc::new(move |spec, supervision, rx, status| {
            tokio::spawn(actor::run(tool.clone(), spec, supervision, rx, status));
        }))
    }
}

/// A volume's supervisor. The task is spawned at the first start, so a
/// volume that is never mounted (lifecycle `mount`) costs no task and no
/// channels: with a thousand idle volumes that is most of netfs's memory.
#[derive(Clone)]
pub struct SupervisorHandle {
    lazy: Arc<Lazy>,
}

struct Lazy {
    spec: ProcessSpec,
    supervision: Supervision,
    launcher: Launcher,
    /// What status shows until the task runs.
    initial: ProcessStatus,
    task: OnceLock<Task>,
}

struct Task {
    tx: mpsc::Sender<Order>,
    status: watch::Receiver<ProcessStatus>,
}

impl SupervisorHandle {
    /// The volume's supervisor; neither the task nor the process starts yet.
    pub fn new(spec: ProcessSpec, supervision: Supervision, launcher: Launcher) -> Self {
        let mut initial = ProcessStatus::new();
        initial.devices = spec.devices.clone();
        let lazy = Lazy {
            spec,
            supervision,
            launcher,
            initial,
            task: OnceLock::new(),
        };
        Self {
            lazy: Arc::new(lazy),
        }
    }

    /// The task, spawned on first use (from within the runtime).
    fn task(&self) -> &Task {
        let lazy = &self.lazy;
        lazy.task.get_or_init(|| {
            let (tx, rx) = mpsc::channel(8);
            let (status_tx, status) = watch::channel(lazy.initial.clone());
            (lazy.launcher.0)(lazy.spec.clone(), lazy.supervision.clone(), rx, status_tx);
            Task { tx, status }
        })
    }

    /// Starts the process if it is not running and waits until it is mounted.
    pub async fn start(&self) -> Result<(), ProcessError> {
        let (reply, rx) = oneshot::channel();
        self.task()
            .tx
            .send(Order::Start(reply))
            .await
            .map_err(|_| ProcessError::Gone)?;
        rx.await.map_err(|_| ProcessError::Gone)?
    }

    /// Like [`start`](Self::start), but a failure is retried in the
    /// background with the usual backoff (used when netfs starts again).
    pub async fn restore(&self) -> Result<(), ProcessError> {
        let (reply, rx) = oneshot::channel();
        self.task()
            .tx
            .send(Order::Restore(reply))
            .await
            .map_err(|_| ProcessError::Gone)?;
        rx.await.map_err(|_| ProcessError::Gone)?
    }

    /// Stops the process and unmounts; succeeds if nothing was running.
    pub async fn stop(&self) {
        // Never started: nothing runs and nothing was mounted by it.
        let Some(task) = self.lazy.task.get() else {
            return;
        };
        let (reply, rx) = oneshot::channel();
        if task.tx.send(Order::Stop(reply)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// The device numbers containers may hold, once the task has run
    /// (before, they are the ones it was given).
    pub fn devices(&self) -> Option<Vec<String>> {
        let task = self.lazy.task.get()?;
        Some(task.status.borrow().devices.clone())
    }

    pub fn status(&self) -> ProcessStatus {
        match self.lazy.task.get() {
            Some(task) => task.status.borrow().clone(),
            None => self.lazy.initial.clone(),
        }
    }
}
