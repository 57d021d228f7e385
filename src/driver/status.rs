//! A volume as Get and List show it: its mountpoint and creation time,
//! and for Get a Status map of the process state, never a secret.

use std::path::PathBuf;

use serde_json::{json, Map, Value};

use super::table::{Entry, Phase};
use super::versions::Versions;
use crate::name::VolumeName;
use crate::options::remote::{self, RcloneSource};
use crate::options::BackendKind;
use crate::secret::redact_arg;

fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A volume as Get and List show it.
#[derive(Clone, Debug)]
pub struct VolumeInfo {
    pub name: String,
    pub mount_point: PathBuf,
    /// RFC 3339.
    pub created_at: String,
    /// Get's only (what `docker volume inspect` shows as Status).
    pub status: Option<Map<String, Value>>,
}

/// `versions` for Get, which shows a Status; none for List. With
/// `reattach`, running containers are given each new mount.
pub(super) fn volume(
    name: &VolumeName,
    entry: &Entry,
    versions: Option<&Versions>,
    reattach: bool,
) -> VolumeInfo {
    VolumeInfo {
        name: name.to_string(),
        mount_point: entry.mount_point.clone(),
        created_at: entry.record.created_at.clone(),
        status: versions.map(|v| status(entry, v, reattach)),
    }
}

/// The volume's source, secrets as `***`; an rclone remote is read as rclone
/// reads it, so its path stays visible after a secret parameter.
fn shown_source(entry: &Entry) -> Option<String> {
    let source = entry.record.setup.source()?;
    let rclone = entry.record.setup.backend_name() == BackendKind::Rclone.as_str();
    Some(match remote::parse(source) {
        RcloneSource::Remote(r) if rclone => r.redacted(),
        _ => redact_arg(source),
    })
}

fn status(entry: &Entry, versions: &Versions, reattach: bool) -> Map<String, Value> {
    let ids: Vec<&String> = entry.record.mount_ids.iter().collect();
    let mut map = Map::new();
    let backend = entry.record.setup.backend_name();
    map.insert("backend".into(), json!(backend));
    if backend == BackendKind::Rclone.as_str() {
        if let Some(version) = versions.rclone_known() {
            map.insert("rcloneVersion".into(), json!(version));
        }
    }
    map.insert("source".into(), json!(shown_source(entry)));
    map.insert("mountIds".into(), json!(ids));
    match &entry.phase {
        Phase::Ready(process) => {
            let status = process.handle.status();
            // IDs taken before the tool's last restart hold its old mount,
            // unless re-attach gave every holder the new one: then only
            // the live mount's device is left to hold.
            let healed = reattach && status.devices.len() <= 1;
            let stale: Vec<&String> = ids
                .iter()
                .copied()
                .filter(|_| !healed)
                .filter(|id| {
                    process
                        .mounted_at
                        .get(*id)
                        .is_none_or(|g| *g < status.generation)
                })
                .collect();
            map.insert("state".into(), json!(status.state));
            map.insert("since".into(), json!(rfc3339(status.since)));
            map.insert("pid".into(), json!(status.pid));
            map.insert("restarts".into(), json!(status.restarts));
            map.insert("command".into(), json!(process.command));
            if !stale.is_empty() {
                map.insert("mountIdsBeforeLastRestart".into(), json!(stale));
            }
            if let Some(master) = &status.connection {
                map.insert("connection".into(), crate::connections::status_json(master));
            }
            if let Some(err) = &status.last_error {
                map.insert("lastError".into(), json!(err));
            }
            if status.reattach.happened() {
                map.insert("reattach".into(), json!(status.reattach));
            }
        }
        Phase::Refused { reason, since } => {
            map.insert("state".into(), json!("failed"));
            map.insert("since".into(), json!(rfc3339(*since)));
            map.insert("pid".into(), Value::Null);
            map.insert("restarts".into(), json!(0));
            map.insert("command".into(), json!(""));
            // Every ID it holds was taken by an earlier run.
            if !ids.is_empty() {
                map.insert("mountIdsBeforeLastRestart".into(), json!(ids));
            }
            map.insert("lastError".into(), json!(reason));
        }
        // Never shown: Get and List see stored volumes only.
        Phase::Creating { .. } | Phase::Removing { .. } => {}
    }
    map
}
