//! The OpenSSH server set-ups of the test suites and the benchmark, two
//! STOCK flavours ([`Flavour`]): OpenSSH's own defaults (among them
//! `MaxStartups 10:30:100` and `MaxSessions 10`) with `internal-sftp`, and
//! the `sshd_config` Debian's openssh-server package installs (`UsePAM yes`,
//! an external `sftp-server` per session, started through the user's
//! shell). On top, only what a private server on 127.0.0.1 needs: its port,
//! host key, authorized keys, pid file, and a log verbose enough to show
//! every connection and every one it dropped. What is measured against
//! them is what users get.
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

/// The package's own copy of the `sshd_config` it installs in `/etc/ssh`.
pub const DEBIAN_CONFIG: &str = "/usr/share/openssh/sshd_config";
/// Where Debian's base-files keeps root's start-up files, as a fresh
/// install copies them into `/root`.
const DEBIAN_ROOT_FILES: &[(&str, &str)] = &[
    ("/usr/share/base-files/dot.bashrc", ".bashrc"),
    ("/usr/share/base-files/dot.profile", ".profile"),
];

/// Which stock server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// OpenSSH's defaults, sftp served in-process (`internal-sftp`).
    OpenSsh,
    /// Debian's (and Ubuntu's) shipped `sshd_config`: `UsePAM yes`,
    /// `Subsystem sftp /usr/lib/openssh/sftp-server`. Runs in a mount
    /// namespace of its own whose `/root` holds what base-files installs
    /// there: each sftp session starts root's shell, which reads
    /// `~/.bashrc` (Debian's bash does when sshd starts it), and this
    /// machine's own `/root/.bashrc` is a developer's, not a server's.
    Debian,
}

impl Flavour {
    /// A short name for test names, logs and tables.
    pub fn name(self) -> &'static str {
        match self {
            Flavour::OpenSsh => "openssh",
            Flavour::Debian => "debian",
        }
    }

    /// What it is, for a reader.
    pub fn describe(self) -> &'static str {
        match self {
            Flavour::OpenSsh => "OpenSSH defaults + internal-sftp",
            Flavour::Debian => "Debian's shipped sshd_config",
        }
    }
}

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
/// password logins on (the default of both flavours; off otherwise, so
/// that a key test cannot pass by a password). Nothing else departs from
/// the flavour's stock configuration but what a server in a temporary
/// directory needs: keys and pid file there (`StrictModes no`: the
/// directory is not root's home), and a `VERBOSE` log.
pub fn write_config(dir: &Path, port: u16, password: bool, flavour: Flavour) -> Result<(), String> {
    let d = dir.display();
    let pw = if password { "yes" } else { "no" };
    // sshd takes the first value it reads for a keyword: these come first.
    let ours = format!(
        "Port {port}\n\
         ListenAddress 127.0.0.1\n\
         HostKey {d}/host_key\n\
         AuthorizedKeysFile {d}/authorized_keys\n\
         PidFile {d}/sshd.pid\n\
         StrictModes no\n\
         PasswordAuthentication {pw}\n\
         LogLevel VERBOSE\n"
    );
    let cfg = match flavour {
        Flavour::OpenSsh => format!("{ours}Subsystem sftp internal-sftp\n"),
        Flavour::Debian => {
            let stock = fs::read_to_string(DEBIAN_CONFIG)
                .map_err(|e| format!("cannot read {DEBIAN_CONFIG} (openssh-server): {e}"))?;
            // Its drop-in directory is the machine's: ours is empty.
            let drop_ins = dir.join("sshd_config.d");
            fs::create_dir_all(&drop_ins)
                .map_err(|e| format!("cannot create {}: {e}", drop_ins.display()))?;
            let stock = stock.replace(
                "Include /etc/ssh/sshd_config.d/*.conf",
                &format!("Include {}/*.conf", drop_ins.display()),
            );
            format!("{ours}\n# {DEBIAN_CONFIG} as installed:\n{stock}")
        }
    };
    fs::write(dir.join("sshd_config"), cfg).map_err(|e| format!("cannot write sshd_config: {e}"))
}

/// The command that runs sshd on `dir/sshd_config`: for Debian's flavour,
/// in a mount namespace whose `/root` is a fresh one (a tmpfs holding
/// base-files' start-up files); the same pid from the first exec on.
fn command(dir: &Path, flavour: Flavour) -> Command {
    let config = dir.join("sshd_config");
    match flavour {
        Flavour::OpenSsh => {
            let mut c = Command::new(SSHD);
            c.args(["-D", "-e", "-f"]).arg(config);
            c
        }
        Flavour::Debian => {
            let mut script = String::from("mount -t tmpfs -o mode=0700 netfs-test-root /root");
            for (from, to) in DEBIAN_ROOT_FILES {
                script.push_str(&format!(" && cp {from} /root/{to}"));
            }
            script.push_str(" && exec \"$0\" -D -e -f \"$1\"");
            let mut c = Command::new("unshare");
            // A slave: the copies it starts with of the mounts of tests
            // running beside it go when those are taken down, and never
            // hold a volume's dead mount (see netfs::reattach).
            c.args(["--mount", "--propagation", "slave", "--", "/bin/sh", "-c"])
                .arg(script)
                .arg(SSHD)
                .arg(config);
            c
        }
    }
}

/// Runs sshd on `dir/sshd_config`, its output appended to `dir/sshd.log`,
/// and waits until it listens on `port`; on failure, why (with its log).
pub fn spawn(dir: &Path, port: u16, flavour: Flavour) -> Result<Child, String> {
    let log_path = dir.join("sshd.log");
    let log = fs::File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
    let pid_file = dir.join("sshd.pid");
    let _ = fs::remove_file(&pid_file);
    let out = log.try_clone().map_err(|e| e.to_string())?;
    let mut child = command(dir, flavour)
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
pub fn start(dir: &Path, password: bool, flavour: Flavour) -> Result<(Child, PortLease), String> {
    let lease = PortLease::take()?;
    write_config(dir, lease.port(), password, flavour)?;
    let child = spawn(dir, lease.port(), flavour)?;
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
