//! The listening socket of either front end (plugin or CSI): the one
//! systemd passes when it started netfs for a connection (socket
//! activation, `sd_listen_fds(3)`), or else one bound here. A socket netfs
//! did not bind is never removed; one it bound is removed when it stops,
//! unless something else has taken the path since.

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::socket::{getsockname, getsockopt, sockopt, SockType, UnixAddr};
use tokio::net::{UnixListener, UnixStream};

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another process is already serving on {path}; stop it or choose another {flag}")]
    InUse { path: PathBuf, flag: &'static str },
    #[error("{path} exists and is not a socket; netfs does not replace it: remove it or choose another {flag}")]
    NotASocket { path: PathBuf, flag: &'static str },
    #[error("cannot listen on {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("cannot read the sockets systemd passed (LISTEN_FDS, LISTEN_FDNAMES): {0}")]
    Passed(io::Error),
    #[error(
        "fd {fd} that systemd passed (LISTEN_FDS) is not a listening unix stream socket: {reason}"
    )]
    NotListening { fd: RawFd, reason: String },
    #[error("systemd passed {count} sockets and none is {path} (--socket); passed: {passed}")]
    NoneMatches {
        count: usize,
        path: PathBuf,
        passed: String,
    },
}

/// Where the listening socket came from.
#[derive(Debug)]
pub enum Origin {
    /// Passed by systemd: it stays bound when netfs stops, and connections
    /// that arrive meanwhile wait for the next netfs.
    Passed {
        fd: RawFd,
        name: String,
        path: Option<PathBuf>,
    },
    /// Bound by netfs: the file it made, known by device and inode.
    Bound { path: PathBuf, dev: u64, ino: u64 },
}

pub struct Listener {
    pub listener: UnixListener,
    pub origin: Origin,
}

impl Origin {
    /// The path clients connect to, for the log.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Origin::Passed { path, .. } => path.as_deref(),
            Origin::Bound { path, .. } => Some(path),
        }
    }

    /// Called once serving is over: removes the socket file if netfs made
    /// it and it is still the one netfs made.
    pub fn release(&self) {
        let Origin::Bound { path, dev, ino } = self else {
            return;
        };
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.dev() == *dev && meta.ino() == *ino => {
                if let Err(e) = std::fs::remove_file(path) {
                    tracing::warn!(socket = %path.display(), error = %e, "cannot remove the socket");
                }
            }
            Ok(_) => {
                tracing::info!(socket = %path.display(), "the socket path is another's now; left in place")
            }
            Err(_) => {}
        }
    }
}

/// The sockets passed by systemd are this process's to take once: a second
/// call (a library user running netfs twice) binds as if none were passed.
static PASSED_TAKEN: AtomicBool = AtomicBool::new(false);

/// The socket systemd passed for `path`, if it passed any (`LISTEN_PID` is
/// this process, `LISTEN_FDS` at least 1), else `path` bound here. Several
/// passed sockets: the one bound at `path`.
pub async fn listen(path: &Path) -> Result<Listener, SocketError> {
    if !PASSED_TAKEN.swap(true, Ordering::SeqCst) {
        // sd-notify checks LISTEN_PID against this process and marks the
        // fds close-on-exec, so that no tool netfs starts inherits them.
        let passed: Vec<(RawFd, String)> = sd_notify::listen_fds_with_names()
            .map_err(SocketError::Passed)?
            .collect();
        if !passed.is_empty() {
            return take_passed(passed, path);
        }
    }
    bind(path).await
}

fn take_passed(passed: Vec<(RawFd, String)>, path: &Path) -> Result<Listener, SocketError> {
    let mut checked = Vec::with_capacity(passed.len());
    for (fd, name) in passed {
        // SAFETY: LISTEN_PID names this process, so the fds from 3 to
        // 3 + LISTEN_FDS - 1 were opened for it by the service manager and
        // nothing else in netfs uses them; PASSED_TAKEN makes this the
        // only place that takes them, once.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let bound =
            check_listening(&owned).map_err(|reason| SocketError::NotListening { fd, reason })?;
        checked.push((owned, fd, name, bound));
    }
    let count = checked.len();
    let index = if count == 1 {
        0
    } else {
        checked
            .iter()
            .position(|(_, _, _, bound)| bound.as_deref() == Some(path))
            .ok_or_else(|| SocketError::NoneMatches {
                count,
                path: path.to_owned(),
                passed: checked
                    .iter()
                    .map(|(_, fd, name, bound)| match bound {
                        Some(p) => format!("fd {fd} ({name}) at {}", p.display()),
                        None => format!("fd {fd} ({name}), unnamed"),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            })?
    };
    // The others are closed here: netfs serves one socket.
    let (owned, fd, name, bound) = checked.swap_remove(index);
    let std_listener = std::os::unix::net::UnixListener::from(owned);
    let err = |e: io::Error| SocketError::NotListening {
        fd,
        reason: e.to_string(),
    };
    std_listener.set_nonblocking(true).map_err(err)?;
    let listener = UnixListener::from_std(std_listener).map_err(err)?;
    tracing::info!(fd, name = %name, socket = ?bound, "using the socket systemd passed");
    Ok(Listener {
        listener,
        origin: Origin::Passed {
            fd,
            name,
            path: bound,
        },
    })
}

/// A listening unix stream socket, and the path it is bound to (None for
/// an abstract or unnamed one).
fn check_listening(fd: &OwnedFd) -> Result<Option<PathBuf>, String> {
    let kind =
        getsockopt(&fd.as_fd(), sockopt::SockType).map_err(|e| format!("not a socket ({e})"))?;
    if kind != SockType::Stream {
        return Err(format!("a {kind:?} socket, not a stream"));
    }
    let listening = getsockopt(&fd.as_fd(), sockopt::AcceptConn).map_err(|e| e.to_string())?;
    if !listening {
        return Err("not listening".into());
    }
    let address: UnixAddr = getsockname(std::os::fd::AsRawFd::as_raw_fd(fd))
        .map_err(|e| format!("not a unix socket ({e})"))?;
    Ok(address.path().map(Path::to_owned))
}

/// Binds the plugin's socket (see [`bind_as`]).
pub async fn bind(path: &Path) -> Result<Listener, SocketError> {
    bind_as(path, "--socket").await
}

/// Binds a socket with mode 0660, replacing a stale socket file but never
/// one that a live process still answers on, nor anything but a socket.
/// `flag` is the setting that named it, for the error.
pub async fn bind_as(path: &Path, flag: &'static str) -> Result<Listener, SocketError> {
    let err = |source| SocketError::Bind {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(SocketError::NotASocket {
                path: path.to_owned(),
                flag,
            });
        }
        if UnixStream::connect(path).await.is_ok() {
            return Err(SocketError::InUse {
                path: path.to_owned(),
                flag,
            });
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(err)?;
    let meta = std::fs::symlink_metadata(path).map_err(err)?;
    Ok(Listener {
        listener,
        origin: Origin::Bound {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
        },
    })
}
