//! What this node has staged and published, in memory: one async lock per
//! staging path, so that its stage, unstage, publish and unpublish run one
//! at a time; each stage's driver volume, the directories netfs made for
//! it, and the targets it is published at. What survives a restart is
//! stored with the driver's volume ([`StageRecord`]); `csi::restore` puts
//! it back here.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::OwnedMutexGuard;

use crate::name::{VolumeName, MAX_NAME_LEN};
use crate::state::StageRecord;

/// A volume staged at one staging path.
#[derive(Debug)]
pub struct Stage {
    pub volume_id: String,
    /// The driver's volume, whose tool mounts at the staging path.
    pub name: VolumeName,
    /// Directories netfs made for the staging path, outermost first.
    pub made: Vec<PathBuf>,
    /// Taken down with its last publish: Swarm sends no NodeUnstageVolume
    /// for what its agent staged (see docs/csi.md); kubelet does.
    pub with_last_publish: bool,
    pub targets: BTreeMap<PathBuf, Target>,
}

/// A publish target of a stage, as stored with it.
pub use crate::state::TargetRecord as Target;

impl Stage {
    /// What is stored of this stage at `staging`.
    pub fn record(&self, staging: &Path) -> StageRecord {
        StageRecord {
            volume_id: self.volume_id.clone(),
            staging_path: staging.to_owned(),
            made: self.made.clone(),
            with_last_publish: self.with_last_publish,
            targets: self.targets.clone(),
        }
    }

    /// The stage a record describes, under the driver volume `name`.
    pub fn from_record(name: VolumeName, record: StageRecord) -> Self {
        Self {
            volume_id: record.volume_id,
            name,
            made: record.made,
            with_last_publish: record.with_last_publish,
            targets: record.targets,
        }
    }
}

/// The stage at a staging path, if any; held while it is worked on.
pub type Held = OwnedMutexGuard<Option<Stage>>;

/// What a staging path holds, readable without waiting for its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub volume_id: String,
    pub name: VolumeName,
}

#[derive(Default)]
pub struct Stages {
    paths: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<Option<Stage>>>>>,
    /// Each publish target's staging path.
    published: Mutex<HashMap<PathBuf, PathBuf>>,
    /// Each staging path's volume, from its stage to its unstage.
    named: Mutex<HashMap<PathBuf, Named>>,
}

impl Stages {
    /// Waits for whatever else is under way at the staging path. An entry
    /// lives as long as the plugin: one per staging path ever used.
    pub async fn lock(&self, staging: &Path) -> Held {
        let stage = plain(&self.paths)
            .entry(staging.to_owned())
            .or_default()
            .clone();
        stage.lock_owned().await
    }

    /// The staging path whose volume is published at `target`.
    pub fn staging_for(&self, target: &Path) -> Option<PathBuf> {
        plain(&self.published).get(target).cloned()
    }

    /// The volume staged at `staging`, or published at it as a target.
    pub fn find(&self, path: &Path) -> Option<Named> {
        let staging = self.staging_for(path).unwrap_or_else(|| path.to_owned());
        plain(&self.named).get(&staging).cloned()
    }

    /// A stage of `volume_id` at `staging`, under a driver volume name
    /// made of the volume ID (the characters a name may not hold become
    /// `-`), with a number added while another staging path holds it.
    pub fn begin(&self, volume_id: &str, staging: &Path, with_last_publish: bool) -> Stage {
        let mut named = plain(&self.named);
        let base = name_of(volume_id);
        let taken = |name: &str| {
            named
                .iter()
                .any(|(path, n)| n.name.as_str() == name && path != staging)
        };
        let mut candidate = base.clone();
        let mut n = 2;
        while taken(&candidate) {
            candidate = format!("{base}-{n}");
            n += 1;
        }
        let name = VolumeName::parse(&candidate).expect("made of allowed characters");
        named.insert(
            staging.to_owned(),
            Named {
                volume_id: volume_id.to_owned(),
                name: name.clone(),
            },
        );
        Stage {
            volume_id: volume_id.to_owned(),
            name,
            made: Vec::new(),
            with_last_publish,
            targets: BTreeMap::new(),
        }
    }

