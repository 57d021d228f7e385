//! A host for unit tests: processes, namespaces and mount tables are what
//! the test says, and every attach asked of it is recorded (and answered
//! as the test scripted).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use nix::errno::Errno;

use super::{Attach, AttachError, Host};
use crate::procfs::{self, MountEntry};

#[derive(Default)]
pub struct Recorded {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    own: u64,
    /// Our own mount table.
    mounts: String,
    /// pid → (namespace, container).
    processes: BTreeMap<i32, (u64, Option<String>)>,
    /// namespace → its mount table.
    tables: BTreeMap<u64, String>,
    vanished: Vec<i32>,
    /// Targets whose attach fails with EPERM.
    refuse: Vec<PathBuf>,
    /// Targets whose namespace is gone when it is entered.
    gone: Vec<PathBuf>,
    attaches: Vec<Attach>,
}

impl Recorded {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// netfs runs in namespace `ns` with this mount table.
    pub fn own(&self, ns: u64, mountinfo: &str) {
        let mut inner = self.inner();
        inner.own = ns;
        inner.mounts = mountinfo.to_owned();
    }

    /// A process `pid` in namespace `ns`, in `container` if any.
    pub fn process(&self, pid: i32, ns: u64, container: Option<&str>) {
        self.inner()
            .processes
            .insert(pid, (ns, container.map(str::to_owned)));
    }

    /// `pid` is listed, but gone when its mount table is read.
    pub fn vanish(&self, pid: i32) {
        self.inner().vanished.push(pid);
    }

    /// The mount table of namespace `ns`.
    pub fn table(&self, ns: u64, mountinfo: &str) {
        self.inner().tables.insert(ns, mountinfo.to_owned());
    }

    /// An attach at `target` will fail.
    pub fn refuse(&self, target: &str) {
        self.inner().refuse.push(target.into());
    }

    /// The namespace holding `target` goes away before it is entered.
    pub fn gone(&self, target: &str) {
        self.inner().gone.push(target.into());
    }

    pub fn attaches(&self) -> Vec<Attach> {
        self.inner().attaches.clone()
    }
}

impl Host for Recorded {
    fn mount_at(&self, path: &Path) -> io::Result<Option<MountEntry>> {
        Ok(procfs::parse_mountinfo(&self.inner().mounts)
            .into_iter()
            .rev()
            .find(|m| m.mount_point == path))
    }

    fn own_namespace(&self) -> io::Result<u64> {
        Ok(self.inner().own)
    }

    fn namespaces(&self) -> Vec<(i32, u64)> {
        let inner = self.inner();
        inner
            .processes
            .iter()
            .map(|(p, (ns, _))| (*p, *ns))
            .collect()
    }

    fn mountinfo(&self, pid: i32) -> io::Result<String> {
        let inner = self.inner();
        if inner.vanished.contains(&pid) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let (ns, _) = inner.processes.get(&pid).ok_or(io::ErrorKind::NotFound)?;
        inner
            .tables
            .get(ns)
            .cloned()
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    fn container(&self, pid: i32) -> Option<String> {
        self.inner().processes.get(&pid)?.1.clone()
    }

    fn attach(&self, attach: &Attach) -> Result<(), AttachError> {
        let mut inner = self.inner();
        inner.attaches.push(attach.clone());
        if inner.gone.contains(&attach.target.mount_point) {
            return Err(AttachError::Gone { pid: attach.pid });
        }
        if inner.refuse.contains(&attach.target.mount_point) {
            return Err(AttachError::Call {
                step: "move_mount",
                source: Errno::EPERM,
            });
        }
        Ok(())
    }
}
