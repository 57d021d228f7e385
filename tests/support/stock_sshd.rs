//! The one OpenSSH server set-up of the test suites and the benchmark: a
//! STOCK configuration — OpenSSH's own defaults, among them `MaxStartups
//! 10:30:100` and `MaxSessions 10` — with only what a private server on
//! 127.0.0.1 needs on top: its port, host key, authorized keys, pid file,
//! sftp, and a log verbose enough to show every connection and every one it
//! dropped. What is measured against it is what users get.
//!
//! Std and nix only, so that both `tests/support` and the benchmark crate
//! (which includes this file by path) can use it; callers turn the
//! `String` errors into their own.

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

pub const SSHD: &str = "/usr/sbin/sshd";
/// How long sshd gets to listen after its spawn.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// What a stock sshd logs when it throttles: the first line when it starts
/// refusing connections past `MaxStartups`, one line per refusal.
pub const THROTTLED: &[&str] = &["MaxStartups throttling", "past MaxStartups"];

/// Files below `dir`: `host_key`, `client_key` (+ `.pub`), `authorized_keys`.
pub fn make_keys(dir: &Path, comment: &str) -> Result<(), String> {
    for key in ["host_key", "client_key"] {
        let path = dir.join(key);
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run ssh-keygen: {e}"))?;
        if !status.success() {
            return Err(format!("ssh-keygen {} failed: {status}", path.display()));
        }
    }
    fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))
        .map_err(|e| format!("cannot write authorized_keys: {e}"))?;
    fs::create_dir_all("/run/sshd").map_err(|e| format!("cannot create /run/sshd: {e}"))?;
    Ok(())
}

/// `dir/sshd_config` for a server on 127.0.0.1:`port`. `password` turns
/// password logins on (OpenSSH's default; off otherwise, so that a key
/// test cannot pass by a password). Nothing else departs from OpenSSH's
/// defaults but what a server in a temporary directory needs: keys and
/// pid file there (`StrictModes no`: the directory is not root's home).
pub fn write_config(dir: &Path, port: u16, password: bool) -> Result<(), String> {
    let d = dir.display();
    let pw = if password { "yes" } else { "no" };
    let cfg = format!(
        "Port {port}\n\
         ListenAddress 127.0.0.1\n\
         HostKey {d}/host_key\n\
         AuthorizedKeysFile {d}/authorized_keys\n\
         PidFile {d}/sshd.pid\n\
         StrictModes no\n\
         PasswordAuthentication {pw}\n\
         Subsystem sftp internal-sftp\n\
         LogLevel VERBOSE\n"
    );
    fs::write(dir.join("sshd_config"), cfg).map_err(|e| format!("cannot write sshd_config: {e}"))
}

/// Runs sshd on `dir/sshd_config`, its output appended to `dir/sshd.log`,
/// and waits until it listens on `port`; on failure, why (with its log).
pub fn spawn(dir: &Path, port: u16) -> Result<Child, String> {
    let log_path = dir.join("sshd.log");
    let log = fs::File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
    let pid_file = dir.join("sshd.pid");
    let _ = fs::remove_file(&pid_file);
    let out = log.try_clone().map_err(|e| e.to_string())?;
    let mut child = Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot run {SSHD}: {e}"))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + LISTEN_TIMEOUT;
    let log = || String::from_utf8_lossy(&fs::read(&log_path).unwrap_or_default()).into_owned();
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("sshd exited ({status}):\n{}", log()));
        }
        // sshd writes its pid file once it listens: that tells our sshd
        // from another process that raced us to the port.
        let ours = fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == child.id().to_string());
        if ours && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!(
        "sshd not listening on port {port} after {LISTEN_TIMEOUT:?}:\n{}",
        log()
    ))
}

/// Writes the config and starts sshd on a port leased for its lifetime:
/// a server stopped and started again finds its port still its own.
pub fn start(dir: &Path, password: bool) -> Result<(Child, PortLease), String> {
    let lease = PortLease::take()?;
    write_config(dir, lease.port(), password)?;
    let child = spawn(dir, lease.port())?;
    Ok((child, lease))
}

/// Where leases are kept, shared by every test and benchmark process.
const LEASE_DIR: &str = "/run/netfs-test/ports";
/// Leased ports lie below the kernel's ephemeral range (32768 and up by
/// default), so no outgoing connection is ever given one.
const LEASED_PORTS: std::ops::Range<u16> = 20000..32000;

/// A TCP port on 127.0.0.1 that one server of one test owns until the
/// lease is dropped: an exclusive lock on `LEASE_DIR/<port>.lock`, held
/// by every process that honours it, and checked free by a bind.
pub struct PortLease {
    port: u16,
    _lock: Flock<File>,
}

impl PortLease {
    pub fn take() -> Result<PortLease, String> {
        fs::create_dir_all(LEASE_DIR).map_err(|e| format!("cannot create {LEASE_DIR}: {e}"))?;
        let span = LEASED_PORTS.end - LEASED_PORTS.start;
        // Start where this process is unlikely to meet another one.
        let offset = (std::process::id() as u16).wrapping_mul(97) % span;
        for i in 0..span {
            let port = LEASED_PORTS.start + (offset + i) % span;
            let path = Path::new(LEASE_DIR).join(format!("{port}.lock"));
            let lock = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            let Ok(lock) = Flock::lock(lock, FlockArg::LockExclusiveNonblock) else {
                continue;
            };
            // Something that does not take leases may listen there.
            if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return Ok(PortLease { port, _lock: lock });
            }
        }
        Err(format!("no free port in {LEASED_PORTS:?}"))
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

/// The lines of an sshd log that say it refused connections.
pub fn throttled(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| THROTTLED.iter().any(|t| l.contains(t)))
        .collect()
}
