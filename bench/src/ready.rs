//! Part 3: time to ready, from the request (or the spawn) to the first
//! successful read of a file in the mounted volume. netfs (lifecycle
//! `volume`: Create starts sshfs and waits for the mount, then Mount and a
//! read) against sshfs run by hand with the same options and watched as
//! closely as possible (the floor), and rclone's Create + Mount + read.
//! Rounds interleave the three so drifting load hits all alike.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::mounts;
use crate::plugin::{create_mount, Daemon};
use crate::sshd::{Sshd, HELLO};
use crate::stats::{median, ms};

const READ_WITHIN: Duration = Duration::from_secs(5);
const MOUNT_WITHIN: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct ReadyResult {
    pub netfs_ms: f64,
    pub bare_ms: f64,
    pub rclone_ms: Option<f64>,
    /// The command netfs ran for the volume, as its Status shows it.
    pub netfs_command: String,
}

/// `rounds` timed rounds after one untimed warm-up round.
pub async fn run(
    sshd: &Sshd,
    dir: &Path,
    netfs: &mut Daemon,
    mut rclone: Option<&mut Daemon>,
    rounds: usize,
) -> Result<ReadyResult> {
    netfs.start().await?;
    if let Some(r) = rclone.as_deref_mut() {
        r.start().await?;
    }
    let (mut n, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
    let mut netfs_command = String::new();
    for round in 0..=rounds {
        let bare = bare_sshfs(sshd, &dir.join(format!("bare{round}"))).await?;
        let (took, command) = plugin(
            netfs,
            &format!("ready{round}"),
            &sshd.netfs_options("ready", "")?,
        )
        .await?;
        netfs_command = command;
        let rc = match rclone.as_deref_mut() {
            Some(d) => Some(
                plugin(d, &format!("ready{round}"), &sshd.rclone_options("ready")?)
                    .await?
                    .0,
            ),
            None => None,
        };
        if round > 0 {
            b.push(bare);
            n.push(took);
            r.extend(rc);
        }
    }
    netfs.terminate(Duration::from_secs(10));
    if let Some(d) = rclone {
        d.terminate(Duration::from_secs(5));
    }
    Ok(ReadyResult {
        netfs_ms: median(&n),
        bare_ms: median(&b),
        rclone_ms: (!r.is_empty()).then(|| median(&r)),
        netfs_command,
    })
}

/// Create + Mount + first read through a plugin; then Unmount + Remove.
pub async fn plugin(daemon: &mut Daemon, name: &str, opts: &Value) -> Result<(f64, String)> {
    let client = daemon.client().clone();
    let start = Instant::now();
    let mountpoint = create_mount(&client, name, opts).await?;
    let text = mounts::read_within(&mountpoint.join("hello"), READ_WITHIN).await?;
    let took = ms(start.elapsed());
    if text != HELLO {
        bail!("{}: {name} read {text:?}", daemon.name());
    }
    let status = client
        .call("VolumeDriver.Get", &json!({ "Name": name }))
        .await?;
    let command = status["Volume"]["Status"]["command"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    client
        .call(
            "VolumeDriver.Unmount",
            &json!({ "Name": name, "ID": "bench" }),
        )
        .await?;
    client
        .call("VolumeDriver.Remove", &json!({ "Name": name }))
        .await?;
    Ok((took, command))
}

/// `sshfs SOURCE MOUNTPOINT -f -o OPTIONS`, polled every millisecond until
/// a read answers; then stopped and unmounted. Returns milliseconds.
pub async fn bare_sshfs(sshd: &Sshd, mountpoint: &Path) -> Result<f64> {
    mounts::ensure_dir(mountpoint)?;
    let hello = mountpoint.join("hello");
    let start = Instant::now();
    let mut child = spawn_sshfs(sshd, "ready", mountpoint, "")?;
    let result = loop {
        if mounts::is_mounted(mountpoint) && mounts::reads(&hello, HELLO, READ_WITHIN).await {
            break Ok(ms(start.elapsed()));
        }
        if let Some(status) = child.try_wait()? {
            break Err(anyhow::anyhow!("bare sshfs exited: {status}"));
        }
        if start.elapsed() > MOUNT_WITHIN {
            break Err(anyhow::anyhow!(
                "bare sshfs not mounted after {MOUNT_WITHIN:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    stop_sshfs(child, mountpoint);
    result
}

pub fn spawn_sshfs(
    sshd: &Sshd,
    sub: &str,
    mountpoint: &Path,
    extra: &str,
) -> Result<std::process::Child> {
    Command::new("sshfs")
        .arg(sshd.sshfs_source(sub)?)
        .arg(mountpoint)
        .args(["-f", "-o", &sshd.sshfs_options(extra)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("cannot run sshfs")
}

pub fn stop_sshfs(mut child: std::process::Child, mountpoint: &Path) {
    let _ = kill(Pid::from_raw(-(child.id() as i32)), Signal::SIGTERM);
    let _ = child.wait();
    let _ = kill(Pid::from_raw(-(child.id() as i32)), Signal::SIGKILL);
    mounts::lazy_unmount(mountpoint);
    let _ = std::fs::remove_dir(mountpoint);
}
