//! What the CSI front end needs of the driver, kept apart from the volume
//! plugin's calls: checking a cluster volume's options without creating
//! anything, staging (create + mount under one name) and unstaging.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{Driver, DriverError};
use crate::name::VolumeName;
use crate::options::VolumeOptions;

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
        self.check_policy(&checked, &options, kind).map_err(bad)
    }

    /// Creates the volume if needed and mounts it at its mountpoint; a
    /// volume already staged answers at once. Concurrent calls for one
    /// name wait for each other: one tool per volume, ever.
    pub async fn stage(
        &self,
        name: &str,
        opts: BTreeMap<String, String>,
    ) -> Result<PathBuf, DriverError> {
        self.create(name, opts).await?;
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
}
