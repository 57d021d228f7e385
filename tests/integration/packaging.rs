//! Building needs nothing but docker on the host: scripts/base-image.sh,
//! which makes the Debian image the Dockerfile starts FROM, runs
//! debootstrap in a container when the host has none (forced here with
//! IN_CONTAINER=1), into a cache and an image name of the test's own.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::cmd;
use crate::support::docker::{docker, require_docker};

/// debian:trixie-slim, which both tests start from, made by the script
/// that every build runs first (idempotent, and locked against a build
/// beside it): neither test counts on another having made it.
fn ensure_base_image() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/base-image.sh");
    let out = cmd::run(
        Command::new(&script).arg("trixie"),
        Duration::from_secs(900),
    );
    assert!(
        out.status.success(),
        "{}",
        cmd::show("base-image.sh trixie", &out)
    );
}

#[test]
fn the_base_image_is_bootstrapped_in_a_container_when_the_host_has_no_debootstrap() {
    require_docker();
    ensure_base_image();
    let cache = tempfile::Builder::new()
        .prefix("netfs-ops-base-")
        .tempdir()
        .expect("temp dir");
    let repo = format!("netfs-ops-base-{}", std::process::id());
    let image = format!("{repo}:trixie-slim");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/base-image.sh");
    let started = Instant::now();
    let out = cmd::run(
        Command::new(&script)
            .arg("trixie")
            .env("NETFS_CACHE", cache.path())
            .env("BASE_REPO", &repo)
            .env("IN_CONTAINER", "1")
            .env("BOOTSTRAP_IMAGE", "debian:trixie-slim"),
        Duration::from_secs(900),
    );
    let took = started.elapsed();
    let version = docker(&["run", "--rm", &image, "cat", "/etc/debian_version"]);
    let apt = docker(&["run", "--rm", &image, "cat", "/etc/apt/sources.list"]);
    let _ = docker(&["rmi", "-f", &image]);
    // The tree is root's, written by the container; tempdir removes it.
    assert!(out.status.success(), "{}", cmd::show("base-image.sh", &out));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("running it in a container of debian:trixie-slim"),
        "{log}"
    );
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    assert!(
        version.starts_with("13"),
        "trixie is Debian 13: {version:?}"
    );
    assert!(
        String::from_utf8_lossy(&apt.stdout).contains("trixie-security"),
        "the slim image's sources"
    );
    eprintln!(
        "netfs-suite base image in a container: debootstrap + import in {:.0} s",
        took.as_secs_f64()
    );
}

/// scripts/plugin.sh run where there is nothing but bash, coreutils and
/// the docker CLI (a Debian base container, this dockerd's socket and CLI):
/// no make, cargo, debootstrap or setup.sh, and an apt-get that records
/// any call. It builds the plugin's root filesystem through dockerd.
#[test]
fn plugin_sh_builds_the_plugin_with_nothing_but_docker_on_the_build_host() {
    require_docker();
    ensure_base_image();
    let top = env!("CARGO_MANIFEST_DIR");
    let script = r#"
        set -eu
        printf '#!/bin/sh\ntouch /tmp/apt-was-called\nexit 1\n' > /usr/local/bin/apt-get
        chmod +x /usr/local/bin/apt-get
        for tool in make cargo rustc debootstrap sshfs; do
            if command -v "$tool" >/dev/null; then echo "build host has $tool"; exit 1; fi
        done
        PLUGIN_NAME=netfs-ops-onlydocker PLUGIN_DIR_ONLY=1 PLUGIN_BUILD_DIR=/tmp/build \
            bash /src/scripts/plugin.sh
        test ! -e /tmp/apt-was-called
        test -x /tmp/build/plugin/rootfs/usr/bin/netfs
        test -x /tmp/build/plugin/rootfs/usr/bin/sshfs
        grep -q '"propagatedMount"' /tmp/build/plugin/config.json
        echo built-with-only-docker
    "#;
    let started = Instant::now();
    let out = cmd::run(
        Command::new("docker").args([
            "run",
            "--rm",
            "--network",
            "host",
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            "-v",
            "/usr/bin/docker:/usr/bin/docker:ro",
            "-v",
            "/var/cache/netfs:/var/cache/netfs",
            // The certificates this host trusts (a proxy's), as plugin.sh
            // passes them to the build stage.
            "-v",
            "/usr/local/share/ca-certificates:/usr/local/share/ca-certificates:ro",
            "-v",
            &format!("{top}:/src:ro"),
            "debian:trixie-slim",
            "bash",
            "-c",
            script,
        ]),
        Duration::from_secs(3600),
    );
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("built-with-only-docker"),
        "{}",
        cmd::show("plugin.sh in a docker-only container", &out)
    );
    eprintln!(
        "netfs-suite plugin.sh with only docker: {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
