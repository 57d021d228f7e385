//! What the kernel says about mounts: `/proc/self/mountinfo`, a bounded
//! `stat` probe that notices dead FUSE mounts, and lazy unmount. Nothing
//! here starts or stops a process. The driver sees the mount table through
//! [`MountTable`], so its unit tests run on a recorded one.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use sys_mount::UnmountFlags;
use tokio::task::JoinHandle;

use crate::procfs;

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Mount points listed in a mountinfo text.
pub fn parse_mount_points(mountinfo: &str) -> Vec<PathBuf> {
    procfs::parse_mountinfo(mountinfo)
        .into_iter()
        .map(|entry| entry.mount_point)
        .collect()
}

/// The mount table, parsed once and kept until the kernel says it changed.
/// An open mountinfo file reports every change of the mount namespace to
/// `poll` as POLLPRI, so checking costs one syscall while nothing changes,
/// and the answer is never stale: a change made before the check is seen.
struct MountCache {
    file: File,
    points: Arc<HashSet<PathBuf>>,
}

static CACHE: Mutex<Option<MountCache>> = Mutex::new(None);

fn read_points(file: &mut File) -> io::Result<Arc<HashSet<PathBuf>>> {
    file.seek(SeekFrom::Start(0))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(Arc::new(parse_mount_points(&text).into_iter().collect()))
}

fn changed(file: &File) -> bool {
    let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLPRI)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(0) => false,
        // An event, or no way to tell: read again.
        _ => true,
    }
}

/// Every mount point of this process's mount namespace.
pub fn mount_points() -> io::Result<Arc<HashSet<PathBuf>>> {
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match cache.as_mut() {
        Some(c) => {
            if changed(&c.file) {
                c.points = read_points(&mut c.file)?;
            }
            Ok(c.points.clone())
        }
        None => {
            let mut file = File::open(MOUNTINFO)?;
            // Consume the pending state before the first read, so the read
            // below is at least as new as what the next poll compares with.
            changed(&file);
            let points = read_points(&mut file)?;
            *cache = Some(MountCache {
                file,
                points: points.clone(),
            });
            Ok(points)
        }
    }
}

/// `path` with its parent resolved (symlinks, `..`), as mountinfo shows it.
/// The last component is never touched: a dead FUSE mount answers ENOTCONN.
fn normalize(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => parent
            .canonicalize()
            .map_or_else(|_| path.to_path_buf(), |p| p.join(name)),
        _ => path.to_path_buf(),
    }
}

/// True if something is mounted at exactly `path`.
pub fn is_mounted(path: &Path) -> io::Result<bool> {
    let points = mount_points()?;
    Ok(points.contains(path) || points.contains(&normalize(path)))
}

/// Mount points strictly below `root`.
pub fn mounted_under(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut under: Vec<PathBuf> = mount_points()?
        .iter()
        .filter(|p| *p != root && p.starts_with(root))
        .cloned()
        .collect();
    // Deepest first, so nested mounts come off before their parents.
    under.sort();
    under.reverse();
    Ok(under)
}

