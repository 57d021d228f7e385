//! Every remote kind people mount through rclone, against a real server on
//! 127.0.0.1 and the pinned rclone: S3, WebDAV, SMB, FTP and SFTP. For each,
//! a volume defined as an on-the-fly remote in `source` (made by the kind's
//! script in examples/volumes, where there is one) and one naming a
//! remote of rclone.conf serve a container whose bytes land on the server's
//! disk; the secret shows in no argv, log line, error or Status; a wrong
//! one fails Create within the mount timeout with rclone's own message.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::secrets::docker_api_create;
use crate::support::calls::{call_ok, create, create_ok, mount, unmount};
use crate::support::client::err_of;
use crate::support::docker::{require_docker, run_in_container, volume_inspect, Cleanup};
use crate::support::mounts::{descendants, processes_with_arg, wait_until};
use crate::support::plugin::Plugin;
use crate::support::remotes::{Ftp, Remote, Sftp, Smb, WebDav, S3};
use crate::support::{cmd, rclone, unique_name};

const MOUNT_TIMEOUT: Duration = Duration::from_secs(15);

/// Checks every text it is given for every form of the secret.
struct Audit<'a> {
    forms: Vec<String>,
    remote: &'a dyn Remote,
    places: usize,
}

impl Audit<'_> {
    fn clean(&mut self, what: &str, text: &str) {
        for form in &self.forms {
            assert!(
                !text.contains(form.as_str()),
                "{}: the secret ({form}) shows in {what}: {text}",
                self.remote.backend()
            );
        }
        self.places += 1;
    }

    /// The argv of the plugin and of every process it runs, and of any
    /// process naming its mount root.
    fn processes(&mut self, plugin: &Plugin) {
        let pid = plugin.pid() as i32;
        let mut pids = vec![pid];
        pids.extend(descendants(pid));
        let root = format!("{}/", plugin.mount_root().display());
        pids.extend(processes_with_arg(&root).into_iter().map(|(p, _)| p));
        for pid in pids {
            let argv = crate::support::mounts::cmdline(pid).join(" ");
            self.clean(&format!("the argv of {pid}"), &argv);
        }
    }
}

/// Waits until `file` on the server's disk holds `text`: rclone uploads as
/// the file is closed, and the container's exit does not wait for that.
fn landed(remote: &dyn Remote, sub: &str, text: &str) {
    let path = remote.disk(sub);
    wait_until(
        Duration::from_secs(20),
        &format!("{} on the server's disk", path.display()),
        || fs::read_to_string(&path).is_ok_and(|t| t == text),
    );
}

/// An example script of examples/volumes, its arguments and environment.
type Example = (&'static str, Vec<String>, Vec<(String, String)>);

/// The example for the remote's kind, for a volume on `sub`.
fn example(remote: &dyn Remote, volume: &str, sub: &str) -> Option<Example> {
    let o: HashMap<&str, String> = remote.options(remote.secret()).into_iter().collect();
    let env = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), o[v].clone()))
            .collect::<Vec<_>>()
    };
    let (name, path) = (volume.to_owned(), remote.path(sub));
    Some(match remote.backend() {
        "s3" => (
            "s3.sh",
            vec![name, path],
            env(&[
                ("S3_ENDPOINT", "endpoint"),
                ("S3_ACCESS_KEY_ID", "access_key_id"),
                ("S3_SECRET_ACCESS_KEY", "secret_access_key"),
            ]),
        ),
        "webdav" => (
            "webdav.sh",
            vec![name, o["url"].clone(), path],
            env(&[("WEBDAV_USER", "user"), ("WEBDAV_PASS_OBSCURED", "pass")]),
        ),
        "smb" => (
            "smb.sh",
            vec![name, o["host"].clone(), path],
            env(&[
                ("SMB_USER", "user"),
                ("SMB_PASS_OBSCURED", "pass"),
                ("SMB_PORT", "port"),
            ]),
        ),
        "ftp" => (
            "ftp.sh",
            vec![name, o["host"].clone(), path],
            env(&[
                ("FTP_USER", "user"),
                ("FTP_PASS_OBSCURED", "pass"),
                ("FTP_PORT", "port"),
            ]),
        ),
        _ => return None,
    })
}

