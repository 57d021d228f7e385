//! What this node has published of each staged volume, in memory: one
//! async lock per staged volume, so that its stage, unstage, publish and
//! unpublish run one at a time, and the publish targets that each stage
//! serves. Nothing here survives a restart, as nothing staged does.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::OwnedMutexGuard;

use crate::name::VolumeName;

/// The targets a staged volume is published at; held while the volume is
/// being worked on.
pub type Targets = OwnedMutexGuard<BTreeSet<PathBuf>>;

#[derive(Default)]
pub struct Stages {
    volumes: Mutex<HashMap<VolumeName, Arc<tokio::sync::Mutex<BTreeSet<PathBuf>>>>>,
    published: Mutex<HashMap<PathBuf, VolumeName>>,
}

impl Stages {
    /// Waits for whatever else is under way for the staged volume `name`.
    /// An entry lives as long as the plugin: one per volume ever staged on
    /// this node.
    pub async fn lock(&self, name: &VolumeName) -> Targets {
        let volume = plain(&self.volumes)
            .entry(name.clone())
            .or_default()
            .clone();
        volume.lock_owned().await
    }

    /// The staged volume published at `target`, if netfs published it.
    pub fn staged_for(&self, target: &Path) -> Option<VolumeName> {
        plain(&self.published).get(target).cloned()
    }

    pub fn add(&self, targets: &mut Targets, name: &VolumeName, target: &Path) {
        targets.insert(target.to_owned());
        plain(&self.published).insert(target.to_owned(), name.clone());
    }

    pub fn remove(&self, targets: &mut Targets, target: &Path) {
        targets.remove(target);
        plain(&self.published).remove(target);
    }
}

/// A panic while holding one of these locks leaves plain data behind.
fn plain<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> VolumeName {
        VolumeName::parse(s).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn one_volume_at_a_time_and_others_free() {
        let stages = Arc::new(Stages::default());
        let held = stages.lock(&name("a")).await;
        let waiting = {
            let stages = stages.clone();
            tokio::spawn(async move { stages.lock(&name("a")).await.len() })
        };
        // Another volume is not held up by the first.
        drop(stages.lock(&name("b")).await);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(held);
        assert_eq!(waiting.await.unwrap(), 0);
    }

    #[tokio::test]
    async fn targets_map_back_to_their_stage() {
        let stages = Stages::default();
        let mut targets = stages.lock(&name("a")).await;
        stages.add(&mut targets, &name("a"), Path::new("/data/published/a"));
        assert_eq!(
            stages.staged_for(Path::new("/data/published/a")),
            Some(name("a"))
        );
        stages.remove(&mut targets, Path::new("/data/published/a"));
        assert!(targets.is_empty());
        assert_eq!(stages.staged_for(Path::new("/data/published/a")), None);
    }
}
