//! The managed plugin's netfs is PID 1 of the plugin's pid namespace: every
//! orphan there is its child (sshfs double-forks its ssh, so each ssh is
//! one from the start). Killing sshfs and its ssh again and again must
//! leave no zombie behind it.

use serde_json::{json, Value};

use crate::processes::{ssh_of, stat, zombie_children};
use crate::support::client;
use crate::support::docker::Cleanup;
use crate::support::mounts::{poll_until, processes_with_arg};
use crate::support::sshd::Sshd;
use crate::support::unique_name;

use super::fixture::{ManagedPlugin, T};
use super::{sshfs_options, MOUNT_ROOT};

/// The host pid of a live sshfs for `volume` other than `not`, if any.
fn sshfs_now(volume: &str, not: Option<i32>) -> Option<i32> {
    let mountpoint = format!("{MOUNT_ROOT}/{volume}");
    processes_with_arg(&mountpoint)
        .into_iter()
        .filter(|(pid, argv)| {
            argv.first().is_some_and(|a| a == "sshfs")
                && Some(*pid) != not
                && stat(*pid).is_some_and(|s| s.state != 'Z')
        })
        .map(|(pid, _)| pid)
        .next()
}

/// The host pid of the sshfs serving `volume`, once there is one other
/// than `not`.
fn sshfs_serving(plugin: &ManagedPlugin, volume: &str, not: Option<i32>) -> i32 {
    let mut found = None;
    plugin.wait(&format!("a new sshfs serves {MOUNT_ROOT}/{volume}"), || {
        found = sshfs_now(volume, not);
        found.is_some()
    });
    found.expect("an sshfs")
}

/// The pid `pid` has inside its own pid namespace (the last of `NSpid`).
fn pid_in_namespace(pid: i32) -> Option<i32> {
    let status = netfs::procfs::status(pid)?;
    let nspid = netfs::procfs::status_field(&status, "NSpid")?;
    nspid.split_whitespace().last()?.parse().ok()
}

/// Releases the test's own mount ID however the test ends, so that its
/// volume can be removed and no later test finds it in use.
struct Release<'a>(&'a str, &'a str);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let _ = client::post(
            self.0.as_ref(),
            "/VolumeDriver.Unmount",
            json!({"Name": self.1, "ID": "reaper-test"}),
        );
    }
}

#[test]
fn sshfs_and_its_ssh_killed_20_times_leave_no_zombie_in_the_plugin() {
    let mut plugin = ManagedPlugin::take(&[("VOLUME_PROCESS_RECOVERY_MAX_PER_MIN", "100")]);
    let sshd = Sshd::new();
    let key = plugin.install_key(&sshd);
    let mut cleanup = Cleanup::new();
    let volume = cleanup.volume(unique_name("mp-reap"));
    plugin.create(
        &volume,
        &[
            ("source", sshd.source("")),
            ("o", sshfs_options(&sshd, &key)),
        ],
    );
    // The plugin's socket as the host sees it: Mount straight to it starts
    // a crashed volume at once, without waiting out the restart backoff.
    let socket = format!("/run/docker/plugins/{}/netfs.sock", plugin.id());
    let call = |endpoint: &str, body: Value| client::post(socket.as_ref(), endpoint, body);
    let _release = Release(&socket, &volume);
    let mut sshfs = sshfs_serving(&plugin, &volume, None);
    let netfs = stat(sshfs).expect("sshfs runs").ppid;
    assert_eq!(
        pid_in_namespace(netfs),
        Some(1),
        "netfs is PID 1 of the plugin"
    );
    let rounds = 20;
    for round in 0..rounds {
        // sshfs forks its ssh as it starts (and again if it reconnects):
        // wait for the one serving the mount to have exactly one. On a
        // busy machine the restart may itself fail and be retried, so the
        // sshfs is looked up again while waiting.
        let mut ssh = Vec::new();
        let one = poll_until(T, || {
            if let Some(now) = sshfs_now(&volume, None) {
                sshfs = now;
            }
            ssh = ssh_of(sshfs);
            ssh.len() == 1
        });
        assert!(
            one,
            "round {round}: sshfs {sshfs} has one ssh: {ssh:?}\n{}",
            plugin.log_tail()
        );
        // An orphan from the start: nothing but netfs can reap it.
        assert_eq!(stat(ssh[0]).map(|s| s.ppid), Some(netfs), "round {round}");
        let victim = if round % 2 == 0 { sshfs } else { ssh[0] };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(victim),
            nix::sys::signal::Signal::SIGKILL,
        );
        let old = sshfs;
        let back = poll_until(T, || {
            let _ = call(
                "/VolumeDriver.Mount",
                json!({"Name": volume, "ID": "reaper-test"}),
            );
            let (_, got) = call("/VolumeDriver.Get", json!({"Name": volume}));
            got["Volume"]["Status"]["state"] == "mounted"
                && processes_with_arg(&format!("{MOUNT_ROOT}/{volume}"))
                    .iter()
                    .any(|(pid, argv)| *pid != old && argv.first().is_some_and(|a| a == "sshfs"))
        });
        assert!(
            back,
            "round {round}: not mounted again\n{}",
            plugin.log_tail()
        );
        sshfs = sshfs_serving(&plugin, &volume, Some(old));
    }
    let mut zombies = Vec::new();
    let clean = poll_until(std::time::Duration::from_secs(10), || {
        zombies = zombie_children(netfs);
        zombies.is_empty()
    });
    let (code, reply) = call(
        "/VolumeDriver.Unmount",
        json!({"Name": volume, "ID": "reaper-test"}),
    );
    assert_eq!(code, 200, "{reply}");
    assert!(
        clean,
        "zombies of the plugin's netfs: {zombies:?}\n{}",
        plugin.log_tail()
    );
    crate::support::report(
        "processes",
        &format!("managed plugin: sshfs and ssh killed {rounds} times, 0 zombies under PID 1"),
    );
}
