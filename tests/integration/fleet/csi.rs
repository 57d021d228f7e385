//! Swarm cluster volumes through netfs-csi on the fleet's Docker 28 swarm:
//! one volume for the whole swarm with its password in a Swarm secret, a
//! service of three replicas over three nodes writing through it, a node
//! stopped and back, and drain then removal leaving nothing behind.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::support::cmd::{self, show};
use crate::support::{files_in as files, unique_name};

use super::fixture::{fleet_sh, Fleet, FILES_IP, KEYS_ON_NODE, NODES};

/// The repository the CSI plugin is pushed as.
const CSI: &str = "netfs-csi";

static PUBLISHED: Mutex<Option<String>> = Mutex::new(None);

/// This tree's CSI plugin in the fleet's registry, pushed once per process.
pub(super) fn published() -> String {
    let mut published = PUBLISHED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(reference) = &*published {
        return reference.clone();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fleet.sh");
    let mut command = Command::new(script);
    command
        .args(["publish", "base"])
        .env("PUSH_NAME", CSI)
        .env("PLUGIN_CONFIG", "config-csi.json");
    let out = cmd::run(&mut command, Duration::from_secs(900));
    assert!(
        out.status.success(),
        "{}",
        show("fleet.sh publish (csi)", &out)
    );
    let reference = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();
    *published = Some(reference.clone());
    reference
}

/// Undoes what the test made in the swarm, in the order Swarm needs.
pub(super) struct Cleanup<'a> {
    pub fleet: &'a Fleet,
    pub plugin: String,
    pub service: String,
    pub volume: String,
    pub secret: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let manager = NODES[0];
        let f = self.fleet;
        let _ = f.docker(manager, &["service", "rm", &self.service]);
        let _ = f.docker(
            manager,
            &["volume", "update", "--availability", "drain", &self.volume],
        );
        crate::support::mounts::poll_until(super::fixture::T, || {
            let _ = f.docker(manager, &["volume", "rm", "-f", &self.volume]);
            !cluster_volumes(f).contains(&self.volume)
        });
        let _ = f.docker(manager, &["secret", "rm", &self.secret]);
        for node in NODES {
            let _ = f.docker(node, &["plugin", "rm", "-f", &self.plugin]);
        }
    }
}

