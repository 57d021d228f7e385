//! Proof that the shared fixtures do what the integration tests rely on:
//! the sshd serves real sshfs and rclone clients (by key and by password),
//! goes down and comes back, and the mount/process helpers see it all.

#[path = "support/mod.rs"]
mod support;

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::mounts::{self, is_mounted, wait_until};
use support::sshd::{Sshd, PASSWORD_USER, TEST_PASSWORD};
use support::{cmd, docker};

const T: Duration = Duration::from_secs(10);

/// An `sshfs -f` run by the test itself; unmounted and killed on drop.
struct Sshfs {
    child: Child,
    mountpoint: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sshfs {
    fn mount(source: &str, options: &str, password: Option<&str>) -> Sshfs {
        let dir = tempfile::tempdir().expect("create mountpoint parent");
        // A space in the path exercises mountinfo unescaping.
        let mountpoint = dir.path().join("mnt point");
        fs::create_dir(&mountpoint).expect("create mountpoint");
        let mut child = Command::new("sshfs")
            .arg(source)
            .arg(&mountpoint)
            .args(["-f", "-o", options])
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run sshfs");
        let mut stdin = child.stdin.take().expect("sshfs stdin");
        if let Some(password) = password {
            writeln!(stdin, "{password}").expect("write password to sshfs");
        }
        drop(stdin);
        let mut sshfs = Sshfs {
            child,
            mountpoint,
            _dir: dir,
        };
        let mnt = sshfs.mountpoint.clone();
        // With `reconnect` sshfs mounts before it has connected: wait until
        // the mount answers, not just until it is listed.
        wait_until(T, "sshfs has mounted and answers", || {
            assert!(sshfs.alive(), "sshfs exited before mounting");
            is_mounted(&mnt) && fs::read_dir(&mnt).is_ok()
        });
        sshfs
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Sshfs {
    fn drop(&mut self) {
        let _ = mounts::lazy_unmount(&self.mountpoint);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sshfs_mounts_the_remote_by_key_and_unmounts() {
    let sshd = Sshd::new();
    let mut m = Sshfs::mount(&sshd.source(""), &sshd.sshfs_options(), None);
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
    assert_eq!(
        mounts::mounts_under(m._dir.path()),
        vec![m.mountpoint.clone()]
    );

    cmd::run_ok(Command::new("fusermount3").arg("-u").arg(&m.mountpoint));
    wait_until(T, "sshfs exits after fusermount3 -u", || !m.alive());
    assert!(!is_mounted(&m.mountpoint));
    assert!(mounts::processes_with_arg(&arg).is_empty());
}

#[test]
fn sshd_stop_drops_sessions_and_start_comes_back_on_the_same_port() {
    let mut sshd = Sshd::new();
    let port = sshd.port();
    let mut m = Sshfs::mount(&sshd.source("data"), &sshd.sshfs_options(), None);

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
    let m = Sshfs::mount(&sshd.source("data"), &sshd.sshfs_options(), None);
    fs::write(m.mountpoint.join("again"), "x").expect("write after restart");
    assert!(sshd.remote_dir().join("data/again").exists());
}

#[test]
fn sshfs_with_reconnect_survives_killed_connections() {
    let sshd = Sshd::new();
    let options = format!("{},reconnect,ServerAliveInterval=1", sshd.sshfs_options());
    let mut m = Sshfs::mount(&sshd.source(""), &options, None);
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
    let m = Sshfs::mount(&sshd.password_source("pw"), &options, Some(TEST_PASSWORD));
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
fn mountinfo_escapes_are_undone() {
    assert_eq!(mounts::unescape(r"/a\040b\011c\134d"), "/a b\tc\\d");
    assert_eq!(mounts::unescape(r"/plain\x"), r"/plain\x");
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
    let err = docker::docker_fails(&["volume", "inspect", "netfs-selftest-no-such-volume"]);
    assert!(err.contains("no such volume"), "{err}");
}
