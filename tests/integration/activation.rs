//! Socket activation, as systemd does it: the socket is bound before netfs
//! runs and outlives it, netfs takes it as fd 3 when `LISTEN_PID` names it.
//! The fd protocol with the binary alone; then a real dockerd starting
//! netfs on demand through `systemd-socket-activate`, and keeping on while
//! netfs is killed and started again under the same socket.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::support::client;
use crate::support::compose::Compose;
use crate::support::docker::{docker_ok, require_docker, run_in_container, Cleanup};
use crate::support::mounts::{poll_until, wait_until};
use crate::support::plugin::{pass_fds, Plugin, READY_TIMEOUT};
use crate::support::sshd::Sshd;
use crate::support::unique_name;

/// netfs started by hand with `fds` as its fds 3, 4, ...: `LISTEN_PID`
/// its own pid when `pid` is None, else `pid`.
struct Passed {
    child: Child,
    dir: tempfile::TempDir,
}

impl Passed {
    fn spawn(
        dir: tempfile::TempDir,
        fds: &[&UnixListener],
        pid: Option<&str>,
        env: &[(&str, &str)],
        args: &[String],
    ) -> Passed {
        let netfs = env!("CARGO_BIN_EXE_netfs");
        let log = fs::File::create(dir.path().join("log")).unwrap();
        let mut cmd = match pid {
            None => {
                let mut c = Command::new("sh");
                c.args(["-c", r#"LISTEN_PID=$$ exec "$@""#, "sh", netfs]);
                c
            }
            Some(pid) => {
                let mut c = Command::new(netfs);
                c.env("LISTEN_PID", pid);
                c
            }
        };
        for var in netfs::Cli::variables() {
            cmd.env_remove(var);
        }
        cmd.env("LISTEN_FDS", fds.len().to_string())
            .envs(env.iter().copied())
            .arg(format!(
                "--state-file={}",
                dir.path().join("state.json").display()
            ))
            .arg(format!(
                "--propagated-mount={}",
                dir.path().join("volumes").display()
            ))
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let raw: Vec<_> = fds.iter().map(|l| l.as_raw_fd()).collect();
        pass_fds(&mut cmd, &raw);
        let child = cmd.spawn().expect("run netfs");
        Passed { child, dir }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn wait_answering(&mut self, socket: &Path) {
        let child = &mut self.child;
        let ok = poll_until(READY_TIMEOUT, || {
            matches!(child.try_wait(), Ok(None))
                && matches!(
                    client::try_request(socket, "POST", "/Plugin.Activate", b"{}".to_vec()),
                    Ok(reply) if reply.status == 200
                )
        });
        assert!(
            ok,
            "netfs does not answer on {}:\n{}",
            socket.display(),
            self.log()
        );
    }

    /// SIGTERM, and the exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        self.wait_exit()
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut status = None;
        let child = &mut self.child;
        assert!(
            poll_until(Duration::from_secs(30), || {
                status = child.try_wait().unwrap();
                status.is_some()
            }),
            "netfs did not exit:\n{}",
            self.log()
        );
        status.unwrap()
    }
}

impl Drop for Passed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("netfs-activation-")
        .tempdir()
        .unwrap()
}

fn listen(path: &Path) -> UnixListener {
    let listener = UnixListener::bind(path).unwrap();
    listener.set_nonblocking(true).unwrap();
    listener
}

fn inode(path: &Path) -> u64 {
    fs::symlink_metadata(path)
        .map(|m| m.ino())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A connection made to `listener` and never accepted by anyone else is
/// still waiting in its queue.
fn still_queued(listener: &UnixListener) -> bool {
    listener.accept().is_ok()
}

#[test]
fn netfs_takes_the_passed_socket_keeps_it_from_its_tools_and_leaves_it() {
    let dir = scratch();
    let path = dir.path().join("plugin.sock");
    let held = listen(&path);
    let ino = inode(&path);
    let mut netfs = Passed::spawn(
        dir,
        &[&held],
        None,
        &[],
        &[format!("--socket={}", path.display())],
    );
    netfs.wait_answering(&path);
    let log = netfs.log();
    assert!(
        log.contains("using the socket systemd passed fd=3"),
        "{log}"
    );
    // Close-on-exec: a tool netfs starts does not hold the socket.
    let fdinfo = fs::read_to_string(format!("/proc/{}/fdinfo/3", netfs.child.id())).unwrap();
    let flags = fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
        .unwrap();
    assert_ne!(flags & 0o2000000, 0, "fd 3 is close-on-exec: {fdinfo}");
    // (That its tools get no LISTEN_* is the reaper's unit test.)
    assert!(netfs.stop().success(), "{}", netfs.log());
    // The socket is the one systemd (here the test) made, left as it was,
    // and a client that comes now waits for the next netfs.
    assert_eq!(inode(&path), ino);
    let _waiting = UnixStream::connect(&path).expect("the socket still takes connections");
    assert!(still_queued(&held));
}

#[test]
fn of_several_passed_sockets_netfs_serves_the_one_at_its_path() {
    let dir = scratch();
    let other_path = dir.path().join("other.sock");
    let path = dir.path().join("netfs.sock");
    let other = listen(&other_path);
    let ours = listen(&path);
    let mut netfs = Passed::spawn(
        dir,
        &[&other, &ours],
        None,
        &[("LISTEN_FDNAMES", "other.socket:netfs.socket")],
        &[format!("--socket={}", path.display())],
    );
    netfs.wait_answering(&path);
    let log = netfs.log();
    assert!(log.contains("fd=4 name=netfs.socket"), "{log}");
    let _client = UnixStream::connect(&other_path).unwrap();
    assert!(netfs.stop().success());
    assert!(
        still_queued(&other),
        "nobody took the other socket's connection"
    );

    // None at --socket: netfs says which it was given and stops.
    let dir = scratch();
    let elsewhere = dir.path().join("elsewhere.sock");
    let (a, b) = (
        listen(&dir.path().join("a.sock")),
        listen(&dir.path().join("b.sock")),
    );
    let mut netfs = Passed::spawn(
        dir,
        &[&a, &b],
        None,
        &[],
        &[format!("--socket={}", elsewhere.display())],
    );
    assert!(!netfs.wait_exit().success());
    let log = netfs.log();
    assert!(
        log.contains("systemd passed 2 sockets and none is") && log.contains("a.sock"),
        "{log}"
    );
}

#[test]
fn a_wrong_listen_pid_is_ignored_and_netfs_binds_its_own_socket() {
    let dir = scratch();
    let passed_path = dir.path().join("passed.sock");
    let own = dir.path().join("own.sock");
    let passed = listen(&passed_path);
    // Another process's pid: the fds are not for this one.
    let parent = std::process::id().to_string();
    let mut netfs = Passed::spawn(
        dir,
        &[&passed],
        Some(&parent),
        &[],
        &[format!("--socket={}", own.display())],
    );
    netfs.wait_answering(&own);
    assert!(!netfs.log().contains("systemd passed"), "{}", netfs.log());
    let _client = UnixStream::connect(&passed_path).unwrap();
    assert!(netfs.stop().success());
    assert!(
        still_queued(&passed),
        "netfs never accepted on the passed socket"
    );
    // Its own socket it made, and removes.
    assert!(!own.exists());
    assert!(passed_path.exists());
}

#[test]
fn a_passed_fd_that_is_no_listening_socket_is_refused() {
    let dir = scratch();
    let socket = dir.path().join("netfs.sock");
    // A socket that is bound but not listening.
    let not_listening = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    let std_listener = UnixListener::from(not_listening);
    let mut netfs = Passed::spawn(
        dir,
        &[&std_listener],
        None,
        &[],
        &[format!("--socket={}", socket.display())],
    );
    assert!(!netfs.wait_exit().success());
    let log = netfs.log();
    assert!(
        log.contains("fd 3 that systemd passed (LISTEN_FDS) is not a listening unix stream socket"),
        "{log}"
    );
    assert!(!socket.exists(), "nothing bound instead");
}

#[test]
fn csi_takes_the_passed_socket_too() {
    let dir = scratch();
    let path = dir.path().join("csi.sock");
    let held = listen(&path);
    let ino = inode(&path);
    let staging = dir.path().join("staged");
    let args = [
        "--mode=csi".to_owned(),
        format!("--csi-endpoint=unix://{}", path.display()),
        format!("--staging-root={}", staging.display()),
        "--node-id=activation-test".to_owned(),
    ];
    let mut netfs = Passed::spawn(dir, &[&held], None, &[], &args);
    let ok = poll_until(READY_TIMEOUT, || netfs.log().contains("serving csi"));
    assert!(ok, "{}", netfs.log());
    let log = netfs.log();
    assert!(
        log.contains("using the socket systemd passed fd=3"),
        "{log}"
    );
    assert!(
        log.contains(&format!("serving csi socket={}", path.display())),
        "{log}"
    );
    assert!(UnixStream::connect(&path).is_ok());
    assert!(netfs.stop().success(), "{}", netfs.log());
    assert_eq!(inode(&path), ino, "the passed socket stays");
}

fn netfs() -> Plugin {
    Plugin::new(env!("CARGO_BIN_EXE_netfs")).arg("--mount-timeout=15s")
}

/// `docker volume create -d <driver>` of an sshfs volume on `sshd`.
fn create(driver: &str, sshd: &Sshd, volume: &str) {
    let source = format!("source={}", sshd.source(""));
    let o = format!("o={}", sshd.sshfs_options());
    docker_ok(&[
        "volume", "create", "-d", driver, "-o", &source, "-o", &o, volume,
    ]);
}

/// Spawns the socket-activated plugin and waits until
/// `systemd-socket-activate` holds it, waiting for a connection.
fn spawn_waiting(plugin: &mut Plugin) {
    plugin.spawn();
    // `sh` until it execs; a request may already have started netfs.
    wait_until(READY_TIMEOUT, "systemd-socket-activate runs", || {
        let name = plugin.process_name();
        name.starts_with("systemd-socket") || name == "netfs"
    });
}

/// How often the log shows netfs started by a connection.
fn activations(plugin: &Plugin) -> usize {
    plugin
        .log()
        .matches("using the socket systemd passed")
        .count()
}

#[test]
fn dockerd_starts_netfs_with_its_first_request() {
    require_docker();
    let sshd = Sshd::new();
    let mut plugin = netfs().socket_activated();
    spawn_waiting(&mut plugin);
    let mut cleanup = Cleanup::new();
    let volume = cleanup.volume(unique_name("activated"));
    create(plugin.driver_name(), &sshd, &volume);
    assert_eq!(plugin.process_name(), "netfs", "{}", plugin.log());
    let log = plugin.log();
    assert!(log.contains("Communication attempt on fd 3"), "{log}");
    assert_eq!(activations(&plugin), 1, "{log}");

    run_in_container(&volume, "/data", "echo on-demand > /data/on-demand.txt");
    assert_eq!(
        fs::read_to_string(sshd.remote_dir().join("on-demand.txt")).unwrap(),
        "on-demand\n"
    );
    docker_ok(&["volume", "rm", &volume]);
}

#[test]
fn netfs_killed_and_started_again_under_the_same_socket_while_dockerd_keeps_working() {
    require_docker();
    let sshd = Sshd::new();
    let mut plugin = netfs().socket_activated();
    let socket = plugin.socket();
    let ino = inode(&socket);
    spawn_waiting(&mut plugin);
    let mut cleanup = Cleanup::new();
    let volume = cleanup.volume(unique_name("activated"));
    create(plugin.driver_name(), &sshd, &volume);
    run_in_container(&volume, "/data", "echo before > /data/before.txt");

    // A crash: the socket stays, and the next request starts netfs again,
    // which brings the volume back. Compose creates a volume meanwhile.
    plugin.kill9();
    spawn_waiting(&mut plugin);
    let mut compose = Compose::new(
        unique_name("activation"),
        plugin.driver_name(),
        sshd.source(""),
        sshd.sshfs_options(),
    );
    let start = Instant::now();
    compose.run_ok(&["up", "--exit-code-from", "app"]);
    let up = start.elapsed();
    assert_eq!(plugin.process_name(), "netfs");
    assert_eq!(activations(&plugin), 2, "{}", plugin.log());
    // Not bounded here: on a dockerd shared with other tests, plugins
    // they stopped make every look-up of a new name wait (see below).
    eprintln!("compose up while netfs was down (socket held): {up:?}");
    assert!(fs::read_to_string(sshd.remote_dir().join("visits.txt")).is_ok());
    assert_eq!(
        run_in_container(&volume, "/data", "cat /data/before.txt"),
        "before\n"
    );

    // A stop: netfs leaves the socket it did not make; `down -v` starts it
    // once more to remove the compose volume.
    assert!(plugin.terminate().success(), "{}", plugin.log());
    assert_eq!(inode(&socket), ino, "the socket file is the one held");
    spawn_waiting(&mut plugin);
    compose.run_ok(&["down", "-v"]);
    compose.down = true;
    assert_eq!(activations(&plugin), 3, "{}", plugin.log());
    let left = docker_ok(&[
        "volume",
        "ls",
        "-q",
        "-f",
        &format!("driver={}", plugin.driver_name()),
    ]);
    assert!(!left.contains(&compose.volume()), "{left}");
    assert!(left.contains(&volume), "{left}");
    docker_ok(&["volume", "rm", &volume]);
}

/// Runs `docker args...` and times it; (seconds, succeeded).
fn timed(args: &[&str]) -> (f64, bool) {
    let start = Instant::now();
    let out = crate::support::docker::docker(args);
    (start.elapsed().as_secs_f64(), out.status.success())
}

fn timed_compose(compose: &Compose) -> (f64, String) {
    let start = Instant::now();
    let out = compose.run(&["up", "--exit-code-from", "app"]);
    let outcome = if out.status.success() {
        "ok".to_owned()
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        format!("failed: {}", stderr.lines().last().unwrap_or("").trim())
    };
    (start.elapsed().as_secs_f64(), outcome)
}

/// dockerd's log: where setup.sh started it, or `NETFS_DOCKERD_LOG` for a
/// dockerd of one's own (`DOCKER_HOST`), which knows no stopped plugin of
/// other runs.
fn dockerd_log() -> PathBuf {
    std::env::var_os("NETFS_DOCKERD_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/log/netfs-dockerd.log"))
}

/// The log's length now, to read what comes after.
fn log_mark() -> usize {
    fs::metadata(dockerd_log())
        .map(|m| m.len() as usize)
        .unwrap_or(0)
}

/// How often, since `mark`, dockerd could not reach `socket`, and over how
/// many seconds (first to last attempt).
fn failed_connects(mark: usize, socket: &Path) -> (usize, f64) {
    let log = fs::read(dockerd_log()).unwrap_or_default();
    let text = String::from_utf8_lossy(log.get(mark..).unwrap_or_default());
    let needle = format!("Unable to connect to plugin: {}/", socket.display());
    let times: Vec<f64> = text
        .lines()
        .filter(|l| l.contains(&needle))
        .filter_map(|l| {
            l.split("time=\"")
                .nth(1)?
                .split('"')
                .next()
                .map(str::to_owned)
        })
        .filter_map(|t| {
            humantime::parse_rfc3339_weak(t.trim_end_matches('Z').split('.').next()?).ok()
        })
        .map(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
        })
        .collect();
    let span = match (times.first(), times.last()) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    (times.len(), span)
}

