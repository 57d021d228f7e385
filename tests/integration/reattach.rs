//! Running containers keep their volumes: after a volume's tool is killed,
//! or netfs itself restarts, a container started before reads the volume
//! again and its writes reach the remote, with no restart of the container.
//! netfs runs as a host service here; the managed plugin's case is in
//! `managed_plugin/reattach.rs`.

use std::process::Output;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::support::docker::{
    docker, docker_ok, require_docker, volume_inspect, Cleanup, TEST_IMAGE,
};
use crate::support::mounts::{poll_until, wait_until};
use crate::support::plugin::Plugin;
use crate::support::sshd::Sshd;
use crate::support::unique_name;

/// How long a container may wait for its volume to come back.
const HEAL: Duration = Duration::from_secs(30);

fn plugin() -> Plugin {
    Plugin::new(env!("CARGO_BIN_EXE_netfs"))
        .arg("--mount-timeout=15s")
        .start()
}

pub fn create(driver: &str, volume: &str, opts: &[(&str, String)]) {
    let mut args = vec!["volume", "create", "-d", driver];
    let opts: Vec<String> = opts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for o in &opts {
        args.extend(["-o", o]);
    }
    args.push(volume);
    docker_ok(&args);
}

pub fn sshfs_opts(sshd: &Sshd) -> Vec<(&'static str, String)> {
    vec![("source", sshd.source("")), ("o", sshd.sshfs_options())]
}

/// A long-running container with `mount` (`vol:/data`, `vol:/ro:ro`),
/// started detached; its name.
pub fn start_container(cleanup: &mut Cleanup, mount: &str) -> String {
    let name = cleanup.container(unique_name("reattach-c"));
    docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        &name,
        "-v",
        mount,
        TEST_IMAGE,
        "sleep",
        "3600",
    ]);
    name
}

pub fn exec(container: &str, script: &str) -> Output {
    docker(&["exec", container, "sh", "-c", script])
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `cat path` inside the running container until it gives `want`;
/// returns how long that took.
pub fn wait_reads(container: &str, path: &str, want: &str) -> Duration {
    let started = Instant::now();
    let mut last = String::new();
    let ok = poll_until(HEAL, || {
        let out = exec(container, &format!("cat {path}"));
        last = text(&out);
        out.status.success() && last == want
    });
    assert!(
        ok,
        "{container} does not read {path} again within {HEAL:?}; last: {last}"
    );
    started.elapsed()
}

/// A write from inside the container reaches the remote file `remote`:
/// at once through sshfs, within rclone's write-back delay (5 s) through
/// its VFS cache.
pub fn write_reaches(container: &str, path: &str, remote: &std::path::Path, what: &str) {
    let out = exec(container, &format!("echo {what} > {path}"));
    assert!(out.status.success(), "write in {container}: {}", text(&out));
    let want = format!("{what}\n");
    let mut on_remote = String::new();
    let reached = poll_until(Duration::from_secs(30), || {
        on_remote = std::fs::read_to_string(remote).unwrap_or_default();
        on_remote == want
    });
    assert!(
        reached,
        "the write reached the remote: {on_remote:?}, not {want:?}"
    );
}

fn status(volume: &str) -> Value {
    volume_inspect(volume)["Status"].clone()
}

fn pid_of(volume: &str) -> i32 {
    let st = status(volume);
    st["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no pid in Status: {st}")) as i32
}

fn wait_new_pid(volume: &str, old: i32) {
    wait_until(HEAL, "the tool runs again", || {
        let st = status(volume);
        st["state"] == "mounted" && st["pid"].as_i64().is_some_and(|p| p as i32 != old)
    });
}

fn short(id: &str) -> String {
    let long = docker_ok(&["inspect", "-f", "{{.Id}}", id]);
    long.trim()[..12].to_owned()
}

