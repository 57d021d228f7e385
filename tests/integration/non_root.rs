//! Containers that do not run as root (`docker run --user 1000:1000`),
//! through a real dockerd, writing into real sshfs and rclone volumes over
//! a real sshd: without `allow_other` the mount refuses them; with it, and
//! uid/gid/umask, they write and see their files as their own. The
//! examples of docs/backends.md, as written there.

use std::fs;

use crate::support::docker::{docker, docker_ok, require_docker, Cleanup, TEST_IMAGE};
use crate::support::plugin::Plugin;
use crate::support::sshd::Sshd;
use crate::support::unique_name;

const USER: &str = "1000:1000";

fn plugin() -> Plugin {
    Plugin::new(env!("CARGO_BIN_EXE_netfs"))
        .arg("--mount-timeout=15s")
        .start()
}

fn create(plugin: &Plugin, volume: &str, opts: &[String]) {
    let mut args = vec!["volume", "create", "-d", plugin.driver_name()];
    for o in opts {
        args.extend(["-o", o.as_str()]);
    }
    args.push(volume);
    docker_ok(&args);
}

/// `sh -c script` in a throwaway container running as [`USER`]: (exit
/// success, stdout + stderr).
fn as_user(volume: &str, script: &str) -> (bool, String) {
    let mount = format!("{volume}:/data");
    let out = docker(&[
        "run", "--rm", "--user", USER, "-v", &mount, TEST_IMAGE, "sh", "-c", script,
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Writes a file as uid 1000, lists it numerically: the line of `ls -ln`.
const WRITE: &str = "id -u && echo written-by-1000 > /data/mine.txt && mkdir /data/dir \
                     && ls -lnd /data/mine.txt /data/dir";

#[test]
fn a_container_running_as_uid_1000_writes_into_an_sshfs_volume_with_allow_other() {
    require_docker();
    let sshd = Sshd::new();
    let plugin = plugin();
    let mut cleanup = Cleanup::new();
    let source = format!("source={}", sshd.source(""));

    // Without allow_other, FUSE lets no user but the mount's owner (root) in.
    let closed = cleanup.volume(unique_name("ops-nonroot-closed"));
    create(
        &plugin,
        &closed,
        &[source.clone(), format!("o={}", sshd.sshfs_options())],
    );
    let (ok, text) = as_user(&closed, "ls /data");
    assert!(!ok && text.contains("Permission denied"), "{text}");

    // As in docs/backends.md: allow_other, and the container's ids.
    let open = cleanup.volume(unique_name("ops-nonroot-sshfs"));
    let o = format!(
        "o={},allow_other,uid=1000,gid=1000,umask=0022",
        sshd.sshfs_options()
    );
    create(&plugin, &open, &[source, o]);
    let (ok, text) = as_user(&open, WRITE);
    assert!(ok, "{text}\n{}", plugin.log());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"1000"), "{text}");
    let file = lines
        .iter()
        .find(|l| l.ends_with("/data/mine.txt"))
        .expect("ls of the file");
    let dir = lines
        .iter()
        .find(|l| l.ends_with("/data/dir"))
        .expect("ls of the dir");
    // libfuse's umask sets every permission bit, the files' x too.
    assert!(
        file.starts_with("-rwxr-xr-x") && file.contains(" 1000 "),
        "{file}"
    );
    assert!(
        dir.starts_with("drwxr-xr-x") && dir.contains(" 1000 "),
        "{dir}"
    );
    // On the server, as the login user wrote it.
    let remote = sshd.remote_path("").join("mine.txt");
    assert_eq!(
        fs::read_to_string(&remote).ok().as_deref(),
        Some("written-by-1000\n")
    );
    eprintln!("netfs-suite non-root sshfs: {}", lines.join(" | "));
}

#[test]
fn a_container_running_as_uid_1000_writes_into_an_rclone_volume_with_allow_other() {
    require_docker();
    let sshd = Sshd::new();
    let plugin = plugin();
    let mut cleanup = Cleanup::new();
    let volume = cleanup.volume(unique_name("ops-nonroot-rclone"));
    create(
        &plugin,
        &volume,
        &[
            "type=rclone".to_owned(),
            format!("source={}", sshd.rclone_remote("")),
            "o=allow-other,uid=1000,gid=1000,umask=0022,vfs-cache-mode=writes".to_owned(),
        ],
    );
    let (ok, text) = as_user(&volume, WRITE);
    assert!(ok, "{text}\n{}", plugin.log());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"1000"), "{text}");
    let file = lines
        .iter()
        .find(|l| l.ends_with("/data/mine.txt"))
        .expect("ls of the file");
    assert!(
        file.starts_with("-rw-r--r--") && file.contains(" 1000 "),
        "{file}"
    );
    let remote = sshd.remote_path("").join("mine.txt");
    crate::support::wait_until(
        std::time::Duration::from_secs(30),
        "rclone uploaded the file",
        || fs::read_to_string(&remote).is_ok_and(|t| t == "written-by-1000\n"),
    );
    eprintln!("netfs-suite non-root rclone: {}", lines.join(" | "));
}

#[test]
fn the_non_root_compose_example_runs_as_uid_1000_as_written() {
    require_docker();
    let sshd = Sshd::new();
    let plugin = plugin();
    let project = unique_name("opsnonroot");
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join("docker-compose.non-root.yml");
    let compose = |args: &[&str]| {
        let mut command = std::process::Command::new("docker-compose");
        command
            .arg("-p")
            .arg(&project)
            .arg("-f")
            .arg(&file)
            .args(args)
            .env("NETFS_DRIVER", plugin.driver_name())
            .env("NETFS_SOURCE", sshd.source(""))
            .env("NETFS_OPTIONS", sshd.sshfs_options())
            // dockerd asks every volume driver it knows when compose looks
            // a volume up: on a busy machine one slow driver costs 15 s.
            .env("COMPOSE_HTTP_TIMEOUT", "300");
        crate::support::cmd::run(&mut command, std::time::Duration::from_secs(400))
    };
    let _cleanup = Cleanup::new();
    let up = compose(&["up", "--no-color", "--abort-on-container-exit"]);
    let down = compose(&["down", "-v"]);
    let text = String::from_utf8_lossy(&up.stdout);
    assert!(
        up.status.success(),
        "{}",
        crate::support::cmd::show("docker-compose up", &up)
    );
    assert!(
        down.status.success(),
        "{}",
        crate::support::cmd::show("docker-compose down -v", &down)
    );
    assert!(text.contains(" 1000     1000 "), "{text}");
    let visits = fs::read_to_string(sshd.remote_path("").join("visits.txt"));
    assert_eq!(visits.ok().as_deref(), Some("1000\n"));
}
