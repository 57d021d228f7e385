//! The CSI front end served in-process (`netfs::csi::run`) on a temporary
//! socket, called over gRPC as Swarm and kubelet call it, with volumes
//! staged by real sshfs and rclone from a real sshd: every RPC, its
//! idempotency and each bad input.

mod bad_input;
mod calls;
mod kubelet;
mod restart;
mod staging;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use netfs::csi::proto::volume_capability::access_mode::Mode;
use netfs::csi::proto::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
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
                // Swarm's roots and kubelet's, as docs/kubernetes.md sets them.
                format!(
                    "--staging-roots={},{}",
                    dir.join("staged").display(),
                    dir.join(KUBELET_STAGING).display()
                ),
                format!(
                    "--publish-roots={},{}",
                    dir.join("published").display(),
                    dir.join(KUBELET_PODS).display()
                ),
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

    /// Stops the plugin as SIGTERM would and starts it again on the same
    /// directory, waiting for its socket.
    pub fn restart(&mut self) {
        self.0.restart();
        let socket = self.socket();
        crate::support::wait_until(Duration::from_secs(10), "csi socket exists", || {
            socket.exists()
        });
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

    /// Where kubelet stages a volume: `<root>/<driver>/<hash>/globalmount`.
    pub fn kubelet_staging(&self, hash: &str) -> PathBuf {
        self.0
            .dir()
            .join(KUBELET_STAGING)
            .join(DRIVER)
            .join(hash)
            .join("globalmount")
    }

    /// Where kubelet publishes a volume for a pod:
    /// `<root>/<pod uid>/volumes/kubernetes.io~csi/<pv>/mount`.
    pub fn kubelet_target(&self, pod: &str, pv: &str) -> PathBuf {
        self.0
            .dir()
            .join(KUBELET_PODS)
            .join(pod)
            .join("volumes/kubernetes.io~csi")
            .join(pv)
            .join("mount")
    }

    /// The test's copy of kubelet's root directory.
    pub fn kubelet_root(&self) -> PathBuf {
        self.0.dir().join("kubelet")
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

/// kubelet's roots, below the plugin's directory instead of /var/lib.
pub const KUBELET_STAGING: &str = "kubelet/plugins/kubernetes.io/csi";
pub const KUBELET_PODS: &str = "kubelet/pods";
/// The driver's name (GetPluginInfo), which kubelet puts in its paths.
pub const DRIVER: &str = "netfs-csi";

pub fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What Swarm sends for `--type mount --scope multi --sharing all`.
pub fn mount_capability() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume::default())),
        access_mode: Some(AccessMode {
            mode: Mode::MultiNodeMultiWriter.into(),
        }),
    }
}

pub fn block_capability() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter.into(),
        }),
    }
}
