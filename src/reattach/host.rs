//! The host calls re-attach makes, behind one trait: which process is in
//! which mount namespace, each namespace's mount table, and the attach
//! itself with the kernel's mount API (`open_tree`, `mount_setattr`,
//! `move_mount`, which nix does not wrap) inside the holder's namespace.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag, AT_FDCWD};
use nix::libc;
use nix::mount::{umount2, MntFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::statfs::fstatfs;

use super::{Attach, Flags};
use crate::procfs::MountEntry;

/// What re-attach needs of the host: [`Kernel`] in netfs, a recorded
/// twin in unit tests.
pub trait Host: Send + Sync {
    /// The mount at exactly `path` in netfs's own namespace.
    fn mount_at(&self, path: &Path) -> io::Result<Option<MountEntry>>;
    /// netfs's own mount namespace.
    fn own_namespace(&self) -> io::Result<u64>;
    /// Every process with the inode of its mount namespace; processes
    /// that cannot be read are left out.
    fn namespaces(&self) -> Vec<(i32, u64)>;
    /// The mount table of `pid`'s namespace, as text.
    fn mountinfo(&self, pid: i32) -> io::Result<String>;
    /// The container `pid` runs in, if its cgroup names one.
    fn container(&self, pid: i32) -> Option<String>;
    /// Puts a clone of the live mount (its subdirectory, the holder's
    /// flags) in place of the dead mount at the target, inside the
    /// namespace; never over a mount that is not dead.
    fn attach(&self, attach: &Attach) -> Result<(), AttachError>;
}

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("the volume's new mount at {path} does not answer: {source}")]
    LiveDead { path: PathBuf, source: Errno },
    #[error("subdirectory {sub} of the volume cannot be opened without following a link or leaving the volume: {source}")]
    Subdir { sub: PathBuf, source: Errno },
    #[error("process {pid} or its mount namespace is gone")]
    Gone { pid: i32 },
    #[error("{target} is no longer a dead mount")]
    NotDead { target: PathBuf },
    #[error("{target} cannot be reached without following a symbolic link: {source}")]
    Link { target: PathBuf, source: Errno },
    #[error("{step}: {source}")]
    Call { step: &'static str, source: Errno },
    #[error("the thread that entered the namespace panicked")]
    Thread,
}

fn call(step: &'static str) -> impl FnOnce(Errno) -> AttachError {
    move |source| AttachError::Call { step, source }
}

/// The real host, its processes seen through `proc`: `/proc` for the
/// host service, the host's `/proc` mounted into the managed plugin
/// (which has a process namespace of its own).
pub struct Kernel {
    proc: PathBuf,
}

impl Kernel {
    pub fn new(proc: PathBuf) -> Self {
        Self { proc }
    }

    fn of(&self, pid: i32, file: &str) -> PathBuf {
        self.proc.join(pid.to_string()).join(file)
    }
}

impl Host for Kernel {
    fn mount_at(&self, path: &Path) -> io::Result<Option<MountEntry>> {
        crate::mounts::mount_at(path)
    }

    fn own_namespace(&self) -> io::Result<u64> {
        namespace_of(Path::new("/proc/self/ns/mnt"))
    }

    fn namespaces(&self) -> Vec<(i32, u64)> {
        let Ok(dir) = std::fs::read_dir(&self.proc) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter_map(|pid| Some((pid, namespace_of(&self.of(pid, "ns/mnt")).ok()?)))
            .collect()
    }

    fn mountinfo(&self, pid: i32) -> io::Result<String> {
        std::fs::read_to_string(self.of(pid, "mountinfo"))
    }

    fn container(&self, pid: i32) -> Option<String> {
        let cgroup = std::fs::read_to_string(self.of(pid, "cgroup")).ok()?;
        container_id(&cgroup)
    }

    fn attach(&self, attach: &Attach) -> Result<(), AttachError> {
        let tree = clone_live(&attach.live, &attach.target.root, attach.target.flags)?;
        let ns = File::open(self.of(attach.pid, "ns/mnt"))
            .map_err(|_| AttachError::Gone { pid: attach.pid })?;
        // The pid may have been reused since the scan.
        match ns.metadata() {
            Ok(m) if m.ino() == attach.ns => {}
            _ => return Err(AttachError::Gone { pid: attach.pid }),
        }
        let target = &attach.target.mount_point;
        // A thread of its own: entering a mount namespace changes the
        // thread's root and working directory, which it must not share
        // with netfs (unshare CLONE_FS), and it ends right after.
        std::thread::scope(|scope| {
            scope
                .spawn(|| replace_in(ns.as_fd(), tree.as_fd(), target))
                .join()
                .unwrap_or(Err(AttachError::Thread))
        })
    }
}

