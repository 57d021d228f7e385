//! Generates the CSI messages and gRPC glue from the spec's own
//! `proto/csi.proto`, compiled in Rust by protox (no `protoc` at build
//! time). Every request that carries `secrets` gets a `Debug` that prints
//! the secrets' keys only, written here beside the messages.

use std::fmt::Write as _;
use std::path::PathBuf;

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

const PROTO: &str = "proto/csi.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    println!("cargo:rerun-if-changed=build.rs");
    let fds = protox::compile([PROTO], ["proto"])?;
    let with_secrets = messages_with_secrets(&fds);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("csi_debug.rs"), debug_impls(&with_secrets))?;
    tonic_prost_build::configure()
        .build_transport(false)
        // The calls netfs does not serve answer UNIMPLEMENTED.
        .generate_default_stubs(true)
        .skip_debug(with_secrets.iter().map(|m| format!(".csi.v1.{}", m.name())))
        .compile_fds(fds)?;
    Ok(())
}

/// The top-level messages of package csi.v1 with a `secrets` field (the
/// spec marks each of them `csi_secret`).
fn messages_with_secrets(fds: &FileDescriptorSet) -> Vec<DescriptorProto> {
    fds.file
        .iter()
        .filter(|f| f.package() == "csi.v1")
        .flat_map(|f| f.message_type.iter())
        .filter(|m| m.field.iter().any(|f| f.name() == "secrets"))
        .cloned()
        .collect()
}

/// `Debug` for each message: its plain scalar fields, then its secrets'
/// keys, sorted.
fn debug_impls(messages: &[DescriptorProto]) -> String {
    let mut code = String::new();
    for message in messages {
        let name = message.name();
        let _ = writeln!(
            code,
            "impl ::std::fmt::Debug for {name} {{\n    \
             fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {{\n        \
             let mut keys: Vec<&String> = self.secrets.keys().collect();\n        \
             keys.sort();\n        \
             f.debug_struct(\"{name}\")"
        );
        for field in &message.field {
            let scalar = matches!(field.r#type(), Type::String | Type::Bool | Type::Int64);
            if scalar && field.label() != Label::Repeated && field.oneof_index.is_none() {
                let _ = writeln!(code, "            .field(\"{0}\", &self.{0})", field.name());
            }
        }
        let _ = writeln!(
            code,
            "            .field(\"secrets\", &keys)\n            \
             .finish_non_exhaustive()\n    }}\n}}"
        );
    }
    code
}
