//! FTP: vsftpd in the foreground on 127.0.0.1, local logins for the
//! password user through a PAM service of its own (Debian's `vsftpd` one
//! asks for a login shell, which that user lacks), landing in the data
//! directory.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use super::{give_to, obscured, Daemon, Remote};
use crate::support::password_user::{self, PASSWORD_USER, TEST_PASSWORD};
use crate::support::rclone;

const PAM_SERVICE: &str = "netfs-test-ftp";

pub struct Ftp {
    pub daemon: Daemon,
    obscured: String,
}

impl Ftp {
    pub fn start() -> Ftp {
        password_user::ensure();
        // vsftpd changes to the user's home before its local_root.
        let home = PathBuf::from("/home").join(PASSWORD_USER);
        fs::create_dir_all(&home).expect("create the password user's home");
        give_to(&home, PASSWORD_USER);
        fs::write(
            format!("/etc/pam.d/{PAM_SERVICE}"),
            "auth required pam_unix.so\naccount required pam_unix.so\nsession required pam_unix.so\n",
        )
        .expect("write the test PAM service");
        let daemon = Daemon::start("ftp", |dir, data, port| {
            give_to(data, PASSWORD_USER);
            let empty = dir.join("empty");
            fs::create_dir_all(&empty).expect("create vsftpd's secure_chroot_dir");
            let conf = format!(
                "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\n\
                 background=NO\nanonymous_enable=NO\nlocal_enable=YES\nwrite_enable=YES\n\
                 local_umask=022\nlocal_root={}\npam_service_name={PAM_SERVICE}\n\
                 secure_chroot_dir={}\nseccomp_sandbox=NO\npasv_enable=YES\n\
                 pasv_address=127.0.0.1\nuserlist_enable=NO\nxferlog_enable=NO\n",
                data.display(),
                empty.display()
            );
            fs::write(dir.join("vsftpd.conf"), conf).expect("write vsftpd.conf");
            let mut cmd = Command::new("vsftpd");
            cmd.arg(dir.join("vsftpd.conf"));
            cmd
        });
        Ftp {
            daemon,
            obscured: rclone::obscure(TEST_PASSWORD),
        }
    }
}

impl Remote for Ftp {
    fn backend(&self) -> &'static str {
        "ftp"
    }

    fn options(&self, secret: &str) -> Vec<(&'static str, String)> {
        vec![
            ("host", "127.0.0.1".into()),
            ("port", self.daemon.port.to_string()),
            ("user", PASSWORD_USER.into()),
            ("pass", obscured(secret, TEST_PASSWORD, &self.obscured)),
        ]
    }

    fn path(&self, sub: &str) -> String {
        sub.to_owned()
    }

    fn disk(&self, sub: &str) -> PathBuf {
        self.daemon.data.path().join(sub)
    }

    fn secret(&self) -> &str {
        TEST_PASSWORD
    }

    fn refusal(&self) -> &'static str {
        "530 \"Login incorrect.\""
    }
}
