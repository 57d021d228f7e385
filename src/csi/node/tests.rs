//! The CSI node's calls against a scripted tool and a recorded mount
//! table, on tokio's paused clock and without root: which binds and
//! unmounts each call asks for, which directories it makes and removes,
//! and the spec's codes when the calls come out of order. The real mounts
//! under Swarm and as kubelet calls them are the integration tests' job.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tempfile::TempDir;
use tonic::{Code, Request};

use super::Node;
use crate::config::Lifecycle;
use crate::csi::paths::Roots;
use crate::csi::proto::node_server::Node as _;
use crate::csi::proto::volume_capability::access_mode::Mode;
use crate::csi::proto::volume_capability::{AccessMode, AccessType, MountVolume};
use crate::csi::proto::*;
use crate::driver::{Driver, Seams};
use crate::mounts::recorded::{Call, Recorded};
use crate::supervisor::scripted::Scripted;
use crate::supervisor::Launcher;
use crate::{reattach, state};

/// A node on a temporary directory: netfs's own staging root (Swarm's)
/// and a kubelet's tree as the allowed roots.
pub(crate) struct Harness {
    pub dir: TempDir,
    pub node: Node,
    pub mounts: Arc<Recorded>,
    /// The volumes the state file held when the driver opened it.
    pub stored: state::Volumes,
}

impl Harness {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        Self::on(dir, None)
    }

    /// A node on `dir` (a later run of one that used it), re-attaching
    /// through `host` if given.
    pub fn on(dir: TempDir, host: Option<Arc<reattach::recorded::Recorded>>) -> Self {
        let mounts = Arc::new(Recorded::default());
        let seams = Seams {
            launcher: Launcher::tool(Scripted::mounting_in(mounts.clone())),
            mounts: mounts.clone(),
            writer: Arc::new(state::write_atomic),
            reattach: host.clone().map(|h| h as Arc<dyn reattach::Host>),
        };
        let mut config = crate::driver::tests::config(dir.path(), Lifecycle::Mount);
        config.reattach = host.is_some();
        let own_staging = config.mount_root.clone();
        let (driver, stored) = Driver::open_with(Arc::new(config), seams).expect("open the driver");
        let kubelet = dir.path().join("kubelet");
        let node = Node {
            driver: Arc::new(driver),
            mounts: mounts.clone(),
            own_staging: own_staging.clone(),
            staging: Arc::new(Roots {
                field: "staging_target_path",
                roots: vec![own_staging, kubelet.join("plugins")],
            }),
            targets: Arc::new(Roots {
                field: "target_path",
                roots: vec![dir.path().join("published"), kubelet.join("pods")],
            }),
            node_id: "node-1".into(),
            stages: Default::default(),
        };
        for root in node.staging.roots.iter().chain(&node.targets.roots) {
            std::fs::create_dir_all(root).expect("a root");
        }
        Self {
            dir,
            node,
            mounts,
            stored,
        }
    }

    /// Its directory, for the next run; the node and its driver go.
    pub fn into_dir(self) -> TempDir {
        self.dir
    }

    /// Swarm's staging path for a volume, in netfs's own staging root.
    pub fn swarm_staging(&self, volume: &str) -> PathBuf {
        self.node.own_staging.join(volume)
    }

    /// Swarm's target for a volume.
    pub fn swarm_target(&self, volume: &str) -> PathBuf {
        self.dir.path().join("published").join(volume)
    }

    /// kubelet's staging path for a volume, several levels below its root.
    pub fn kubelet_staging(&self, hash: &str) -> PathBuf {
        self.dir
            .path()
            .join("kubelet/plugins/kubernetes.io/csi/netfs/")
            .join(hash)
            .join("globalmount")
    }

    /// kubelet's target for a pod.
    pub fn kubelet_target(&self, pod: &str) -> PathBuf {
        self.dir
            .path()
            .join("kubelet/pods")
            .join(pod)
            .join("volumes/kubernetes.io~csi/pv-1/mount")
    }

    pub async fn stage(&self, volume: &str, staging: &Path) -> Result<(), Code> {
        let request = NodeStageVolumeRequest {
            volume_id: volume.into(),
            staging_target_path: text(staging),
            volume_capability: Some(capability(Mode::MultiNodeMultiWriter)),
            volume_context: HashMap::from([("source".into(), "u@h:/srv".into())]),
            ..Default::default()
        };
        let answer = self.node.node_stage_volume(Request::new(request)).await;
        answer.map(drop).map_err(|s| s.code())
    }

    pub async fn unstage(&self, volume: &str, staging: &Path) -> Result<(), Code> {
        let request = NodeUnstageVolumeRequest {
            volume_id: volume.into(),
            staging_target_path: text(staging),
        };
        let answer = self.node.node_unstage_volume(Request::new(request)).await;
        answer.map(drop).map_err(|s| s.code())
    }

    pub async fn publish(
        &self,
        volume: &str,
        staging: &Path,
        target: &Path,
        readonly: bool,
    ) -> Result<(), Code> {
        let request = NodePublishVolumeRequest {
            volume_id: volume.into(),
            staging_target_path: text(staging),
            target_path: text(target),
            volume_capability: Some(capability(Mode::MultiNodeMultiWriter)),
            readonly,
            ..Default::default()
        };
        let answer = self.node.node_publish_volume(Request::new(request)).await;
        answer.map(drop).map_err(|s| s.code())
    }

    pub async fn unpublish(&self, volume: &str, target: &Path) -> Result<(), Code> {
        let request = NodeUnpublishVolumeRequest {
            volume_id: volume.into(),
            target_path: text(target),
        };
        let answer = self.node.node_unpublish_volume(Request::new(request)).await;
        answer.map(drop).map_err(|s| s.code())
    }

    /// The binds asked for so far, as (source, target, read-only).
    pub fn binds(&self) -> Vec<(PathBuf, PathBuf, bool)> {
        self.mounts
            .calls()
            .into_iter()
            .filter_map(|call| match call {
                Call::Bind {
                    source,
                    target,
                    read_only,
                } => Some((source, target, read_only)),
                _ => None,
            })
            .collect()
    }

    pub fn unmounts(&self) -> Vec<PathBuf> {
        self.mounts
            .calls()
            .into_iter()
            .filter_map(|call| match call {
                Call::LazyUnmount(path) => Some(path),
                _ => None,
            })
            .collect()
    }
}

