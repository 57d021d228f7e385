//! docs/troubleshooting.md as a user runs it: every `sh` block, in order,
//! in one bash against the managed plugin and a real sshd (the page's
//! settings block replaced by this machine's values), then every error
//! the page shows (`<!-- error: ID -->` before a `text` block) made to
//! happen for real and compared with the page.

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::fixture::ManagedPlugin;
use crate::support::calls;
use crate::support::cmd;
use crate::support::docker::{docker, docker_ok, DAEMON_LOCK};
use crate::support::sshd::Sshd;
use crate::support::unique_name;

const PAGE: &str = "docs/troubleshooting.md";
/// Where scripts/setup.sh has dockerd write its log.
const DOCKERD_LOG: &str = "/var/log/netfs-dockerd.log";

/// The page's blocks: `sh` ones to run, and the error messages it shows.
#[derive(Default)]
struct Page {
    settings: Option<String>,
    commands: Vec<String>,
    errors: Vec<(String, String)>,
}

fn read_page() -> Page {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(PAGE);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {PAGE}: {e}"));
    let mut page = Page::default();
    let mut lines = text.lines();
    let mut error_id: Option<String> = None;
    while let Some(line) = lines.next() {
        if let Some(id) = line
            .strip_prefix("<!-- error: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        {
            error_id = Some(id.to_owned());
            continue;
        }
        let Some(lang) = line.strip_prefix("```") else {
            if !line.trim().is_empty() {
                error_id = None;
            }
            continue;
        };
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        let body = body.join("\n");
        match lang.trim() {
            "sh" if body.starts_with("# settings") => page.settings = Some(body),
            "sh" => page.commands.push(body),
            "text" => {
                if let Some(id) = error_id.take() {
                    page.errors.push((id, body));
                }
            }
            _ => {}
        }
    }
    page
}

#[test]
fn every_command_of_docs_troubleshooting_runs_and_every_error_reads_as_netfs_prints_it() {
    let page = read_page();
    let settings = page
        .settings
        .as_deref()
        .expect("the page has a settings block");
    let mut plugin = ManagedPlugin::take(&[]);
    let sshd = Sshd::new();
    let key_in_plugin = plugin.install_key(&sshd);
    let key = key_in_plugin
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let keys = plugin.keys_dir().to_owned();
    let known_hosts = keys.join("known_hosts");
    let _ = fs::remove_file(&known_hosts);
    plugin.install_file("known_hosts", "");
    let remote = sshd.remote_path("");
    let volume = unique_name("ops-debug");

    // The page's settings, each set again for this machine.
    let ours = [
        ("PLUGIN", plugin.name().to_owned()),
        ("KEYS", keys.display().to_string()),
        ("KEY", key.clone()),
        ("SERVER", "127.0.0.1".to_owned()),
        ("PORT", sshd.port().to_string()),
        ("REMOTE_USER", "root".to_owned()),
        ("REMOTE_PATH", remote.display().to_string()),
        ("VOLUME", volume.clone()),
        ("DOCKERD_LOG", DOCKERD_LOG.to_owned()),
    ];
    for (name, _) in &ours {
        assert!(
            settings.contains(&format!("\n{name}=")),
            "the page's settings set {name}"
        );
    }
    let mut script = String::from("set -euo pipefail\n");
    for (name, value) in &ours {
        script.push_str(&format!("{name}='{value}'\n"));
    }
    for (i, block) in page.commands.iter().enumerate() {
        script.push_str(&format!("echo '>>> block {}' >&2\n{block}\n", i + 1));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("troubleshooting.sh");
    fs::write(&file, &script).expect("write the script");
    // dockerd is not restarted by another test meanwhile.
    let out = cmd::run(
        Command::new("flock")
            .args(["-s", DAEMON_LOCK, "bash"])
            .arg(&file)
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null()),
        Duration::from_secs(300),
    );
    // What ssh-keygen -R keeps of the file it rewrote.
    let _ = fs::remove_file(keys.join("known_hosts.old"));
    eprintln!(
        "netfs-suite troubleshooting.md: {} sh blocks ran\n{}\n{}",
        page.commands.len(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        // The page removes its volume itself; not if it stopped before.
        let _ = docker(&["volume", "rm", "-f", &volume]);
    }
    assert!(
        out.status.success(),
        "a command of {PAGE} failed (the last `>>> block N` above):\n{}\n{}",
        cmd::show("bash", &out),
        plugin.log_tail()
    );

    // Every error the page shows, as netfs prints it now.
    let errors = Errors {
        plugin: &plugin,
        sshd: &sshd,
        key: &key_in_plugin,
    };
    let mut checked = Vec::new();
    for (id, shown) in &page.errors {
        let (actual, extra) = errors.make(id);
        let actual = normalize(&actual, &sshd, &extra);
        eprintln!("netfs-suite troubleshooting.md error {id}: {actual}");
        assert!(
            matches_shown(shown, &actual),
            "{PAGE}, error {id}: the page shows\n  {shown}\nnetfs printed (normalized)\n  {actual}"
        );
        checked.push(id.as_str());
    }
    eprintln!(
        "netfs-suite troubleshooting.md: {} errors checked: {}",
        checked.len(),
        checked.join(", ")
    );
    assert!(checked.len() >= 15, "{checked:?}");
}

/// `shown` with each `...` standing for anything: its pieces appear in
/// `actual` in order, the first at the start.
fn matches_shown(shown: &str, actual: &str) -> bool {
    let mut rest = actual.trim();
    for (i, piece) in shown.trim().split("...").enumerate() {
        if piece.is_empty() {
            continue;
        }
        match rest.find(piece) {
            Some(at) if i > 0 || at == 0 => rest = &rest[at + piece.len()..],
            _ => return false,
        }
    }
    true
}

/// The machine's names as the page writes them.
fn normalize(actual: &str, sshd: &Sshd, extra: &[(String, String)]) -> String {
    let mut text = actual.trim().to_owned();
    for (from, to) in extra {
        text = text.replace(from, to);
    }
    text.replace(&sshd.remote_path("").display().to_string(), "/srv")
        .replace("root@127.0.0.1", "me@files")
        .replace("127.0.0.1", "files")
}

struct Errors<'a> {
    plugin: &'a ManagedPlugin,
    sshd: &'a Sshd,
    /// The test key as the plugin reads it.
    key: &'a str,
}

