//! Proof that the shared fixtures do what the integration tests rely on:
//! the sshd serves real sshfs and rclone clients (by key and by password),
//! goes down and comes back, the mount/process helpers see it all, and the
//! plugin runner starts, restarts and cleans up after the real binary.

#[path = "support/mod.rs"]
mod support;

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::driver_pool::DriverSlot;
use support::fuse::Fuse;
use support::mounts::{self, is_mounted, wait_until};
use support::plugin::{Plugin, PLUGIN_DIR};
use support::sshd::{Flavour, Sshd, PASSWORD_USER, TEST_PASSWORD};
use support::{client, cmd, docker};

const T: Duration = Duration::from_secs(10);

#[test]
fn the_test_sshd_keeps_openssh_limits_at_their_defaults() {
    let sshd = Sshd::new();
    let config = fs::read_to_string(sshd.config_path()).expect("read sshd_config");
    for raised in ["MaxStartups", "MaxSessions", "PerSource", "LoginGraceTime"] {
        assert!(!config.contains(raised), "{raised} set in:\n{config}");
    }
    // What sshd itself makes of the file: OpenSSH's own defaults.
    let effective = effective(&sshd);
    for stock in [
        "maxstartups 10:30:100",
        "maxsessions 10",
        "logingracetime 120",
    ] {
        assert!(
            effective.lines().any(|l| l == stock),
            "{stock} not in sshd -T:\n{effective}"
        );
    }
}

/// `sshd -T` of a fixture's config: the settings sshd makes of it.
fn effective(sshd: &Sshd) -> String {
    let out = Command::new("/usr/sbin/sshd")
        .arg("-T")
        .arg("-f")
        .arg(sshd.config_path())
        .output()
        .expect("run sshd -T");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_debian_sshd_runs_the_packages_own_config_and_a_fresh_root_home() {
    let sshd = Sshd::of(Flavour::Debian);
    let config = fs::read_to_string(sshd.config_path()).expect("read sshd_config");
    let stock =
        fs::read_to_string(support::stock_sshd::DEBIAN_CONFIG).expect("the package's config");
    // Every setting of the package's file is there, the drop-in path aside.
    for line in stock
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        if !line.starts_with("Include ") {
            assert!(
                config.lines().any(|l| l == line),
                "{line:?} missing:\n{config}"
            );
        }
    }
    let effective = effective(&sshd);
    for stock in [
        "usepam yes",
        "subsystem sftp /usr/lib/openssh/sftp-server",
        "maxstartups 10:30:100",
        "maxsessions 10",
        "x11forwarding yes",
        "kbdinteractiveauthentication no",
    ] {
        assert!(
            effective.lines().any(|l| l == stock),
            "{stock} not in sshd -T:\n{effective}"
        );
    }
    // A session runs the external sftp-server through root's shell, and
    // root's shell reads base-files' .bashrc, not this machine's.
    let m = Fuse::sshfs(&sshd.source(""), &sshd.sshfs_options(), None);
    fs::write(sshd.remote_path("").join("hello"), "hi").unwrap();
    assert_eq!(
        fs::read_to_string(m.mountpoint.join("hello")).unwrap(),
        "hi"
    );
    let helpers = mounts::processes_with_arg("/usr/lib/openssh/sftp-server");
    assert!(
        !helpers.is_empty(),
        "no sftp-server process serves the mount"
    );
    let (pid, _) = helpers[0];
    let root = fs::read_link(format!("/proc/{pid}/root")).unwrap();
    let bashrc = fs::read_to_string(format!("/proc/{pid}/root/root/.bashrc"));
    assert_eq!(
        bashrc.ok(),
        fs::read_to_string("/usr/share/base-files/dot.bashrc").ok(),
        "root's .bashrc as seen by the session ({})",
        root.display()
    );
    drop(m);
    assert!(
        sshd.log().contains("Accepted publickey for root"),
        "{}",
        sshd.log()
    );
}

