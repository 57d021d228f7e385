//! netfs reaps every child it inherits. In a managed plugin it is PID 1 of
//! the plugin's pid namespace, so every orphan there (the ssh a dying sshfs
//! leaves, whatever a tool daemonises) becomes its child; as a host service
//! it makes itself a child subreaper, so its tools' orphans stay its own.
//! The tools netfs spawns itself belong to tokio, which waits for them: they
//! are registered here from spawn until tokio is done with them, and the
//! reaper only ever waits for the exact pids of other children that are
//! zombies, never `waitpid(-1)`.

use std::collections::BTreeSet;
use std::io;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};

use crate::procfs;

/// Children tokio waits for: spawned by netfs and not yet let go.
static TOKIO_CHILDREN: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Looked at even without a SIGCHLD, in case one was missed.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

fn tokio_children() -> MutexGuard<'static, BTreeSet<i32>> {
    // A panic while holding the lock leaves a plain set behind.
    TOKIO_CHILDREN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A child spawned through [`spawn`]: tokio's to wait for, so the reaper
/// leaves it alone until it is dropped.
pub struct Tracked {
    child: Child,
    pid: Option<i32>,
}

impl Deref for Tracked {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl DerefMut for Tracked {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // Waited for already, or left to tokio's own orphan reaping, which
        // takes it in good part if the reaper here gets there first.
        if let Some(pid) = self.pid {
            tokio_children().remove(&pid);
        }
    }
}

/// Spawns `command` as a child tokio waits for. The registry is held across
/// the spawn, so the reaper never sees the new child before it is known.
pub fn spawn(command: &mut Command) -> io::Result<Tracked> {
    // What systemd told netfs of the sockets it passed (see `listener`) is
    // netfs's alone: no tool is to take it for its own.
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        command.env_remove(var);
    }
    let mut known = tokio_children();
    let child = command.spawn()?;
    let pid = child.id().map(|p| p as i32);
    if let Some(pid) = pid {
        known.insert(pid);
    }
    Ok(Tracked { child, pid })
}

/// How netfs came to be the parent of orphans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// PID 1 of its pid namespace (the managed plugin).
    Init,
    /// A child subreaper (host service).
    Subreaper,
    /// Neither, because the kernel refused the subreaper flag: orphans go
    /// to the host's init, which reaps them.
    Parent,
}

/// Makes netfs the reaper of its tools' orphans and starts reaping them, for
/// the life of the runtime. Called once by the binary, never by a library
/// user embedding [`crate::run`]: it changes how the whole process is
/// parented.
pub fn start() -> io::Result<Role> {
    let role = if std::process::id() == 1 {
        Role::Init
    } else {
        match nix::sys::prctl::set_child_subreaper(true) {
            Ok(()) => Role::Subreaper,
            Err(e) => {
                tracing::warn!(error = %e, "cannot become a child subreaper; orphans of tools go to the host's init");
                Role::Parent
            }
        }
    };
    let mut sigchld = signal(SignalKind::child())?;
    tokio::spawn(async move {
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                // netfs's own children are listed by the kernel: a few
                // hundred reads fewer than all of /proc on every SIGCHLD
                // while a hundred tools start.
                _ = sigchld.recv() => match procfs::own_children() {
                    Some(children) => reap(zombies_among(children)),
                    None => reap_orphans(),
                },
                // The whole of /proc now and then, for what a list read
                // while a child changed parent missed.
                _ = sweep.tick() => reap_orphans(),
            };
        }
    });
    tracing::info!(role = ?role, "reaping orphaned children");
    Ok(role)
}

/// Waits for every child of netfs that is a zombie and not tokio's; returns
/// how many. Reads every /proc/*/stat: run every `SWEEP_EVERY`, and on
/// SIGCHLD only where the kernel cannot list netfs's children.
pub fn reap_orphans() -> usize {
    reap(zombie_children(std::process::id() as i32))
}

/// Waits for each of `zombies` (children of netfs) that is not tokio's.
fn reap(zombies: impl IntoIterator<Item = i32>) -> usize {
    let known = tokio_children();
    let mut reaped = 0;
    for pid in zombies {
        if known.contains(&pid) {
            continue;
        }
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => {}
            Ok(status) => {
                tracing::debug!(pid, ?status, "reaped an orphaned child");
                reaped += 1;
            }
        }
    }
    reaped
}

/// Which of `children` (of netfs) are zombies.
fn zombies_among(children: Vec<i32>) -> Vec<i32> {
    children
        .into_iter()
        .filter(|pid| procfs::stat(*pid).is_some_and(|s| s.state == 'Z'))
        .collect()
}

/// Pids of the zombies whose parent is `parent`.
fn zombie_children(parent: i32) -> Vec<i32> {
    procfs::pids()
        .into_iter()
        .filter(|pid| procfs::stat(*pid).is_some_and(|s| s.state == 'Z' && s.ppid == parent))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zombie that is not tokio's is reaped; tokio's own child, exited
    /// but not yet waited for, is left to tokio, which still gets its status.
    #[tokio::test]
    async fn reaps_other_zombies_and_leaves_tokios_children_to_tokio() {
        let me = std::process::id() as i32;
        // A child std spawned and never waits for: a stand-in for an orphan.
        let orphan = std::process::Command::new("true").spawn().unwrap();
        let orphan_pid = orphan.id() as i32;
        let mut ours = spawn(Command::new("sh").args(["-c", "exit 7"])).unwrap();
        let ours_pid = ours.id().unwrap() as i32;
        let both_zombies = || {
            let z = zombie_children(me);
            z.contains(&orphan_pid) && z.contains(&ours_pid)
        };
        for _ in 0..500 {
            if both_zombies() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(both_zombies(), "both children exited");
        // The kernel's list of netfs's children finds them too.
        let listed = zombies_among(procfs::own_children().expect("/proc/self/task/*/children"));
        assert!(
            listed.contains(&orphan_pid) && listed.contains(&ours_pid),
            "{listed:?}"
        );
        // Only these two: other tests in this binary have children too.
        assert_eq!(reap([orphan_pid, ours_pid]), 1);
        let left = zombie_children(me);
        assert!(!left.contains(&orphan_pid), "the orphan was reaped");
        assert!(left.contains(&ours_pid), "tokio's child was left alone");
        let status = ours.wait().await.unwrap();
        assert_eq!(status.code(), Some(7));
        drop(ours);
        assert!(!tokio_children().contains(&ours_pid));
        drop(orphan);
    }

    /// What systemd passed netfs (socket activation) never reaches a tool.
    #[tokio::test]
    async fn tools_get_no_socket_activation_variables() {
        let mut command = Command::new("sh");
        command
            .args([
                "-c",
                "echo \"[$LISTEN_PID][$LISTEN_FDS][$LISTEN_FDNAMES][$OTHER]\"",
            ])
            .env("LISTEN_PID", "1")
            .env("LISTEN_FDS", "1")
            .env("LISTEN_FDNAMES", "netfs.socket")
            .env("OTHER", "kept")
            .stdout(std::process::Stdio::piped());
        let mut child = spawn(&mut command).unwrap();
        let mut out = String::new();
        let mut stdout = child.stdout.take().unwrap();
        tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut out)
            .await
            .unwrap();
        child.wait().await.unwrap();
        assert_eq!(out, "[][][][kept]\n");
    }
}
