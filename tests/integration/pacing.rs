//! Start-ups paced per server, against both stock servers (OpenSSH's
//! defaults and Debian's `sshd_config`, `MaxStartups 10:30:100`): a
//! hundred sshfs volumes created at once, restored at plugin start and
//! restarted after all their sshfs were killed at once, all mount with no
//! extra restart, no failure and no connection refused, with sharing off
//! and on (then through ⌈100 / 10⌉ logins and no session refused); the same
//! restore without pacing is refused by the server. A
//! start-up waits only for its own server's turns, and gets one as soon as
//! an earlier start-up there has failed.

use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::support::calls::{create, sshfs_opts, start, try_status};
use crate::support::client::err_of;
use crate::support::mounts::{is_mounted, poll_until, processes_with_arg};
use crate::support::plugin::Plugin;
use crate::support::report;
use crate::support::sshd::{Flavour, Sshd};
use crate::support::wait_until;

const VOLUMES: usize = 100;
const T: Duration = Duration::from_secs(20);
/// Far more than a paced restore of a hundred volumes needs here (≈ 10 s).
const RESTORE_WITHIN: Duration = Duration::from_secs(120);

fn names() -> Vec<String> {
    (0..VOLUMES).map(|i| format!("paced-{i:03}")).collect()
}

/// Creates the hundred volumes, all at once, each on its own subdir.
fn create_all(plugin: &Plugin, sshd: &Sshd) {
    let socket = plugin.socket();
    let replies: Vec<(String, u16, Value)> = std::thread::scope(|s| {
        let calls: Vec<_> = names()
            .into_iter()
            .map(|name| {
                let body = json!({"Name": name, "Opts": sshfs_opts(sshd, &name)});
                let socket = &socket;
                s.spawn(move || {
                    let (code, reply) =
                        crate::support::client::post(socket, "/VolumeDriver.Create", body);
                    (name, code, reply)
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for (name, code, reply) in replies {
        assert_eq!(code, 200, "create {name}: {reply}\n{}", plugin.log());
    }
}

/// Every volume's Status once all are mounted, or when the time is up.
fn settled(plugin: &Plugin) -> Vec<(String, Value)> {
    settled_when(plugin, |s| s["state"] == "mounted")
}

/// Every volume's Status once `done` holds for each, or when the time is up.
fn settled_when(plugin: &Plugin, done: impl Fn(&Value) -> bool) -> Vec<(String, Value)> {
    let mut statuses = Vec::new();
    poll_until(RESTORE_WITHIN, || {
        statuses = names()
            .into_iter()
            .map(|n| {
                let s = try_status(plugin, &n).unwrap_or(Value::Null);
                (n, s)
            })
            .collect();
        statuses.iter().all(|(_, s)| done(s))
    });
    statuses
}

crate::against_both_servers!(
    a_hundred_volumes_restore_and_restart_against_a_stock_sshd_with_no_refusal,
    a_hundred_shared_volumes_restore_through_ten_logins_and_restart_with_none,
    without_pacing_a_stock_sshd_refuses_part_of_the_same_restore,
    start_ups_wait_for_their_turn_at_their_own_server_only,
    a_turn_ends_at_the_login_not_at_the_mount,
);

fn a_hundred_volumes_restore_and_restart_against_a_stock_sshd_with_no_refusal(flavour: Flavour) {
    a_hundred(flavour, false);
}

/// With sharing on: ⌈100 / 10⌉ logins at the restore, none at the
/// restarts, and no session refused by the server.
fn a_hundred_shared_volumes_restore_through_ten_logins_and_restart_with_none(flavour: Flavour) {
    a_hundred(flavour, true);
}

/// Logins the server accepted so far.
fn logins(sshd: &Sshd) -> usize {
    sshd.log().matches("Accepted publickey for").count()
}

fn a_hundred(flavour: Flavour, shared: bool) {
    let sshd = Sshd::of(flavour);
    let what = format!(
        "{VOLUMES} sshfs volumes{} against {}",
        if shared { ", sharing on," } else { "" },
        flavour.describe()
    );
    let mut plugin = start(&[&format!("--share-ssh-connections={shared}")]);
    let t = Instant::now();
    create_all(&plugin, &sshd);
    let created = t.elapsed();
    assert_eq!(
        sshd.throttled(),
        Vec::<String>::new(),
        "Creates were refused"
    );

    assert!(plugin.terminate().success(), "{}", plugin.log());
    let before = logins(&sshd);
    let t = Instant::now();
    plugin.restart();
    let statuses = settled(&plugin);
    let restored = t.elapsed();
    let restore_logins = logins(&sshd) - before;

    let mut trouble = Vec::new();
    for (name, s) in &statuses {
        let mountpoint = plugin.mount_root().join(name);
        if s["state"] != "mounted"
            || s["restarts"] != 0
            || s.get("lastError").is_some()
            || !is_mounted(&mountpoint)
        {
            trouble.push(format!("{name}: {s}"));
        }
    }
    assert!(
        trouble.is_empty(),
        "not cleanly restored:\n{}",
        trouble.join("\n")
    );
    let refused = sshd.throttled();
    assert!(
        refused.is_empty(),
        "sshd refused connections:\n{}",
        refused.join("\n")
    );
    assert!(
        !plugin.log().contains("will retry"),
        "a start was retried:\n{}",
        plugin.log()
    );
    let expected = if shared {
        VOLUMES.div_ceil(10)
    } else {
        VOLUMES
    };
    assert_eq!(restore_logins, expected, "logins at the restore");
    assert!(
        !plugin.log().contains("refused another session"),
        "the server refused sessions:\n{}",
        plugin.log()
    );
    report(
        "pacing",
        &format!(
            "{what}, 5 start-ups at a time: created at once in {:.1} s, restored in {:.1} s \
             through {restore_logins} logins; 0 restarts, 0 failures, 0 connections or \
             sessions refused",
            created.as_secs_f64(),
            restored.as_secs_f64()
        ),
    );
    let before = logins(&sshd);

    // Every sshfs killed at once: the restarts are paced too.
    for (name, s) in &statuses {
        let pid = s["pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("{name} has no pid: {s}"));
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    let t = Instant::now();
    let statuses = settled_when(&plugin, |s| s["state"] == "mounted" && s["restarts"] != 0);
    let restarted = t.elapsed();
    let trouble: Vec<String> = statuses
        .iter()
        .filter(|(_, s)| s["state"] != "mounted" || s["restarts"] != 1)
        .map(|(name, s)| format!("{name}: {s}"))
        .collect();
    assert!(
        trouble.is_empty(),
        "not restarted exactly once:\n{}",
        trouble.join("\n")
    );
    let refused = sshd.throttled();
    assert!(
        refused.is_empty(),
        "sshd refused restarts:\n{}",
        refused.join("\n")
    );
    let restart_logins = logins(&sshd) - before;
    if shared {
        assert_eq!(restart_logins, 0, "logins at the restarts");
        assert!(
            !plugin.log().contains("refused another session"),
            "the server refused sessions:\n{}",
            plugin.log()
        );
    }
    report(
        "pacing",
        &format!(
            "then every sshfs killed at once: all {VOLUMES} mounted again in {:.1} s, each \
             with exactly 1 restart, {restart_logins} logins, 0 connections or sessions refused",
            restarted.as_secs_f64()
        ),
    );
}

fn without_pacing_a_stock_sshd_refuses_part_of_the_same_restore(flavour: Flavour) {
    let sshd = Sshd::of(flavour);
    let mut plugin = start(&[]);
    create_all(&plugin, &sshd);
    assert!(plugin.terminate().success(), "{}", plugin.log());
    // As good as no pacing: every tool starts at once.
    plugin.set_env("MAX_STARTUPS_PER_ENDPOINT", "1000");
    let t = Instant::now();
    plugin.restart();
    // The volumes come back in the end (netfs retries); what matters is
    // what the server did meanwhile.
    let statuses = settled(&plugin);
    let took = t.elapsed();
    let restarts: u64 = statuses
        .iter()
        .map(|(_, s)| s["restarts"].as_u64().unwrap_or(0))
        .sum();
    let retried = statuses.iter().filter(|(_, s)| s["restarts"] != 0).count();
    let refused = sshd.throttled();
    assert!(
        !refused.is_empty(),
        "a stock sshd took {VOLUMES} handshakes at once without refusing any; \
         is its configuration still stock?"
    );
    assert!(
        restarts > 0,
        "no start failed although sshd refused connections"
    );
    let dropped = refused
        .iter()
        .filter(|l| l.contains("past MaxStartups"))
        .count();
    let example = statuses
        .iter()
        .find(|(_, s)| s["restarts"] != 0)
        .map(|(_, s)| s["lastError"].clone());
    report(
        "pacing",
        &format!(
            "the same restore unpaced: sshd dropped {dropped} connections past MaxStartups, \
             {retried} volumes needed {restarts} restarts, all mounted after {:.1} s; \
             a retried volume's last error: {}",
            took.as_secs_f64(),
            example.unwrap_or_default()
        ),
    );
}

/// A server that takes TCP connections (the kernel's backlog does) and
/// never says a word: an ssh client waits for its banner until netfs's
/// mount timeout.
fn silent_server() -> (TcpListener, u16) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local address").port();
    (listener, port)
}

fn start_ups_wait_for_their_turn_at_their_own_server_only(flavour: Flavour) {
    let sshd = Sshd::of(flavour);
    let (_silent, port) = silent_server();
    let plugin = start(&["--max-startups-per-endpoint=1", "--mount-timeout=4s"]);
    let hanging = json!({
        "source": format!("root@127.0.0.1:{}", sshd.remote_path("x").display()),
        "o": format!("port={port},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null"),
    });
    let timed_create = |name: &str, opts: Value| {
        let t = Instant::now();
        let (code, reply) = create(&plugin, name, opts);
        (code, reply, Instant::now(), t.elapsed())
    };
    std::thread::scope(|s| {
        // `first` takes the silent server's only turn and hangs in it.
        let first = s.spawn(|| timed_create("turn-first", hanging.clone()));
        // (A volume being created has no Status yet: look for its sshfs.)
        let first_point = plugin.mount_root().join("turn-first");
        wait_until(T, "the first start-up holds its turn", || {
            !processes_with_arg(&first_point.to_string_lossy()).is_empty()
        });
        let second = s.spawn(|| timed_create("turn-second", hanging.clone()));
        // Another server has turns of its own.
        let (code, reply, other_done, _) = timed_create("turn-other", sshfs_opts(&sshd, "o"));
        assert_eq!(code, 200, "{reply}\n{}", plugin.log());
        let (code, reply, first_done, _) = first.join().unwrap();
        assert_eq!(code, 500, "{reply}");
        assert!(
            other_done < first_done,
            "the volume on the other server waited for the silent one"
        );
        let (code, reply, second_done, _) = second.join().unwrap();
        assert_eq!(code, 500, "{reply}");
        // Its turn came when the first had failed; then it hung for its
        // own mount timeout: it never ran alongside the first (that would
        // end both at about the same time). The turn is handed over before
        // the first's reply has crossed the socket, so the second's 4 s
        // started a little before `first_done`: allow for that.
        assert!(
            err_of(&reply).contains("did not mount the volume within 4s"),
            "{reply}"
        );
        let after = second_done.duration_since(first_done);
        assert!(
            after >= Duration::from_secs(3),
            "second ended {after:?} after the first"
        );
    });
    assert!(
        plugin.log().contains("waiting for a turn to start"),
        "{}",
        plugin.log()
    );
}

/// One turn per server: a volume whose login is done but whose sftp never
/// starts (the server runs `sleep` for clients from 127.0.0.2) leaves the
/// server's only turn to the next volume at its login, not at its mount
/// timeout.
fn a_turn_ends_at_the_login_not_at_the_mount(flavour: Flavour) {
    let mut sshd = Sshd::of(flavour);
    let config = sshd.config_path();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\nMatch Address 127.0.0.2\n    ForceCommand /bin/sleep 60\n");
    std::fs::write(&config, text).unwrap();
    sshd.stop();
    sshd.start();
    let plugin = start(&["--max-startups-per-endpoint=1", "--mount-timeout=10s"]);
    let stalled = json!({
        "source": sshd.source("stalled"),
        "o": format!("{},BindAddress=127.0.0.2", sshd.sshfs_options()),
    });
    std::thread::scope(|s| {
        let first = s.spawn(|| {
            let (code, reply) = create(&plugin, "turn-stalled", stalled.clone());
            (code, reply, Instant::now())
        });
        wait_until(T, "the stalled volume logged in", || {
            sshd.log()
                .contains("Accepted publickey for root from 127.0.0.2")
        });
        let (code, reply) = create(&plugin, "turn-next", sshfs_opts(&sshd, "next"));
        let next_done = Instant::now();
        assert_eq!(code, 200, "{reply}\n{}", plugin.log());
        let (code, reply, stalled_done) = first.join().unwrap();
        assert_eq!(code, 500, "{reply}");
        assert!(
            err_of(&reply).contains("did not mount the volume within 10s"),
            "{reply}"
        );
        assert!(
            next_done + Duration::from_secs(5) < stalled_done,
            "the next volume waited for the stalled one's mount timeout:\n{}",
            plugin.log()
        );
    });
    // The command shown is the one running, with what makes ssh say so.
    let next = try_status(&plugin, "turn-next").expect("status of turn-next");
    assert!(
        next["command"]
            .as_str()
            .unwrap_or_default()
            .ends_with(" -o 'LogLevel=VERBOSE'"),
        "{next}"
    );
}
