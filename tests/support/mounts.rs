//! What the kernel says, as tests ask it: mounts and processes, read through
//! netfs's own `/proc` parsers (`netfs::procfs`), and the one polling helper
//! tests use to wait for any of it.

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

pub use netfs::procfs::{cmdline, pids as all_pids, stat, MountEntry};

/// Every mount this process sees, in mountinfo order.
pub fn mount_table() -> Vec<MountEntry> {
    netfs::procfs::mountinfo().expect("read /proc/self/mountinfo")
}

/// The mountinfo entry of the topmost mount at exactly `path`, if any.
pub fn mount_at(path: &Path) -> Option<MountEntry> {
    netfs::mounts::mount_at(path).expect("read /proc/self/mountinfo")
}

/// True if something is mounted at exactly `path`.
pub fn is_mounted(path: impl AsRef<Path>) -> bool {
    netfs::mounts::is_mounted(path.as_ref()).expect("read /proc/self/mountinfo")
}

/// Mount points at or below `root`, deepest first (the order to unmount in);
/// `root` as given and with its parent resolved, as mountinfo shows it (not
/// `root` itself: a hung or dead network mount there must not be touched).
pub fn mounts_under(root: impl AsRef<Path>) -> Vec<PathBuf> {
    let root = root.as_ref();
    let resolved = match (root.parent().map(Path::canonicalize), root.file_name()) {
        (Some(Ok(parent)), Some(name)) => parent.join(name),
        _ => root.to_path_buf(),
    };
    let mut found = Vec::new();
    for root in [root, resolved.as_path()] {
        found.extend(netfs::mounts::mounted_under(root).expect("read /proc/self/mountinfo"));
        if is_mounted(root) {
            found.push(root.to_path_buf());
        }
    }
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

/// True if `pid` exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    netfs::procfs::alive(pid)
}

/// Live processes whose parent is `pid`.
pub fn children(pid: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&p| stat(p).is_some_and(|s| s.ppid == pid && s.state != 'Z'))
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
