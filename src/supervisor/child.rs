//! One run of a volume's tool: spawned in a process group of its own with
//! its output logged, waited on until its mount answers, watched, and
//! stopped (SIGTERM to the group, a grace period, SIGKILL, lazy unmount).
//! Whether to run it again is the actor's business, not this module's.

use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::time::{sleep, Instant};

use super::error::{ProcessError, Tail};
use super::{ProcessSpec, Supervision};
use crate::connections::refused_session;
use crate::mounts::{self, Probe, Prober};
use crate::pacing::Permit;
use crate::process::{describe, Group, Output, Stopped};

/// The variables that mark a tool netfs started: its volume, and the mount
/// root of the netfs that started it.
pub use crate::marks::{MARK_ROOT, MARK_VOLUME};
const READY_POLL_MIN: Duration = Duration::from_millis(10);
const READY_POLL_MAX: Duration = Duration::from_millis(200);
/// How long a tool that exited 0 (one-shot or daemonising) has for its
/// mount to show up.
const EXITED_GRACE: Duration = Duration::from_secs(1);
/// Bound on the `stat` made when a Mount finds the process running.
const QUICK_PROBE: Duration = Duration::from_millis(500);

/// A spawned tool. Its process is let go once a one-shot tool exited with
/// success: then its kernel mount is what "running" means.
pub struct Running {
    process: Group,
    prober: Prober,
}

impl Running {
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// True while its process runs (not once a one-shot tool was let go).
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// The last lines the tool wrote on stderr.
    pub fn tail(&self) -> Tail {
        self.process.tail()
    }

    /// Returns once the tool exits or its mount is gone or stops
    /// answering; `every` is the interval of the mount checks.
    pub async fn watch(&mut self, spec: &ProcessSpec, every: Duration) -> Watch {
        let path = &spec.mount_point;
        let prober = &mut self.prober;
        let health = async move {
            loop {
                sleep(every).await;
                if let Some(reason) = mount_trouble(path, prober, every).await {
                    return reason;
                }
            }
        };
        if !self.process.is_running() {
            return Watch::Died(health.await);
        }
        let status = tokio::select! {
            status = self.process.wait() => status,
            reason = health => return Watch::Died(reason),
        };
        self.exited(spec, status).await
    }

    /// A quick look, for a Mount that finds the process running: why it is
    /// not usable, if it is not. A mount that is merely slow counts as fine.
    pub async fn check_now(&mut self, spec: &ProcessSpec) -> Option<String> {
        if let Ok(Some(status)) = self.process.try_wait() {
            if let Watch::Died(reason) = self.exited(spec, Ok(status)).await {
                return Some(reason);
            }
        }
        mount_trouble(&spec.mount_point, &mut self.prober, QUICK_PROBE).await
    }

    /// The tool exited after it had mounted. With success and its mount
    /// still answering it was a one-shot or daemonising tool: from now on
    /// its mount is what runs. Anything else is a death.
    async fn exited(&mut self, spec: &ProcessSpec, status: io::Result<ExitStatus>) -> Watch {
        let success = status.as_ref().is_ok_and(|s| s.success());
        if success
            && mount_trouble(&spec.mount_point, &mut self.prober, QUICK_PROBE)
                .await
                .is_none()
        {
            tracing::info!(volume = %spec.name, pid = self.pid(), "volume process exited 0; its mount serves the volume");
            self.process.release();
            return Watch::Detached;
        }
        self.process.kill_leftovers();
        Watch::Died(format!(
            "{} exited unexpectedly ({})",
            spec.invocation.program,
            describe(status)
        ))
    }
}

/// What [`Running::watch`] saw.
pub enum Watch {
    Died(String),
    /// The tool exited with success and left its mount serving.
    Detached,
}

async fn mount_trouble(path: &Path, prober: &mut Prober, within: Duration) -> Option<String> {
    if let Ok(false) = mounts::is_mounted(path) {
        return Some(format!("the mount at {} disappeared", path.display()));
    }
    (prober.probe(within).await == Probe::NotConnected)
        .then(|| "the mount stopped answering (transport endpoint is not connected)".to_owned())
}

