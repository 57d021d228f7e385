//! Parts 1 and 2: the control plane on the socket and the daemon's resident
//! size. One client, one request at a time (as dockerd sends them): Create
//! N volumes, Get and Path each, List, Remove each. When a peer runs too,
//! the two take turns (a request each for Create and Remove, batches of 50
//! for the others), so both see the same machine at the same time.
//! Resident size is read with 0 volumes, and right after the 100th and the
//! last Create. A contender may keep its volumes from one run to the next
//! (rclone: a thousand Creates take minutes), then only its Get, Path and
//! List are measured again.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::plugin::{volume_name, Daemon};
use crate::stats::{ms, percentile};

/// `Activate` does no work in either plugin: it is the round trip itself.
pub const OPS: [&str; 6] = ["Create", "Get", "Path", "List", "Remove", "Activate"];
const BATCH: usize = 250;
/// Get, Path and Activate go over every volume this many times, so that a
/// 99th percentile rests on 30 samples, not 10.
const PASSES: usize = 3;

/// Latencies of one operation, in milliseconds.
#[derive(Debug, Clone)]
pub struct OpStats {
    pub p50: f64,
    pub p99: f64,
    /// One client, back to back: requests over the summed latency.
    pub per_sec: f64,
}

impl OpStats {
    fn of(samples: &[f64]) -> Option<OpStats> {
        let total: f64 = samples.iter().sum();
        (!samples.is_empty()).then(|| OpStats {
            p50: percentile(samples, 50.0),
            p99: percentile(samples, 99.0),
            per_sec: samples.len() as f64 * 1000.0 / total,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ControlResult {
    /// Per operation of [`OPS`], in order; None if not measured this time.
    pub ops: Vec<Option<OpStats>>,
    /// (volumes defined, resident MiB); empty if it created nothing.
    pub rss: Vec<(usize, f64)>,
}

/// One daemon under test: not yet started, with the Create options (in its
/// dialect) every one of its volumes gets.
pub struct Contender<'a> {
    pub daemon: &'a mut Daemon,
    pub opts: Value,
    pub volumes: usize,
    /// Create the volumes (else they exist from an earlier run).
    pub create: bool,
    /// Remove them at the end, and stop the daemon.
    pub remove: bool,
}

struct Tally {
    names: Vec<String>,
    samples: Vec<Vec<f64>>,
    rss: Vec<(usize, f64)>,
}

/// Runs the sequence on every contender, taking turns; results in order.
pub async fn run(contenders: &mut [Contender<'_>], lists: usize) -> Result<Vec<ControlResult>> {
    for c in contenders.iter_mut() {
        if !c.daemon.is_running() {
            c.daemon.start().await?;
        }
    }
    // Let start-up work finish before the idle figure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut tallies = Vec::new();
    for c in contenders.iter() {
        tallies.push(Tally {
            names: (0..c.volumes).map(|i| volume_name("cp", i)).collect(),
            samples: vec![Vec::new(); OPS.len()],
            rss: if c.create {
                vec![(0, c.daemon.rss_mib()?)]
            } else {
                Vec::new()
            },
        });
    }
    let most = contenders.iter().map(|c| c.volumes).max().unwrap_or(0);

    for i in 0..most {
        for (c, t) in contenders.iter().zip(tallies.iter_mut()) {
            let Some(name) = t.names.get(i).filter(|_| c.create) else {
                continue;
            };
            let body = json!({ "Name": name, "Opts": c.opts });
            let (took, _) = c
                .daemon
                .client()
                .timed("VolumeDriver.Create", &body)
                .await?;
            t.samples[0].push(ms(took));
            if i + 1 == 100 || i + 1 == c.volumes {
                t.rss.push((i + 1, c.daemon.rss_mib()?));
            }
        }
    }
    let queries = [
        (1, "VolumeDriver.Get"),
        (2, "VolumeDriver.Path"),
        (5, "Plugin.Activate"),
    ];
    for (op, endpoint) in queries {
        for batch in (0..most * PASSES).step_by(BATCH) {
            for (c, t) in contenders.iter().zip(tallies.iter_mut()) {
                let names = t.names.iter().cycle().take(c.volumes * PASSES);
                for name in names.skip(batch).take(BATCH) {
                    let body = match op {
                        5 => json!({}),
                        _ => json!({ "Name": name }),
                    };
                    let (took, reply) = c.daemon.client().timed(endpoint, &body).await?;
                    t.samples[op].push(ms(took));
                    let fine = match op {
                        1 => reply["Volume"]["Name"] == json!(name),
                        2 => reply["Mountpoint"].is_string(),
                        _ => reply["Implements"].is_array(),
                    };
                    if !fine {
                        bail!("{}: {endpoint} {name} answered {reply}", c.daemon.name());
                    }
                }
            }
        }
    }
    for batch in (0..lists).step_by(BATCH) {
        for (c, t) in contenders.iter().zip(tallies.iter_mut()) {
            for _ in batch..lists.min(batch + BATCH) {
                let (took, reply) = c
                    .daemon
                    .client()
                    .timed("VolumeDriver.List", &json!({}))
                    .await?;
                t.samples[3].push(ms(took));
                let listed = reply["Volumes"].as_array().map_or(0, Vec::len);
                if listed != c.volumes {
                    bail!(
                        "{}: List shows {listed} volumes, not {}",
                        c.daemon.name(),
                        c.volumes
                    );
                }
            }
        }
    }
    for i in 0..most {
        for (c, t) in contenders.iter().zip(tallies.iter_mut()) {
            let Some(name) = t.names.get(i).filter(|_| c.remove) else {
                continue;
            };
            let (took, _) = c
                .daemon
                .client()
                .timed("VolumeDriver.Remove", &json!({ "Name": name }))
                .await
                .with_context(|| format!("{}: Remove {name}", c.daemon.name()))?;
            t.samples[4].push(ms(took));
        }
    }
    for c in contenders.iter_mut().filter(|c| c.remove) {
        c.daemon.terminate(Duration::from_secs(10));
    }
    Ok(tallies
        .into_iter()
        .map(|t| ControlResult {
            ops: t.samples.iter().map(|s| OpStats::of(s)).collect(),
            rss: t.rss,
        })
        .collect())
}
