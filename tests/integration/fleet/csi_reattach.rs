//! A running task keeps its cluster volume across a restart of netfs-csi
//! on its node: Swarm stages and publishes nothing again, so the restarted
//! plugin restores its stage from its state and puts the new mount into
//! the task's container in place of the dead one (docs/csi.md).

use std::time::{Duration, Instant};

use crate::support::mounts::poll_until;
use crate::support::unique_name;

use super::csi::{cluster_volume, install, leftovers, published, Cleanup};
use super::fixture::{Fleet, NODES, T};

/// `docker exec` in `container` on `node`: its exit status and output.
fn exec(fleet: &Fleet, node: &str, container: &str, script: &str) -> (bool, String) {
    let out = fleet.docker(node, &["exec", container, "sh", "-c", script]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_owned())
}

#[test]
fn a_running_task_reads_and_writes_again_after_its_node_plugin_restarts() {
    let fleet = Fleet::take();
    let manager = NODES[0];
    let node = NODES[1];
    let reference = published();
    let cleanup = Cleanup {
        fleet: &fleet,
        plugin: install(&fleet, &reference),
        service: fleet.service(unique_name("netfs-csi-task")),
        volume: unique_name("csi-task"),
        secret: unique_name("netfs-pw"),
    };
    let csi = cleanup.plugin.as_str();
    let (service, volume) = (&cleanup.service, &cleanup.volume);
    cluster_volume(&fleet, csi, volume, &cleanup.secret);

    let dir = unique_name("csi-reattach");
    let mount = format!("type=cluster,src={volume},dst=/data");
    let constraint = format!("node.hostname=={node}");
    let script =
        format!("mkdir -p /data/{dir} && echo first > /data/{dir}/a.txt && exec sleep 3600");
    fleet.docker_ok(
        manager,
        &[
            "service",
            "create",
            "--detach",
            "--no-resolve-image",
            "--name",
            service,
            "--replicas",
            "1",
            "--constraint",
            &constraint,
            "--stop-grace-period",
            "1s",
            "--mount",
            &mount,
            crate::support::docker::TEST_IMAGE,
            "sh",
            "-c",
            &script,
        ],
    );
    let remote = fleet.remote("netfs").join(&dir);
    fleet.wait(node, "the task wrote through the volume", || {
        std::fs::read_to_string(remote.join("a.txt")).is_ok_and(|t| t == "first\n")
    });
    let tasks = fleet.tasks_on(node, service);
    assert_eq!(tasks.len(), 1, "one task on {node}: {tasks:?}");
    let task = tasks[0].clone();
    let started = |c: &str| {
        fleet.docker_ok(
            node,
            &[
                "inspect",
                "-f",
                "{{.Id}} {{.State.StartedAt}} {{.RestartCount}}",
                c,
            ],
        )
    };
    let before = started(&task);
    assert_eq!(
        exec(&fleet, node, &task, &format!("cat /data/{dir}/a.txt")),
        (true, "first".to_owned())
    );

    // The plugin restarts on the task's node: its sshfs goes with it.
    fleet.docker_ok(node, &["plugin", "disable", "-f", csi]);
    let (ok, dead) = exec(&fleet, node, &task, &format!("cat /data/{dir}/a.txt"));
    assert!(!ok, "the mount is dead while the plugin is down: {dead}");
    crate::support::report(
        "fleet",
        &format!("csi re-attach: while disabled the task reads: {dead}"),
    );
    let enabling = Instant::now();
    fleet.docker_ok(node, &["plugin", "enable", csi]);
    let enabled = enabling.elapsed();

    // The same container, still running, reads the volume again ...
    let mut last = String::new();
    let read = poll_until(T, || {
        let (ok, text) = exec(&fleet, node, &task, &format!("cat /data/{dir}/a.txt"));
        last = text;
        ok && last == "first"
    });
    let took = enabling.elapsed();
    assert!(
        read,
        "the running task does not read its volume again after {T:?}: {last}\n{}",
        fleet.log_tail(node)
    );
    // ... and a write from it reaches the remote.
    let (ok, text) = exec(
        &fleet,
        node,
        &task,
        &format!("echo second > /data/{dir}/b.txt"),
    );
    assert!(ok, "write from the task: {text}");
    fleet.wait(node, "the task's write reached the remote", || {
        std::fs::read_to_string(remote.join("b.txt")).is_ok_and(|t| t == "second\n")
    });
    assert_eq!(
        started(&task),
        before,
        "the task's container was not restarted"
    );
    assert_eq!(fleet.tasks_on(node, service), [task], "the same task runs");
    crate::support::report(
        "fleet",
        &format!(
            "csi re-attach: enable returned after {:.2} s; the running task read its volume \
             {:.2} s after enable began",
            enabled.as_secs_f64(),
            took.as_secs_f64()
        ),
    );

    // Swarm's release goes to the restored stage: nothing is left.
    fleet.docker_ok(manager, &["service", "rm", service]);
    fleet.wait(node, "the task is gone", || {
        fleet.tasks_on(node, service).is_empty()
    });
    let mut seen = String::new();
    let clean = poll_until(Duration::from_secs(60), || {
        seen = leftovers(node);
        seen.trim().is_empty()
    });
    assert!(
        clean,
        "{node} keeps after the service went: {}",
        seen.trim()
    );
    drop(cleanup);
}
