//! The plugin built where an operator builds it: on a Docker 28 node with
//! nothing installed but Docker (`scripts/fleet.sh build`), pushed to the
//! fleet's registry from there, and installed from it on another node.

use std::fs;
use std::time::Instant;

use super::fixture::{self, Fleet, INSTALL_SETTINGS, NODES, REGISTRY};
use crate::support::docker;
use crate::support::unique_name;

#[test]
fn a_node_with_nothing_but_docker_builds_and_pushes_the_plugin_another_node_installs() {
    let fleet = Fleet::take();
    // node1 has Docker 28 and none of what a build box would have.
    let found = fixture::fleet_sh(&[
        "exec",
        "node1",
        "sh",
        "-c",
        "for t in make git cargo rustc python3 pip debootstrap sshfs; do \
             command -v $t >/dev/null && echo has $t; done; \
         docker version -f '{{.Server.Version}}'",
    ]);
    assert!(
        found.trim().starts_with("28.") && !found.contains("has "),
        "node1: {found}"
    );

    let started = Instant::now();
    let tag = unique_name("node-built");
    let out = fixture::fleet_sh(&["build", &tag]);
    let reference = out.lines().last().unwrap_or_default().trim();
    assert_eq!(reference, format!("{REGISTRY}/netfs:{tag}"), "{out}");
    crate::support::report(
        "fleet",
        &format!(
            "node1 built and pushed the plugin with only Docker in {:.0} s",
            started.elapsed().as_secs_f64()
        ),
    );

    // The build's way out is gone with it: no proxy, no default route.
    assert!(
        !docker::docker(&["container", "inspect", "netfs-fleet-proxy"])
            .status
            .success(),
        "the build proxy outlived the build"
    );
    for member in NODES.iter().chain(&["files", "registry"]) {
        let routes = fixture::fleet_sh(&["exec", member, "ip", "route"]);
        assert!(!routes.contains("default"), "{member}: {routes}");
    }

    // node2 installs what node1 pushed, and it serves a volume.
    let node = "node2";
    fleet.reinstall(node, reference, INSTALL_SETTINGS);
    let inspect = fleet.plugin_inspect(node);
    assert_eq!(inspect["PluginReference"], reference, "{inspect}");
    assert_eq!(inspect["Enabled"], true, "{inspect}");
    let dir = unique_name("node-built");
    let remote = fleet.remote(&dir);
    let volume = fleet.volume(node, unique_name("fl-built"));
    fleet.create(node, &volume, &[("source", &fleet.source(&dir))]);
    let read = fleet.run(
        node,
        &volume,
        "echo built-on-node1 > /data/hello.txt && cat /data/hello.txt",
    );
    assert_eq!(read.trim(), "built-on-node1");
    assert_eq!(
        fs::read_to_string(remote.join("hello.txt")).unwrap(),
        "built-on-node1\n"
    );
}
