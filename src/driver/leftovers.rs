//! What an earlier run of netfs left under the mount root when it died
//! without stopping its volumes (SIGKILL, OOM, power cut of the container):
//! tools still running, mounts, empty mountpoints. Cleared once at start,
//! after the socket is ours and before any request is served, so nothing
//! started by this run is ever mistaken for a leftover.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::connections::MARK_CONNECTION;
use crate::mounts::MountTable;
use crate::name::VolumeName;
use crate::procfs::{self, alive, stat, ProcStat};
use crate::supervisor::{MARK_ROOT, MARK_VOLUME};

/// How long killed leftovers get to disappear before start-up goes on.
const REAP: Duration = Duration::from_secs(5);

/// A process an earlier run started: netfs marks every tool it starts
/// with its volume and mount root in the environment (see
/// `supervisor::MARK_VOLUME`), and the tool's own children inherit it.
/// The argv is never trusted: an administrator's `du <root>/<volume>` is
/// not a tool of netfs's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub pid: i32,
    pub volume: VolumeName,
    /// It leads its process group (a tool netfs started does): the group
    /// goes with it.
    pub leader: bool,
}

/// Clears what an earlier run left, keeping the data of live containers:
/// - a tool whose volume is no longer stored (its Create never finished or
///   its Remove did) is killed with its process group;
/// - a tool of a stored volume that has no mount (it was still mounting) is
///   killed too: the volume gets a fresh one;
/// - a tool of a stored volume that still serves a mount is left running:
///   containers started before the crash may hold that mount, and the tool
///   exits by itself once the last of them lets go;
/// - then every mount under the root is detached lazily (containers keep
///   theirs), and empty directories of volumes that are not stored are
///   removed.
pub async fn clean_up(root: &Path, stored: &BTreeSet<VolumeName>, table: &dyn MountTable) {
    // The tools' mark has the root as configured; mountinfo has it resolved.
    let given = root;
    let root = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    let mounted: BTreeSet<PathBuf> = mounted_under(table, &root).into_iter().collect();
    let mut killed = Vec::new();
    let mut serving = 0;
    let mut orphans = find(given);
    if root != given {
        orphans.extend(find(&root));
    }
    for orphan in orphans {
        let live = mounted.contains(&root.join(orphan.volume.as_str()));
        if live && stored.contains(&orphan.volume) {
            serving += 1;
            tracing::info!(
                volume = %orphan.volume, pid = orphan.pid,
                "a volume process of an earlier run still serves its old mount; \
                 left to containers that may use it, it exits when they are done"
            );
            continue;
        }
        tracing::info!(volume = %orphan.volume, pid = orphan.pid, "killing a volume process left by an earlier run");
        let pid = Pid::from_raw(orphan.pid);
        let sent = if orphan.leader {
            killpg(pid, Signal::SIGKILL)
        } else {
            kill(pid, Signal::SIGKILL)
        };
        if sent.is_ok() {
            killed.push(orphan.pid);
        }
    }
    // An earlier run's ssh masters: the tools left serving old mounts may
    // go through them, so they stay while any does (they end with netfs's
    // next clean start); otherwise nothing uses them.
    let mut old_masters = masters(given);
    if root != given {
        old_masters.extend(masters(&root));
    }
    for pid in old_masters {
        if serving > 0 {
            tracing::info!(
                pid,
                "an ssh connection of an earlier run is left to the old mounts that may use it"
            );
            continue;
        }
        tracing::info!(pid, "killing an ssh connection left by an earlier run");
        if killpg(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
            killed.push(pid);
        }
    }
    let deadline = tokio::time::Instant::now() + REAP;
    while killed.iter().any(|pid| alive(*pid)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Read again: a killed tool may have mounted just before it died.
    for path in mounted_under(table, &root) {
        tracing::info!(path = %path.display(), "detaching stale mount");
        if let Err(e) = table.lazy_unmount(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot detach stale mount");
        }
    }
    remove_empty_dirs(&root, stored, table);
}

fn mounted_under(table: &dyn MountTable, root: &Path) -> Vec<PathBuf> {
    table.mounted_under(root).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read mountinfo");
        Vec::new()
    })
}

/// Mountpoint directories of volumes that are not stored: what a Create
/// that never finished left. `remove_dir` only removes an empty directory.
fn remove_empty_dirs(root: &Path, stored: &BTreeSet<VolumeName>, table: &dyn MountTable) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let unknown = name
            .to_str()
            .and_then(|n| VolumeName::parse(n).ok())
            .is_some_and(|n| !stored.contains(&n));
        if unknown && table.remove_mount_point(&path).is_ok_and(|removed| removed) {
            tracing::debug!(path = %path.display(), "removed the empty mountpoint of a volume that is not stored");
        }
    }
}

/// Processes started by an earlier netfs for volumes under `root`: marked
/// with it, in this pid namespace, and neither this process nor a child
/// of it.
pub fn find(root: &Path) -> Vec<Orphan> {
    let me = std::process::id() as i32;
    let my_ns = fs::read_link("/proc/self/ns/pid").ok();
    let mut found = Vec::new();
    for pid in procfs::pids() {
        let Some(ProcStat { ppid, pgrp, .. }) = stat(pid).filter(|s| !s.is_zombie()) else {
            continue;
        };
        if pid == me || ppid == me {
            continue;
        }
        let Some(volume) = procfs::environ(pid).and_then(|env| marked_volume(&env, root)) else {
            continue;
        };
        // A pid namespace of its own is another netfs's (a managed plugin
        // seen from the host), whatever its paths say.
        if fs::read_link(format!("/proc/{pid}/ns/pid")).ok() != my_ns {
            continue;
        }
        found.push(Orphan {
            pid,
            volume,
            leader: pgrp == pid,
        });
    }
    found
}

