//! Real servers of each remote kind rclone mounts, on 127.0.0.1, each with a
//! data directory the tests read to see what landed on the server's disk:
//! S3 (`rclone serve s3` of the pinned rclone), WebDAV (Apache mod_dav),
//! SMB (Samba's smbd), FTP (vsftpd) and SFTP (the test sshd). Each runs
//! from a configuration of its own in a temporary directory, on a free port,
//! and is killed with all its children when dropped.

mod ftp;
mod s3;
mod sftp;
mod smb;
mod webdav;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::mounts::{kill_tree, poll_until};
use super::stock_sshd::PortLease;

#[allow(unused_imports)]
pub use {ftp::Ftp, s3::S3, sftp::Sftp, smb::Smb, webdav::WebDav};

/// How long a server gets to listen after it starts.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(20);

/// What a test needs of a server to mount it through rclone.
pub trait Remote {
    /// rclone's name of the backend: `s3`, `webdav`, `smb`, `ftp`, `sftp`.
    fn backend(&self) -> &'static str;
    /// The options of an rclone remote for this server with `secret` as
    /// its password or secret key (obscured where rclone wants it so),
    /// as `key=value` pairs, values unquoted.
    fn options(&self, secret: &str) -> Vec<(&'static str, String)>;
    /// The remote path that lands in [`Remote::disk`]'s `sub`.
    fn path(&self, sub: &str) -> String;
    /// Where the server keeps `sub` on its disk.
    fn disk(&self, sub: &str) -> PathBuf;
    /// The right password or secret key, in plain text.
    fn secret(&self) -> &str;
    /// What rclone says when the password or key is wrong.
    fn refusal(&self) -> &'static str;

    /// The on-the-fly remote `:backend,k=v,...:path` (a value holding `:`
    /// or `,` in double quotes, as rclone reads it).
    fn on_the_fly(&self, sub: &str, secret: &str) -> String {
        let params: Vec<String> = self
            .options(secret)
            .into_iter()
            .map(|(k, v)| {
                if v.contains([':', ',', '"']) {
                    format!("{k}=\"{}\"", v.replace('"', "\"\""))
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        format!(
            ":{},{}:{}",
            self.backend(),
            params.join(","),
            self.path(sub)
        )
    }

    /// An rclone.conf section defining remote `name` for this server.
    fn conf_section(&self, name: &str) -> String {
        let mut text = format!("[{name}]\ntype = {}\n", self.backend());
        for (k, v) in self.options(self.secret()) {
            text.push_str(&format!("{k} = {v}\n"));
        }
        text
    }

    /// Every form of the secret that must never show: the plain one and
    /// what rclone was given for it.
    fn secret_forms(&self) -> Vec<String> {
        let mut forms = vec![self.secret().to_owned()];
        forms.extend(
            self.options(self.secret())
                .into_iter()
                .filter(|(k, _)| k.contains("pass") || k.contains("secret"))
                .map(|(_, v)| v),
        );
        forms
    }
}

/// A server process with its own directory (config, logs) and data
/// directory, killed with its children when dropped.
pub struct Daemon {
    what: &'static str,
    pub dir: TempDir,
    pub data: TempDir,
    pub port: u16,
    child: Child,
    _lease: PortLease,
}

impl Daemon {
    /// Makes the directories (both 0755: servers that drop privileges must
    /// reach the data) and hands them to `prepare`, which writes the
    /// configuration for a port and returns the command that serves it.
    /// Retried on another port when the server dies before listening (a
    /// port taken meanwhile).
    pub fn start(what: &'static str, prepare: impl Fn(&Path, &Path, u16) -> Command) -> Daemon {
        let dir = private_dir(&format!("netfs-{what}-"));
        let data = private_dir(&format!("netfs-{what}-data-"));
        let log_path = dir.path().join("server.log");
        let mut last = String::new();
        for _ in 0..5 {
            let lease = PortLease::take().unwrap_or_else(|e| panic!("{e}"));
            let port = lease.port();
            let log = fs::File::options()
                .create(true)
                .append(true)
                .open(&log_path)
                .expect("open the server log");
            let mut cmd = prepare(dir.path(), data.path(), port);
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start the {what} server {cmd:?}: {e}"));
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let mut exited = false;
            poll_until(LISTEN_TIMEOUT, || {
                exited = matches!(child.try_wait(), Ok(Some(_)));
                exited || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            });
            if !exited && matches!(child.try_wait(), Ok(None)) {
                return Daemon {
                    what,
                    dir,
                    data,
                    port,
                    child,
                    _lease: lease,
                };
            }
            kill_tree(child.id() as i32);
            let _ = child.kill();
            let _ = child.wait();
            last = fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("the {what} server did not listen in 5 tries:\n{last}");
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        kill_tree(pid);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.what;
    }
}

fn private_dir(prefix: &str) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a server directory");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
        .expect("chmod the server directory 0755");
    dir
}

/// `chown -R user:` of a path (a server that writes as that user).
pub fn give_to(path: &Path, user: &str) {
    let out = super::cmd::run(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{user}:"))
            .arg(path),
        super::cmd::DEFAULT_TIMEOUT,
    );
    assert!(
        out.status.success(),
        "chown {user} {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `secret` obscured for rclone: the one kept for the right password (so
/// that it can be looked for), a fresh one for any other.
fn obscured(secret: &str, right: &str, kept: &str) -> String {
    if secret == right {
        kept.to_owned()
    } else {
        super::rclone::obscure(secret)
    }
}
