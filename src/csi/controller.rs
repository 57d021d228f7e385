//! CSI Controller: a netfs volume is only a description (its options), so
//! CreateVolume checks it and hands it back as the volume's context, which
//! the orchestrator gives every node that stages it (Swarm from the volume
//! object, kubelet from the PersistentVolume). Nothing is provisioned, so
//! DeleteVolume has nothing to delete, and a volume is known by its
//! context: ValidateVolumeCapabilities finds an unknown one by an empty
//! context. The calls netfs does not serve answer UNIMPLEMENTED.

use std::collections::BTreeMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::options::{check_parameters, own_parameters};
use super::proto::controller_service_capability::rpc::Type as ControllerRpc;
use super::proto::validate_volume_capabilities_response::Confirmed;
use super::proto::volume_capability::access_mode::Mode;
use super::proto::volume_capability::AccessType;
use super::proto::*;
use super::{invalid, required, status};
use crate::driver::Driver;
use crate::name::VolumeName;

pub struct Controller {
    pub driver: Arc<Driver>,
}

impl Controller {
    /// Checks a volume's options as a node would stage them; errors name
    /// the volume, or "cluster-volume" when its name is not one netfs
    /// could take (nodes stage it under a name of their own).
    fn check_options(
        &self,
        name: &str,
        parameters: &std::collections::HashMap<String, String>,
    ) -> Result<(), Status> {
        check_parameters(parameters).map_err(|e| invalid(e.to_string()))?;
        let opts: BTreeMap<String, String> = parameters
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let shown = if VolumeName::parse(name).is_ok() {
            name
        } else {
            "cluster-volume"
        };
        self.driver.check_options(shown, &opts).map_err(status)
    }
}

#[tonic::async_trait]
impl controller_server::Controller for Controller {
    async fn create_volume(
        &self,
        request: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        let req = request.into_inner();
        required(&req.name, "name")?;
        if req.volume_capabilities.is_empty() {
            return Err(invalid("volume_capabilities is missing"));
        }
        for capability in &req.volume_capabilities {
            check_capability(capability)?;
        }
        let parameters = own_parameters(&req.parameters);
        self.check_options(&req.name, &parameters)?;
        // Same name and parameters give the same answer: idempotent.
        Ok(Response::new(CreateVolumeResponse {
            volume: Some(Volume {
                capacity_bytes: 0,
                volume_id: req.name,
                volume_context: parameters,
                ..Default::default()
            }),
        }))
    }

    async fn delete_volume(
        &self,
        request: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        required(&request.get_ref().volume_id, "volume_id")?;
        Ok(Response::new(DeleteVolumeResponse {}))
    }

    /// Confirms the capabilities netfs serves (mount access, any access
    /// mode) for a volume whose context it can stage.
    async fn validate_volume_capabilities(
        &self,
        request: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        let req = request.into_inner();
        required(&req.volume_id, "volume_id")?;
        if req.volume_capabilities.is_empty() {
            return Err(invalid("volume_capabilities is missing"));
        }
        let context = own_parameters(&req.volume_context);
        if context.is_empty() {
            return Err(Status::not_found(format!(
                "volume {} is unknown: its volume_context is empty, and a netfs volume is \
                 described there (CreateVolume's answer, or a static PersistentVolume's \
                 volumeAttributes: source, type, o)",
                req.volume_id
            )));
        }
        self.check_options(&req.volume_id, &context)?;
        let refused = req
            .volume_capabilities
            .iter()
            .find_map(|c| check_capability(c).err());
        let answer = match refused {
            Some(why) => ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: why.message().to_owned(),
            },
            None => ValidateVolumeCapabilitiesResponse {
                confirmed: Some(Confirmed {
                    volume_context: req.volume_context,
                    volume_capabilities: req.volume_capabilities,
                    parameters: req.parameters,
                    ..Default::default()
                }),
                message: String::new(),
            },
        };
        Ok(Response::new(answer))
    }

    async fn controller_get_capabilities(
        &self,
        _: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        let create_delete = ControllerServiceCapability {
            r#type: Some(controller_service_capability::Type::Rpc(
                controller_service_capability::Rpc {
                    r#type: ControllerRpc::CreateDeleteVolume.into(),
                },
            )),
        };
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities: vec![create_delete],
        }))
    }
}

/// Only file-system access, in any access mode: netfs mounts file
/// systems, and every mode maps to a mount (read-only ones at publish).
pub fn check_capability(capability: &VolumeCapability) -> Result<(), Status> {
    let mount = match &capability.access_type {
        Some(AccessType::Mount(mount)) => mount,
        Some(AccessType::Block(_)) => {
            return Err(invalid(
                "block access is not supported: netfs mounts file systems; \
                 ask for mount access (Swarm: --type mount; Kubernetes: volumeMode: Filesystem)",
            ))
        }
        None => {
            return Err(invalid(
                "volume_capability has no access type; netfs serves mount access",
            ))
        }
    };
    if !mount.mount_flags.is_empty() {
        return Err(invalid(
            "mount_flags are not supported; give mount options in the volume's o parameter \
             (Swarm: --opt o=...; Kubernetes: the StorageClass's parameters, not mountOptions)",
        ));
    }
    let mode = capability
        .access_mode
        .as_ref()
        .map_or(Mode::Unknown, |m| m.mode());
    if mode == Mode::Unknown {
        return Err(invalid("volume_capability has no access mode"));
    }
    Ok(())
}
