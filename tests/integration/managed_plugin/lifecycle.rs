//! The managed plugin going away and coming back: `docker plugin disable`
//! and `enable`, then a dockerd restart. Volumes stay listed, are mounted
//! again by the restarted plugin, and the remote's data is untouched.

use std::fs;

use crate::support::docker::{docker_ok, own_daemon, run_in_container, Cleanup};
use crate::support::mounts::processes_with_arg;
use crate::support::sshd::Sshd;
use crate::support::unique_name;

use super::fixture::{restart_dockerd, ManagedPlugin};
use super::{sshfs_options, MOUNT_ROOT};

/// The names of the plugin's volumes, as `docker volume ls` lists them
/// (asking only this driver).
fn listed(plugin: &ManagedPlugin) -> Vec<String> {
    let filter = format!("driver={}", plugin.driver());
    docker_ok(&["volume", "ls", "-q", "-f", &filter])
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn volumes_survive_plugin_disable_enable_and_a_dockerd_restart() {
    let mut plugin = ManagedPlugin::take(&[]);
    // From here until the end no other test uses dockerd, here or in
    // another process: this one restarts it.
    let _daemon = own_daemon();
    let sshd = Sshd::new();
    let key = plugin.install_key(&sshd);
    let remote = sshd.remote_dir().to_path_buf();
    fs::write(remote.join("existing.txt"), "kept").unwrap();
    let mut cleanup = Cleanup::new();
    let volume = cleanup.volume(unique_name("mp-life"));
    plugin.create(
        &volume,
        &[
            ("source", sshd.source("")),
            ("o", sshfs_options(&sshd, &key)),
        ],
    );
    run_in_container(&volume, "/data", "echo before > /data/before.txt");
    let mountpoint = format!("{MOUNT_ROOT}/{volume}");
    plugin.mounted(&volume);

    plugin.disable();
    assert!(!plugin.enabled());
    plugin.wait("the disabled plugin's sshfs is gone", || {
        processes_with_arg(&mountpoint).is_empty()
    });
    plugin.enable();
    assert_eq!(listed(&plugin), [volume.as_str()], "listed after enable");
    let status = plugin.mounted(&volume);
    assert!(status["pid"].is_i64(), "{status}");
    assert_eq!(
        run_in_container(
            &volume,
            "/data",
            "cat /data/before.txt; echo enabled > /data/enabled.txt"
        ),
        "before\n"
    );

    restart_dockerd();
    plugin.wait("dockerd enables the plugin again", || plugin.enabled());
    assert_eq!(
        listed(&plugin),
        [volume.as_str()],
        "listed after a dockerd restart"
    );
    plugin.mounted(&volume);
    assert_eq!(
        run_in_container(
            &volume,
            "/data",
            "cat /data/before.txt /data/enabled.txt; echo restarted > /data/restarted.txt"
        ),
        "before\nenabled\n"
    );

    for (file, text) in [
        ("existing.txt", "kept"),
        ("before.txt", "before\n"),
        ("enabled.txt", "enabled\n"),
        ("restarted.txt", "restarted\n"),
    ] {
        assert_eq!(
            fs::read_to_string(remote.join(file)).unwrap(),
            text,
            "{file}"
        );
    }
    let mut names: Vec<_> = fs::read_dir(&remote)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["before.txt", "enabled.txt", "existing.txt", "restarted.txt"],
        "nothing else on the remote"
    );
}
