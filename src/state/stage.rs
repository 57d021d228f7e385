//! What a CSI node keeps of each stage with its volume's record, so that
//! a restarted netfs-csi can mount it again at the same staging path,
//! publish it again at the same targets, and put it back into the running
//! tasks that hold it (see `crate::csi`). Paths here are only what an
//! earlier run was given; the CSI front end checks them again before it
//! uses any.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A volume staged at one staging path, and where it is published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StageRecord {
    /// The orchestrator's volume ID.
    pub volume_id: String,
    /// Where the volume's tool mounts.
    pub staging_path: PathBuf,
    /// Directories netfs made for the staging path, outermost first.
    #[serde(default)]
    pub made: Vec<PathBuf>,
    /// Taken down with its last publish (Swarm's stages).
    #[serde(default)]
    pub with_last_publish: bool,
    #[serde(default)]
    pub targets: BTreeMap<PathBuf, TargetRecord>,
}

/// A publish target of a stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetRecord {
    pub readonly: bool,
    /// Directories netfs made for the target, outermost first.
    #[serde(default)]
    pub made: Vec<PathBuf>,
}
