//! Fixtures shared by every integration test: a real sshd on 127.0.0.1, the
//! netfs binary (or the library in-process) on a private socket, a
//! plugin-protocol client, docker CLI helpers and mount/process inspection.
//! Include it from a test crate with `#[path = "support/mod.rs"] mod
//! support;` (or `"../support/mod.rs"`).
//! Tests wait with [`mounts::wait_until`], never with fixed sleeps.
#![allow(dead_code)]

pub mod calls;
pub mod client;
pub mod cmd;
pub mod compose;
pub mod docker;
pub mod driver_pool;
pub mod fuse;
pub mod gate;
pub mod in_process;
pub mod ledger;
pub mod mounts;
pub mod password_user;
pub mod plugin;
pub mod rclone;
pub mod remotes;
pub mod sshd;
pub mod stock_sshd;

use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

#[allow(unused_imports)]
pub use mounts::wait_until;

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

/// A name unique within this machine's running tests: `<prefix>-<pid>-<n>`.
/// It is a valid volume, container and driver name when `prefix` is.
pub fn unique_name(prefix: &str) -> String {
    let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// An exclusive `flock` on `path` (created if missing), polled for up to
/// `timeout` so that a stuck holder fails the test instead of hanging it.
pub fn exclusive_lock(path: &str, timeout: Duration) -> Flock<File> {
    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    }
    let mut file = Some(
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open {path}: {e}")),
    );
    let mut lock = None;
    let taken = mounts::poll_until(timeout, || {
        match Flock::lock(
            file.take().expect("a file"),
            FlockArg::LockExclusiveNonblock,
        ) {
            Ok(l) => lock = Some(l),
            Err((f, _)) => file = Some(f),
        }
        lock.is_some()
    });
    assert!(taken, "{path} stayed taken for {timeout:?}");
    lock.expect("the lock")
}

/// Files directly in `dir`, sorted by name, with their contents (a remote
/// directory that replicas or services wrote to).
pub fn files_in(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .map(|e| {
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    (e.file_name().to_string_lossy().into_owned(), text)
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// Prints one line of a suite's numbers straight to stderr, so it shows in
/// `make test` output even though the test harness captures `println!`.
pub fn report(suite: &str, line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "netfs-suite {suite}: {line}");
}
