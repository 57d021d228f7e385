//! netfs on the engines its users run: Docker 28 nodes of scripts/fleet.sh,
//! the plugin pushed to the fleet's registry and installed from it with
//! `docker plugin install --alias netfs`, volumes over the fleet's sshd
//! host. Here: install with settings, every backend the fleet serves
//! (sshfs, rclone sftp, command; no nfs: this kernel has no NFS client),
//! `docker plugin upgrade`, bad input and secrets; in `swarm`, Compose v2,
//! a three-node swarm that loses a node, and `docker stack deploy`.

mod build;
mod csi;
mod csi_reattach;
mod fixture;
mod swarm;

use std::fs;

use serde_json::{json, Value};

use crate::support::client::{self, err_of};
use crate::support::unique_name;

use fixture::{Fleet, ALIAS, INSTALL_SETTINGS, KEYS_ON_NODE, NODES, REGISTRY};

/// Waits until `file` on the sshd host holds `text` (rclone uploads a file
/// written through its cache shortly after it is closed).
fn wait_remote(fleet: &Fleet, node: &str, file: &std::path::Path, text: &str) {
    fleet.wait(node, &format!("{} holds {text:?}", file.display()), || {
        fs::read_to_string(file).is_ok_and(|t| t == text)
    });
}

#[test]
fn installed_from_the_registry_every_node_serves_sshfs_rclone_and_command_volumes() {
    let fleet = Fleet::take();
    let reference = format!("{REGISTRY}/netfs:{}", fixture::BASE_TAG);
    let dir = unique_name("install");
    let remote = fleet.remote(&dir);
    fs::write(remote.join("existing.txt"), "kept").unwrap();

    // Nothing in the fleet has a way out: no default route anywhere.
    for member in NODES.iter().chain(&["files", "registry"]) {
        let routes = fixture::fleet_sh(&["exec", member, "ip", "route"]);
        assert!(!routes.contains("default"), "{member}: {routes}");
    }

    for node in NODES {
        // A fresh install, with its settings on the command line.
        fleet.reinstall(node, &reference, INSTALL_SETTINGS);
        let inspect = fleet.plugin_inspect(node);
        assert_eq!(inspect["Enabled"], true, "{inspect}");
        assert_eq!(inspect["PluginReference"], reference, "{inspect}");
        assert_eq!(inspect["Name"], format!("{ALIAS}:latest"), "{inspect}");
        let env: Vec<&str> = inspect["Settings"]["Env"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for setting in INSTALL_SETTINGS.iter().filter(|s| !s.contains(".source=")) {
            assert!(env.contains(setting), "{setting} not in {env:?}");
        }
        assert_eq!(
            fixture::mount_source(&inspect, "sshkeys").as_deref(),
            Some(KEYS_ON_NODE)
        );

        // sshfs: a container on each node writes a file of its own.
        let volume = fleet.volume(node, unique_name("fl-sshfs"));
        fleet.create(node, &volume, &[("source", &fleet.source(&dir))]);
        let out = fleet.run(
            node,
            &volume,
            &format!("echo {node} > /data/{node}.txt && cat /data/existing.txt"),
        );
        assert_eq!(out, "kept");
        assert_eq!(
            fs::read_to_string(remote.join(format!("{node}.txt"))).unwrap(),
            format!("{node}\n")
        );
        let inspect = fleet.volume_inspect(node, &volume);
        assert_eq!(inspect["Driver"], format!("{ALIAS}:latest"), "{inspect}");
        assert_eq!(inspect["Status"]["state"], "mounted", "{inspect}");
        assert_eq!(inspect["Status"]["backend"], "sshfs", "{inspect}");
    }

    // rclone's sftp backend, through the rclone.conf in the keys mount.
    let node = NODES[1];
    let by_rclone = fleet.volume(node, unique_name("fl-rclone"));
    let rclone_dir = format!("{dir}/rclone");
    fleet.remote(&rclone_dir);
    fleet.create(
        node,
        &by_rclone,
        &[
            ("type", "rclone"),
            ("source", &format!("files:/srv/{rclone_dir}")),
        ],
    );
    fleet.run(node, &by_rclone, "echo via-rclone > /data/out.txt");
    wait_remote(
        &fleet,
        node,
        &fleet.remote(&rclone_dir).join("out.txt"),
        "via-rclone\n",
    );
    let status = fleet.mounted(node, &by_rclone);
    assert_eq!(status["backend"], "rclone", "{status}");

    // command, running sshfs as the operator's binary: settings given at
    // install time on node3, the volume's options as examples/volumes/command.sh
    // gives them.
    let node = NODES[2];
    let mut settings = INSTALL_SETTINGS.to_vec();
    settings.extend([
        "VOLUME_PROCESS_BINARY=/usr/bin/sshfs",
        "MOUNT_OPTIONS_VOLUME_PROCESS_OPTION=-o",
    ]);
    fleet.reinstall(node, &reference, &settings);
    let by_command = fleet.volume(node, unique_name("fl-command"));
    let command_dir = format!("{dir}/command");
    fleet.remote(&command_dir);
    fleet.create(
        node,
        &by_command,
        &[
            ("type", "command"),
            ("source", &fleet.source(&command_dir)),
            ("c", "{source}&{mountPoint}&-f"),
            ("o", "IdentityFile=/root/.ssh/id_ed25519,reconnect"),
        ],
    );
    fleet.run(node, &by_command, "echo via-command > /data/out.txt");
    assert_eq!(
        fs::read_to_string(fleet.remote(&command_dir).join("out.txt")).unwrap(),
        "via-command\n"
    );
    let status = fleet.mounted(node, &by_command);
    assert_eq!(status["backend"], "command", "{status}");
    assert!(
        status["command"]
            .as_str()
            .unwrap_or_default()
            .starts_with("/usr/bin/sshfs "),
        "{status}"
    );

    // Every node's file is on the remote, and what was there is kept.
    let mut names: Vec<String> = fs::read_dir(&remote)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["existing.txt", "node1.txt", "node2.txt", "node3.txt"]
    );
}

