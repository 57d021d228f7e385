//! What an earlier run of netfs left under the mount root when it died
//! without stopping its volumes (SIGKILL, OOM, power cut of the container):
//! tools still running, mounts, empty mountpoints. Cleared once at start,
//! after the socket is ours and before any request is served, so nothing
//! started by this run is ever mistaken for a leftover.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::mounts;
use crate::name::VolumeName;

/// How long killed leftovers get to disappear before start-up goes on.
const REAP: Duration = Duration::from_secs(5);

/// A tool an earlier run started: netfs starts each in a process group of
/// its own, and its argv names the volume's mountpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub pid: i32,
    pub volume: VolumeName,
    pub mount_point: PathBuf,
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
pub async fn clean_up(root: &Path, stored: &BTreeSet<VolumeName>) {
    // The tools' argv has the root as configured; mountinfo has it resolved.
    let given = root;
    let root = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    let mounted: BTreeSet<PathBuf> = mounted_under(&root).into_iter().collect();
    let mut killed = Vec::new();
    let mut orphans = find(given);
    if root != given {
        orphans.extend(find(&root));
    }
    for orphan in orphans {
        let live = mounted.contains(&root.join(orphan.volume.as_str()));
        if live && stored.contains(&orphan.volume) {
            tracing::info!(
                volume = %orphan.volume, pid = orphan.pid,
                "a volume process of an earlier run still serves its old mount; \
                 left to containers that may use it, it exits when they are done"
            );
            continue;
        }
        tracing::info!(volume = %orphan.volume, pid = orphan.pid, "killing a volume process left by an earlier run");
        if killpg(Pid::from_raw(orphan.pid), Signal::SIGKILL).is_ok() {
            killed.push(orphan.pid);
        }
    }
    let deadline = tokio::time::Instant::now() + REAP;
    while killed.iter().any(|pid| alive(*pid)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Read again: a killed tool may have mounted just before it died.
    for path in mounted_under(&root) {
        tracing::info!(path = %path.display(), "detaching stale mount");
        if let Err(e) = mounts::lazy_unmount(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot detach stale mount");
        }
    }
    remove_empty_dirs(&root, stored);
}

fn mounted_under(root: &Path) -> Vec<PathBuf> {
    mounts::mounted_under(root).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read mountinfo");
        Vec::new()
    })
}

/// Mountpoint directories of volumes that are not stored: what a Create
/// that never finished left. `remove_dir` only removes an empty directory.
fn remove_empty_dirs(root: &Path, stored: &BTreeSet<VolumeName>) {
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
        if unknown
            && matches!(mounts::is_mounted(&path), Ok(false))
            && fs::remove_dir(&path).is_ok()
        {
            tracing::debug!(path = %path.display(), "removed the empty mountpoint of a volume that is not stored");
        }
    }
}

/// Tools started by an earlier netfs for volumes under `root`: group
/// leaders, not children of this process, with an argument that is exactly
/// `<root>/<volume name>`.
pub fn find(root: &Path) -> Vec<Orphan> {
    let me = std::process::id() as i32;
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for pid in dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        let Some((ppid, pgrp)) = stat(pid) else {
            continue;
        };
        if pid == me || ppid == me || pgrp != pid {
            continue;
        }
        let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let volume = raw
            .split(|b| *b == 0)
            .filter_map(|arg| std::str::from_utf8(arg).ok())
            .map(Path::new)
            .find_map(|arg| volume_of(root, arg));
        if let Some((volume, mount_point)) = volume {
            found.push(Orphan {
                pid,
                volume,
                mount_point,
            });
        }
    }
    found
}

fn volume_of(root: &Path, arg: &Path) -> Option<(VolumeName, PathBuf)> {
    if arg.parent()? != root {
        return None;
    }
    let name = VolumeName::parse(arg.file_name()?.to_str()?).ok()?;
    Some((name, arg.to_owned()))
}

/// Parent pid and process group from /proc/<pid>/stat, for a live process.
fn stat(pid: i32) -> Option<(i32, i32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: skip past the last ')'.
    let mut fields = text[text.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((ppid, pgrp))
}

fn alive(pid: i32) -> bool {
    stat(pid).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn an_argument_names_a_volume_only_as_a_direct_child_of_the_root() {
        let root = Path::new("/m/volumes");
        let v = |s: &str| volume_of(root, Path::new(s)).map(|(n, _)| n.to_string());
        assert_eq!(v("/m/volumes/data").as_deref(), Some("data"));
        assert_eq!(v("/m/volumes/a/b"), None);
        assert_eq!(v("/m/volumes"), None);
        assert_eq!(v("/m/volumes/.hidden"), None);
        assert_eq!(v("/m/other/data"), None);
        assert_eq!(v("port=22"), None);
    }

    #[tokio::test]
    async fn a_leftover_tool_is_found_and_killed_and_its_empty_dir_removed() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap().join("real");
        fs::create_dir(&real).unwrap();
        // The root as configured may go through a symlink.
        let root = dir.path().join("root");
        std::os::unix::fs::symlink(&real, &root).unwrap();
        let mount_point = root.join("gone");
        fs::create_dir(&mount_point).unwrap();
        fs::create_dir(root.join("kept")).unwrap();
        // A stand-in for a tool of an earlier run: its own group, and not
        // our child once the intermediate shell has exited.
        let status = Command::new("setsid")
            .args(["-f", "sh", "-c", "sleep 300; :", "tool"])
            .arg(&mount_point)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let mut orphans = Vec::new();
        for _ in 0..250 {
            orphans = find(&root);
            if !orphans.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(orphans.len(), 1, "{orphans:?}");
        assert_eq!(orphans[0].volume.as_str(), "gone");
        let pid = orphans[0].pid;
        let stored = [VolumeName::parse("kept").unwrap()].into();
        clean_up(&root, &stored).await;
        assert!(!alive(pid), "the leftover was killed");
        assert!(find(&root).is_empty());
        assert!(!mount_point.exists(), "its empty mountpoint is removed");
        assert!(root.join("kept").exists(), "a stored volume's dir stays");
        assert!(real.join("kept").exists());
    }
}