/// Detaches whatever is mounted at `path`; "not mounted" and "no such path"
/// count as success so that stopping is idempotent.
pub fn lazy_unmount(path: &Path) -> io::Result<()> {
    match sys_mount::unmount(path, UnmountFlags::DETACH) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The kernel's mount table as the driver uses it: [`Kernel`] in netfs,
/// [`recorded::Recorded`] in unit tests.
pub trait MountTable: Send + Sync {
    fn is_mounted(&self, path: &Path) -> io::Result<bool>;
    /// Mount points strictly below `root`, deepest first.
    fn mounted_under(&self, root: &Path) -> io::Result<Vec<PathBuf>>;
    /// Detaches what is mounted at `path`; nothing mounted is success.
    fn lazy_unmount(&self, path: &Path) -> io::Result<()>;
    /// Removes an empty, unmounted mount point, never anything else; true
    /// if it did.
    fn remove_mount_point(&self, path: &Path) -> io::Result<bool>;
    /// Bind-mounts `source` at `target`, read-only on ask; a bind that
    /// cannot be made read-only is taken down again.
    fn bind(&self, source: &Path, target: &Path, read_only: bool) -> io::Result<()>;
}

/// The mount table of this process's mount namespace.
pub struct Kernel;

impl MountTable for Kernel {
    fn is_mounted(&self, path: &Path) -> io::Result<bool> {
        is_mounted(path)
    }

    fn mounted_under(&self, root: &Path) -> io::Result<Vec<PathBuf>> {
        mounted_under(root)
    }

    fn lazy_unmount(&self, path: &Path) -> io::Result<()> {
        lazy_unmount(path)
    }

    fn remove_mount_point(&self, path: &Path) -> io::Result<bool> {
        if !is_mounted(path)? {
            std::fs::remove_dir(path)?;
            return Ok(true);
        }
        Ok(false)
    }

    fn bind(&self, source: &Path, target: &Path, read_only: bool) -> io::Result<()> {
        use nix::mount::{mount, MsFlags};
        let none: Option<&str> = None;
        mount(Some(source), target, none, MsFlags::MS_BIND, none)?;
        if read_only {
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            if let Err(e) = mount(none, target, none, flags, none) {
                let _ = lazy_unmount(target);
                return Err(e.into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub mod recorded;

/// How a mountpoint answered a `stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Answering,
    /// The FUSE server behind it is gone: "transport endpoint is not connected".
    NotConnected,
    Error(String),
    /// No answer within the probe's time; the remote may be slow or down.
    Hung,
}

/// `stat`s one path on a blocking thread with a bound on the wait, so a hung
/// network mount never stalls the caller. A `stat` that hangs is not
/// abandoned: the next probe waits for the same one, so a mount that stays
/// hung holds at most one thread.
pub struct Prober {
    path: PathBuf,
    inflight: Option<JoinHandle<io::Result<std::fs::Metadata>>>,
}

impl Prober {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            inflight: None,
        }
    }

    pub async fn probe(&mut self, timeout: Duration) -> Probe {
        let path = self.path.clone();
        let task = self
            .inflight
            .get_or_insert_with(|| tokio::task::spawn_blocking(move || std::fs::metadata(&path)));
        let outcome = match tokio::time::timeout(timeout, task).await {
            Err(_) => return Probe::Hung,
            Ok(outcome) => outcome,
        };
        self.inflight = None;
        match outcome {
            Err(join) => Probe::Error(join.to_string()),
            Ok(Ok(_)) => Probe::Answering,
            Ok(Err(e)) if e.raw_os_error() == Some(nix::libc::ENOTCONN) => Probe::NotConnected,
            Ok(Err(e)) => Probe::Error(e.to_string()),
        }
    }
}

/// The mountinfo entry of the topmost mount at exactly `path`, if any:
/// what is mounted there, not only whether something is. Read afresh.
pub fn mount_at(path: &Path) -> io::Result<Option<procfs::MountEntry>> {
    let want = normalize(path);
    Ok(procfs::mountinfo()?
        .into_iter()
        .rev()
        .find(|m| m.mount_point == want || m.mount_point == path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_unescapes_mount_points() {
        let text = "22 1 0:21 / / rw - ext4 /dev/vda rw\n\
                    90 22 0:50 / /mnt/volumes/my\\040vol rw,nosuid - fuse.sshfs u@h:/x rw\n\
                    91 22 0:51 / /a\\134b rw - tmpfs t rw\n";
        let points = parse_mount_points(text);
        assert_eq!(
            points,
            [
                PathBuf::from("/"),
                PathBuf::from("/mnt/volumes/my vol"),
                PathBuf::from("/a\\b")
            ]
        );
    }

    #[test]
    fn this_process_sees_its_root_mounted() {
        assert!(is_mounted(Path::new("/")).unwrap());
    }

    #[test]
    fn a_path_through_a_symlink_is_compared_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/", &link).unwrap();
        // `link/proc` resolves to /proc, which is a mount point.
        assert!(is_mounted(&link.join("proc")).unwrap());
        assert!(!is_mounted(&link.join("no-such-dir")).unwrap());
    }

    #[tokio::test]
    async fn probe_tells_answering_from_missing() {
        let dir = tempfile::tempdir().unwrap();
        let mut ok = Prober::new(dir.path());
        assert_eq!(ok.probe(Duration::from_secs(5)).await, Probe::Answering);
        let mut gone = Prober::new(&dir.path().join("missing"));
        assert!(matches!(
            gone.probe(Duration::from_secs(5)).await,
            Probe::Error(_)
        ));
    }

    #[test]
    fn the_entry_at_a_mount_point_says_what_is_mounted() {
        let proc = mount_at(Path::new("/proc"))
            .unwrap()
            .expect("/proc is mounted");
        assert_eq!(proc.fs_type, "proc");
        assert_eq!(mount_at(Path::new("/proc/self")).unwrap(), None);
    }
}
