//! The state file: every volume's own options, creation time and mount IDs,
//! as one versioned JSON document. Written atomically (temp file, fsync,
//! rename, fsync of the directory) with mode 0600, because it holds secrets.
//! A missing file is empty state; a file that cannot be read or parsed is
//! never replaced: start-up fails naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::backend::BackendKind;
use crate::name::VolumeName;
use crate::options::VolumeOptions;

pub const STATE_VERSION: u32 = 1;

/// What is kept of one volume across restarts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRecord {
    /// The backend chosen at Create (the volume's `type`, or the default then).
    pub backend: BackendKind,
    /// The options exactly as given at Create.
    pub options: VolumeOptions,
    /// RFC 3339.
    pub created_at: String,
    /// Containers currently using the volume.
    #[serde(default)]
    pub mount_ids: BTreeSet<String>,
}

pub type Volumes = BTreeMap<VolumeName, VolumeRecord>;

#[derive(Serialize, Deserialize)]
struct Document {
    version: u32,
    volumes: Volumes,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("state file {path} is corrupt ({source}); it was left untouched: repair it or restore {path}.bak, then start again")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("state file {path} has version {found}; this netfs reads version {STATE_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("cannot write state file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

pub fn load(path: &Path) -> Result<Volumes, StateError> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Volumes::new()),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let doc: Document = serde_json::from_slice(&text).map_err(|source| StateError::Corrupt {
        path: path.to_owned(),
        source,
    })?;
    if doc.version != STATE_VERSION {
        return Err(StateError::Version {
            path: path.to_owned(),
            found: doc.version,
        });
    }
    Ok(doc.volumes)
}

/// Serialises saves; a snapshot older than one already written is skipped,
/// so concurrent savers never leave an older state on disk.
pub struct StateStore {
    path: PathBuf,
    written: Mutex<u64>,
}

impl StateStore {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            written: Mutex::new(0),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `volumes`, taken at `generation` (which grows with every change).
    pub async fn save(&self, generation: u64, volumes: Volumes) -> Result<(), StateError> {
        let mut written = self.written.lock().await;
        if generation <= *written {
            return Ok(());
        }
        let path = self.path.clone();
        let result = tokio::task::spawn_blocking(move || write_atomic(&path, &volumes))
            .await
            .unwrap_or_else(|join| Err(io::Error::other(join.to_string())));
        result.map_err(|source| StateError::Write {
            path: self.path.clone(),
            source,
        })?;
        *written = generation;
        Ok(())
    }
}

fn write_atomic(path: &Path, volumes: &Volumes) -> io::Result<()> {
    let doc = Document {
        version: STATE_VERSION,
        volumes: volumes.clone(),
    };
    let bytes = serde_json::to_vec_pretty(&doc).map_err(io::Error::other)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = file.write_all(&bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn record() -> VolumeRecord {
        let opts = [
            ("source".to_string(), "u@h:/x".to_string()),
            ("password".into(), "pw".into()),
        ];
        VolumeRecord {
            backend: BackendKind::Sshfs,
            options: VolumeOptions::parse(&opts.into_iter().collect()).unwrap(),
            created_at: "2026-01-01T00:00:00Z".into(),
            mount_ids: ["abc".to_string()].into(),
        }
    }

    #[tokio::test]
    async fn round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        assert!(load(&path).unwrap().is_empty());
        let store = StateStore::new(path.clone());
        let mut volumes = Volumes::new();
        volumes.insert(VolumeName::parse("v1").unwrap(), record());
        store.save(1, volumes.clone()).await.unwrap();
        assert_eq!(load(&path).unwrap(), volumes);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // An older snapshot never overwrites a newer one.
        store.save(1, Volumes::new()).await.unwrap();
        assert_eq!(load(&path).unwrap(), volumes);
    }

    #[test]
    fn corrupt_and_foreign_files_are_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        for (text, want) in [
            ("{\"version\":1,\"volumes\":", "is corrupt"),
            ("{\"version\":9,\"volumes\":{}}", "has version 9"),
            ("{\"version\":1,\"volumes\":{\"../x\":{}}}", "is corrupt"),
        ] {
            fs::write(&path, text).unwrap();
            let err = load(&path).unwrap_err().to_string();
            assert!(err.contains(want) && err.contains("state.json"), "{err}");
            assert_eq!(fs::read_to_string(&path).unwrap(), text);
        }
    }
}
