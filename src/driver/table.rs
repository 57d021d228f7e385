//! The volume table: each volume's stored record and the phase it is in,
//! with what exists in that phase. Only the driver's calls change it, each
//! holding the volume's own lock (`Entry::busy`) across its awaits.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::DriverError;
use crate::name::VolumeName;
use crate::state::{Encoded, StateError, StateStore, VolumeRecord};
use crate::supervisor::SupervisorHandle;

/// What runs, or may run, for a volume.
pub(super) struct Supervised {
    pub handle: SupervisorHandle,
    /// The tool's command line as shown, secrets as `***`.
    pub command: String,
    /// Supervisor generation at which each mount ID was taken.
    pub mounted_at: HashMap<String, u64>,
}

pub(super) enum Phase {
    /// Create is under way: the name is taken, nothing is stored or
    /// listed. The handle is the one Create starts, so shutdown stops it.
    Creating { handle: SupervisorHandle },
    /// Stored and listed; its process runs, or starts at the next Mount.
    Ready(Supervised),
    /// Stored and listed, but it may not run under the plugin's current
    /// settings (an option now denied, a backend setting now missing): it
    /// refuses Mount and can be removed. Nothing runs for it.
    Refused { reason: String, since: SystemTime },
    /// Remove has stored the volume's absence and stops what ran for it.
    Removing { handle: Option<SupervisorHandle> },
}

impl Phase {
    /// In the state file, and seen by every call.
    pub fn stored(&self) -> bool {
        matches!(self, Self::Ready(_) | Self::Refused { .. })
    }

    /// The supervisor of what runs or may run for the volume.
    pub fn handle(&self) -> Option<&SupervisorHandle> {
        match self {
            Self::Creating { handle } => Some(handle),
            Self::Ready(process) => Some(&process.handle),
            Self::Removing { handle } => handle.as_ref(),
            Self::Refused { .. } => None,
        }
    }
}

pub(super) struct Entry {
    pub record: VolumeRecord,
    pub mount_point: PathBuf,
    /// The mount point was given (a CSI staging path): netfs did not make
    /// it and leaves it in place when the volume goes.
    pub given_mount_point: bool,
    /// Serialises Create/Remove/Mount/Unmount of this volume.
    pub busy: Arc<tokio::sync::Mutex<()>>,
    pub phase: Phase,
}

impl Entry {
    pub fn new(record: VolumeRecord, mount_point: PathBuf, phase: Phase) -> Self {
        Self {
            record,
            mount_point,
            given_mount_point: false,
            busy: Arc::default(),
            phase,
        }
    }
}

#[derive(Default)]
pub(super) struct Table {
    pub entries: BTreeMap<VolumeName, Entry>,
    generation: u64,
}

/// The stored volumes encoded at one generation, ready to write.
pub(super) struct Snapshot {
    pub generation: u64,
    pub doc: Encoded,
}

impl Table {
    /// The entry of `name`, in whatever phase.
    pub fn get_mut(&mut self, name: &VolumeName) -> Result<&mut Entry, DriverError> {
        self.entries
            .get_mut(name)
            .ok_or_else(|| DriverError::NotFound(name.to_string()))
    }

    /// The entry of `name` if it is stored: what Get, Path and List see.
    pub fn stored(&self, name: &VolumeName) -> Result<&Entry, DriverError> {
        match self.entries.get(name) {
            Some(e) if e.phase.stored() => Ok(e),
            _ => Err(DriverError::NotFound(name.to_string())),
        }
    }

    /// Encodes the stored volumes as they are now, straight from the
    /// entries (no copy of them), at a new generation.
    pub fn snapshot(&mut self, store: &StateStore) -> Result<Snapshot, StateError> {
        self.generation += 1;
        // The devices containers may hold are the supervisor's to know.
        for entry in self.entries.values_mut() {
            if let Phase::Ready(process) = &entry.phase {
                if let Some(devices) = process.handle.devices() {
                    entry.record.devices = devices;
                }
            }
        }
        let stored = self
            .entries
            .iter()
            .filter(|(_, e)| e.phase.stored())
            .map(|(n, e)| (n, &e.record));
        Ok(Snapshot {
            generation: self.generation,
            doc: store.encode(stored)?,
        })
    }
}
