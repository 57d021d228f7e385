//! Writing the state file: encoding straight from the driver's table,
//! serialised saves that never put an older state over a newer one, and
//! the atomic replace that keeps the state before it as `.bak`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Mutex;

use super::{backup_path, StateError, VolumeRecord, STATE_VERSION};
use crate::name::VolumeName;

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

/// How an encoded state reaches the disk: [`write_atomic`] in netfs.
pub type Writer = Arc<dyn Fn(&Path, &[u8]) -> io::Result<()> + Send + Sync>;

/// Serialises saves; a snapshot older than one already written is skipped,
/// so concurrent savers never leave an older state on disk.
pub struct StateStore {
    path: PathBuf,
    writer: Writer,
    written: Mutex<u64>,
    /// Size of the last encoding, to size the next one's buffer at once.
    last_len: AtomicUsize,
}

impl StateStore {
    pub fn new(path: PathBuf) -> Self {
        Self::with_writer(path, Arc::new(write_atomic))
    }

    /// A store that writes through `writer` (unit tests make writes fail).
    pub fn with_writer(path: PathBuf, writer: Writer) -> Self {
        Self {
            path,
            writer,
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
        let (path, writer) = (self.path.clone(), self.writer.clone());
        let result = tokio::task::spawn_blocking(move || writer(&path, &doc.0))
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

pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
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
