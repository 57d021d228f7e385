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
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

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
}

impl RawRecord {
    fn judge(self) -> VolumeRecord {
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
        }
    }
}

pub type Volumes = BTreeMap<VolumeName, VolumeRecord>;

#[derive(Deserialize)]
struct Document {
    version: u32,
    volumes: BTreeMap<VolumeName, RawRecord>,
}

/// The state document, encoded by [`StateStore::encode`], ready to save.
pub struct Encoded(Vec<u8>);

/// The volumes as borrowed for encoding: a save never copies the records.
struct VolumesRef<'a>(Vec<(&'a VolumeName, &'a VolumeRecord)>);

impl Serialize for VolumesRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().copied())
    }
}

#[derive(Serialize)]
struct DocumentRef<'a> {
    version: u32,
    volumes: VolumesRef<'a>,
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
        .map(|(name, raw)| (name, raw.judge()))
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

/// Serialises saves; a snapshot older than one already written is skipped,
/// so concurrent savers never leave an older state on disk.
pub struct StateStore {
    path: PathBuf,
    written: Mutex<u64>,
    /// Size of the last encoding, to size the next one's buffer at once.
    last_len: AtomicUsize,
}

impl StateStore {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            written: Mutex::new(0),
            last_len: AtomicUsize::new(0),
        }
    }

    /// Encodes `volumes` as the state document, straight from the caller's
    /// table: with a thousand volumes, copying the records cost more than
    /// writing them.
    pub fn encode<'a>(
        &self,
        volumes: impl IntoIterator<Item = (&'a VolumeName, &'a VolumeRecord)>,
    ) -> Result<Encoded, StateError> {
        let doc = DocumentRef {
            version: STATE_VERSION,
            volumes: VolumesRef(volumes.into_iter().collect()),
        };
        let mut bytes = Vec::with_capacity(self.last_len.load(Ordering::Relaxed) + 4096);
        serde_json::to_writer_pretty(&mut bytes, &doc).map_err(|e| StateError::Write {
            path: self.path.clone(),
            source: io::Error::other(e),
        })?;
        self.last_len.store(bytes.len(), Ordering::Relaxed);
        Ok(Encoded(bytes))
    }

    /// Writes `doc`, encoded at `generation` (which grows with every change).
    pub async fn save(&self, generation: u64, doc: Encoded) -> Result<(), StateError> {
        let mut written = self.written.lock().await;
        if generation <= *written {
            return Ok(());
        }
        let path = self.path.clone();
        let result = tokio::task::spawn_blocking(move || write_atomic(&path, &doc.0))
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

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
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
    let bak_tmp = dir.join(format!(".{file_name}.bak.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    keep_backup(path, &bak_tmp)?;
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// Makes `<path>.bak` the file now at `path` (a hard link: no data is
/// copied, so it works on a full disk too), replacing the old `.bak` in one
/// rename so that some `.bak` is always there. `path` is only ever replaced
/// whole, never changed in place, so the link keeps the old content.
fn keep_backup(path: &Path, bak_tmp: &Path) -> io::Result<()> {
    let _ = fs::remove_file(bak_tmp);
    match fs::hard_link(path, bak_tmp) {
        Ok(()) => fs::rename(bak_tmp, backup_path(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
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
            setup: Setup::Valid {
                backend: BackendKind::Sshfs,
                options: VolumeOptions::parse(&opts.into_iter().collect()).unwrap(),
            },
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
        store
            .save(1, store.encode(&volumes).unwrap())
            .await
            .unwrap();
        assert_eq!(load(&path).unwrap(), volumes);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // An older snapshot never overwrites a newer one.
        store
            .save(1, store.encode(&Volumes::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(load(&path).unwrap(), volumes);
    }

    #[test]
    fn corrupt_and_foreign_files_are_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        for (text, want) in [
            ("{\"version\":1,\"volumes\":", "is corrupt"),
            ("", "is corrupt"),
            ("{\"version\":9,\"volumes\":{}}", "has version 9"),
            ("{\"version\":1,\"volumes\":{\"../x\":{}}}", "is corrupt"),
        ] {
            fs::write(&path, text).unwrap();
            let err = load(&path).unwrap_err().to_string();
            assert!(err.contains(want) && err.contains("state.json"), "{err}");
            assert!(err.contains("left untouched"), "{err}");
            assert_eq!(fs::read_to_string(&path).unwrap(), text);
        }
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.starts_with("cannot read state file"), "{err}");
        assert!(
            err.contains("no ") && err.contains("state.json.bak"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn options_this_netfs_does_not_accept_are_kept_as_stored_and_refused_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let text = r#"{"version": 1, "volumes": {
            "good": {"backend": "sshfs", "options": {"source": "u@h:/x"}, "createdAt": "2026-01-01T00:00:00Z", "mountIds": ["c1"]},
            "old-key": {"backend": "sshfs", "options": {"source": "u@h:/y", "cache": "yes", "password": "pw"}, "createdAt": "2026-01-02T00:00:00Z", "mountIds": ["c2"]},
            "old-type": {"backend": "smb", "options": {"source": "//h/share"}, "createdAt": "2026-01-03T00:00:00Z"}
        }}"#;
        fs::write(&path, text).unwrap();
        let volumes = load(&path).unwrap();
        let get = |n: &str| &volumes[&VolumeName::parse(n).unwrap()];
        assert!(matches!(get("good").setup, Setup::Valid { .. }));
        let Setup::Unaccepted { reason, .. } = &get("old-key").setup else {
            panic!("{:?}", get("old-key"));
        };
        assert!(
            reason.contains("unknown volume option \"cache\""),
            "{reason}"
        );
        assert_eq!(get("old-key").mount_ids, ["c2".to_owned()].into());
        let Setup::Unaccepted { reason, .. } = &get("old-type").setup else {
            panic!("{:?}", get("old-type"));
        };
        assert!(reason.contains("unknown type \"smb\""), "{reason}");
        assert_eq!(get("old-type").setup.backend_name(), "smb");
        assert_eq!(get("old-type").setup.source(), Some("//h/share"));
        // The password is in none of the Debug output.
        assert!(!format!("{volumes:?}").contains("pw"));
        // Written back exactly as stored.
        let store = StateStore::new(path.clone());
        store
            .save(1, store.encode(&volumes).unwrap())
            .await
            .unwrap();
        let written: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        let given: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(written["volumes"]["old-key"], given["volumes"]["old-key"]);
        assert_eq!(
            written["volumes"]["old-type"]["options"],
            given["volumes"]["old-type"]["options"]
        );
        assert_eq!(written["volumes"]["old-type"]["backend"], "smb");
        assert_eq!(load(&path).unwrap(), volumes);
        // A record of the wrong shape is still a damaged file.
        fs::write(&path, r#"{"version":1,"volumes":{"v":{"backend":"sshfs","options":{"o":1},"createdAt":"x"}}}"#).unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("is corrupt"));
    }

    #[tokio::test]
    async fn the_state_before_the_last_write_is_kept_as_bak() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let bak = backup_path(&path);
        assert_eq!(bak, dir.path().join("state.json.bak"));
        let store = StateStore::new(path.clone());
        let mut one = Volumes::new();
        one.insert(VolumeName::parse("v1").unwrap(), record());
        let mut two = one.clone();
        two.insert(VolumeName::parse("v2").unwrap(), record());
        store.save(1, store.encode(&one).unwrap()).await.unwrap();
        assert!(!bak.exists(), "nothing before the first write");
        store.save(2, store.encode(&two).unwrap()).await.unwrap();
        assert_eq!(load(&bak).unwrap(), one);
        assert_eq!(load(&path).unwrap(), two);
        let mode = fs::metadata(&bak).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        store
            .save(3, store.encode(&Volumes::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(load(&bak).unwrap(), two);
        assert!(load(&path).unwrap().is_empty());
        // no temporary files are left next to the state
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["state.json", "state.json.bak"]);

        // A corrupt state file: the error says what the .bak offers.
        fs::write(&path, "{\"version\":1,").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains("state.json.bak holds the previous good state (2 volume(s))"),
            "{err}"
        );
        fs::write(&bak, "garbage").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("state.json.bak is not usable either"), "{err}");
    }
}
