//! Part 6: restore. A daemon with N mounted volumes is stopped the way a
//! reboot leaves things (SIGTERM, SIGKILL if it hangs, then whatever is
//! still mounted below its root is detached); it is started again and timed
//! from the spawn until every volume's mount reads.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::mounts;
use crate::plugin::{Daemon, Kind};
use crate::sshd::HELLO;

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
    /// Seconds from spawn to every volume mounted and read.
    All(f64),
    /// Not done within [`WITHIN`]: how far it got.
    Stuck { mounted: usize, answering: bool },
}

pub async fn run(daemon: &mut Daemon, volumes: usize, opts: &Value) -> Result<Restored> {
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

    let start = Instant::now();
    daemon.spawn()?;
    let mut pending = points;
    while !pending.is_empty() {
        let mounted: BTreeSet<PathBuf> = mounts::mounted_under(&daemon.mount_root)
            .into_iter()
            .collect();
        let ready: Vec<PathBuf> = pending.intersection(&mounted).cloned().collect();
        let mut reads = JoinSet::new();
        for point in ready {
            reads.spawn(async move {
                let ok = mounts::reads(&point.join("hello"), HELLO, Duration::from_secs(5)).await;
                (point, ok)
            });
        }
        while let Some(done) = reads.join_next().await {
            let (point, ok) = done?;
            if ok {
                pending.remove(&point);
            }
        }
        if start.elapsed() > WITHIN {
            let answering = client.call("Plugin.Activate", &json!({})).await.is_ok();
            daemon.stop_like_reboot(STOP_GRACE);
            return Ok(Restored::Stuck {
                mounted: volumes - pending.len(),
                answering,
            });
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let took = start.elapsed().as_secs_f64();
    daemon.stop_like_reboot(STOP_GRACE);
    Ok(Restored::All(took))
}
