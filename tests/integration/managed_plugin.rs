//! netfs as users install it: the managed plugin built from the Dockerfile
//! by `make test`, enabled in the machine's dockerd, mounting over a real
//! sshd on 127.0.0.1 (the plugin has the host's network). Here: the
//! per-backend examples and `docker plugin set`; in the submodules,
//! disable/enable and a dockerd restart, compose and swarm, and rclone's
//! config, cache and proxy settings.

pub mod fixture;
mod lifecycle;
mod orchestration;
mod policy;
mod processes;
mod rclone;
mod reattach;
mod troubleshooting;

use std::fs;
use std::path::Path;

use crate::support::docker::{docker_ok, run_in_container, volume_inspect, Cleanup};
use crate::support::mounts::{is_mounted, processes_with_arg};
use crate::support::sshd::Sshd;
use crate::support::unique_name;

use fixture::ManagedPlugin;

/// Where the plugin puts a volume's mountpoint (its propagatedMount).
pub(crate) const MOUNT_ROOT: &str = "/mnt/volumes";

/// mtab-style sshfs options that log in with a key the plugin reads at
/// `key` (a path inside the plugin).
fn sshfs_options(sshd: &Sshd, key: &str) -> String {
    format!(
        "port={},IdentityFile={key},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null",
        sshd.port()
    )
}

/// The argv of the tool serving `volume` inside the plugin: the process
/// is in the plugin's pid namespace, but /proc shows it from the host too.
/// The last arguments of an rclone volume's argv: its remote control on a
/// unix socket in netfs's state directory, without authentication (the
/// directory is root's alone).
pub(crate) fn assert_rc_socket(flags: &[String]) {
    let ok = flags.len() == 3
        && flags[0] == "--rc"
        && flags[1].starts_with("--rc-addr=/")
        && flags[1].contains("/rclone-rc/")
        && flags[1].ends_with(".sock")
        && flags[2] == "--rc-no-auth";
    assert!(ok, "rclone's remote control flags: {flags:?}");
}

pub(crate) fn tool_argv(plugin: &ManagedPlugin, tool: &str, volume: &str) -> Vec<String> {
    let mountpoint = format!("{MOUNT_ROOT}/{volume}");
    let mut argv = Vec::new();
    plugin.wait(&format!("a {tool} process serves {mountpoint}"), || {
        argv = processes_with_arg(&mountpoint)
            .into_iter()
            .map(|(_, argv)| argv)
            .find(|argv| argv.first().is_some_and(|a| a.ends_with(tool)))
            .unwrap_or_default();
        !argv.is_empty()
    });
    argv
}

/// Where dockerd shows the plugin's propagated mount on the host.
fn host_mountpoint(plugin: &ManagedPlugin, volume: &str) -> String {
    format!(
        "/var/lib/docker/plugins/{}/propagated-mount/{volume}",
        plugin.id()
    )
}

/// Extra sshfs options for the loopback sshd: its port, and no host key
/// checks (its host key is new each time).
fn loopback_options(sshd: &Sshd) -> String {
    format!(
        "port={},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null",
        sshd.port()
    )
}

/// Waits until `file` on the remote holds `text` (rclone uploads a
/// file written through its cache shortly after it is closed).
pub(crate) fn wait_remote(plugin: &ManagedPlugin, file: &Path, text: &str) {
    plugin.wait(&format!("{} holds {text:?}", file.display()), || {
        fs::read_to_string(file).is_ok_and(|t| t == text)
    });
}

