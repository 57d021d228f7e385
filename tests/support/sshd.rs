//! A real OpenSSH server on 127.0.0.1 serving a temporary directory: the
//! remote every sshfs and rclone test mounts, with a stock configuration
//! of either flavour (see [`stock_sshd`]). Keys, config and log live in a private temporary
//! directory; the server can be stopped and started again on the same port
//! with the same keys, to take the remote away.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Child;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::mounts::{self, kill_tree};
use super::password_user;
use super::stock_sshd;
pub use super::stock_sshd::Flavour;

#[allow(unused_imports)]
pub use super::password_user::{PASSWORD_USER, TEST_PASSWORD};

/// Where every test sshd keeps its keys: the key directory (`KEY_DIR`) the
/// test plugins get, so volumes name their keys as users do, inside it.
pub const KEY_DIR: &str = "/run/netfs-test/keys";

pub struct Sshd {
    dir: TempDir,
    remote: TempDir,
    port: stock_sshd::PortLease,
    password: bool,
    flavour: Flavour,
    child: Option<Child>,
}

impl Sshd {
    /// Generates keys and starts sshd with root key login only.
    pub fn new() -> Sshd {
        Sshd::launch(false, Flavour::OpenSsh)
    }

    /// Like [`Sshd::new`], with the configuration of `flavour`.
    pub fn of(flavour: Flavour) -> Sshd {
        Sshd::launch(false, flavour)
    }

    /// Like [`Sshd::new`], and also accepts password logins for
    /// [`PASSWORD_USER`] with [`TEST_PASSWORD`]. The account is created once
    /// per machine (useradd, no home, shell nologin: it can only do sftp)
    /// and its password set with chpasswd; the remote dir is given to it.
    pub fn with_password() -> Sshd {
        password_user::ensure();
        Sshd::launch(true, Flavour::OpenSsh)
    }

    fn launch(password: bool, flavour: Flavour) -> Sshd {
        fs::create_dir_all(KEY_DIR).expect("create the test key directory");
        fs::set_permissions(KEY_DIR, fs::Permissions::from_mode(0o700))
            .expect("chmod the test key directory 0700");
        let dir = tempfile::Builder::new()
            .prefix("netfs-sshd-")
            .tempdir_in(KEY_DIR)
            .expect("create sshd temp dir");
        let remote = tempfile::Builder::new()
            .prefix("netfs-remote-")
            .tempdir()
            .expect("create remote temp dir");
        fs::set_permissions(remote.path(), fs::Permissions::from_mode(0o755))
            .expect("chmod remote dir 0755");
        if password {
            password_user::give(remote.path());
        }
        stock_sshd::make_keys(dir.path(), "netfs-test").unwrap_or_else(|e| panic!("{e}"));
        let (child, port) = stock_sshd::start(dir.path(), password, flavour)
            .unwrap_or_else(|e| panic!("sshd did not start: {e}"));
        Sshd {
            dir,
            remote,
            port,
            password,
            flavour,
            child: Some(child),
        }
    }

    /// Starts sshd again after [`Sshd::stop`]: same port, keys and remote.
    /// Does nothing if it is running.
    pub fn start(&mut self) {
        if self.is_running() {
            return;
        }
        match stock_sshd::spawn(self.dir.path(), self.port.port(), self.flavour) {
            Ok(child) => self.child = Some(child),
            Err(log) => panic!(
                "sshd did not start again on port {}:\n{log}",
                self.port.port()
            ),
        }
    }

    /// Takes the remote down: kills the listener and every connection it
    /// serves, so clients see their sessions drop. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as i32;
        // Freeze the listener so it accepts nothing new, then its sessions.
        let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
        kill_tree(pid);
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Drops every open ssh connection but keeps accepting new ones: a
    /// network blip as clients see it.
    pub fn kill_connections(&self) {
        if let Some(child) = &self.child {
            let pid = Pid::from_raw(child.id() as i32);
            let _ = kill(pid, Signal::SIGSTOP);
            kill_tree(child.id() as i32);
            let _ = kill(pid, Signal::SIGCONT);
        }
    }

    /// True while the listener process is alive.
    pub fn is_running(&self) -> bool {
        self.child
            .as_ref()
            .is_some_and(|c| mounts::process_alive(c.id() as i32))
    }

    /// The listener's pid while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    pub fn port(&self) -> u16 {
        self.port.port()
    }

    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// The `sshd_config` it runs with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("sshd_config")
    }

    /// Private key that logs in as root (0600, no passphrase).
    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// The directory the remote serves (world-readable; owned by
    /// [`PASSWORD_USER`] for [`Sshd::with_password`]).
    pub fn remote_dir(&self) -> &Path {
        self.remote.path()
    }

    /// Absolute path of `subdir` in the remote, created if missing; `""` is
    /// the remote dir itself.
    pub fn remote_path(&self, subdir: &str) -> PathBuf {
        let path = if subdir.is_empty() {
            self.remote.path().to_path_buf()
        } else {
            self.remote.path().join(subdir)
        };
        fs::create_dir_all(&path).expect("create remote subdir");
        if self.password {
            password_user::give(&path);
        }
        path
    }

    /// sshfs source for root: `root@127.0.0.1:<abs dir>`.
    pub fn source(&self, subdir: &str) -> String {
        format!("root@127.0.0.1:{}", self.remote_path(subdir).display())
    }

    /// sshfs source for [`PASSWORD_USER`]: `netfs-test@127.0.0.1:<abs dir>`.
    pub fn password_source(&self, subdir: &str) -> String {
        format!(
            "{PASSWORD_USER}@127.0.0.1:{}",
            self.remote_path(subdir).display()
        )
    }

    /// mtab-style sshfs options that log in with [`Sshd::key_path`].
    pub fn sshfs_options(&self) -> String {
        format!(
            "port={},IdentityFile={},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null",
            self.port.port(),
            self.key_path().display()
        )
    }

    /// mtab-style sshfs options for a password login (add `password_stdin`
    /// or let the plugin do so): no key is offered.
    pub fn password_sshfs_options(&self) -> String {
        format!(
            "port={},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,\
             PubkeyAuthentication=no,PreferredAuthentications=password",
            self.port.port()
        )
    }

    /// rclone on-the-fly remote for `subdir` over this sshd, e.g. for
    /// `rclone lsf` or `rclone mount`.
    pub fn rclone_remote(&self, subdir: &str) -> String {
        format!(
            ":sftp,host=127.0.0.1,port={},user=root,key_file={},shell_type=unix:{}",
            self.port.port(),
            self.key_path().display(),
            self.remote_path(subdir).display()
        )
    }

    /// What sshd wrote: every connection, login and refusal (`LogLevel VERBOSE`).
    pub fn log(&self) -> String {
        let bytes = fs::read(self.dir.path().join("sshd.log")).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The log lines saying sshd refused connections past `MaxStartups`.
    pub fn throttled(&self) -> Vec<String> {
        stock_sshd::throttled(&self.log())
            .into_iter()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Tests of `fn name(Flavour)` against each stock server: `name::openssh`
/// (OpenSSH's defaults) and `name::debian` (Debian's `sshd_config`).
#[macro_export]
macro_rules! against_both_servers {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use $crate::support::sshd::Flavour;

            #[test]
            fn openssh() {
                super::$name(Flavour::OpenSsh)
            }

            #[test]
            fn debian() {
                super::$name(Flavour::Debian)
            }
        }
    )*};
}
