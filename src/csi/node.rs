//! CSI Node: stage = the volume's supervised tool mounts at the staging
//! path (the driver's mountpoint of a volume named after it); publish = a
//! bind mount of the staged path onto the target, and the last unpublish
//! of a stage unstages it. Each call checks its input, answers a done
//! request as success, then does the work, one call per volume at a time.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use nix::mount::MsFlags;
use tonic::{Request, Response, Status};

use super::controller::check_capability;
use super::options::volume_options;
use super::proto::*;
use super::stages::Stages;
use super::{invalid, required, status};
use crate::driver::Driver;
use crate::mounts;
use crate::name::VolumeName;

pub struct Node {
    pub driver: Arc<Driver>,
    pub staging_root: PathBuf,
    pub publish_root: PathBuf,
    pub node_id: String,
    pub stages: Arc<Stages>,
}

impl Node {
    /// The driver's volume name for a staging path: its last component,
    /// which must sit right below the staging root.
    fn staged_name(&self, path: &str) -> Result<VolumeName, Status> {
        required(path, "staging_target_path")?;
        let path = Path::new(path);
        let name = clean(path)
            .filter(|p| p.parent() == Some(self.staging_root.as_path()))
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .ok_or_else(|| {
                invalid(format!(
                    "staging_target_path {} is not a directory right below the staging root {}",
                    path.display(),
                    self.staging_root.display()
                ))
            })?;
        VolumeName::parse(&name).map_err(|e| invalid(format!("staging_target_path: {e}")))
    }

    /// A publish target: below the publish root, which Docker propagates.
    fn target(&self, path: &str) -> Result<PathBuf, Status> {
        required(path, "target_path")?;
        let target = Path::new(path);
        match clean(target) {
            Some(t) if t.starts_with(&self.publish_root) && t != self.publish_root => Ok(t),
            _ => Err(invalid(format!(
                "target_path {} is outside the publish root {}",
                target.display(),
                self.publish_root.display()
            ))),
        }
    }
}

/// An absolute path without `.` or `..`, or nothing.
fn clean(path: &Path) -> Option<PathBuf> {
    let plain = path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    plain.then(|| path.components().collect())
}

/// Runs the driver's part apart from the request: Swarm gives up on a node
/// call after about 15 s and calls again, and a mount still under way
/// must finish (and the retry wait for it) rather than be dropped halfway.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, Status>> + Send + 'static,
) -> Result<T, Status> {
    tokio::spawn(work)
        .await
        .map_err(|e| Status::internal(format!("the request's task failed: {e}")))?
}

