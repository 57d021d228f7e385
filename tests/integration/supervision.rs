//! Volume processes under supervision, against the real tools: sshfs killed
//! with SIGKILL comes back by itself, a crash loop fails the volume until
//! the next Mount, a down sshd costs no CPU and heals, SIGTERM to the plugin stops
//! everything and a new start restores it, and lifecycle `mount` runs a
//! process only while a container uses the volume.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::support::calls::{
    create, create_ok, mount, sshfs_opts, start, status, unmount, wait_state,
};
use crate::support::client::err_of;
use crate::support::docker::{
    docker_ok, require_docker, run_in_container, volume_inspect, Cleanup, TEST_IMAGE,
};
use crate::support::mounts::{is_mounted, mounts_under, process_alive, processes_with_arg};
use crate::support::sshd::Sshd;
use crate::support::{unique_name, wait_until};

const T: Duration = Duration::from_secs(20);

/// Plugin CPU time (user + system, all threads) in seconds, from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = netfs::procfs::stat(pid as i32).expect("read plugin stat");
    (stat.utime + stat.stime) as f64 / netfs::procfs::ticks_per_second()
}

fn kill9(pid: i64) {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill -9 the volume process");
}

pub fn pid_of(status: &Value) -> i64 {
    status["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no pid in {status}"))
}

/// A file written through `mountpoint` shows up in `remote`.
pub fn assert_writes_through(mountpoint: &Path, remote: &Path, file: &str) {
    fs::write(mountpoint.join(file), file).expect("write through the mount");
    assert_eq!(fs::read_to_string(remote.join(file)).unwrap(), file);
}

/// An executable shell script in a fresh temporary directory.
pub fn script(body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("script dir");
    let path = dir.path().join("mount-tool");
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod script");
    (dir, path)
}

#[test]
fn sshfs_killed_with_sigkill_is_mounted_again_and_serves_new_containers() {
    require_docker();
    let sshd = Sshd::new();
    // Without re-attach, the holder keeps the dead mount and Status says so
    // (with it, reattach.rs shows the holder given the new one).
    let plugin = start(&["--reattach=false"]);
    let mut cleanup = Cleanup::new();
    let volume = cleanup.volume(unique_name("sup"));
    let (source, o) = (
        format!("source={}", sshd.source("")),
        format!("o={}", sshd.sshfs_options()),
    );
    let driver = plugin.driver_name();
    docker_ok(&[
        "volume", "create", "-d", driver, "-o", &source, "-o", &o, &volume,
    ]);
    // A container that holds the mount through the crash.
    let holder = cleanup.container(unique_name("holder"));
    let bind = format!("{volume}:/data");
    docker_ok(&[
        "run", "-d", "--name", &holder, "-v", &bind, TEST_IMAGE, "sleep", "600",
    ]);
    let before = status(&plugin, &volume);
    let old = pid_of(&before);

    let killed = Instant::now();
    kill9(old);
    wait_until(T, "a new sshfs has mounted the volume", || {
        let s = status(&plugin, &volume);
        s["state"] == "mounted" && s["pid"].as_i64().is_some_and(|p| p != old)
    });
    eprintln!("sshfs mounted again {:?} after kill -9", killed.elapsed());

    let after = volume_inspect(&volume)["Status"].clone();
    assert_eq!(after["restarts"], 1, "{after}");
    let error = after["lastError"].as_str().unwrap_or_default();
    assert!(error.contains("killed by signal 9"), "{after}");
    assert_eq!(
        after["mountIds"].as_array().map(Vec::len),
        Some(1),
        "{after}"
    );
    assert_eq!(
        after["mountIdsBeforeLastRestart"], after["mountIds"],
        "the holder's mount predates the restart: {after}"
    );
    let out = run_in_container(
        &volume,
        "/data",
        "echo new > /data/new.txt && cat /data/new.txt",
    );
    assert_eq!(out, "new\n");
    assert_eq!(
        fs::read_to_string(sshd.remote_dir().join("new.txt")).unwrap(),
        "new\n"
    );
    assert_eq!(
        volume_inspect(&volume)["Status"]["mountIdsBeforeLastRestart"],
        after["mountIds"],
        "a container started after the restart is not listed as before it"
    );
}

/// Kills the volume's process `times` times, each time once it is mounted
/// again; returns the pid killed last.
fn crash(plugin: &crate::support::plugin::Plugin, name: &str, times: usize) -> i64 {
    let mut pid = 0;
    for n in 1..=times {
        pid = pid_of(&wait_state(plugin, name, "mounted", T));
        kill9(pid);
        if n < times {
            wait_until(T, "restarted", || {
                let s = status(plugin, name);
                s["state"] == "mounted" && s["pid"].as_i64() != Some(pid)
            });
        }
    }
    pid
}