pub(super) fn cluster_volumes(fleet: &Fleet) -> String {
    let out = fleet.docker(NODES[0], &["volume", "ls", "--cluster", "-q"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What runs or is mounted by netfs-csi on `node`: sshfs processes, FUSE
/// mounts in any mount namespace, and entries under the plugin's
/// staging and publish roots.
pub(super) fn leftovers(node: &str) -> String {
    let script = "pgrep -a sshfs; cat /proc/[0-9]*/mountinfo 2>/dev/null | grep -F fuse.sshfs | sort -u; \
                  for d in /var/lib/docker/plugins/*/rootfs/data/staged /var/lib/docker/plugins/*/rootfs/data/published; \
                  do [ -d \"$d\" ] && ls -A \"$d\" | sed \"s|^|$d/|\"; done; true";
    fleet_sh(&["exec", node, "sh", "-c", script])
}

#[test]
fn a_cluster_volume_over_three_nodes_with_its_password_in_a_swarm_secret() {
    let fleet = Fleet::take();
    let manager = NODES[0];
    let lost = NODES[2];
    let reference = published();
    let cleanup = Cleanup {
        fleet: &fleet,
        plugin: install(&fleet, &reference),
        service: fleet.service(unique_name("netfs-csi-svc")),
        volume: unique_name("csi-shared"),
        secret: unique_name("netfs-pw"),
    };
    let csi = cleanup.plugin.as_str();
    let (service, volume, secret) = (&cleanup.service, &cleanup.volume, &cleanup.secret);

    cluster_volume(&fleet, csi, volume, secret);
    let password = fleet.password();
    let dir = unique_name("csi");
    let mount = format!("type=cluster,src={volume},dst=/data");
    let script = format!(
        "mkdir -p /data/{dir} && echo $SLOT on $NODE > /data/{dir}/$SLOT-$NODE.txt && exec sleep 3600"
    );
    fleet.spread_service(service, &mount, &script);
    let remote = fleet.remote("netfs").join(&dir);
    fleet.wait(manager, "three replicas wrote through the volume", || {
        files(&remote).len() == 3
    });
    let before = files(&remote);
    let on = Fleet::replica_nodes(&before);
    assert_eq!(on, NODES, "one replica per node: {before:?}");
    for (what, names) in [
        (
            fleet.docker_ok(manager, &["volume", "inspect", volume]),
            csi,
        ),
        (
            fleet.docker_ok(manager, &["service", "inspect", service]),
            volume.as_str(),
        ),
    ] {
        assert!(!what.contains(&password), "the password shows: {what}");
        assert!(what.contains(names), "{names} in {what}");
    }

    // A node stops: its replica runs elsewhere and writes again.
    let lost_slot = Fleet::slot_on(&before, lost);
    fleet.stop_node(lost);
    fleet.wait(
        manager,
        &format!("slot {lost_slot} writes again elsewhere"),
        || Fleet::moved(&files(&remote), &lost_slot, lost).is_some(),
    );
    let after = files(&remote);
    for file in &before {
        assert!(after.contains(file), "{file:?} kept: {after:?}");
    }
    // It returns with nothing staged: its plugin starts afresh.
    fleet.start_node(lost);
    fleet.wait(lost, &format!("{csi} is enabled on {lost}"), || {
        fleet
            .docker(lost, &["plugin", "inspect", "-f", "{{.Enabled}}", csi])
            .stdout
            .starts_with(b"true")
    });
    // Swarm may give the returning node its old task's volume again
    // before it releases it; once no task of the service runs there,
    // nothing of the volume may be left.
    let mut seen = String::new();
    let mut tasks = 0;
    let settled = crate::support::mounts::poll_until(super::fixture::T, || {
        tasks = fleet.tasks_on(lost, service).len();
        seen = leftovers(lost);
        tasks == 0 && seen.trim().is_empty()
    });
    crate::support::report(
        "fleet",
        &format!("csi: after {lost} returned: nothing staged: {settled}; tasks there: {tasks}"),
    );
    assert!(
        settled || tasks > 0,
        "{lost} returned with no task of {service} but keeps: {}",
        seen.trim()
    );

    // Drain stops the tasks and unpublishes; rm leaves nothing anywhere.
    fleet.docker_ok(
        manager,
        &["volume", "update", "--availability", "drain", volume],
    );
    fleet.wait(manager, "drain stopped every task", || {
        NODES
            .iter()
            .all(|node| fleet.tasks_on(node, service).is_empty())
    });
    fleet.docker_ok(manager, &["service", "rm", service]);
    fleet.wait(manager, "the volume is removed", || {
        let _ = fleet.docker(manager, &["volume", "rm", volume]);
        !cluster_volumes(&fleet).contains(volume.as_str())
    });
    for node in NODES {
        fleet.wait(
            node,
            &format!("nothing of {volume} is left on {node}"),
            || leftovers(node).trim().is_empty(),
        );
    }
    assert_eq!(
        files(&remote).len(),
        after.len(),
        "nothing lost on the remote"
    );
    drop(cleanup);
}

/// Installs this tree's CSI plugin on every node under a name of its own
/// (a node's dockerd keeps its connection to a CSI plugin by name, and
/// would keep dialling the socket of one removed by an earlier run:
/// docs/csi.md, Limits), and waits until the swarm knows it everywhere.
pub(super) fn install(fleet: &Fleet, reference: &str) -> String {
    let manager = NODES[0];
    let plugin = unique_name(CSI);
    let csi = plugin.as_str();
    for node in NODES {
        let keys = format!("sshkeys.source={KEYS_ON_NODE}");
        fleet.docker_ok(
            node,
            &[
                "plugin",
                "install",
                "--grant-all-permissions",
                "--alias",
                csi,
                reference,
                &keys,
                "LOG_LEVEL=debug",
            ],
        );
    }
    // Every node reports the plugin to the managers before it gets tasks.
    for node in NODES {
        fleet.wait(manager, &format!("the swarm knows {csi} on {node}"), || {
            let out = fleet.docker(
                manager,
                &[
                    "node",
                    "inspect",
                    "-f",
                    "{{json .Description.CSIInfo}}",
                    node,
                ],
            );
            String::from_utf8_lossy(&out.stdout).contains(csi)
        });
    }
    plugin
}

/// Creates the cluster volume `volume` of plugin `csi` on the fleet's sshd
/// host, its password in the Swarm secret `secret`.
pub(super) fn cluster_volume(fleet: &Fleet, csi: &str, volume: &str, secret: &str) {
    let manager = NODES[0];
    let password = fleet.password();
    let out = fleet.docker_with(
        manager,
        &[],
        Some(password.as_bytes()),
        &["secret", "create", secret, "-"],
    );
    assert!(
        out.status.success(),
        "{}",
        show("docker secret create", &out)
    );
    // A cluster volume names its secrets by ID, as `docker secret create` prints it.
    let secret_id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let source = format!("netfs@{FILES_IP}:/srv/netfs");
    let secret_opt = format!("password={secret_id}");
    let source_opt = format!("source={source}");
    fleet.docker_ok(
        manager,
        &[
            "volume",
            "create",
            "--driver",
            csi,
            "--type",
            "mount",
            "--scope",
            "multi",
            "--sharing",
            "all",
            "--opt",
            &source_opt,
            "--opt",
            "o=PubkeyAuthentication=no,PreferredAuthentications=password",
            "--secret",
            &secret_opt,
            volume,
        ],
    );
}
