//! `netfs --build-info`: the real binary, as root and as `nobody`, with
//! each tool on PATH and without it. It must exit 0 and leave the socket,
//! the state file and the mount root alone, whatever they hold.

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::cmd::{self, show};

const TOOLS: [&str; 5] = ["sshfs", "ssh", "rclone", "mount.nfs", "fusermount3"];
/// Longer than netfs's own bound per tool (5 s): they are asked at once.
const BOUND: Duration = Duration::from_secs(30);

/// Where each tool is on this machine (scripts/setup.sh installs them all).
fn installed() -> BTreeMap<&'static str, PathBuf> {
    TOOLS
        .iter()
        .map(|&name| {
            let path = ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
                .iter()
                .map(|dir| Path::new(dir).join(name))
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("{name} is not installed: run scripts/setup.sh"));
            (name, path)
        })
        .collect()
}

/// A directory holding links to the named tools: the whole PATH netfs gets.
fn path_with(tools: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("netfs-path-")
        .tempdir()
        .unwrap();
    let all = installed();
    for name in tools {
        symlink(&all[name], dir.path().join(name)).unwrap();
    }
    // Readable by `nobody` too.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    dir
}

/// `netfs args...` with PATH set to `path`, optionally as `nobody`, with
/// settings pointing at `scratch` so that anything it touched would show.
fn build_info(args: &[&str], path: &Path, scratch: &Path, as_nobody: bool) -> Output {
    let netfs = env!("CARGO_BIN_EXE_netfs");
    let mut command = if as_nobody {
        let mut c = Command::new("/usr/bin/setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", netfs]);
        c
    } else {
        Command::new(netfs)
    };
    command
        .args(args)
        .env_clear()
        .env("PATH", path)
        .env("SOCKET", scratch.join("netfs.sock"))
        .env("STATE_FILE", scratch.join("state.json"))
        .env("PROPAGATED_MOUNT", scratch.join("volumes"));
    let start = Instant::now();
    let out = cmd::run(&mut command, BOUND * 2);
    assert!(out.status.success(), "{}", show("netfs --build-info", &out));
    assert!(start.elapsed() < BOUND, "took {:?}", start.elapsed());
    out
}

fn scratch() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("netfs-build-info-")
        .tempdir()
        .unwrap();
    // A state file netfs would refuse to start with: --build-info never reads it.
    std::fs::write(dir.path().join("state.json"), "not json").unwrap();
    dir
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--build-info=json is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn tool<'a>(info: &'a Value, name: &str) -> &'a Value {
    info["tools"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {info}"))
}

/// The version line the tool itself prints.
fn reported(name: &str) -> String {
    let path = &installed()[name];
    let args: &[&str] = match name {
        "sshfs" => &["--version"],
        "rclone" => &["version"],
        "ssh" | "mount.nfs" | "fusermount3" => &["-V"],
        _ => unreachable!(),
    };
    let out = cmd::run(Command::new(path).args(args), BOUND);
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .map(str::trim)
        .find(|l| l.to_lowercase().contains(name))
        .unwrap_or_else(|| panic!("{name} printed no version: {text}"))
        .to_owned()
}

#[test]
fn build_info_names_the_build_and_every_tool_for_any_user() {
    let everything = path_with(&TOOLS);
    for as_nobody in [false, true] {
        let scratch = scratch();
        let out = build_info(
            &["--build-info=json"],
            everything.path(),
            scratch.path(),
            as_nobody,
        );
        let info = json(&out);
        assert_eq!(info["version"], env!("CARGO_PKG_VERSION"), "{info}");
        assert!(
            info["revision"].as_str().is_some_and(|r| !r.is_empty()),
            "{info}"
        );
        assert!(
            info["rustc"]
                .as_str()
                .is_some_and(|r| r.starts_with("rustc ")),
            "{info}"
        );
        assert!(
            info["target"].as_str().is_some_and(|t| t.contains("linux")),
            "{info}"
        );
        assert!(info["dependencies"].as_array().is_some_and(|d| d
            .iter()
            .any(|d| d["name"] == "tokio" && d["version"].is_string())));
        for name in TOOLS {
            let t = tool(&info, name);
            assert_eq!(t["status"], "found", "{t}");
            assert_eq!(
                t["path"],
                everything.path().join(name).to_str().unwrap(),
                "{t}"
            );
            assert_eq!(t["version"], reported(name), "{t}");
        }

        let out = build_info(
            &["--build-info"],
            everything.path(),
            scratch.path(),
            as_nobody,
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("netfs "), "{text}");
        assert!(text.contains(&reported("sshfs")), "{text}");
        assert!(!text.contains("missing"), "{text}");

        // Nothing was touched: no socket, no mount root, the state as it was.
        let left: Vec<_> = std::fs::read_dir(scratch.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["state.json"], "as nobody: {as_nobody}");
        assert_eq!(
            std::fs::read_to_string(scratch.path().join("state.json")).unwrap(),
            "not json"
        );
    }
}

#[test]
fn a_missing_tool_is_shown_missing_and_is_no_error() {
    let scratch = scratch();
    for name in TOOLS {
        let others: Vec<&str> = TOOLS.iter().copied().filter(|t| *t != name).collect();
        for (path, present) in [(path_with(&others), false), (path_with(&[name]), true)] {
            let info = json(&build_info(
                &["--build-info=json"],
                path.path(),
                scratch.path(),
                true,
            ));
            for t in TOOLS {
                let expected = if (t == name) == present {
                    "found"
                } else {
                    "missing"
                };
                assert_eq!(
                    tool(&info, t)["status"],
                    expected,
                    "{name} present: {present}: {info}"
                );
            }
            let out = build_info(&["--build-info"], path.path(), scratch.path(), false);
            let line = String::from_utf8_lossy(&out.stdout)
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{name} ")))
                .map(str::to_owned)
                .unwrap_or_else(|| panic!("no line for {name}"));
            assert_eq!(line.trim_end().ends_with("missing"), !present, "{line}");
        }
    }
    // No tool at all.
    let empty = path_with(&[]);
    let info = json(&build_info(
        &["--build-info=json"],
        empty.path(),
        scratch.path(),
        false,
    ));
    assert!(
        TOOLS.iter().all(|t| tool(&info, t)["status"] == "missing"),
        "{info}"
    );
}

#[test]
fn a_tool_that_hangs_costs_a_bounded_wait() {
    let scratch = scratch();
    let path = path_with(&["ssh"]);
    let sshfs = path.path().join("sshfs");
    std::fs::write(&sshfs, "#!/bin/sh\nexec /bin/sleep 120\n").unwrap();
    std::fs::set_permissions(&sshfs, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let start = Instant::now();
    let info = json(&build_info(
        &["--build-info=json"],
        path.path(),
        scratch.path(),
        false,
    ));
    let took = start.elapsed();
    // netfs waits 5 s for a tool's version.
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(15),
        "{took:?}"
    );
    let t = tool(&info, "sshfs");
    assert_eq!(t["status"], "failed", "{t}");
    assert!(
        t["error"].as_str().is_some_and(|e| e.contains("no answer")),
        "{t}"
    );
    assert_eq!(tool(&info, "ssh")["status"], "found", "{info}");
}
