//! Each bad input gets the spec's gRPC code and a message a user can act on.

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

#[tokio::test]
async fn create_volume_refuses_bad_requests() {
    let plugin = InProcess::start();
    let mut controller = controller_client::ControllerClient::new(plugin.channel().await);
    let good = CreateVolumeRequest {
        name: "v".into(),
        volume_capabilities: vec![mount_capability()],
        parameters: map(&[("source", "u@h:/x")]),
        secrets: Default::default(),
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
            "block access is not supported: netfs mounts file systems; create the volume with --type mount",
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
                parameters: map(&[("source", "u@h:/x"), ("password", "pw")]),
                ..good.clone()
            },
            "parameter \"password\" holds a secret; give it with --secret password=<swarm secret> instead of --opt",
        ),
        (
            CreateVolumeRequest {
                parameters: map(&[("o", "port=2,sftp_password=pw")]),
                ..good.clone()
            },
            "parameter o sets \"sftp_password\", which holds a secret; give it with --secret sftp_password=<swarm secret> instead",
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
async fn node_calls_refuse_bad_requests() {
    let plugin = InProcess::start();
    let mut node = node_client::NodeClient::new(plugin.channel().await);
    let staging = plugin.staged("vol1").display().to_string();
    let root = plugin.staged("").display().to_string();
    let root = root.trim_end_matches('/').to_string();
    let stage = NodeStageVolumeRequest {
        volume_id: "vol1".into(),
        publish_context: Default::default(),
        staging_target_path: staging.clone(),
        volume_capability: Some(mount_capability()),
        secrets: Default::default(),
        volume_context: map(&[("source", "u@h:/x")]),
    };
    let outside = format!(
        "staging_target_path /tmp/x is not a directory right below the staging root {root}"
    );
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
            outside,
        ),
        (
            NodeStageVolumeRequest {
                staging_target_path: format!("{root}/a/../../etc"),
                ..stage.clone()
            },
            Code::InvalidArgument,
            format!("staging_target_path {root}/a/../../etc is not a directory right below the staging root {root}"),
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
            "block access is not supported: netfs mounts file systems; create the volume with --type mount".into(),
        ),
        (
            NodeStageVolumeRequest {
                volume_context: map(&[("source", "u@h:/x"), ("password", "pw")]),
                ..stage.clone()
            },
            Code::InvalidArgument,
            "parameter \"password\" holds a secret; give it with --secret password=<swarm secret> instead of --opt".into(),
        ),
        (
            NodeStageVolumeRequest {
                secrets: map(&[("port", "22")]),
                ..stage.clone()
            },
            Code::InvalidArgument,
            "secret \"port\" is not a secret option; give it with --opt (secrets are `password` and \
             mount options whose name says secret, e.g. pass, token, secret_access_key)"
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

    let publish = NodePublishVolumeRequest {
        volume_id: "vol1".into(),
        publish_context: Default::default(),
        staging_target_path: staging.clone(),
        target_path: plugin.published("vol1").display().to_string(),
        volume_capability: Some(mount_capability()),
        readonly: false,
        secrets: Default::default(),
        volume_context: Default::default(),
    };
    assert_refused(
        node.node_publish_volume(publish.clone()).await,
        Code::FailedPrecondition,
        &format!("volume vol1 is not staged at {staging}; stage it first"),
    );
    let published_root = plugin.published("").display().to_string();
    let published_root = published_root.trim_end_matches('/');
    for target in ["/etc/passwd-dir", published_root, "relative/x"] {
        assert_refused(
            node.node_publish_volume(NodePublishVolumeRequest {
                target_path: target.into(),
                ..publish.clone()
            })
            .await,
            Code::InvalidArgument,
            &format!("target_path {target} is outside the publish root {published_root}"),
        );
        assert_refused(
            node.node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: "vol1".into(),
                target_path: target.into(),
            })
            .await,
            Code::InvalidArgument,
            &format!("target_path {target} is outside the publish root {published_root}"),
        );
    }
    assert_refused(
        node.node_publish_volume(NodePublishVolumeRequest {
            target_path: String::new(),
            ..publish.clone()
        })
        .await,
        Code::InvalidArgument,
        "target_path is missing",
    );
    assert_refused(
        node.node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: String::new(),
            staging_target_path: staging.clone(),
        })
        .await,
        Code::InvalidArgument,
        "volume_id is missing",
    );
    // Unknown volumes: nothing to undo is success (the spec's idempotency).
    node.node_unstage_volume(NodeUnstageVolumeRequest {
        volume_id: "vol1".into(),
        staging_target_path: staging,
    })
    .await
    .expect("unstaging a volume never staged");
    node.node_unpublish_volume(NodeUnpublishVolumeRequest {
        volume_id: "vol1".into(),
        target_path: plugin.published("vol1").display().to_string(),
    })
    .await
    .expect("unpublishing a volume never published");
}