type Replace = Vec<(String, String)>;

impl Errors<'_> {
    /// Makes error `id` happen; what netfs (or dockerd) printed, and what
    /// to replace in it besides the usual names.
    fn make(&self, id: &str) -> (String, Replace) {
        let port = self.sshd.port();
        let login = format!("port={port},IdentityFile={}", self.key);
        let known = "UserKnownHostsFile=/root/.ssh/known_hosts";
        let source = format!("source={}", self.sshd.source(""));
        match id {
            "unknown-option" => self.create(&[&source, "opts=reconnect"]),
            "empty-value" => self.create(&[&source, "o="]),
            "missing-source" => self.create(&[&format!("o={login}")]),
            "policy" => self.create(&[&source, "o=ProxyCommand=nc %h %p"]),
            "key-dir" => self.create(&[&source, "o=IdentityFile=/home/me/.ssh/id_ed25519"]),
            "permission-denied" => {
                let wrong = self.plugin.keys_dir().join("wrong_key");
                let _ = fs::remove_file(&wrong);
                cmd::run_ok(
                    Command::new("ssh-keygen")
                        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                        .arg(&wrong),
                );
                let o = format!("o=port={port},IdentityFile=/root/.ssh/wrong_key,{known}");
                let made = self.create(&[&source, &o]);
                let _ = fs::remove_file(&wrong);
                let _ = fs::remove_file(wrong.with_extension("pub"));
                made
            }
            "host-key" => {
                let empty = self.plugin.keys_dir().join("known_hosts_empty");
                fs::write(&empty, "").expect("write an empty known_hosts");
                let o = format!(
                    "o={login},UserKnownHostsFile=/root/.ssh/known_hosts_empty,StrictHostKeyChecking=yes"
                );
                let (text, mut replace) = self.create(&[&source, &o]);
                let _ = fs::remove_file(&empty);
                replace.push((format!("[127.0.0.1]:{port}"), "[files]:22".into()));
                (text, replace)
            }
            "connection-refused" => {
                let o = format!("o=port=1,IdentityFile={}", self.key);
                let (text, mut replace) = self.create(&[&source, &o]);
                replace.push(("port 1:".into(), "port 2222:".into()));
                (text, replace)
            }
            "no-such-path" => {
                let missing = format!(
                    "source=root@127.0.0.1:{}/missing",
                    self.sshd.remote_path("").display()
                );
                self.create(&[&missing, &format!("o={login},{known}")])
            }
            "timeout" => {
                // Takes the connection, never says a word.
                let silent = TcpListener::bind("127.0.0.1:0").expect("bind a silent port");
                let silent_port = silent.local_addr().expect("its port").port();
                let o = format!("o=port={silent_port},IdentityFile={}", self.key);
                self.create(&[&source, &o])
            }
            "rclone-remote" => self.create(&["type=rclone", "source=nosuch:path"]),
            "command-binary" => self.create(&["type=command", "source=x"]),
            "enable-missing-source" => self.enable_without_keys(),
            "state-corrupt" => {
                let dir = tempfile::tempdir().expect("temp dir");
                let state = dir.path().join("state.json");
                fs::write(&state, "{\"version\": 1, \"volumes\": ")
                    .expect("write a cut state file");
                let text = self.start_binary(dir.path(), &[], &[]);
                let shown = "/var/lib/netfs/state/state.json".to_owned();
                (text, vec![(state.display().to_string(), shown)])
            }
            "allow-unknown" => {
                let dir = tempfile::tempdir().expect("temp dir");
                (
                    self.start_binary(dir.path(), &[("ALLOW_OPTIONS", "ProxyComand")], &[]),
                    vec![],
                )
            }
            "metrics-remote" => {
                let dir = tempfile::tempdir().expect("temp dir");
                let env = [("METRICS_ADDRESS", "0.0.0.0:9105")];
                (self.start_binary(dir.path(), &env, &[]), vec![])
            }
            "socket-in-use" => {
                let first = calls::start(&[]);
                let dir = tempfile::tempdir().expect("temp dir");
                let socket = format!("--socket={}", first.socket().display());
                let text = self.start_binary(dir.path(), &[], &[&socket]);
                let shown = "/run/docker/plugins/netfs.sock".to_owned();
                (text, vec![(first.socket().display().to_string(), shown)])
            }
            other => panic!("{PAGE} shows error {other:?}, which this test cannot make happen"),
        }
    }

    /// `docker volume create` that must fail: its stderr, the volume's
    /// name shown as `data`.
    fn create(&self, opts: &[&str]) -> (String, Replace) {
        let name = unique_name("ops-err");
        let mut args = vec!["volume", "create", "-d", self.plugin.name()];
        for o in opts {
            args.extend(["-o", o]);
        }
        args.push(&name);
        let out = docker(&args);
        if out.status.success() {
            let _ = docker(&["volume", "rm", "-f", &name]);
            panic!("docker {} succeeded", args.join(" "));
        }
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        (text, vec![(name, "data".to_owned())])
    }

    /// `docker plugin enable` with the key directory missing on the host;
    /// the plugin is set back and enabled after.
    fn enable_without_keys(&self) -> (String, Replace) {
        let missing = format!("/run/netfs-test/no-such-keys-{}", std::process::id());
        self.plugin.disable();
        docker_ok(&[
            "plugin",
            "set",
            self.plugin.name(),
            &format!("sshkeys.source={missing}"),
        ]);
        let out = docker(&["plugin", "enable", self.plugin.name()]);
        self.plugin.apply(&[]);
        assert!(
            !out.status.success(),
            "the plugin enabled without {missing}"
        );
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        (text, vec![(missing, "/etc/netfs/ssh".to_owned())])
    }

    /// The netfs binary as a host service that must refuse to start: its
    /// last error line.
    fn start_binary(&self, dir: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
        let mut command = Command::new(env!("CARGO_BIN_EXE_netfs"));
        if !args.iter().any(|a| a.starts_with("--socket=")) {
            command.arg(format!("--socket={}", dir.join("netfs.sock").display()));
        }
        command
            .arg(format!(
                "--propagated-mount={}",
                dir.join("volumes").display()
            ))
            .arg(format!("--state-file={}", dir.join("state.json").display()))
            .args(args)
            .env_clear()
            .envs(env.iter().copied());
        let out = cmd::run(&mut command, Duration::from_secs(30));
        assert!(
            !out.status.success(),
            "netfs started: {}",
            cmd::show("netfs", &out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("Error: "))
            .unwrap_or_else(|| panic!("no `Error:` line from netfs:\n{stderr}"))
            .to_owned()
    }
}

#[test]
fn shown_messages_match_with_ellipses() {
    assert!(matches_shown("a: ...b... (c)", "a: x b y (c)"));
    assert!(matches_shown("a", "a and more"));
    assert!(!matches_shown("b", "a b"));
    assert!(!matches_shown("a...c...b", "a b c"));
}
