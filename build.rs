//! Generates the CSI messages and gRPC glue from the spec's own
//! `proto/csi.proto`, compiled in Rust by protox (no `protoc` at build
//! time), and what `netfs --build-info` tells of the build. Every request
//! that carries `secrets` gets a `Debug` that prints the secrets' keys only,
//! written here beside the messages.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

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
    build_info();
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

/// What the binary was built from, as constants in `$OUT_DIR/build_info.rs`
/// (read by `src/build_info`). Works without git or outside a checkout (a
/// tarball, the plugin image's build stage): the revision is then
/// `NETFS_REVISION` if set, else unknown. The time is `SOURCE_DATE_EPOCH`
/// when set, so that a build can be repeated bit for bit.
fn build_info() {
    let dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    // The files the binary is built from: a change to them is "dirty", a
    // change elsewhere (docs, tests) is not.
    let inputs = ["src", "proto", "build.rs", "Cargo.toml", "Cargo.lock"];
    for input in inputs {
        println!("cargo:rerun-if-changed={input}");
    }
    println!("cargo:rerun-if-env-changed=NETFS_REVISION");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let (revision, dirty) = match std::env::var("NETFS_REVISION") {
        Ok(given) if !given.is_empty() => match given.strip_suffix("-dirty") {
            Some(commit) => (Some(commit.to_owned()), Some(true)),
            None => (Some(given), Some(false)),
        },
        _ => git_revision(&dir, &inputs),
    };
    let built_at = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    let rustc = output(Command::new(env("RUSTC")).arg("-V")).unwrap_or_else(|| "unknown".into());
    let dependencies = dependencies(&dir);

    let mut out = String::new();
    let _ = writeln!(out, "pub const REVISION: Option<&str> = {revision:?};");
    let _ = writeln!(out, "pub const DIRTY: Option<bool> = {dirty:?};");
    let _ = writeln!(out, "pub const BUILT_AT_EPOCH: u64 = {built_at};");
    let _ = writeln!(out, "pub const RUSTC: &str = {rustc:?};");
    let _ = writeln!(out, "pub const TARGET: &str = {:?};", env("TARGET"));
    let _ = writeln!(out, "pub const PROFILE: &str = {:?};", env("PROFILE"));
    let _ = writeln!(
        out,
        "pub const DEPENDENCIES: &[(&str, &str)] = &{dependencies:?};"
    );
    let path = PathBuf::from(env("OUT_DIR")).join("build_info.rs");
    std::fs::write(&path, out).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name} for build scripts"))
}

/// The commit checked out, and whether `inputs` differ from it; None where
/// git or the repository is missing. Cargo looks again when HEAD moves.
fn git_revision(dir: &Path, inputs: &[&str]) -> (Option<String>, Option<bool>) {
    let git = |args: &[&str]| output(Command::new("git").arg("-C").arg(dir).args(args));
    // Only a checkout of netfs itself: a tarball unpacked inside another
    // repository is not that repository's commit.
    let top = git(&["rev-parse", "--show-toplevel"]).and_then(|t| std::fs::canonicalize(t).ok());
    if top.is_none() || top != std::fs::canonicalize(dir).ok() {
        return (None, None);
    }
    let Some(commit) = git(&["rev-parse", "HEAD"]) else {
        return (None, None);
    };
    // HEAD, the branch it names, packed refs and the index: a commit or
    // checkout changes one of them. Only existing files: cargo runs the
    // script on every build for a path that is missing.
    let mut watched = vec!["HEAD".to_owned(), "index".into(), "packed-refs".into()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            let path = dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    let mut status = vec!["status", "--porcelain", "--"];
    status.extend(inputs);
    let dirty = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(&status)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| !o.stdout.is_empty());
    (Some(commit), dirty)
}

/// A command's stdout, trimmed, if it ran and succeeded.
fn output(command: &mut Command) -> Option<String> {
    let out = command.output().ok().filter(|o| o.status.success())?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// The direct (normal) dependencies named in Cargo.toml, each with the
/// version Cargo.lock resolved it to, sorted by name.
fn dependencies(dir: &Path) -> Vec<(String, String)> {
    let read = |file: &str| -> toml::Table {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        text.parse()
            .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
    };
    let manifest = read("Cargo.toml");
    let lock = read("Cargo.lock");
    let packages = lock
        .get("package")
        .and_then(|p| p.as_array())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let root = packages
        .iter()
        .find(|p| p.get("name").and_then(|n| n.as_str()) == Some(env("CARGO_PKG_NAME").as_str()));
    // The root's entries name a package as `name` or, when the lock holds
    // several versions of it, `name version`.
    let pinned: Vec<&str> = root
        .and_then(|r| r.get("dependencies"))
        .and_then(|d| d.as_array())
        .map(|d| d.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let mut found = Vec::new();
    let names = manifest
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|t| t.iter().collect::<Vec<_>>())
        .unwrap_or_default();
    for (key, spec) in names {
        // `foo = { package = "bar" }` depends on bar.
        let name = spec
            .get("package")
            .and_then(|p| p.as_str())
            .unwrap_or(key)
            .to_owned();
        let version = pinned
            .iter()
            .find_map(|entry| match entry.split_once(' ') {
                Some((n, v)) if n == name => Some(v.to_owned()),
                None if *entry == name => packages.iter().find_map(|p| {
                    (p.get("name").and_then(|n| n.as_str()) == Some(name.as_str()))
                        .then(|| p.get("version").and_then(|v| v.as_str()))
                        .flatten()
                        .map(str::to_owned)
                }),
                _ => None,
            })
            .unwrap_or_else(|| "unknown".into());
        found.push((name, version));
    }
    found.sort();
    found
}
