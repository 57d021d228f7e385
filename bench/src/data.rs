//! Part 4: the data path. The same busybox script writes a file of N MiB
//! (`dd ... conv=fsync`) and reads it back, once in a container on a netfs
//! volume (through dockerd) and once on the host on a bare sshfs mount with
//! the same options; on request also in containers on the volumes of other
//! plugins (netfs with other settings, `rclone serve docker`) on the same
//! remote. The script marks its phases on a FIFO that this
//! process timestamps, so container start-up is not counted.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::mounts;
use crate::plugin::{Daemon, Kind};
use crate::ready::{spawn_sshfs, stop_sshfs};
use crate::sshd::{Sshd, HELLO};
use crate::stats::median;

/// The test image scripts/setup.sh imports; `BUSYBOX_IMAGE` names another.
pub fn image() -> String {
    std::env::var("BUSYBOX_IMAGE").unwrap_or_else(|_| "netfs-test-busybox:latest".to_owned())
}

const SCRIPT: &str = "set -e; echo w >\"$M\"; \
    dd if=/dev/zero of=\"$D/blob\" bs=1M count=\"$N\" conv=fsync 2>/dev/null; \
    echo r >\"$M\"; dd if=\"$D/blob\" of=/dev/null bs=1M 2>/dev/null; \
    echo e >\"$M\"; rm -f \"$D/blob\"";
const PHASE_WITHIN: Duration = Duration::from_secs(300);
const START_RETRIES: usize = 6;

/// Where the script runs and on what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The measured case: a container on the netfs volume.
    NetfsContainer,
    /// The floor: the host on a bare sshfs mount.
    BareHost,
    /// To tell the container's share from netfs's: the host on the netfs
    /// volume's mountpoint ...
    NetfsHost,
    /// ... and a container on the bare mount (a bind mount).
    BareContainer,
    /// A container on a volume of netfs sharing ssh connections.
    NetfsSharedContainer,
    /// A container on a volume of `rclone serve docker` (its sftp backend).
    RcloneContainer,
}

impl Side {
    pub fn describe(self) -> &'static str {
        match self {
            Side::NetfsContainer => "netfs volume, in a container",
            Side::BareHost => "bare sshfs, on the host",
            Side::NetfsHost => "netfs volume, on the host",
            Side::BareContainer => "bare sshfs, in a container (bind mount)",
            Side::NetfsSharedContainer => "netfs volume, sharing on, in a container",
            Side::RcloneContainer => "rclone serve docker volume, in a container",
        }
    }
}

/// Median write and read MiB/s of each side measured.
#[derive(Debug, Clone)]
pub struct DataResult {
    pub rates: Vec<(Side, f64, f64)>,
}

impl DataResult {
    pub fn of(&self, side: Side) -> Option<(f64, f64)> {
        self.rates
            .iter()
            .find(|(s, _, _)| *s == side)
            .map(|(_, w, r)| (*w, *r))
    }
}

/// Phase marks from the script: (mark, when it arrived).
struct Marks {
    rx: mpsc::Receiver<(String, Instant)>,
}

impl Marks {
    /// Opens `fifo` read-write (it never sees end-of-file) on a thread of its own.
    fn open(fifo: &Path) -> Result<Marks> {
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .open(fifo)
            .with_context(|| format!("open {}", fifo.display()))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(file).lines() {
                let Ok(line) = line else { break };
                if tx.send((line.trim().to_owned(), Instant::now())).is_err() {
                    break;
                }
            }
        });
        Ok(Marks { rx })
    }

    fn expect(&self, mark: &str, child: &mut std::process::Child) -> Result<Instant> {
        let deadline = Instant::now() + PHASE_WITHIN;
        loop {
            match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok((m, at)) if m == mark => return Ok(at),
                Ok((m, _)) => bail!("expected mark {mark:?}, got {m:?}"),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(status) = child.try_wait()? {
                        let mut err = String::new();
                        if let Some(mut pipe) = child.stderr.take() {
                            let _ = std::io::Read::read_to_string(&mut pipe, &mut err);
                        }
                        bail!(
                            "the data script ended ({status}) before mark {mark:?}: {}",
                            err.trim()
                        );
                    }
                    if Instant::now() > deadline {
                        bail!("no mark {mark:?} within {PHASE_WITHIN:?}");
                    }
                }
                Err(e) => bail!("mark reader: {e}"),
            }
        }
    }

    /// Runs the script in `cmd`; returns (write, read) MiB/s.
    fn measure(&self, mut cmd: Command, mib: u64) -> Result<(f64, f64)> {
        // A script that never got to start (docker refusing a run while
        // something else restarts dockerd) is tried again; one that started
        // and failed is an error.
        let mut tries = 0;
        let (mut child, w) = loop {
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?;
            match self.expect("w", &mut child) {
                Ok(w) => break (child, w),
                Err(e) if tries < START_RETRIES => {
                    tries += 1;
                    println!("data path: {e:#}; trying again");
                    std::thread::sleep(Duration::from_secs(10));
                }
                Err(e) => return Err(e),
            }
        };
        let r = self.expect("r", &mut child)?;
        let e = self.expect("e", &mut child)?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "data script failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let rate = |from: Instant, to: Instant| mib as f64 / (to - from).as_secs_f64();
        Ok((rate(w, r), rate(r, e)))
    }
}

