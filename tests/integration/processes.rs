//! netfs as the parent of its tools, as a host service: it keeps the
//! orphans its tools leave (a child subreaper) and reaps every one of them,
//! so no zombie is left after any number of restarts; it recognises an
//! earlier run's tools by their mark, not their argv; and a tool that
//! writes without newlines costs it bounded memory.

use std::fs;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::support::calls::{create_ok, mount, status, try_status};
pub use crate::support::mounts::stat;
use crate::support::mounts::{all_pids, cmdline, poll_until, processes_with_arg, wait_until};
use crate::support::plugin::Plugin;
use crate::support::sshd::Sshd;
use crate::support::unique_name;

const T: Duration = Duration::from_secs(30);

/// Zombies whose parent is `parent`, with their command names.
pub fn zombie_children(parent: i32) -> Vec<(i32, String)> {
    all_pids()
        .into_iter()
        .filter_map(|p| Some((p, stat(p)?)))
        .filter(|(_, s)| s.state == 'Z' && s.ppid == parent)
        .map(|(p, s)| (p, s.comm))
        .collect()
}

/// The live ssh processes in the process group of `sshfs`.
pub fn ssh_of(sshfs: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|p| stat(*p).is_some_and(|s| s.state != 'Z' && s.pgrp == sshfs && s.comm == "ssh"))
        .collect()
}

/// The daemons the tool left, found by their tag; killed (with their
/// sessions) when dropped, however the test ends.
struct Daemons(String);

