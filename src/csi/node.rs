//! CSI Node: stage = the volume's supervised tool mounts at the staging
//! path; publish = a bind mount of the staging path onto the target.
//! Each call checks its input, answers a done request as success, then does
//! the work, one call per staging path at a time. Paths are taken as any
//! orchestrator gives them (see `paths`); what netfs made, it removes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::controller::check_capability;
use super::options::volume_options;
use super::paths::{self, Roots};
use super::proto::node_service_capability::rpc::Type as NodeRpc;
use super::proto::volume_capability::access_mode::Mode;
use super::proto::*;
use super::stages::{Stage, Stages, Target};
use super::{invalid, required, stats, status};
use crate::driver::Driver;
use crate::mounts::MountTable;

pub struct Node {
    pub driver: Arc<Driver>,
    /// The driver's mount table: publish binds, unpublish unmounts.
    pub mounts: Arc<dyn MountTable>,
    /// netfs's own staging directory, Swarm's: a stage there goes with its
    /// last publish.
    pub own_staging: PathBuf,
    pub staging: Arc<Roots>,
    pub targets: Arc<Roots>,
    pub node_id: String,
    pub stages: Arc<Stages>,
}

/// Runs the work apart from the request: Swarm gives up on a node call
/// after about 15 s and calls again, and a mount still under way must
/// finish (and the retry wait for it) rather than be dropped halfway.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, Status>> + Send + 'static,
) -> Result<T, Status> {
    tokio::spawn(work)
        .await
        .map_err(|e| Status::internal(format!("the request's task failed: {e}")))?
}

fn capability(c: Option<&VolumeCapability>) -> Result<&VolumeCapability, Status> {
    let c = c.ok_or_else(|| invalid("volume_capability is missing"))?;
    check_capability(c)?;
    Ok(c)
}

#[tonic::async_trait]
impl node_server::Node for Node {
    async fn node_stage_volume(
        &self,
        request: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        let req = request.into_inner();
        required(&req.volume_id, "volume_id")?;
        let staging = self.staging.check(&req.staging_target_path)?;
        capability(req.volume_capability.as_ref())?;
        let opts = volume_options(&req.volume_context, &req.secrets)
            .map_err(|e| invalid(e.to_string()))?;
        let with_last_publish = staging.starts_with(&self.own_staging);
        let (driver, stages, roots) = (
            self.driver.clone(),
            self.stages.clone(),
            self.staging.clone(),
        );
        let volume = req.volume_id;
        tracing::debug!(volume = %volume, staging = %staging.display(), "stage requested");
        // Taken here, in the order calls arrive; held by the work.
        let mut held = stages.lock(&staging).await;
        detached(async move {
            if let Some(stage) = held.as_ref() {
                if stage.volume_id != volume {
                    return Err(Status::already_exists(format!(
                        "staging_target_path {} already holds volume {}; unstage it first",
                        staging.display(),
                        stage.volume_id
                    )));
                }
                if driver.is_staged(stage.name.as_str()) {
                    return Ok(());
                }
            }
            let mut stage = held
                .take()
                .unwrap_or_else(|| stages.begin(&volume, &staging, with_last_publish));
            let made = roots.make(&staging).map_err(|e| {
                Status::internal(format!(
                    "cannot make staging_target_path {}: {e}",
                    staging.display()
                ))
            });
            let staged = match made {
                Ok(made) => {
                    stage.made.extend(made);
                    driver
                        .stage(stage.name.as_str(), stage.record(&staging), opts)
                        .await
                        .map_err(status)
                }
                Err(e) => Err(e),
            };
            if let Err(e) = staged {
                // Nothing stays of a stage that failed: the orchestrator
                // stages again, or gives up without unstaging.
                if let Err(undo) = driver.unstage(stage.name.as_str()).await {
                    tracing::warn!(volume = %volume, error = %undo, "cannot undo a failed stage");
                }
                paths::remove(&stage.made);
                stages.end(&staging);
                return Err(e);
            }
            tracing::info!(volume = %volume, name = %stage.name, staging = %staging.display(), "staged");
            *held = Some(stage);
            Ok(())
        })
        .await?;
        Ok(Response::new(NodeStageVolumeResponse {}))
    }

