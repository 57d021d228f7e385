//! What the kernel says: mounts from /proc/self/mountinfo, processes from
//! /proc/*/cmdline and /proc/*/stat, and the one polling helper tests use
//! to wait for any of it.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How often [`wait_until`] looks again.
pub const POLL: Duration = Duration::from_millis(20);

/// Polls `cond` every 20 ms until it holds; panics naming `what` if it still
/// does not after `timeout`. This is how tests wait: never a fixed sleep.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    assert!(
        poll_until(timeout, &mut cond),
        "timed out after {timeout:?} waiting until {what}"
    );
}

/// Polls `cond` every 20 ms for at most `timeout`; true once it holds.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}

/// One line of /proc/self/mountinfo.
#[derive(Clone, Debug)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
}

/// Every mount this process sees, in mountinfo order.
pub fn mount_table() -> Vec<MountEntry> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    text.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    let (left, right) = line.split_once(" - ")?;
    let mount_point = left.split(' ').nth(4)?;
    let mut right = right.split(' ');
    Some(MountEntry {
        mount_point: PathBuf::from(unescape(mount_point)),
        fs_type: right.next()?.to_owned(),
        source: unescape(right.next().unwrap_or("")),
    })
}

/// Undoes the kernel's octal escapes (`\040` space, `\011` tab, `\012`
/// newline, `\134` backslash).
pub fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) if bytes[i] == b'\\' => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `path` with its parent resolved (symlinks, `..`) but not itself: a dead
/// FUSE mount answers ENOTCONN, so the last component is never touched.
fn normalize(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => match parent.canonicalize() {
            Ok(parent) => parent.join(name),
            Err(_) => path.to_path_buf(),
        },
        _ => path.to_path_buf(),
    }
}

/// The mountinfo entry of the topmost mount at exactly `path`, if any.
pub fn mount_at(path: &Path) -> Option<MountEntry> {
    let want = normalize(path);
    mount_table()
        .into_iter()
        .rev()
        .find(|m| m.mount_point == want || m.mount_point == path)
}

/// True if something is mounted at exactly `path`.
pub fn is_mounted(path: impl AsRef<Path>) -> bool {
    mount_at(path.as_ref()).is_some()
}

/// Mount points at or below `root`, deepest first (the order to unmount in).
pub fn mounts_under(root: impl AsRef<Path>) -> Vec<PathBuf> {
    let root = root.as_ref();
    let want = normalize(root);
    let mut found: Vec<PathBuf> = mount_table()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(&want) || p.starts_with(root))
        .collect();
    found.sort_by(|a, b| {
        let depth = |p: &PathBuf| p.components().count();
        depth(b).cmp(&depth(a)).then_with(|| a.cmp(b))
    });
    found.dedup();
    found
}

/// `umount -l`: detaches the mount even if it is busy or its server is gone.
pub fn lazy_unmount(path: impl AsRef<Path>) -> nix::Result<()> {
    nix::mount::umount2(path.as_ref(), nix::mount::MntFlags::MNT_DETACH)
}

/// Lazily unmounts everything at or below `root`; returns what is still
/// mounted afterwards (empty on success).
pub fn unmount_all_under(root: impl AsRef<Path>) -> Vec<PathBuf> {
    let root = root.as_ref();
    for _ in 0..5 {
        let left = mounts_under(root);
        if left.is_empty() {
            break;
        }
        for path in left {
            let _ = lazy_unmount(&path);
        }
    }
    mounts_under(root)
}

/// Every other process with an argument containing `substr`, with its argv.
pub fn processes_with_arg(substr: &str) -> Vec<(i32, Vec<String>)> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    for pid in all_pids() {
        if pid == me {
            continue;
        }
        let argv = cmdline(pid);
        if argv.iter().any(|a| a.contains(substr)) {
            found.push((pid, argv));
        }
    }
    found
}

/// The argv of `pid` (empty for a zombie, a kernel thread or a gone pid).
pub fn cmdline(pid: i32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

pub fn all_pids() -> Vec<i32> {
    let dir = fs::read_dir("/proc").expect("read /proc");
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// State letter and parent pid from /proc/<pid>/stat.
pub fn stat(pid: i32) -> Option<(char, i32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: skip past the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// True if `pid` exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    matches!(stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

/// Live processes whose parent is `pid`.
pub fn children(pid: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&p| matches!(stat(p), Some((s, ppid)) if ppid == pid && s != 'Z'))
        .collect()
}

/// Children of `pid`, their children, and so on.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        for c in children(p) {
            if !found.contains(&c) {
                found.push(c);
                queue.push(c);
            }
        }
    }
    found
}

/// Stops every descendant of `pid` (so none can fork past us), then kills them.
pub fn kill_tree(pid: i32) {
    let mut stopped: Vec<i32> = Vec::new();
    loop {
        let fresh: Vec<i32> = descendants(pid)
            .into_iter()
            .filter(|p| !stopped.contains(p))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for p in fresh {
            let _ = kill(Pid::from_raw(p), Signal::SIGSTOP);
            stopped.push(p);
        }
    }
    for p in stopped {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
}