/// One phase: `docker volume inspect <unknown>` and a Compose `up` of a new
/// named volume on `driver`, timed, then `down -v`; and what dockerd's log
/// says of its attempts to reach `watched` meanwhile.
struct Phase {
    inspect: f64,
    up: f64,
    outcome: String,
    failed: usize,
    span: f64,
}

fn phase(driver: &str, sshd: &Sshd, unknown: &str, watched: &Path) -> Phase {
    let mark = log_mark();
    let (inspect, found) = timed(&["volume", "inspect", unknown]);
    assert!(!found, "{unknown} is unknown");
    let compose = Compose::new(
        unique_name("activation"),
        driver,
        sshd.source(""),
        sshd.sshfs_options(),
    );
    let (up, outcome) = timed_compose(&compose);
    let (failed, span) = failed_connects(mark, watched);
    drop(compose);
    Phase {
        inspect,
        up,
        outcome,
        failed,
        span,
    }
}

/// Every legacy plugin dockerd could not reach over the last `lines` of its
/// log: the others that slow each look-up here.
fn dead_plugins(lines: usize) -> Vec<String> {
    let log = fs::read_to_string(dockerd_log()).unwrap_or_default();
    let all: Vec<&str> = log.lines().collect();
    let mut dead: Vec<String> = all[all.len().saturating_sub(lines)..]
        .iter()
        .filter_map(|l| l.split("Unable to connect to plugin: ").nth(1))
        .filter_map(|rest| rest.split("/VolumeDriver").next().map(str::to_owned))
        .collect();
    dead.sort();
    dead.dedup();
    dead
}

