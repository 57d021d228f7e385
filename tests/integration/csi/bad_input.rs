//! Each bad input to each RPC gets the spec's gRPC code and a message a
//! user can act on; what netfs does not serve answers UNIMPLEMENTED.

use netfs::csi::proto::volume_capability::{AccessType, MountVolume};
use netfs::csi::proto::*;
use tonic::Code;

use super::{block_capability, map, mount_capability, InProcess};

fn assert_refused<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    message: &str,
) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(status.message(), message);
}

const BLOCK: &str = "block access is not supported: netfs mounts file systems; ask for mount \
                     access (Swarm: --type mount; Kubernetes: volumeMode: Filesystem)";
const FLAGS: &str = "mount_flags are not supported; give mount options in the volume's o \
                     parameter (Swarm: --opt o=...; Kubernetes: the StorageClass's parameters, \
                     not mountOptions)";
const SECRET_PARAMETER: &str = "parameter \"password\" holds a secret; give it as a secret \
                                instead (Swarm: --secret password=<secret id>; Kubernetes: key \
                                password of the node-stage Secret)";

fn with_flags() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            mount_flags: vec!["noatime".into()],
            ..Default::default()
        })),
        ..mount_capability()
    }
}

/// The roots' part of a message for a path outside them.
fn roots_message(plugin: &InProcess, field: &str, path: &str, own: &str, kubelet: &str) -> String {
    let dir = plugin.staged("").parent().expect("dir").to_path_buf();
    format!(
        "{field} {path} is not below any of the roots {}, {}; the allowed roots are a setting \
         (STAGING_ROOTS, PUBLISH_ROOTS: see docs/csi.md and docs/kubernetes.md)",
        dir.join(own).display(),
        dir.join(kubelet).display()
    )
}

#[tokio::test]
async fn create_volume_refuses_bad_requests() {
    let plugin = InProcess::start();
    let mut controller = controller_client::ControllerClient::new(plugin.channel().await);
    let good = CreateVolumeRequest {
        name: "v".into(),
        volume_capabilities: vec![mount_capability()],
        parameters: map(&[("source", "u@h:/x")]),
        ..Default::default()
    };
    let cases: Vec<(CreateVolumeRequest, &str)> = vec![
        (
            CreateVolumeRequest {
                name: String::new(),
                ..good.clone()
            },
            "name is missing",
        ),
        (
            CreateVolumeRequest {
                volume_capabilities: vec![],
                ..good.clone()
            },
            "volume_capabilities is missing",
        ),
        (
            CreateVolumeRequest {
                volume_capabilities: vec![block_capability()],
                ..good.clone()
            },
            BLOCK,
        ),
        (
            CreateVolumeRequest {
                volume_capabilities: vec![with_flags()],
                ..good.clone()
            },
            FLAGS,
        ),
        (
            CreateVolumeRequest {
                volume_capabilities: vec![VolumeCapability {
                    access_mode: None,
                    ..mount_capability()
                }],
                ..good.clone()
            },
            "volume_capability has no access mode",
        ),
        (
            CreateVolumeRequest {
                volume_capabilities: vec![VolumeCapability {
                    access_type: None,
                    ..mount_capability()
                }],
                ..good.clone()
            },
            "volume_capability has no access type; netfs serves mount access",
        ),
        (
            CreateVolumeRequest {
                parameters: map(&[("source", "u@h:/x"), ("password", "pw")]),
                ..good.clone()
            },
            SECRET_PARAMETER,
        ),
        (
            CreateVolumeRequest {
                parameters: map(&[("o", "port=2,sftp_password=pw")]),
                ..good.clone()
            },
            "parameter o sets \"sftp_password\", which holds a secret; give it as a secret \
             instead (Swarm: --secret sftp_password=<secret id>; Kubernetes: key sftp_password \
             of the node-stage Secret)",
        ),
        (
            CreateVolumeRequest {
                parameters: map(&[("port", "22")]),
                ..good.clone()
            },
            "volume v: unknown volume option \"port\"; accepted options are: type, source, o, c, password \
             (mount options go inside o, e.g. -o o=port=2222,reconnect)",
        ),
    ];
    for (request, message) in cases {
        assert_refused(
            controller.create_volume(request).await,
            Code::InvalidArgument,
            message,
        );
    }
    // The default option policy applies as for plugin volumes.
    let denied = controller
        .create_volume(CreateVolumeRequest {
            parameters: map(&[("o", "ProxyCommand=nc %h %p")]),
            ..good.clone()
        })
        .await
        .expect_err("ProxyCommand is refused by default");
    assert_eq!(denied.code(), Code::InvalidArgument);
    assert!(denied.message().contains("ProxyCommand"), "{denied:?}");
    assert_refused(
        controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: String::new(),
                secrets: Default::default(),
            })
            .await,
        Code::InvalidArgument,
        "volume_id is missing",
    );
}

