//! The rclone the tests run: the one scripts/rclone.lock pins, which
//! scripts/setup.sh unpacks into the cache; test plugins find it first in
//! their PATH, as an operator's host service finds its own rclone.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use super::cmd;

/// The pinned version, e.g. `1.75.2`.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let lock = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rclone.lock");
        let text = std::fs::read_to_string(lock).unwrap_or_else(|e| panic!("read {lock}: {e}"));
        text.lines()
            .find_map(|l| l.strip_prefix("version="))
            .unwrap_or_else(|| panic!("{lock} has no version= line"))
            .trim()
            .to_owned()
    })
}

/// The directory holding the pinned `rclone` binary.
pub fn dir() -> PathBuf {
    let cache = std::env::var_os("NETFS_CACHE").unwrap_or_else(|| "/var/cache/netfs".into());
    let dir = PathBuf::from(cache).join(format!("rclone-{}", version()));
    assert!(
        dir.join("rclone").is_file(),
        "the pinned rclone {} is not in {}: run scripts/setup.sh (make test does)",
        version(),
        dir.display()
    );
    dir
}

pub fn binary() -> PathBuf {
    dir().join("rclone")
}

/// A password as rclone wants it in a config file or connection string
/// (`rclone obscure`: reversible, so a secret as much as the password).
pub fn obscure(password: &str) -> String {
    let out = cmd::run_input(
        Command::new(binary()).args(["obscure", "-"]),
        Some(password.as_bytes()),
        cmd::DEFAULT_TIMEOUT,
    );
    assert!(
        out.status.success(),
        "rclone obscure: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
