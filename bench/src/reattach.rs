//! Part 8: running containers keep their volumes. A container reads a file
//! of its volume every 5 ms and writes each outcome (`0` or `1`) into a
//! file on the host, which the bench watches. After a fault the figure is
//! the time to the first good read inside that still-running container:
//! kill -9 of netfs's sshfs, and a restart of netfs itself (with the
//! restore time, the first good read of the volume on the host, beside it);
//! then the same for the peers: bare sshfs killed and mounted again by
//! hand at the same place, and `rclone serve docker` killed (its mounts
//! live in its own process) and started again. A container that does not
//! read again within 60 s is "not in 60 s".

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

use crate::data::{docker_ok, image};
use crate::mounts;
use crate::plugin::Daemon;
use crate::ready::{spawn_sshfs, stop_sshfs};
use crate::recovery::volume_pid;
use crate::sshd::{Sshd, HELLO};
use crate::stats::ms;

/// How long a container is given to read again.
pub const WITHIN: Duration = Duration::from_secs(60);

const LOOP: &str = "while :; do if cat /data/hello >/dev/null 2>&1; \
    then echo 1 >/marks/s.tmp; else echo 0 >/marks/s.tmp; fi; \
    mv /marks/s.tmp /marks/s; usleep 5000; done";

#[derive(Debug, Clone, Default)]
pub struct ReattachResult {
    /// kill -9 of netfs's sshfs → first good read in the container.
    pub netfs_kill_ms: Option<f64>,
    /// netfs started again (SIGTERM, then start) → first good read in the container.
    pub netfs_restart_ms: Option<f64>,
    /// The same start → first good read of the volume on the host (the restore).
    pub netfs_restore_ms: Option<f64>,
    /// Bare sshfs killed and mounted again by hand → read in the container.
    pub bare_ms: Option<f64>,
    /// rclone serve docker killed and started again → read in the container.
    pub rclone_ms: Option<f64>,
}

/// A container running [`LOOP`] on `data` (a volume or a host path).
struct Reader {
    name: String,
    state: PathBuf,
}

impl Reader {
    fn start(dir: &Path, name: &str, data: &str) -> Result<Reader> {
        let marks = dir.join(format!("{name}-marks"));
        mounts::ensure_dir(&marks)?;
        let _ = docker_ok(&["rm", "-f", name]);
        docker_ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "-v",
            &format!("{data}:/data"),
            "-v",
            &format!("{}:/marks", marks.display()),
            &image(),
            "sh",
            "-c",
            LOOP,
        ])?;
        let reader = Reader {
            name: name.to_owned(),
            state: marks.join("s"),
        };
        if reader.wait(b'1', Duration::from_secs(30)).is_none() {
            bail!("container {name} does not read its volume before the fault");
        }
        Ok(reader)
    }

    /// Waits until the container last saw `want`; when, if it did in time.
    fn wait(&self, want: u8, within: Duration) -> Option<Instant> {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if std::fs::read(&self.state).is_ok_and(|s| s.first() == Some(&want)) {
                return Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    }

    /// After a fault at `at`: the container sees it fail, then the time
    /// from `at` to its first good read, if that comes within [`WITHIN`].
    fn recovered(&self, at: Instant) -> Result<Option<f64>> {
        if self.wait(b'0', Duration::from_secs(10)).is_none() {
            bail!("container {} never saw the fault", self.name);
        }
        Ok(self.wait(b'1', WITHIN).map(|t| ms(t - at)))
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = docker_ok(&["rm", "-f", &self.name]);
    }
}

fn create_volume(driver: &str, volume: &str, opts: &serde_json::Value) -> Result<()> {
    let mut args = vec![
        "volume".to_owned(),
        "create".into(),
        "-d".into(),
        driver.into(),
    ];
    for (key, value) in opts.as_object().into_iter().flatten() {
        args.push("-o".into());
        args.push(format!("{key}={}", value.as_str().unwrap_or_default()));
    }
    args.push(volume.into());
    docker_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    Ok(())
}

