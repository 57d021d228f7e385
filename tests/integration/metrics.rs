//! `--metrics-address` against the real binary and real tools: a scrape
//! follows an sshfs killed with SIGKILL from mounted through restarting
//! back to mounted, counts its restart and shows netfs's own memory and
//! fds; a shared ssh connection shows its volumes; TCP is served on
//! loopback only unless allowed.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::support::calls::{create_ok, sshfs_opts, status, wait_state};
use crate::support::client;
use crate::support::plugin::Plugin;
use crate::support::sshd::Sshd;
use crate::support::{unique_name, wait_until};

const T: Duration = Duration::from_secs(30);

/// Samples of one scrape: `name{labels}` to value.
type Samples = BTreeMap<String, f64>;

fn parse(text: &str) -> Samples {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample: {l:?}"));
            let value = value
                .parse()
                .unwrap_or_else(|e| panic!("not a number in {l:?}: {e}"));
            (key.to_owned(), value)
        })
        .collect()
}

fn scrape_unix(socket: &Path) -> Samples {
    let reply = client::request(socket, "GET", "/metrics", Vec::new());
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.content_type.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse(&reply.text())
}

/// `GET path` over TCP with HTTP/1.0: (status, body).
fn get_tcp(address: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect to the metrics address");
    stream
        .set_read_timeout(Some(T))
        .expect("set a read timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").expect("send a request");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read the reply");
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (code, body.to_owned())
}

fn state_of(samples: &Samples, volume: &str) -> Vec<String> {
    let prefix = format!("netfs_volume_state{{volume=\"{volume}\",backend=\"sshfs\",state=\"");
    samples
        .iter()
        .filter(|(_, v)| **v == 1.0)
        .filter_map(|(k, _)| k.strip_prefix(&prefix))
        .map(|rest| rest.trim_end_matches("\"}").to_owned())
        .collect()
}

