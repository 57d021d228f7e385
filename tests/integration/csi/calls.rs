//! Identity, Controller and the Node calls that mount nothing.

use netfs::csi::proto::*;

use super::{map, mount_capability, InProcess};

use controller_service_capability::rpc::Type as ControllerRpc;
use node_service_capability::rpc::Type as NodeRpc;

/// The RPC types of the controller's capabilities.
fn controller_rpcs(caps: &[ControllerServiceCapability]) -> Vec<ControllerRpc> {
    caps.iter()
        .filter_map(|c| {
            let controller_service_capability::Type::Rpc(rpc) = c.r#type.as_ref()?;
            Some(rpc.r#type())
        })
        .collect()
}

/// The RPC types of the node's capabilities.
fn node_rpcs(caps: &[NodeServiceCapability]) -> Vec<NodeRpc> {
    caps.iter()
        .filter_map(|c| {
            let node_service_capability::Type::Rpc(rpc) = c.r#type.as_ref()?;
            Some(rpc.r#type())
        })
        .collect()
}

#[tokio::test]
async fn identity_reports_the_plugin_its_controller_and_readiness() {
    let plugin = InProcess::start();
    let mut identity = identity_client::IdentityClient::new(plugin.channel().await);
    let info = identity
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .expect("GetPluginInfo")
        .into_inner();
    assert_eq!(info.name, "netfs-csi");
    assert_eq!(info.vendor_version, env!("CARGO_PKG_VERSION"));
    let caps = identity
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .expect("GetPluginCapabilities")
        .into_inner();
    let types: Vec<plugin_capability::service::Type> = caps
        .capabilities
        .iter()
        .filter_map(|c| match &c.r#type {
            Some(plugin_capability::Type::Service(s)) => Some(s.r#type()),
            _ => None,
        })
        .collect();
    assert_eq!(types, [plugin_capability::service::Type::ControllerService]);
    let probe = identity.probe(ProbeRequest {}).await.expect("Probe");
    assert_eq!(probe.into_inner().ready, Some(true));
}

#[tokio::test]
async fn create_volume_hands_the_parameters_back_as_the_context_every_time() {
    let plugin = InProcess::start();
    let mut controller = controller_client::ControllerClient::new(plugin.channel().await);
    let parameters = map(&[
        ("source", "u@example.invalid:/srv"),
        ("o", "port=2222,reconnect"),
        ("type", "sshfs"),
    ]);
    let request = CreateVolumeRequest {
        name: "shared".into(),
        volume_capabilities: vec![mount_capability()],
        parameters: parameters.clone(),
        secrets: map(&[("password", "s3cret")]),
        ..Default::default()
    };
    let first = controller
        .create_volume(request.clone())
        .await
        .expect("CreateVolume")
        .into_inner()
        .volume
        .expect("a volume");
    assert_eq!(first.volume_id, "shared");
    assert_eq!(first.volume_context, parameters);
    assert!(!format!("{first:?}").contains("s3cret"));
    // The same request again: the same volume, no error.
    let again = controller
        .create_volume(request)
        .await
        .expect("CreateVolume again")
        .into_inner()
        .volume;
    assert_eq!(again, Some(first));

    for _ in 0..2 {
        controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: "shared".into(),
                secrets: Default::default(),
            })
            .await
            .expect("DeleteVolume, also of a volume already deleted");
    }
    let caps = controller
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .expect("ControllerGetCapabilities")
        .into_inner();
    assert_eq!(
        controller_rpcs(&caps.capabilities),
        [ControllerRpc::CreateDeleteVolume]
    );
}

#[tokio::test]
async fn node_reports_its_id_and_staging() {
    let plugin = InProcess::start();
    let mut node = node_client::NodeClient::new(plugin.channel().await);
    let info = node
        .node_get_info(NodeGetInfoRequest {})
        .await
        .expect("NodeGetInfo")
        .into_inner();
    assert_eq!(info.node_id, "node-a");
    assert_eq!(info.max_volumes_per_node, 0);
    let caps = node
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await
        .expect("NodeGetCapabilities")
        .into_inner();
    assert_eq!(
        node_rpcs(&caps.capabilities),
        [
            NodeRpc::StageUnstageVolume,
            NodeRpc::GetVolumeStats,
            NodeRpc::VolumeCondition
        ]
    );
}
