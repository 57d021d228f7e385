//! The secrets suite: a volume's `password` logs in through sshfs's stdin
//! and then never shows in an argv or environment of netfs or any process
//! it runs, a log line (at trace level), an error, Status or `docker volume
//! inspect`'s Status — also after a crash and restore. Values of secret
//! mount options that a tool quotes back are hidden too. The state file,
//! which must keep the password, is mode 0600, and so is its `.bak`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{json, Value};

use crate::support::calls::{create, start, try_status, wait_mounted};
use crate::support::client::{self, err_of};
use crate::support::docker::{require_docker, run_in_container, volume_inspect, Cleanup};
use crate::support::mounts::{all_pids, cmdline, descendants, processes_with_arg, stat};
use crate::support::plugin::Plugin;
use crate::support::report;
use crate::support::sshd::{Sshd, TEST_PASSWORD};
use crate::support::unique_name;

mod options;

/// Creates a volume through dockerd's API, so the password is in no argv
/// (as `docker volume create -o password=...` would put it).
pub(crate) fn docker_api_create(driver: &str, name: &str, opts: &Value) {
    let body = json!({"Name": name, "Driver": driver, "DriverOpts": opts});
    let reply = client::request(
        Path::new("/var/run/docker.sock"),
        "POST",
        "/volumes/create",
        body.to_string(),
    );
    assert_eq!(
        reply.status,
        201,
        "create {name} through the API: {}",
        reply.text()
    );
}

/// Every process of this plugin: itself, its descendants, the members of
/// their process groups, anything else naming its mount root, and the ssh
/// processes talking to this test's sshd (for a password, sshfs runs ssh
/// on a pty in a session of its own, double-forked, so init adopts it).
fn plugin_processes(plugin: &Plugin, sshd: &Sshd) -> Vec<i32> {
    let pid = plugin.pid() as i32;
    let mut pids = vec![pid];
    pids.extend(descendants(pid));
    let root = format!("{}/", plugin.mount_root().display());
    pids.extend(processes_with_arg(&root).into_iter().map(|(p, _)| p));
    let port = format!("-oport={}", sshd.port());
    pids.extend(processes_with_arg(&port).into_iter().map(|(p, _)| p));
    let groups = pids.clone();
    pids.extend(
        all_pids()
            .into_iter()
            .filter(|p| stat(*p).is_some_and(|s| groups.contains(&s.pgrp))),
    );
    pids.sort();
    pids.dedup();
    pids
}

/// Counts the places looked at; panics naming the first that shows `secret`.
#[derive(Default)]
struct Audit {
    places: usize,
}

impl Audit {
    fn clean(&mut self, what: &str, text: &str, secret: &str) {
        assert!(!text.contains(secret), "the secret shows in {what}: {text}");
        self.places += 1;
    }

    fn processes(&mut self, plugin: &Plugin, sshd: &Sshd, secret: &str) -> usize {
        let pids = plugin_processes(plugin, sshd);
        for pid in &pids {
            self.clean(
                &format!("the argv of {pid}"),
                &cmdline(*pid).join(" "),
                secret,
            );
            let env = netfs::procfs::environ(*pid).unwrap_or_default();
            self.clean(
                &format!("the environment of {pid}"),
                &String::from_utf8_lossy(&env),
                secret,
            );
        }
        pids.len()
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_password_never_shows_outside_the_state_file() {
    require_docker();
    let sshd = Sshd::with_password();
    let mut plugin = start(&["--mount-timeout=15s", "--log-level=trace"]);
    let mut cleanup = Cleanup::new();
    let volume = cleanup.volume(unique_name("secret"));
    let opts = json!({
        "source": sshd.password_source(""),
        "o": sshd.password_sshfs_options(),
        "password": TEST_PASSWORD,
    });
    docker_api_create(plugin.driver_name(), &volume, &opts);
    let mut audit = Audit::default();
    let secret = TEST_PASSWORD;

    // The password logged in: a container writes through the volume.
    run_in_container(&volume, "/data", "echo through-the-password > /data/pw.txt");
    assert_eq!(
        fs::read_to_string(sshd.remote_dir().join("pw.txt")).unwrap(),
        "through-the-password\n"
    );
    let pid = wait_mounted(&plugin, &volume, None);
    let mut processes = audit.processes(&plugin, &sshd, secret);
    let inspect = volume_inspect(&volume);
    audit.clean(
        "docker volume inspect's Status",
        &inspect["Status"].to_string(),
        secret,
    );
    audit.clean(
        "Get",
        &plugin
            .post("/VolumeDriver.Get", json!({"Name": volume}))
            .1
            .to_string(),
        secret,
    );
    audit.clean(
        "List",
        &plugin.post("/VolumeDriver.List", json!({})).1.to_string(),
        secret,
    );

    // Errors: a wrong password, an unreachable server, a refused option.
    let wrong = format!("wrong-{secret}");
    let failing = [
        json!({"source": sshd.password_source(""), "o": sshd.password_sshfs_options(), "password": wrong}),
        json!({"source": sshd.password_source(""), "o": "port=1", "password": secret}),
        json!({"source": sshd.password_source(""), "password": format!("{secret}\n")}),
        json!({"source": sshd.password_source(""), "o": format!("{},password={secret}", sshd.password_sshfs_options())}),
        json!({"type": "rclone", "source": format!(":sftp,host=127.0.0.1,port=1,pass={secret}:/x")}),
    ];
    for opts in &failing {
        let (code, reply) = create(&plugin, "failing", opts.clone());
        assert_eq!(code, 500, "{reply}");
        audit.clean("an error", err_of(&reply), secret);
    }

    // A crash: the volume comes back, the password sent again on stdin.
    plugin.kill9();
    plugin.restart();
    wait_mounted(&plugin, &volume, Some(pid));
    assert_eq!(
        run_in_container(&volume, "/data", "cat /data/pw.txt"),
        "through-the-password\n"
    );
    processes += audit.processes(&plugin, &sshd, secret);
    audit.clean(
        "Status after the restart",
        &try_status(&plugin, &volume).unwrap().to_string(),
        secret,
    );

    // The log at trace level, over both runs, line by line.
    let log = plugin.log();
    for line in log.lines() {
        audit.clean("the log", line, secret);
    }
    let lines = log.lines().count();

    // Only the state file keeps it, readable by root alone.
    let state = plugin.state_file();
    assert!(
        fs::read_to_string(&state).unwrap().contains(secret),
        "kept for restores"
    );
    assert_eq!(mode(&state), 0o600);
    assert_eq!(mode(&state.with_file_name("state.json.bak")), 0o600);
    report(
        "secrets",
        &format!(
            "password looked for in {} places ({processes} process argv+environ, {lines} log lines at trace, \
             Status, inspect, {} errors): 0 leaks; state file and .bak 0600",
            audit.places,
            failing.len()
        ),
    );
}
