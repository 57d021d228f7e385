//! The kernel's view of mounts, for deciding when something is mounted and
//! readable: `/proc/self/mountinfo`, reads bounded in time (a dead FUSE
//! mount must not hang the benchmark), lazy unmount.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Result};

// Mountinfo is read by netfs's own parser (one per kernel file); an
// unreadable table counts as "nothing mounted" here.

pub fn is_mounted(path: &Path) -> bool {
    netfs::mounts::is_mounted(path).unwrap_or(false)
}

/// Mount points strictly below `root`.
pub fn mounted_under(root: &Path) -> Vec<PathBuf> {
    netfs::mounts::mounted_under(root).unwrap_or_default()
}

/// Lazily detaches whatever is mounted at `path`; "not mounted" is success.
pub fn lazy_unmount(path: &Path) {
    let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
}

/// Detaches every mount below `root`, deepest first.
pub fn unmount_all_under(root: &Path) {
    let mut points = mounted_under(root);
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        lazy_unmount(&p);
    }
}

/// Reads a whole file on a blocking thread; gives up waiting after `within`.
pub async fn read_within(path: &Path, within: Duration) -> Result<String> {
    let owned = path.to_owned();
    let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(owned));
    match tokio::time::timeout(within, read).await {
        Ok(Ok(Ok(text))) => Ok(text),
        Ok(Ok(Err(e))) => Err(anyhow!("read {}: {e}", path.display())),
        Ok(Err(join)) => Err(anyhow!("read {}: {join}", path.display())),
        Err(_) => Err(anyhow!(
            "read {}: no answer within {within:?}",
            path.display()
        )),
    }
}

/// True if `path` reads back exactly `want`.
pub async fn reads(path: &Path, want: &str, within: Duration) -> bool {
    matches!(read_within(path, within).await, Ok(text) if text == want)
}

pub fn ensure_dir(path: &Path) -> io::Result<()> {
    std::fs::create_dir_all(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_mounted() {
        assert!(is_mounted(Path::new("/")));
    }
}