#[test]
fn plugin_upgrade_keeps_volumes_and_gives_running_containers_the_new_mount() {
    let fleet = Fleet::take();
    let node = NODES[0];
    let dir = unique_name("upgrade");
    let remote = fleet.remote(&dir);
    let volume = fleet.volume(node, unique_name("fl-upgrade"));
    fleet.create(node, &volume, &[("source", &fleet.source(&dir))]);
    let idle = fleet.volume(node, unique_name("fl-idle"));
    fleet.create(node, &idle, &[("source", &fleet.source(&dir))]);
    let container = unique_name("fl-running");
    let mount = format!("{volume}:/data");
    fleet.docker_ok(
        node,
        &[
            "run",
            "-d",
            "--name",
            &container,
            "-v",
            &mount,
            crate::support::docker::TEST_IMAGE,
            "sh",
            "-c",
            "echo before > /data/before.txt && exec sleep 3600",
        ],
    );
    let _container = RemoveContainer(&fleet, node, container.clone());
    // A holder of a subdirectory of the volume (Docker 26+).
    fs::create_dir_all(remote.join("sub")).unwrap();
    fs::write(remote.join("sub/in-sub.txt"), "in-sub\n").unwrap();
    let subpath = unique_name("fl-subpath");
    let sub_mount = format!("type=volume,src={volume},dst=/sub,volume-subpath=sub");
    fleet.docker_ok(
        node,
        &[
            "run",
            "-d",
            "--name",
            &subpath,
            "--mount",
            &sub_mount,
            crate::support::docker::TEST_IMAGE,
            "sleep",
            "3600",
        ],
    );
    let _subpath = RemoveContainer(&fleet, node, subpath.clone());
    fleet.wait(node, "the container wrote before.txt", || {
        remote.join("before.txt").exists()
    });
    fleet.mounted(node, &volume);

    // A new build, pushed under another tag, while the containers run.
    let next = Fleet::publish(&unique_name("next"));
    fleet.docker_ok(node, &["plugin", "disable", "-f", ALIAS]);
    fleet.docker_ok(
        node,
        &[
            "plugin",
            "upgrade",
            "--grant-all-permissions",
            "--skip-remote-check",
            ALIAS,
            &next,
        ],
    );
    // dockerd keeps the settings' values but mounts the new plugin's
    // default source: the sshkeys mount must be set again (docs/operations.md).
    let upgraded = fleet.plugin_inspect(node);
    assert_eq!(upgraded["PluginReference"], next, "{upgraded}");
    fleet.docker_ok(
        node,
        &[
            "plugin",
            "set",
            ALIAS,
            &format!("sshkeys.source={KEYS_ON_NODE}"),
        ],
    );
    fleet.docker_ok(node, &["plugin", "enable", ALIAS]);

    // Both volumes are listed and mounted again by the new build.
    let listed = fleet.docker_ok(node, &["volume", "ls", "-q", "-f", "driver=netfs:latest"]);
    for v in [&volume, &idle] {
        assert!(
            listed.split_whitespace().any(|l| l == v),
            "{v} not in {listed}"
        );
    }
    let after = fleet.mounted(node, &volume);
    fleet.mounted(node, &idle);
    assert_ne!(after["since"], Value::Null);
    assert!(after["pid"].is_number(), "{after}");
    // The running containers held the old process's mount: the new build
    // put its own in their place (re-attach), with no restart.
    fleet.wait(node, "the running container reads the volume again", || {
        fleet
            .docker(node, &["exec", &container, "cat", "/data/before.txt"])
            .stdout
            == b"before\n"
    });
    fleet.docker_ok(
        node,
        &[
            "exec",
            &container,
            "sh",
            "-c",
            "echo healed > /data/healed.txt",
        ],
    );
    assert_eq!(
        fs::read_to_string(remote.join("healed.txt")).unwrap(),
        "healed\n"
    );
    fleet.wait(
        node,
        "the subpath container reads its subdirectory again",
        || {
            fleet
                .docker(node, &["exec", &subpath, "cat", "/sub/in-sub.txt"])
                .stdout
                == b"in-sub\n"
        },
    );
    let seen = fleet.docker(node, &["exec", &subpath, "ls", "/sub"]);
    assert_eq!(
        String::from_utf8_lossy(&seen.stdout),
        "in-sub.txt\n",
        "the subpath holder stays on its subdirectory"
    );
    let status = fleet.mounted(node, &volume);
    assert_eq!(status["reattach"]["total"], 2, "{status}");
    assert!(
        status.get("mountIdsBeforeLastRestart").is_none(),
        "every container has the new process's mount: {status}"
    );
    assert_eq!(
        fleet.run(node, &idle, "echo after > /data/after.txt && ls /data"),
        "after.txt\nbefore.txt\nhealed.txt\nsub\n"
    );
    assert_eq!(
        fs::read_to_string(remote.join("before.txt")).unwrap(),
        "before\n"
    );
}