/// What a stopped host-service plugin costs dockerd, side by side in one
/// run: with socket activation the next request starts netfs; without,
/// dockerd retries the missing socket on every look-up of a volume name it
/// does not know, Compose's included. dockerd's own log tells which of its
/// failed attempts were at this plugin, apart from those at plugins other
/// runs left stopped on a shared dockerd.
///
/// A measurement, not a check `make test` needs: each phase waits as long
/// as dockerd's retries take, and while the plain plugin is down every
/// other test's look-ups wait too. Run it by hand:
/// `cargo test --test integration -- --ignored --nocapture activation::measure`,
/// best against a dockerd of one's own (`DOCKER_HOST`, `NETFS_DOCKERD_LOG`,
/// see docs/install.md) where no stopped plugin of other runs adds its wait.
#[test]
#[ignore = "a measurement of minutes that slows the shared dockerd; run by hand (docs/install.md)"]
fn measure_a_stopped_plugin_with_and_without_socket_activation() {
    require_docker();
    let sshd = Sshd::new();
    let mut activated = netfs().socket_activated();
    spawn_waiting(&mut activated);
    let mut plain = netfs().start();
    // dockerd meets both.
    for driver in [activated.driver_name(), plain.driver_name()] {
        let volume = unique_name("activation-meet");
        create(driver, &sshd, &volume);
        docker_ok(&["volume", "rm", &volume]);
    }
    let unknown = unique_name("activation-no-such-volume");
    let (a_sock, p_sock) = (activated.socket(), plain.socket());

    // With socket activation: netfs stopped, the socket held.
    assert!(activated.terminate().success());
    spawn_waiting(&mut activated);
    let on = phase(activated.driver_name(), &sshd, &unknown, &a_sock);
    let started = activations(&activated);
    // Without: netfs stopped, its socket gone with it.
    assert!(plain.terminate().success());
    assert!(!p_sock.exists());
    let off = phase(plain.driver_name(), &sshd, &unknown, &p_sock);
    // Recovery: the plugin back on its socket.
    plain.restart();
    let others: Vec<String> = dead_plugins(20_000)
        .into_iter()
        .filter(|p| Path::new(p) != p_sock && Path::new(p) != a_sock)
        .collect();

    eprintln!(
        "stopped host-service plugin, dockerd {}, {} other stopped plugins known to it ({}):\n\
         | netfs stopped | `docker volume inspect <unknown>` | `docker-compose up`, new named volume | dockerd's failed attempts at this plugin |\n\
         | with socket activation | {:.1} s | {:.1} s ({}) | {} |\n\
         | without | {:.1} s | {:.1} s ({}) | {} over {:.0} s |",
        docker_ok(&["version", "-f", "{{.Server.Version}}"]).trim(),
        others.len(),
        others.join(", "),
        on.inspect, on.up, on.outcome, on.failed,
        off.inspect, off.up, off.outcome, off.failed, off.span,
    );
    assert_eq!(on.outcome, "ok", "compose up with socket activation");
    assert_eq!(
        on.failed, 0,
        "dockerd always reached the socket-activated plugin"
    );
    assert!(
        started >= 2,
        "the requests started netfs: {}",
        activated.log()
    );
    assert!(off.failed > 0, "dockerd retried the stopped plugin");
}
