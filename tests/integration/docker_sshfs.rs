//! sshfs volumes through a real dockerd: the plugin binary as a host service
//! on its own socket, containers of the test image writing to a real sshd.

use std::time::Duration;

use serde_json::json;

use crate::support::docker::{
    docker_ok, require_docker, run_in_container, volume_inspect, Cleanup,
};
use crate::support::mounts::{is_mounted, processes_with_arg, wait_until};
use crate::support::plugin::Plugin;
use crate::support::sshd::Sshd;
use crate::support::unique_name;

fn plugin() -> Plugin {
    Plugin::new(env!("CARGO_BIN_EXE_netfs"))
        .arg("--mount-timeout=15s")
        .start()
}

fn create(plugin: &Plugin, sshd: &Sshd, volume: &str) {
    let source = format!("source={}", sshd.source(""));
    let o = format!("o={}", sshd.sshfs_options());
    docker_ok(&[
        "volume",
        "create",
        "-d",
        plugin.driver_name(),
        "-o",
        &source,
        "-o",
        &o,
        volume,
    ]);
}

#[test]
fn container_writes_through_sshfs_and_remove_leaves_nothing_behind() {
    require_docker();
    let sshd = Sshd::new();
    std::fs::write(sshd.remote_dir().join("existing.txt"), "kept").unwrap();
    let plugin = plugin();
    let mut cleanup = Cleanup::new();
    let volume = cleanup.volume(unique_name("vol"));
    create(&plugin, &sshd, &volume);

    run_in_container(
        &volume,
        "/data",
        "echo written-by-container > /data/out.txt",
    );
    let remote =
        std::fs::read_to_string(sshd.remote_dir().join("out.txt")).expect("file on the remote");
    assert_eq!(remote, "written-by-container\n");
    assert_eq!(
        run_in_container(&volume, "/data", "cat /data/existing.txt"),
        "kept"
    );

    let inspect = volume_inspect(&volume);
    assert_eq!(inspect["Driver"], plugin.driver_name());
    let status = &inspect["Status"];
    assert_eq!(status["state"], "mounted", "{inspect}");
    assert_eq!(status["source"], sshd.source(""));
    let command = status["command"].as_str().expect("command in Status");
    assert!(
        command.starts_with("sshfs ") && command.contains(" -f "),
        "{command}"
    );
    assert!(status["pid"].as_i64().is_some(), "{status}");

    let mountpoint = plugin.mount_root().join(&volume);
    docker_ok(&["volume", "rm", &volume]);
    assert!(!is_mounted(&mountpoint), "no mount left");
    assert!(!mountpoint.exists(), "no mountpoint directory left");
    assert!(
        processes_with_arg(mountpoint.to_str().unwrap()).is_empty(),
        "no sshfs left"
    );
    assert_eq!(
        std::fs::read_to_string(sshd.remote_dir().join("out.txt")).unwrap(),
        "written-by-container\n"
    );
    assert_eq!(
        std::fs::read_to_string(sshd.remote_dir().join("existing.txt")).unwrap(),
        "kept"
    );
}

#[test]
fn a_volume_survives_sigkill_of_the_plugin() {
    require_docker();
    let sshd = Sshd::new();
    // Without re-attach, so that the ID taken before the crash is listed
    // as holding the old mount (re-attach's own tests are in reattach.rs).
    let mut plugin = Plugin::new(env!("CARGO_BIN_EXE_netfs"))
        .args(["--mount-timeout=15s", "--reattach=false"])
        .start();
    let mut cleanup = Cleanup::new();
    let volume = cleanup.volume(unique_name("vol"));
    create(&plugin, &sshd, &volume);
    let (status, _) = plugin.post(
        "/VolumeDriver.Mount",
        json!({"Name": volume, "ID": "before-crash"}),
    );
    assert_eq!(status, 200);
    let old_pid = volume_inspect(&volume)["Status"]["pid"].as_i64().unwrap();

    plugin.kill9();
    plugin.restart();

    let mountpoint = plugin.mount_root().join(&volume);
    let (_, list) = plugin.post("/VolumeDriver.List", json!({}));
    assert!(
        list["Volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["Name"] == volume.as_str()),
        "{list}"
    );
    wait_until(Duration::from_secs(15), "volume mounted again", || {
        volume_inspect(&volume)["Status"]["state"] == "mounted"
    });
    let status = volume_inspect(&volume)["Status"].clone();
    assert_ne!(
        status["pid"].as_i64().unwrap(),
        old_pid,
        "a new sshfs serves the volume"
    );
    assert_eq!(
        status["mountIds"],
        json!(["before-crash"]),
        "the refcount survived"
    );
    assert_eq!(status["mountIdsBeforeLastRestart"], json!(["before-crash"]));
    assert!(is_mounted(&mountpoint));
    run_in_container(&volume, "/data", "echo after > /data/after.txt");
    assert_eq!(
        std::fs::read_to_string(sshd.remote_dir().join("after.txt")).unwrap(),
        "after\n"
    );
    let (status, _) = plugin.post(
        "/VolumeDriver.Unmount",
        json!({"Name": volume, "ID": "before-crash"}),
    );
    assert_eq!(status, 200);
}