/// Removes a container on a node when dropped.
struct RemoveContainer<'a>(&'a Fleet, &'a str, String);

impl Drop for RemoveContainer<'_> {
    fn drop(&mut self) {
        let _ = self.0.docker(self.1, &["rm", "-f", &self.2]);
    }
}

/// What a user of Docker 28 sees for bad input: dockerd wraps netfs's
/// error as `create NAME: VolumeDriver.Create: <netfs's message>`.
#[test]
fn bad_input_gets_netfs_errors_through_docker_28() {
    let fleet = Fleet::take();
    let node = NODES[0];
    let dir = unique_name("bad");
    let src = fleet.source(&dir);
    fleet.remote(&dir);
    // What is wrong, the volume's options, a word the error must name.
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        ("no source", vec![], "source"),
        (
            "unknown type",
            vec![("source", src.clone()), ("type", "zfs".into())],
            "zfs",
        ),
        (
            "unknown option",
            vec![("source", src.clone()), ("colour", "blue".into())],
            "colour",
        ),
        (
            "denied at install",
            vec![
                ("source", src.clone()),
                ("o", "ProxyCommand=touch /tmp/x".into()),
            ],
            "ProxyCommand",
        ),
        (
            "unreachable",
            vec![("source", format!("root@{}:/nowhere", fixture::FILES_IP))],
            "sshfs",
        ),
    ];
    let pid_before = fleet.plugin_inspect(node)["Id"].clone();
    for (what, opts, mention) in &cases {
        let name = unique_name("fl-bad");
        let args = crate::support::docker::volume_create_args(ALIAS, &name, opts);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stderr = fleet.docker_fails(node, &args);
        let prefix = format!("Error response from daemon: create {name}: VolumeDriver.Create: ");
        assert!(stderr.starts_with(&prefix), "{what}: {stderr}");
        assert!(stderr.contains(mention), "{what}: {stderr}");
        let listed = fleet.docker_ok(node, &["volume", "ls", "-q"]);
        assert!(!listed.contains(&name), "{what}: {name} was left behind");
    }
    // netfs kept serving: a good volume mounts, the plugin was not restarted.
    let good = fleet.volume(node, unique_name("fl-good"));
    fleet.create(node, &good, &[("source", &src)]);
    assert_eq!(
        fleet.run(node, &good, "echo ok > /data/ok && cat /data/ok"),
        "ok\n"
    );
    assert_eq!(fleet.plugin_inspect(node)["Id"], pid_before);
}

