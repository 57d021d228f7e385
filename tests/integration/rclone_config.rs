//! rclone as an operator runs it, through the host-service plugin and the
//! pinned rclone: it writes what it learns back into its config file (the
//! path an OAuth token refresh takes), its proxy settings reach it from the
//! plugin's environment, and the default `vfs-cache-mode` lets sqlite work
//! on S3 and WebDAV volumes (and `off` would not), also as the Compose
//! example (examples/rclone-sqlite.yml) runs it.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::secrets::docker_api_create;
use crate::support::calls::{create, status};
use crate::support::client::err_of;
use crate::support::cmd;
use crate::support::docker::{require_docker, Cleanup};
use crate::support::mounts::wait_until;
use crate::support::plugin::Plugin;
use crate::support::remotes::{Remote, Sftp, WebDav, S3};
use crate::support::unique_name;

fn plugin_with_config(conf: &Path, envs: &[(&str, String)]) -> Plugin {
    let mut plugin = Plugin::new(env!("CARGO_BIN_EXE_netfs"))
        .env("RCLONE_CONFIG", conf)
        .arg("--mount-timeout=15s");
    for (k, v) in envs {
        plugin = plugin.env(k, v);
    }
    plugin.start()
}

fn created(plugin: &Plugin, name: &str, opts: serde_json::Value) {
    let (code, reply) = create(plugin, name, opts);
    assert_eq!(code, 200, "create {name}: {reply}\n{}", plugin.log());
}

#[test]
fn rclone_writes_what_it_learns_back_into_its_config() {
    let remote = Sftp::start();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    // No shell_type: rclone finds it out on the server and saves it, through
    // the same config write a refreshed OAuth token takes.
    let section: String = remote
        .conf_section("learns")
        .lines()
        .filter(|l| !l.starts_with("shell_type"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&conf, &section).unwrap();
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o600)).unwrap();
    let plugin = plugin_with_config(&conf, &[]);
    let volume = unique_name("learns");
    let source = format!("learns:{}", remote.path(""));
    created(
        &plugin,
        &volume,
        json!({"type": "rclone", "source": source}),
    );
    wait_until(
        Duration::from_secs(20),
        "shell_type saved in rclone.conf",
        || fs::read_to_string(&conf).is_ok_and(|t| t.contains("shell_type = unix")),
    );
    let saved = fs::read_to_string(&conf).unwrap();
    assert!(saved.contains("[learns]"), "{saved}");
    assert_eq!(
        fs::metadata(&conf).unwrap().permissions().mode() & 0o777,
        0o600,
        "rclone keeps the file private"
    );
}

/// A forwarding HTTP proxy on 127.0.0.1: every connection is relayed to
/// `upstream` (the one server the test reaches), and counted.
struct Proxy {
    port: u16,
    connections: Arc<AtomicUsize>,
    first_request: Arc<std::sync::Mutex<String>>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let first_request = Arc::new(std::sync::Mutex::new(String::new()));
        let (count, first) = (connections.clone(), first_request.clone());
        // Bounded: at most 200 connections, then the proxy stops serving.
        thread::spawn(move || {
            for client in listener.incoming().take(200) {
                let Ok(mut client) = client else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let mut head = [0u8; 256];
                let n = client.read(&mut head).unwrap_or(0);
                {
                    let mut first = first.lock().unwrap();
                    if first.is_empty() {
                        *first = String::from_utf8_lossy(&head[..n])
                            .lines()
                            .next()
                            .unwrap_or("")
                            .to_owned();
                    }
                }
                if server.write_all(&head[..n]).is_err() {
                    continue;
                }
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut s2);
                    let _ = s2.shutdown(Shutdown::Write);
                });
                thread::spawn(move || {
                    let _ = std::io::copy(&mut server, &mut client);
                    let _ = client.shutdown(Shutdown::Write);
                });
            }
        });
        Proxy {
            port,
            connections,
            first_request,
        }
    }
}

