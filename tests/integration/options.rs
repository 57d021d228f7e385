//! The option engine end to end: plugin defaults from the environment and a
//! volume's `o` and `c` through a real dockerd, down to the argv of the
//! running sshfs (read from /proc/<pid>/cmdline) and the command in Status.

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::docker::{
    docker, docker_ok, require_docker, run_in_container, volume_inspect, Cleanup,
};
use crate::support::mounts::{cmdline, mount_at, wait_until};
use crate::support::plugin::Plugin;
use crate::support::sshd::Sshd;
use crate::support::unique_name;

const T: Duration = Duration::from_secs(30);

fn netfs() -> Plugin {
    Plugin::new(env!("CARGO_BIN_EXE_netfs")).arg("--mount-timeout=15s")
}

/// `docker volume create -d <plugin> -o k=v ... <name>`.
fn create(plugin: &Plugin, volume: &str, opts: &[(&str, &str)]) {
    let mut args = vec![
        "volume".to_owned(),
        "create".to_owned(),
        "-d".to_owned(),
        plugin.driver_name().to_owned(),
    ];
    for (k, v) in opts {
        args.push("-o".to_owned());
        args.push(format!("{k}={v}"));
    }
    args.push(volume.to_owned());
    docker_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// The volume's Status, once its process is mounted.
fn mounted_status(volume: &str) -> Value {
    let mut status = Value::Null;
    wait_until(T, "the volume's Status says mounted", || {
        status = volume_inspect(volume)["Status"].clone();
        status["state"] == "mounted"
    });
    status
}

/// The argv of the volume's running process, as the kernel has it.
fn running_argv(status: &Value) -> Vec<String> {
    let pid = status["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no pid in Status: {status}"));
    cmdline(pid as i32)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The volume's record in the plugin's state file.
fn stored(plugin: &Plugin, volume: &str) -> Option<Value> {
    let text = fs::read_to_string(plugin.state_file()).ok()?;
    let doc: Value = serde_json::from_str(&text).expect("state file is JSON");
    doc["volumes"].get(volume).cloned()
}

#[test]
fn merged_options_reach_sshfs_exactly_and_status_shows_them() {
    require_docker();
    let sshd = Sshd::new();
    let defaults = format!(
        "{},reconnect,ServerAliveInterval=15,dir_cache=yes",
        sshd.sshfs_options()
    );
    let mut plugin = netfs()
        .env("MOUNT_OPTIONS", &defaults)
        .env("VOLUME_PROCESS_OPTIONS", "-C")
        .start();
    let mut cleanup = Cleanup::new();
    let volume = cleanup.volume(unique_name("opts"));
    let plain = cleanup.volume(unique_name("opts-plain"));
    let source = sshd.source("");
    // overrides one key, unsets another, adds one; adds process options
    // with a placeholder
    let o = "ServerAliveInterval=5,dir_cache=-,idmap=user";
    let c = "-o&fsname=netfs-{name}";
    create(&plugin, &volume, &[("source", &source), ("o", o), ("c", c)]);
    create(&plugin, &plain, &[("source", &source)]);

    let mount_point = plugin.mount_root().join(&volume);
    let merged = format!(
        "{},reconnect,ServerAliveInterval=5,idmap=user",
        sshd.sshfs_options()
    );
    let fsname = format!("fsname=netfs-{volume}");
    let want = strings(&[
        "sshfs",
        &source,
        mount_point.to_str().unwrap(),
        "-f",
        "-C",
        "-o",
        &fsname,
        "-o",
        &merged,
        "-o",
        "LogLevel=VERBOSE",
    ]);
    let status = mounted_status(&volume);
    assert_eq!(running_argv(&status), want, "{status}");
    assert_eq!(status["command"], shell_words::join(&want), "{status}");
    // the placeholder reached the tool and took effect
    let entry = mount_at(&mount_point).expect("the volume is mounted");
    assert_eq!(entry.source, format!("netfs-{volume}"));
    run_in_container(&volume, "/data", "echo via-options > /data/opts.txt");
    assert_eq!(
        fs::read_to_string(sshd.remote_dir().join("opts.txt")).unwrap(),
        "via-options\n"
    );

    // the next volume sees the plugin's defaults untouched
    let plain_point = plugin.mount_root().join(&plain);
    let want_plain = strings(&[
        "sshfs",
        &source,
        plain_point.to_str().unwrap(),
        "-f",
        "-C",
        "-o",
        &defaults,
        "-o",
        "LogLevel=VERBOSE",
    ]);
    let plain_status = mounted_status(&plain);
    assert_eq!(running_argv(&plain_status), want_plain, "{plain_status}");
    assert_eq!(plain_status["command"], shell_words::join(&want_plain));

    // what is stored is the volume's own options, not the merge
    let record = stored(&plugin, &volume).expect("volume in the state file");
    assert_eq!(
        record["options"],
        json!({"source": source, "o": o, "c": c}),
        "{record}"
    );

    // new defaults apply at the next start, over the same stored options
    let new_defaults = format!(
        "{},ServerAliveInterval=30,dir_cache=no,kernel_cache",
        sshd.sshfs_options()
    );
    plugin.set_env("MOUNT_OPTIONS", &new_defaults);
    plugin.set_env("VOLUME_PROCESS_OPTIONS", "");
    plugin.restart();
    let merged = format!(
        "{},ServerAliveInterval=5,kernel_cache,idmap=user",
        sshd.sshfs_options()
    );
    let want = strings(&[
        "sshfs",
        &source,
        mount_point.to_str().unwrap(),
        "-f",
        "-o",
        &fsname,
        "-o",
        &merged,
        "-o",
        "LogLevel=VERBOSE",
    ]);
    let mut status = Value::Null;
    wait_until(T, "the restored volume runs the new command", || {
        status = volume_inspect(&volume)["Status"].clone();
        status["state"] == "mounted" && running_argv(&status) == want
    });
    assert_eq!(status["command"], shell_words::join(&want), "{status}");
    assert_eq!(stored(&plugin, &volume).unwrap()["options"]["o"], o);
}

#[test]
fn malformed_options_fail_at_create_and_nothing_is_created() {
    require_docker();
    let plugin = netfs().start();
    let mut cleanup = Cleanup::new();
    let source = "root@127.0.0.1:/srv";
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("source", source), ("o", "reconnect,,=x")],
            "volume option \"o\": item 3 \"=x\": the key before '=' is empty",
        ),
        (
            &[("source", source), ("o", "reconnect, dir_cache=no")],
            "volume option \"o\": item 2 \" dir_cache=no\": a key may not contain whitespace",
        ),
        (
            &[("source", source), ("o", "port=22,password=hunter2\u{7}")],
            "volume option \"o\": item 2 \"password=***\": control characters",
        ),
        (
            &[("source", source), ("c", "-C&-o\tx")],
            "volume option \"c\": item 2 \"-o\\tx\": control characters",
        ),
        (
            &[("source", source), ("port", "2222")],
            "unknown volume option \"port\"; accepted options are: type, source, o, c, password \
             (mount options go inside o, e.g. -o o=port=2222,reconnect)",
        ),
        (
            &[("source", "")],
            "volume option \"source\" has an empty value; give it a value or leave it out",
        ),
        (
            &[("source", source), ("type", "smb")],
            "volume option \"type\": unknown type \"smb\"; use one of sshfs, rclone, nfs, command",
        ),
    ];
    for (opts, message) in cases {
        let volume = unique_name("bad");
        let mut args = vec![
            "volume".to_owned(),
            "create".to_owned(),
            "-d".to_owned(),
            plugin.driver_name().to_owned(),
        ];
        for (k, v) in *opts {
            args.extend(["-o".to_owned(), format!("{k}={v}")]);
        }
        args.push(volume.clone());
        let out = docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
        // Only a volume that exists goes to the clean-up: removing a missing
        // name makes dockerd ask every plugin on the machine.
        if out.status.success() {
            cleanup.volume(volume.clone());
            panic!("{opts:?} was accepted");
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{opts:?}: {stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "a secret in an error: {stderr}"
        );

        // `docker volume ls` or inspecting a missing name would ask every
        // plugin on this machine, and other tests' plugins come and go: ask
        // ours, and look at its state file and mount root.
        let (code, reply) = plugin.post("/VolumeDriver.Get", json!({ "Name": volume }));
        assert_ne!(code, 200, "{reply}");
        assert!(stored(&plugin, &volume).is_none(), "{volume} stored");
        assert!(!plugin.mount_root().join(&volume).exists());
    }
}

