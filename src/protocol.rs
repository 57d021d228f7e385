//! The Docker volume plugin protocol's JSON shapes (PascalCase fields).
//! Requests are strict about types; unknown fields are ignored, as dockerd
//! may add some.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.1+json";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateRequest {
    pub name: String,
    #[serde(default)]
    pub opts: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NameRequest {
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountRequest {
    pub name: String,
    #[serde(rename = "ID")]
    pub id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ActivateResponse {
    pub implements: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountpointResponse {
    pub mountpoint: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub name: String,
    pub mountpoint: String,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<crate::driver::VolumeStatus>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetResponse {
    pub volume: Volume,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListResponse {
    pub volumes: Vec<Volume>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CapabilitiesResponse {
    pub capabilities: Capabilities,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Capabilities {
    pub scope: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorResponse {
    pub err: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Shapes as in Docker's volume plugin documentation.
    #[test]
    fn requests_parse_documented_examples() {
        let c: CreateRequest =
            serde_json::from_value(json!({"Name": "v", "Opts": {"source": "h:/x"}})).unwrap();
        assert_eq!(c.name, "v");
        assert_eq!(c.opts.unwrap()["source"], "h:/x");
        let c: CreateRequest = serde_json::from_value(json!({"Name": "v", "Opts": null})).unwrap();
        assert!(c.opts.is_none());
        let m: MountRequest = serde_json::from_value(json!({"Name": "v", "ID": "abc"})).unwrap();
        assert_eq!((m.name.as_str(), m.id.as_str()), ("v", "abc"));
        assert!(serde_json::from_value::<NameRequest>(json!({"Name": 3})).is_err());
        assert!(
            serde_json::from_value::<CreateRequest>(json!({"Name": "v", "Opts": {"o": 1}}))
                .is_err()
        );
    }

    #[test]
    fn responses_match_documented_shapes() {
        let a = ActivateResponse {
            implements: vec!["VolumeDriver"],
        };
        assert_eq!(
            serde_json::to_value(a).unwrap(),
            json!({"Implements": ["VolumeDriver"]})
        );
        let m = MountpointResponse {
            mountpoint: "/m/v".into(),
        };
        assert_eq!(
            serde_json::to_value(m).unwrap(),
            json!({"Mountpoint": "/m/v"})
        );
        let v = Volume {
            name: "v".into(),
            mountpoint: "/m/v".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            status: None,
        };
        assert_eq!(
            serde_json::to_value(GetResponse { volume: v.clone() }).unwrap(),
            json!({"Volume": {"Name": "v", "Mountpoint": "/m/v", "CreatedAt": "2026-01-01T00:00:00Z"}})
        );
        assert_eq!(
            serde_json::to_value(ListResponse { volumes: vec![v] }).unwrap()["Volumes"][0]["Name"],
            "v"
        );
        let c = CapabilitiesResponse {
            capabilities: Capabilities { scope: "local" },
        };
        assert_eq!(
            serde_json::to_value(c).unwrap(),
            json!({"Capabilities": {"Scope": "local"}})
        );
        let e = ErrorResponse { err: "boom".into() };
        assert_eq!(serde_json::to_value(e).unwrap(), json!({"Err": "boom"}));
    }
}
