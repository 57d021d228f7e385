//! Parts 1 and 2: the control plane on the socket and the daemon's resident
//! size. One client, one request at a time (as dockerd sends them): Create
//! N volumes, Get and Path each, List, Remove each. Resident size is read
//! with 0 volumes, and right after the 100th and the Nth Create.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::plugin::{volume_name, Daemon};
use crate::stats::{ms, percentile};

pub const OPS: [&str; 5] = ["Create", "Get", "Path", "List", "Remove"];

/// Latencies of one operation, in milliseconds.
#[derive(Debug, Clone)]
pub struct OpStats {
    pub p50: f64,
    pub p99: f64,
    /// One client, back to back: requests over the summed latency.
    pub per_sec: f64,
}

impl OpStats {
    fn of(samples: &[f64]) -> OpStats {
        let total: f64 = samples.iter().sum();
        OpStats {
            p50: percentile(samples, 50.0),
            p99: percentile(samples, 99.0),
            per_sec: samples.len() as f64 * 1000.0 / total,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ControlResult {
    pub volumes: usize,
    pub ops: Vec<(&'static str, OpStats)>,
    /// (volumes defined, resident MiB)
    pub rss: Vec<(usize, f64)>,
}

/// Runs the control-plane sequence on a daemon not yet started; `opts` are
/// the Create options (in the daemon's dialect) shared by every volume.
pub async fn run(
    daemon: &mut Daemon,
    volumes: usize,
    lists: usize,
    opts: &Value,
) -> Result<ControlResult> {
    daemon.start().await?;
    let client = daemon.client().clone();
    // Let start-up work finish before the idle figure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut rss = vec![(0, daemon.rss_mib()?)];
    let names: Vec<String> = (0..volumes).map(|i| volume_name("cp", i)).collect();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); OPS.len()];

    for (i, name) in names.iter().enumerate() {
        let body = json!({ "Name": name, "Opts": opts });
        let (took, _) = client.timed("VolumeDriver.Create", &body).await?;
        samples[0].push(ms(took));
        if i + 1 == 100 || i + 1 == volumes {
            rss.push((i + 1, daemon.rss_mib()?));
        }
    }
    for name in &names {
        let (took, reply) = client
            .timed("VolumeDriver.Get", &json!({ "Name": name }))
            .await?;
        samples[1].push(ms(took));
        if reply["Volume"]["Name"] != json!(name) {
            bail!("{}: Get {name} answered {reply}", daemon.name());
        }
    }
    for name in &names {
        let (took, reply) = client
            .timed("VolumeDriver.Path", &json!({ "Name": name }))
            .await?;
        samples[2].push(ms(took));
        if !reply["Mountpoint"].is_string() {
            bail!("{}: Path {name} answered {reply}", daemon.name());
        }
    }
    for _ in 0..lists {
        let (took, reply) = client.timed("VolumeDriver.List", &json!({})).await?;
        samples[3].push(ms(took));
        let listed = reply["Volumes"].as_array().map_or(0, Vec::len);
        if listed != volumes {
            bail!(
                "{}: List shows {listed} volumes, not {volumes}",
                daemon.name()
            );
        }
    }
    for name in &names {
        let (took, _) = client
            .timed("VolumeDriver.Remove", &json!({ "Name": name }))
            .await
            .with_context(|| format!("{}: Remove {name}", daemon.name()))?;
        samples[4].push(ms(took));
    }
    daemon.terminate(Duration::from_secs(10));
    Ok(ControlResult {
        volumes,
        ops: OPS
            .iter()
            .zip(&samples)
            .map(|(op, s)| (*op, OpStats::of(s)))
            .collect(),
        rss,
    })
}
