//! Part 4: the data path. The same busybox script writes a file of N MiB
//! (`dd ... conv=fsync`) and reads it back, once in a container on a netfs
//! volume (through dockerd) and once on the host on a bare sshfs mount with
//! the same options. The script marks its phases on a FIFO that this
//! process timestamps, so container start-up is not counted.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::mounts;
use crate::plugin::Daemon;
use crate::ready::{spawn_sshfs, stop_sshfs};
use crate::sshd::{Sshd, HELLO};
use crate::stats::median;

/// The test image scripts/setup.sh imports; `BUSYBOX_IMAGE` names another.
fn image() -> String {
    std::env::var("BUSYBOX_IMAGE").unwrap_or_else(|_| "netfs-test-busybox:latest".to_owned())
}

const SCRIPT: &str = "set -e; echo w >\"$M\"; \
    dd if=/dev/zero of=\"$D/blob\" bs=1M count=\"$N\" conv=fsync 2>/dev/null; \
    echo r >\"$M\"; dd if=\"$D/blob\" of=/dev/null bs=1M 2>/dev/null; \
    echo e >\"$M\"; rm -f \"$D/blob\"";
const PHASE_WITHIN: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct DataResult {
    pub netfs_write: f64,
    pub netfs_read: f64,
    pub bare_write: f64,
    pub bare_read: f64,
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
                        bail!("the data script ended ({status}) before mark {mark:?}");
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
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let w = self.expect("w", &mut child)?;
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

fn docker_ok(args: &[&str]) -> Result<String> {
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

/// `netfs` must listen on `/run/docker/plugins/<driver>.sock`.
pub async fn run(
    sshd: &Sshd,
    dir: &Path,
    netfs: &mut Daemon,
    driver: &str,
    mib: u64,
    rounds: usize,
) -> Result<DataResult> {
    netfs.start().await?;
    let marks_dir = dir.join("marks");
    mounts::ensure_dir(&marks_dir)?;
    let fifo = marks_dir.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666))
        .with_context(|| format!("mkfifo {}", fifo.display()))?;
    let marks = Marks::open(&fifo)?;

    let volume = format!("{driver}-data");
    let opts = sshd.netfs_options("data-netfs", "")?;
    docker_ok(&[
        "volume",
        "create",
        "-d",
        driver,
        "-o",
        &format!("source={}", opts["source"].as_str().unwrap_or_default()),
        "-o",
        &format!("o={}", opts["o"].as_str().unwrap_or_default()),
        &volume,
    ])?;
    let bare_mp = dir.join("bare");
    mounts::ensure_dir(&bare_mp)?;
    let bare = spawn_sshfs(sshd, "data-bare", &bare_mp, "")?;
    let result = measure_rounds(&marks, &fifo, &volume, &bare_mp, mib, rounds).await;
    stop_sshfs(bare, &bare_mp);
    let removed = docker_ok(&["volume", "rm", &volume]);
    netfs.terminate(Duration::from_secs(10));
    let result = result?;
    removed?;
    Ok(result)
}

async fn measure_rounds(
    marks: &Marks,
    fifo: &Path,
    volume: &str,
    bare_mp: &Path,
    mib: u64,
    rounds: usize,
) -> Result<DataResult> {
    wait_readable(bare_mp).await?;
    let container = |mib: u64| {
        let mut cmd = Command::new(docker());
        cmd.args(["run", "--rm", "--network", "none"])
            .args(["-e", "M=/marks/fifo", "-e", "D=/data"])
            .args(["-e", &format!("N={mib}")])
            .args(["-v", &format!("{volume}:/data")])
            .args(["-v", &format!("{}:/marks", fifo_dir(fifo).display())])
            .arg(image())
            .args(["sh", "-c", SCRIPT]);
        cmd
    };
    let host = |mib: u64| {
        let mut cmd = Command::new("/bin/busybox");
        cmd.args(["sh", "-c", SCRIPT])
            .env("M", fifo)
            .env("D", bare_mp)
            .env("N", mib.to_string());
        cmd
    };
    // Warm-up: pulls both sides through a first connection and a small file.
    marks.measure(container(8), 8)?;
    marks.measure(host(8), 8)?;
    let (mut nw, mut nr, mut bw, mut br) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        // Alternate who goes first, so drifting load hits both alike.
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for netfs_side in order {
            if netfs_side {
                let (w, r) = marks.measure(container(mib), mib)?;
                nw.push(w);
                nr.push(r);
            } else {
                let (w, r) = marks.measure(host(mib), mib)?;
                bw.push(w);
                br.push(r);
            }
        }
    }
    Ok(DataResult {
        netfs_write: median(&nw),
        netfs_read: median(&nr),
        bare_write: median(&bw),
        bare_read: median(&br),
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
