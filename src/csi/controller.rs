//! CSI Controller: a cluster volume is only a description (its options),
//! so CreateVolume checks it and hands it back as the volume's context,
//! which Swarm gives every node that stages it. Nothing is provisioned,
//! so DeleteVolume has nothing to delete.

use std::collections::BTreeMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::options::check_parameters;
use super::proto::*;
use super::{invalid, required, status};
use crate::driver::Driver;
use crate::name::VolumeName;

pub struct Controller {
    pub driver: Arc<Driver>,
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
        check_parameters(&req.parameters).map_err(|e| invalid(e.to_string()))?;
        let opts: BTreeMap<String, String> = req
            .parameters
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Errors name the volume; the nodes stage it under Swarm's volume
        // ID, so a name netfs could not take as a volume name is fine here.
        let shown = if VolumeName::parse(&req.name).is_ok() {
            req.name.as_str()
        } else {
            "cluster-volume"
        };
        self.driver.check_options(shown, &opts).map_err(status)?;
        // Same name and parameters give the same answer: idempotent.
        Ok(Response::new(CreateVolumeResponse {
            volume: Some(Volume {
                capacity_bytes: 0,
                volume_id: req.name,
                volume_context: req.parameters,
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

    async fn controller_get_capabilities(
        &self,
        _: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        let create_delete = ControllerServiceCapability {
            rpc: Some(Rpc {
                r#type: CREATE_DELETE_VOLUME,
            }),
        };
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities: vec![create_delete],
        }))
    }
}

/// Only file-system access, in any access mode: netfs mounts file
/// systems, and every mode maps to a mount (read-only ones at publish).
pub fn check_capability(capability: &VolumeCapability) -> Result<(), Status> {
    if capability.block.is_some() {
        return Err(invalid(
            "block access is not supported: netfs mounts file systems; create the volume with --type mount",
        ));
    }
    let Some(mount) = &capability.mount else {
        return Err(invalid(
            "volume_capability has no access type; netfs serves mount (--type mount)",
        ));
    };
    if !mount.mount_flags.is_empty() {
        return Err(invalid(
            "mount_flags are not supported; give mount options with --opt o=...",
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