#[tokio::test]
async fn validate_volume_capabilities_checks_the_volume_and_confirms_mount_access() {
    let plugin = InProcess::start();
    let mut controller = controller_client::ControllerClient::new(plugin.channel().await);
    let good = ValidateVolumeCapabilitiesRequest {
        volume_id: "pvc-1".into(),
        volume_context: map(&[("source", "u@h:/x"), ("o", "port=2222")]),
        volume_capabilities: vec![mount_capability()],
        ..Default::default()
    };
    let confirmed = controller
        .validate_volume_capabilities(good.clone())
        .await
        .expect("ValidateVolumeCapabilities")
        .into_inner();
    let confirmed = confirmed.confirmed.expect("confirmed");
    assert_eq!(confirmed.volume_capabilities, [mount_capability()]);
    assert_eq!(confirmed.volume_context, good.volume_context);
    for (capability, message) in [(block_capability(), BLOCK), (with_flags(), FLAGS)] {
        let answer = controller
            .validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
                volume_capabilities: vec![mount_capability(), capability],
                ..good.clone()
            })
            .await
            .expect("an answer, not an error")
            .into_inner();
        assert_eq!(answer.confirmed, None);
        assert_eq!(answer.message, message);
    }
    let cases = [
        (
            ValidateVolumeCapabilitiesRequest {
                volume_id: String::new(),
                ..good.clone()
            },
            Code::InvalidArgument,
            "volume_id is missing".to_owned(),
        ),
        (
            ValidateVolumeCapabilitiesRequest {
                volume_capabilities: vec![],
                ..good.clone()
            },
            Code::InvalidArgument,
            "volume_capabilities is missing".to_owned(),
        ),
        (
            ValidateVolumeCapabilitiesRequest {
                volume_id: "nope".into(),
                volume_context: map(&[("csi.storage.k8s.io/pv/name", "nope")]),
                ..good.clone()
            },
            Code::NotFound,
            "volume nope is unknown: its volume_context is empty, and a netfs volume is \
             described there (CreateVolume's answer, or a static PersistentVolume's \
             volumeAttributes: source, type, o)"
                .to_owned(),
        ),
        (
            ValidateVolumeCapabilitiesRequest {
                volume_context: map(&[("source", "u@h:/x"), ("password", "pw")]),
                ..good.clone()
            },
            Code::InvalidArgument,
            SECRET_PARAMETER.to_owned(),
        ),
    ];
    for (request, code, message) in cases {
        assert_refused(
            controller.validate_volume_capabilities(request).await,
            code,
            &message,
        );
    }
}

#[tokio::test]
async fn what_netfs_does_not_serve_answers_unimplemented() {
    let plugin = InProcess::start();
    let channel = plugin.channel().await;
    let mut controller = controller_client::ControllerClient::new(channel.clone());
    let mut node = node_client::NodeClient::new(channel);
    let codes = [
        controller
            .list_volumes(ListVolumesRequest::default())
            .await
            .map(drop),
        controller
            .get_capacity(GetCapacityRequest::default())
            .await
            .map(drop),
        controller
            .controller_publish_volume(ControllerPublishVolumeRequest::default())
            .await
            .map(drop),
        controller
            .create_snapshot(CreateSnapshotRequest::default())
            .await
            .map(drop),
        controller
            .controller_expand_volume(ControllerExpandVolumeRequest::default())
            .await
            .map(drop),
        node.node_expand_volume(NodeExpandVolumeRequest::default())
            .await
            .map(drop),
    ];
    for code in codes {
        assert_eq!(code.expect_err("unimplemented").code(), Code::Unimplemented);
    }
    // A service netfs does not serve at all.
    let mut group = group_controller_client::GroupControllerClient::new(plugin.channel().await);
    let status = group
        .group_controller_get_capabilities(GroupControllerGetCapabilitiesRequest {})
        .await
        .expect_err("no group controller");
    assert_eq!(status.code(), Code::Unimplemented);
}

