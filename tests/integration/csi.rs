//! The CSI front end served in-process (`netfs::csi::run`) on a temporary
//! socket, called over gRPC as Swarm calls it, with volumes staged by real
//! sshfs from a real sshd: every RPC, its idempotency and each bad input.

mod bad_input;
mod calls;
mod staging;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use netfs::csi::proto::*;
use tonic::transport::{Channel, Endpoint};

use crate::support::in_process;

/// The CSI plugin served by this test process until dropped.
pub struct InProcess(in_process::InProcess);

impl InProcess {
    pub fn start() -> InProcess {
        let plugin = InProcess(in_process::InProcess::start(|dir| {
            vec![
                "--mode=csi".to_string(),
                format!("--csi-endpoint=unix://{}", dir.join("csi.sock").display()),
                format!("--staging-root={}", dir.join("staged").display()),
                format!("--propagated-mount={}", dir.join("published").display()),
                format!("--state-file={}", dir.join("state.json").display()),
                format!("--key-dir={}", crate::support::sshd::KEY_DIR),
                "--node-id=node-a".to_string(),
                "--mount-timeout=10s".to_string(),
            ]
        }));
        let socket = plugin.socket();
        crate::support::wait_until(Duration::from_secs(10), "csi socket exists", || {
            socket.exists()
        });
        plugin
    }

    pub fn socket(&self) -> PathBuf {
        self.0.dir().join("csi.sock")
    }

    pub fn staged(&self, id: &str) -> PathBuf {
        self.0.dir().join("staged").join(id)
    }

    pub fn published(&self, id: &str) -> PathBuf {
        self.0.dir().join("published").join(id)
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