    async fn node_unstage_volume(
        &self,
        request: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        let req = request.into_inner();
        required(&req.volume_id, "volume_id")?;
        let staging = self.staging.check(&req.staging_target_path)?;
        tracing::debug!(volume = %req.volume_id, staging = %staging.display(), "unstage requested");
        let (driver, stages, table) = (
            self.driver.clone(),
            self.stages.clone(),
            self.mounts.clone(),
        );
        // A stage still under way finishes first, and is undone here.
        let mut held = stages.lock(&staging).await;
        detached(async move {
            let Some(stage) = held.take() else {
                // Nothing staged by this run: what an earlier one left
                // mounted there goes, the directory stays.
                return unmount(&*table, &staging, "unstage");
            };
            if stage.volume_id != req.volume_id {
                let holder = stage.volume_id.clone();
                *held = Some(stage);
                return Err(Status::not_found(format!(
                    "volume {} is not staged at {}: volume {holder} is",
                    req.volume_id,
                    staging.display()
                )));
            }
            if let Some(target) = stage.targets.keys().next() {
                let message = format!(
                    "volume {} is still published at {}; unpublish it first",
                    req.volume_id,
                    target.display()
                );
                *held = Some(stage);
                return Err(Status::failed_precondition(message));
            }
            if let Err((stage, e)) = take_down(&driver, &stages, &staging, stage).await {
                *held = Some(stage);
                return Err(e);
            }
            tracing::info!(volume = %req.volume_id, staging = %staging.display(), "unstaged");
            Ok(())
        })
        .await?;
        Ok(Response::new(NodeUnstageVolumeResponse {}))
    }

    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let req = request.into_inner();
        required(&req.volume_id, "volume_id")?;
        let staging = self.staging.check(&req.staging_target_path)?;
        let target = self.targets.check(&req.target_path)?;
        let capability = capability(req.volume_capability.as_ref())?;
        let readonly = req.readonly
            || matches!(
                capability.access_mode.as_ref().map(|m| m.mode()),
                Some(Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly)
            );
        let (driver, stages, roots, table) = (
            self.driver.clone(),
            self.stages.clone(),
            self.targets.clone(),
            self.mounts.clone(),
        );
        let volume = req.volume_id;
        // Taken here, in the order calls arrive; held by the work.
        let mut held = stages.lock(&staging).await;
        detached(async move {
            let stage = held
                .as_mut()
                .filter(|s| s.volume_id == volume && driver.is_staged(s.name.as_str()));
            let Some(stage) = stage else {
                return Err(Status::failed_precondition(format!(
                    "volume {volume} is not staged at {}; stage it first",
                    staging.display()
                )));
            };
            if let Some(other) = stages.staging_for(&target).filter(|s| *s != staging) {
                return Err(Status::already_exists(format!(
                    "target_path {} already publishes the volume staged at {}; unpublish it first",
                    target.display(),
                    other.display()
                )));
            }
            let known = stage.targets.get(&target).cloned();
            if let Some(known) = &known {
                if known.readonly != readonly {
                    let was = if known.readonly {
                        "read-only"
                    } else {
                        "read-write"
                    };
                    return Err(Status::already_exists(format!(
                        "volume {volume} is already published {was} at {}; unpublish it first",
                        target.display()
                    )));
                }
                if table.is_mounted(&target).unwrap_or(false) {
                    return Ok(());
                }
            } else {
                // A mount an earlier run left at this target.
                unmount(&*table, &target, "publish")?;
            }
            let made = roots.make(&target).map_err(|e| {
                Status::internal(format!("cannot make target_path {}: {e}", target.display()))
            })?;
            if let Err(e) = table.bind(&staging, &target, readonly) {
                paths::remove(&made);
                return Err(Status::internal(format!(
                    "cannot publish at {}: {e}",
                    target.display()
                )));
            }
            let mut how = known.unwrap_or(Target {
                readonly,
                made: Vec::new(),
            });
            how.made.extend(made);
            stages.add(stage, &staging, &target, how.clone());
            // Stored before it counts: a restarted netfs publishes again
            // what it finds stored, and nothing else.
            if let Err(e) = driver
                .keep_stage(stage.name.as_str(), stage.record(&staging))
                .await
            {
                stages.remove(stage, &target);
                unmount(&*table, &target, "publish")?;
                paths::remove(&how.made);
                return Err(status(e));
            }
            tracing::info!(volume = %volume, target = %target.display(), readonly, "published");
            Ok(())
        })
        .await?;
        Ok(Response::new(NodePublishVolumeResponse {}))
    }

    /// Takes the target down. A stage in netfs's own staging directory
    /// (Swarm's) goes with its last target: Swarm stages again before every
    /// publish, but sends no NodeUnstageVolume for a volume its agent staged
    /// since it started (see docs/csi.md); without this a released volume's
    /// tool would run until the plugin stops. kubelet's stages wait for
    /// its NodeUnstageVolume.
    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let req = request.into_inner();
        required(&req.volume_id, "volume_id")?;
        let target = self.targets.check(&req.target_path)?;
        tracing::debug!(volume = %req.volume_id, target = %target.display(), "unpublish requested");
        let (driver, stages, table) = (
            self.driver.clone(),
            self.stages.clone(),
            self.mounts.clone(),
        );
        let staging = stages.staging_for(&target);
        let held = match &staging {
            Some(staging) => Some(stages.lock(staging).await),
            None => None,
        };
        detached(async move {
            let (Some(staging), Some(mut held)) = (staging, held) else {
                // Not published by this run: what an earlier one left
                // mounted there goes, the directory stays.
                return unmount(&*table, &target, "unpublish");
            };
            let Some(stage) = held.as_mut() else {
                return unmount(&*table, &target, "unpublish");
            };
            if stage.volume_id != req.volume_id {
                return Err(Status::not_found(format!(
                    "volume {} is not published at {}: volume {} is",
                    req.volume_id,
                    target.display(),
                    stage.volume_id
                )));
            }
            let Some(how) = stage.targets.get(&target).cloned() else {
                return Ok(());
            };
            unmount(&*table, &target, "unpublish")?;
            paths::remove(&how.made);
            tracing::info!(volume = %req.volume_id, target = %target.display(), "unpublished");
            // The target is forgotten only once its stage is settled, so
            // that a retry after a failed unstage tries that again.
            if stage.with_last_publish && stage.targets.len() == 1 {
                let Some(mut stage) = held.take() else {
                    return Ok(());
                };
                stages.remove(&mut stage, &target);
                if let Err((mut stage, e)) = take_down(&driver, &stages, &staging, stage).await {
                    stages.add(&mut stage, &staging, &target, how);
                    *held = Some(stage);
                    return Err(e);
                }
                tracing::info!(volume = %req.volume_id, "unstaged with its last publish");
                return Ok(());
            }
            stages.remove(stage, &target);
            if let Err(e) = driver
                .keep_stage(stage.name.as_str(), stage.record(&staging))
                .await
            {
                // The target is down; a restarted netfs would publish it
                // again, to no one, until its stage goes.
                tracing::warn!(volume = %req.volume_id, error = %e, "cannot store the unpublish");
            }
            Ok(())
        })
        .await?;
        Ok(Response::new(NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        let req = request.into_inner();
        required(&req.volume_id, "volume_id")?;
        required(&req.volume_path, "volume_path")?;
        let path = PathBuf::from(&req.volume_path);
        let not_found = || {
            Status::not_found(format!(
                "volume {} is not staged or published at {} on this node",
                req.volume_id, req.volume_path
            ))
        };
        let named = self
            .stages
            .find(&path)
            .filter(|n| n.volume_id == req.volume_id)
            .ok_or_else(not_found)?;
        let (state, last_error) = self
            .driver
            .condition(named.name.as_str())
            .ok_or_else(not_found)?;
        Ok(Response::new(stats::answer(path, state, last_error).await))
    }

    async fn node_get_capabilities(
        &self,
        _: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        let capabilities = [
            NodeRpc::StageUnstageVolume,
            NodeRpc::GetVolumeStats,
            NodeRpc::VolumeCondition,
        ]
        .into_iter()
        .map(|rpc| NodeServiceCapability {
            r#type: Some(node_service_capability::Type::Rpc(
                node_service_capability::Rpc { r#type: rpc.into() },
            )),
        })
        .collect();
        Ok(Response::new(NodeGetCapabilitiesResponse { capabilities }))
    }

    async fn node_get_info(
        &self,
        _: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.node_id.clone(),
            max_volumes_per_node: 0,
            accessible_topology: None,
        }))
    }
}

/// Unstages: the tool stops and unmounts, and the directories netfs made
/// for the staging path go. On failure the stage comes back with the error.
pub(super) async fn take_down(
    driver: &Driver,
    stages: &Stages,
    staging: &Path,
    stage: Stage,
) -> Result<(), (Stage, Status)> {
    if let Err(e) = driver.unstage(stage.name.as_str()).await {
        return Err((stage, status(e)));
    }
    paths::remove(&stage.made);
    stages.end(staging);
    Ok(())
}

/// Detaches what is mounted at `path`, if anything.
pub(super) fn unmount(table: &dyn MountTable, path: &Path, call: &str) -> Result<(), Status> {
    let fail =
        |e: std::io::Error| Status::internal(format!("cannot {call} {}: {e}", path.display()));
    if table.is_mounted(path).map_err(fail)? {
        table.lazy_unmount(path).map_err(fail)?;
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests;
