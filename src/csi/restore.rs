//! What a restarted netfs-csi brings back. Swarm's agent keeps its stages
//! in memory and does not stage or publish a running task's volume again
//! after the plugin restarts, so netfs mounts each stored stage again,
//! publishes it again at its targets, and the supervisor's re-attach puts
//! the new mount into the tasks that hold the dead one. A record is used
//! only if its paths pass the same checks as a request's; anything else
//! is logged and dropped.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::node::{take_down, unmount};
use super::paths::{self, Roots};
use super::stages::{Held, Stage, Stages};
use crate::driver::{self, Driver};
use crate::mounts::MountTable;
use crate::name::VolumeName;
use crate::state::{Setup, StageRecord, Volumes};
use crate::supervisor::ProcState;

/// The stored volumes the driver restores, and their stages.
#[derive(Default)]
pub struct Plan {
    pub volumes: Volumes,
    pub stages: Vec<(PathBuf, Stage)>,
}

/// Sorts the stored volumes: those whose stage record holds up are
/// restored, the others forgotten (the next write of the state drops
/// them). With re-attach off nothing is restored: a task's container
/// would keep its dead mount anyway, and Swarm stages again for new ones.
pub fn plan(volumes: Volumes, staging: &Roots, targets: &Roots, reattach: bool) -> Plan {
    let mut plan = Plan::default();
    if !reattach && !volumes.is_empty() {
        tracing::info!(
            volumes = volumes.len(),
            "re-attach is off: the stages of an earlier run are not restored"
        );
        return plan;
    }
    let mut seen_staging = HashSet::new();
    let mut seen_targets = HashSet::new();
    for (name, record) in volumes {
        let checked = match (&record.setup, &record.stage) {
            (Setup::Unaccepted { reason, .. }, _) => Err(reason.clone()),
            (_, None) => Err("it has no stage record".to_owned()),
            (_, Some(_)) if !driver::staged(&record) => Err("its stage never finished".to_owned()),
            (_, Some(stage)) => check(stage, staging, targets).and_then(|()| {
                let taken = !seen_staging.insert(stage.staging_path.clone())
                    || stage
                        .targets
                        .keys()
                        .any(|t| !seen_targets.insert(t.clone()));
                match taken {
                    true => Err("another stored stage has its staging path or a target".to_owned()),
                    false => Ok(()),
                }
            }),
        };
        if let Err(reason) = checked {
            tracing::warn!(volume = %name, %reason, "stored stage not restored");
            continue;
        }
        let Some(record_stage) = record.stage.clone() else {
            continue;
        };
        let staging_path = record_stage.staging_path.clone();
        plan.stages
            .push((staging_path, Stage::from_record(name.clone(), record_stage)));
        plan.volumes.insert(name, record);
    }
    plan
}

/// Checks a stored stage as its requests were checked: the staging path
/// and each target below the allowed roots, plain, through no symbolic
/// link; the directories netfs made on the way to them, and nothing else.
fn check(stage: &StageRecord, staging: &Roots, targets: &Roots) -> Result<(), String> {
    if stage.volume_id.is_empty() {
        return Err("its volume ID is empty".to_owned());
    }
    checked_path(staging, &stage.staging_path, &stage.made)?;
    for (target, how) in &stage.targets {
        checked_path(targets, target, &how.made)?;
    }
    Ok(())
}

fn checked_path(roots: &Roots, path: &Path, made: &[PathBuf]) -> Result<(), String> {
    let check = |p: &Path| -> Result<(), String> {
        let text = p
            .to_str()
            .ok_or_else(|| format!("{} is not UTF-8", p.display()))?;
        match roots.check(text) {
            Ok(clean) if clean == p => Ok(()),
            Ok(_) => Err(format!("{} is not written plainly", p.display())),
            Err(status) => Err(status.message().to_owned()),
        }
    };
    check(path)?;
    for dir in made {
        check(dir)?;
        if !path.starts_with(dir) {
            return Err(format!(
                "{} is not on the way to {}",
                dir.display(),
                path.display()
            ));
        }
    }
    Ok(())
}

