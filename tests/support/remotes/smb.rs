//! SMB: Samba's smbd on a high port of 127.0.0.1, one share `data` for the
//! password user (a local account, as Samba maps users to accounts), its
//! password in a passdb of its own. rclone's smb backend is a client in
//! user space: no kernel CIFS needed.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use super::{give_to, obscured, Daemon, Remote};
use crate::support::password_user::{self, PASSWORD_USER};
use crate::support::{cmd, rclone};

pub const PASSWORD: &str = "smb pw,=&1:x";
const SHARE: &str = "data";

pub struct Smb {
    pub daemon: Daemon,
    obscured: String,
}

impl Smb {
    pub fn start() -> Smb {
        password_user::ensure();
        let daemon = Daemon::start("smb", |dir, data, port| {
            give_to(data, PASSWORD_USER);
            let state = dir.join("state");
            fs::create_dir_all(state.join("ncalrpc")).expect("create smbd's state dir");
            let s = state.display();
            let conf = format!(
                "[global]\n  smb ports = {port}\n  interfaces = 127.0.0.1\n  \
                 bind interfaces only = yes\n  private dir = {s}\n  lock directory = {s}\n  \
                 state directory = {s}\n  cache directory = {s}\n  pid directory = {s}\n  \
                 ncalrpc dir = {s}/ncalrpc\n  passdb backend = tdbsam:{s}/passdb.tdb\n  \
                 log file = {}/smbd.log\n  disable spoolss = yes\n  load printers = no\n  \
                 server role = standalone server\n  server min protocol = SMB2\n\
                 [{SHARE}]\n  path = {}\n  read only = no\n  valid users = {PASSWORD_USER}\n",
                dir.display(),
                data.display()
            );
            let conf_path = dir.join("smb.conf");
            fs::write(&conf_path, conf).expect("write smb.conf");
            let input = format!("{PASSWORD}\n{PASSWORD}\n");
            let out = cmd::run_input(
                Command::new("smbpasswd").arg("-c").arg(&conf_path).args([
                    "-a",
                    "-s",
                    PASSWORD_USER,
                ]),
                Some(input.as_bytes()),
                cmd::DEFAULT_TIMEOUT,
            );
            assert!(
                out.status.success(),
                "smbpasswd: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let mut cmd = Command::new("smbd");
            cmd.args(["--foreground", "--no-process-group", "--debug-stdout", "-s"])
                .arg(conf_path);
            cmd
        });
        Smb {
            daemon,
            obscured: rclone::obscure(PASSWORD),
        }
    }
}

impl Remote for Smb {
    fn backend(&self) -> &'static str {
        "smb"
    }

    fn options(&self, secret: &str) -> Vec<(&'static str, String)> {
        vec![
            ("host", "127.0.0.1".into()),
            ("port", self.daemon.port.to_string()),
            ("user", PASSWORD_USER.into()),
            ("pass", obscured(secret, PASSWORD, &self.obscured)),
        ]
    }

    fn path(&self, sub: &str) -> String {
        format!("{SHARE}/{sub}")
    }

    fn disk(&self, sub: &str) -> PathBuf {
        self.daemon.data.path().join(sub)
    }

    fn secret(&self) -> &str {
        PASSWORD
    }

    fn refusal(&self) -> &'static str {
        "The attempted logon is invalid"
    }
}
