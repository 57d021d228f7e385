//! The Container Storage Interface front end, for Swarm cluster volumes and
//! Kubernetes: gRPC (tonic) on a unix socket, one file per CSI service, all
//! calling the same driver, option engine and supervisor as the volume
//! plugin. See docs/csi.md for what Swarm calls and when, and
//! docs/kubernetes.md for kubelet and the provisioner.

mod controller;
mod identity;
mod node;
pub mod options;
mod paths;
pub mod proto;
mod restore;
mod stages;
mod stats;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Code, Status};

use crate::config::Config;
use crate::driver::DriverError;
use crate::mounts::MountTable;
use crate::Error;

/// The plugin name in GetPluginInfo: the managed plugin's own name.
pub const PLUGIN_NAME: &str = "netfs-csi";

/// How long calls in flight get to finish at shutdown.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves CSI until `shutdown` completes. What an earlier run staged and
/// published comes back (see `restore`): its tools mount again, running
/// tasks get the new mount in place of the dead one, and stages no running
/// task holds go. What an earlier run left mounted below the publish root
/// is cleared first.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let Some(csi) = config.csi.clone() else {
        return Err(Error::NotCsi);
    };
    let own = [config.mount_root.clone(), csi.publish_root.clone()];
    let allowed = csi.staging_roots.iter().chain(&csi.publish_roots).cloned();
    let dirs: Vec<_> = own.into_iter().chain(allowed).collect();
    let (mut started, listener) = crate::startup::start(config, dirs).await?;
    let (config, driver) = (started.config.clone(), started.driver.clone());
    clear_published(&*driver.mount_table(), &csi.publish_root);
    let staging = Arc::new(paths::Roots {
        field: "staging_target_path",
        roots: csi.staging_roots.clone(),
    });
    let targets = Arc::new(paths::Roots {
        field: "target_path",
        roots: csi.publish_roots.clone(),
    });
    let stored = std::mem::take(&mut started.volumes);
    let plan = restore::plan(stored, &staging, &targets, config.reattach);
    let restorer = restore::Restorer {
        driver: driver.clone(),
        stages: Default::default(),
        mounts: driver.mount_table(),
        targets: targets.clone(),
    };
    let stages = restorer.stages.clone();
    let starts = driver.recover(plan.volumes).await;
    let held = restorer.hold(plan.stages).await;
    tracing::info!(socket = %started.socket_path().display(), node = %csi.node_id,
        restoring = held.len(), "serving csi");
    let restore = {
        let driver = driver.clone();
        tokio::spawn(async move {
            driver.restore(starts).await;
            restorer.finish(held).await;
            crate::build_info::log_tools().await;
        })
    };
    let keep_devices = {
        let driver = driver.clone();
        tokio::spawn(async move { driver.keep_devices_saved().await })
    };
    let identity = identity::Identity;
    let controller = controller::Controller {
        driver: driver.clone(),
    };
    let node = node::Node {
        driver: driver.clone(),
        mounts: driver.mount_table(),
        own_staging: config.mount_root.clone(),
        staging,
        targets,
        node_id: csi.node_id.clone(),
        stages,
    };
    let stopping = Arc::new(tokio::sync::Notify::new());
    let stopped = stopping.clone();
    let server = tonic::transport::Server::builder()
        .add_service(proto::identity_server::IdentityServer::new(identity))
        .add_service(proto::controller_server::ControllerServer::new(controller))
        .add_service(proto::node_server::NodeServer::new(node))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
            stopped.notified().await
        });
    tokio::pin!(server, shutdown);
    let served = tokio::select! {
        served = &mut server => served,
        () = &mut shutdown => {
            // Swarm keeps its connection open: calls in flight get a
            // moment to finish, idle connections are not waited for.
            stopping.notify_one();
            tokio::time::timeout(DRAIN, &mut server).await.unwrap_or(Ok(()))
        }
    };
    if let Err(e) = served {
        tracing::error!(error = %e, "csi server failed");
    }
    tracing::info!("shutting down");
    restore.abort();
    keep_devices.abort();
    clear_published(&*driver.mount_table(), &csi.publish_root);
    started.stop().await;
    Ok(())
}

/// Takes down the bind mounts below the publish root and their directories.
fn clear_published(table: &dyn MountTable, root: &Path) {
    match table.mounted_under(root) {
        Ok(points) => {
            for point in points {
                if let Err(e) = table.lazy_unmount(&point) {
                    tracing::warn!(path = %point.display(), error = %e, "cannot unmount a published volume");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the mount table"),
    }
    if let Ok(dir) = std::fs::read_dir(root) {
        for entry in dir.flatten() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// The gRPC status for a driver error, with the driver's message.
fn status(e: DriverError) -> Status {
    let code = match &e {
        DriverError::Name(_)
        | DriverError::Options { .. }
        | DriverError::Backend { .. }
        | DriverError::Refused { .. } => Code::InvalidArgument,
        DriverError::NotFound(_) => Code::NotFound,
        DriverError::InUse { .. } => Code::FailedPrecondition,
        DriverError::Process { .. } | DriverError::State(_) => Code::Internal,
    };
    Status::new(code, e.to_string())
}

fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message.into())
}

/// Refuses a request without a required string field.
fn required(value: &str, field: &str) -> Result<(), Status> {
    if value.is_empty() {
        return Err(invalid(format!("{field} is missing")));
    }
    Ok(())
}