/// What a stage's restore needs, apart from the gRPC server.
pub struct Restorer {
    pub driver: Arc<Driver>,
    pub stages: Arc<Stages>,
    pub mounts: Arc<dyn MountTable>,
    pub targets: Arc<Roots>,
}

impl Restorer {
    /// Puts the planned stages in place, each held until [`finish`]
    /// releases it: called before serving, so that a call for one of them
    /// waits for its restore.
    ///
    /// [`finish`]: Restorer::finish
    pub async fn hold(&self, planned: Vec<(PathBuf, Stage)>) -> Vec<(PathBuf, Held)> {
        let mut held = Vec::with_capacity(planned.len());
        for (staging, stage) in planned {
            let guard = self.stages.restore(&staging, stage).await;
            held.push((staging, guard));
        }
        held
    }

    /// Once the driver restored the volumes (their tools mounted again
    /// and the re-attach passes done): each stage is published again, or
    /// taken down if it is Swarm's and no running task held it.
    pub async fn finish(&self, held: Vec<(PathBuf, Held)>) {
        for (staging, guard) in held {
            self.finish_one(&staging, guard).await;
        }
    }

    async fn finish_one(&self, staging: &Path, mut held: Held) {
        let Some(stage) = held.as_mut() else {
            return;
        };
        let name = stage.name.clone();
        let mounted = self
            .driver
            .condition(name.as_str())
            .is_some_and(|(state, _)| state == ProcState::Mounted);
        if !mounted {
            tracing::warn!(volume = %stage.volume_id, staging = %staging.display(),
                "restored stage not mounted yet; its tool is retried, and its targets \
                 are published at the next publish");
            return;
        }
        if stage.with_last_publish && !self.driver.was_held(name.as_str()) {
            // Its task is gone (or moved to another node): as its last
            // unpublish would have, this takes the stage down.
            let Some(mut stage) = held.take() else {
                return;
            };
            for (target, how) in std::mem::take(&mut stage.targets) {
                self.stages.remove(&mut stage, &target);
                let _ = unmount(&*self.mounts, &target, "unpublish");
                paths::remove(&how.made);
            }
            match take_down(&self.driver, &self.stages, staging, stage).await {
                Ok(()) => tracing::info!(volume = %name, staging = %staging.display(),
                    "stage of an earlier run taken down: no running task holds it"),
                Err((stage, e)) => {
                    tracing::warn!(volume = %name, error = %e.message(), "cannot take a stage down");
                    *held = Some(stage);
                }
            }
            return;
        }
        self.publish_again(&name, staging, stage);
        if let Err(e) = self
            .driver
            .keep_stage(name.as_str(), stage.record(staging))
            .await
        {
            tracing::warn!(volume = %name, error = %e, "cannot store the restored stage");
        }
        tracing::info!(volume = %stage.volume_id, staging = %staging.display(),
            targets = stage.targets.len(), "stage restored");
    }

    /// Binds the staged mount again at each stored target, in place of
    /// what an earlier run left there; a target that cannot be made is
    /// dropped from the stage.
    fn publish_again(&self, name: &VolumeName, staging: &Path, stage: &mut Stage) {
        let targets: Vec<_> = stage.targets.keys().cloned().collect();
        for target in targets {
            let Some(mut how) = stage.targets.get(&target).cloned() else {
                continue;
            };
            let bound = unmount(&*self.mounts, &target, "publish")
                .map_err(|e| e.message().to_owned())
                .and_then(|()| self.targets.make(&target).map_err(|e| e.to_string()))
                .and_then(|made| {
                    for dir in made {
                        if !how.made.contains(&dir) {
                            how.made.push(dir);
                        }
                    }
                    how.made.sort_by_key(|d| d.components().count());
                    self.mounts
                        .bind(staging, &target, how.readonly)
                        .map_err(|e| e.to_string())
                });
            match bound {
                Ok(()) => {
                    tracing::info!(volume = %name, target = %target.display(),
                        readonly = how.readonly, "published again");
                    self.stages.add(stage, staging, &target, how);
                }
                Err(e) => {
                    tracing::warn!(volume = %name, target = %target.display(), error = %e,
                        "cannot publish a restored stage again; its target is dropped");
                    self.stages.remove(stage, &target);
                    paths::remove(&how.made);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
