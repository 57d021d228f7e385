//! A volume as Get and List show it: its mountpoint and creation time,
//! and for Get a Status map of the process state, never a secret.

use std::path::PathBuf;

use serde::Serialize;

use super::table::{Entry, Phase};
use super::versions::Versions;
use crate::connections::ConnectionReport;
use crate::name::VolumeName;
use crate::options::remote::{self, RcloneSource};
use crate::options::BackendKind;
use crate::reattach::ReattachStatus;
use crate::secret::redact_arg;
use crate::supervisor::ProcState;

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
    pub status: Option<VolumeStatus>,
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

/// What `docker volume inspect` shows as a volume's Status.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStatus {
    pub backend: String,
    /// For an rclone volume, once known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rclone_version: Option<String>,
    /// Secrets as `***`.
    pub source: Option<String>,
    pub mount_ids: Vec<String>,
    /// What runs it; none for a volume being created or removed (never
    /// shown: Get and List see stored volumes only).
    #[serde(flatten)]
    pub process: Option<ProcessReport>,
}

/// The volume's process, as its Status shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessReport {
    pub state: ProcState,
    /// RFC 3339.
    pub since: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    /// The tool's command line, secrets hidden.
    pub command: String,
    /// IDs taken before the tool's last restart: they hold its old mount.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mount_ids_before_last_restart: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reattach: Option<ReattachStatus>,
}

fn status(entry: &Entry, versions: &Versions, reattach: bool) -> VolumeStatus {
    let ids: Vec<String> = entry.record.mount_ids.iter().cloned().collect();
    let backend = entry.record.setup.backend_name();
    let rclone_version = (backend == BackendKind::Rclone.as_str())
        .then(|| versions.rclone_known())
        .flatten()
        .map(|v| v.to_string());
    let process = match &entry.phase {
        Phase::Ready(process) => {
            let status = process.handle.status();
            // IDs taken before the tool's last restart hold its old mount,
            // unless re-attach gave every holder the new one: then only
            // the live mount's device is left to hold.
            let healed = reattach && status.devices.len() <= 1;
            let stale = ids
                .iter()
                .filter(|_| !healed)
                .filter(|id| {
                    process
                        .mounted_at
                        .get(*id)
                        .is_none_or(|g| *g < status.generation)
                })
                .cloned()
                .collect();
            Some(ProcessReport {
                state: status.state,
                since: rfc3339(status.since),
                pid: status.pid,
                restarts: status.restarts,
                command: process.command.clone(),
                mount_ids_before_last_restart: stale,
                connection: status.connection.as_deref().map(ConnectionReport::of),
                last_error: status.last_error.clone(),
                reattach: status.reattach.happened().then(|| status.reattach.clone()),
            })
        }
        Phase::Refused { reason, since } => Some(ProcessReport {
            state: ProcState::Failed,
            since: rfc3339(*since),
            pid: None,
            restarts: 0,
            command: String::new(),
            // Every ID it holds was taken by an earlier run.
            mount_ids_before_last_restart: ids.clone(),
            connection: None,
            last_error: Some(reason.clone()),
            reattach: None,
        }),
        Phase::Creating { .. } | Phase::Removing { .. } => None,
    };
    VolumeStatus {
        backend: backend.to_owned(),
        rclone_version,
        source: shown_source(entry),
        mount_ids: ids,
        process,
    }
}