#[tonic::async_trait]
impl node_server::Node for Node {
    async fn node_stage_volume(
        &self,
        request: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        let req = request.into_inner();
        required(&req.volume_id, "volume_id")?;
        let name = self.staged_name(&req.staging_target_path)?;
        let capability = req
            .volume_capability
            .as_ref()
            .ok_or_else(|| invalid("volume_capability is missing"))?;
        check_capability(capability)?;
        let opts = volume_options(&req.volume_context, &req.secrets)
            .map_err(|e| invalid(e.to_string()))?;
        tracing::debug!(volume = %req.volume_id, name = %name, "stage requested");
        let (driver, stages) = (self.driver.clone(), self.stages.clone());
        let volume = req.volume_id;
        detached(async move {
            let _targets = stages.lock(&name).await;
            driver.stage(name.as_str(), opts).await.map_err(status)?;
            tracing::info!(volume = %volume, name = %name, "staged");
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
        let name = self.staged_name(&req.staging_target_path)?;
        tracing::debug!(volume = %req.volume_id, name = %name, "unstage requested");
        let (driver, stages) = (self.driver.clone(), self.stages.clone());
        detached(async move {
            // A stage still under way finishes first, and is undone here.
            let targets = stages.lock(&name).await;
            if let Some(target) = targets.first() {
                return Err(Status::failed_precondition(format!(
                    "volume {} is still published at {}; unpublish it first",
                    req.volume_id,
                    target.display()
                )));
            }
            driver.unstage(name.as_str()).await.map_err(status)?;
            tracing::info!(volume = %req.volume_id, name = %name, "unstaged");
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
        let name = self.staged_name(&req.staging_target_path)?;
        let target = self.target(&req.target_path)?;
        let capability = req
            .volume_capability
            .as_ref()
            .ok_or_else(|| invalid("volume_capability is missing"))?;
        check_capability(capability)?;
        let readonly = req.readonly
            || matches!(
                capability.access_mode.as_ref().map(|m| m.mode()),
                Some(Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly)
            );
        let staged = self.staging_root.join(name.as_str());
        let (driver, stages) = (self.driver.clone(), self.stages.clone());
        detached(async move {
            let mut targets = stages.lock(&name).await;
            if !driver.is_staged(name.as_str()) {
                return Err(Status::failed_precondition(format!(
                    "volume {} is not staged at {}; stage it first",
                    req.volume_id, req.staging_target_path
                )));
            }
            if !mounts::is_mounted(&target).unwrap_or(false) {
                bind(&staged, &target, readonly).map_err(|e| {
                    Status::internal(format!("cannot publish at {}: {e}", target.display()))
                })?;
                tracing::info!(volume = %req.volume_id, target = %target.display(), readonly, "published");
            }
            stages.add(&mut targets, &name, &target);
            Ok(())
        })
        .await?;
        Ok(Response::new(NodePublishVolumeResponse {}))
    }

    /// Takes the target down; the last target of a stage takes the stage
    /// down too. Swarm stages again before every publish, but sends no
    /// NodeUnstageVolume for a volume its agent staged since it started
    /// (see docs/csi.md): without this a released volume's tool would run
    /// until the plugin stops.
    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let req = request.into_inner();
        required(&req.volume_id, "volume_id")?;
        let target = self.target(&req.target_path)?;
        tracing::debug!(volume = %req.volume_id, target = %target.display(), "unpublish requested");
        let (driver, stages) = (self.driver.clone(), self.stages.clone());
        detached(async move {
            let Some(name) = stages.staged_for(&target) else {
                return unpublish(&target);
            };
            let mut targets = stages.lock(&name).await;
            unpublish(&target)?;
            tracing::info!(volume = %req.volume_id, target = %target.display(), "unpublished");
            // The target is forgotten only once its stage is settled, so
            // that a retry after a failed unstage tries that again.
            if targets.iter().all(|t| *t == target) {
                driver.unstage(name.as_str()).await.map_err(status)?;
                tracing::info!(volume = %req.volume_id, name = %name, "unstaged with its last publish");
            }
            stages.remove(&mut targets, &target);
            Ok(())
        })
        .await?;
        Ok(Response::new(NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_capabilities(
        &self,
        _: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        let stage = NodeServiceCapability {
            rpc: Some(Rpc {
                r#type: STAGE_UNSTAGE_VOLUME,
            }),
        };
        Ok(Response::new(NodeGetCapabilitiesResponse {
            capabilities: vec![stage],
        }))
    }

    async fn node_get_info(
        &self,
        _: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.node_id.clone(),
            max_volumes_per_node: 0,
        }))
    }
}

/// Bind-mounts `staged` at `target` (created if missing), read-only on ask.
fn bind(staged: &Path, target: &Path, readonly: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(target)?;
    let none: Option<&str> = None;
    nix::mount::mount(Some(staged), target, none, MsFlags::MS_BIND, none)?;
    if readonly {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        if let Err(e) = nix::mount::mount(none, target, none, flags, none) {
            let _ = mounts::lazy_unmount(target);
            return Err(e.into());
        }
    }
    Ok(())
}

/// Unmounts a publish target if mounted and removes its directory; what
/// is not there counts as done.
fn unpublish(target: &Path) -> Result<(), Status> {
    let fail =
        |e: std::io::Error| Status::internal(format!("cannot unpublish {}: {e}", target.display()));
    if mounts::is_mounted(target).map_err(fail)? {
        mounts::lazy_unmount(target).map_err(fail)?;
    }
    match std::fs::remove_dir(target) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(fail(e)),
        _ => Ok(()),
    }
}
