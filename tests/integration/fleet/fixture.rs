//! The fleet of scripts/fleet.sh as a test fixture: three Docker 28 nodes
//! in a swarm, an sshd test host (`files`) and a registry, on a network of
//! their own. A test takes the fleet for its whole length (one test at a
//! time on this machine), with the plugin published to the registry and
//! installed on every node as `netfs`, and gives back what it made there.

use std::cell::RefCell;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use nix::fcntl::Flock;
use serde_json::Value;

use crate::support::cmd::{self, show};
use crate::support::docker::{require_docker, Cleanup, DOCKER_TIMEOUT};
use crate::support::mounts::poll_until;

pub use crate::managed_plugin::fixture::mount_source;

/// The fleet's members that run dockerd, node1 the swarm's manager.
pub const NODES: [&str; 3] = ["node1", "node2", "node3"];
/// The fleet's registry, which the nodes list in insecure-registries.
pub const REGISTRY: &str = "10.231.0.10:5000";
/// The sshd test host on the fleet's network.
pub const FILES_IP: &str = "10.231.0.11";
/// Host directory of the fleet's data (FLEET_DIR of scripts/fleet.sh).
const FLEET_DIR: &str = "/var/lib/netfs-fleet";
/// What the plugin on a node sees of the fleet's keys (its sshkeys mount).
pub const KEYS_ON_NODE: &str = "/etc/netfs-fleet/keys";
/// One fleet test at a time across test processes.
const LOCK: &str = "/run/netfs-test/fleet.lock";
const LOCK_TIMEOUT: Duration = Duration::from_secs(1800);
/// The tag every test starts from; the upgrade test publishes another.
pub const BASE_TAG: &str = "base";
/// The name every node knows the plugin by (`--alias`), as in the docs.
pub const ALIAS: &str = "netfs";

/// Settings given at install time, on every node.
pub const INSTALL_SETTINGS: &[&str] = &[
    "sshkeys.source=/etc/netfs-fleet/keys",
    // The fleet's rclone.conf is beside its keys (read-only is enough: its
    // remote has no token to refresh).
    "RCLONE_CONFIG=/root/.ssh/rclone.conf",
    "LOG_LEVEL=debug",
    "DENY_OPTIONS=ssh_command,ProxyCommand,LocalCommand,PermitLocalCommand",
];

/// Long enough for a mount, a plugin start and a swarm task to start.
pub const T: Duration = Duration::from_secs(90);

static IN_PROCESS: Mutex<()> = Mutex::new(());
/// The base tag's reference, and the registry container it was pushed to.
static PUBLISHED: Mutex<Option<(String, String)>> = Mutex::new(None);

pub struct Fleet {
    /// What the test made, removed on drop: (node, volume), stacks, services.
    volumes: RefCell<Vec<(String, String)>>,
    services: RefCell<Vec<String>>,
    stacks: RefCell<Vec<String>>,
    /// Holds the host's dockerd (the fleet runs on it) for the test.
    _daemon: Cleanup,
    _lock: Flock<File>,
    _in_process: MutexGuard<'static, ()>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fleet.sh")
}