/// `mnt:[4026531841]` of a `ns/mnt` link, as a number.
fn namespace_of(path: &Path) -> io::Result<u64> {
    let link = std::fs::read_link(path)?;
    parse_namespace(&link.to_string_lossy())
        .ok_or_else(|| io::Error::other(format!("unexpected namespace link {}", link.display())))
}

pub(super) fn parse_namespace(link: &str) -> Option<u64> {
    link.strip_prefix("mnt:[")?.strip_suffix(']')?.parse().ok()
}

/// The container id (its first 12 hex digits) a cgroup path names:
/// `/docker/<id>`, `/system.slice/docker-<id>.scope`, and the like.
pub(super) fn container_id(cgroup: &str) -> Option<String> {
    cgroup.lines().find_map(|line| {
        let path = line.rsplit(':').next()?;
        path.split(['/', '-', '.'])
            .find(|part| part.len() == 64 && part.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|id| id[..12].to_owned())
    })
}

/// A detached clone of the live mount (or of its subdirectory), with the
/// holder's flags and private propagation (as Docker gives volumes).
fn clone_live(live: &Path, root: &Path, flags: Flags) -> Result<OwnedFd, AttachError> {
    let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC);
    let live_fd = openat2(AT_FDCWD, live, how).map_err(|source| AttachError::LiveDead {
        path: live.to_owned(),
        source,
    })?;
    // Never attach a dead mount.
    fstatfs(&live_fd).map_err(|source| AttachError::LiveDead {
        path: live.to_owned(),
        source,
    })?;
    let sub = root.strip_prefix("/").unwrap_or(root);
    let dir = if sub.as_os_str().is_empty() {
        live_fd
    } else {
        // Resolved inside the volume only: a link on the remote must not
        // lead the clone to a host directory.
        let resolve = ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS
            | ResolveFlag::RESOLVE_NO_XDEV;
        openat2(&live_fd, sub, how.resolve(resolve)).map_err(|source| AttachError::Subdir {
            sub: root.to_owned(),
            source,
        })?
    };
    let tree = open_tree(dir.as_fd()).map_err(call("open_tree"))?;
    let mut set = 0;
    for (on, attr) in [
        (flags.read_only, libc::MOUNT_ATTR_RDONLY),
        (flags.nosuid, libc::MOUNT_ATTR_NOSUID),
        (flags.nodev, libc::MOUNT_ATTR_NODEV),
        (flags.noexec, libc::MOUNT_ATTR_NOEXEC),
    ] {
        if on {
            set |= attr;
        }
    }
    mount_setattr(tree.as_fd(), set).map_err(call("mount_setattr"))?;
    Ok(tree)
}

/// In the holder's namespace: checks that the target is reached without
/// a link and is a dead mount, detaches it and moves the clone there.
fn replace_in(ns: BorrowedFd<'_>, tree: BorrowedFd<'_>, target: &Path) -> Result<(), AttachError> {
    unshare(CloneFlags::CLONE_FS).map_err(call("unshare(CLONE_FS)"))?;
    setns(ns, CloneFlags::CLONE_NEWNS).map_err(call("setns"))?;
    // From here `/` is the namespace's root, so the path resolves inside
    // the container, never through the host.
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let found = openat2(AT_FDCWD, target, how).map_err(|source| AttachError::Link {
        target: target.to_owned(),
        source,
    })?;
    match fstatfs(&found) {
        Err(Errno::ENOTCONN) => {}
        Ok(_) => {
            return Err(AttachError::NotDead {
                target: target.to_owned(),
            })
        }
        Err(e) => return Err(call("statfs of the dead mount")(e)),
    }
    drop(found);
    umount2(target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW)
        .map_err(call("umount2 of the dead mount"))?;
    move_mount(tree, target).map_err(call("move_mount"))
}

fn open_tree(dir: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_EMPTY_PATH as u32;
    // SAFETY: a valid fd, a NUL-terminated empty path, plain flags.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, dir.as_raw_fd(), c"".as_ptr(), flags) };
    Errno::result(fd)?;
    // SAFETY: open_tree returned a new file descriptor that nothing owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn mount_setattr(tree: BorrowedFd<'_>, set: u64) -> Result<(), Errno> {
    let attr = libc::mount_attr {
        attr_set: set,
        attr_clr: 0,
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    // SAFETY: attr lives across the call and its size is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as u32,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    Errno::result(r).map(drop)
}

fn move_mount(tree: BorrowedFd<'_>, target: &Path) -> Result<(), Errno> {
    use std::os::unix::ffi::OsStrExt;
    let to = std::ffi::CString::new(target.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: valid fds and NUL-terminated paths; without
    // MOVE_MOUNT_T_SYMLINKS the target's last component is not followed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    Errno::result(r).map(drop)
}