pub fn docker() -> String {
    std::env::var("DOCKER").unwrap_or_else(|_| "docker".to_owned())
}

pub fn docker_ok(args: &[&str]) -> Result<String> {
    let out = Command::new(docker())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run docker")?;
    if !out.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Why the data path cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    if let Err(e) = docker_ok(&["info", "--format", "{{.ServerVersion}}"]) {
        return Some(format!(
            "dockerd does not answer ({e:#}); run scripts/setup.sh"
        ));
    }
    let image = image();
    if let Err(e) = docker_ok(&["image", "inspect", &image]) {
        return Some(format!("no image {image} ({e:#}); run scripts/setup.sh"));
    }
    None
}

/// One more plugin measured in a container next to the netfs volume.
pub struct Peer<'a> {
    pub side: Side,
    /// Listens on `/run/docker/plugins/<driver>.sock`.
    pub daemon: &'a mut Daemon,
    pub driver: String,
}

/// Creates a volume of `driver` on `remote_dir(sub)`, with the options of
/// the daemon's kind.
fn create_volume(sshd: &Sshd, kind: Kind, driver: &str, sub: &str) -> Result<String> {
    let volume = format!("{driver}-data");
    let mut args = vec![
        "volume".to_owned(),
        "create".into(),
        "-d".into(),
        driver.into(),
    ];
    let opts = match kind {
        Kind::Netfs => sshd.netfs_options(sub, "")?,
        Kind::Rclone => sshd.rclone_options(sub)?,
    };
    for (key, value) in opts.as_object().into_iter().flatten() {
        args.push("-o".into());
        args.push(format!("{key}={}", value.as_str().unwrap_or_default()));
    }
    args.push(volume.clone());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker_ok(&args)?;
    Ok(volume)
}

/// `netfs` must listen on `/run/docker/plugins/<driver>.sock`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    sshd: &Sshd,
    dir: &Path,
    netfs: &mut Daemon,
    driver: &str,
    peers: &mut [Peer<'_>],
    mib: u64,
    rounds: usize,
    detail: bool,
) -> Result<DataResult> {
    netfs.start().await?;
    for peer in peers.iter_mut() {
        peer.daemon.start().await?;
    }
    let marks_dir = dir.join("marks");
    mounts::ensure_dir(&marks_dir)?;
    let fifo = marks_dir.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666))
        .with_context(|| format!("mkfifo {}", fifo.display()))?;
    let marks = Marks::open(&fifo)?;

    let volume = create_volume(sshd, Kind::Netfs, driver, "data-netfs")?;
    let mut volumes = vec![(Side::NetfsContainer, volume.clone())];
    let mut created = Ok(());
    for (i, peer) in peers.iter().enumerate() {
        match create_volume(
            sshd,
            peer.daemon.kind,
            &peer.driver,
            &format!("data-peer{i}"),
        ) {
            Ok(v) => volumes.push((peer.side, v)),
            Err(e) => {
                created = Err(e);
                break;
            }
        }
    }
    let bare_mp = dir.join("bare");
    mounts::ensure_dir(&bare_mp)?;
    let bare = spawn_sshfs(sshd, "data-bare", &bare_mp, "")?;
    let mut sides = vec![Side::NetfsContainer, Side::BareHost];
    if detail {
        sides.extend([Side::NetfsHost, Side::BareContainer]);
    }
    sides.extend(peers.iter().map(|p| p.side));
    let places = Places {
        fifo: &fifo,
        volumes: &volumes,
        netfs_mp: &netfs.mount_root.join(&volume),
        bare_mp: &bare_mp,
    };
    let result = match created {
        Ok(()) => measure_rounds(&marks, &places, &sides, mib, rounds).await,
        Err(e) => Err(e),
    };
    stop_sshfs(bare, &bare_mp);
    let mut removed = Ok(String::new());
    for (_, v) in &volumes {
        let r = docker_ok(&["volume", "rm", v]);
        if removed.is_ok() {
            removed = r;
        }
    }
    netfs.terminate(Duration::from_secs(10));
    for peer in peers.iter_mut() {
        peer.daemon.terminate(Duration::from_secs(10));
    }
    let result = result?;
    removed?;
    Ok(result)
}

