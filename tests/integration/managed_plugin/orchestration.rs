//! Where users reach for volumes besides `docker run`: a compose file from
//! examples/ with Debian's docker-compose, and a single-node swarm, both
//! through `docker service create --mount ...,volume-driver=...` and
//! `docker stack deploy` of examples/swarm-stack.yml.

use std::fs;
use std::process::Command;

use crate::support::cmd::{self, show};
use crate::support::compose::{example, Compose};
use crate::support::docker::{docker, docker_ok, volume_inspect, Cleanup, DOCKER_TIMEOUT};
use crate::support::mounts::poll_until;
use crate::support::sshd::Sshd;
use crate::support::{files_in as files, unique_name};

use super::fixture::{ManagedPlugin, T};
use super::sshfs_options;

#[test]
fn the_compose_example_runs_a_service_on_a_netfs_volume() {
    let mut plugin = ManagedPlugin::take(&[]);
    let sshd = Sshd::new();
    let key = plugin.install_key(&sshd);
    // Holds dockerd for the test; `down -v` removes the volume.
    let _cleanup = Cleanup::new();
    let project = unique_name("netfs-compose");
    // docker-compose names the volume <project>_<key in the file>.
    let volume = format!("{project}_data");
    let mut compose = Compose::new(
        project,
        &plugin.driver(),
        sshd.source(""),
        sshfs_options(&sshd, &key),
    );

    let visits = sshd.remote_dir().join("visits.txt");
    let up = ["up", "--exit-code-from", "app"];
    compose.run_ok(&up);
    let first = fs::read_to_string(&visits).expect("visits.txt on the remote");
    assert_eq!(first.lines().count(), 1, "{first}");
    let inspect = volume_inspect(&volume);
    assert_eq!(inspect["Driver"], plugin.driver(), "{inspect}");
    assert_eq!(inspect["Options"]["source"], sshd.source(""), "{inspect}");

    // A second `up` finds the volume as the file describes it.
    let out = compose.run_ok(&up);
    let second = fs::read_to_string(&visits).unwrap();
    assert_eq!(second.lines().count(), 2, "{second}");
    assert!(second.starts_with(&first), "{second}");
    assert!(out.contains(second.lines().last().unwrap()), "{out}");

    compose.run_ok(&["down", "-v"]);
    compose.down = true;
    let filter = format!("driver={}", plugin.driver());
    assert!(
        !docker_ok(&["volume", "ls", "-q", "-f", &filter]).contains(&volume),
        "`down -v` removed {volume}"
    );
    assert_eq!(fs::read_to_string(&visits).unwrap(), second);
}

/// A single-node swarm for one test: `docker swarm init` unless this
/// dockerd is already in one, and on drop the services and stacks it was
/// given removed (their containers gone) and the swarm left if it made it.
struct Swarm {
    initialized: bool,
    services: Vec<String>,
    stacks: Vec<String>,
}

impl Swarm {
    fn join() -> Swarm {
        let state = docker_ok(&["info", "-f", "{{.Swarm.LocalNodeState}}"]);
        let initialized = state.trim() != "active";
        if initialized {
            docker_ok(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
        }
        Swarm {
            initialized,
            services: Vec::new(),
            stacks: Vec::new(),
        }
    }

    fn service(&mut self, name: String) -> String {
        self.services.push(name.clone());
        name
    }

    fn stack(&mut self, name: String) -> String {
        self.stacks.push(name.clone());
        name
    }
}

/// Containers of a swarm service or stack, running or not.
fn task_containers(label: &str, value: &str) -> Vec<String> {
    let filter = format!("label={label}={value}");
    let out = docker(&["ps", "-aq", "-f", &filter]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

impl Drop for Swarm {
    fn drop(&mut self) {
        // No panics here: this runs while a failing test unwinds.
        for service in &self.services {
            let _ = docker(&["service", "rm", service]);
        }
        for stack in &self.stacks {
            let _ = docker(&["stack", "rm", stack]);
        }
        // The volumes can go only once no container uses them.
        poll_until(T, || {
            self.services
                .iter()
                .all(|s| task_containers("com.docker.swarm.service.name", s).is_empty())
                && self
                    .stacks
                    .iter()
                    .all(|s| task_containers("com.docker.stack.namespace", s).is_empty())
        });
        if self.initialized {
            let _ = docker(&["swarm", "leave", "--force"]);
        }
    }
}

#[test]
fn swarm_services_write_through_netfs() {
    let mut plugin = ManagedPlugin::take(&[]);
    let sshd = Sshd::new();
    let key = plugin.install_key(&sshd);
    let mut cleanup = Cleanup::new();
    // Dropped before the clean-up: the services go before their volumes.
    let mut swarm = Swarm::join();

    // docker service create with a netfs mount, two replicas.
    let service = swarm.service(unique_name("netfs-svc"));
    let volume = cleanup.volume(unique_name("mp-swarm"));
    let remote = sshd.remote_path("service");
    let mount = format!(
        "type=volume,source={volume},target=/data,volume-driver={},\
         volume-opt=source={},\"volume-opt=o={}\"",
        plugin.name(),
        sshd.source("service"),
        sshfs_options(&sshd, &key)
    );
    docker_ok(&[
        "service",
        "create",
        "--detach",
        "--no-resolve-image",
        "--name",
        &service,
        "--replicas",
        "2",
        "--stop-grace-period",
        "1s",
        "--env",
        "SLOT={{.Task.Slot}}",
        "--mount",
        &mount,
        crate::support::docker::TEST_IMAGE,
        "sh",
        "-c",
        "echo replica-$SLOT > /data/replica-$SLOT.txt && exec sleep 3600",
    ]);
    let want = [
        ("replica-1.txt".to_owned(), "replica-1\n".to_owned()),
        ("replica-2.txt".to_owned(), "replica-2\n".to_owned()),
    ];
    // A file shows on the remote when it is created, its line a moment later.
    plugin.wait("both replicas wrote their line to the remote", || {
        files(&remote) == want
    });
    let inspect = volume_inspect(&volume);
    assert_eq!(inspect["Driver"], plugin.driver(), "{inspect}");
    let ids = inspect["Status"]["mountIds"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(ids.len(), 2, "one mount per replica: {inspect}");

    // docker stack deploy of the example.
    let stack = swarm.stack(unique_name("netfs-stack"));
    let remote = sshd.remote_path("stack");
    cleanup.volume(format!("{stack}_data"));
    let mut deploy = Command::new("docker");
    deploy
        .args(["stack", "deploy", "--resolve-image", "never", "-c"])
        .arg(example("swarm-stack.yml"))
        .arg(&stack)
        .env("NETFS_DRIVER", plugin.driver())
        .env("NETFS_SOURCE", sshd.source("stack"))
        .env("NETFS_OPTIONS", sshfs_options(&sshd, &key));
    let out = cmd::run(&mut deploy, DOCKER_TIMEOUT);
    assert!(
        out.status.success(),
        "{}",
        show("docker stack deploy", &out)
    );
    plugin.wait("both replicas of the stack wrote to the remote", || {
        files(&remote).len() == 2
    });
    let names: Vec<String> = files(&remote).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [format!("{stack}_app-1.txt"), format!("{stack}_app-2.txt")]
    );
}
