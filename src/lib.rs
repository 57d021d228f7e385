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
pub mod state;
pub mod supervisor;

use std::future::Future;
use std::sync::Arc;

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
    let config = Arc::new(config);
    let (driver, volumes) = driver::Driver::open(config.clone())?;
    let driver = Arc::new(driver);
    // Nothing is touched until the sockets are ours: a second instance
    // started by mistake changes nothing.
    let metrics = start_metrics(&config, &driver).await?;
    let socket = listener::listen(&config.socket).await?;
    std::fs::create_dir_all(&config.mount_root).map_err(|source| Error::MountRoot {
        path: config.mount_root.clone(),
        source,
    })?;
    let stored = volumes.len();
    let starts = driver.recover(volumes).await;
    let path = socket.origin.path().unwrap_or(&config.socket).to_owned();
    tracing::info!(socket = %path.display(), volumes = stored, "listening");
    let restore = {
        let driver = driver.clone();
        tokio::spawn(async move { driver.restore(starts).await })
    };
    let keep_devices = {
        let driver = driver.clone();
        tokio::spawn(async move { driver.keep_devices_saved().await })
    };
    server::serve(socket.listener, driver.clone(), shutdown).await;
    tracing::info!("shutting down");
    restore.abort();
    keep_devices.abort();
    driver.shutdown().await;
    socket.origin.release();
    metrics.stop();
    Ok(())
}

/// The metrics endpoint, while it serves (see [`metrics`]).
#[derive(Default)]
pub(crate) struct MetricsTask(Option<(tokio::task::JoinHandle<()>, metrics::Address)>);

impl MetricsTask {
    pub(crate) fn stop(self) {
        if let Some((task, address)) = self.0 {
            task.abort();
            if let metrics::Address::Unix(path) = address {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Binds `--metrics-address`, if set, and serves it from a task.
pub(crate) async fn start_metrics(
    config: &Config,
    driver: &Arc<driver::Driver>,
) -> Result<MetricsTask, metrics::MetricsError> {
    let Some(address) = &config.metrics else {
        return Ok(MetricsTask::default());
    };
    let listener = metrics::bind(address).await?;
    let bound = listener.address().unwrap_or_else(|| address.clone());
    tracing::info!(address = %bound, "serving metrics at /metrics");
    let driver = driver.clone();
    let source: metrics::Source = Arc::new(move || driver.scrape());
    let task = tokio::spawn(metrics::serve(listener, source));
    Ok(MetricsTask(Some((task, bound))))
}