/// Detaches a stale mount, makes the mountpoint, and spawns the tool in a
/// process group of its own.
pub fn spawn(spec: &ProcessSpec) -> Result<Running, ProcessError> {
    let path = &spec.mount_point;
    unmount(spec);
    if let Some(socket) = &spec.invocation.rc_socket {
        // A killed rclone leaves its socket, which the next would not bind.
        let _ = std::fs::remove_file(socket);
    }
    std::fs::create_dir_all(path).map_err(|e| ProcessError::Mountpoint {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let inv = &spec.invocation;
    let mut command = Command::new(&inv.program);
    command
        .args(&inv.args)
        .envs(mark(spec))
        .envs(inv.env.iter().map(|(k, v)| (k, v.expose())))
        .stdin(if inv.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let output = Output {
        label: spec.name.to_string(),
        secrets: inv.secrets().into(),
        stdout: true,
    };
    let mut process = Group::spawn(&mut command, output).map_err(|e| ProcessError::Spawn {
        program: inv.program.clone(),
        reason: if e.kind() == io::ErrorKind::NotFound {
            format!("{e} (is {} installed and on PATH?)", inv.program)
        } else {
            e.to_string()
        },
    })?;
    if let (Some(secret), Some(mut stdin)) = (inv.stdin.clone(), process.take_stdin()) {
        // Written once, then stdin closes: the tool reads one line.
        tokio::spawn(async move {
            let _ = stdin.write_all(secret.expose().as_bytes()).await;
            let _ = stdin.write_all(b"\n").await;
        });
    }
    tracing::info!(volume = %spec.name, pid = process.pid(), command = %inv.display(), "volume process started");
    Ok(Running {
        process,
        prober: Prober::new(path),
    })
}

/// The environment that marks a tool (and whatever it starts) as this
/// volume's, under this mount root: how a later netfs recognises it (see
/// `driver::leftovers`), never by its argv.
fn mark(spec: &ProcessSpec) -> [(&'static str, &std::ffi::OsStr); 2] {
    let root = spec.mount_point.parent().unwrap_or(Path::new("/"));
    [
        (MARK_VOLUME, spec.name.as_str().as_ref()),
        (MARK_ROOT, root.as_os_str()),
    ]
}

/// Waits until the mountpoint is mounted and answers a `stat`, up to the
/// mount timeout. On failure the tool is stopped and nothing stays mounted;
/// the error carries what it wrote on stderr. Dropping this future leaves
/// `running` to the caller, who stops it.
pub async fn wait_ready(
    running: &mut Running,
    spec: &ProcessSpec,
    supervision: &Supervision,
    turn: &mut Option<Permit>,
) -> Result<(), ProcessError> {
    let path = &spec.mount_point;
    let program = spec.invocation.program.clone();
    let deadline = Instant::now() + supervision.mount_timeout;
    let mut poll = READY_POLL_MIN;
    let mut seen = String::new();
    let mut exited_ok: Option<(Instant, String)> = None;
    loop {
        if turn.is_some() && logged_in(running, spec) {
            tracing::debug!(volume = %spec.name, "logged in; its turn at the server is over");
            *turn = None;
        }
        if let Some(refused) = refused(running, spec) {
            stop(running, spec, supervision).await;
            return Err(refused);
        }
        if let Ok(true) = mounts::is_mounted(path) {
            let mut within = deadline.saturating_duration_since(Instant::now()).max(poll);
            if watching_login(turn, spec) {
                // sshfs mounts before it logs in: a stat waits for the
                // login and what follows, the login is looked for meanwhile
                // (the stat goes on in the background, see Prober).
                within = within.min(READY_POLL_MIN);
            }
            seen = match running.prober.probe(within).await {
                // Listed again after the stat: a tool that mounts before it
                // connects and then gives up (sshfs does) may be gone by
                // the time the stat runs, which then saw the bare directory.
                Probe::Answering if matches!(mounts::is_mounted(path), Ok(true)) => return Ok(()),
                Probe::Answering => "it was unmounted while it was checked".to_owned(),
                Probe::Hung => "it is mounted but a stat of it did not answer".to_owned(),
                Probe::NotConnected => {
                    "it is mounted but answers: transport endpoint is not connected".to_owned()
                }
                Probe::Error(e) => format!("it is mounted but a stat of it says: {e}"),
            };
        }
        let now = Instant::now();
        if now >= deadline {
            stop(running, spec, supervision).await;
            if let Some(refused) = refused(running, spec) {
                return Err(refused);
            }
            let tail = running.tail();
            let seen = if seen.is_empty() {
                seen
            } else {
                format!(" ({seen})")
            };
            return Err(ProcessError::Timeout {
                program,
                timeout: humantime::format_duration(supervision.mount_timeout).to_string(),
                detail: format!("{seen}{tail}{}", spec.invocation.hint(&tail.text())),
            });
        }
        if let Some((at, status)) = &exited_ok {
            if now >= *at + EXITED_GRACE {
                let status = status.clone();
                return Err(failed_exit(running, spec, supervision, program, status).await);
            }
        }
        let nap = poll.min(deadline - now);
        tokio::select! {
            status = running.process.wait() => match status {
                // A one-shot or daemonising tool: what it leaves behind
                // serves the mount, so its group is no longer ours.
                Ok(s) if s.success() => {
                    running.process.release();
                    exited_ok = Some((Instant::now(), describe(Ok(s))));
                    poll = READY_POLL_MIN;
                    continue;
                }
                other => {
                    running.process.kill_leftovers();
                    return Err(failed_exit(running, spec, supervision, program, describe(other)).await);
                }
            },
            _ = sleep(nap) => {}
        }
        // While it holds a turn, it is looked at closely: others wait for
        // that turn, and a doubling poll would keep it up to twice as long
        // as the tool needs.
        poll = if turn.is_some() {
            READY_POLL_MIN
        } else {
            (poll * 2).min(READY_POLL_MAX)
        };
    }
}

/// It holds its turn at the server and will say when its login is done.
fn watching_login(turn: &Option<Permit>, spec: &ProcessSpec) -> bool {
    turn.is_some() && spec.invocation.login.is_some() && spec.shared.is_none()
}

/// The tool said its login is done.
fn logged_in(running: &Running, spec: &ProcessSpec) -> bool {
    spec.invocation
        .login
        .is_some_and(|login| running.tail().0.iter().any(|l| l.contains(login.done)))
}

async fn failed_exit(
    running: &mut Running,
    spec: &ProcessSpec,
    supervision: &Supervision,
    program: String,
    status: String,
) -> ProcessError {
    stop(running, spec, supervision).await;
    if let Some(refused) = refused(running, spec) {
        return refused;
    }
    let tail = running.tail();
    ProcessError::Exited {
        program,
        status,
        detail: format!("{tail}{}", spec.invocation.hint(&tail.text())),
    }
}

/// A tool on a shared connection whose ssh says the server refused it a
/// session: it cannot mount through that connection, and waiting for it
/// (sshfs mounts before its session is open) would only run out the mount
/// timeout.
fn refused(running: &Running, spec: &ProcessSpec) -> Option<ProcessError> {
    spec.shared.as_ref()?;
    let tail = running.tail();
    refused_session(&tail.text()).then(|| ProcessError::SessionRefused {
        program: spec.invocation.program.clone(),
        detail: tail.to_string(),
    })
}

/// Stops the tool's whole process group and detaches whatever is left
/// mounted. Idempotent: "no such process" and "not mounted" are success.
pub async fn stop(running: &mut Running, spec: &ProcessSpec, supervision: &Supervision) {
    let pid = running.pid();
    match running.process.stop(supervision.stop_timeout).await {
        Stopped::Gracefully => {}
        Stopped::Killed => {
            tracing::warn!(volume = %spec.name, pid, "volume process ignored SIGTERM; it was killed")
        }
        Stopped::Stuck => tracing::warn!(volume = %spec.name, pid, "volume process does not die"),
    }
    unmount(spec);
    running.process.drain().await;
}

/// Lazily detaches whatever is mounted at the volume's mountpoint.
pub fn unmount(spec: &ProcessSpec) {
    if let Ok(true) = mounts::is_mounted(&spec.mount_point) {
        match mounts::lazy_unmount(&spec.mount_point) {
            Ok(()) => tracing::debug!(volume = %spec.name, "mountpoint detached"),
            Err(e) => tracing::warn!(volume = %spec.name, error = %e, "lazy unmount failed"),
        }
    }
}
