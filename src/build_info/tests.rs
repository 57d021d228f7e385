//! Build information and tool look-ups, with made-up tools in a temporary
//! directory given as PATH. They run as any user.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::tools::{find, probe_all, version, TOOLS};
use super::*;

fn script(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn the_build_is_described() {
    let b = Build::current();
    assert_eq!(b.version, env!("CARGO_PKG_VERSION"));
    assert!(!b.revision.is_empty());
    assert!(b.rustc.starts_with("rustc "), "{}", b.rustc);
    assert!(b.target.contains("linux"), "{}", b.target);
    assert!(["debug", "release"].contains(&b.profile), "{}", b.profile);
    assert!(
        humantime::parse_rfc3339(&b.built_at).is_ok(),
        "{}",
        b.built_at
    );
    let names: Vec<&str> = b.dependencies.iter().map(|d| d.name).collect();
    // Direct dependencies only, each with the locked version.
    for name in ["tokio", "hyper", "serde", "nix", "clap", "sd-notify"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    for name in ["tempfile", "proptest", "tonic-build", "toml", "mio"] {
        assert!(!names.contains(&name), "{name} is not a direct dependency");
    }
    assert!(
        b.dependencies
            .iter()
            .all(|d| d.version.split('.').count() >= 3),
        "{:?}",
        b.dependencies
    );
}

#[test]
fn a_tool_is_found_as_exec_would_find_it() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    std::fs::write(first.path().join("sshfs"), "not executable").unwrap();
    script(second.path(), "sshfs", "exit 0");
    let path = std::env::join_paths([first.path(), second.path()]).unwrap();
    assert_eq!(
        find("sshfs", Some(&path)),
        Some(second.path().join("sshfs"))
    );
    assert_eq!(find("rclone", Some(&path)), None);
    assert_eq!(find("sshfs", None), None);
}

#[tokio::test]
async fn the_line_that_names_the_tool_is_its_version() {
    let dir = tempfile::tempdir().unwrap();
    script(
        dir.path(),
        "sshfs",
        "echo 'fusermount3 version: 3.14.0'; echo 'SSHFS version 3.7.3'",
    );
    script(dir.path(), "ssh", "echo 'OpenSSH_9.2p1 Debian' >&2");
    script(dir.path(), "quiet", "exit 3");
    script(
        dir.path(),
        "broken",
        "echo 'error while loading shared libraries' >&2; exit 127",
    );
    let run = |name: &'static str| {
        let path = dir.path().join(name);
        async move { version(&path, name, &[], Duration::from_secs(10)).await }
    };
    assert_eq!(run("sshfs").await.unwrap(), "SSHFS version 3.7.3");
    assert_eq!(run("ssh").await.unwrap(), "OpenSSH_9.2p1 Debian");
    let quiet = run("quiet").await.unwrap_err();
    assert!(quiet.contains("printed nothing"), "{quiet}");
    let broken = run("broken").await.unwrap_err();
    assert!(
        broken.contains("127") && broken.contains("shared libraries"),
        "{broken}"
    );
}

#[tokio::test]
async fn a_tool_that_hangs_gets_a_bounded_wait() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "rclone", "echo started; exec sleep 60");
    let path = dir.path().join("rclone");
    let start = Instant::now();
    let err = version(&path, "rclone", &[], Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(err.contains("no answer"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn every_tool_is_reported_found_or_missing() {
    let dir = tempfile::tempdir().unwrap();
    script(
        dir.path(),
        "rclone",
        "echo 'rclone v1.99.0'; echo '- os/type: linux'",
    );
    script(dir.path(), "fusermount3", "exit 1");
    let path = dir.path().as_os_str().to_owned();
    let tools = probe_all(Some(&path)).await;
    let names: Vec<&str> = tools.iter().map(|t| t.name).collect();
    let want: Vec<&str> = TOOLS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, want);
    for tool in &tools {
        match tool.name {
            "rclone" => assert_eq!(
                tool.probe,
                Probe::Found {
                    path: dir.path().join("rclone"),
                    version: "rclone v1.99.0".into()
                }
            ),
            "fusermount3" => assert!(matches!(tool.probe, Probe::Failed { .. }), "{tool:?}"),
            _ => assert_eq!(tool.probe, Probe::Missing, "{tool:?}"),
        }
    }

    let info = BuildInfo {
        build: Build::current(),
        tools,
    };
    let json: Value = serde_json::from_str(&info.render(Format::Json)).unwrap();
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    assert!(json["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["name"] == "tokio"));
    let rclone = &json["tools"][2];
    assert_eq!(rclone["name"], "rclone");
    assert_eq!(rclone["status"], "found");
    assert_eq!(rclone["version"], "rclone v1.99.0");
    assert_eq!(
        json["tools"][0],
        serde_json::json!({"name": "sshfs", "status": "missing"})
    );
    assert_eq!(json["tools"][4]["status"], "failed");

    let text = info.render(Format::Text);
    assert!(
        text.starts_with(&format!("netfs {}\n", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("  sshfs        missing\n"), "{text}");
    assert!(text.contains("rclone v1.99.0 ("), "{text}");
}