#[test]
fn the_plugin_checks_its_own_defaults_at_start() {
    let mount = "invalid plugin mount options (-o, --mount-options or MOUNT_OPTIONS): ";
    let cases = [
        (
            "MOUNT_OPTIONS",
            "reconnect,dir_cache=-",
            format!("{mount}item 2 \"dir_cache=-\": '-' only means something in a volume's o"),
        ),
        (
            "MOUNT_OPTIONS",
            "a,b c",
            format!("{mount}item 2 \"b c\": a key may not contain whitespace"),
        ),
        (
            "VOLUME_PROCESS_OPTIONS",
            "-C&\u{1b}",
            "invalid plugin process options (-c, --volume-process-options or \
             VOLUME_PROCESS_OPTIONS): item 2 \"\\u{1b}\": control characters"
                .to_owned(),
        ),
    ];
    for (var, value, message) in cases {
        let mut plugin = netfs().env(var, value);
        plugin.spawn();
        let status = plugin.wait_exit(T);
        assert!(!status.success(), "{var}={value:?} started");
        assert!(plugin.log().contains(&message), "{}", plugin.log());
        assert!(!plugin.socket().exists(), "{var}={value:?} left a socket");
    }

    // the command line wins: a bad variable it overrides is never read, and
    // an empty variable is the default
    let plugin = netfs()
        .env("MOUNT_OPTIONS", "cache=-")
        .arg("-o")
        .arg("reconnect")
        .env("VOLUME_PROCESS_BINARY", "")
        .env("MOUNT_TIMEOUT", "")
        .start();
    let (code, reply) = plugin.post("/VolumeDriver.List", json!({}));
    assert_eq!(code, 200, "{reply}");
}