/// `netfs` and `rclone` listen on `/run/docker/plugins/<driver>.sock`.
pub async fn run(
    sshd: &Sshd,
    dir: &Path,
    netfs: (&mut Daemon, &str),
    rclone: (&mut Daemon, &str),
) -> Result<ReattachResult> {
    mounts::ensure_dir(dir)?;
    let mut res = ReattachResult::default();
    let (daemon, driver) = netfs;
    daemon.start().await?;
    let volume = format!("{driver}-reattach");
    create_volume(driver, &volume, &sshd.netfs_options("reattach-netfs", "")?)?;
    let measured = netfs_side(sshd, dir, daemon, &volume, &mut res).await;
    let _ = docker_ok(&["volume", "rm", "-f", &volume]);
    daemon.terminate(Duration::from_secs(10));
    measured?;

    res.bare_ms = bare_side(sshd, dir)?;

    let (daemon, driver) = rclone;
    daemon.start().await?;
    let volume = format!("{driver}-reattach");
    create_volume(driver, &volume, &sshd.rclone_options("reattach-rclone")?)?;
    let measured = rclone_side(dir, daemon, &volume).await;
    let _ = docker_ok(&["volume", "rm", "-f", &volume]);
    daemon.terminate(Duration::from_secs(10));
    res.rclone_ms = measured?;
    Ok(res)
}

async fn netfs_side(
    sshd: &Sshd,
    dir: &Path,
    daemon: &mut Daemon,
    volume: &str,
    res: &mut ReattachResult,
) -> Result<()> {
    let _ = sshd;
    let reader = Reader::start(dir, &format!("{volume}-c"), volume)?;
    let get = json!({ "Name": volume });
    let pid = volume_pid(&daemon.client().call("VolumeDriver.Get", &get).await?)?;
    let at = Instant::now();
    kill(Pid::from_raw(pid), Signal::SIGKILL)?;
    res.netfs_kill_ms = reader.recovered(at)?;

    let hello = daemon.mount_root.join(volume).join("hello");
    daemon.terminate(Duration::from_secs(10));
    reader.wait(b'0', Duration::from_secs(10));
    let at = Instant::now();
    daemon.spawn()?;
    let mut restored = None;
    let mut read = None;
    while at.elapsed() < WITHIN && (restored.is_none() || read.is_none()) {
        if restored.is_none() && mounts::reads(&hello, HELLO, Duration::from_millis(200)).await {
            restored = Some(ms(at.elapsed()));
        }
        if read.is_none() && std::fs::read(&reader.state).is_ok_and(|s| s.first() == Some(&b'1')) {
            read = Some(ms(at.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    daemon.wait_ready().await?;
    res.netfs_restore_ms = restored;
    res.netfs_restart_ms = read;
    Ok(())
}

/// Bare sshfs bind-mounted into the container, killed, and mounted again
/// at the same place as an operator's script would.
fn bare_side(sshd: &Sshd, dir: &Path) -> Result<Option<f64>> {
    let mountpoint = dir.join("bare");
    mounts::ensure_dir(&mountpoint)?;
    let child = spawn_sshfs(sshd, "reattach-bare", &mountpoint, "")?;
    let until = Instant::now() + Duration::from_secs(20);
    while !(mounts::is_mounted(&mountpoint)
        && std::fs::read_to_string(mountpoint.join("hello")).is_ok_and(|t| t == HELLO))
    {
        if Instant::now() > until {
            stop_sshfs(child, &mountpoint);
            bail!("bare sshfs did not mount");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let name = format!("netfs-bench-{}-bare-c", std::process::id());
    let reader = Reader::start(dir, &name, &mountpoint.to_string_lossy());
    let reader = match reader {
        Ok(r) => r,
        Err(e) => {
            stop_sshfs(child, &mountpoint);
            return Err(e);
        }
    };
    let at = Instant::now();
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    stop_sshfs(child, &mountpoint);
    let again = spawn_sshfs(sshd, "reattach-bare", &mountpoint, "")?;
    let took = reader.recovered(at);
    drop(reader);
    stop_sshfs(again, &mountpoint);
    took
}

/// `rclone serve docker` serves its mounts itself: kill -9 of the daemon
/// is the kill of the tool, and it is started again at once.
async fn rclone_side(dir: &Path, daemon: &mut Daemon, volume: &str) -> Result<Option<f64>> {
    let reader = Reader::start(dir, &format!("{volume}-c"), volume)?;
    let at = Instant::now();
    kill(Pid::from_raw(daemon.pid()? as i32), Signal::SIGKILL)?;
    daemon.terminate(Duration::from_secs(1));
    daemon.start().await?;
    reader.recovered(at)
}
