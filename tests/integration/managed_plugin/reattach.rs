//! Running containers keep their volumes through the managed plugin's
//! restart: after `docker plugin disable -f` and `enable`, the plugin
//! restores the volume and puts the new mount inside the containers that
//! held the old one, as root and as another user, read-write and read-only.

use std::fs;

use crate::reattach::{exec, start_container, wait_reads, write_reaches};
use crate::support::docker::{docker_ok, volume_inspect, Cleanup, TEST_IMAGE};
use crate::support::sshd::Sshd;
use crate::support::unique_name;

use super::fixture::ManagedPlugin;
use super::sshfs_options;

#[test]
fn running_containers_get_their_volume_back_after_plugin_disable_and_enable() {
    let mut plugin = ManagedPlugin::take(&[]);
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
    eprintln!(
        "reattach: managed plugin enabled to the first good read inside the container: {} ms",
        took.as_millis()
    );
}
