//! Spawning a volume's tool, waiting until its mount answers, and stopping
//! it: SIGTERM to its process group, a grace period, SIGKILL, then a lazy
//! unmount of whatever is left.

use std::collections::VecDeque;
use std::io;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

use super::{Policy, ProcessSpec};
use crate::mounts::{self, Probe};

const TAIL_LINES: usize = 20;
const READY_POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {program}: {reason}")]
    Spawn { program: String, reason: String },
    #[error("cannot prepare mountpoint {path}: {reason}")]
    Mountpoint { path: String, reason: String },
    #[error("{program} exited ({status}) before the volume was mounted{tail}")]
    Exited {
        program: String,
        status: String,
        tail: Tail,
    },
    #[error("{program} did not mount the volume within {timeout}{tail}")]
    Timeout {
        program: String,
        timeout: String,
        tail: Tail,
    },
    #[error("volume has failed: {0}")]
    Failed(String),
    #[error("the volume's supervisor is gone (netfs is shutting down)")]
    Gone,
}

/// The last lines a tool wrote on stderr, shown after an error message.
#[derive(Debug, Clone, Default)]
pub struct Tail(pub Vec<String>);

impl std::fmt::Display for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, ": {}", self.0.join("; "))
        }
    }
}

/// A running tool: the child (None once a one-shot tool has exited) and its
/// stderr tail.
pub struct Running {
    pub child: Option<Child>,
    pub pid: Option<u32>,
    tail: Arc<Mutex<VecDeque<String>>>,
    pumps: Vec<JoinHandle<()>>,
}

impl Running {
    pub async fn tail(&mut self) -> Tail {
        // Give the log pumps a moment to drain what the tool wrote before exiting.
        for pump in self.pumps.drain(..) {
            let _ = timeout(Duration::from_millis(500), pump).await;
        }
        let lines = self
            .tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        Tail(lines)
    }
}

fn pump(
    name: String,
    stream: &'static str,
    reader: impl AsyncRead + Unpin + Send + 'static,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(volume = %name, stream, "{line}");
            if let Some(tail) = &tail {
                if let Ok(mut t) = tail.lock() {
                    if t.len() == TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            }
        }
    })
}

fn spawn(spec: &ProcessSpec) -> Result<Running, ProcessError> {
    let inv = &spec.invocation;
    let mut cmd = Command::new(&inv.program);
    cmd.args(&inv.args)
        .process_group(0)
        .stdin(if inv.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| ProcessError::Spawn {
        program: inv.program.clone(),
        reason: if e.kind() == io::ErrorKind::NotFound {
            format!("{e} (is {} installed?)", inv.program)
        } else {
            e.to_string()
        },
    })?;
    if let (Some(secret), Some(mut stdin)) = (inv.stdin.clone(), child.stdin.take()) {
        tokio::spawn(async move {
            let line = format!("{}\n", secret.expose());
            let _ = stdin.write_all(line.as_bytes()).await;
        });
    }
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
    let name = spec.name.to_string();
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(pump(name.clone(), "stdout", out, None));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(pump(name, "stderr", err, Some(tail.clone())));
    }
    Ok(Running {
        pid: child.id(),
        child: Some(child),
        tail,
        pumps,
    })
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

async fn answering(spec: &ProcessSpec, within: Duration) -> bool {
    matches!(mounts::is_mounted(&spec.mount_point), Ok(true))
        && mounts::probe(&spec.mount_point, within).await == Probe::Answering
}

/// Spawns the tool and waits until the mountpoint is mounted and answers.
/// On failure nothing is left running or mounted.
pub async fn start(spec: &ProcessSpec, policy: &Policy) -> Result<Running, ProcessError> {
    let path = &spec.mount_point;
    if let Ok(true) = mounts::is_mounted(path) {
        let _ = mounts::lazy_unmount(path);
    }
    std::fs::create_dir_all(path).map_err(|e| ProcessError::Mountpoint {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let program = spec.invocation.program.clone();
    let mut running = spawn(spec)?;
    let deadline = Instant::now() + policy.mount_timeout;
    loop {
        let Some(child) = running.child.as_mut() else {
            unreachable!("child present until it exits")
        };
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(|e| ProcessError::Spawn { program: program.clone(), reason: e.to_string() })?;
                // A one-shot or self-daemonising tool exits 0 once it has mounted.
                if status.success() && answering(spec, deadline.saturating_duration_since(Instant::now())).await {
                    running.child = None;
                    return Ok(running);
                }
                let tail = running.tail().await;
                stop(&mut running, spec, policy).await;
                return Err(ProcessError::Exited { program, status: describe(status), tail });
            }
            _ = sleep(READY_POLL) => {
                if answering(spec, deadline.saturating_duration_since(Instant::now()).max(READY_POLL)).await {
                    return Ok(running);
                }
                if Instant::now() >= deadline {
                    stop(&mut running, spec, policy).await;
                    let tail = running.tail().await;
                    return Err(ProcessError::Timeout {
                        program,
                        timeout: humantime::format_duration(policy.mount_timeout).to_string(),
                        tail,
                    });
                }
            }
        }
    }
}

/// Stops the tool's whole process group and detaches any mount left behind.
/// Idempotent: "no such process" and "not mounted" are success.
pub async fn stop(running: &mut Running, spec: &ProcessSpec, policy: &Policy) {
    if let Some(child) = running.child.as_mut() {
        if let Some(pid) = running.pid {
            let group = Pid::from_raw(pid as i32);
            let _ = killpg(group, Signal::SIGTERM);
            if timeout(policy.stop_timeout, child.wait()).await.is_err() {
                tracing::warn!(volume = %spec.name, pid, "process ignored SIGTERM; killing it");
                let _ = killpg(group, Signal::SIGKILL);
                let _ = child.wait().await;
            } else {
                // Children of the tool (ssh under sshfs) share its group.
                let _ = killpg(group, Signal::SIGKILL);
            }
        }
        running.child = None;
    }
    unmount(spec);
}

pub fn unmount(spec: &ProcessSpec) {
    if let Ok(true) = mounts::is_mounted(&spec.mount_point) {
        if let Err(e) = mounts::lazy_unmount(&spec.mount_point) {
            tracing::warn!(volume = %spec.name, error = %e, "lazy unmount failed");
        }
    }
}