fn text(path: &Path) -> String {
    path.to_str().expect("a UTF-8 path").to_owned()
}

fn capability(mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume::default())),
        access_mode: Some(AccessMode { mode: mode.into() }),
    }
}

#[tokio::test(start_paused = true)]
async fn kubelet_stages_deep_publishes_twice_and_takes_it_all_down() {
    let h = Harness::new();
    let staging = h.kubelet_staging("abc123");
    let (pod_a, pod_b) = (h.kubelet_target("pod-a"), h.kubelet_target("pod-b"));

    assert_eq!(h.stage("vol-1", &staging).await, Ok(()));
    assert!(staging.is_dir(), "netfs made kubelet's staging path");
    assert_eq!(
        h.mounts.mounted(),
        vec![staging.clone()],
        "the tool mounted there"
    );

    assert_eq!(h.publish("vol-1", &staging, &pod_a, false).await, Ok(()));
    assert_eq!(h.publish("vol-1", &staging, &pod_b, true).await, Ok(()));
    assert_eq!(
        h.binds(),
        vec![
            (staging.clone(), pod_a.clone(), false),
            (staging.clone(), pod_b.clone(), true),
        ]
    );

    // A publish done already is success, with no second bind.
    assert_eq!(h.publish("vol-1", &staging, &pod_a, false).await, Ok(()));
    assert_eq!(h.binds().len(), 2);

    // Unstage waits for the last unpublish.
    assert_eq!(
        h.unstage("vol-1", &staging).await,
        Err(Code::FailedPrecondition)
    );

    assert_eq!(h.unpublish("vol-1", &pod_a).await, Ok(()));
    assert_eq!(h.unpublish("vol-1", &pod_b).await, Ok(()));
    assert_eq!(h.unmounts(), vec![pod_a.clone(), pod_b.clone()]);
    for pod in ["pod-a", "pod-b"] {
        let made = h.dir.path().join("kubelet/pods").join(pod);
        assert!(!made.exists(), "the directories netfs made for {pod} went");
    }
    assert!(
        h.node.driver.is_staged("vol-1"),
        "kubelet's stage waits for its unstage"
    );

    assert_eq!(h.unstage("vol-1", &staging).await, Ok(()));
    assert_eq!(h.unstage("vol-1", &staging).await, Ok(()), "idempotent");
    assert!(h.mounts.mounted().is_empty(), "{:?}", h.mounts.mounted());
    assert!(
        !h.dir.path().join("kubelet/plugins/kubernetes.io").exists(),
        "the staging directories netfs made went"
    );
    assert!(
        h.dir.path().join("kubelet/plugins").is_dir(),
        "the root stays"
    );
}

