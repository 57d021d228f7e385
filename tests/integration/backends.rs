//! Each backend against its real tool: rclone over an sftp on-the-fly
//! remote, mount.nfs up to this kernel's refusal, a `command` script that
//! runs sshfs, a tool that hangs, and sshfs with a password that must never
//! show.

use std::fs;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::supervision::{pid_of, script};
use crate::support::calls::{create, start, status, wait_state};
use crate::support::client::err_of;
use crate::support::docker::{
    docker, docker_ok, require_docker, run_in_container, volume_create_args, volume_inspect,
    Cleanup,
};
use crate::support::mounts::{is_mounted, process_alive, processes_with_arg, wait_until};
use crate::support::sshd::{Sshd, TEST_PASSWORD};
use crate::support::unique_name;

/// `docker volume create -d <plugin> -o k=v ... name`.
fn docker_create(driver: &str, name: &str, opts: &[(&str, String)]) -> std::process::Output {
    let args = volume_create_args(driver, name, opts);
    docker(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn assert_created(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "docker volume create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Nothing of a volume is left: not listed, not mounted, no directory, no
/// process naming its mountpoint.
fn assert_gone(plugin: &crate::support::plugin::Plugin, name: &str) {
    let mountpoint = plugin.mount_root().join(name);
    let (_, list) = plugin.post("/VolumeDriver.List", json!({}));
    assert!(
        !list.to_string().contains(name),
        "{name} still listed: {list}"
    );
    assert!(!is_mounted(&mountpoint), "{name} still mounted");
    assert!(!mountpoint.exists(), "{name}'s mountpoint left behind");
    let left = processes_with_arg(mountpoint.to_str().unwrap());
    assert!(left.is_empty(), "processes left: {left:?}");
}

#[test]
fn rclone_sftp_on_the_fly_remote_serves_a_container() {
    require_docker();
    let sshd = Sshd::new();
    fs::write(sshd.remote_path("r").join("hello.txt"), "from the remote").unwrap();
    let plugin = start(&[]);
    let mut cleanup = Cleanup::new();
    let volume = cleanup.volume(unique_name("rclone"));
    let out = docker_create(
        plugin.driver_name(),
        &volume,
        &[
            ("type", "rclone".into()),
            ("source", sshd.rclone_remote("r")),
        ],
    );
    assert_created(&out);
    let command = volume_inspect(&volume)["Status"]["command"].clone();
    assert!(
        command
            .as_str()
            .unwrap()
            .starts_with("rclone mount ':sftp,host=127.0.0.1,"),
        "{command}"
    );
    let out = run_in_container(
        &volume,
        "/data",
        "cat /data/hello.txt && echo written > /data/out.txt",
    );
    assert_eq!(out, "from the remote");
    // Uploaded from rclone's VFS cache (vfs-cache-mode=writes, netfs's
    // default) a few seconds after the file is closed.
    let out_file = sshd.remote_dir().join("r/out.txt");
    wait_until(Duration::from_secs(20), "out.txt uploaded", || {
        fs::read_to_string(&out_file).is_ok_and(|t| t == "written\n")
    });
    docker_ok(&["volume", "rm", &volume]);
    assert_gone(&plugin, &volume);
}

#[test]
fn nfs_builds_the_mount_nfs_argv_and_reports_the_kernels_refusal() {
    require_docker();
    let plugin = start(&["--mount-timeout=10s"]);
    let volume = unique_name("nfs");
    let out = docker_create(
        plugin.driver_name(),
        &volume,
        &[
            ("type", "nfs".into()),
            ("source", "127.0.0.1:/export".into()),
            ("o", "vers=4.2,soft".into()),
        ],
    );
    assert!(!out.status.success(), "this kernel has no NFS client");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mount.nfs exited (exit status 32) before the volume was mounted")
            && err.contains("mount.nfs: No such device")
            && err.contains("the kernel has no NFS client"),
        "{err}"
    );
    let mountpoint = plugin.mount_root().join(&volume);
    let argv = format!(
        "mount.nfs 127.0.0.1:/export {} -o 'vers=4.2,soft'",
        mountpoint.display()
    );
    assert!(
        plugin.log().contains(&argv),
        "{argv} not in\n{}",
        plugin.log()
    );
    assert_gone(&plugin, &volume);
}

#[test]
fn command_script_running_sshfs_serves_a_container_and_stops_with_its_group() {
    require_docker();
    let sshd = Sshd::new();
    // A wrapper as an operator might write: it says what it does, then
    // runs sshfs in the foreground as its child (not exec).
    let (_dir, tool) = script("echo \"mounting $1 on $2\" >&2\nsshfs \"$@\" -f");
    let plugin = start(&[
        &format!("--volume-process-binary={}", tool.display()),
        "--mount-options-volume-process-option=-o",
    ]);
    let mut cleanup = Cleanup::new();
    let volume = cleanup.volume(unique_name("cmd"));
    let out = docker_create(
        plugin.driver_name(),
        &volume,
        &[
            ("type", "command".into()),
            ("source", sshd.source("")),
            ("c", "{source}&{mountPoint}".into()),
            ("o", sshd.sshfs_options()),
        ],
    );
    assert_created(&out);
    let mountpoint = plugin.mount_root().join(&volume);
    let arg = mountpoint.to_str().unwrap().to_owned();
    let group = processes_with_arg(&arg);
    assert_eq!(group.len(), 2, "the script and its sshfs: {group:?}");
    let out = run_in_container(
        &volume,
        "/data",
        "echo via-script > /data/s.txt && cat /data/s.txt",
    );
    assert_eq!(out, "via-script\n");
    assert_eq!(
        fs::read_to_string(sshd.remote_dir().join("s.txt")).unwrap(),
        "via-script\n"
    );
    assert!(
        plugin.log().contains("mounting root@127.0.0.1:"),
        "script output logged"
    );
    docker_ok(&["volume", "rm", &volume]);
    assert_gone(&plugin, &volume);
    for (pid, argv) in group {
        assert!(!process_alive(pid), "{argv:?} outlived the volume");
    }
}

#[test]
fn a_tool_that_hangs_without_mounting_fails_at_the_mount_timeout_with_its_stderr() {
    let pid_dir = tempfile::tempdir().unwrap();
    let pid_file = pid_dir.path().join("pid");
    let body = format!(
        "echo $$ > {}\necho 'waiting for the server' >&2\nexec sleep 600",
        pid_file.display()
    );
    let (_dir, tool) = script(&body);
    let plugin = start(&[
        "--mount-timeout=2s",
        "--default-type=command",
        &format!("--volume-process-binary={}", tool.display()),
    ]);
    let name = unique_name("hang");
    let t = Instant::now();
    let (code, reply) = create(&plugin, &name, json!({}));
    let took = t.elapsed();
    assert_eq!(code, 500, "{reply}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let err = err_of(&reply);
    assert!(
        err.contains("did not mount the volume within 2s: waiting for the server"),
        "{err}"
    );
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!process_alive(pid), "the hung tool was killed");
    assert_gone(&plugin, &name);
}

#[test]
fn sshfs_password_never_shows_in_argv_logs_status_or_errors() {
    require_docker();
    let sshd = Sshd::with_password();
    let plugin = start(&["--mount-timeout=10s"]);
    let mut cleanup = Cleanup::new();
    let volume = cleanup.volume(unique_name("pw"));
    let opts = |password: &str| {
        vec![
            ("source", sshd.password_source("")),
            ("o", sshd.password_sshfs_options()),
            ("password", password.to_owned()),
        ]
    };
    assert_created(&docker_create(
        plugin.driver_name(),
        &volume,
        &opts(TEST_PASSWORD),
    ));
    let out = run_in_container(
        &volume,
        "/data",
        "echo pw > /data/pw.txt && cat /data/pw.txt",
    );
    assert_eq!(out, "pw\n");
    let nowhere = |what: &str, text: &str| {
        assert!(!text.contains(TEST_PASSWORD), "password in {what}: {text}");
    };
    nowhere(
        "/proc/*/cmdline",
        &format!("{:?}", processes_with_arg(TEST_PASSWORD)),
    );
    let command = volume_inspect(&volume)["Status"]["command"].to_string();
    assert!(command.contains("password_stdin"), "{command}");

    // A restart hands the password over again, the same way.
    let old = pid_of(&status(&plugin, &volume));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    wait_until(Duration::from_secs(20), "sshfs mounted again", || {
        let s = status(&plugin, &volume);
        s["state"] == "mounted" && s["pid"].as_i64() != Some(old)
    });
    assert_eq!(
        run_in_container(&volume, "/data", "cat /data/pw.txt"),
        "pw\n"
    );
    nowhere(
        "/proc/*/cmdline",
        &format!("{:?}", processes_with_arg(TEST_PASSWORD)),
    );

    let wrong = "Wrong-Secret-7411";
    let bad = unique_name("pwbad");
    let out = docker_create(plugin.driver_name(), &bad, &opts(wrong));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("Permission denied"), "{err}");
    assert!(!err.contains(wrong), "password in the error: {err}");

    // dockerd itself shows the create options (password included) under
    // "Options": its own record, documented; netfs's Status must not.
    nowhere("Status", &volume_inspect(&volume)["Status"].to_string());
    let (_, get) = plugin.post("/VolumeDriver.Get", json!({"Name": volume}));
    nowhere("the plugin's Get", &get.to_string());
    let log = plugin.log();
    nowhere("the plugin log", &log);
    assert!(!log.contains(wrong), "wrong password in the log");
    wait_state(&plugin, &volume, "mounted", Duration::from_secs(1));
}
