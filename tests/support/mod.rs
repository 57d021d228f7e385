//! Fixtures shared by every integration test: a real sshd on 127.0.0.1, the
//! netfs binary on a private socket, a plugin-protocol client, docker CLI
//! helpers and mount/process inspection. Include it from a test crate with
//! `#[path = "support/mod.rs"] mod support;` (or `"../support/mod.rs"`).
//! Tests wait with [`mounts::wait_until`], never with fixed sleeps.
#![allow(dead_code)]

pub mod calls;
pub mod client;
pub mod cmd;
pub mod docker;
pub mod driver_pool;
pub mod fuse;
pub mod mounts;
pub mod password_user;
pub mod plugin;
pub mod sshd;
pub mod stock_sshd;

use std::sync::atomic::{AtomicUsize, Ordering};

#[allow(unused_imports)]
pub use mounts::wait_until;

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

/// A name unique within this machine's running tests: `<prefix>-<pid>-<n>`.
/// It is a valid volume, container and driver name when `prefix` is.
pub fn unique_name(prefix: &str) -> String {
    let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}