/// `scripts/fleet.sh args...`, failing the test unless it succeeds.
/// Each call's wall time is reported: the first `up` of a run brings the
/// fleet up (cold or warm), later ones find it up.
pub fn fleet_sh(args: &[&str]) -> String {
    let started = std::time::Instant::now();
    let out = cmd::run(Command::new(script()).args(args), Duration::from_secs(900));
    assert!(
        out.status.success(),
        "{}",
        show(&format!("scripts/fleet.sh {}", args.join(" ")), &out)
    );
    crate::support::report(
        "fleet",
        &format!(
            "scripts/fleet.sh {}: {:.1} s",
            args.join(" "),
            started.elapsed().as_secs_f64()
        ),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Fleet {
    /// Brings the fleet up (or finds it up), publishes this tree's plugin
    /// once per test process, and has it installed, enabled and with
    /// [`INSTALL_SETTINGS`] on every node, with no volume left over.
    pub fn take() -> Fleet {
        let in_process = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
        let lock = take_lock();
        require_docker();
        let fleet = Fleet {
            volumes: RefCell::new(Vec::new()),
            services: RefCell::new(Vec::new()),
            stacks: RefCell::new(Vec::new()),
            _daemon: Cleanup::new(),
            _lock: lock,
            _in_process: in_process,
        };
        fleet_sh(&["up"]);
        let base = published_base();
        for node in NODES {
            fleet.settle(node, &base);
        }
        fleet
    }

    /// Builds the plugin from this tree and pushes it as REGISTRY/netfs:tag.
    pub fn publish(tag: &str) -> String {
        let out = fleet_sh(&["publish", tag]);
        out.lines().last().unwrap_or_default().trim().to_owned()
    }

    /// The plugin on `node` as a test starts from it: installed from
    /// `reference`, enabled, with the install settings, no volumes.
    fn settle(&self, node: &str, reference: &str) {
        self.remove_all_volumes(node);
        let inspect = self.plugin_inspect(node);
        let env: Vec<&str> = inspect["Settings"]["Env"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let same = inspect["PluginReference"] == reference
            && inspect["Enabled"] == true
            && mount_source(&inspect, "sshkeys").as_deref() == Some(KEYS_ON_NODE)
            && INSTALL_SETTINGS
                .iter()
                .filter(|s| !s.contains(".source="))
                .all(|s| env.contains(s));
        if !same {
            self.reinstall(node, reference, INSTALL_SETTINGS);
        }
    }

    /// Removes the plugin from `node` if it is there, then
    /// `docker plugin install reference --alias netfs settings...`.
    pub fn reinstall(&self, node: &str, reference: &str, settings: &[&str]) {
        self.remove_all_volumes(node);
        let _ = self.docker(node, &["plugin", "rm", "-f", ALIAS]);
        // The default sources of the plugin's rclone mounts, as an
        // operator makes them (docs/install.md): dockerd enables no plugin
        // whose mount source is missing.
        let mut mkdir = Command::new(script());
        mkdir.args([
            "exec",
            node,
            "mkdir",
            "-p",
            "/etc/netfs/rclone",
            "/var/cache/netfs-rclone",
        ]);
        let out = cmd::run(&mut mkdir, DOCKER_TIMEOUT);
        assert!(
            out.status.success(),
            "{}",
            show(&format!("[{node}] mkdir"), &out)
        );
        let mut args = vec![
            "plugin",
            "install",
            "--grant-all-permissions",
            "--alias",
            ALIAS,
            reference,
        ];
        args.extend(settings);
        self.docker_ok(node, &args);
    }

    fn remove_all_volumes(&self, node: &str) {
        if self.plugin_inspect(node).is_null() {
            return;
        }
        let _ = self.docker(node, &["rm", "-f", "-v", "netfs-fleet-probe"]);
        let listed = self.docker_ok(node, &["volume", "ls", "-q", "-f", "driver=netfs:latest"]);
        for volume in listed.split_whitespace() {
            let _ = self.docker(node, &["volume", "rm", "-f", volume]);
        }
    }

    /// `docker plugin inspect netfs` on `node`, or null if not installed.
    pub fn plugin_inspect(&self, node: &str) -> Value {
        let out = self.docker(node, &["plugin", "inspect", ALIAS]);
        if !out.status.success() {
            return Value::Null;
        }
        serde_json::from_slice::<Value>(&out.stdout).map_or(Value::Null, |v| v[0].clone())
    }

    /// `docker args...` on `node` (its docker CLI, 28), with `env` set and
    /// `input` on stdin.
    pub fn docker_with(
        &self,
        node: &str,
        env: &[(&str, String)],
        input: Option<&[u8]>,
        args: &[&str],
    ) -> Output {
        let mut command = Command::new(script());
        command.args(["exec", node, "env"]);
        command.args(env.iter().map(|(k, v)| format!("{k}={v}")));
        command.arg("docker").args(args);
        cmd::run_input(&mut command, input, DOCKER_TIMEOUT)
    }

    pub fn docker(&self, node: &str, args: &[&str]) -> Output {
        self.docker_with(node, &[], None, args)
    }

    /// `docker args...` on `node`; fails the test (with the plugin's log)
    /// unless it succeeds; returns stdout.
    pub fn docker_ok(&self, node: &str, args: &[&str]) -> String {
        let out = self.docker(node, args);
        assert!(
            out.status.success(),
            "{}\n{}",
            show(&format!("[{node}] docker {}", args.join(" ")), &out),
            self.log_tail(node)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `docker args...` on `node`, which must fail; returns stderr.
    pub fn docker_fails(&self, node: &str, args: &[&str]) -> String {
        let out = self.docker(node, args);
        assert!(
            !out.status.success(),
            "expected a failure: {}",
            show(&format!("[{node}] docker {}", args.join(" ")), &out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Registers a volume on `node` for removal; returns its name.
    pub fn volume(&self, node: &str, name: impl Into<String>) -> String {
        let name = name.into();
        self.volumes
            .borrow_mut()
            .push((node.to_owned(), name.clone()));
        name
    }

    /// Registers a swarm service (removed first on drop); returns its name.
    pub fn service(&self, name: impl Into<String>) -> String {
        let name = name.into();
        self.services.borrow_mut().push(name.clone());
        name
    }

    /// Registers a stack (removed first on drop); returns its name.
    pub fn stack(&self, name: impl Into<String>) -> String {
        let name = name.into();
        self.stacks.borrow_mut().push(name.clone());
        name
    }

    /// `docker volume create -d netfs -o k=v ... volume` on `node`.
    pub fn create(&self, node: &str, volume: &str, opts: &[(&str, &str)]) {
        let opts: Vec<String> = opts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["volume", "create", "-d", ALIAS];
        for o in &opts {
            args.extend(["-o", o.as_str()]);
        }
        args.push(volume);
        self.docker_ok(node, &args);
    }

    /// `docker volume inspect volume` on `node`, the one object.
    pub fn volume_inspect(&self, node: &str, volume: &str) -> Value {
        let text = self.docker_ok(node, &["volume", "inspect", volume]);
        serde_json::from_str::<Value>(&text).map_or(Value::Null, |v| v[0].clone())
    }

    /// Waits until the volume's Status on `node` says mounted; returns it.
    pub fn mounted(&self, node: &str, volume: &str) -> Value {
        let mut status = Value::Null;
        self.wait(node, &format!("{volume} is mounted on {node}"), || {
            let out = self.docker(node, &["volume", "inspect", volume]);
            status = serde_json::from_slice::<Value>(&out.stdout)
                .map_or(Value::Null, |v| v[0]["Status"].clone());
            status["state"] == "mounted"
        });
        status
    }

    /// A throwaway container of the test image on `node` with `volume` at
    /// /data, running `sh -c script`; returns its output.
    pub fn run(&self, node: &str, volume: &str, script: &str) -> String {
        let mount = format!("{volume}:/data");
        self.docker_ok(
            node,
            &[
                "run",
                "--rm",
                "-v",
                &mount,
                crate::support::docker::TEST_IMAGE,
                "sh",
                "-c",
                script,
            ],
        )
    }

    /// Polls `cond` up to [`T`]; on time-out fails with `node`'s plugin log.
    pub fn wait(&self, node: &str, what: &str, cond: impl FnMut() -> bool) {
        if !poll_until(T, cond) {
            panic!(
                "timed out after {T:?} waiting until {what}\n{}",
                self.log_tail(node)
            );
        }
    }

    /// The last lines of `node`'s dockerd log that came from a plugin.
    pub fn log_tail(&self, node: &str) -> String {
        format!(
            "last plugin lines of {node}'s dockerd:\n{}",
            self.plugin_log(node)
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    /// Everything `node`'s dockerd logged from its plugins (their stdout
    /// and stderr): the node container's log on the host.
    pub fn plugin_log(&self, node: &str) -> String {
        let mut logs = Command::new("docker");
        logs.args(["logs", &format!("netfs-fleet-{node}")]);
        match cmd::try_run_input(&mut logs, None, Duration::from_secs(30)) {
            Ok(out) => [out.stdout, out.stderr]
                .iter()
                .flat_map(|b| {
                    String::from_utf8_lossy(b)
                        .lines()
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .filter(|l| l.contains("plugin="))
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => e,
        }
    }

    /// The sshd host's `/srv/sub` as seen from the host.
    pub fn remote(&self, sub: &str) -> PathBuf {
        let dir = Path::new(FLEET_DIR).join("files").join(sub);
        fs::create_dir_all(&dir).expect("create a directory on the sshd host");
        dir
    }

    /// `root@files:/srv/sub` for a volume's source.
    pub fn source(&self, sub: &str) -> String {
        format!("root@{FILES_IP}:/srv/{sub}")
    }

    /// The password of the sshd host's user `netfs` (home /srv/netfs).
    pub fn password(&self) -> String {
        fs::read_to_string(Path::new(FLEET_DIR).join("ssh/password"))
            .expect("the fleet's password file")
            .trim()
            .to_owned()
    }

    /// `node`'s Docker API socket on the host.
    pub fn api_socket(&self, node: &str) -> PathBuf {
        Path::new(FLEET_DIR).join(node).join("run/docker.sock")
    }

    /// The nodes of the replicas that wrote `<slot>-<node>.txt` files
    /// ([`Fleet::spread_service`]'s scripts), sorted.
    pub fn replica_nodes(files: &[(String, String)]) -> Vec<String> {
        let mut on: Vec<String> = files
            .iter()
            .map(|(name, _)| {
                name.trim_end_matches(".txt")
                    .split('-')
                    .nth(1)
                    .unwrap_or("?")
                    .to_owned()
            })
            .collect();
        on.sort();
        on
    }

    /// The slot of the replica that wrote from `node` (files are named
    /// `SLOT-NODE.txt`, as [`Fleet::spread_service`]'s scripts write them).
    pub fn slot_on(files: &[(String, String)], node: &str) -> String {
        files
            .iter()
            .find(|(name, _)| name.ends_with(&format!("-{node}.txt")))
            .map(|(name, _)| name.split('-').next().unwrap_or("?").to_owned())
            .unwrap_or_else(|| panic!("a replica on {node}: {files:?}"))
    }

    /// The file `slot` wrote from a node other than `from`, if any.
    pub fn moved<'a>(files: &'a [(String, String)], slot: &str, from: &str) -> Option<&'a str> {
        files.iter().map(|(name, _)| name.as_str()).find(|name| {
            name.starts_with(&format!("{slot}-")) && !name.ends_with(&format!("-{from}.txt"))
        })
    }

    /// `docker service create` on the manager: three replicas of the test
    /// image spread one per node, with `mount`, each running `sh -c script`
    /// with `$SLOT` (the task's slot) and `$NODE` (its node's host name).
    pub fn spread_service(&self, service: &str, mount: &str, script: &str) {
        self.docker_ok(
            NODES[0],
            &[
                "service",
                "create",
                "--detach",
                "--no-resolve-image",
                "--name",
                service,
                "--replicas",
                "3",
                "--placement-pref",
                "spread=node.hostname",
                "--stop-grace-period",
                "1s",
                "--env",
                "SLOT={{.Task.Slot}}",
                "--env",
                "NODE={{.Node.Hostname}}",
                "--mount",
                mount,
                crate::support::docker::TEST_IMAGE,
                "sh",
                "-c",
                script,
            ],
        );
    }

    /// Names of the running containers of a swarm service on `node`.
    pub fn tasks_on(&self, node: &str, service: &str) -> Vec<String> {
        let filter = format!("label=com.docker.swarm.service.name={service}");
        let out = self.docker(node, &["ps", "-q", "-f", &filter]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    /// Waits until the swarm's manager knows the plugin on every node: a
    /// node reports its plugins a few seconds after an install, and until
    /// then the scheduler puts no task that needs a netfs volume there.
    pub fn await_plugin_in_swarm(&self) {
        let manager = NODES[0];
        for node in NODES {
            self.wait(manager, &format!("the swarm knows netfs on {node}"), || {
                let out = self.docker(
                    manager,
                    &[
                        "node",
                        "inspect",
                        "-f",
                        "{{range .Description.Engine.Plugins}}{{.Type}}={{.Name}} {{end}}",
                        node,
                    ],
                );
                String::from_utf8_lossy(&out.stdout).contains("Volume=netfs:latest")
            });
        }
    }

    /// Starts the fleet member again after [`Fleet::stop_node`]: `fleet.sh
    /// up` starts what is stopped (and removes default routes).
    /// Starts a stopped node and waits until the managers see it ready.
    pub fn start_node(&self, node: &str) {
        fleet_sh(&["up"]);
        self.wait(
            NODES[0],
            &format!("{node} is ready in the swarm again"),
            || {
                self.docker(
                    NODES[0],
                    &["node", "inspect", "-f", "{{.Status.State}}", node],
                )
                .stdout
                .starts_with(b"ready")
            },
        );
    }

    /// Stops the fleet member's container on the host: its dockerd stops.
    pub fn stop_node(&self, node: &str) {
        crate::support::docker::docker_ok(&["stop", "-t", "20", &format!("netfs-fleet-{node}")]);
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // No panics here: this runs while a failing test unwinds.
        for node in NODES {
            let running = crate::support::docker::docker(&[
                "inspect",
                "-f",
                "{{.State.Running}}",
                &format!("netfs-fleet-{node}"),
            ]);
            if String::from_utf8_lossy(&running.stdout).trim() != "true" {
                let _ = fleet_sh(&["up"]);
            }
        }
        let manager = NODES[0];
        for stack in self.stacks.borrow().iter() {
            let _ = self.docker(manager, &["stack", "rm", stack]);
        }
        for service in self.services.borrow().iter() {
            let _ = self.docker(manager, &["service", "rm", service]);
        }
        let gone = |label: &str, names: &[String]| {
            NODES.iter().all(|node| {
                names.iter().all(|n| {
                    let filter = format!("label={label}={n}");
                    let out = self.docker(node, &["ps", "-aq", "-f", &filter]);
                    out.stdout.iter().all(u8::is_ascii_whitespace)
                })
            })
        };
        poll_until(T, || {
            gone("com.docker.stack.namespace", &self.stacks.borrow())
                && gone("com.docker.swarm.service.name", &self.services.borrow())
        });
        for (node, volume) in self.volumes.borrow().iter() {
            let _ = self.docker(node, &["volume", "rm", "-f", volume]);
        }
    }
}

/// This tree's plugin in the registry as the base tag: pushed once per test
/// process, and again if the registry was made anew since (`fleet.sh down`
/// by another run).
fn published_base() -> String {
    let registry = crate::support::docker::docker_ok(&[
        "container",
        "inspect",
        "-f",
        "{{.Id}}",
        "netfs-fleet-registry",
    ]);
    let mut published = PUBLISHED.lock().unwrap_or_else(|e| e.into_inner());
    match &*published {
        Some((reference, pushed_to)) if *pushed_to == registry => reference.clone(),
        _ => {
            let reference = Fleet::publish(BASE_TAG);
            *published = Some((reference.clone(), registry));
            reference
        }
    }
}

fn take_lock() -> Flock<File> {
    crate::support::exclusive_lock(LOCK, LOCK_TIMEOUT)
}
