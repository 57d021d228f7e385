//! Every endpoint of the protocol, served in-process (`netfs::run`) on a
//! temporary socket, with volumes mounted by real sshfs from a real sshd.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::client::{self, post};
use crate::support::in_process;
use crate::support::mounts::{is_mounted, processes_with_arg};
use crate::support::sshd::Sshd;

/// The plugin served by this test process until dropped.
struct InProcess(in_process::InProcess);

impl InProcess {
    fn start(extra: &[&str]) -> InProcess {
        let plugin = InProcess(in_process::InProcess::start(|dir| {
            let mut args = vec![
                format!("--socket={}", dir.join("netfs.sock").display()),
                format!("--propagated-mount={}", dir.join("volumes").display()),
                format!("--state-file={}", dir.join("state.json").display()),
                format!("--key-dir={}", crate::support::sshd::KEY_DIR),
            ];
            args.extend(extra.iter().map(|s| s.to_string()));
            args
        }));
        crate::support::wait_until(Duration::from_secs(10), "socket answers", || {
            client::try_request(&plugin.socket(), "POST", "/Plugin.Activate", b"{}".to_vec())
                .is_ok()
        });
        plugin
    }

    fn socket(&self) -> PathBuf {
        self.0.dir().join("netfs.sock")
    }

    fn root(&self) -> PathBuf {
        self.0.dir().join("volumes")
    }

    fn post(&self, endpoint: &str, body: Value) -> (u16, Value) {
        post(&self.socket(), endpoint, body)
    }
}

fn create_body(name: &str, sshd: &Sshd) -> Value {
    json!({"Name": name, "Opts": {"source": sshd.source(""), "o": sshd.sshfs_options()}})
}

#[test]
fn every_endpoint_with_a_real_sshfs_volume() {
    let sshd = Sshd::new();
    let plugin = InProcess::start(&["--mount-timeout=10s"]);

    let reply = client::request(&plugin.socket(), "POST", "/Plugin.Activate", Vec::new());
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.content_type.as_deref(),
        Some("application/vnd.docker.plugins.v1.1+json")
    );
    assert_eq!(reply.json(), json!({"Implements": ["VolumeDriver"]}));
    assert_eq!(
        plugin.post("/VolumeDriver.Capabilities", json!({})),
        (200, json!({"Capabilities": {"Scope": "local"}}))
    );

    assert_eq!(
        plugin.post("/VolumeDriver.Create", create_body("vol1", &sshd)),
        (200, json!({}))
    );
    let mountpoint = plugin.root().join("vol1");
    assert!(is_mounted(&mountpoint), "Create mounts the volume");
    std::fs::write(mountpoint.join("hello"), "world").expect("write through the mount");
    assert_eq!(
        std::fs::read_to_string(sshd.remote_dir().join("hello")).unwrap(),
        "world"
    );

    let want_mp = json!({"Mountpoint": mountpoint.to_str().unwrap()});
    assert_eq!(
        plugin.post("/VolumeDriver.Path", json!({"Name": "vol1"})),
        (200, want_mp.clone())
    );
    assert_eq!(
        plugin.post("/VolumeDriver.Mount", json!({"Name": "vol1", "ID": "c1"})),
        (200, want_mp.clone())
    );
    assert_eq!(
        plugin.post("/VolumeDriver.Mount", json!({"Name": "vol1", "ID": "c2"})),
        (200, want_mp)
    );

    let (status, got) = plugin.post("/VolumeDriver.Get", json!({"Name": "vol1"}));
    assert_eq!(status, 200);
    let volume = &got["Volume"];
    assert_eq!(volume["Name"], "vol1");
    assert_eq!(volume["Mountpoint"], mountpoint.to_str().unwrap());
    let created = volume["CreatedAt"].as_str().expect("CreatedAt");
    humantime::parse_rfc3339(created).expect("CreatedAt is RFC 3339");
    let st = &volume["Status"];
    assert_eq!(st["state"], "mounted");
    assert_eq!(st["backend"], "sshfs");
    assert_eq!(st["mountIds"], json!(["c1", "c2"]));
    let pid = st["pid"].as_i64().expect("pid") as i32;
    let argv = crate::support::mounts::cmdline(pid);
    assert_eq!(
        shell_words::join(&argv),
        st["command"].as_str().unwrap(),
        "Status shows the running command"
    );

    let (status, list) = plugin.post("/VolumeDriver.List", json!({}));
    assert_eq!(status, 200);
    assert_eq!(list["Volumes"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["Volumes"][0]["Name"], "vol1");

    // In use: Remove refuses until every mount ID is released.
    let (status, err) = plugin.post("/VolumeDriver.Remove", json!({"Name": "vol1"}));
    assert_eq!(status, 500);
    assert!(client::err_of(&err).contains("in use by 2"), "{err}");
    for id in ["c1", "c2"] {
        assert_eq!(
            plugin.post("/VolumeDriver.Unmount", json!({"Name": "vol1", "ID": id})),
            (200, json!({}))
        );
    }
    assert!(
        is_mounted(&mountpoint),
        "lifecycle volume keeps the mount after the last Unmount"
    );
    assert_eq!(
        plugin.post("/VolumeDriver.Remove", json!({"Name": "vol1"})),
        (200, json!({}))
    );
    assert!(!is_mounted(&mountpoint));
    assert!(
        !mountpoint.exists(),
        "the empty mountpoint directory is removed"
    );
    assert!(
        processes_with_arg(mountpoint.to_str().unwrap()).is_empty(),
        "no sshfs left"
    );
    assert_eq!(
        std::fs::read_to_string(sshd.remote_dir().join("hello")).unwrap(),
        "world",
        "remote data kept"
    );
    let (status, _) = plugin.post("/VolumeDriver.Get", json!({"Name": "vol1"}));
    assert_eq!(status, 500);
}

