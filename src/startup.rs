//! The start and the stop both front ends share (the plugin protocol in
//! `server`, CSI in `csi`): the state opened, the metrics endpoint and the
//! socket bound, in that order and before anything else is touched (a
//! second instance started by mistake changes nothing), then the
//! directories made; at the end every volume process stopped, the socket
//! and the metrics endpoint let go.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixListener;

use crate::config::Config;
use crate::driver::Driver;
use crate::listener::{self, Origin};
use crate::state::Volumes;
use crate::{metrics, Error};

/// A front end's common parts, from [`start`] until [`Started::stop`].
pub struct Started {
    pub config: Arc<Config>,
    pub driver: Arc<Driver>,
    /// The volumes the state file holds (the plugin restores them; CSI
    /// restores those with a stored stage, see `csi::restore`).
    pub volumes: Volumes,
    origin: Origin,
    metrics: MetricsTask,
}

/// Opens the state, binds the metrics endpoint and the socket (or takes
/// the one systemd passed), and makes `dirs`. The listener is the front
/// end's to serve.
pub async fn start(
    config: Config,
    dirs: impl IntoIterator<Item = PathBuf>,
) -> Result<(Started, UnixListener), Error> {
    let config = Arc::new(config);
    let (driver, volumes) = Driver::open(config.clone())?;
    let driver = Arc::new(driver);
    let metrics = start_metrics(&config, &driver).await?;
    let socket = listener::listen(&config.socket).await?;
    let started = Started {
        config,
        driver,
        volumes,
        origin: socket.origin,
        metrics,
    };
    for dir in dirs {
        if let Err(source) = std::fs::create_dir_all(&dir) {
            started.release();
            return Err(Error::MountRoot { path: dir, source });
        }
    }
    Ok((started, socket.listener))
}

impl Started {
    /// The path clients connect to, for the log.
    pub fn socket_path(&self) -> &Path {
        self.origin.path().unwrap_or(&self.config.socket)
    }

    /// Stops every volume process (the state is kept), then lets the socket
    /// and the metrics endpoint go.
    pub async fn stop(self) {
        self.driver.shutdown().await;
        self.release();
    }

    fn release(self) {
        self.origin.release();
        self.metrics.stop();
    }
}

/// The metrics endpoint, while it serves (see [`metrics`]).
#[derive(Default)]
struct MetricsTask(Option<(tokio::task::JoinHandle<()>, metrics::Address)>);

impl MetricsTask {
    fn stop(self) {
        if let Some((task, address)) = self.0 {
            task.abort();
            if let metrics::Address::Unix(path) = address {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Binds `--metrics-address`, if set, and serves it from a task.
async fn start_metrics(
    config: &Config,
    driver: &Arc<Driver>,
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
