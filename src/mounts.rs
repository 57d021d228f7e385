//! What the kernel says about mounts: `/proc/self/mountinfo`, a bounded
//! `stat` probe that notices dead FUSE mounts, and lazy unmount.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sys_mount::UnmountFlags;

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Undoes mountinfo's octal escapes (`\040` for a space, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let digits = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(digits, 8).ok()
        });
        match octal {
            Some(byte) if bytes[i] == b'\\' => {
                out.push(byte);
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

/// Mount points listed in a mountinfo text.
pub fn parse_mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .collect()
}

pub fn mount_points() -> io::Result<Vec<PathBuf>> {
    Ok(parse_mount_points(&std::fs::read_to_string(MOUNTINFO)?))
}

pub fn is_mounted(path: &Path) -> io::Result<bool> {
    Ok(mount_points()?.iter().any(|p| p == path))
}

/// Mount points strictly below `root`.
pub fn mounted_under(root: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(mount_points()?
        .into_iter()
        .filter(|p| p != root && p.starts_with(root))
        .collect())
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

/// `stat`s `path` on a blocking thread, giving up after `timeout` so a hung
/// network mount never stalls the caller.
pub async fn probe(path: &Path, timeout: Duration) -> Probe {
    let path = path.to_owned();
    let task = tokio::task::spawn_blocking(move || std::fs::metadata(&path));
    match tokio::time::timeout(timeout, task).await {
        Err(_) => Probe::Hung,
        Ok(Err(join)) => Probe::Error(join.to_string()),
        Ok(Ok(Ok(_))) => Probe::Answering,
        Ok(Ok(Err(e))) if e.raw_os_error() == Some(nix::libc::ENOTCONN) => Probe::NotConnected,
        Ok(Ok(Err(e))) => Probe::Error(e.to_string()),
    }
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
    fn unmounting_a_plain_directory_is_success() {
        let dir = tempfile::tempdir().unwrap();
        lazy_unmount(dir.path()).unwrap();
        lazy_unmount(&dir.path().join("missing")).unwrap();
    }
}
