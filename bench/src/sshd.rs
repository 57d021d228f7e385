//! The remote every contender mounts: a dedicated OpenSSH server on
//! 127.0.0.1 with generated keys and the stock configuration the test
//! suites use (`tests/support/stock_sshd.rs`), serving a directory of the
//! benchmark's work area. Stopped when dropped.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use crate::procs;

#[path = "../../tests/support/stock_sshd.rs"]
mod stock_sshd;
pub use stock_sshd::Flavour;

pub struct Sshd {
    dir: PathBuf,
    remote: PathBuf,
    port: stock_sshd::PortLease,
    flavour: Flavour,
    child: Child,
}

impl Sshd {
    /// Generates keys under `dir`, serves `dir/remote`, and waits until the
    /// port accepts connections.
    pub fn start(dir: &Path, flavour: Flavour) -> Result<Sshd> {
        let remote = dir.join("remote");
        fs::create_dir_all(&remote)?;
        fs::set_permissions(&remote, fs::Permissions::from_mode(0o755))?;
        stock_sshd::make_keys(dir, "netfs-bench").map_err(|e| anyhow!(e))?;
        let (child, port) = stock_sshd::start(dir, false, flavour).map_err(|e| anyhow!(e))?;
        Ok(Sshd {
            dir: dir.to_owned(),
            remote,
            port,
            flavour,
            child,
        })
    }

    /// Binds the server, and the sessions it starts from now on, to `cpus`.
    pub fn pin(&self, cpus: &[usize]) -> Result<()> {
        procs::pin_tree(self.child.id() as i32, cpus)
    }

    /// Lines of its log saying it refused connections past `MaxStartups`.
    pub fn throttled(&self) -> usize {
        let log = fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default();
        stock_sshd::throttled(&log).len()
    }

    /// CPU seconds the server has spent so far, its own and those of every
    /// connection it served (each sshd waits for what it starts, so their
    /// time adds up in its children's). Waits, at most 10 s, until no
    /// connection is left, so that what just closed is counted.
    pub async fn cpu_seconds(&self) -> Result<f64> {
        let pid = self.child.id() as i32;
        let until = Instant::now() + Duration::from_secs(10);
        while !procs::children(pid).is_empty() {
            if Instant::now() > until {
                bail!("sshd still serves connections 10 s after its clients closed");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stat = netfs::procfs::stat(pid).ok_or_else(|| anyhow!("sshd {pid} is gone"))?;
        let ticks = stat.utime + stat.stime + stat.cutime + stat.cstime;
        Ok(ticks as f64 / netfs::procfs::ticks_per_second())
    }

    /// Logins it accepted so far (`LogLevel VERBOSE` logs each).
    pub fn logins(&self) -> usize {
        let log = fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default();
        log.matches("Accepted publickey for").count()
    }

    pub fn port(&self) -> u16 {
        self.port.port()
    }

    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// Its directory: keys, config, log (the key directory netfs gets).
    pub fn dir(&self) -> &Path {
        &self.dir
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
            self.port.port(),
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
            self.port.port(),
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
