//! The docker CLI against the machine's dockerd (started by `make test`).
//! Tests that need dockerd call [`require_docker`] first: they fail with a
//! clear message when it is missing, never skip.
//!
//! One test restarts dockerd. So that no other test, in this process or
//! another, meets the daemon going down, every docker command and every
//! [`Cleanup`] (which lives as long as its test) holds a shared `flock` on
//! [`DAEMON_LOCK`]; the restart holds it exclusively ([`own_daemon`]).

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fs::File;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;

use super::cmd;

/// The busybox image scripts/setup.sh imports for test containers.
pub const TEST_IMAGE: &str = "netfs-test-busybox";

/// Longer than dockerd's 2 minutes for a plugin's Create or Mount.
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(180);

/// Volumes a `docker volume rm` here removed: [`Cleanup`] skips them, as
/// removing a volume dockerd does not know makes it ask every driver it
/// ever knew, one after the other.
static REMOVED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

pub const DAEMON_LOCK: &str = "/run/netfs-test/dockerd.lock";

thread_local! {
    /// This test thread holds the exclusive lock: it takes no shared one.
    static OWNS_DAEMON: Cell<bool> = const { Cell::new(false) };
}

fn lock_daemon(how: FlockArg) -> Option<Flock<File>> {
    if OWNS_DAEMON.get() {
        return None;
    }
    std::fs::create_dir_all("/run/netfs-test").expect("create /run/netfs-test");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(DAEMON_LOCK)
        .unwrap_or_else(|e| panic!("open {DAEMON_LOCK}: {e}"));
    Some(Flock::lock(file, how).unwrap_or_else(|(_, e)| panic!("flock {DAEMON_LOCK}: {e}")))
}

/// The right to stop and start dockerd, for the test that restarts it:
/// waits until no test anywhere uses dockerd, and keeps them waiting until
/// dropped. Docker helpers called from this thread meanwhile do not wait.
pub struct DaemonOwner(Option<Flock<File>>);

pub fn own_daemon() -> DaemonOwner {
    let lock = lock_daemon(FlockArg::LockExclusive);
    OWNS_DAEMON.set(true);
    DaemonOwner(lock)
}

impl Drop for DaemonOwner {
    fn drop(&mut self) {
        OWNS_DAEMON.set(false);
    }
}

/// Runs `docker args...`, whatever its exit status.
pub fn docker(args: &[&str]) -> Output {
    let _daemon = lock_daemon(FlockArg::LockShared);
    let out = cmd::run(Command::new("docker").args(args), DOCKER_TIMEOUT);
    if out.status.success() {
        note_volumes(args, &out);
    }
    out
}

fn note_volumes(args: &[&str], out: &Output) {
    let mut removed = REMOVED.lock().unwrap_or_else(|e| e.into_inner());
    match args {
        ["volume", "rm" | "remove", rest @ ..] => {
            removed.extend(
                rest.iter()
                    .filter(|a| !a.starts_with('-'))
                    .map(|a| a.to_string()),
            );
        }
        ["volume", "create", ..] => {
            removed.remove(String::from_utf8_lossy(&out.stdout).trim());
        }
        _ => {}
    }
}

fn show(args: &[&str], out: &Output) -> String {
    format!(
        "`docker {}` exited {}.\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `docker args...`, panics with its stderr unless it succeeds;
/// returns stdout.
/// The argv of `docker volume create -d <driver> -o k=v ... <name>`.
pub fn volume_create_args(driver: &str, name: &str, opts: &[(&str, String)]) -> Vec<String> {
    let mut args = vec![
        "volume".to_owned(),
        "create".into(),
        "-d".into(),
        driver.into(),
    ];
    for (k, v) in opts {
        args.push("-o".into());
        args.push(format!("{k}={v}"));
    }
    args.push(name.into());
    args
}

pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(out.status.success(), "{}", show(args, &out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `docker args...`, panics if it succeeds; returns stderr.
pub fn docker_fails(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        !out.status.success(),
        "expected failure: {}",
        show(args, &out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Panics unless dockerd answers. Also starts the caretaker of test driver
/// names (see [`super::driver_pool`]), so dockerd never waits on one.
pub fn require_docker() {
    super::driver_pool::start_caretaker();
    let _daemon = lock_daemon(FlockArg::LockShared);
    let out = cmd::run(Command::new("docker").arg("info"), Duration::from_secs(30));
    assert!(
        out.status.success(),
        "dockerd is not running: run `make test`, which starts it.\n`docker info`: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `docker volume inspect name`, the one object (not the array).
pub fn volume_inspect(name: &str) -> Value {
    let text = docker_ok(&["volume", "inspect", name]);
    let all: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("`docker volume inspect {name}` is not JSON ({e}): {text}"));
    all.get(0)
        .cloned()
        .unwrap_or_else(|| panic!("`docker volume inspect {name}` gave no volume: {text}"))
}

/// Runs a throwaway container of [`TEST_IMAGE`] with `volume` mounted at
/// `target`, running `sh -c script`; returns its output (panics on failure).
pub fn run_in_container(volume: &str, target: &str, script: &str) -> String {
    let mount = format!("{volume}:{target}");
    docker_ok(&["run", "--rm", "-v", &mount, TEST_IMAGE, "sh", "-c", script])
}

/// Removes the containers and volumes it was given when dropped
/// (containers first, forcibly; errors ignored), even when a test fails.
pub struct Cleanup {
    containers: Vec<String>,
    volumes: Vec<String>,
    /// Held for the whole test: dockerd is not restarted under it.
    _daemon: Option<Flock<File>>,
}

impl Cleanup {
    pub fn new() -> Cleanup {
        Cleanup {
            containers: Vec::new(),
            volumes: Vec::new(),
            _daemon: lock_daemon(FlockArg::LockShared),
        }
    }

    /// Registers a container and returns its name, for chaining.
    pub fn container(&mut self, name: impl Into<String>) -> String {
        let name = name.into();
        self.containers.push(name.clone());
        name
    }

    /// Registers a volume and returns its name, for chaining.
    pub fn volume(&mut self, name: impl Into<String>) -> String {
        let name = name.into();
        self.volumes.push(name.clone());
        name
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // No panics here: this runs while a failing test unwinds.
        let quietly = |first: &[&str], names: &[String]| {
            if !names.is_empty() {
                let mut cmd = Command::new("docker");
                cmd.args(first).args(names);
                let _ = cmd::try_run_input(&mut cmd, None, DOCKER_TIMEOUT);
            }
        };
        quietly(&["rm", "-f"], &self.containers);
        let removed = REMOVED.lock().unwrap_or_else(|e| e.into_inner());
        let left: Vec<String> = self
            .volumes
            .iter()
            .filter(|v| !removed.contains(*v))
            .cloned()
            .collect();
        drop(removed);
        quietly(&["volume", "rm", "-f"], &left);
    }
}
