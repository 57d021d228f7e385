//! The local account that password logins use: `netfs-test`, created once
//! per machine with useradd (no home, shell nologin, so it can only do
//! sftp through the test sshd) and given [`TEST_PASSWORD`] with chpasswd.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use super::cmd;

/// Local account that logs in with [`TEST_PASSWORD`].
pub const PASSWORD_USER: &str = "netfs-test";
/// Its password. Spaces and punctuation on purpose: it must reach the tool
/// unchanged, and be easy to grep for in logs that must not contain it.
pub const TEST_PASSWORD: &str = "netfs pw,=&1";

/// Makes `path` belong to [`PASSWORD_USER`], so it can write there.
pub fn give(path: &Path) {
    let user = nix::unistd::User::from_name(PASSWORD_USER)
        .expect("look up the password user")
        .expect("password user exists (call ensure first)");
    nix::unistd::chown(path, Some(user.uid), Some(user.gid))
        .unwrap_or_else(|e| panic!("chown {} to {PASSWORD_USER}: {e}", path.display()));
}

/// Creates [`PASSWORD_USER`] if missing and sets [`TEST_PASSWORD`], once per
/// test process.
pub fn ensure() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let exists = nix::unistd::User::from_name(PASSWORD_USER)
            .expect("look up the password user")
            .is_some();
        if !exists {
            let out = cmd::run(
                Command::new("useradd")
                    .args(["--no-create-home", "--shell", "/usr/sbin/nologin"])
                    .arg(PASSWORD_USER),
                cmd::DEFAULT_TIMEOUT,
            );
            // Exit 9: created meanwhile by another test process.
            assert!(
                out.status.success() || out.status.code() == Some(9),
                "useradd {PASSWORD_USER} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let line = format!("{PASSWORD_USER}:{TEST_PASSWORD}\n");
        let out = cmd::run_input(
            &mut Command::new("chpasswd"),
            Some(line.as_bytes()),
            cmd::DEFAULT_TIMEOUT,
        );
        assert!(
            out.status.success(),
            "chpasswd for {PASSWORD_USER} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}