#[test]
fn sshfs_killed_the_running_containers_read_and_write_again_ro_stays_ro_an_exited_one_is_left() {
    require_docker();
    let sshd = Sshd::new();
    std::fs::write(sshd.remote_dir().join("f"), "before").unwrap();
    std::fs::create_dir_all(sshd.remote_dir().join("sub")).unwrap();
    std::fs::write(sshd.remote_dir().join("sub/g"), "in-sub").unwrap();
    let plugin = plugin();
    let mut cleanup = Cleanup::new();
    let volume = cleanup.volume(unique_name("reattach-vol"));
    create(plugin.driver_name(), &volume, &sshfs_opts(&sshd));
    let rw = start_container(&mut cleanup, &format!("{volume}:/data"));
    let ro = start_container(&mut cleanup, &format!("{volume}:/ro:ro"));
    // A bind of a subdirectory of the volume's mount: its mount's root
    // field is `/sub`, as with `volume-subpath` on Docker 26+.
    let sub = start_container(
        &mut cleanup,
        &format!(
            "{}:/sub",
            plugin.mount_root().join(&volume).join("sub").display()
        ),
    );
    let exited = cleanup.container(unique_name("reattach-exited"));
    docker_ok(&[
        "run",
        "--network",
        "none",
        "--name",
        &exited,
        "-v",
        &format!("{volume}:/data"),
        TEST_IMAGE,
        "cat",
        "/data/f",
    ]);
    wait_reads(&rw, "/data/f", "before");

    let pid = pid_of(&volume);
    let killed = Instant::now();
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9 sshfs");
    let took = wait_reads(&rw, "/data/f", "before");
    let after_kill = killed.elapsed();
    wait_reads(&ro, "/ro/f", "before");
    write_reaches(
        &rw,
        "/data/w",
        &sshd.remote_dir().join("w"),
        "from-container",
    );
    let refused = exec(&ro, "echo no > /ro/no");
    assert!(!refused.status.success(), "a :ro holder stays read-only");
    assert!(text(&refused).contains("Read-only"), "{}", text(&refused));
    assert!(!sshd.remote_dir().join("no").exists());
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{.State.Running}}", &exited]).trim(),
        "false",
        "the exited container is left as it was"
    );
    wait_new_pid(&volume, pid);
    let st = status(&volume);
    let reattach = &st["reattach"];
    assert_eq!(reattach["total"], 3, "{st}");
    let last = reattach["last"].to_string();
    for c in [&rw, &ro, &sub] {
        assert!(last.contains(&short(c)), "{c} in {st}");
    }
    assert!(
        st.get("mountIdsBeforeLastRestart").is_none(),
        "every holder has the new mount: {st}"
    );
    assert!(reattach.get("lastError").is_none(), "{st}");
    eprintln!(
        "reattach: sshfs kill -9 to the first good read inside the container: {} ms (poll {} ms)",
        after_kill.as_millis(),
        took.as_millis()
    );
}

#[test]
fn rclone_killed_the_running_container_reads_and_writes_again() {
    require_docker();
    let sshd = Sshd::new();
    std::fs::write(sshd.remote_dir().join("f"), "before").unwrap();
    let plugin = plugin();
    let mut cleanup = Cleanup::new();
    let volume = cleanup.volume(unique_name("reattach-rclone"));
    create(
        plugin.driver_name(),
        &volume,
        &[
            ("type", "rclone".to_owned()),
            ("source", sshd.rclone_remote("")),
        ],
    );
    let c = start_container(&mut cleanup, &format!("{volume}:/data"));
    wait_reads(&c, "/data/f", "before");
    let pid = pid_of(&volume);
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9 rclone");
    wait_reads(&c, "/data/f", "before");
    write_reaches(
        &c,
        "/data/w",
        &sshd.remote_dir().join("w"),
        "from-rclone-container",
    );
    assert_eq!(status(&volume)["reattach"]["total"], 1);
}

#[test]
fn netfs_restarted_as_a_host_service_gives_the_running_container_its_volume_back() {
    require_docker();
    let sshd = Sshd::new();
    std::fs::create_dir_all(sshd.remote_dir().join("sub")).unwrap();
    std::fs::write(sshd.remote_dir().join("sub/f"), "in-sub").unwrap();
    let mut plugin = plugin();
    let mut cleanup = Cleanup::new();
    let volume = cleanup.volume(unique_name("reattach-restart"));
    create(plugin.driver_name(), &volume, &sshfs_opts(&sshd));
    let c = start_container(&mut cleanup, &format!("{volume}:/data"));
    wait_reads(&c, "/data/sub/f", "in-sub");

    // SIGTERM: every tool stops and its mount goes; the container keeps a
    // dead one until the next netfs mounts the volume again.
    plugin.terminate();
    let dead = exec(&c, "cat /data/sub/f");
    assert!(
        !dead.status.success(),
        "the mount is dead while netfs is down"
    );
    let restarted = Instant::now();
    plugin.restart();
    wait_reads(&c, "/data/sub/f", "in-sub");
    let after = restarted.elapsed();
    write_reaches(
        &c,
        "/data/sub/w",
        &sshd.remote_dir().join("sub/w"),
        "after-restart",
    );
    assert_eq!(status(&volume)["reattach"]["total"], 1);

    // And once more after a crash of netfs (SIGKILL), whose tool is then
    // killed as well: the device the restored run recorded is found.
    plugin.kill9();
    let pid = crate::support::mounts::processes_with_arg(
        plugin.mount_root().join(&volume).to_str().unwrap(),
    );
    for (p, _) in pid {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    plugin.restart();
    wait_reads(&c, "/data/sub/f", "in-sub");
    write_reaches(
        &c,
        "/data/sub/w2",
        &sshd.remote_dir().join("sub/w2"),
        "after-crash",
    );
    eprintln!(
        "reattach: host service restarted to the first good read inside the container: {} ms",
        after.as_millis()
    );
}
