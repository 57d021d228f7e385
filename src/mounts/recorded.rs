//! A mount table for unit tests: mounts are what the test (or its scripted
//! tool) says, and every change asked of it is recorded. Directories are
//! real, so a test sees what the driver leaves on disk.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::MountTable;

/// A change the code under test asked of the mount table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    LazyUnmount(PathBuf),
    RemoveMountPoint(PathBuf),
    Bind {
        source: PathBuf,
        target: PathBuf,
        read_only: bool,
    },
}

#[derive(Default)]
pub struct Recorded {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    mounted: BTreeSet<PathBuf>,
    calls: Vec<Call>,
    /// Binds fail while set (the kernel refused).
    refuse_binds: bool,
}

impl Recorded {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Something is mounted at `path` from now on.
    pub fn mount(&self, path: &Path) {
        self.inner().mounted.insert(path.to_owned());
    }

    /// Nothing is mounted at `path` from now on (not recorded as a call).
    pub fn unmount(&self, path: &Path) {
        self.inner().mounted.remove(path);
    }

    /// Binds fail from now on, or work again.
    pub fn refuse_binds(&self, refuse: bool) {
        self.inner().refuse_binds = refuse;
    }

    /// What is mounted now.
    pub fn mounted(&self) -> Vec<PathBuf> {
        self.inner().mounted.iter().cloned().collect()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner().calls.clone()
    }
}

impl MountTable for Recorded {
    fn is_mounted(&self, path: &Path) -> io::Result<bool> {
        Ok(self.inner().mounted.contains(path))
    }

    fn mounted_under(&self, root: &Path) -> io::Result<Vec<PathBuf>> {
        let inner = self.inner();
        let mut under: Vec<PathBuf> = inner
            .mounted
            .iter()
            .filter(|p| *p != root && p.starts_with(root))
            .cloned()
            .collect();
        under.reverse();
        Ok(under)
    }

    fn lazy_unmount(&self, path: &Path) -> io::Result<()> {
        let mut inner = self.inner();
        inner.mounted.remove(path);
        inner.calls.push(Call::LazyUnmount(path.to_owned()));
        Ok(())
    }

    fn remove_mount_point(&self, path: &Path) -> io::Result<bool> {
        let mut inner = self.inner();
        inner.calls.push(Call::RemoveMountPoint(path.to_owned()));
        if inner.mounted.contains(path) {
            return Ok(false);
        }
        std::fs::remove_dir(path)?;
        Ok(true)
    }

    fn bind(&self, source: &Path, target: &Path, read_only: bool) -> io::Result<()> {
        let mut inner = self.inner();
        inner.calls.push(Call::Bind {
            source: source.to_owned(),
            target: target.to_owned(),
            read_only,
        });
        if inner.refuse_binds {
            return Err(io::Error::from_raw_os_error(nix::libc::EPERM));
        }
        if !target.is_dir() {
            return Err(io::Error::from_raw_os_error(nix::libc::ENOENT));
        }
        inner.mounted.insert(target.to_owned());
        Ok(())
    }
}
