//! What the CSI front end needs of the driver, kept apart from the volume
//! plugin's calls: checking a cluster volume's options without creating
//! anything, staging (create + mount under one name, at the staging path
//! the orchestrator gives), unstaging, and how a staged volume's tool is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::table::Phase;
use super::{Driver, DriverError};
use crate::name::VolumeName;
use crate::options::VolumeOptions;
use crate::supervisor::ProcState;

/// The mount ID a staged volume holds, so that the driver counts it in use.
const STAGE_ID: &str = "csi-stage";

impl Driver {
    /// Checks options as `create` would (keys, values, the option policy),
    /// for a volume that is only described here and created on each node.
    pub fn check_options(
        &self,
        name: &str,
        opts: &BTreeMap<String, String>,
    ) -> Result<(), DriverError> {
        let checked = VolumeName::parse(name)?;
        let bad = |source| DriverError::Options {
            name: name.to_owned(),
            source,
        };
        let options = VolumeOptions::parse(opts).map_err(bad)?;
        let kind = options.kind.unwrap_or(self.config.default_type);
        let mount_point = self.mount_point(&checked);
        self.check_policy(&checked, &mount_point, &options, kind)
            .map_err(bad)
    }

    /// Creates the volume if needed, its tool mounting at `at` (which
    /// netfs leaves in place when the volume goes), and mounts it; a volume
    /// already staged answers at once. Concurrent calls for one name wait
    /// for each other: one tool per volume, ever.
    pub async fn stage(
        &self,
        name: &str,
        at: &Path,
        opts: BTreeMap<String, String>,
    ) -> Result<PathBuf, DriverError> {
        self.create_at(name, Some(at), opts).await?;
        self.mount(name, STAGE_ID).await
    }

    /// Unmounts and removes a staged volume; one that is not there counts
    /// as done.
    pub async fn unstage(&self, name: &str) -> Result<(), DriverError> {
        match self.unmount(name, STAGE_ID).await {
            Err(DriverError::NotFound(_)) => return Ok(()),
            other => other?,
        }
        match self.remove(name).await {
            Err(DriverError::NotFound(_)) => Ok(()),
            other => other,
        }
    }

    /// True if the volume exists and holds its stage.
    pub fn is_staged(&self, name: &str) -> bool {
        let Ok(name) = VolumeName::parse(name) else {
            return false;
        };
        let table = self.table();
        table
            .entries
            .get(&name)
            .is_some_and(|e| e.phase.stored() && e.record.mount_ids.contains(STAGE_ID))
    }

    /// How a staged volume's tool is: its state and its last error; `None`
    /// if the volume is not there.
    pub fn condition(&self, name: &str) -> Option<(ProcState, Option<String>)> {
        let name = VolumeName::parse(name).ok()?;
        let table = self.table();
        match &table.stored(&name).ok()?.phase {
            Phase::Ready(process) => {
                let status = process.handle.status();
                Some((status.state, status.last_error))
            }
            Phase::Refused { reason, .. } => Some((ProcState::Failed, Some(reason.clone()))),
            Phase::Creating { .. } | Phase::Removing { .. } => None,
        }
    }
}
