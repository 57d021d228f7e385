//! The remote every contender mounts: a dedicated OpenSSH server on
//! 127.0.0.1 with generated keys and a config of its own, serving a
//! directory of the benchmark's work area. Stopped when dropped.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::procs;

const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    dir: PathBuf,
    remote: PathBuf,
    port: u16,
    child: Child,
}

impl Sshd {
    /// Generates keys under `dir`, serves `dir/remote`, and waits until the
    /// port accepts connections.
    pub fn start(dir: &Path) -> Result<Sshd> {
        let remote = dir.join("remote");
        fs::create_dir_all(&remote)?;
        fs::set_permissions(&remote, fs::Permissions::from_mode(0o755))?;
        for key in ["host_key", "client_key"] {
            keygen(&dir.join(key))?;
        }
        fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))?;
        fs::create_dir_all("/run/sshd")?;
        let mut last = String::new();
        // Someone else may take the free port before sshd binds it: try again.
        for _ in 0..5 {
            let port = free_port()?;
            write_config(dir, port)?;
            match spawn(dir, port) {
                Ok(child) => {
                    return Ok(Sshd {
                        dir: dir.to_owned(),
                        remote,
                        port,
                        child,
                    })
                }
                Err(e) => last = format!("{e:#}"),
            }
        }
        bail!("sshd did not start in 5 tries: {last}")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("client_key")
    }

    /// `dir/remote/<sub>`, created, with a file `hello` reading `hello\n`.
    pub fn remote_dir(&self, sub: &str) -> Result<PathBuf> {
        let path = self.remote.join(sub);
        fs::create_dir_all(&path)?;
        fs::write(path.join("hello"), HELLO)?;
        Ok(path)
    }

    /// sshfs source for `remote_dir(sub)`.
    pub fn sshfs_source(&self, sub: &str) -> Result<String> {
        Ok(format!(
            "root@127.0.0.1:{}",
            self.remote_dir(sub)?.display()
        ))
    }

    /// The sshfs options every sshfs contender gets, mtab style, with
    /// `extra` (mtab style too, may be empty) appended.
    pub fn sshfs_options(&self, extra: &str) -> String {
        let mut o = format!(
            "port={},IdentityFile={},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null",
            self.port,
            self.key().display()
        );
        if !extra.is_empty() {
            o.push(',');
            o.push_str(extra);
        }
        o
    }

    /// `rclone serve docker` volume options for the same remote over sftp.
    /// rclone 1.60 cannot restore volumes given as `type=sftp` plus
    /// `sftp-*` options after a restart ("cannot parse path"), so the
    /// remote is given whole, as an on-the-fly `remote`.
    pub fn rclone_options(&self, sub: &str) -> Result<serde_json::Value> {
        let remote = format!(
            ":sftp,host=127.0.0.1,port={},user=root,key_file={}:{}",
            self.port,
            self.key().display(),
            self.remote_dir(sub)?.display()
        );
        Ok(serde_json::json!({ "remote": remote }))
    }

    /// netfs volume options (sshfs, the default type) for the same remote.
    pub fn netfs_options(&self, sub: &str, extra: &str) -> Result<serde_json::Value> {
        Ok(serde_json::json!({
            "source": self.sshfs_source(sub)?,
            "o": self.sshfs_options(extra),
        }))
    }
}

/// What `hello` holds in every remote directory: the proof a mount reads.
pub const HELLO: &str = "hello\n";

impl Drop for Sshd {
    fn drop(&mut self) {
        // Sessions are children of the listener; take them down too.
        procs::kill_tree(self.child.id() as i32);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, port: u16) -> Result<()> {
    let d = dir.display();
    // MaxStartups: a restore opens a hundred connections at once.
    let cfg = format!(
        "Port {port}\n\
         ListenAddress 127.0.0.1\n\
         HostKey {d}/host_key\n\
         AuthorizedKeysFile {d}/authorized_keys\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         StrictModes no\n\
         PidFile {d}/sshd.pid\n\
         Subsystem sftp internal-sftp\n\
         UsePAM no\n\
         UseDNS no\n\
         LogLevel ERROR\n\
         MaxStartups 400\n\
         MaxSessions 100\n"
    );
    fs::write(dir.join("sshd_config"), cfg)?;
    Ok(())
}

fn spawn(dir: &Path, port: u16) -> Result<Child> {
    let log = fs::File::options()
        .create(true)
        .append(true)
        .open(dir.join("sshd.log"))?;
    let pid_file = dir.join("sshd.pid");
    let _ = fs::remove_file(&pid_file);
    let mut child = Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot run {SSHD}"))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            let log = fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
            bail!("sshd exited ({status}): {log}");
        }
        // Its pid file appears once it listens: tells our sshd from a racer.
        let ours = fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == child.id().to_string());
        if ours && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    bail!("sshd not listening on port {port} after 10s")
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn keygen(path: &Path) -> Result<()> {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "netfs-bench", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .context("cannot run ssh-keygen")?;
    if !status.success() {
        bail!("ssh-keygen {} failed: {status}", path.display());
    }
    Ok(())
}