#[tokio::test]
async fn node_calls_refuse_bad_requests() {
    let plugin = InProcess::start();
    let mut node = node_client::NodeClient::new(plugin.channel().await);
    let staging = plugin.staged("vol1").display().to_string();
    let root = plugin.staged("").display().to_string();
    let root = root.trim_end_matches('/').to_string();
    let stage = NodeStageVolumeRequest {
        volume_id: "vol1".into(),
        staging_target_path: staging.clone(),
        volume_capability: Some(mount_capability()),
        volume_context: map(&[("source", "u@h:/x")]),
        ..Default::default()
    };
    let outside = |path: &str| {
        roots_message(
            &plugin,
            "staging_target_path",
            path,
            "staged",
            super::KUBELET_STAGING,
        )
    };
    // A link inside a root that leads out of it.
    std::fs::create_dir_all(&root).expect("the staging root");
    let link = format!("{root}/link");
    std::os::unix::fs::symlink("/tmp", &link).expect("a link");
    let cases: Vec<(NodeStageVolumeRequest, Code, String)> = vec![
        (
            NodeStageVolumeRequest {
                volume_id: String::new(),
                ..stage.clone()
            },
            Code::InvalidArgument,
            "volume_id is missing".into(),
        ),
        (
            NodeStageVolumeRequest {
                staging_target_path: String::new(),
                ..stage.clone()
            },
            Code::InvalidArgument,
            "staging_target_path is missing".into(),
        ),
        (
            NodeStageVolumeRequest {
                staging_target_path: "/tmp/x".into(),
                ..stage.clone()
            },
            Code::InvalidArgument,
            outside("/tmp/x"),
        ),
        (
            NodeStageVolumeRequest {
                staging_target_path: root.clone(),
                ..stage.clone()
            },
            Code::InvalidArgument,
            outside(&root),
        ),
        (
            NodeStageVolumeRequest {
                staging_target_path: format!("{root}/a/../../etc"),
                ..stage.clone()
            },
            Code::InvalidArgument,
            format!(
                "staging_target_path {root}/a/../../etc must be an absolute path without `.` or `..`"
            ),
        ),
        (
            NodeStageVolumeRequest {
                staging_target_path: format!("{link}/x/globalmount"),
                ..stage.clone()
            },
            Code::InvalidArgument,
            format!(
                "staging_target_path {link}/x/globalmount goes through the symbolic link {link}; \
                 give the real path"
            ),
        ),
        (
            NodeStageVolumeRequest {
                volume_capability: None,
                ..stage.clone()
            },
            Code::InvalidArgument,
            "volume_capability is missing".into(),
        ),
        (
            NodeStageVolumeRequest {
                volume_capability: Some(block_capability()),
                ..stage.clone()
            },
            Code::InvalidArgument,
            BLOCK.into(),
        ),
        (
            NodeStageVolumeRequest {
                volume_context: map(&[("source", "u@h:/x"), ("password", "pw")]),
                ..stage.clone()
            },
            Code::InvalidArgument,
            SECRET_PARAMETER.into(),
        ),
        (
            NodeStageVolumeRequest {
                secrets: map(&[("port", "22")]),
                ..stage.clone()
            },
            Code::InvalidArgument,
            "secret \"port\" is not a secret option; give it as a parameter (Swarm: --opt; \
             Kubernetes: the StorageClass's parameters or the PersistentVolume's \
             volumeAttributes); secrets are `password` and mount options whose name says \
             secret, e.g. pass, token, secret_access_key"
                .into(),
        ),
        (
            NodeStageVolumeRequest {
                volume_context: map(&[("sorce", "u@h:/x")]),
                ..stage.clone()
            },
            Code::InvalidArgument,
            "volume vol1: unknown volume option \"sorce\"; accepted options are: type, source, o, c, password \
             (mount options go inside o, e.g. -o o=port=2222,reconnect)"
                .into(),
        ),
    ];
    for (request, code, message) in cases {
        assert_refused(node.node_stage_volume(request).await, code, &message);
    }
    assert!(
        !plugin.staged("vol1").exists(),
        "nothing is left of a refused stage"
    );
    assert!(
        !std::path::Path::new("/tmp/x/globalmount").exists(),
        "nothing made through the link"
    );

    let target = plugin.published("vol1").display().to_string();
    let publish = NodePublishVolumeRequest {
        volume_id: "vol1".into(),
        staging_target_path: staging.clone(),
        target_path: target.clone(),
        volume_capability: Some(mount_capability()),
        ..Default::default()
    };
    assert_refused(
        node.node_publish_volume(publish.clone()).await,
        Code::FailedPrecondition,
        &format!("volume vol1 is not staged at {staging}; stage it first"),
    );
    let published_root = plugin.published("").display().to_string();
    let published_root = published_root.trim_end_matches('/').to_owned();
    for bad in ["/etc/passwd-dir", &published_root] {
        let message = roots_message(
            &plugin,
            "target_path",
            bad,
            "published",
            super::KUBELET_PODS,
        );
        assert_refused(
            node.node_publish_volume(NodePublishVolumeRequest {
                target_path: bad.into(),
                ..publish.clone()
            })
            .await,
            Code::InvalidArgument,
            &message,
        );
        assert_refused(
            node.node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: "vol1".into(),
                target_path: bad.into(),
            })
            .await,
            Code::InvalidArgument,
            &message,
        );
    }
    let relative = "target_path relative/x must be an absolute path without `.` or `..`";
    assert_refused(
        node.node_publish_volume(NodePublishVolumeRequest {
            target_path: "relative/x".into(),
            ..publish.clone()
        })
        .await,
        Code::InvalidArgument,
        relative,
    );
    for (request, message) in [
        (
            NodePublishVolumeRequest {
                target_path: String::new(),
                ..publish.clone()
            },
            "target_path is missing",
        ),
        (
            NodePublishVolumeRequest {
                volume_id: String::new(),
                ..publish.clone()
            },
            "volume_id is missing",
        ),
        (
            NodePublishVolumeRequest {
                staging_target_path: String::new(),
                ..publish.clone()
            },
            "staging_target_path is missing",
        ),
        (
            NodePublishVolumeRequest {
                volume_capability: None,
                ..publish.clone()
            },
            "volume_capability is missing",
        ),
        (
            NodePublishVolumeRequest {
                volume_capability: Some(with_flags()),
                ..publish.clone()
            },
            FLAGS,
        ),
    ] {
        assert_refused(
            node.node_publish_volume(request).await,
            Code::InvalidArgument,
            message,
        );
    }
    assert_refused(
        node.node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: String::new(),
            staging_target_path: staging.clone(),
        })
        .await,
        Code::InvalidArgument,
        "volume_id is missing",
    );
    assert_refused(
        node.node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: "vol1".into(),
            staging_target_path: "/etc".into(),
        })
        .await,
        Code::InvalidArgument,
        &outside("/etc"),
    );
    assert_refused(
        node.node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: String::new(),
            target_path: target.clone(),
        })
        .await,
        Code::InvalidArgument,
        "volume_id is missing",
    );

    // Stats: required fields, then unknown volumes and paths.
    let stats = NodeGetVolumeStatsRequest {
        volume_id: "vol1".into(),
        volume_path: target.clone(),
        staging_target_path: String::new(),
    };
    for (request, code, message) in [
        (
            NodeGetVolumeStatsRequest {
                volume_id: String::new(),
                ..stats.clone()
            },
            Code::InvalidArgument,
            "volume_id is missing".to_owned(),
        ),
        (
            NodeGetVolumeStatsRequest {
                volume_path: String::new(),
                ..stats.clone()
            },
            Code::InvalidArgument,
            "volume_path is missing".to_owned(),
        ),
        (
            stats.clone(),
            Code::NotFound,
            format!("volume vol1 is not staged or published at {target} on this node"),
        ),
    ] {
        assert_refused(node.node_get_volume_stats(request).await, code, &message);
    }

    // Unknown volumes: nothing to undo is success (the spec's idempotency).
    node.node_unstage_volume(NodeUnstageVolumeRequest {
        volume_id: "vol1".into(),
        staging_target_path: staging,
    })
    .await
    .expect("unstaging a volume never staged");
    node.node_unpublish_volume(NodeUnpublishVolumeRequest {
        volume_id: "vol1".into(),
        target_path: target,
    })
    .await
    .expect("unpublishing a volume never published");
}
