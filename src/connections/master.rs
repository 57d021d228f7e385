//! The life of one master: `ssh -M -N` on its control socket, started (in
//! its turn at the server's pacing gate) while any volume holds a lease on
//! it, logged in again after it dies, stopped when its last volume leaves.
//! `ControlPersist` is off: netfs, not ssh, decides how long it lives.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::sync::watch;
use tokio::time::{sleep, timeout, Instant};

use super::{ConnState, ConnStatus, Master, Settings};
use crate::marks::MARK_ROOT;
use crate::output::{self, Lines, Tail};
use crate::reaper::{self, Tracked};

pub use crate::marks::MARK_CONNECTION;
const POLL: Duration = Duration::from_millis(10);
/// A master that stayed up this long starts its backoff afresh.
const STABLE: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

struct Running {
    child: Tracked,
    group: Option<Pid>,
    pid: Option<u32>,
    tail: Lines,
}

impl Running {
    fn tail(&self) -> Tail {
        Tail::of(&self.tail)
    }
}

pub(super) async fn run(master: Arc<Master>, settings: Arc<Settings>) {
    let mut members = master.members.subscribe();
    // None after a long life: the next login is at once.
    let mut backoff: Option<Duration> = None;
    loop {
        if *members.borrow() == 0 {
            publish(&master, |s| {
                s.state = ConnState::Idle;
                s.pid = None;
            });
        }
        if !until_used(&mut members).await {
            return;
        }
        let state = if master.status.borrow().logins == 0 {
            ConnState::Connecting
        } else {
            ConnState::Reconnecting
        };
        publish(&master, |s| s.state = state);
        let login = tokio::select! {
            r = connect(&master, &settings) => Some(r),
            _ = until_unused(&mut members) => None,
        };
        let mut running = match login {
            None => {
                publish(&master, |s| s.state = ConnState::Idle);
                continue;
            }
            Some(Err(reason)) => {
                tracing::warn!(connection = %master.name(), endpoint = %master.key, %reason, "ssh connection failed");
                publish(&master, |s| {
                    s.state = ConnState::Reconnecting;
                    s.failures += 1;
                    s.last_error = Some(reason);
                });
                let wait = next_backoff(backoff);
                backoff = Some(wait);
                tokio::select! {
                    _ = sleep(wait) => {}
                    _ = until_unused(&mut members) => {}
                }
                continue;
            }
            Some(Ok(running)) => running,
        };
        let up_at = Instant::now();
        tracing::info!(connection = %master.name(), endpoint = %master.key, pid = running.pid, "ssh connection up");
        publish(&master, |s| {
            s.state = ConnState::Up;
            s.pid = running.pid;
            s.logins += 1;
            s.generation += 1;
        });
        tokio::select! {
            status = running.child.wait() => {
                let reason = format!("ssh exited ({}){}", describe(status), running.tail());
                stop(&mut running, &master, &settings).await;
                tracing::warn!(connection = %master.name(), endpoint = %master.key, %reason, "ssh connection died");
                publish(&master, |s| {
                    s.state = ConnState::Reconnecting;
                    s.pid = None;
                    s.last_error = Some(reason);
                });
                if up_at.elapsed() >= STABLE {
                    backoff = None;
                } else if let Some(wait) = backoff {
                    let wait = next_backoff(Some(wait));
                    backoff = Some(wait);
                    sleep(wait).await;
                } else {
                    // The first death: again at once, its volumes are waiting.
                    backoff = Some(Duration::ZERO);
                }
            }
            _ = until_unused(&mut members) => {
                stop(&mut running, &master, &settings).await;
                tracing::info!(connection = %master.name(), "ssh connection closed: no volume uses it");
                publish(&master, |s| {
                    s.state = ConnState::Idle;
                    s.pid = None;
                });
                backoff = None;
            }
        }
    }
}

/// Waits until a volume holds a lease; false once the master is gone.
async fn until_used(members: &mut watch::Receiver<usize>) -> bool {
    members.wait_for(|n| *n > 0).await.is_ok()
}

/// Waits until no volume holds a lease (never, once the master is gone).
async fn until_unused(members: &mut watch::Receiver<usize>) {
    if members.wait_for(|n| *n == 0).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn next_backoff(last: Option<Duration>) -> Duration {
    match last {
        None => Duration::ZERO,
        Some(d) if d.is_zero() => FIRST_BACKOFF,
        Some(d) => (d * 2).min(MAX_BACKOFF),
    }
}

fn publish(master: &Master, change: impl FnOnce(&mut ConnStatus)) {
    master.status.send_modify(|s| {
        let before = s.state;
        change(s);
        if s.state != before {
            s.since = SystemTime::now();
        }
    });
}

/// Logs in, in its turn at the server: done once the control socket is
/// there (ssh binds it after the login).
async fn connect(master: &Master, settings: &Settings) -> Result<Running, String> {
    let _turn = settings.pacing.enter(&master.key.server()).await;
    let _ = std::fs::remove_file(&master.socket);
    let mut command = Command::new(&settings.ssh);
    command
        .args(master.key.ssh_args())
        .args(["-o", "BatchMode=yes", "-o", "ServerAliveInterval=15"])
        .args(["-x", "-a", "-M", "-N", "-o", "ControlMaster=yes", "-o"])
        .arg(format!("ControlPath={}", master.socket.display()))
        .args(["-o", "ControlPersist=no", "--", &master.key.host])
        .env(MARK_CONNECTION, master.id.to_string())
        .env(MARK_ROOT, &settings.mark_root)
        .process_group(0)
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = reaper::spawn(&mut command).map_err(|e| format!("cannot start ssh: {e}"))?;
    let pid = child.id();
    tracing::info!(connection = %master.name(), endpoint = %master.key, pid, "ssh connection started");
    let tail = output::lines();
    if let Some(err) = child.stderr.take() {
        output::pump(
            master.name(),
            "stderr",
            err,
            Arc::from([]),
            Some(tail.clone()),
        );
    }
    let mut running = Running {
        child,
        group: pid.map(|p| Pid::from_raw(p as i32)),
        pid,
        tail,
    };
    let deadline = Instant::now() + settings.connect_timeout;
    loop {
        if master.socket.exists() {
            return Ok(running);
        }
        if Instant::now() >= deadline {
            stop(&mut running, master, settings).await;
            return Err(format!(
                "not logged in within {}{}",
                humantime::format_duration(settings.connect_timeout),
                running.tail()
            ));
        }
        tokio::select! {
            status = running.child.wait() => {
                // Its last words reach the tail a moment after it exits.
                sleep(Duration::from_millis(50)).await;
                let reason = format!("ssh exited ({}){}", describe(status), running.tail());
                stop(&mut running, master, settings).await;
                return Err(reason);
            }
            _ = sleep(POLL) => {}
        }
    }
}

async fn stop(running: &mut Running, master: &Master, settings: &Settings) {
    if let Some(group) = running.group.take() {
        let _ = killpg(group, Signal::SIGTERM);
        if timeout(settings.stop_timeout, running.child.wait())
            .await
            .is_err()
        {
            let _ = killpg(group, Signal::SIGKILL);
            let _ = timeout(Duration::from_secs(5), running.child.wait()).await;
        }
    }
    let _ = std::fs::remove_file(&master.socket);
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("cannot wait for it: {e}"),
    }
}
