//! The state file: every volume's own options, creation time and mount IDs,
//! as one versioned JSON document. Written atomically (temp file, fsync,
//! rename, fsync of the directory) with mode 0600, because it holds secrets.
//! Before each replace the current file is kept as `<file>.bak`, so the
//! last good state before it is always there to go back to. A missing file
//! is empty state; a file that cannot be read or parsed is never replaced:
//! start-up fails naming it and saying what `.bak` holds. A volume whose
//! options this netfs no longer accepts is not a damaged file: it is kept
//! as stored and refused on its own ([`Setup::Unaccepted`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::BackendKind;
use crate::name::VolumeName;
use crate::options::VolumeOptions;

pub const STATE_VERSION: u32 = 1;

/// What is kept of one volume across restarts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRecord {
    /// Its backend and options.
    #[serde(flatten)]
    pub setup: Setup,
    /// RFC 3339.
    pub created_at: String,
    /// Containers currently using the volume.
    pub mount_ids: BTreeSet<String>,
    /// Device numbers (`major:minor`) of the volume's mounts that running
    /// containers may hold, so that a later netfs can put its new mount in
    /// their place (see `crate::reattach`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Where a CSI node staged and published the volume (netfs-csi only).
    #[serde(rename = "csiStage", skip_serializing_if = "Option::is_none")]
    pub stage: Option<StageRecord>,
}

/// A volume's backend and options as stored: what this netfs accepts, or
/// what an older netfs with a looser grammar accepted and this one does
/// not. The second is kept and written back exactly as it was, so nothing
/// is lost; the volume is listed, refused at Mount, and can be removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Setup {
    Valid {
        /// The backend chosen at Create (the volume's `type`, or the default then).
        backend: BackendKind,
        /// The options exactly as given at Create.
        options: VolumeOptions,
    },
    Unaccepted {
        backend: String,
        options: StoredOptions,
        /// Why this netfs does not accept them.
        #[serde(skip)]
        reason: String,
    },
}

impl Setup {
    pub fn backend_name(&self) -> &str {
        match self {
            Self::Valid { backend, .. } => backend.as_str(),
            Self::Unaccepted { backend, .. } => backend,
        }
    }

    pub fn source(&self) -> Option<&str> {
        match self {
            Self::Valid { options, .. } => options.source.as_deref(),
            Self::Unaccepted { options, .. } => options.0.get("source").map(String::as_str),
        }
    }
}

/// Volume options as they were stored, not parsed. They may hold a
/// password: Debug shows the keys only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoredOptions(pub BTreeMap<String, String>);

impl fmt::Debug for StoredOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// A record as the file has it: a shape error here makes the whole file
/// corrupt; what the options say is judged per volume ([`RawRecord::judge`]).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRecord {
    backend: String,
    options: StoredOptions,
    created_at: String,
    #[serde(default)]
    mount_ids: BTreeSet<String>,
    #[serde(default)]
    devices: Vec<String>,
    /// Read apart: a malformed stage record costs its stage, not the file.
    #[serde(default)]
    csi_stage: Option<serde_json::Value>,
}

impl RawRecord {
    fn judge(self, name: &VolumeName) -> VolumeRecord {
        let parsed = self
            .backend
            .parse::<BackendKind>()
            .map_err(|e| format!("stored backend: {e}"))
            .and_then(|backend| {
                VolumeOptions::parse(&self.options.0)
                    .map(|options| (backend, options))
                    .map_err(|e| e.to_string())
            });
        let setup = match parsed {
            Ok((backend, options)) => Setup::Valid { backend, options },
            Err(e) => Setup::Unaccepted {
                reason: format!("this netfs does not accept what an older one stored: {e}"),
                backend: self.backend,
                options: self.options,
            },
        };
        VolumeRecord {
            setup,
            created_at: self.created_at,
            mount_ids: self.mount_ids,
            devices: self.devices,
            stage: self.csi_stage.and_then(|raw| {
                serde_json::from_value(raw)
                    .inspect_err(|e| {
                        tracing::warn!(volume = %name, error = %e,
                            "the stored stage record is malformed; it is ignored")
                    })
                    .ok()
            }),
        }
    }
}

pub type Volumes = BTreeMap<VolumeName, VolumeRecord>;

#[derive(Deserialize)]
struct Document {
    version: u32,
    volumes: BTreeMap<VolumeName, RawRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}; it was left untouched{backup}")]
    Read {
        path: PathBuf,
        source: io::Error,
        backup: Backup,
    },
    #[error("state file {path} is corrupt ({source}); it was left untouched{backup}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
        backup: Backup,
    },
    #[error("state file {path} has version {found}; this netfs reads version {STATE_VERSION}; it was left untouched")]
    Version { path: PathBuf, found: u32 },
    #[error("cannot write state file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// What `<state file>.bak` offers when the state file itself is unusable,
/// said at the end of the start-up error so the operator knows what to do.
#[derive(Debug)]
pub struct Backup(String);

impl Backup {
    fn of(path: &Path) -> Self {
        let bak = backup_path(path);
        let advice = match read(&bak) {
            Ok(volumes) => format!(
                "; {} holds the previous good state ({} volume(s)): check it, copy it over {} \
                 and start netfs again (see docs/operations.md)",
                bak.display(),
                volumes.len(),
                path.display()
            ),
            Err(ReadError::Missing) => format!(
                "; there is no {} to go back to: repair the file, or move it away to start with no volumes",
                bak.display()
            ),
            Err(_) => format!(
                "; {} is not usable either: repair one of them, or move both away to start with no volumes",
                bak.display()
            ),
        };
        Self(advice)
    }
}

impl fmt::Display for Backup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `<state file>.bak`: the state as it was before the last write.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".bak");
    path.with_file_name(name)
}

enum ReadError {
    Missing,
    Io(io::Error),
    Json(serde_json::Error),
    Version(u32),
}

fn read(path: &Path) -> Result<Volumes, ReadError> {
    let text = fs::read(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ReadError::Missing,
        _ => ReadError::Io(e),
    })?;
    let doc: Document = serde_json::from_slice(&text).map_err(ReadError::Json)?;
    if doc.version != STATE_VERSION {
        return Err(ReadError::Version(doc.version));
    }
    Ok(doc
        .volumes
        .into_iter()
        .map(|(name, raw)| {
            let record = raw.judge(&name);
            (name, record)
        })
        .collect())
}

/// Reads the state; a missing file is empty state, anything else that is
/// not a good state is an error naming the file, which is left as it is.
pub fn load(path: &Path) -> Result<Volumes, StateError> {
    let path_buf = || path.to_owned();
    match read(path) {
        Ok(volumes) => Ok(volumes),
        Err(ReadError::Missing) => Ok(Volumes::new()),
        Err(ReadError::Io(source)) => Err(StateError::Read {
            path: path_buf(),
            source,
            backup: Backup::of(path),
        }),
        Err(ReadError::Json(source)) => Err(StateError::Corrupt {
            path: path_buf(),
            source,
            backup: Backup::of(path),
        }),
        Err(ReadError::Version(found)) => Err(StateError::Version {
            path: path_buf(),
            found,
        }),
    }
}

mod stage;
mod store;
pub use stage::{StageRecord, TargetRecord};
pub use store::{write_atomic, Encoded, StateStore, Writer};

#[cfg(test)]
mod tests;
