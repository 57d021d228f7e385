//! The concurrency suite, against the binary with real sshfs volumes: many
//! Mount/Unmount calls at once on one volume leave the refcount exact (in
//! memory and in the state file), and Creates and Removes of one name racing
//! each other always end with one whole volume or none — never a half one.

use std::path::Path;
use std::time::Instant;

use serde_json::{json, Value};

use crate::support::calls::{
    create_ok, listed, sshfs_opts, start, state_of, try_status, wait_mounted,
};
use crate::support::client::{err_of, post_async};
use crate::support::mounts::{is_mounted, processes_with_arg};
use crate::support::plugin::Plugin;
use crate::support::report;
use crate::support::sshd::Sshd;

/// Sends all `calls` at once, each on a connection of its own; returns
/// (status, reply) in the same order.
fn all_at_once(socket: &Path, calls: Vec<(&'static str, Value)>) -> Vec<(u16, Value)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(8)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let tasks: Vec<_> = calls
            .into_iter()
            .map(|(endpoint, body)| {
                let socket = socket.to_owned();
                tokio::spawn(async move { post_async(&socket, endpoint, body).await })
            })
            .collect();
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.expect("call task"));
        }
        out
    })
}

/// Mount then Unmount with the same ID, as one container does.
fn pairs(socket: &Path, name: &str, ids: impl Iterator<Item = String>) -> usize {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(8)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let tasks: Vec<_> = ids
            .map(|id| {
                let (socket, name) = (socket.to_owned(), name.to_owned());
                tokio::spawn(async move {
                    let body = json!({"Name": name, "ID": id});
                    let mounted = post_async(&socket, "/VolumeDriver.Mount", body.clone()).await;
                    assert_eq!(mounted.0, 200, "Mount {id}: {}", mounted.1);
                    let unmounted = post_async(&socket, "/VolumeDriver.Unmount", body).await;
                    assert_eq!(unmounted.0, 200, "Unmount {id}: {}", unmounted.1);
                })
            })
            .collect();
        let n = tasks.len();
        for task in tasks {
            task.await.expect("pair task");
        }
        n
    })
}

fn mount_ids(plugin: &Plugin, name: &str) -> (Value, Value) {
    let live = try_status(plugin, name).expect("volume known")["mountIds"].clone();
    let stored = state_of(&plugin.state_file())["volumes"][name]
        .get("mountIds")
        .cloned()
        .unwrap_or(json!([]));
    (live, stored)
}

fn ids(range: std::ops::Range<usize>) -> impl Iterator<Item = String> {
    range.map(|i| format!("container-{i:04}"))
}

#[test]
fn five_hundred_concurrent_mount_unmount_pairs_leave_the_refcount_exact() {
    const N: usize = 500;
    let sshd = Sshd::new();
    let plugin = start(&["--mount-timeout=15s"]);
    let name = "busy";
    create_ok(&plugin, name, sshfs_opts(&sshd, "busy"));
    let pid = wait_mounted(&plugin, name, None);
    let started = Instant::now();

    // Each container mounts and unmounts; all of them at once.
    let done = pairs(&plugin.socket(), name, ids(0..N));
    assert_eq!(done, N);
    assert_eq!(mount_ids(&plugin, name), (json!([]), json!([])));

    // All mount at once (and a hundred of them twice): exactly N held.
    let mut calls: Vec<(&str, Value)> = ids(0..N)
        .chain(ids(0..100))
        .map(|id| ("/VolumeDriver.Mount", json!({"Name": name, "ID": id})))
        .collect();
    calls.rotate_left(N / 2);
    for (code, reply) in all_at_once(&plugin.socket(), calls) {
        assert_eq!(code, 200, "{reply}");
    }
    let (live, stored) = mount_ids(&plugin, name);
    let want: Vec<String> = ids(0..N).collect();
    assert_eq!(live, json!(want), "every ID once, in memory");
    assert_eq!(stored, json!(want), "every ID once, in the state file");
    let (code, reply) = plugin.post("/VolumeDriver.Remove", json!({"Name": name}));
    assert_eq!(code, 500);
    assert!(
        err_of(&reply).contains(&format!("in use by {N} container(s)")),
        "{reply}"
    );

    // All unmount at once, with a hundred unknown IDs among them.
    let calls = ids(0..N + 100)
        .map(|id| ("/VolumeDriver.Unmount", json!({"Name": name, "ID": id})))
        .collect();
    for (code, reply) in all_at_once(&plugin.socket(), calls) {
        assert_eq!(code, 200, "{reply}");
    }
    assert_eq!(mount_ids(&plugin, name), (json!([]), json!([])));
    let st = try_status(&plugin, name).unwrap();
    assert_eq!(st["pid"], pid, "one sshfs served it all: {st}");
    assert_eq!(st["restarts"], 0);
    let calls_made = 2 * N + N + 100 + N + 100;
    let took = started.elapsed();
    plugin.post("/VolumeDriver.Remove", json!({"Name": name}));
    report(
        "concurrency",
        &format!(
            "{N} concurrent Mount/Unmount pairs, then {N}+100 concurrent Mounts and {N}+100 Unmounts \
             ({calls_made} calls in {:.1}s): refcount exact in memory and on disk (0, {N}, 0)",
            took.as_secs_f64()
        ),
    );
}

