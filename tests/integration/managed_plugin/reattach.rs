//! Running containers keep their volumes through the managed plugin's
//! restart: after `docker plugin disable -f` and `enable`, the plugin
//! restores the volume and puts the new mount inside the containers that
//! held the old one, as root and as another user, read-write and read-only.

use std::fs;
use std::time::Duration;

use crate::reattach::{exec, start_container, wait_reads, write_reaches};
use crate::support::docker::{docker_ok, volume_inspect, Cleanup, TEST_IMAGE};
use crate::support::sshd::Sshd;
use crate::support::unique_name;

use super::fixture::{ManagedPlugin, ARM64_PLUGIN_VAR};
use super::sshfs_options;

#[test]
fn running_containers_get_their_volume_back_after_plugin_disable_and_enable() {
    let took = back_after_disable_and_enable(ManagedPlugin::take(&[]));
    eprintln!(
        "reattach: managed plugin enabled to the first good read inside the container: {} ms",
        took.as_millis()
    );
}

/// The same plugin built for arm64 (`PLUGIN_ARCH=arm64`), its netfs, sshfs
/// and ssh running under QEMU's emulator on this machine's dockerd.
#[test]
fn the_arm64_plugin_under_emulation_gives_running_containers_their_volume_back() {
    let plugin = ManagedPlugin::take_named_in(ARM64_PLUGIN_VAR, &[]);
    let id = docker_ok(&["plugin", "inspect", "--format", "{{.Id}}", plugin.name()]);
    let netfs = format!("/var/lib/docker/plugins/{}/rootfs/usr/bin/netfs", id.trim());
    let elf = fs::read(&netfs).unwrap_or_else(|e| panic!("{netfs}: {e}"));
    // e_machine 0xB7: aarch64.
    assert_eq!(
        elf.get(18..20),
        Some(&[0xB7, 0][..]),
        "{netfs} is not arm64"
    );
    let took = back_after_disable_and_enable(plugin);
    eprintln!(
        "reattach: the arm64 plugin (under emulation) enabled to the first good read inside \
         the container: {} ms",
        took.as_millis()
    );
}

/// Three holders (read-write, `:ro`, another user) of an sshfs volume read
/// and write again after `docker plugin disable -f` and `enable`; returns
/// the time from the enable to the first good read.
fn back_after_disable_and_enable(mut plugin: ManagedPlugin) -> Duration {
    let sshd = Sshd::new();
    let key = plugin.install_key(&sshd);
    let remote = sshd.remote_dir().to_path_buf();
    fs::create_dir_all(remote.join("sub")).unwrap();
    fs::write(remote.join("sub/f"), "before").unwrap();
    let mut cleanup = Cleanup::new();
    let volume = cleanup.volume(unique_name("mp-reattach"));
    plugin.create(
        &volume,
        &[
            ("source", sshd.source("")),
            ("o", format!("{},allow_other", sshfs_options(&sshd, &key))),
        ],
    );
    let root = start_container(&mut cleanup, &format!("{volume}:/data"));
    let ro = start_container(&mut cleanup, &format!("{volume}:/ro:ro"));
    // Another user, whose processes netfs may only look into with
    // CAP_SYS_PTRACE.
    let user = cleanup.container(unique_name("reattach-user"));
    docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        &user,
        "--user",
        "1000",
        "-v",
        &format!("{volume}:/data"),
        TEST_IMAGE,
        "sleep",
        "3600",
    ]);
    wait_reads(&root, "/data/sub/f", "before");
    wait_reads(&user, "/data/sub/f", "before");

    plugin.disable();
    assert!(
        !exec(&root, "cat /data/sub/f").status.success(),
        "dead while the plugin is disabled"
    );
    plugin.enable();
    let took = wait_reads(&root, "/data/sub/f", "before");
    write_reaches(&root, "/data/sub/w", &remote.join("sub/w"), "after-enable");
    wait_reads(&ro, "/ro/sub/w", "after-enable\n");
    assert!(
        !exec(&ro, "echo no > /ro/no").status.success(),
        "a :ro holder stays read-only"
    );
    wait_reads(&user, "/data/sub/f", "before");
    let status = volume_inspect(&volume)["Status"].clone();
    assert_eq!(
        status["reattach"]["total"],
        3,
        "{status}\n{}",
        plugin.log_tail()
    );
    took
}