#[test]
fn the_plugins_proxy_settings_reach_rclone() {
    let remote = WebDav::start();
    let proxy = Proxy::start(remote.daemon.port);
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    fs::write(&conf, "").unwrap();
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let plugin = plugin_with_config(
        &conf,
        &[
            ("HTTP_PROXY", proxy_url.clone()),
            ("HTTPS_PROXY", proxy_url.clone()),
            ("NO_PROXY", "localhost,netfs-direct.invalid".into()),
        ],
    );
    // A name that resolves nowhere: only the proxy can reach it (Go never
    // proxies 127.0.0.1 itself).
    let host = format!("netfs-webdav.invalid:{}", remote.daemon.port);
    let source = remote
        .on_the_fly("proxied", remote.secret())
        .replace(&format!("127.0.0.1:{}", remote.daemon.port), &host);
    let volume = unique_name("proxied");
    created(
        &plugin,
        &volume,
        json!({"type": "rclone", "source": source}),
    );
    let file = plugin.mount_root().join(&volume).join("p.txt");
    fs::write(&file, "through the proxy\n").unwrap();
    wait_until(
        Duration::from_secs(20),
        "p.txt on the server's disk",
        || {
            fs::read_to_string(remote.disk("proxied/p.txt"))
                .is_ok_and(|t| t == "through the proxy\n")
        },
    );
    assert!(proxy.connections.load(Ordering::SeqCst) > 0);
    let first = proxy.first_request.lock().unwrap().clone();
    assert!(first.contains(&format!("http://{host}/")), "{first}");
    // The settings are in the tool's environment as given.
    let pid = status(&plugin, &volume)["pid"].as_i64().unwrap() as i32;
    let env = String::from_utf8_lossy(&netfs::procfs::environ(pid).unwrap()).into_owned();
    for var in [
        format!("HTTP_PROXY={proxy_url}"),
        format!("HTTPS_PROXY={proxy_url}"),
        "NO_PROXY=localhost,netfs-direct.invalid".to_owned(),
    ] {
        assert!(
            env.split('\0').any(|v| v == var),
            "{var} not in rclone's environment"
        );
    }
    // A host in NO_PROXY is reached directly: it does not resolve, so rclone fails.
    let direct = source.replace("netfs-webdav.invalid", "netfs-direct.invalid");
    let before = proxy.connections.load(Ordering::SeqCst);
    let (code, reply) = create(
        &plugin,
        &unique_name("direct"),
        json!({"type": "rclone", "source": direct}),
    );
    assert_eq!(code, 500, "{reply}");
    assert!(err_of(&reply).contains("netfs-direct.invalid"), "{reply}");
    assert_eq!(
        proxy.connections.load(Ordering::SeqCst),
        before,
        "NO_PROXY host went through the proxy"
    );
}

/// sqlite3 (the host's CLI) on `db`: a table, 200 rows in 20 transactions,
/// their count. Err with its output when it fails.
fn sqlite(db: &Path) -> Result<String, String> {
    let mut script = String::from(
        "PRAGMA journal_mode=DELETE;\nCREATE TABLE IF NOT EXISTS t(x INTEGER, s TEXT);\n",
    );
    for i in 0..20 {
        script.push_str("BEGIN;\n");
        for j in 0..10 {
            script.push_str(&format!(
                "INSERT INTO t VALUES({}, 'row {i}-{j}');\n",
                i * 10 + j
            ));
        }
        script.push_str("COMMIT;\n");
    }
    script.push_str("SELECT count(*), sum(x) FROM t;\n");
    let out = cmd::run_input(
        Command::new("sqlite3").arg("-bail").arg(db),
        Some(script.as_bytes()),
        cmd::DEFAULT_TIMEOUT,
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text.lines().last().unwrap_or_default().to_owned())
    } else {
        Err(text)
    }
}

fn sqlite_on(remote: &dyn Remote) {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    fs::write(&conf, "").unwrap();
    let plugin = plugin_with_config(&conf, &[]);
    let backend = remote.backend();

    // The default: vfs-cache-mode=writes.
    let volume = unique_name(&format!("{backend}-sqlite"));
    created(
        &plugin,
        &volume,
        json!({"type": "rclone", "source": remote.on_the_fly("db", remote.secret())}),
    );
    let command = status(&plugin, &volume)["command"].to_string();
    assert!(command.contains("--vfs-cache-mode=writes"), "{command}");
    let db = plugin.mount_root().join(&volume).join("app.db");
    assert_eq!(sqlite(&db).as_deref(), Ok("200|19900"), "{backend}");
    // The database reached the server whole: sqlite reads it there.
    wait_until(
        Duration::from_secs(30),
        "app.db on the server, whole",
        || sqlite_count(&remote.disk("db/app.db")).as_deref() == Some("200"),
    );

    // rclone's own default, off, cannot serve sqlite.
    let off = unique_name(&format!("{backend}-off"));
    created(
        &plugin,
        &off,
        json!({"type": "rclone", "source": remote.on_the_fly("off", remote.secret()), "o": "vfs-cache-mode=off"}),
    );
    let err = sqlite(&plugin.mount_root().join(&off).join("app.db"))
        .expect_err("sqlite without the VFS cache");
    assert!(!err.is_empty());
    crate::support::report(
        &format!("sqlite {backend}"),
        &format!(
            "200 rows in 20 transactions with vfs-cache-mode=writes; off fails: {}",
            err.lines().last().unwrap_or("")
        ),
    );
}