impl Daemons {
    fn live(&self) -> Vec<i32> {
        processes_with_arg(&self.0)
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| stat(*p).is_some_and(|s| s.state != 'Z'))
            .collect()
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for pid in self.live() {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn kill9(pid: i32) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// A tool for type `command` that leaves a daemon behind (as tools that
/// daemonise helpers do), tagged `tag`, then becomes sshfs.
fn daemonising_sshfs(dir: &Path, tag: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("daemonising-sshfs");
    let body = format!(
        "#!/bin/sh\n\
         (setsid sh -c 'sleep 600; :' {tag} </dev/null >/dev/null 2>&1 &)\n\
         exec sshfs \"$@\"\n"
    );
    fs::write(&path, body).expect("write the tool");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod the tool");
    path
}

/// Kills the volume's sshfs (even rounds) or its ssh (odd rounds), then
/// mounts again at once (a Mount starts a crashed volume without waiting
/// out its backoff) until another sshfs serves it; returns the new pid.
fn crash_and_remount(plugin: &Plugin, volume: &str, round: usize, sshfs: i32) -> i32 {
    // sshfs double-forks its ssh: it is in sshfs's process group, and an
    // orphan from the start.
    let ssh = ssh_of(sshfs);
    assert_eq!(ssh.len(), 1, "sshfs {sshfs} has one ssh: {ssh:?}");
    kill9(if round % 2 == 0 { sshfs } else { ssh[0] });
    let mut new = None;
    let back = poll_until(T, || {
        let _ = mount(plugin, volume, "c1");
        let st = try_status(plugin, volume).unwrap_or(Value::Null);
        new = st["pid"].as_i64().map(|p| p as i32);
        st["state"] == "mounted" && new.is_some_and(|p| p != sshfs)
    });
    assert!(
        back,
        "round {round}: {volume} was not mounted again\n{}",
        plugin.log()
    );
    new.expect("a pid")
}

#[test]
fn sshfs_and_its_ssh_killed_20_times_leave_no_zombie_and_orphans_stay_netfs_children() {
    let sshd = Sshd::new();
    let dir = tempfile::tempdir().expect("tool dir");
    let tag = unique_name("netfs-daemon");
    let tool = daemonising_sshfs(dir.path(), &tag);
    let plugin = Plugin::new(env!("CARGO_BIN_EXE_netfs"))
        .args([
            "--mount-timeout=20s",
            "--volume-process-recovery-max-per-min=100",
        ])
        .env("VOLUME_PROCESS_BINARY", &tool)
        .start();
    let netfs = plugin.pid() as i32;
    let volume = "reaped";
    let opts = json!({
        "type": "command",
        "source": sshd.source("reaped"),
        "c": format!("{{source}}&{{mountPoint}}&-f&-o&{}", sshd.sshfs_options()),
    });
    create_ok(&plugin, volume, opts);
    let mut sshfs = status(&plugin, volume)["pid"].as_i64().expect("a pid") as i32;
    // The daemon's parent exited at once: netfs, a subreaper, took it.
    let guard = Daemons(tag.clone());
    let daemons = || guard.live();
    wait_until(T, "the tool's daemon runs", || !daemons().is_empty());
    let first = daemons()[0];
    assert_eq!(
        stat(first).map(|s| s.ppid),
        Some(netfs),
        "the orphaned daemon {:?} is netfs's child",
        cmdline(first)
    );
    let rounds = 20;
    for round in 0..rounds {
        sshfs = crash_and_remount(&plugin, volume, round, sshfs);
    }
    // One daemon per start, every one of them netfs's; then they die too.
    let left = daemons();
    assert_eq!(left.len(), rounds + 1, "{left:?}");
    for pid in &left {
        assert_eq!(stat(*pid).map(|s| s.ppid), Some(netfs), "{pid}");
        // With its own child (the sleep), which is then an orphan too.
        let _ = killpg(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let mut zombies = Vec::new();
    let clean = poll_until(Duration::from_secs(10), || {
        zombies = zombie_children(netfs);
        zombies.is_empty() && daemons().is_empty()
    });
    assert!(clean, "zombies of netfs: {zombies:?}\n{}", plugin.log());
    crate::support::report(
        "processes",
        &format!(
            "host service: sshfs and ssh killed {rounds} times, {} orphans adopted and killed, 0 zombies",
            rounds + 1
        ),
    );
}

/// Peak resident memory of `pid` in KiB (VmHWM).
fn peak_rss_kib(pid: u32) -> u64 {
    netfs::procfs::status_kib(pid as i32, "VmHWM").expect("VmHWM in status")
}

#[test]
fn a_tool_writing_64_mib_without_a_newline_costs_bounded_memory_and_is_logged_cut() {
    use std::os::unix::fs::PermissionsExt;
    const MIB: u64 = 64;
    let dir = tempfile::tempdir().expect("tool dir");
    let tool = dir.path().join("chatty-tool");
    fs::write(
        &tool,
        format!(
            "#!/bin/sh\n\
             head -c {} /dev/zero | tr '\\0' x >&2\n\
             printf '\\nafter the long line\\n' >&2\n\
             exit 3\n",
            MIB << 20
        ),
    )
    .expect("write the tool");
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).expect("chmod the tool");
    let plugin = Plugin::new(env!("CARGO_BIN_EXE_netfs"))
        .arg("--mount-timeout=60s")
        .env("VOLUME_PROCESS_BINARY", &tool)
        .start();
    let before = peak_rss_kib(plugin.pid());
    let (code, reply) =
        crate::support::calls::create(&plugin, "chatty", json!({"type": "command"}));
    assert_eq!(code, 500, "{reply}");
    let err = crate::support::client::err_of(&reply);
    assert!(
        err.contains("exited (exit status 3)") && err.contains("after the long line"),
        "{err}"
    );
    let peak = peak_rss_kib(plugin.pid());
    // 64 MiB went through; netfs grew by far less than that.
    assert!(
        peak < before + 16 * 1024,
        "peak RSS {peak} KiB, {before} KiB before"
    );
    let log = plugin.log();
    let cut: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("[cut: line longer than"))
        .collect();
    assert_eq!(cut.len(), 1, "one line logged cut");
    assert!(
        cut[0].len() < 10_000,
        "the cut line is short: {} bytes",
        cut[0].len()
    );
    assert!(log.contains("after the long line"), "the pump went on");
    crate::support::report(
        "processes",
        &format!(
            "a tool wrote {MIB} MiB without a newline: logged as one cut line of {} bytes; peak RSS {before} -> {peak} KiB",
            cut[0].len()
        ),
    );
}

/// The value of `key` in the environment of `pid`.
fn environ_var(pid: i32, key: &str) -> Option<String> {
    let environ = netfs::procfs::environ(pid)?;
    netfs::procfs::env_var(&environ, key).map(str::to_owned)
}

/// netfs is killed while a Create waits for its tool; the next start
/// kills that tool, which it knows by the mark netfs gave it (its argv
/// does not name the volume), and leaves alone an administrator's command
/// whose argv names the volume's directory.
#[test]
fn leftovers_are_known_by_their_mark_and_an_admins_du_on_a_volume_dir_survives() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tool dir");
    let tool = dir.path().join("slow-tool");
    fs::write(&tool, "#!/bin/sh\nexec sleep 300\n").expect("write the tool");
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).expect("chmod the tool");
    let mut plugin = Plugin::new(env!("CARGO_BIN_EXE_netfs"))
        .arg("--mount-timeout=120s")
        .env("VOLUME_PROCESS_BINARY", &tool)
        .start();
    let netfs = plugin.pid() as i32;
    let root = plugin.mount_root();
    let pending = crate::support::gate::send_in_background(
        plugin.socket(),
        "/VolumeDriver.Create",
        json!({"Name": "half", "Opts": {"type": "command"}}),
    );
    let mut tool_pid = None;
    wait_until(T, "the tool runs", || {
        tool_pid = all_pids().into_iter().find(|p| {
            stat(*p).is_some_and(|s| s.ppid == netfs)
                && cmdline(*p).first().is_some_and(|a| a == "sleep")
        });
        tool_pid.is_some()
    });
    let tool_pid = tool_pid.expect("the tool");
    assert_eq!(
        environ_var(tool_pid, "NETFS_VOLUME").as_deref(),
        Some("half")
    );
    assert_eq!(
        environ_var(tool_pid, "NETFS_MOUNT_ROOT").as_deref(),
        root.to_str()
    );
    plugin.kill9();
    assert!(
        pending.join().expect("join").is_err(),
        "the Create got no answer"
    );
    // An administrator looks at the volume's directory meanwhile.
    let admin_dir = root.join("half");
    let out = std::process::Command::new("setsid")
        .args(["-f", "sh", "-c", "sleep 300; :", "du"])
        .arg(&admin_dir)
        .status()
        .expect("start the admin's command");
    assert!(out.success());
    let mut admin = None;
    wait_until(T, "the admin's command runs", || {
        admin = processes_with_arg(admin_dir.to_str().expect("utf-8"))
            .into_iter()
            .find(|(_, argv)| argv.first().is_some_and(|a| a == "sh"))
            .map(|(p, _)| p);
        admin.is_some()
    });
    let admin = admin.expect("the admin's command");
    let _admin_gone = KillOnDrop(admin);
    plugin.restart();
    wait_until(T, "the leftover tool is gone", || {
        stat(tool_pid).is_none_or(|s| s.state == 'Z')
    });
    assert!(
        stat(admin).is_some_and(|s| s.state != 'Z'),
        "the admin's command was killed\n{}",
        plugin.log()
    );
    assert!(try_status(&plugin, "half").is_none(), "no half-made volume");
    crate::support::report(
        "processes",
        "leftovers: the marked tool of a killed run was killed, an admin's command naming the volume dir was left alone",
    );
}

/// Kills a process group when dropped, however the test ends.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.0), Signal::SIGKILL);
    }
}
