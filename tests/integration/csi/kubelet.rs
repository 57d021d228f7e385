//! The server driven exactly as Kubernetes drives it (docs/kubernetes.md):
//! node-driver-registrar and kubelet ask NodeGetInfo and Probe; the
//! external provisioner calls CreateVolume with a StorageClass's parameters
//! and the metadata it adds; kubelet stages at its globalmount path (a
//! directory it made), publishes for two pods below their own directories,
//! asks for the volume's stats, unpublishes both and unstages. Real sshfs
//! (password from the node-stage Secret) and rclone underneath.

use std::path::Path;
use std::time::Duration;

use netfs::csi::proto::volume_usage::Unit;
use netfs::csi::proto::*;
use tonic::transport::Channel;

use super::{map, mount_capability, InProcess};
use crate::support::mounts::{is_mounted, poll_until, processes_with_arg};
use crate::support::sshd::{Sshd, TEST_PASSWORD};

/// One PersistentVolume's run through kubelet's calls.
struct Volume<'a> {
    pv: &'a str,
    parameters: Vec<(&'a str, String)>,
    /// The node-stage Secret's keys and values.
    secrets: Vec<(&'a str, &'a str)>,
    /// The remote directory the volume serves.
    remote: &'a Path,
}

async fn kubelet_lifecycle(plugin: &InProcess, channel: Channel, volume: Volume<'_>) {
    let mut identity = identity_client::IdentityClient::new(channel.clone());
    let mut controller = controller_client::ControllerClient::new(channel.clone());
    let mut node = node_client::NodeClient::new(channel);

    // node-driver-registrar, then kubelet's plugin watcher.
    let info = node
        .node_get_info(NodeGetInfoRequest {})
        .await
        .expect("NodeGetInfo")
        .into_inner();
    assert_eq!(info.node_id, "node-a");
    let probe = identity.probe(ProbeRequest {}).await.expect("Probe");
    assert_eq!(probe.into_inner().ready, Some(true));

    // The provisioner: the StorageClass's parameters, its secret keys
    // taken out, plus what --extra-create-metadata adds.
    let mut parameters: Vec<(&str, String)> = volume.parameters.clone();
    parameters.push(("csi.storage.k8s.io/pv/name", volume.pv.to_owned()));
    parameters.push(("csi.storage.k8s.io/pvc/name", "data".to_owned()));
    parameters.push(("csi.storage.k8s.io/pvc/namespace", "default".to_owned()));
    let parameters = parameters
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let created = controller
        .create_volume(CreateVolumeRequest {
            name: volume.pv.to_owned(),
            volume_capabilities: vec![mount_capability()],
            parameters,
            ..Default::default()
        })
        .await
        .expect("CreateVolume")
        .into_inner()
        .volume
        .expect("a volume");
    assert_eq!(created.volume_id, volume.pv);
    let mut context: Vec<&String> = created.volume_context.keys().collect();
    context.sort();
    let mut want: Vec<&str> = volume.parameters.iter().map(|(k, _)| *k).collect();
    want.sort();
    assert_eq!(context, want, "kubernetes' own keys are not the volume's");

    // kubelet's MountDevice: it makes globalmount, then NodeStageVolume
    // with the PV's volumeAttributes (the context) and the Secret.
    let staging = plugin.kubelet_staging(&format!("{}-hash", volume.pv));
    std::fs::create_dir_all(&staging).expect("kubelet makes globalmount");
    let secrets = map(&volume.secrets);
    let stage = NodeStageVolumeRequest {
        volume_id: created.volume_id.clone(),
        staging_target_path: staging.display().to_string(),
        volume_capability: Some(mount_capability()),
        secrets: secrets.clone(),
        volume_context: created.volume_context.clone(),
        ..Default::default()
    };
    for _ in 0..2 {
        node.node_stage_volume(stage.clone())
            .await
            .expect("NodeStageVolume, also when already staged");
    }
    assert!(is_mounted(&staging), "the tool mounts at globalmount");
    let staging_arg = staging.display().to_string();
    assert_eq!(processes_with_arg(&staging_arg).len(), 1, "one tool");

    // Two pods: kubelet makes each volume's directory, netfs its `mount`.
    let targets = [
        plugin.kubelet_target("pod-uid-1", volume.pv),
        plugin.kubelet_target("pod-uid-2", volume.pv),
    ];
    for target in &targets {
        let parent = target.parent().expect("a parent");
        std::fs::create_dir_all(parent).expect("kubelet makes the volume's directory");
        let publish = NodePublishVolumeRequest {
            volume_id: created.volume_id.clone(),
            staging_target_path: staging.display().to_string(),
            target_path: target.display().to_string(),
            volume_capability: Some(mount_capability()),
            secrets: secrets.clone(),
            volume_context: map(&[
                ("csi.storage.k8s.io/pod.name", "app"),
                ("csi.storage.k8s.io/ephemeral", "false"),
            ]),
            ..Default::default()
        };
        for _ in 0..2 {
            node.node_publish_volume(publish.clone())
                .await
                .expect("NodePublishVolume, also when already published");
        }
        assert!(is_mounted(target), "published at {}", target.display());
    }
    // What contradicts the stage or a publish is refused, and changes nothing.
    let mut other = stage.clone();
    other.volume_id = "pvc-other".into();
    let held = node
        .node_stage_volume(other)
        .await
        .expect_err("another volume");
    assert_eq!(held.code(), tonic::Code::AlreadyExists, "{held:?}");
    assert_eq!(
        held.message(),
        format!(
            "staging_target_path {} already holds volume {}; unstage it first",
            staging.display(),
            volume.pv
        )
    );
    let readonly = node
        .node_publish_volume(NodePublishVolumeRequest {
            volume_id: created.volume_id.clone(),
            staging_target_path: staging.display().to_string(),
            target_path: targets[0].display().to_string(),
            volume_capability: Some(mount_capability()),
            readonly: true,
            ..Default::default()
        })
        .await
        .expect_err("published read-write already");
    assert_eq!(readonly.code(), tonic::Code::AlreadyExists, "{readonly:?}");
    assert_eq!(
        readonly.message(),
        format!(
            "volume {} is already published read-write at {}; unpublish it first",
            volume.pv,
            targets[0].display()
        )
    );
    let unknown = node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: "pvc-other".into(),
            volume_path: targets[0].display().to_string(),
            staging_target_path: String::new(),
        })
        .await
        .expect_err("another volume's stats");
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    let busy = node
        .node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: created.volume_id.clone(),
            staging_target_path: staging.display().to_string(),
        })
        .await
        .expect_err("still published");
    assert_eq!(busy.code(), tonic::Code::FailedPrecondition, "{busy:?}");
    assert!(is_mounted(&targets[0]) && is_mounted(&staging));

    std::fs::write(targets[0].join("from-pod-1"), "hello").expect("write in pod 1");
    assert_eq!(
        std::fs::read_to_string(targets[1].join("from-pod-1")).expect("read in pod 2"),
        "hello"
    );
    let remote = volume.remote.join("from-pod-1");
    assert!(
        poll_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&remote).is_ok_and(|s| s == "hello")
        }),
        "the file reaches the remote"
    );

    // kubelet's volume stats, on a pod's path and on globalmount.
    for path in [&targets[0], &staging] {
        let stats = node
            .node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: created.volume_id.clone(),
                volume_path: path.display().to_string(),
                staging_target_path: staging.display().to_string(),
            })
            .await
            .expect("NodeGetVolumeStats")
            .into_inner();
        let condition = stats.volume_condition.expect("a condition");
        assert!(!condition.abnormal, "{condition:?}");
        let units: Vec<Unit> = stats.usage.iter().map(|u| u.unit()).collect();
        assert_eq!(units, [Unit::Bytes, Unit::Inodes]);
        let bytes = &stats.usage[0];
        assert!(
            bytes.total > 0 && bytes.available <= bytes.total,
            "{bytes:?}"
        );
    }

    // Both pods go: unpublish each (twice); globalmount stays staged,
    // since kubelet unstages itself.
    for target in &targets {
        for _ in 0..2 {
            node.node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: created.volume_id.clone(),
                target_path: target.display().to_string(),
            })
            .await
            .expect("NodeUnpublishVolume, also when already unpublished");
        }
        assert!(!is_mounted(target));
        assert!(!target.exists(), "netfs removes the `mount` it made");
        assert!(
            target.parent().is_some_and(Path::exists),
            "kubelet's directory stays"
        );
    }
    assert!(is_mounted(&staging), "staged until kubelet unstages");
    assert_eq!(processes_with_arg(&staging_arg).len(), 1);

    for _ in 0..2 {
        node.node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: created.volume_id.clone(),
            staging_target_path: staging.display().to_string(),
        })
        .await
        .expect("NodeUnstageVolume, also when already unstaged");
    }
    assert!(!is_mounted(&staging));
    assert!(staging.exists(), "globalmount is kubelet's: it stays");
    assert!(processes_with_arg(&staging_arg).is_empty(), "no tool left");
    controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: created.volume_id,
            ..Default::default()
        })
        .await
        .expect("DeleteVolume");
    assert_eq!(
        std::fs::read_to_string(remote).expect("kept on the remote"),
        "hello"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_and_the_provisioner_drive_an_sshfs_and_an_rclone_volume() {
    let sshd = Sshd::with_password();
    let plugin = InProcess::start();
    let remote = sshd.remote_dir().to_path_buf();
    std::fs::create_dir_all(remote.join("r")).expect("rclone's remote directory");
    let sshfs = Volume {
        pv: "pvc-0b5e9a61-sshfs",
        parameters: vec![
            ("type", "sshfs".to_owned()),
            ("source", sshd.password_source("")),
            ("o", sshd.password_sshfs_options()),
        ],
        secrets: vec![("password", TEST_PASSWORD)],
        remote: &remote,
    };
    kubelet_lifecycle(&plugin, plugin.channel().await, sshfs).await;
    assert!(
        processes_with_arg(TEST_PASSWORD).is_empty(),
        "the password is in no process's argv"
    );
    let rclone_remote = remote.join("r");
    let rclone = Volume {
        pv: "pvc-1c7f0b72-rclone",
        parameters: vec![
            ("type", "rclone".to_owned()),
            ("source", sshd.rclone_remote("r")),
        ],
        secrets: vec![],
        remote: &rclone_remote,
    };
    kubelet_lifecycle(&plugin, plugin.channel().await, rclone).await;
    assert!(
        crate::support::mounts::mounts_under(plugin.kubelet_root()).is_empty(),
        "nothing left mounted below kubelet's directory"
    );
}

/// kubelet's volume health: while the tool restarts after its remote went
/// away, NodeGetVolumeStats says abnormal and why; once it is back, normal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_stats_report_a_restarting_tool_as_abnormal() {
    let mut sshd = Sshd::new();
    let plugin = InProcess::start();
    let mut node = node_client::NodeClient::new(plugin.channel().await);
    let staging = plugin.kubelet_staging("health-hash");
    std::fs::create_dir_all(&staging).expect("kubelet makes globalmount");
    node.node_stage_volume(NodeStageVolumeRequest {
        volume_id: "pvc-health".into(),
        staging_target_path: staging.display().to_string(),
        volume_capability: Some(mount_capability()),
        volume_context: map(&[("source", &sshd.source("")), ("o", &sshd.sshfs_options())]),
        ..Default::default()
    })
    .await
    .expect("stage");
    let stats = |node: &mut node_client::NodeClient<Channel>| {
        let mut node = node.clone();
        let request = NodeGetVolumeStatsRequest {
            volume_id: "pvc-health".into(),
            volume_path: staging.display().to_string(),
            staging_target_path: String::new(),
        };
        async move {
            node.node_get_volume_stats(request)
                .await
                .expect("NodeGetVolumeStats")
                .into_inner()
                .volume_condition
                .expect("a condition")
        }
    };
    assert!(!stats(&mut node).await.abnormal);

    sshd.stop();
    let staging_arg = staging.display().to_string();
    for (pid, _) in processes_with_arg(&staging_arg) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    // First the dead mount may answer ENOTCONN (abnormal too), then the
    // supervisor restarts the tool, which cannot log in.
    let mut seen = Vec::new();
    for _ in 0..100 {
        let condition = stats(&mut node).await;
        let restarting = condition.abnormal && condition.message.contains("restarting");
        seen.push(condition);
        if restarting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let condition = seen.last().expect("asked");
    assert!(
        condition.abnormal
            && condition
                .message
                .starts_with("the volume's tool is restarting"),
        "abnormal while the tool restarts: {seen:?}"
    );

    sshd.start();
    let mut back = false;
    for _ in 0..120 {
        if !stats(&mut node).await.abnormal {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(back, "normal again once the remote is back");
    node.node_unstage_volume(NodeUnstageVolumeRequest {
        volume_id: "pvc-health".into(),
        staging_target_path: staging.display().to_string(),
    })
    .await
    .expect("unstage");
    assert!(!is_mounted(&staging));
}

/// deploy/kubernetes gives netfs kubelet's roots, as this file's tests do
/// (below a temporary directory instead of /var/lib), and the driver's
/// name everywhere kubelet and the provisioner look for it.
#[test]
fn the_manifests_match_what_the_tests_drive() {
    let node = include_str!("../../../deploy/kubernetes/node.yaml");
    for root in [super::KUBELET_STAGING, super::KUBELET_PODS] {
        assert!(
            node.contains(&format!("value: /var/lib/{root}\n")),
            "{root}"
        );
    }
    assert!(node.contains(&format!(
        "--kubelet-registration-path=/var/lib/kubelet/plugins/{}/csi.sock",
        super::DRIVER
    )));
    let driver = include_str!("../../../deploy/kubernetes/csidriver.yaml");
    assert!(driver.contains(&format!("  name: {}\n", super::DRIVER)));
    assert_eq!(super::DRIVER, netfs::csi::PLUGIN_NAME);
    for example in [
        include_str!("../../../deploy/kubernetes/examples/storageclass.yaml"),
        include_str!("../../../deploy/kubernetes/examples/static-pv.yaml"),
    ] {
        assert!(example.contains(super::DRIVER));
    }
}
