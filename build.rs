//! Generates the gRPC glue (servers and clients) of the CSI services that
//! netfs serves. The messages are declared by hand in `src/csi/proto.rs`
//! with the spec's field numbers, so the build needs no `protoc`.

use tonic_build::manual::{Builder, Method, Service};

const CODEC: &str = "tonic_prost::ProstCodec";

fn service(name: &str, methods: &[&str]) -> Service {
    let mut builder = Service::builder().name(name).package("csi.v1");
    for method in methods {
        builder = builder.method(
            Method::builder()
                .name(snake(method))
                .route_name(*method)
                .input_type(format!("crate::csi::proto::{method}Request"))
                .output_type(format!("crate::csi::proto::{method}Response"))
                .codec_path(CODEC)
                .build(),
        );
    }
    builder.build()
}

fn snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn main() {
    let services = [
        service(
            "Identity",
            &["GetPluginInfo", "GetPluginCapabilities", "Probe"],
        ),
        service(
            "Controller",
            &["CreateVolume", "DeleteVolume", "ControllerGetCapabilities"],
        ),
        service(
            "Node",
            &[
                "NodeStageVolume",
                "NodeUnstageVolume",
                "NodePublishVolume",
                "NodeUnpublishVolume",
                "NodeGetCapabilities",
                "NodeGetInfo",
            ],
        ),
    ];
    Builder::new().build_transport(false).compile(&services);
    println!("cargo:rerun-if-changed=build.rs");
}
