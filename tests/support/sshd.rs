//! A real OpenSSH server on 127.0.0.1 serving a temporary directory: the
//! remote every sshfs and rclone test mounts. Keys, config and log live in
//! a private temporary directory; the server can be stopped and started
//! again on the same port with the same keys, to take the remote away.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::cmd;
use super::mounts::{self, kill_tree, poll_until};
use super::password_user;

#[allow(unused_imports)]
pub use super::password_user::{PASSWORD_USER, TEST_PASSWORD};

const SSHD: &str = "/usr/sbin/sshd";

/// Where every test sshd keeps its keys: the key directory (`KEY_DIR`) the
/// test plugins get, so volumes name their keys as users do, inside it.
pub const KEY_DIR: &str = "/run/netfs-test/keys";
const READY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Sshd {
    dir: TempDir,
    remote: TempDir,
    port: u16,
    password: bool,
    child: Option<Child>,
}

impl Sshd {
    /// Generates keys and starts sshd with root key login only.
    pub fn new() -> Sshd {
        Sshd::launch(false)
    }

    /// Like [`Sshd::new`], and also accepts password logins for
    /// [`PASSWORD_USER`] with [`TEST_PASSWORD`]. The account is created once
    /// per machine (useradd, no home, shell nologin: it can only do sftp)
    /// and its password set with chpasswd; the remote dir is given to it.
    pub fn with_password() -> Sshd {
        password_user::ensure();
        Sshd::launch(true)
    }

    fn launch(password: bool) -> Sshd {
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
        keygen(&dir.path().join("host_key"));
        keygen(&dir.path().join("client_key"));
        fs::copy(
            dir.path().join("client_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("write authorized_keys");
        fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let mut sshd = Sshd {
            dir,
            remote,
            port: 0,
            password,
            child: None,
        };
        // Another test may take the free port before sshd binds it: try again.
        for _ in 0..5 {
            sshd.port = free_port();
            sshd.write_config();
            match sshd.spawn() {
                Ok(()) => return sshd,
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!("sshd did not start:\n{log}"),
            }
        }
        panic!("sshd found no free port in 5 tries:\n{}", sshd.log())
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("sshd_config")
    }

    fn write_config(&self) {
        let d = self.dir.path().display();
        let pw = if self.password { "yes" } else { "no" };
        let cfg = format!(
            "Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {d}/host_key\n\
             AuthorizedKeysFile {d}/authorized_keys\n\
             PermitRootLogin prohibit-password\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication {pw}\n\
             KbdInteractiveAuthentication no\n\
             StrictModes no\n\
             PidFile {d}/sshd.pid\n\
             Subsystem sftp internal-sftp\n\
             UsePAM no\n\
             LogLevel ERROR\n\
             MaxStartups 100\n\
             MaxSessions 100\n",
            port = self.port,
        );
        fs::write(self.config_path(), cfg).expect("write sshd_config");
    }

    /// Starts sshd and waits until its port accepts connections; on failure
    /// returns its log.
    fn spawn(&mut self) -> Result<(), String> {
        let log_path = self.dir.path().join("sshd.log");
        let log = fs::File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open sshd.log");
        let pid_file = self.dir.path().join("sshd.pid");
        let _ = fs::remove_file(&pid_file);
        let mut child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone sshd.log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {SSHD}: {e}"));
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut exited = None;
        let ready = poll_until(READY_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
                return true;
            }
            // sshd writes its pid file once it listens: that tells our sshd
            // from another process that raced us to the port.
            let ours =
                fs::read_to_string(&pid_file).is_ok_and(|pid| pid.trim() == child.id().to_string());
            ours && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        match (ready, exited) {
            (true, None) => {
                self.child = Some(child);
                Ok(())
            }
            (_, Some(status)) => Err(format!("sshd exited ({status}):\n{}", self.log())),
            (false, None) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "sshd not listening after {READY_TIMEOUT:?}:\n{}",
                    self.log()
                ))
            }
        }
    }

    /// Starts sshd again after [`Sshd::stop`]: same port, keys and remote.
    /// Does nothing if it is running.
    pub fn start(&mut self) {
        if self.is_running() {
            return;
        }
        if let Err(log) = self.spawn() {
            panic!("sshd did not start again on port {}:\n{log}", self.port);
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
        self.port
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
            self.port,
            self.key_path().display()
        )
    }

    /// mtab-style sshfs options for a password login (add `password_stdin`
    /// or let the plugin do so): no key is offered.
    pub fn password_sshfs_options(&self) -> String {
        format!(
            "port={},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,\
             PubkeyAuthentication=no,PreferredAuthentications=password",
            self.port
        )
    }

    /// rclone on-the-fly remote for `subdir` over this sshd, e.g. for
    /// `rclone lsf` or `rclone mount`.
    pub fn rclone_remote(&self, subdir: &str) -> String {
        format!(
            ":sftp,host=127.0.0.1,port={},user=root,key_file={},shell_type=unix:{}",
            self.port,
            self.key_path().display(),
            self.remote_path(subdir).display()
        )
    }

    /// What sshd wrote (errors only).
    pub fn log(&self) -> String {
        let bytes = fs::read(self.dir.path().join("sshd.log")).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

fn keygen(path: &Path) {
    cmd::run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "netfs-test", "-f"])
            .arg(path),
    );
}
