//! The CSI front end served in-process (`netfs::csi::run`) on a temporary
//! socket, called over gRPC as Swarm calls it, with volumes staged by real
//! sshfs from a real sshd: every RPC, its idempotency and each bad input.

mod bad_input;
mod calls;
mod staging;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hyper_util::rt::TokioIo;
use netfs::csi::proto::*;
use tokio::sync::Notify;
use tonic::transport::{Channel, Endpoint};

/// The CSI plugin served by this test process until dropped.
pub struct InProcess {
    dir: tempfile::TempDir,
    stop: Arc<Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    pub fn start() -> InProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let args = vec![
            "netfs".to_string(),
            "--mode=csi".to_string(),
            format!(
                "--csi-endpoint=unix://{}",
                dir.path().join("csi.sock").display()
            ),
            format!("--staging-root={}", dir.path().join("staged").display()),
            format!(
                "--propagated-mount={}",
                dir.path().join("published").display()
            ),
            format!("--state-file={}", dir.path().join("state.json").display()),
            format!("--key-dir={}", crate::support::sshd::KEY_DIR),
            "--node-id=node-a".to_string(),
            "--mount-timeout=10s".to_string(),
        ];
        let config = netfs::Cli::try_parse_from(args)
            .expect("flags")
            .into_config()
            .expect("config");
        let stop = Arc::new(Notify::new());
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(netfs::csi::run(
                config,
                async move { stopped.notified().await },
            ))
            .expect("netfs::csi::run");
        });
        let plugin = InProcess {
            dir,
            stop,
            thread: Some(thread),
        };
        let socket = plugin.socket();
        crate::support::wait_until(Duration::from_secs(10), "csi socket exists", || {
            socket.exists()
        });
        plugin
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("csi.sock")
    }

    pub fn staged(&self, id: &str) -> PathBuf {
        self.dir.path().join("staged").join(id)
    }

    pub fn published(&self, id: &str) -> PathBuf {
        self.dir.path().join("published").join(id)
    }

    /// A gRPC channel on the plugin's socket.
    pub async fn channel(&self) -> Channel {
        let socket = self.socket();
        Endpoint::try_from("http://csi.invalid")
            .expect("endpoint")
            .connect_with_connector(tower::service_fn(move |_| {
                let socket = socket.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(socket).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }))
            .await
            .expect("connect to the csi socket")
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What Swarm sends for `--type mount --scope multi --sharing all`.
pub fn mount_capability() -> VolumeCapability {
    VolumeCapability {
        block: None,
        mount: Some(MountVolume::default()),
        access_mode: Some(AccessMode {
            mode: Mode::MultiNodeMultiWriter.into(),
        }),
    }
}

pub fn block_capability() -> VolumeCapability {
    VolumeCapability {
        block: Some(BlockVolume {}),
        mount: None,
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter.into(),
        }),
    }
}