#[test]
fn concurrent_pairs_with_lifecycle_mount_end_with_no_process_and_no_id() {
    const N: usize = 500;
    let sshd = Sshd::new();
    let plugin = start(&["--mount-timeout=15s", "--volume-process-lifecycle=mount"]);
    let name = "on-demand";
    create_ok(&plugin, name, sshfs_opts(&sshd, "on-demand"));
    let mp = plugin.mount_root().join(name);
    let started = Instant::now();
    assert_eq!(pairs(&plugin.socket(), name, ids(0..N)), N);
    assert_eq!(mount_ids(&plugin, name), (json!([]), json!([])));
    assert!(!is_mounted(&mp), "the last Unmount stopped the tool");
    assert!(processes_with_arg(mp.to_str().unwrap()).is_empty());
    assert_eq!(try_status(&plugin, name).unwrap()["state"], "stopped");
    let took = started.elapsed();
    plugin.post("/VolumeDriver.Remove", json!({"Name": name}));
    report(
        "concurrency",
        &format!(
            "{N} concurrent Mount/Unmount pairs with lifecycle=mount in {:.1}s: 0 IDs and no process left",
            took.as_secs_f64()
        ),
    );
}

/// Everything about one name agrees: listed, stored, mounted, a tool
/// running, a mountpoint directory — all or nothing. Returns whether it
/// exists.
fn whole_or_none(plugin: &Plugin, name: &str) -> bool {
    let mp = plugin.mount_root().join(name);
    let listed = listed(plugin).contains(&name.to_owned());
    let stored = state_of(&plugin.state_file())["volumes"]
        .get(name)
        .is_some();
    let mounted = is_mounted(&mp);
    let running = !processes_with_arg(mp.to_str().unwrap()).is_empty();
    let dir = mp.exists();
    let facts = format!(
        "listed {listed}, stored {stored}, mounted {mounted}, running {running}, dir {dir}"
    );
    assert!(
        listed == stored && stored == mounted && mounted == running && running == dir,
        "half a volume: {facts}\n{}",
        plugin.log()
    );
    if listed {
        assert_eq!(
            try_status(plugin, name).unwrap()["mountIds"],
            json!([]),
            "{facts}"
        );
    }
    listed
}

#[test]
fn racing_creates_and_removes_of_one_name_end_with_one_volume_or_none() {
    const ROUNDS: usize = 20;
    const EACH: usize = 8;
    let sshd = Sshd::new();
    let plugin = start(&["--mount-timeout=15s"]);
    let name = "contested";
    let opts = sshfs_opts(&sshd, "contested");
    let (mut with, mut without, mut calls_made) = (0, 0, 0);
    for round in 0..ROUNDS {
        let mut calls: Vec<(&str, Value)> = Vec::new();
        for i in 0..EACH {
            calls.push(("/VolumeDriver.Create", json!({"Name": name, "Opts": opts})));
            calls.push(("/VolumeDriver.Remove", json!({"Name": name})));
            if i % 2 == 0 {
                let id = format!("r{round}-{i}");
                calls.push(("/VolumeDriver.Mount", json!({"Name": name, "ID": id})));
                calls.push(("/VolumeDriver.Unmount", json!({"Name": name, "ID": id})));
            }
        }
        // A different interleaving each round.
        let turn = round % calls.len();
        calls.rotate_left(turn);
        calls_made += calls.len();
        let endpoints: Vec<&str> = calls.iter().map(|(e, _)| *e).collect();
        let replies = all_at_once(&plugin.socket(), calls);
        for (endpoint, (code, reply)) in endpoints.iter().zip(&replies) {
            let err = err_of(reply);
            let fine = match *endpoint {
                "/VolumeDriver.Create" => *code == 200,
                _ => *code == 200 || err.contains("no such volume") || err.contains("in use by"),
            };
            assert!(fine, "{endpoint}: {code} {reply}");
        }
        // A Mount whose Unmount came first holds its ID: release them all.
        if let Some(st) = try_status(&plugin, name) {
            for id in st["mountIds"].as_array().unwrap() {
                plugin.post("/VolumeDriver.Unmount", json!({"Name": name, "ID": id}));
            }
        }
        if whole_or_none(&plugin, name) {
            with += 1;
        } else {
            without += 1;
        }
    }
    if try_status(&plugin, name).is_some() {
        plugin.post("/VolumeDriver.Remove", json!({"Name": name}));
    }
    assert!(!whole_or_none(&plugin, name));
    report(
        "concurrency",
        &format!(
            "{ROUNDS} rounds of {calls_made} racing Create/Remove/Mount/Unmount calls on one name: \
             {with} ended with one whole volume, {without} with none, 0 half"
        ),
    );
}

#[test]
fn fifty_volumes_created_and_removed_at_once_are_all_recorded() {
    const N: usize = 50;
    let sshd = Sshd::new();
    let plugin = start(&["--mount-timeout=30s"]);
    let names: Vec<String> = (0..N).map(|i| format!("many-{i:02}")).collect();
    let calls = names
        .iter()
        .map(|n| {
            (
                "/VolumeDriver.Create",
                json!({"Name": n, "Opts": sshfs_opts(&sshd, n)}),
            )
        })
        .collect();
    for (code, reply) in all_at_once(&plugin.socket(), calls) {
        assert_eq!(code, 200, "{reply}");
    }
    let stored = state_of(&plugin.state_file())["volumes"]
        .as_object()
        .unwrap()
        .len();
    assert_eq!(stored, N, "every volume in the state file");
    for n in &names {
        assert!(whole_or_none(&plugin, n));
    }
    let calls = names
        .iter()
        .map(|n| ("/VolumeDriver.Remove", json!({"Name": n})))
        .collect();
    for (code, reply) in all_at_once(&plugin.socket(), calls) {
        assert_eq!(code, 200, "{reply}");
    }
    assert_eq!(state_of(&plugin.state_file())["volumes"], json!({}));
    for n in &names {
        assert!(!whole_or_none(&plugin, n));
    }
    report(
        "concurrency",
        &format!(
            "{N} volumes created at once and removed at once: {N} then 0 in the state file, 0 half"
        ),
    );
}