#[test]
fn sshfs_mounts_the_remote_by_key_and_unmounts() {
    let sshd = Sshd::new();
    let mut m = Fuse::sshfs(&sshd.source(""), &sshd.sshfs_options(), None);
    let entry = mounts::mount_at(&m.mountpoint).expect("mountinfo entry");
    assert_eq!(entry.fs_type, "fuse.sshfs");

    fs::write(m.mountpoint.join("hello.txt"), "from the client").expect("write through sshfs");
    let remote = fs::read_to_string(sshd.remote_dir().join("hello.txt")).expect("file on remote");
    assert_eq!(remote, "from the client");

    let arg = m.mountpoint.to_string_lossy().into_owned();
    let procs = mounts::processes_with_arg(&arg);
    assert_eq!(
        procs.len(),
        1,
        "one sshfs process names the mountpoint: {procs:?}"
    );
    assert_eq!(procs[0].1[0], "sshfs");
    assert!(
        procs[0].1.contains(&arg),
        "argv keeps the path with its space"
    );
    assert_eq!(mounts::mounts_under(m.dir()), vec![m.mountpoint.clone()]);

    cmd::run_ok(Command::new("fusermount3").arg("-u").arg(&m.mountpoint));
    wait_until(T, "sshfs exits after fusermount3 -u", || !m.alive());
    assert!(!is_mounted(&m.mountpoint));
    assert!(mounts::processes_with_arg(&arg).is_empty());
}

#[test]
fn sshd_stop_drops_sessions_and_start_comes_back_on_the_same_port() {
    let mut sshd = Sshd::new();
    let port = sshd.port();
    let mut m = Fuse::sshfs(&sshd.source("data"), &sshd.sshfs_options(), None);

    sshd.stop();
    assert!(!sshd.is_running());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port closed"
    );
    wait_until(T, "sshfs notices its session is gone", || !m.alive());
    drop(m);

    sshd.start();
    assert_eq!(sshd.port(), port);
    let m = Fuse::sshfs(&sshd.source("data"), &sshd.sshfs_options(), None);
    fs::write(m.mountpoint.join("again"), "x").expect("write after restart");
    assert!(sshd.remote_dir().join("data/again").exists());
}

#[test]
fn sshfs_with_reconnect_survives_killed_connections() {
    let sshd = Sshd::new();
    let options = format!("{},reconnect,ServerAliveInterval=1", sshd.sshfs_options());
    let mut m = Fuse::sshfs(&sshd.source(""), &options, None);
    let before = mounts::descendants(sshd.pid().expect("sshd running")).len();
    assert!(before > 0, "a live session is a child of sshd");

    sshd.kill_connections();
    assert!(sshd.is_running());
    wait_until(T, "sshfs reconnects and writes", || {
        fs::write(m.mountpoint.join("after"), "y").is_ok()
    });
    assert!(m.alive(), "the same sshfs process");
    assert!(
        is_mounted(&m.mountpoint),
        "the write went through the mount"
    );
    let remote = fs::read_to_string(sshd.remote_dir().join("after")).expect("file on remote");
    assert_eq!(remote, "y");
}

#[test]
fn sshfs_logs_in_with_password_on_stdin() {
    let sshd = Sshd::with_password();
    let options = format!("{},password_stdin", sshd.password_sshfs_options());
    let m = Fuse::sshfs(&sshd.password_source("pw"), &options, Some(TEST_PASSWORD));
    fs::write(m.mountpoint.join("owned"), "z").expect("write through sshfs");
    let user = nix::unistd::User::from_name(PASSWORD_USER)
        .expect("look up user")
        .expect("password user exists");
    let meta = fs::metadata(sshd.remote_dir().join("pw/owned")).expect("file on remote");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.uid(), user.uid.as_raw(), "written as {PASSWORD_USER}");
}

#[test]
fn sshfs_with_a_wrong_password_fails() {
    let sshd = Sshd::with_password();
    let dir = tempfile::tempdir().expect("mountpoint");
    let options = format!("{},password_stdin", sshd.password_sshfs_options());
    let out = cmd::run_input(
        Command::new("sshfs")
            .arg(sshd.password_source(""))
            .arg(dir.path())
            .args(["-f", "-o", &options]),
        Some(b"not the password\n"),
        T * 3,
    );
    assert!(!out.status.success());
    assert!(!is_mounted(dir.path()));
}