    /// Puts back a stage an earlier run made at `staging`, and answers it
    /// held: calls for it wait until its restore is done.
    pub async fn restore(&self, staging: &Path, stage: Stage) -> Held {
        plain(&self.named).insert(
            staging.to_owned(),
            Named {
                volume_id: stage.volume_id.clone(),
                name: stage.name.clone(),
            },
        );
        {
            let mut published = plain(&self.published);
            for target in stage.targets.keys() {
                published.insert(target.clone(), staging.to_owned());
            }
        }
        let mut held = self.lock(staging).await;
        *held = Some(stage);
        held
    }

    /// Forgets the stage at `staging` (unstaged, or its stage failed).
    pub fn end(&self, staging: &Path) {
        plain(&self.named).remove(staging);
    }

    pub fn add(&self, stage: &mut Stage, staging: &Path, target: &Path, how: Target) {
        stage.targets.insert(target.to_owned(), how);
        plain(&self.published).insert(target.to_owned(), staging.to_owned());
    }

    pub fn remove(&self, stage: &mut Stage, target: &Path) {
        stage.targets.remove(target);
        plain(&self.published).remove(target);
    }
}

/// A valid volume name made of a CSI volume ID, which may hold anything.
fn name_of(volume_id: &str) -> String {
    let mut name: String = volume_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        name.insert(0, 'v');
    }
    // Room for a number after it.
    name.truncate(MAX_NAME_LEN - 8);
    name
}

/// A panic while holding one of these locks leaves plain data behind.
fn plain<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_staging_path_at_a_time_and_others_free() {
        let stages = Arc::new(Stages::default());
        let held = stages.lock(Path::new("/s/a")).await;
        let waiting = {
            let stages = stages.clone();
            tokio::spawn(async move { stages.lock(Path::new("/s/a")).await.is_some() })
        };
        // Another staging path is not held up by the first.
        drop(stages.lock(Path::new("/s/b")).await);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(held);
        assert!(!waiting.await.unwrap());
    }

    #[test]
    fn names_are_made_of_volume_ids_and_unique_per_staging_path() {
        let stages = Stages::default();
        let a = stages.begin("pvc-1", Path::new("/k/h1/globalmount"), false);
        assert_eq!(a.name.as_str(), "pvc-1");
        let again = stages.begin("pvc-1", Path::new("/k/h1/globalmount"), false);
        assert_eq!(again.name.as_str(), "pvc-1", "the same path keeps its name");
        let other = stages.begin("pvc-1", Path::new("/k/h2/globalmount"), false);
        assert_eq!(other.name.as_str(), "pvc-1-2");
        let odd = stages.begin("host#/srv/share", Path::new("/k/h3/globalmount"), false);
        assert_eq!(odd.name.as_str(), "host--srv-share");
        let dotted = stages.begin(".x", Path::new("/k/h4/globalmount"), false);
        assert_eq!(dotted.name.as_str(), "v.x");
        let long = stages.begin(&"a".repeat(400), Path::new("/k/h5/globalmount"), false);
        assert!(long.name.as_str().len() < MAX_NAME_LEN);
        stages.end(Path::new("/k/h1/globalmount"));
        assert_eq!(stages.find(Path::new("/k/h1/globalmount")), None);
        let named = stages.find(Path::new("/k/h2/globalmount")).unwrap();
        assert_eq!(named.volume_id, "pvc-1");
    }

    #[test]
    fn targets_map_back_to_their_stage() {
        let stages = Stages::default();
        let staging = Path::new("/data/staged/a");
        let mut stage = stages.begin("a", staging, true);
        let target = Path::new("/data/published/a");
        let how = Target {
            readonly: false,
            made: vec![target.to_owned()],
        };
        stages.add(&mut stage, staging, target, how);
        assert_eq!(stages.staging_for(target), Some(staging.to_owned()));
        assert_eq!(stages.find(target).unwrap().name.as_str(), "a");
        stages.remove(&mut stage, target);
        assert!(stage.targets.is_empty());
        assert_eq!(stages.staging_for(target), None);
    }
}