#[test]
fn command_backend_runs_the_named_binary_with_merged_options() {
    require_docker();
    let sshd = Sshd::new();
    let sshfs = which("sshfs");
    let plugin = netfs()
        .arg(format!("--volume-process-binary={}", sshfs.display()))
        .env("MOUNT_OPTIONS_VOLUME_PROCESS_OPTION", "-o")
        .env(
            "MOUNT_OPTIONS",
            format!("{},dir_cache=yes", sshd.sshfs_options()),
        )
        .env("VOLUME_PROCESS_OPTIONS", "{source}&{mountPoint}&-f")
        .start();
    let mut cleanup = Cleanup::new();
    let volume = cleanup.volume(unique_name("cmd"));
    let source = sshd.source("");
    create(
        &plugin,
        &volume,
        &[
            ("type", "command"),
            ("source", &source),
            ("o", "reconnect,dir_cache=-"),
        ],
    );
    let mount_point = plugin.mount_root().join(&volume);
    let want = strings(&[
        sshfs.to_str().unwrap(),
        &source,
        mount_point.to_str().unwrap(),
        "-f",
        "-o",
        &format!("{},reconnect", sshd.sshfs_options()),
    ]);
    let status = mounted_status(&volume);
    assert_eq!(status["backend"], "command");
    assert_eq!(running_argv(&status), want, "{status}");
    assert_eq!(status["command"], shell_words::join(&want));
    run_in_container(&volume, "/data", "echo via-command > /data/cmd.txt");
    assert_eq!(
        fs::read_to_string(sshd.remote_dir().join("cmd.txt")).unwrap(),
        "via-command\n"
    );
}

/// The absolute path of a program on PATH.
fn which(program: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|p| Path::new(p).is_file())
        .unwrap_or_else(|| panic!("{program} is not installed (scripts/setup.sh installs it)"))
}