#[test]
fn more_crashes_than_allowed_fail_the_volume_and_the_next_mount_tries_afresh() {
    let sshd = Sshd::new();
    let plugin = start(&["--volume-process-recovery-max-per-min=2"]);
    let name = unique_name("loop");
    create_ok(&plugin, &name, sshfs_opts(&sshd, ""));
    let mountpoint = plugin.mount_root().join(&name);

    crash(&plugin, &name, 3);
    let failed = wait_state(&plugin, &name, "failed", T);
    let error = failed["lastError"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("died 3 times within a minute"), "{failed}");
    assert!(
        error.contains("--volume-process-recovery-max-per-min=2"),
        "{failed}"
    );
    assert!(error.contains("the next Mount starts it again"), "{failed}");
    assert!(error.contains("killed by signal 9"), "{failed}");
    assert_eq!(failed["restarts"], 2, "{failed}");
    assert!(!is_mounted(&mountpoint));
    assert!(processes_with_arg(mountpoint.to_str().unwrap()).is_empty());

    // The remote is fine: the next Mount mounts at once, and Status keeps
    // the history.
    let started = Instant::now();
    let (code, reply) = mount(&plugin, &name, "next");
    assert_eq!(code, 200, "{reply}\n{}", plugin.log());
    assert!(started.elapsed() < T, "{:?}", started.elapsed());
    let st = status(&plugin, &name);
    assert_eq!(st["state"], "mounted", "{st}");
    assert_eq!(st["restarts"], 2, "{st}");
    assert!(
        st["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("died 3 times within a minute")),
        "{st}"
    );
    assert_writes_through(&mountpoint, sshd.remote_dir(), "next.txt");

    // The budget counts again from that Mount: two more crashes within the
    // same minute are restarted, the third fails the volume again.
    crash(&plugin, &name, 3);
    let failed = wait_state(&plugin, &name, "failed", T);
    assert_eq!(failed["restarts"], 4, "{failed}");
    let (code, reply) = mount(&plugin, &name, "again");
    assert_eq!(code, 200, "{reply}\n{}", plugin.log());
    assert_writes_through(&mountpoint, sshd.remote_dir(), "again.txt");
}

#[test]
fn a_down_sshd_fails_calls_within_the_mount_timeout_costs_no_cpu_and_heals() {
    let mut sshd = Sshd::new();
    let plugin = start(&["--mount-timeout=5s"]);
    let timeout = Duration::from_secs(5);
    let name = unique_name("down");
    create_ok(&plugin, &name, sshfs_opts(&sshd, ""));
    let mountpoint = plugin.mount_root().join(&name);

    sshd.stop();
    let restarting = wait_state(&plugin, &name, "restarting", T);
    eprintln!("while sshd is down: {restarting}");

    let other = unique_name("new");
    let t = Instant::now();
    let (code, reply) = create(&plugin, &other, sshfs_opts(&sshd, ""));
    let took = t.elapsed();
    assert_eq!(code, 500, "{reply}");
    let err = err_of(&reply);
    assert!(
        took < timeout + Duration::from_secs(2),
        "Create took {took:?}"
    );
    assert!(
        err.contains("sshfs") && err.contains("Connection refused"),
        "{err}"
    );
    let (_, list) = plugin.post("/VolumeDriver.List", json!({}));
    assert!(
        !list.to_string().contains(&other),
        "a failed Create keeps nothing: {list}"
    );
    assert!(!plugin.mount_root().join(&other).exists());

    let t = Instant::now();
    let (code, reply) = mount(&plugin, &name, "while-down");
    let took = t.elapsed();
    assert_eq!(code, 500, "{reply}");
    assert!(
        took < timeout + Duration::from_secs(2),
        "Mount took {took:?}"
    );
    assert!(err_of(&reply).contains("Connection refused"), "{reply}");

    // Measured while the plugin only waits and retries: the test watches
    // its log meanwhile, not its socket, so as not to load it.
    let retries = |log: String| log.matches("will retry").count();
    let (cpu_before, started) = (cpu_seconds(plugin.pid()), Instant::now());
    let n0 = retries(plugin.log());
    wait_until(
        Duration::from_secs(60),
        "10 s and three more retries",
        || started.elapsed() >= Duration::from_secs(10) && retries(plugin.log()) >= n0 + 3,
    );
    let cpu = cpu_seconds(plugin.pid()) - cpu_before;
    let wall = started.elapsed().as_secs_f64();
    eprintln!(
        "plugin CPU while sshd was down: {cpu:.2}s over {wall:.1}s ({:.2}%)",
        100.0 * cpu / wall
    );
    assert!(cpu / wall < 0.02, "busy loop: {cpu}s of CPU in {wall}s");
    assert!(!is_mounted(&mountpoint), "nothing half-mounted while down");

    sshd.start();
    let healed = Instant::now();
    wait_state(&plugin, &name, "mounted", Duration::from_secs(30));
    eprintln!("mounted again {:?} after sshd came back", healed.elapsed());
    assert_writes_through(&mountpoint, sshd.remote_dir(), "healed.txt");
    let (code, reply) = mount(&plugin, &name, "after");
    assert_eq!(code, 200, "{reply}");
}

#[test]
fn sigterm_stops_every_process_and_a_new_start_mounts_every_volume_again() {
    let sshd = Sshd::new();
    let mut plugin = start(&[]);
    let names: Vec<String> = (0..3).map(|_| unique_name("term")).collect();
    for (i, name) in names.iter().enumerate() {
        create_ok(&plugin, name, sshfs_opts(&sshd, &format!("d{i}")));
    }
    assert_eq!(mount(&plugin, &names[0], "c1").0, 200);
    let root = plugin.mount_root();
    let root_arg = root.to_str().unwrap().to_owned();
    let sshfs_running = || {
        processes_with_arg(&root_arg)
            .into_iter()
            .filter(|(_, argv)| argv[0] == "sshfs")
            .count()
    };
    assert_eq!(sshfs_running(), 3);
    assert_eq!(mounts_under(&root).len(), 3);

    let exit = plugin.terminate();
    assert!(exit.success(), "{exit}\n{}", plugin.log());
    assert_eq!(sshfs_running(), 0, "every volume process stopped");
    assert!(mounts_under(&root).is_empty(), "every mount is gone");
    let state: Value =
        serde_json::from_str(&fs::read_to_string(plugin.state_file()).unwrap()).unwrap();
    for name in &names {
        assert!(
            state.to_string().contains(name.as_str()),
            "{name} saved: {state}"
        );
    }
    assert!(state.to_string().contains("c1"), "mount IDs saved: {state}");

    plugin.restart();
    for (i, name) in names.iter().enumerate() {
        wait_state(&plugin, name, "mounted", T);
        let mountpoint = root.join(name);
        assert!(is_mounted(&mountpoint));
        assert_writes_through(&mountpoint, &sshd.remote_path(&format!("d{i}")), "back.txt");
    }
    assert_eq!(status(&plugin, &names[0])["mountIds"], json!(["c1"]));
}

#[test]
fn lifecycle_mount_runs_a_process_only_between_first_mount_and_last_unmount() {
    let sshd = Sshd::new();
    let plugin = start(&["--volume-process-lifecycle=mount"]);
    let name = unique_name("lazy");
    create_ok(&plugin, &name, sshfs_opts(&sshd, ""));
    let mountpoint = plugin.mount_root().join(&name);
    let arg = mountpoint.to_str().unwrap().to_owned();
    let none_runs = || processes_with_arg(&arg).is_empty() && !is_mounted(&mountpoint);
    assert!(none_runs(), "no process before the first Mount");
    assert_eq!(status(&plugin, &name)["state"], "stopped");

    assert_eq!(mount(&plugin, &name, "a").0, 200);
    assert!(is_mounted(&mountpoint));
    let pid = pid_of(&status(&plugin, &name));
    assert_eq!(mount(&plugin, &name, "b").0, 200);
    assert_eq!(pid_of(&status(&plugin, &name)), pid, "one process for both");
    assert_eq!(unmount(&plugin, &name, "a").0, 200);
    assert!(process_alive(pid as i32) && is_mounted(&mountpoint));
    assert_eq!(unmount(&plugin, &name, "b").0, 200);
    assert!(none_runs(), "no process after the last Unmount");
    assert_eq!(status(&plugin, &name)["state"], "stopped");

    assert_eq!(mount(&plugin, &name, "c").0, 200);
    assert_writes_through(&mountpoint, sshd.remote_dir(), "again.txt");
    assert_eq!(unmount(&plugin, &name, "c").0, 200);
    assert_eq!(
        plugin.post("/VolumeDriver.Remove", json!({"Name": name})).0,
        200
    );
    assert!(none_runs() && !mountpoint.exists());
}

#[test]
fn recovery_mode_ignore_leaves_a_dead_volume_failed_until_the_next_mount() {
    let sshd = Sshd::new();
    let plugin = start(&["--volume-process-recovery-mode=ignore"]);
    let name = unique_name("ign");
    create_ok(&plugin, &name, sshfs_opts(&sshd, ""));
    kill9(pid_of(&status(&plugin, &name)));
    let failed = wait_state(&plugin, &name, "failed", T);
    assert!(
        failed["lastError"]
            .as_str()
            .unwrap()
            .contains("recovery-mode=ignore"),
        "{failed}"
    );
    assert_eq!(failed["restarts"], 0);
    assert_eq!(mount(&plugin, &name, "x").0, 200);
    assert_eq!(status(&plugin, &name)["state"], "mounted");
}

#[test]
fn a_mount_that_stops_answering_is_noticed_and_mounted_again() {
    // A tool that daemonises (sshfs without -f) exits 0 once mounted; when
    // the daemon dies the mount stays listed but answers ENOTCONN.
    let sshd = Sshd::new();
    let (_dir, tool) = script("exec sshfs \"$@\"");
    let plugin = start(&[
        "--default-type=command",
        &format!("--volume-process-binary={}", tool.display()),
        "--mount-options-volume-process-option=-o",
    ]);
    let name = unique_name("dead");
    let opts =
        json!({"source": sshd.source(""), "o": sshd.sshfs_options(), "c": "{source}&{mountPoint}"});
    create_ok(&plugin, &name, opts);
    let mountpoint = plugin.mount_root().join(&name);
    let arg = mountpoint.to_str().unwrap().to_owned();
    let daemons = processes_with_arg(&arg);
    assert_eq!(daemons.len(), 1, "{daemons:?}");
    let (daemon, _) = daemons[0];
    assert_eq!(
        status(&plugin, &name)["pid"],
        Value::Null,
        "the tool itself has exited"
    );

    kill9(daemon.into());
    let noticed = Instant::now();
    wait_until(T, "a new daemon has mounted", || {
        status(&plugin, &name)["state"] == "mounted"
            && processes_with_arg(&arg).iter().any(|(p, _)| *p != daemon)
    });
    eprintln!("dead mount noticed and replaced in {:?}", noticed.elapsed());
    let s = status(&plugin, &name);
    assert!(
        s["lastError"]
            .as_str()
            .unwrap()
            .contains("transport endpoint is not connected"),
        "{s}"
    );
    assert_eq!(s["restarts"], 1);
    assert_writes_through(&mountpoint, sshd.remote_dir(), "answers.txt");
}

#[test]
fn a_tool_that_ignores_sigterm_is_killed_after_the_grace_and_unmounted() {
    let sshd = Sshd::new();
    // An ignored signal stays ignored across exec, and libfuse then leaves it so.
    let (_dir, tool) = script("trap '' TERM\nexec sshfs \"$@\" -f");
    let plugin = start(&[
        "--stop-timeout=1s",
        "--default-type=command",
        &format!("--volume-process-binary={}", tool.display()),
        "--mount-options-volume-process-option=-o",
    ]);
    let name = unique_name("stubborn");
    let opts =
        json!({"source": sshd.source(""), "o": sshd.sshfs_options(), "c": "{source}&{mountPoint}"});
    create_ok(&plugin, &name, opts);
    let mountpoint = plugin.mount_root().join(&name);
    let pid = pid_of(&status(&plugin, &name));

    let t = Instant::now();
    let (code, reply) = plugin.post("/VolumeDriver.Remove", json!({"Name": name}));
    let took = t.elapsed();
    assert_eq!(code, 200, "{reply}");
    assert!(
        took >= Duration::from_secs(1),
        "SIGKILL only after the grace: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(!process_alive(pid as i32));
    assert!(!is_mounted(&mountpoint) && !mountpoint.exists());
    assert!(plugin.log().contains("ignored SIGTERM"), "{}", plugin.log());
}

#[test]
fn sigterm_cancels_a_restore_that_is_still_mounting() {
    let sshd = Sshd::new();
    let flags = tempfile::tempdir().unwrap();
    let hang = flags.path().join("hang");
    // Mounts with sshfs, unless told to hang without mounting.
    let body = format!(
        "[ -e {} ] && exec sleep 600\nexec sshfs \"$@\" -f",
        hang.display()
    );
    let (_dir, tool) = script(&body);
    let mut plugin = start(&[
        "--mount-timeout=60s",
        "--default-type=command",
        &format!("--volume-process-binary={}", tool.display()),
        "--mount-options-volume-process-option=-o",
    ]);
    let name = unique_name("slow");
    let opts =
        json!({"source": sshd.source(""), "o": sshd.sshfs_options(), "c": "{source}&{mountPoint}"});
    create_ok(&plugin, &name, opts);
    assert!(plugin.terminate().success());

    fs::write(&hang, "").unwrap();
    plugin.restart();
    let mounting = wait_state(&plugin, &name, "mounting", T);
    let tool_pid = pid_of(&mounting);

    let t = Instant::now();
    assert!(plugin.terminate().success(), "{}", plugin.log());
    let took = t.elapsed();
    eprintln!("plugin stopped {took:?} after SIGTERM during a restore");
    assert!(
        took < Duration::from_secs(10),
        "SIGTERM waited for the mount timeout: {took:?}"
    );
    assert!(
        !process_alive(tool_pid as i32),
        "the mounting tool was stopped"
    );
}
