//! WebDAV: Apache httpd with mod_dav over a directory, basic auth for one
//! user from an htpasswd file. Apache serves as www-data, so the data
//! directory is that user's.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use super::{give_to, obscured, Daemon, Remote};
use crate::support::{cmd, rclone};

const USER: &str = "netfs-dav";
pub const PASSWORD: &str = "dav pw,=&1:x";
const MODULES: &str = "/usr/lib/apache2/modules";

pub struct WebDav {
    pub daemon: Daemon,
    obscured: String,
}

impl WebDav {
    pub fn start() -> WebDav {
        let daemon = Daemon::start("webdav", |dir, data, port| {
            let run = dir.join("run");
            fs::create_dir_all(&run).expect("create apache's run dir");
            give_to(data, "www-data");
            give_to(&run, "www-data");
            let htpasswd = dir.join("htpasswd");
            let out = cmd::run_input(
                Command::new("htpasswd")
                    .args(["-i", "-c", "-B"])
                    .arg(&htpasswd)
                    .arg(USER),
                Some(PASSWORD.as_bytes()),
                cmd::DEFAULT_TIMEOUT,
            );
            assert!(
                out.status.success(),
                "htpasswd: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let modules = [
                ("mpm_event", "mpm_event"),
                ("authz_core", "authz_core"),
                ("authz_user", "authz_user"),
                ("authn_core", "authn_core"),
                ("authn_file", "authn_file"),
                ("auth_basic", "auth_basic"),
                ("dav", "dav"),
                ("dav_fs", "dav_fs"),
            ]
            .iter()
            .map(|(m, f)| format!("LoadModule {m}_module {MODULES}/mod_{f}.so\n"))
            .collect::<String>();
            let (dir_s, run_s, data_s) = (dir.display(), run.display(), data.display());
            let conf = format!(
                "ServerRoot {dir_s}\nServerName 127.0.0.1\nListen 127.0.0.1:{port}\n\
                 PidFile {run_s}/httpd.pid\nDefaultRuntimeDir {run_s}\nMutex file:{run_s}\n\
                 ErrorLog /dev/stderr\nLogLevel warn\nUser www-data\nGroup www-data\n{modules}\
                 DavLockDB {run_s}/davlock\nDocumentRoot {data_s}\n\
                 <Directory {data_s}>\n  Dav On\n  AuthType Basic\n  AuthName netfs\n  \
                 AuthUserFile {}\n  Require valid-user\n</Directory>\n",
                htpasswd.display()
            );
            fs::write(dir.join("httpd.conf"), conf).expect("write httpd.conf");
            let mut cmd = Command::new("/usr/sbin/apache2");
            cmd.arg("-f")
                .arg(dir.join("httpd.conf"))
                .arg("-DFOREGROUND");
            cmd
        });
        WebDav {
            daemon,
            obscured: rclone::obscure(PASSWORD),
        }
    }
}

impl Remote for WebDav {
    fn backend(&self) -> &'static str {
        "webdav"
    }

    fn options(&self, secret: &str) -> Vec<(&'static str, String)> {
        vec![
            ("url", format!("http://127.0.0.1:{}/", self.daemon.port)),
            ("vendor", "other".into()),
            ("user", USER.into()),
            ("pass", obscured(secret, PASSWORD, &self.obscured)),
        ]
    }

    fn path(&self, sub: &str) -> String {
        sub.to_owned()
    }

    fn disk(&self, sub: &str) -> PathBuf {
        self.daemon.data.path().join(sub)
    }

    fn secret(&self) -> &str {
        PASSWORD
    }

    fn refusal(&self) -> &'static str {
        "401 Unauthorized"
    }
}
