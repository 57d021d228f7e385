//! Identity, Controller and the Node calls that mount nothing.

use netfs::csi::proto::*;

use super::{map, mount_capability, InProcess};

/// The RPC types of a list of controller or node capabilities.
fn rpc_types<'a>(rpcs: impl Iterator<Item = Option<&'a Rpc>>) -> Vec<i32> {
    rpcs.flatten().map(|r| r.r#type).collect()
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
    let types: Vec<i32> = caps
        .capabilities
        .iter()
        .filter_map(|c| c.service.as_ref().map(|s| s.r#type))
        .collect();
    assert_eq!(types, [i32::from(ServiceType::ControllerService)]);
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
    let types = rpc_types(caps.capabilities.iter().map(|c| c.rpc.as_ref()));
    assert_eq!(types, [CREATE_DELETE_VOLUME]);
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
    let types = rpc_types(caps.capabilities.iter().map(|c| c.rpc.as_ref()));
    assert_eq!(types, [STAGE_UNSTAGE_VOLUME]);
}