/// The secrets check against Docker 28: a `password` given through the
/// API (so in no argv) logs in, and shows nowhere but in the state file:
/// not in any process's argv or environment on the machine, not in the
/// plugin's log at trace level, in Status, or in an error, also after the
/// plugin was disabled and enabled (the volume restored).
#[test]
fn a_password_never_shows_on_docker_28() {
    let fleet = Fleet::take();
    let node = NODES[0];
    let secret = fleet.password();
    fleet.docker_ok(node, &["plugin", "disable", "-f", ALIAS]);
    fleet.docker_ok(node, &["plugin", "set", ALIAS, "LOG_LEVEL=trace"]);
    fleet.docker_ok(node, &["plugin", "enable", ALIAS]);

    let socket = fleet.api_socket(node);
    let create = |name: &str, opts: Value| {
        let body = json!({"Name": name, "Driver": ALIAS, "DriverOpts": opts});
        client::request(&socket, "POST", "/volumes/create", body.to_string())
    };
    let source = format!("netfs@{}:/srv/netfs", fixture::FILES_IP);
    let o = "PubkeyAuthentication=no,PreferredAuthentications=password";
    let volume = fleet.volume(node, unique_name("fl-secret"));
    let reply = create(
        &volume,
        json!({"source": source, "o": o, "password": secret}),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    fleet.run(node, &volume, "echo through-the-password > /data/pw.txt");
    assert_eq!(
        fs::read_to_string(fleet.remote("netfs").join("pw.txt")).unwrap(),
        "through-the-password\n"
    );

    let mut places = 0;
    let mut clean = |what: &str, text: &str| {
        places += 1;
        assert!(
            !text.contains(&secret),
            "the password shows in {what}: {text}"
        );
    };
    // dockerd itself shows the volume's options, password included, under
    // Options (docs/security.md); netfs's Status must not.
    let inspect = fleet.volume_inspect(node, &volume);
    assert_eq!(inspect["Options"]["password"], secret.as_str(), "{inspect}");
    clean(
        "docker volume inspect's Status",
        &inspect["Status"].to_string(),
    );
    let wrong = create(
        &unique_name("fl-wrong"),
        json!({"source": source, "o": o, "password": format!("wrong-{secret}")}),
    );
    assert_eq!(wrong.status, 500, "{}", wrong.text());
    clean("a wrong password's error", err_of(&wrong.json()));
    let reply = create(
        &unique_name("fl-inline"),
        json!({"source": source, "o": format!("{o},password={secret}")}),
    );
    clean("an error for a password in o", &reply.text());

    // Disable and enable: the volume is restored, the password sent again.
    fleet.docker_ok(node, &["plugin", "disable", "-f", ALIAS]);
    fleet.docker_ok(node, &["plugin", "enable", ALIAS]);
    let status = fleet.mounted(node, &volume);
    clean("Status after the restore", &status.to_string());
    assert_eq!(
        fleet.run(node, &volume, "cat /data/pw.txt"),
        "through-the-password\n"
    );

    for entry in fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        for part in ["cmdline", "environ"] {
            if let Ok(bytes) = fs::read(entry.path().join(part)) {
                clean(
                    &format!("{}/{part}", entry.path().display()),
                    &String::from_utf8_lossy(&bytes),
                );
            }
        }
    }
    let log = fleet.plugin_log(node);
    assert!(log.contains("netfs::"), "the plugin logged: {log}");
    for line in log.lines() {
        clean("the plugin's log", line);
    }
    assert!(places > 100, "looked in {places} places");
}