fn value(samples: &Samples, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {samples:#?}"))
}

#[test]
fn a_scrape_follows_an_sshfs_killed_with_sigkill_through_restarting_back_to_mounted() {
    let sshd = Sshd::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("metrics.sock");
    let plugin = Plugin::new(env!("CARGO_BIN_EXE_netfs"))
        .env("METRICS_ADDRESS", &socket)
        .start();
    let name = unique_name("metrics");
    create_ok(&plugin, &name, sshfs_opts(&sshd, ""));

    let samples = scrape_unix(&socket);
    assert_eq!(state_of(&samples, &name), ["mounted"]);
    let volume = |family: &str| format!("{family}{{volume=\"{name}\"}}");
    assert_eq!(value(&samples, &volume("netfs_volume_restarts_total")), 0.0);
    assert_eq!(
        value(&samples, &volume("netfs_volume_reattaches_total")),
        0.0
    );
    let took = value(&samples, &volume("netfs_volume_mount_duration_seconds"));
    assert!(took > 0.0 && took < 20.0, "mount took {took} s");
    assert!(!samples.contains_key(&volume("netfs_volume_last_restart_timestamp_seconds")));
    let rss = value(&samples, "process_resident_memory_bytes");
    assert!((1e6..1e9).contains(&rss), "netfs's RSS: {rss} bytes");
    let fds = value(&samples, "process_open_fds");
    assert!((3.0..1000.0).contains(&fds), "netfs's open fds: {fds}");

    // The server stops answering new logins (its listener is frozen; the
    // sessions it serves go on), so the restart stays under way until it
    // is let go.
    let sshd_pid = Pid::from_raw(sshd.pid().expect("sshd runs"));
    kill(sshd_pid, Signal::SIGSTOP).expect("freeze sshd's listener");
    let _thaw = Thaw(sshd_pid);
    let sshfs = status(&plugin, &name)["pid"]
        .as_i64()
        .expect("a pid in Status");
    let killed_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs_f64();
    kill(Pid::from_raw(sshfs as i32), Signal::SIGKILL).expect("kill -9 sshfs");

    let mut seen = Samples::new();
    // Restarting from the crash on: first the backoff, then the restart
    // itself, which counts.
    wait_until(T, "a scrape showing the volume's restart under way", || {
        seen = scrape_unix(&socket);
        state_of(&seen, &name) == ["restarting"]
            && seen.get(&volume("netfs_volume_restarts_total")) == Some(&1.0)
    });
    let restarted_at = value(
        &seen,
        &volume("netfs_volume_last_restart_timestamp_seconds"),
    );
    assert!(
        restarted_at >= killed_at - 1.0 && restarted_at < killed_at + 30.0,
        "last restart at {restarted_at}, killed at {killed_at}"
    );

    kill(sshd_pid, Signal::SIGCONT).expect("let sshd answer again");
    wait_until(T, "a scrape showing the volume mounted again", || {
        seen = scrape_unix(&socket);
        state_of(&seen, &name) == ["mounted"]
    });
    let restarts = value(&seen, &volume("netfs_volume_restarts_total"));
    assert!(restarts >= 1.0, "restarts: {restarts}");
    assert_eq!(
        Some(restarts),
        status(&plugin, &name)["restarts"].as_f64(),
        "metrics and Status count the same restarts"
    );
    let pid = wait_state(&plugin, &name, "mounted", T)["pid"].as_i64();
    assert!(pid.is_some_and(|p| p != sshfs), "a new sshfs: {pid:?}");
    let text = client::request(&socket, "GET", "/metrics", Vec::new()).text();
    eprintln!("netfs-suite metrics after one kill -9:\n{text}");
}

/// Lets a frozen process go on, whatever the test's outcome.
struct Thaw(Pid);

impl Drop for Thaw {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

#[test]
fn a_shared_ssh_connection_shows_its_state_and_the_volumes_it_serves() {
    let sshd = Sshd::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("metrics.sock");
    let plugin = Plugin::new(env!("CARGO_BIN_EXE_netfs"))
        .env("METRICS_ADDRESS", format!("unix://{}", socket.display()))
        .env("SHARE_SSH_CONNECTIONS", "true")
        .start();
    let names = [unique_name("shared"), unique_name("shared")];
    for name in &names {
        create_ok(&plugin, name, sshfs_opts(&sshd, ""));
    }
    let samples = scrape_unix(&socket);
    let of_volume = |name: &str| {
        let prefix = format!("netfs_volume_ssh_connection{{volume=\"{name}\",connection=\"");
        samples
            .keys()
            .find_map(|k| {
                k.strip_prefix(&prefix)
                    .map(|c| c.trim_end_matches("\"}").to_owned())
            })
            .unwrap_or_else(|| panic!("{name} has no connection in {samples:#?}"))
    };
    let connection = of_volume(&names[0]);
    assert_eq!(of_volume(&names[1]), connection, "one connection for both");
    let endpoint = format!("root@127.0.0.1:{}", sshd.port());
    let labels = format!("connection=\"{connection}\",endpoint=\"{endpoint}\"");
    assert_eq!(
        value(
            &samples,
            &format!("netfs_ssh_connection_volumes{{{labels}}}")
        ),
        2.0
    );
    assert_eq!(
        value(
            &samples,
            &format!("netfs_ssh_connection_state{{{labels},state=\"up\"}}")
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            &format!("netfs_ssh_connection_logins_total{{{labels}}}")
        ),
        1.0
    );
}

#[test]
fn tcp_is_served_on_loopback_and_refused_elsewhere_unless_allowed() {
    let mut plugin = Plugin::new(env!("CARGO_BIN_EXE_netfs"))
        .arg("--metrics-address=127.0.0.1:0")
        .start();
    let log = plugin.log();
    let address = log
        .lines()
        .filter(|l| l.contains("serving metrics"))
        .find_map(|l| l.split("address=").nth(1))
        .map(|a| a.split_whitespace().next().unwrap_or_default().to_owned())
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"));
    let (code, body) = get_tcp(&address, "/metrics");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("# TYPE netfs_volume_state gauge\n"), "{body}");
    assert!(parse(&body).contains_key("process_open_fds"), "{body}");
    let (code, _) = get_tcp(&address, "/");
    assert_eq!(code, 404);
    plugin.terminate();

    // Not loopback: netfs does not start, and says why and what to set.
    let mut refused = Plugin::new(env!("CARGO_BIN_EXE_netfs")).env("METRICS_ADDRESS", "0.0.0.0:0");
    refused.spawn();
    let exit = refused.wait_exit(T);
    assert!(!exit.success());
    let log = refused.log();
    assert!(
        log.contains("is not a loopback address") && log.contains("METRICS_ALLOW_REMOTE=true"),
        "{log}"
    );
    // Allowed explicitly, it serves (on every address, so also loopback).
    let allowed = Plugin::new(env!("CARGO_BIN_EXE_netfs"))
        .env("METRICS_ADDRESS", "0.0.0.0:0")
        .env("METRICS_ALLOW_REMOTE", "true")
        .start();
    let log = allowed.log();
    let port = log
        .lines()
        .filter(|l| l.contains("serving metrics"))
        .find_map(|l| l.split("address=0.0.0.0:").nth(1))
        .and_then(|p| p.split_whitespace().next())
        .unwrap_or_else(|| panic!("no metrics port in the log:\n{log}"))
        .to_owned();
    let (code, _) = get_tcp(&format!("127.0.0.1:{port}"), "/metrics");
    assert_eq!(code, 200);
}