#[test]
fn sshfs_rclone_and_nfs_volumes_from_the_examples() {
    let mut plugin = ManagedPlugin::take(&[]);
    let sshd = Sshd::new();
    let key = plugin.install_key(&sshd);
    fs::write(sshd.remote_path("sshfs").join("existing.txt"), "kept").unwrap();
    let mut cleanup = Cleanup::new();

    // sshfs, key read through the sshkeys mount
    let by_sshfs = cleanup.volume(unique_name("mp-sshfs"));
    let remote = sshd.source("sshfs");
    plugin.example_ok(
        "sshfs.sh",
        &[&by_sshfs, &remote, &key],
        &[("SSHFS_OPTIONS", loopback_options(&sshd))],
    );
    run_in_container(&by_sshfs, "/data", "echo via-sshfs > /data/out.txt");
    let sshfs_out = sshd.remote_path("sshfs").join("out.txt");
    assert_eq!(fs::read_to_string(&sshfs_out).unwrap(), "via-sshfs\n");
    assert_eq!(
        run_in_container(&by_sshfs, "/data", "cat /data/existing.txt"),
        "kept"
    );
    let inspect = volume_inspect(&by_sshfs);
    assert_eq!(inspect["Driver"], plugin.driver(), "{inspect}");
    assert_eq!(inspect["Mountpoint"], format!("{MOUNT_ROOT}/{by_sshfs}"));
    assert_eq!(inspect["Status"]["state"], "mounted", "{inspect}");
    assert_eq!(inspect["Status"]["backend"], "sshfs", "{inspect}");
    assert_eq!(tool_argv(&plugin, "sshfs", &by_sshfs)[0], "sshfs");
    // The mount reaches the host through the propagated mount.
    let on_host = host_mountpoint(&plugin, &by_sshfs);
    assert!(is_mounted(&on_host), "{on_host} is not mounted on the host");

    // rclone, with a remote from rclone.conf in the rclone mount
    let section = unique_name("e2e");
    plugin.install_rclone_conf(&format!(
        "[{section}]\ntype = sftp\nhost = 127.0.0.1\nport = {}\nuser = root\n\
             key_file = {key}\nshell_type = unix\n",
        sshd.port()
    ));
    let by_rclone = cleanup.volume(unique_name("mp-rclone"));
    let remote = format!("{section}:{}", sshd.remote_path("rclone").display());
    plugin.example_ok("rclone.sh", &[&by_rclone, &remote], &[]);
    run_in_container(&by_rclone, "/data", "echo via-rclone > /data/out.txt");
    let rclone_out = sshd.remote_path("rclone").join("out.txt");
    wait_remote(&plugin, &rclone_out, "via-rclone\n");
    let status = plugin.mounted(&by_rclone);
    assert_eq!(status["backend"], "rclone", "{status}");
    let argv = tool_argv(&plugin, "rclone", &by_rclone);
    assert_eq!(
        argv[..argv.len().min(5)],
        [
            "rclone".to_owned(),
            "mount".into(),
            remote,
            format!("{MOUNT_ROOT}/{by_rclone}"),
            "--vfs-cache-mode=writes".into(),
        ]
    );
    // Its remote control, on a unix socket of netfs's, for the wait for
    // uploads at stop.
    assert_rc_socket(&argv[5..]);

    // nfs: mount.nfs runs in the plugin; this kernel (or the missing
    // server) refuses the mount, and nothing is left
    let by_nfs = unique_name("mp-nfs");
    let out = plugin.example(
        "nfs.sh",
        &[&by_nfs, "127.0.0.1:/export"],
        &[("NFS_OPTIONS", "vers=4.2,soft,retry=0".into())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an nfs volume without a server");
    assert!(stderr.contains("mount.nfs"), "{stderr}");

    docker_ok(&["volume", "rm", &by_sshfs, &by_rclone]);
    assert!(processes_with_arg(&format!("{MOUNT_ROOT}/{by_sshfs}")).is_empty());
    assert!(processes_with_arg(&format!("{MOUNT_ROOT}/{by_rclone}")).is_empty());
    assert!(!is_mounted(&on_host));
    assert_eq!(fs::read_to_string(&sshfs_out).unwrap(), "via-sshfs\n");
    assert_eq!(fs::read_to_string(&rclone_out).unwrap(), "via-rclone\n");
    assert_eq!(
        fs::read_to_string(sshd.remote_path("sshfs").join("existing.txt")).unwrap(),
        "kept",
        "removing the volumes left the remote alone"
    );
}

#[test]
fn docker_plugin_set_reaches_the_tools_argv() {
    let mut plugin = ManagedPlugin::take(&[
        (
            "MOUNT_OPTIONS",
            "reconnect,ServerAliveInterval=7,dir_cache=no",
        ),
        ("VOLUME_PROCESS_OPTIONS", "-C"),
        ("VOLUME_PROCESS_BINARY", "/usr/bin/sshfs"),
        ("MOUNT_OPTIONS_VOLUME_PROCESS_OPTION", "-o"),
    ]);
    let sshd = Sshd::new();
    let key = plugin.install_key(&sshd);
    let mut cleanup = Cleanup::new();

    // sshfs: the volume drops one plugin option and replaces another.
    let volume = cleanup.volume(unique_name("mp-set"));
    let o = format!(
        "dir_cache=-,ServerAliveInterval=9,{}",
        sshfs_options(&sshd, &key)
    );
    plugin.create(&volume, &[("source", sshd.source("")), ("o", o)]);
    let merged = format!(
        "reconnect,ServerAliveInterval=9,{}",
        sshfs_options(&sshd, &key)
    );
    let expected = [
        "sshfs".to_owned(),
        sshd.source(""),
        format!("{MOUNT_ROOT}/{volume}"),
        "-f".into(),
        "-C".into(),
        "-o".into(),
        merged.clone(),
        "-o".into(),
        "LogLevel=VERBOSE".into(),
    ];
    assert_eq!(tool_argv(&plugin, "sshfs", &volume), expected);
    let command = plugin.mounted(&volume)["command"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(command.contains(&format!(" -C -o '{merged}'")), "{command}");
    run_in_container(&volume, "/data", "echo set > /data/set.txt");
    assert_eq!(
        fs::read_to_string(sshd.remote_dir().join("set.txt")).unwrap(),
        "set\n"
    );

    // command, from the example: the binary and the option flag are the
    // plugin's, the rest of the argv the volume's.
    let by_command = cleanup.volume(unique_name("mp-command"));
    let remote = sshd.source("command");
    plugin.example_ok(
        "command.sh",
        &[&by_command, &remote, &key],
        &[("SSHFS_OPTIONS", loopback_options(&sshd))],
    );
    let expected = [
        "/usr/bin/sshfs".to_owned(),
        "-C".into(),
        remote,
        format!("{MOUNT_ROOT}/{by_command}"),
        "-f".into(),
        "-o".into(),
        format!(
            "reconnect,ServerAliveInterval=7,dir_cache=no,IdentityFile={key},{}",
            loopback_options(&sshd)
        ),
    ];
    assert_eq!(tool_argv(&plugin, "sshfs", &by_command), expected);
    run_in_container(&by_command, "/data", "echo command > /data/c.txt");
    assert_eq!(
        fs::read_to_string(sshd.remote_path("command").join("c.txt")).unwrap(),
        "command\n"
    );
}

/// The image records `netfs --build-info` as it saw the tools it ships, and
/// the plugin logs the same tools when it starts.
#[test]
fn the_plugin_records_its_build_and_logs_its_tools() {
    let plugin = ManagedPlugin::take(&[]);
    let rootfs = Path::new("/var/lib/docker/plugins")
        .join(plugin.id())
        .join("rootfs/usr/share/netfs");
    let text =
        fs::read_to_string(rootfs.join("build-info.json")).expect("build-info.json in the image");
    let info: serde_json::Value = serde_json::from_str(&text).expect("build-info.json is JSON");
    assert!(info["version"].is_string(), "{info}");
    assert!(info["profile"] == "release", "{info}");
    for tool in ["sshfs", "ssh", "rclone", "mount.nfs", "fusermount3"] {
        let found = info["tools"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["name"] == tool))
            .unwrap_or_else(|| panic!("{tool} in {info}"));
        assert_eq!(found["status"], "found", "the image ships {tool}: {found}");
        assert!(
            found["version"].as_str().is_some_and(|v| !v.is_empty()),
            "{found}"
        );
    }
    let human =
        fs::read_to_string(rootfs.join("build-info.txt")).expect("build-info.txt in the image");
    assert!(human.starts_with("netfs "), "{human}");

    // A start logs each tool once.
    let tag = format!("plugin={}", plugin.id());
    let logged = || {
        let log = fs::read_to_string(fixture::DOCKERD_LOG).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains(&tag) && l.contains("tool=sshfs") && l.contains("SSHFS version"))
            .count()
    };
    plugin.disable();
    let before = logged();
    plugin.enable();
    plugin.wait("the plugin logs its tools", || logged() > before);
}