#[test]
fn rclone_lists_the_remote_through_the_on_the_fly_sftp_remote() {
    let sshd = Sshd::new();
    fs::create_dir_all(sshd.remote_dir().join("sub")).expect("mkdir on remote");
    fs::write(sshd.remote_dir().join("sub/file one.txt"), "1").expect("write on remote");
    let out = cmd::run_ok(
        Command::new("rclone")
            .args([
                "lsf",
                "--config",
                "/dev/null",
                "--low-level-retries=1",
                "--retries=1",
            ])
            .arg(sshd.rclone_remote("sub")),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "file one.txt\n");
}

#[test]
fn is_mounted_means_exactly_at_the_path() {
    assert!(is_mounted("/proc"));
    assert!(!is_mounted(Path::new("/proc/self")));
}

#[test]
fn docker_helpers_run_a_container_with_a_local_volume() {
    docker::require_docker();
    let mut cleanup = docker::Cleanup::new();
    let volume = cleanup.volume(support::unique_name("netfs-selftest"));
    docker::docker_ok(&["volume", "create", &volume]);
    assert_eq!(docker::volume_inspect(&volume)["Driver"], "local");
    let out = docker::run_in_container(&volume, "/v", "echo hi > /v/f && cat /v/f");
    assert_eq!(out, "hi\n");
    // Not a lookup of a missing volume: dockerd would ask every driver it
    // ever knew for it, which is slow when some are gone.
    let err = docker::docker_fails(&["volume", "create", "bad name!"]);
    assert!(err.contains("invalid characters"), "{err}");
}

#[test]
fn rclone_mounts_the_remote_through_the_on_the_fly_sftp_remote() {
    let sshd = Sshd::new();
    let mut m = Fuse::mount(
        &["rclone", "mount"],
        &sshd.rclone_remote("r"),
        &["--config", "/dev/null"],
        None,
    );
    assert_eq!(
        mounts::mount_at(&m.mountpoint).expect("mounted").fs_type,
        "fuse.rclone"
    );
    fs::write(m.mountpoint.join("via rclone"), "r").expect("write through rclone");
    let remote = fs::read_to_string(sshd.remote_dir().join("r/via rclone")).expect("on remote");
    assert_eq!(remote, "r");
    cmd::run_ok(Command::new("fusermount3").arg("-u").arg(&m.mountpoint));
    wait_until(T, "rclone exits after fusermount3 -u", || !m.alive());
}

const NETFS: &str = env!("CARGO_BIN_EXE_netfs");

#[test]
fn plugin_answers_on_its_own_socket_and_restarts() {
    let mut plugin = Plugin::new(NETFS).arg("--mount-timeout=10s").start();
    let socket = plugin.socket();
    assert!(plugin.driver_name().starts_with("netfs-t"));
    assert_eq!(socket.parent(), Some(Path::new(PLUGIN_DIR)));
    let (status, reply) = plugin.post("/Plugin.Activate", json!({}));
    assert_eq!(
        (status, reply),
        (200, json!({"Implements": ["VolumeDriver"]}))
    );

    let reply = client::request(&socket, "POST", "/VolumeDriver.Capabilities", "{}");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["Capabilities"]["Scope"], "local");
    let garbage = client::raw_bytes(&socket, b"NOT HTTP AT ALL\r\n\r\n");
    assert!(
        String::from_utf8_lossy(&garbage).starts_with("HTTP/1.1 4"),
        "a 4xx for garbage: {:?}",
        String::from_utf8_lossy(&garbage)
    );
    let request = b"POST /Plugin.Activate HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                    Content-Length: 2\r\n\r\n{}";
    let reply = String::from_utf8_lossy(&client::raw_bytes(&socket, request)).into_owned();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.ends_with(r#"{"Implements":["VolumeDriver"]}"#),
        "{reply}"
    );
    let (status, reply) = plugin.post("/VolumeDriver.Nope", json!({}));
    assert_ne!(status, 200);
    assert_ne!(client::err_of(&reply), "", "{reply}");

    let first = plugin.pid();
    assert!(plugin.terminate().success(), "{}", plugin.log());
    plugin.restart();
    assert_ne!(plugin.pid(), first);
    plugin.kill9();
    assert!(!plugin.is_running());
    plugin.restart();
    assert_eq!(plugin.post("/Plugin.Activate", json!({})).0, 200);
    assert!(!plugin.log().is_empty(), "the log collects both runs");
}