fn serves_both_ways(remote: &dyn Remote) {
    require_docker();
    let backend = remote.backend();
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = conf_dir.path().join("rclone.conf");
    let named_remote = format!("netfs-{backend}");
    fs::write(&conf, remote.conf_section(&named_remote)).unwrap();
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o600)).unwrap();
    let plugin = Plugin::new(env!("CARGO_BIN_EXE_netfs"))
        .env("RCLONE_CONFIG", &conf)
        .arg(format!("--mount-timeout={}s", MOUNT_TIMEOUT.as_secs()))
        .arg("--log-level=trace")
        .start();
    let mut audit = Audit {
        forms: remote.secret_forms(),
        remote,
        places: 0,
    };
    let mut cleanup = Cleanup::new();

    // The on-the-fly remote through the example of its kind, if there is one.
    let fly = cleanup.volume(unique_name(&format!("{backend}-fly")));
    match example(remote, &fly, "fly") {
        Some((script, args, env)) => {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples/volumes")
                .join(script);
            let out = cmd::run(
                Command::new(&path)
                    .args(&args)
                    .env("NETFS_DRIVER", plugin.driver_name())
                    .envs(env),
                cmd::DEFAULT_TIMEOUT,
            );
            assert!(out.status.success(), "{}", cmd::show(script, &out));
        }
        None => docker_api_create(
            plugin.driver_name(),
            &fly,
            &json!({"type": "rclone", "source": remote.on_the_fly("fly", remote.secret())}),
        ),
    }
    let named = cleanup.volume(unique_name(&format!("{backend}-named")));
    let source = format!("{named_remote}:{}", remote.path("named"));
    docker_api_create(
        plugin.driver_name(),
        &named,
        &json!({"type": "rclone", "source": source}),
    );

    for (volume, sub) in [(&fly, "fly"), (&named, "named")] {
        let text = format!("{backend} through {sub}\n");
        let out = run_in_container(
            volume,
            "/data",
            &format!("printf '{text}' > /data/out.txt && cat /data/out.txt"),
        );
        assert_eq!(out, text, "{volume}");
        landed(remote, &format!("{sub}/out.txt"), &text);
        let status = volume_inspect(volume)["Status"].clone();
        assert_eq!(status["state"], "mounted", "{status}");
        assert_eq!(
            status["rcloneVersion"],
            format!("v{}", rclone::version()),
            "{status}"
        );
        audit.clean("docker volume inspect's Status", &status.to_string());
    }
    let fly_command = volume_inspect(&fly)["Status"]["command"].to_string();
    assert!(fly_command.contains("=***"), "{fly_command}");
    audit.processes(&plugin);
    audit.clean(
        "List",
        &plugin.post("/VolumeDriver.List", json!({})).1.to_string(),
    );

    // A wrong secret: rclone's own refusal, within the mount timeout.
    let wrong = format!("wrong-{}", remote.secret());
    let t = Instant::now();
    let (code, reply) = create(
        &plugin,
        &unique_name(&format!("{backend}-wrong")),
        json!({"type": "rclone", "source": remote.on_the_fly("wrong", &wrong)}),
    );
    let took = t.elapsed();
    assert_eq!(code, 500, "{backend}: a wrong secret was accepted: {reply}");
    let err = err_of(&reply);
    assert!(
        err.contains(remote.refusal()),
        "{backend}: rclone's refusal ({}) not in: {err}",
        remote.refusal()
    );
    assert!(took < MOUNT_TIMEOUT + Duration::from_secs(5), "{took:?}");
    assert!(
        !err.contains(&wrong),
        "the wrong secret in the error: {err}"
    );
    audit.clean("the error", err);

    for line in plugin.log().lines() {
        audit.clean("the log", line);
    }
    crate::support::report(
        &format!("remote {backend}"),
        &format!(
            "2 volumes (on-the-fly, rclone.conf) wrote to the server's disk; \
             secret looked for in {} places: 0 leaks; wrong secret refused in {:.1}s",
            audit.places,
            took.as_secs_f64()
        ),
    );
}

#[test]
fn s3_rclone_serve_s3() {
    serves_both_ways(&S3::start());
}

#[test]
fn webdav_apache_mod_dav() {
    serves_both_ways(&WebDav::start());
}

#[test]
fn smb_samba() {
    serves_both_ways(&Smb::start());
}

#[test]
fn ftp_vsftpd() {
    serves_both_ways(&Ftp::start());
}

#[test]
fn sftp_stock_sshd() {
    serves_both_ways(&Sftp::start());
}

/// Files closed just before Remove are on the server when Remove returns.
/// rclone (vfs-cache-mode=writes, the default) uploads a closed file 5 s
/// later and leaves on SIGTERM without waiting: netfs asks it to upload
/// what is queued, and waits for it, before it stops it. The same stop
/// runs at the last Unmount (lifecycle `mount`) and when netfs stops.
#[test]
fn files_written_just_before_remove_are_on_the_server_when_remove_returns() {
    let remote = S3::start();
    let plugin = Plugin::new(env!("CARGO_BIN_EXE_netfs"))
        .arg(format!("--mount-timeout={}s", MOUNT_TIMEOUT.as_secs()))
        .start();
    let name = unique_name("s3-last");
    let source = remote.on_the_fly("last", remote.secret());
    create_ok(&plugin, &name, json!({"type": "rclone", "source": source}));
    let (code, reply) = mount(&plugin, &name, "c1");
    assert_eq!(code, 200, "{reply}\n{}", plugin.log());
    let at = Path::new(reply["Mountpoint"].as_str().expect("a mountpoint")).to_owned();
    let files: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| {
            let bytes: Vec<u8> = (0..(i + 1) * 300_000).map(|b| (b % 251) as u8).collect();
            (format!("f{i}.bin"), bytes)
        })
        .collect();
    for (file, bytes) in &files {
        fs::write(at.join(file), bytes).unwrap();
    }
    let (code, reply) = unmount(&plugin, &name, "c1");
    assert_eq!(code, 200, "{reply}");

    let t = Instant::now();
    call_ok(&plugin, "/VolumeDriver.Remove", json!({"Name": name}));
    let took = t.elapsed();
    for (file, bytes) in &files {
        let path = remote.disk(&format!("last/{file}"));
        let landed = fs::read(&path).unwrap_or_default();
        assert!(
            landed == *bytes,
            "{} holds {} of {} bytes when Remove returned\n{}",
            path.display(),
            landed.len(),
            bytes.len(),
            plugin.log()
        );
    }
    assert!(
        plugin.log().contains("rclone's queued uploads are done"),
        "{}",
        plugin.log()
    );
    crate::support::report(
        "remote s3",
        &format!(
            "3 files closed just before Remove: on the server when it returned, after {:.2} s",
            took.as_secs_f64()
        ),
    );
}
