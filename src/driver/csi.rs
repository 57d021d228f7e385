//! What the CSI front end needs of the driver, kept apart from the volume
//! plugin's calls: checking a cluster volume's options without creating
//! anything, staging (create + mount under one name, at the staging path
//! the orchestrator gives), unstaging, and how a staged volume's tool is.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::table::Phase;
use super::{Driver, DriverError};
use crate::name::VolumeName;
use crate::options::VolumeOptions;
use crate::state::StageRecord;
use crate::supervisor::ProcState;

/// The mount ID a staged volume holds, so that the driver counts it in use.
const STAGE_ID: &str = "csi-stage";

/// True if a stored record is of a volume whose stage finished (mounted
/// and stored), rather than one cut short.
pub fn staged(record: &crate::state::VolumeRecord) -> bool {
    record.mount_ids.contains(STAGE_ID)
}

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

    /// Creates the volume if needed, its tool mounting at the stage's
    /// staging path (which netfs leaves in place when the volume goes),
    /// and mounts it; a volume already staged answers at once. The stage
    /// is stored with the volume, for a later netfs to restore. Concurrent
    /// calls for one name wait for each other: one tool per volume, ever.
    pub async fn stage(
        &self,
        name: &str,
        stage: StageRecord,
        opts: BTreeMap<String, String>,
    ) -> Result<PathBuf, DriverError> {
        self.create_at(name, Some(stage), opts).await?;
        self.mount(name, STAGE_ID).await
    }

    /// Stores what the node now knows of a volume's stage (its targets).
    pub async fn keep_stage(&self, name: &str, stage: StageRecord) -> Result<(), DriverError> {
        let name = VolumeName::parse(name)?;
        let (_guard, snapshot) = self
            .lock(&name, |table| {
                table.get_mut(&name)?.record.stage = Some(stage);
                Ok(table.snapshot(&self.store))
            })
            .await?;
        Ok(self.save(snapshot).await?)
    }

    /// True if the last mount of a volume found running containers (or
    /// other namespaces) holding an earlier mount of it: it put its mount
    /// back there, failed to, or found one still served.
    pub fn was_held(&self, name: &str) -> bool {
        let Ok(name) = VolumeName::parse(name) else {
            return false;
        };
        let table = self.table();
        let Ok(Phase::Ready(process)) = table.stored(&name).map(|e| &e.phase) else {
            return false;
        };
        let status = process.handle.status();
        status.reattach.happened() || status.devices.len() > 1
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
