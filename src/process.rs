//! One supervised child process, whatever it is for: spawned in a process
//! group of its own with its output logged and its stderr kept in a short
//! tail, waited on, and stopped (SIGTERM to the group, a grace period,
//! SIGKILL, reaped). A volume's tool (`supervisor::child`) and an ssh
//! master (`connections::master`) both run through it; what a run means
//! (a mount, a control socket) and when to run again is theirs to decide.

use std::io;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{ChildStdin, Command};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

use crate::output::{self, Lines, Tail};
use crate::reaper::{self, Tracked};
use crate::secret::Secret;

/// How long to wait for the last output of a process that has gone.
const DRAIN: Duration = Duration::from_millis(300);
/// Bound on waiting for a SIGKILLed process (one stuck in the kernel).
const REAP: Duration = Duration::from_secs(5);

/// What its output is logged as: the volume or connection it serves, and
/// the secrets to hide in it.
pub struct Output {
    pub label: String,
    pub secrets: Arc<[Secret]>,
    /// Whether stdout is read and logged too (else the command's own
    /// setting stands).
    pub stdout: bool,
}

/// A spawned process and its group. `child` is None once it has exited and
/// been waited for, or was let go with [`Group::release`].
pub struct Group {
    child: Option<Tracked>,
    /// The process group, while signalling it is ours to do.
    group: Option<Pid>,
    pid: Option<u32>,
    tail: Lines,
    pumps: Vec<JoinHandle<()>>,
}

/// How a [`Group::stop`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It exited within the grace period (or was not running).
    Gracefully,
    /// It ignored SIGTERM and was killed.
    Killed,
    /// Even SIGKILL did not end it within a few seconds (stuck in the kernel).
    Stuck,
}

impl Group {
    /// Spawns `command` as the leader of a new process group, tracked by
    /// the reaper, its stderr (and stdout when asked) pumped to the log.
    pub fn spawn(command: &mut Command, output: Output) -> io::Result<Self> {
        command
            .process_group(0)
            .stderr(std::process::Stdio::piped());
        if output.stdout {
            command.stdout(std::process::Stdio::piped());
        }
        let mut child = reaper::spawn(command)?;
        let pid = child.id();
        let tail = output::lines();
        let mut pumps = Vec::new();
        if let Some(out) = child.stdout.take() {
            let label = output.label.clone();
            pumps.push(output::pump(
                label,
                "stdout",
                out,
                output.secrets.clone(),
                None,
            ));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(output::pump(
                output.label,
                "stderr",
                err,
                output.secrets,
                Some(tail.clone()),
            ));
        }
        Ok(Self {
            group: pid.map(|p| Pid::from_raw(p as i32)),
            pid,
            child: Some(child),
            tail,
            pumps,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Its stdin, once, if the command piped it.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.as_mut()?.stdin.take()
    }

    /// The last lines it wrote on stderr.
    pub fn tail(&self) -> Tail {
        Tail::of(&self.tail)
    }

    /// Whether a process is still ours to wait for.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Until it exits; never, once it has exited or was let go.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        match self.child.as_mut() {
            Some(child) => child.wait().await,
            None => std::future::pending().await,
        }
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => child.try_wait(),
            None => Ok(None),
        }
    }

    /// It exited with success and what it left behind lives on (a
    /// daemonising tool): its group is no longer ours to signal.
    pub fn release(&mut self) {
        self.child = None;
        self.group = None;
        self.pid = None;
    }

    /// Kills what is left of the group of a process that has exited (ssh
    /// under sshfs); done at once, while the group id cannot have been
    /// reused.
    pub fn kill_leftovers(&mut self) {
        if let Some(group) = self.group.take() {
            let _ = killpg(group, Signal::SIGKILL);
        }
        self.pid = None;
    }

    /// SIGTERM to the group, `grace` for the process to exit, then SIGKILL
    /// to the group (the process after its grace, or helpers it started).
    /// Idempotent: a group already stopped or let go is left alone.
    pub async fn stop(&mut self, grace: Duration) -> Stopped {
        let mut outcome = Stopped::Gracefully;
        if let Some(group) = self.group.take() {
            let _ = killpg(group, Signal::SIGTERM);
            if let Some(child) = self.child.as_mut() {
                if timeout(grace, child.wait()).await.is_err() {
                    outcome = Stopped::Killed;
                }
            }
            let _ = killpg(group, Signal::SIGKILL);
            if let Some(child) = self.child.as_mut() {
                if timeout(REAP, child.wait()).await.is_err() {
                    outcome = Stopped::Stuck;
                }
            }
        }
        self.child = None;
        self.pid = None;
        outcome
    }

    /// Waits a moment for its output to reach the log and the tail.
    pub async fn drain(&mut self) {
        let deadline = Instant::now() + DRAIN;
        while self.pumps.iter().any(|p| !p.is_finished()) && Instant::now() < deadline {
            sleep(Duration::from_millis(10)).await;
        }
        self.pumps.retain(|p| !p.is_finished());
    }
}