struct Places<'a> {
    fifo: &'a Path,
    /// The volume each container side runs on.
    volumes: &'a [(Side, String)],
    netfs_mp: &'a Path,
    bare_mp: &'a Path,
}

impl Places<'_> {
    /// The script, run on `side`, writing and reading `mib` MiB.
    fn command(&self, side: Side, mib: u64) -> Command {
        let container = |data: &str| {
            let mut cmd = Command::new(docker());
            cmd.args(["run", "--rm", "--network", "none"])
                .args(["-e", "M=/marks/fifo", "-e", "D=/data"])
                .args(["-e", &format!("N={mib}")])
                .args(["-v", &format!("{data}:/data")])
                .args(["-v", &format!("{}:/marks", fifo_dir(self.fifo).display())])
                .arg(image())
                .args(["sh", "-c", SCRIPT]);
            cmd
        };
        let host = |data: &Path| {
            let mut cmd = Command::new("/bin/busybox");
            cmd.args(["sh", "-c", SCRIPT])
                .env("M", self.fifo)
                .env("D", data)
                .env("N", mib.to_string());
            cmd
        };
        match side {
            Side::BareHost => host(self.bare_mp),
            Side::NetfsHost => host(self.netfs_mp),
            Side::BareContainer => container(&self.bare_mp.to_string_lossy()),
            Side::NetfsContainer | Side::NetfsSharedContainer | Side::RcloneContainer => {
                let volume = self
                    .volumes
                    .iter()
                    .find(|(s, _)| *s == side)
                    .map(|(_, v)| v.as_str())
                    .unwrap_or_default();
                container(volume)
            }
        }
    }
}

async fn measure_rounds(
    marks: &Marks,
    places: &Places<'_>,
    sides: &[Side],
    mib: u64,
    rounds: usize,
) -> Result<DataResult> {
    wait_readable(places.bare_mp).await?;
    // Warm-up: a first connection and a small file on every side.
    for side in sides {
        marks.measure(places.command(*side, 8), 8)?;
    }
    let mut samples: Vec<(Vec<f64>, Vec<f64>)> = vec![(vec![], vec![]); sides.len()];
    for round in 0..rounds {
        // Rotate who goes first, so drifting load hits every side alike.
        for k in 0..sides.len() {
            let i = (round + k) % sides.len();
            let (w, r) = marks.measure(places.command(sides[i], mib), mib)?;
            samples[i].0.push(w);
            samples[i].1.push(r);
        }
    }
    Ok(DataResult {
        rates: sides
            .iter()
            .zip(&samples)
            .map(|(side, (w, r))| (*side, median(w), median(r)))
            .collect(),
    })
}

fn fifo_dir(fifo: &Path) -> PathBuf {
    fifo.parent().map(Path::to_path_buf).unwrap_or_default()
}

async fn wait_readable(mountpoint: &Path) -> Result<()> {
    let hello = mountpoint.join("hello");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(mounts::is_mounted(mountpoint)
        && mounts::reads(&hello, HELLO, Duration::from_secs(5)).await)
    {
        if Instant::now() > deadline {
            return Err(anyhow!("{} not readable after 20s", mountpoint.display()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
