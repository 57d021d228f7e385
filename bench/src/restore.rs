//! Part 6: restore. A daemon with N mounted volumes is stopped the way a
//! reboot leaves things (SIGTERM, SIGKILL if it hangs, then whatever is
//! still mounted below its root is detached); it is started again and timed
//! from the spawn until every volume's mount reads.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::mounts;
use crate::plugin::{Daemon, Kind};
use crate::ready::stop_sshfs;
use crate::sshd::{Sshd, HELLO};

/// Past this the restore counts as not done.
pub const WITHIN: Duration = Duration::from_secs(60);
/// rclone 1.60 does not exit on SIGTERM while it has mounts: this long, then SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Creates in flight at once while setting up (not timed). rclone 1.60
/// stops answering when Mounts overlap, so it gets one at a time.
fn setup_parallel(kind: Kind) -> usize {
    match kind {
        Kind::Netfs => 8,
        Kind::Rclone => 1,
    }
}

/// How a restore ended.
#[derive(Debug, Clone)]
pub enum Restored {
    /// Seconds from the spawn until every volume read; restarts its
    /// volumes went through meanwhile (netfs's Status; 0 for a peer that
    /// reports none).
    All { secs: f64, restarts: u64 },
    /// Not done within [`WITHIN`]: how far it got.
    Stuck { mounted: usize, answering: bool },
}

pub async fn run(daemon: &mut Daemon, volumes: usize, opts: &Value) -> Result<Restored> {
    run_marked(daemon, volumes, opts, &mut || {}).await
}

/// [`run`], calling `at_spawn` right before the daemon is started again.
pub async fn run_marked(
    daemon: &mut Daemon,
    volumes: usize,
    opts: &Value,
    at_spawn: &mut dyn FnMut(),
) -> Result<Restored> {
    daemon.start().await?;
    let client = daemon.client().clone();
    let names: Vec<String> = (0..volumes).map(|i| format!("restore{i:03}")).collect();
    for chunk in names.chunks(setup_parallel(daemon.kind)) {
        let mut set = JoinSet::new();
        for name in chunk {
            let (client, name, opts) = (client.clone(), name.clone(), opts.clone());
            set.spawn(async move {
                client
                    .call(
                        "VolumeDriver.Create",
                        &json!({ "Name": name, "Opts": opts }),
                    )
                    .await?;
                client
                    .call(
                        "VolumeDriver.Mount",
                        &json!({ "Name": name, "ID": "bench" }),
                    )
                    .await
            });
        }
        while let Some(done) = set.join_next().await {
            done??;
        }
    }
    let points: BTreeSet<PathBuf> = names.iter().map(|n| daemon.mount_root.join(n)).collect();
    daemon.stop_like_reboot(STOP_GRACE);
    if !mounts::mounted_under(&daemon.mount_root).is_empty() {
        bail!("{}: mounts left after the stop", daemon.name());
    }

    at_spawn();
    let start = Instant::now();
    daemon.spawn()?;
    if let Err(left) = wait_all(points, &daemon.mount_root, start).await {
        let answering = client.call("Plugin.Activate", &json!({})).await.is_ok();
        daemon.stop_like_reboot(STOP_GRACE);
        return Ok(Restored::Stuck {
            mounted: volumes - left,
            answering,
        });
    }
    let took = start.elapsed().as_secs_f64();
    let restarts = restarts(&client, &names).await;
    daemon.stop_like_reboot(STOP_GRACE);
    Ok(Restored::All {
        secs: took,
        restarts,
    })
}

/// The floor: `volumes` bare sshfs processes started by hand with the same
/// options, at most [`BARE_AT_ONCE`] of them not yet serving at any time
/// (as netfs paces them: all at once, a stock sshd refuses some), timed
/// until every mount reads. Seconds.
/// Restarts the volumes' Status counts, summed.
async fn restarts(client: &crate::client::Client, names: &[String]) -> u64 {
    let mut total = 0;
    for name in names {
        if let Ok(v) = client
            .call("VolumeDriver.Get", &json!({ "Name": name }))
            .await
        {
            total += v["Volume"]["Status"]["restarts"].as_u64().unwrap_or(0);
        }
    }
    total
}

pub async fn bare(sshd: &Sshd, dir: &Path, volumes: usize, extra: &str) -> Result<f64> {
    let points: Vec<PathBuf> = (0..volumes)
        .map(|i| dir.join(format!("bare{i:03}")))
        .collect();
    for p in &points {
        mounts::ensure_dir(p)?;
    }
    let turns = Arc::new(Semaphore::new(BARE_AT_ONCE));
    let start = Instant::now();
    let mut set = JoinSet::new();
    for p in points {
        let child = spawn_later(sshd, p.clone(), extra);
        let turns = turns.clone();
        set.spawn(async move {
            let _turn = turns.acquire().await;
            let mut sshfs = child()?;
            // Serving, not only mounted: sshfs mounts before it logs in.
            while !(mounts::is_mounted(&p) && mounts::reads(&p.join("hello"), HELLO, WITHIN).await)
            {
                if let Ok(Some(status)) = sshfs.try_wait() {
                    stop_sshfs(sshfs, &p);
                    bail!("bare sshfs for {} exited ({status})", p.display());
                }
                if start.elapsed() > WITHIN {
                    stop_sshfs(sshfs, &p);
                    bail!(
                        "bare sshfs for {} not mounted after {WITHIN:?}",
                        p.display()
                    );
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Ok((sshfs, p))
        });
    }
    let mut running = Vec::new();
    let mut failed = Vec::new();
    while let Some(done) = set.join_next().await {
        match done? {
            Ok(child) => running.push(child),
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    let took = start.elapsed().as_secs_f64();
    for (child, p) in running {
        stop_sshfs(child, &p);
    }
    if !failed.is_empty() {
        bail!(
            "{} of {volumes} bare sshfs failed ({} sshd refusals so far): {}",
            failed.len(),
            sshd.throttled(),
            failed.join("; ")
        );
    }
    Ok(took)
}

/// A closure that starts sshfs for `point` when called (inside its turn).
fn spawn_later(
    sshd: &Sshd,
    point: PathBuf,
    extra: &str,
) -> impl FnOnce() -> Result<std::process::Child> + Send + 'static {
    let (source, options) = (sshd.sshfs_source("restore"), sshd.sshfs_options(extra));
    move || {
        let source = source?;
        Ok(std::process::Command::new("sshfs")
            .arg(source)
            .arg(&point)
            .args(["-f", "-o", &options])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()?)
    }
}

/// Bare sshfs start-ups in flight at once: netfs's default pacing.
pub const BARE_AT_ONCE: usize = netfs::pacing::DEFAULT_LIMIT;

/// Waits until every path in `pending` (below `root`) is mounted and its
/// `hello` reads, polling every 10 ms; on timeout, how many are left.
async fn wait_all(
    mut pending: BTreeSet<PathBuf>,
    root: &Path,
    start: Instant,
) -> Result<(), usize> {
    while !pending.is_empty() {
        let mounted: BTreeSet<PathBuf> = mounts::mounted_under(root).into_iter().collect();
        let mut reads = JoinSet::new();
        for point in pending.intersection(&mounted).cloned() {
            reads.spawn(async move {
                let ok = mounts::reads(&point.join("hello"), HELLO, Duration::from_secs(5)).await;
                (point, ok)
            });
        }
        while let Some(done) = reads.join_next().await {
            if let Ok((point, true)) = done {
                pending.remove(&point);
            }
        }
        if start.elapsed() > WITHIN {
            return Err(pending.len());
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(())
}