/// An exit status in words: "exit status 1", "killed by signal 9, SIGKILL".
pub fn describe(status: io::Result<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(sig)) => match Signal::try_from(sig) {
                Ok(name) => format!("killed by signal {sig}, {name}"),
                Err(_) => format!("killed by signal {sig}"),
            },
            _ => s.to_string(),
        },
        Err(e) => format!("cannot wait for it: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    fn quiet() -> Output {
        Output {
            label: "test".into(),
            secrets: Arc::from([]),
            stdout: true,
        }
    }

    #[tokio::test]
    async fn its_stderr_tail_hides_secrets_and_outlives_it() {
        let secrets: Arc<[Secret]> = Arc::from([Secret::new("hunter2".to_owned())]);
        let output = Output { secrets, ..quiet() };
        let mut group =
            Group::spawn(&mut sh("echo out; echo 'pw hunter2' >&2; exit 3"), output).unwrap();
        let status = group.wait().await;
        assert_eq!(describe(status), "exit status 3");
        group.drain().await;
        let tail = group.tail().text();
        assert!(tail.contains("pw "), "{tail}");
        assert!(!tail.contains("hunter2"), "{tail}");
        assert!(!tail.contains("out"), "stdout is logged, not kept: {tail}");
    }

    #[tokio::test]
    async fn stop_kills_a_process_that_ignores_sigterm_and_its_helpers() {
        // The leader ignores SIGTERM; a helper in its group sleeps on.
        let mut group = Group::spawn(
            &mut sh("trap '' TERM; sleep 300 & echo $! >&2; while :; do sleep 0.05; done"),
            quiet(),
        )
        .unwrap();
        let helper = loop {
            if let Some(line) = group.tail().0.first() {
                break line.parse::<i32>().unwrap();
            }
            sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(
            group.stop(Duration::from_millis(100)).await,
            Stopped::Killed
        );
        assert!(!group.is_running());
        // The helper was killed with the group. SIGKILL takes effect when
        // the kernel next runs it, so it goes (or is left a zombie) within
        // moments; a helper the group missed would sleep on for 300 s.
        let gone = || {
            let state = std::fs::read_to_string(format!("/proc/{helper}/stat")).unwrap_or_default();
            (state.is_empty() || state.contains(") Z "))
                .then_some(())
                .ok_or(state)
        };
        let mut seen = gone();
        for _ in 0..500 {
            if seen.is_ok() {
                break;
            }
            sleep(Duration::from_millis(10)).await;
            seen = gone();
        }
        assert!(seen.is_ok(), "the helper lives on: {seen:?}");
        // Stopping again is a no-op.
        assert_eq!(
            group.stop(Duration::from_millis(100)).await,
            Stopped::Gracefully
        );
    }

    #[tokio::test]
    async fn a_released_group_is_not_signalled() {
        let mut group = Group::spawn(&mut sh("sleep 300"), quiet()).unwrap();
        let pid = group.pid().unwrap();
        group.release();
        assert_eq!(
            group.stop(Duration::from_millis(10)).await,
            Stopped::Gracefully
        );
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}
