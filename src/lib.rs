//! netfs: a Docker volume plugin that mounts network file systems by running
//! and supervising the tools people already trust (sshfs, rclone, mount.nfs,
//! or any binary), one process per volume.

pub mod backend;
pub mod build_info;
pub mod config;
pub mod connections;
pub mod csi;
pub mod driver;
pub mod listener;
pub mod marks;
pub mod metrics;
pub mod mounts;
pub mod name;
pub mod options;
pub mod output;
pub mod pacing;
pub mod process;
pub mod procfs;
pub mod protocol;
pub mod reaper;
pub mod reattach;
pub mod secret;
pub mod server;
pub mod startup;
pub mod state;
pub mod supervisor;

use std::future::Future;

pub use config::{Cli, Config};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    Socket(#[from] listener::SocketError),
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    #[error("csi::run needs --mode csi")]
    NotCsi,
    #[error("cannot create the mount root {path}: {source}")]
    MountRoot {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Runs the plugin until `shutdown` completes: loads the state, listens,
/// brings every volume back, serves, and on shutdown stops every volume
/// process (the state is kept, so the next start restores them).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let mount_root = config.mount_root.clone();
    let (mut started, socket) = startup::start(config, [mount_root]).await?;
    let volumes = std::mem::take(&mut started.volumes);
    let stored = volumes.len();
    let driver = started.driver.clone();
    let starts = driver.recover(volumes).await;
    tracing::info!(socket = %started.socket_path().display(), volumes = stored, "listening");
    let restore = {
        let driver = driver.clone();
        tokio::spawn(async move {
            driver.restore(starts).await;
            build_info::log_tools().await;
        })
    };
    let keep_devices = {
        let driver = driver.clone();
        tokio::spawn(async move { driver.keep_devices_saved().await })
    };
    server::serve(socket, driver, shutdown).await;
    tracing::info!("shutting down");
    restore.abort();
    keep_devices.abort();
    started.stop().await;
    Ok(())
}