/// Rows of table `t` in a copy of the database on the server's disk.
fn sqlite_count(db: &Path) -> Option<String> {
    sqlite_rows(db, "t")
}

/// Rows of `table` in a copy of the database on the server's disk (never
/// the live file).
fn sqlite_rows(db: &Path, table: &str) -> Option<String> {
    let copy = tempfile::NamedTempFile::new().ok()?;
    fs::copy(db, copy.path()).ok()?;
    let out = cmd::run(
        Command::new("sqlite3")
            .arg(copy.path())
            .arg(format!("SELECT count(*) FROM {table};")),
        cmd::DEFAULT_TIMEOUT,
    );
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn sqlite_works_on_s3_with_the_default_vfs_cache_mode() {
    sqlite_on(&S3::start());
}

#[test]
fn sqlite_works_on_webdav_with_the_default_vfs_cache_mode() {
    sqlite_on(&WebDav::start());
}

/// The image the sqlite Compose example runs (scripts/setup.sh makes it).
fn sqlite_image() -> String {
    std::env::var("SQLITE_IMAGE").unwrap_or_else(|_| "netfs-test-sqlite:latest".to_owned())
}

#[test]
fn the_sqlite_compose_example_runs_on_s3_and_webdav() {
    require_docker();
    // Never a pull: there is no registry to pull from.
    let image = sqlite_image();
    let found = cmd::run(
        Command::new("docker").args(["image", "inspect", &image]),
        cmd::DEFAULT_TIMEOUT,
    );
    assert!(
        found.status.success(),
        "no image {image}: run scripts/setup.sh (make test does), which makes it"
    );
    let (s3, dav) = (S3::start(), WebDav::start());
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    fs::write(&conf, "").unwrap();
    let plugin = plugin_with_config(&conf, &[]);
    // docker-compose 1 keeps only letters and digits of a project name.
    let project: String = unique_name("rclonesqlite")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let mut cleanup = Cleanup::new();
    let (s3_source, dav_source) = (
        s3.on_the_fly("compose", s3.secret()),
        dav.on_the_fly("compose", dav.secret()),
    );
    // The volumes as docker-compose would make them from the file: it
    // first looks each name up, and dockerd asks every plugin it knows about
    // an unknown name, which takes minutes while other tests hold a plugin
    // stopped. A volume that exists with the file's driver is used as it is.
    for (volume, source) in [("s3", &s3_source), ("webdav", &dav_source)] {
        let name = cleanup.volume(format!("{project}_{volume}"));
        docker_api_create(
            plugin.driver_name(),
            &name,
            &json!({"type": "rclone", "source": source}),
        );
    }
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rclone-sqlite.yml");
    let compose = |args: &[&str]| {
        let mut command = Command::new("docker-compose");
        command
            .arg("-p")
            .arg(&project)
            .arg("-f")
            .arg(&file)
            .args(args)
            .env("S3_SOURCE", &s3_source)
            .env("WEBDAV_SOURCE", &dav_source)
            .env("NETFS_DRIVER", plugin.driver_name())
            .env("SQLITE_IMAGE", sqlite_image())
            // A loaded dockerd may take more than compose's default minute.
            .env("COMPOSE_HTTP_TIMEOUT", "300");
        let out = cmd::run(&mut command, Duration::from_secs(180));
        assert!(
            out.status.success(),
            "{}",
            cmd::show("docker-compose", &out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    // Each run adds a row to the database on the remote.
    let mut took = Vec::new();
    for run in 1..=2 {
        for service in ["on-s3", "on-webdav"] {
            let t = Instant::now();
            let count = compose(&["run", "--rm", "-T", service]);
            assert_eq!(count, run.to_string(), "{service}, run {run}");
            took.push(format!("{service} {:.1}s", t.elapsed().as_secs_f64()));
        }
    }
    let t = Instant::now();
    compose(&["down"]);
    took.push(format!("down {:.1}s", t.elapsed().as_secs_f64()));
    // rclone uploads a closed file after --vfs-write-back (5 s), while the
    // volume lives on; removing the volume before that would leave the last
    // change in the VFS cache (docs/backends.md).
    for (remote, what) in [(&s3 as &dyn Remote, "s3"), (&dav, "webdav")] {
        let db = remote.disk("compose/app.db");
        let t = Instant::now();
        wait_until(
            Duration::from_secs(30),
            &format!("{what}: app.db with 2 rows"),
            || sqlite_rows(&db, "visits").as_deref() == Some("2"),
        );
        took.push(format!(
            "{what} on the server after {:.1}s",
            t.elapsed().as_secs_f64()
        ));
    }
    crate::support::report("sqlite compose", &took.join(", "));
}