#[test]
fn driver_names_nobody_owns_answer_at_once() {
    // The name outside the pool: between its drop and the requests below,
    // no other test can start a plugin on it.
    let slot = DriverSlot::reserved();
    let socket = slot.socket();
    assert!(!socket.exists(), "the owner gets the name without a socket");
    drop(slot);
    let get = br#"{"Name":"x"}"#.to_vec();
    let reply = client::try_request(&socket, "POST", "/VolumeDriver.Get", get)
        .expect("the caretaker answers as soon as the owner lets go");
    assert_eq!(reply.status, 500);
    assert!(reply.text().contains("is not running"), "{}", reply.text());
    let (status, reply) = client::post(&socket, "/VolumeDriver.List", json!({}));
    assert_eq!((status, reply), (200, json!({"Volumes": []})));
    let (status, reply) = client::post(&socket, "/Plugin.Activate", json!({}));
    assert_eq!(
        (status, reply),
        (200, json!({"Implements": ["VolumeDriver"]}))
    );
}

#[test]
fn plugin_drop_cleans_up_mounts_a_crashed_plugin_left() {
    let sshd = Sshd::new();
    let mut plugin = Plugin::new(NETFS).arg("--mount-timeout=10s").start();
    let opts = json!({"source": sshd.source("v"), "o": sshd.sshfs_options()});
    let (status, reply) = plugin.post(
        "/VolumeDriver.Create",
        json!({"Name": "selftest", "Opts": opts}),
    );
    assert_eq!(status, 200, "{reply}\n{}", plugin.log());
    let (status, reply) = plugin.post(
        "/VolumeDriver.Mount",
        json!({"Name": "selftest", "ID": "c1"}),
    );
    assert_eq!(status, 200, "{reply}\n{}", plugin.log());
    let mountpoint = PathBuf::from(reply["Mountpoint"].as_str().expect("Mountpoint"));
    assert!(mountpoint.starts_with(plugin.mount_root()));
    assert!(is_mounted(&mountpoint));
    fs::write(mountpoint.join("through-plugin"), "p").expect("write through the volume");
    assert!(sshd.remote_dir().join("v/through-plugin").exists());

    plugin.kill9();
    let root = plugin.mount_root().to_string_lossy().into_owned();
    let leftovers = mounts::processes_with_arg(&root);
    assert!(is_mounted(&mountpoint), "a crash leaves the mount behind");
    assert_eq!(leftovers.len(), 1, "and its sshfs: {leftovers:?}");
    drop(plugin);
    assert!(mounts::mounts_under(&root).is_empty(), "drop unmounted it");
    assert!(!Path::new(&root).exists(), "and removed the plugin's dir");
    wait_until(T, "no volume process is left", || {
        mounts::processes_with_arg(&root).is_empty()
    });
    assert!(
        sshd.remote_dir().join("v/through-plugin").exists(),
        "remote data kept"
    );
}

#[test]
fn plugin_spawn_and_wait_exit_see_a_refused_start() {
    let mut plugin = Plugin::new(NETFS);
    fs::write(plugin.state_file(), "{ not json").expect("write a corrupt state file");
    plugin.spawn();
    let status = plugin.wait_exit(T);
    assert!(!status.success(), "{}", plugin.log());
    assert!(plugin.log().contains("state.json"), "{}", plugin.log());
    assert!(!plugin.is_running());
}