/// The volume an environment (`/proc/<pid>/environ`) marks, if it marks
/// one under `root`.
fn marked_volume(environ: &[u8], root: &Path) -> Option<VolumeName> {
    VolumeName::parse(marked(environ, root, MARK_VOLUME)?).ok()
}

/// The value of the mark `key` in an environment, if it is marked under `root`.
fn marked<'a>(environ: &'a [u8], root: &Path, key: &str) -> Option<&'a str> {
    if Path::new(procfs::env_var(environ, MARK_ROOT)?) != root {
        return None;
    }
    procfs::env_var(environ, key)
}

/// Shared ssh connections (masters) an earlier run left under `root`.
fn masters(root: &Path) -> Vec<i32> {
    let me = std::process::id() as i32;
    procfs::pids()
        .into_iter()
        .filter(|pid| *pid != me && stat(*pid).is_some_and(|s| s.ppid != me && !s.is_zombie()))
        .filter(|pid| {
            procfs::environ(*pid).is_some_and(|env| marked(&env, root, MARK_CONNECTION).is_some())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mounts;
    use std::process::{Command, Stdio};

    #[test]
    fn only_the_mark_under_this_root_names_a_volume() {
        let root = Path::new("/m/volumes");
        let v = |env: &str| {
            marked_volume(env.replace(' ', "\0").as_bytes(), root).map(|n| n.to_string())
        };
        assert_eq!(
            v("PATH=/bin NETFS_VOLUME=data NETFS_MOUNT_ROOT=/m/volumes").as_deref(),
            Some("data")
        );
        assert_eq!(
            v("NETFS_MOUNT_ROOT=/m/volumes NETFS_VOLUME=data").as_deref(),
            Some("data")
        );
        assert_eq!(v("NETFS_VOLUME=data NETFS_MOUNT_ROOT=/m/other"), None);
        assert_eq!(v("NETFS_VOLUME=data"), None);
        assert_eq!(v("NETFS_VOLUME=../x NETFS_MOUNT_ROOT=/m/volumes"), None);
        assert_eq!(v("XNETFS_VOLUME=data NETFS_MOUNT_ROOT=/m/volumes"), None);
        assert_eq!(v("PATH=/m/volumes/data"), None);
    }

    /// A stand-in for a process of an earlier run: its own group, and not
    /// our child once `setsid -f` has forked it away.
    fn detached(env: &[(&str, &Path)], argv: &[&str], arg: &Path) {
        let status = Command::new("setsid")
            .arg("-f")
            .args(argv)
            .arg(arg)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The pid of the process whose argv ends with `last`.
    fn pid_with_last_arg(last: &Path) -> Option<i32> {
        let last = last.to_string_lossy();
        procfs::pids().into_iter().find(|pid| {
            procfs::cmdline(*pid)
                .iter()
                .rfind(|a| !a.is_empty())
                .is_some_and(|a| *a == last)
        })
    }

    #[tokio::test]
    async fn a_marked_leftover_is_killed_and_an_admins_command_on_the_same_path_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap().join("real");
        fs::create_dir(&real).unwrap();
        // The root as configured may go through a symlink.
        let root = dir.path().join("root");
        std::os::unix::fs::symlink(&real, &root).unwrap();
        let mount_point = root.join("gone");
        fs::create_dir(&mount_point).unwrap();
        fs::create_dir(root.join("kept")).unwrap();
        let mark = [
            (MARK_VOLUME, Path::new("gone")),
            (MARK_ROOT, root.as_path()),
        ];
        // The tool: marked, its argv says nothing of the volume.
        let tool_tag = dir.path().join("tool-tag");
        detached(&mark, &["sh", "-c", "sleep 300; :", "tool"], &tool_tag);
        // An administrator's command naming the mountpoint, unmarked.
        let admin_tag = mount_point.clone();
        detached(&[], &["sh", "-c", "sleep 300; :", "du"], &admin_tag);
        let mut pids = (None, None);
        for _ in 0..250 {
            pids = (pid_with_last_arg(&tool_tag), pid_with_last_arg(&admin_tag));
            if pids.0.is_some() && pids.1.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (Some(tool), Some(admin)) = pids else {
            panic!("both stand-ins started: {pids:?}");
        };
        // The tool and its own child (the sleep), which inherits the mark.
        let orphans = find(&root);
        let gone = VolumeName::parse("gone").unwrap();
        assert!(
            orphans.iter().any(|o| o.pid == tool && o.leader),
            "{orphans:?}"
        );
        assert!(
            orphans.iter().all(|o| o.volume == gone && o.pid != admin),
            "{orphans:?}"
        );
        let stored = [VolumeName::parse("kept").unwrap()].into();
        clean_up(&root, &stored, &mounts::Kernel).await;
        let admin_alive = alive(admin);
        let _ = kill(Pid::from_raw(admin), Signal::SIGKILL);
        assert!(!alive(tool), "the leftover was killed");
        assert!(admin_alive, "the administrator's command was left alone");
        assert!(find(&root).is_empty());
        assert!(!mount_point.exists(), "its empty mountpoint is removed");
        assert!(root.join("kept").exists(), "a stored volume's dir stays");
        assert!(real.join("kept").exists());
    }
}
