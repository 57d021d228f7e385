//! Orchestrators of Docker 28 on the fleet: Compose v2 with the example
//! compose file, a service spread over the three nodes of the swarm that
//! loses one of them, and `docker stack deploy` of the example stack. The
//! examples/ files are used as they are, read by the nodes' CLI on stdin.

use std::fs;
use std::path::Path;

use crate::support::{files_in as files, unique_name};

use super::fixture::{Fleet, NODES};

fn example(file: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(file);
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn compose_v2_up_down_up_with_the_example() {
    let fleet = Fleet::take();
    let node = NODES[0];
    let dir = unique_name("compose");
    let remote = fleet.remote(&dir);
    let project = unique_name("netfs-compose");
    let volume = fleet.volume(node, format!("{project}_data"));
    let file = example("docker-compose.yml");
    let env = [("NETFS_SOURCE", fleet.source(&dir))];
    let compose = |args: &[&str]| {
        let mut all = vec!["compose", "-p", &project, "-f", "-"];
        all.extend(args);
        let out = fleet.docker_with(node, &env, Some(&file), &all);
        assert!(
            out.status.success(),
            "docker compose {}: {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            fleet.log_tail(node)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let visits = remote.join("visits.txt");
    let up = ["up", "--exit-code-from", "app"];

    compose(&up);
    let first = fs::read_to_string(&visits).expect("visits.txt on the remote");
    assert_eq!(first.lines().count(), 1, "{first}");
    let inspect = fleet.volume_inspect(node, &volume);
    assert_eq!(inspect["Driver"], "netfs:latest", "{inspect}");
    assert_eq!(
        inspect["Options"]["source"],
        fleet.source(&dir),
        "{inspect}"
    );

    // `down` keeps the volume; the second `up` finds it as the file says.
    compose(&["down"]);
    assert!(fleet.volume_inspect(node, &volume)["Name"] == volume.as_str());
    let out = compose(&up);
    let second = fs::read_to_string(&visits).unwrap();
    assert_eq!(second.lines().count(), 2, "{second}");
    assert!(second.starts_with(&first), "{second}");
    assert!(out.contains(second.lines().last().unwrap()), "{out}");

    compose(&["down", "-v"]);
    let listed = fleet.docker_ok(node, &["volume", "ls", "-q"]);
    assert!(!listed.contains(&volume), "`down -v` removed {volume}");
    assert_eq!(fs::read_to_string(&visits).unwrap(), second);
}

#[test]
fn a_swarm_service_on_three_nodes_outlives_a_stopped_node() {
    let fleet = Fleet::take();
    let manager = NODES[0];
    let lost = NODES[2];
    let dir = unique_name("swarm");
    let remote = fleet.remote(&dir);
    let service = fleet.service(unique_name("netfs-svc"));
    let volume = unique_name("fl-swarm");
    for node in NODES {
        fleet.volume(node, volume.clone());
    }
    fleet.await_plugin_in_swarm();
    let mount = format!(
        "type=volume,source={volume},target=/data,volume-driver=netfs,volume-opt=source={}",
        fleet.source(&dir)
    );
    fleet.spread_service(
        &service,
        &mount,
        "echo $SLOT on $NODE > /data/$SLOT-$NODE.txt && exec sleep 3600",
    );
    // One replica on each node, each writing its file through its node's netfs.
    fleet.wait(manager, "three replicas wrote their lines", || {
        let found = files(&remote);
        found.len() == 3 && found.iter().all(|(_, text)| text.ends_with('\n'))
    });
    let before = files(&remote);
    let on = Fleet::replica_nodes(&before);
    assert_eq!(on, NODES, "one replica per node: {before:?}");
    for node in NODES {
        assert_eq!(fleet.tasks_on(node, &service).len(), 1, "{node}");
        assert_eq!(fleet.mounted(node, &volume)["backend"], "sshfs");
    }
    let lost_slot = Fleet::slot_on(&before, lost);

    // The node stops: swarm marks it down and runs its task elsewhere.
    fleet.stop_node(lost);
    let restarted = std::cell::RefCell::new(String::new());
    fleet.wait(
        manager,
        &format!("slot {lost_slot} runs again on another node"),
        || {
            let found = files(&remote);
            match Fleet::moved(&found, &lost_slot, lost) {
                Some(name) => {
                    *restarted.borrow_mut() = name.to_owned();
                    true
                }
                None => false,
            }
        },
    );
    let after = files(&remote);
    for file in &before {
        assert!(
            after.contains(file),
            "{file:?} kept on the remote: {after:?}"
        );
    }
    assert_eq!(after.len(), 4, "{after:?}");

    // The node returns: its volume is mounted again by its own netfs.
    fleet.start_node(lost);
    let status = fleet.mounted(lost, &volume);
    assert_eq!(status["backend"], "sshfs", "{status}");
    let seen = fleet.run(lost, &volume, "ls /data");
    for (name, _) in &after {
        assert!(seen.contains(name.as_str()), "{lost} sees {name}: {seen}");
    }
    println!("rescheduled as {}", restarted.borrow());
}

#[test]
fn stack_deploy_of_the_example() {
    let fleet = Fleet::take();
    let manager = NODES[0];
    let dir = unique_name("stack");
    let remote = fleet.remote(&dir);
    let stack = fleet.stack(unique_name("netfs-stack"));
    for node in NODES {
        fleet.volume(node, format!("{stack}_data"));
    }
    fleet.await_plugin_in_swarm();
    let file = example("swarm-stack.yml");
    let env = [("NETFS_SOURCE", fleet.source(&dir))];
    let out = fleet.docker_with(
        manager,
        &env,
        Some(&file),
        &[
            "stack",
            "deploy",
            "--resolve-image",
            "never",
            "--detach=true",
            "-c",
            "-",
            &stack,
        ],
    );
    assert!(
        out.status.success(),
        "docker stack deploy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fleet.wait(
        manager,
        "both replicas of the stack wrote to the remote",
        || files(&remote).len() == 2,
    );
    let names: Vec<String> = files(&remote).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [format!("{stack}_app-1.txt"), format!("{stack}_app-2.txt")]
    );
}