#[tokio::test(start_paused = true)]
async fn a_swarm_stage_goes_with_its_last_publish() {
    let h = Harness::new();
    let staging = h.node.own_staging.join("vol-2");
    let target = h.dir.path().join("published/vol-2");

    assert_eq!(h.stage("vol-2", &staging).await, Ok(()));
    assert_eq!(h.publish("vol-2", &staging, &target, false).await, Ok(()));
    assert_eq!(h.unpublish("vol-2", &target).await, Ok(()));

    assert!(
        !h.node.driver.is_staged("vol-2"),
        "unstaged with its last publish"
    );
    assert!(
        h.node.driver.list().is_empty(),
        "the driver's volume went too"
    );
    assert!(h.mounts.mounted().is_empty(), "{:?}", h.mounts.mounted());
}

#[tokio::test(start_paused = true)]
async fn calls_out_of_order_get_the_specs_codes_and_change_nothing() {
    let h = Harness::new();
    let staging = h.kubelet_staging("s1");
    let target = h.kubelet_target("pod");

    assert_eq!(
        h.publish("vol-3", &staging, &target, false).await,
        Err(Code::FailedPrecondition),
        "publish before stage"
    );
    assert!(h.binds().is_empty());

    assert_eq!(h.stage("vol-3", &staging).await, Ok(()));
    assert_eq!(
        h.stage("vol-4", &staging).await,
        Err(Code::AlreadyExists),
        "another volume at a staging path in use"
    );
    assert_eq!(h.publish("vol-3", &staging, &target, false).await, Ok(()));
    assert_eq!(
        h.publish("vol-3", &staging, &target, true).await,
        Err(Code::AlreadyExists),
        "the same target read-only now"
    );
    assert_eq!(
        h.unpublish("vol-4", &target).await,
        Err(Code::NotFound),
        "another volume's target"
    );
    assert_eq!(
        h.unstage("vol-4", &staging).await,
        Err(Code::NotFound),
        "another volume's stage"
    );
    assert_eq!(h.binds().len(), 1);
    assert!(h.unmounts().is_empty(), "nothing was taken down");
    assert!(h.mounts.mounted().contains(&target));
}

#[tokio::test(start_paused = true)]
async fn a_refused_bind_leaves_no_directory_and_the_retry_works() {
    let h = Harness::new();
    let staging = h.kubelet_staging("s2");
    let target = h.kubelet_target("pod");
    assert_eq!(h.stage("vol-5", &staging).await, Ok(()));

    h.mounts.refuse_binds(true);
    assert_eq!(
        h.publish("vol-5", &staging, &target, false).await,
        Err(Code::Internal)
    );
    assert!(
        !h.dir.path().join("kubelet/pods/pod").exists(),
        "the directories made for the target went"
    );

    h.mounts.refuse_binds(false);
    assert_eq!(h.publish("vol-5", &staging, &target, false).await, Ok(()));
    assert!(h.mounts.mounted().contains(&target));
}

#[tokio::test(start_paused = true)]
async fn what_an_earlier_run_left_mounted_at_a_target_is_taken_down_first() {
    let h = Harness::new();
    let staging = h.kubelet_staging("s3");
    let target = h.kubelet_target("pod");
    std::fs::create_dir_all(&target).unwrap();
    h.mounts.mount(&target);

    assert_eq!(h.stage("vol-6", &staging).await, Ok(()));
    assert_eq!(h.publish("vol-6", &staging, &target, false).await, Ok(()));
    assert_eq!(h.unmounts(), vec![target.clone()], "the old mount went");
    assert_eq!(h.binds(), vec![(staging, target.clone(), false)]);

    // Unpublish of a target this run never published unmounts what is
    // there and leaves the directory, which netfs did not make.
    let stray = h.kubelet_target("stray");
    std::fs::create_dir_all(&stray).unwrap();
    h.mounts.mount(&stray);
    assert_eq!(h.unpublish("vol-7", &stray).await, Ok(()));
    assert!(!h.mounts.mounted().contains(&stray));
    assert!(stray.is_dir());
}