#[test]
fn bad_input_gets_a_clear_error_and_the_plugin_keeps_serving() {
    let sshd = Sshd::new();
    let plugin = InProcess::start(&["--mount-timeout=5s"]);
    let raw = |method: &str, path: &str, body: &[u8]| {
        let reply = client::request(&plugin.socket(), method, path, body.to_vec());
        (reply.status, reply.json())
    };
    let cases: Vec<(&str, (u16, Value), &str)> = vec![
        (
            "malformed JSON",
            raw("POST", "/VolumeDriver.Create", b"{\"Name\":"),
            "malformed request body",
        ),
        (
            "missing field",
            raw("POST", "/VolumeDriver.Mount", b"{\"Name\":\"x\"}"),
            "missing field `ID`",
        ),
        (
            "wrong type",
            raw("POST", "/VolumeDriver.Get", b"{\"Name\":7}"),
            "invalid type",
        ),
        (
            "unknown endpoint",
            raw("POST", "/VolumeDriver.Explode", b"{}"),
            "unknown endpoint",
        ),
        (
            "wrong method",
            raw("GET", "/VolumeDriver.List", b""),
            "use POST",
        ),
        (
            "dot-dot name",
            plugin.post("/VolumeDriver.Create", json!({"Name": "../x"})),
            "is not allowed",
        ),
        (
            "slash name",
            plugin.post("/VolumeDriver.Create", json!({"Name": "a/b"})),
            "is not allowed",
        ),
        (
            "empty name",
            plugin.post("/VolumeDriver.Create", json!({"Name": ""})),
            "volume name is empty",
        ),
        (
            "long name",
            plugin.post("/VolumeDriver.Create", json!({"Name": "x".repeat(300)})),
            "300 bytes long",
        ),
        (
            "unknown option",
            plugin.post(
                "/VolumeDriver.Create",
                json!({"Name": "v", "Opts": {"sorce": "x"}}),
            ),
            "accepted options are: type, source, o, c, password",
        ),
        (
            "no source",
            plugin.post(
                "/VolumeDriver.Create",
                json!({"Name": "v", "Opts": {"o": "port=1"}}),
            ),
            "\"source\" is required",
        ),
        (
            "unknown volume",
            plugin.post("/VolumeDriver.Get", json!({"Name": "nope"})),
            "no such volume: nope",
        ),
    ];
    for (what, (status, body), want) in cases {
        assert!(status >= 400, "{what}: status {status}");
        let err = client::err_of(&body);
        assert!(
            err.contains(want),
            "{what}: {err:?} should contain {want:?}"
        );
    }

    // A source sshfs cannot reach: the tool's own message, within the timeout.
    let started = Instant::now();
    let body = json!({"Name": "unreachable", "Opts": {"source": "root@127.0.0.1:/x", "o": "port=1,StrictHostKeyChecking=no"}});
    let (status, err) = plugin.post("/VolumeDriver.Create", body);
    assert_eq!(status, 500);
    assert!(client::err_of(&err).contains("Connection refused"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failed within --mount-timeout"
    );
    // ...and one that never answers: the timeout, with nothing kept.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let body = json!({"Name": "silent", "Opts": {"source": "root@127.0.0.1:/x", "o": format!("port={port},StrictHostKeyChecking=no")}});
    let (status, err) = plugin.post("/VolumeDriver.Create", body);
    assert_eq!(status, 500);
    assert!(
        client::err_of(&err).contains("did not mount the volume within 5s"),
        "{err}"
    );

    for name in ["unreachable", "silent", "v"] {
        assert_eq!(
            plugin.post("/VolumeDriver.Get", json!({"Name": name})).0,
            500,
            "{name} not kept"
        );
        assert!(
            !plugin.root().join(name).exists(),
            "{name}: no mountpoint left"
        );
    }
    assert_eq!(
        plugin.post("/VolumeDriver.List", json!({})),
        (200, json!({"Volumes": []}))
    );
    assert!(
        processes_with_arg(plugin.root().to_str().unwrap()).is_empty(),
        "no process left"
    );
    let state = std::fs::read_to_string(plugin.0.dir().join("state.json")).unwrap_or_default();
    assert!(
        !state.contains("unreachable") && !state.contains("silent"),
        "{state}"
    );

    // Still serving.
    assert_eq!(
        plugin.post("/VolumeDriver.Create", create_body("ok", &sshd)),
        (200, json!({}))
    );
    assert_eq!(
        plugin.post("/VolumeDriver.Remove", json!({"Name": "ok"})),
        (200, json!({}))
    );
}
