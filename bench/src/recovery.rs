//! Part 5: recovery. For each of a few volumes (each fresh, so the restart
//! backoff starts from its first step), `kill -9` its sshfs and time until
//! a file in the mount reads again.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::mounts;
use crate::plugin::{create_mount, Daemon};
use crate::procs;
use crate::sshd::{Sshd, HELLO};
use crate::stats::{median, ms};

const WITHIN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct RecoveryResult {
    pub median_ms: f64,
    pub max_ms: f64,
}

pub async fn run(sshd: &Sshd, netfs: &mut Daemon, volumes: usize) -> Result<RecoveryResult> {
    netfs.start().await?;
    let client = netfs.client().clone();
    let opts = sshd.netfs_options("recovery", "")?;
    let mut points = Vec::new();
    for i in 0..volumes {
        let name = format!("recovery{i}");
        let point = create_mount(&client, &name, &opts).await?;
        points.push((name, point));
    }
    let mut samples = Vec::new();
    for (name, mountpoint) in &points {
        let hello = mountpoint.join("hello");
        let pid = volume_pid(
            &client
                .call("VolumeDriver.Get", &json!({ "Name": name }))
                .await?,
        )?;
        if !mounts::reads(&hello, HELLO, Duration::from_secs(5)).await {
            bail!("volume {name} does not read before the kill");
        }
        let start = Instant::now();
        kill(Pid::from_raw(pid), Signal::SIGKILL)?;
        // The kill lands asynchronously: do not take a read served by the
        // dying process for a recovered mount.
        while procs::alive(pid) && start.elapsed() < WITHIN {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        loop {
            if mounts::reads(&hello, HELLO, Duration::from_secs(2)).await {
                break;
            }
            if start.elapsed() > WITHIN {
                bail!(
                    "volume {name} still unreadable {WITHIN:?} after kill -9\n{}",
                    netfs.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        samples.push(ms(start.elapsed()));
        let now = volume_pid(
            &client
                .call("VolumeDriver.Get", &json!({ "Name": name }))
                .await?,
        )?;
        if now == pid {
            bail!("volume {name} reads again, but with the same pid {pid}");
        }
    }
    netfs.terminate(Duration::from_secs(10));
    Ok(RecoveryResult {
        median_ms: median(&samples),
        max_ms: samples.iter().copied().fold(0.0, f64::max),
    })
}

pub fn volume_pid(reply: &Value) -> Result<i32> {
    match reply["Volume"]["Status"]["pid"].as_i64() {
        Some(pid) if pid > 0 => Ok(pid as i32),
        _ => bail!("no pid in the volume's Status: {reply}"),
    }
}
