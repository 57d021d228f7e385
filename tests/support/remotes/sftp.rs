//! SFTP: the test sshd (stock configuration) with password logins, for the
//! same checks as the other remote kinds.

use std::path::PathBuf;

use super::{obscured, Remote};
use crate::support::password_user::{PASSWORD_USER, TEST_PASSWORD};
use crate::support::rclone;
use crate::support::sshd::Sshd;

pub struct Sftp {
    pub sshd: Sshd,
    obscured: String,
}

impl Sftp {
    pub fn start() -> Sftp {
        Sftp {
            sshd: Sshd::with_password(),
            obscured: rclone::obscure(TEST_PASSWORD),
        }
    }
}

impl Remote for Sftp {
    fn backend(&self) -> &'static str {
        "sftp"
    }

    fn options(&self, secret: &str) -> Vec<(&'static str, String)> {
        vec![
            ("host", "127.0.0.1".into()),
            ("port", self.sshd.port().to_string()),
            ("user", PASSWORD_USER.into()),
            ("pass", obscured(secret, TEST_PASSWORD, &self.obscured)),
            ("shell_type", "unix".into()),
        ]
    }

    fn path(&self, sub: &str) -> String {
        self.sshd.remote_dir().join(sub).display().to_string()
    }

    fn disk(&self, sub: &str) -> PathBuf {
        self.sshd.remote_dir().join(sub)
    }

    fn secret(&self) -> &str {
        TEST_PASSWORD
    }

    fn refusal(&self) -> &'static str {
        "couldn't connect SSH: ssh: handshake failed"
    }
}
