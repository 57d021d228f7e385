//! The managed plugin under test: the one `make test` builds from the
//! Dockerfile (scripts/test-plugin.sh) and names in `NETFS_TEST_PLUGIN`.
//! A test takes it for its whole length, under a lock shared with other
//! test processes and with the build, sets what it needs with
//! `docker plugin set`, and hands it ssh keys through its `sshkeys` mount.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use nix::fcntl::Flock;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::support::cmd;
use crate::support::docker::{docker, docker_ok, require_docker, volume_inspect, DOCKER_TIMEOUT};
use crate::support::mounts::{poll_until, process_alive, wait_until};
use crate::support::sshd::Sshd;
use crate::support::unique_name;

/// The variable in which `make test` names the plugin.
const PLUGIN_VAR: &str = "NETFS_TEST_PLUGIN";
/// The variable in which `make test` names the same plugin built for arm64
/// (`PLUGIN_ARCH=arm64`), which runs here under QEMU's emulator.
pub const ARM64_PLUGIN_VAR: &str = "NETFS_TEST_PLUGIN_ARM64";
/// Held by a test for as long as it uses the plugin, and by
/// scripts/test-plugin.sh while it replaces it: one per plugin name, so
/// runs with plugins of their own do not wait for each other.
const LOCK_DIR: &str = "/run/netfs-test";
const LOCK_TIMEOUT: Duration = Duration::from_secs(900);
/// Host directories the plugin's `sshkeys` mount points at during tests.
const KEYS_ROOT: &str = "/var/lib/netfs-test";
/// What the plugin sees of the `sshkeys` mount.
const KEYS_IN_PLUGIN: &str = "/root/.ssh";
/// scripts/setup.sh starts dockerd with its output here.
pub const DOCKERD_LOG: &str = "/var/log/netfs-dockerd.log";
/// dockerd's own pid file.
const DOCKERD_PID: &str = "/var/run/docker.pid";

/// Settings every test starts from; a test overrides some of them.
const BASELINE: &[(&str, &str)] = &[
    ("MOUNT_OPTIONS", ""),
    ("VOLUME_PROCESS_OPTIONS", ""),
    ("VOLUME_PROCESS_BINARY", ""),
    ("MOUNT_OPTIONS_VOLUME_PROCESS_OPTION", ""),
    ("ALLOW_OPTIONS", ""),
    ("DENY_OPTIONS", ""),
    ("LOG_LEVEL", "debug"),
];

/// Long enough for a mount over the loopback sshd, and for the plugin to
/// start again after an enable or a dockerd restart.
pub const T: Duration = Duration::from_secs(60);

pub struct ManagedPlugin {
    name: String,
    id: String,
    keys_dir: PathBuf,
    /// Host directories of the `rclone` (config) and `rclonecache` mounts.
    rclone_dir: PathBuf,
    cache_dir: PathBuf,
    /// Files put into the keys directory, removed on drop.
    keys: Vec<PathBuf>,
    _lock: Flock<File>,
}

impl ManagedPlugin {
    /// Takes the plugin, enabled, with [`BASELINE`] and then `settings`
    /// applied, and with no volume left over from an earlier run.
    pub fn take(settings: &[(&str, &str)]) -> ManagedPlugin {
        Self::take_named_in(PLUGIN_VAR, settings)
    }

    /// [`take`](Self::take) for the plugin named in `var`.
    pub fn take_named_in(var: &str, settings: &[(&str, &str)]) -> ManagedPlugin {
        let name = std::env::var(var)
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| {
                panic!(
                    "{var} is not set: run `make test`, which builds the managed plugin \
                     from the Dockerfile (scripts/test-plugin.sh) and names it there"
                )
            });
        // Before any docker call: while waiting here this test holds nothing
        // a dockerd restart in another test would wait for.
        let lock = take_lock(&name);
        require_docker();
        let inspect = docker(&["plugin", "inspect", &name]);
        assert!(
            inspect.status.success(),
            "the managed plugin {name} is not installed: run `make test`, which builds it \
             (scripts/test-plugin.sh).\n{}",
            String::from_utf8_lossy(&inspect.stderr)
        );
        let keys_dir = Path::new(KEYS_ROOT).join(format!("{name}-sshkeys"));
        fs::create_dir_all(&keys_dir).expect("create the plugin's keys directory");
        fs::set_permissions(&keys_dir, fs::Permissions::from_mode(0o700))
            .expect("chmod the keys directory 0700");
        let rclone_dir = Path::new(KEYS_ROOT).join(format!("{name}-rclone"));
        let cache_dir = Path::new(KEYS_ROOT).join(format!("{name}-rclone-cache"));
        for dir in [&rclone_dir, &cache_dir] {
            fs::create_dir_all(dir).expect("create the plugin's rclone directory");
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .expect("chmod the rclone directory 0700");
        }
        let mut plugin = ManagedPlugin {
            id: String::new(),
            name,
            keys_dir,
            rclone_dir,
            cache_dir,
            keys: Vec::new(),
            _lock: lock,
        };
        plugin.apply(settings);
        plugin.id = plugin.inspect()["Id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        plugin.remove_leftovers();
        plugin
    }

    /// The host directory the `sshkeys` mount shows the plugin.
    pub fn keys_dir(&self) -> &Path {
        &self.keys_dir
    }

    /// The name as given to `docker plugin` and `-d`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// dockerd's id for the plugin (it names its directories).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The driver name dockerd records for its volumes.
    pub fn driver(&self) -> String {
        format!("{}:latest", self.name)
    }

    pub fn inspect(&self) -> Value {
        let text = docker_ok(&["plugin", "inspect", &self.name]);
        let all: Value = serde_json::from_str(&text).expect("docker plugin inspect gives JSON");
        all[0].clone()
    }

    pub fn enabled(&self) -> bool {
        self.inspect()["Enabled"] == true
    }

    /// Disables (forcibly: its volumes count as users), applies `settings`
    /// over [`BASELINE`] and the keys directory, and enables again; does
    /// nothing if all of it already holds.
    pub fn apply(&self, settings: &[(&str, &str)]) {
        let mut wanted: Vec<String> = BASELINE
            .iter()
            .filter(|(k, _)| !settings.iter().any(|(s, _)| s == k))
            .chain(settings)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let inspect = self.inspect();
        let env: Vec<&str> = inspect["Settings"]["Env"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mounts = [
            ("sshkeys", &self.keys_dir),
            ("rclone", &self.rclone_dir),
            ("rclonecache", &self.cache_dir),
        ];
        let settled = inspect["Enabled"] == true
            && mounts
                .iter()
                .all(|(m, dir)| mount_source(&inspect, m).as_deref() == dir.to_str())
            && wanted.iter().all(|w| env.contains(&w.as_str()));
        if settled {
            return;
        }
        if inspect["Enabled"] == true {
            docker_ok(&["plugin", "disable", "-f", &self.name]);
        }
        for (mount, dir) in mounts {
            wanted.push(format!("{mount}.source={}", dir.display()));
        }
        let mut args = vec!["plugin", "set", &self.name];
        args.extend(wanted.iter().map(String::as_str));
        docker_ok(&args);
        self.enable();
    }

    pub fn enable(&self) {
        let out = docker(&["plugin", "enable", &self.name]);
        assert!(
            out.status.success(),
            "docker plugin enable {}: {}\n{}",
            self.name,
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
    }

    pub fn disable(&self) {
        docker_ok(&["plugin", "disable", "-f", &self.name]);
    }

    /// Volumes a crashed run left: the lock says no test uses any now.
    fn remove_leftovers(&self) {
        let filter = format!("driver={}", self.driver());
        let listed = docker_ok(&["volume", "ls", "-q", "-f", &filter]);
        let names: Vec<&str> = listed.split_whitespace().collect();
        if !names.is_empty() {
            let mut args = vec!["volume", "rm", "-f"];
            args.extend(names);
            docker_ok(&args);
        }
    }

    /// Copies `sshd`'s client key into the `sshkeys` mount; returns the
    /// path the plugin reads it from. Removed when the plugin is let go.
    pub fn install_key(&mut self, sshd: &Sshd) -> String {
        let file = unique_name("key");
        let host = self.keys_dir.join(&file);
        fs::copy(sshd.key_path(), &host).expect("copy the client key into the keys directory");
        fs::set_permissions(&host, fs::Permissions::from_mode(0o600)).expect("chmod key 0600");
        self.keys.push(host);
        format!("{KEYS_IN_PLUGIN}/{file}")
    }

    /// Writes `text` as `file` in the `sshkeys` mount (known_hosts, say);
    /// removed when the plugin is let go.
    pub fn install_file(&mut self, file: &str, text: &str) {
        let host = self.keys_dir.join(file);
        fs::write(&host, text).expect("write into the keys directory");
        self.keys.push(host);
    }

    /// The host directory of the `rclone` mount (rclone.conf, writable).
    pub fn rclone_dir(&self) -> &Path {
        &self.rclone_dir
    }

    /// The host directory of the `rclonecache` mount (rclone's VFS cache).
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Writes `text` as rclone.conf in the `rclone` mount; removed when the
    /// plugin is let go.
    pub fn install_rclone_conf(&mut self, text: &str) {
        let host = self.rclone_dir.join("rclone.conf");
        fs::write(&host, text).expect("write rclone.conf");
        fs::set_permissions(&host, fs::Permissions::from_mode(0o600)).expect("chmod 0600");
        self.keys.push(host);
    }

    /// Runs `examples/volumes/<script> args...` against this plugin, with
    /// `env` set; returns what it did, successful or not.
    pub fn example(&self, script: &str, args: &[&str], env: &[(&str, String)]) -> Output {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/volumes")
            .join(script);
        let mut command = Command::new(&path);
        command
            .args(args)
            .env("NETFS_DRIVER", &self.name)
            .envs(env.iter().map(|(k, v)| (k, v)));
        cmd::run(&mut command, DOCKER_TIMEOUT)
    }

    /// Like [`ManagedPlugin::example`], and fails unless it succeeds.
    pub fn example_ok(&self, script: &str, args: &[&str], env: &[(&str, String)]) {
        let out = self.example(script, args, env);
        assert!(
            out.status.success(),
            "examples/volumes/{script} {}: {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
    }

    /// `docker volume create -d <plugin> -o k=v ... volume`.
    pub fn create(&self, volume: &str, opts: &[(&str, String)]) {
        let args = crate::support::docker::volume_create_args(&self.name, volume, opts);
        let out = docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            out.status.success(),
            "docker volume create {volume}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
    }

    /// Polls `cond` up to [`T`]; on time-out fails with the plugin's log.
    pub fn wait(&self, what: &str, cond: impl FnMut() -> bool) {
        if !poll_until(T, cond) {
            panic!(
                "timed out after {T:?} waiting until {what}\n{}",
                self.log_tail()
            );
        }
    }

    /// Waits until the volume's Status says mounted; returns that Status.
    pub fn mounted(&self, volume: &str) -> Value {
        let mut status = Value::Null;
        self.wait(&format!("{volume} is mounted"), || {
            status = volume_inspect(volume)["Status"].clone();
            status["state"] == "mounted"
        });
        status
    }

    /// The plugin's last log lines, as dockerd logged them.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(DOCKERD_LOG).unwrap_or_default();
        let tag = format!("plugin={}", self.id);
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(&tag)).collect();
        let tail = &lines[lines.len().saturating_sub(40)..];
        format!(
            "last lines of plugin {} in {DOCKERD_LOG}:\n{}",
            self.name,
            tail.join("\n")
        )
    }
}

impl Drop for ManagedPlugin {
    fn drop(&mut self) {
        for key in &self.keys {
            let _ = fs::remove_file(key);
        }
    }
}

fn take_lock(name: &str) -> Flock<File> {
    let path = format!("{LOCK_DIR}/managed-plugin-{name}.lock");
    crate::support::exclusive_lock(&path, LOCK_TIMEOUT)
}

/// The host source of one of the plugin's mounts: from `Config`, which
/// `docker plugin set` changes and dockerd mounts (after a dockerd restart
/// `Settings.Mounts` shows the source from before the last `set`).
pub fn mount_source(inspect: &Value, mount: &str) -> Option<String> {
    inspect["Config"]["Mounts"]
        .as_array()?
        .iter()
        .find(|m| m["Name"] == mount)?["Source"]
        .as_str()
        .map(str::to_owned)
}

/// Stops dockerd and starts it again the way scripts/setup.sh does, then
/// waits until it answers; if anything fails on the way, dockerd is
/// started again all the same. The caller owns the daemon (no other test
/// uses it meanwhile).
pub fn restart_dockerd() {
    let _back = DockerdBack;
    if Path::new("/run/systemd/system").is_dir() {
        cmd::run_ok(Command::new("systemctl").args(["restart", "docker"]));
    } else {
        let pid: i32 = fs::read_to_string(DOCKERD_PID)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no dockerd pid in {DOCKERD_PID}"));
        let comm = netfs::procfs::stat(pid).map(|s| s.comm).unwrap_or_default();
        assert_eq!(comm, "dockerd", "{DOCKERD_PID} names pid {pid}");
        kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM dockerd");
        wait_until(T, "dockerd exits after SIGTERM", || !process_alive(pid));
        if let Err(e) = start_dockerd() {
            panic!("{e}");
        }
    }
    wait_until(T, "dockerd answers again", dockerd_answers);
}

fn dockerd_answers() -> bool {
    let mut info = Command::new("docker");
    info.arg("info");
    cmd::try_run_input(&mut info, None, Duration::from_secs(30)).is_ok_and(|o| o.status.success())
}

/// scripts/setup.sh, which starts dockerd with the flags this machine needs.
fn start_dockerd() -> Result<(), String> {
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup.sh");
    let mut command = Command::new(&setup);
    command.env("SKIP_PACKAGES", "1");
    let out = cmd::try_run_input(&mut command, None, Duration::from_secs(180))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} did not start dockerd again:\n{}",
            setup.display(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Whatever happened, dockerd answers again when this is dropped.
struct DockerdBack;

impl Drop for DockerdBack {
    fn drop(&mut self) {
        // No panics here: this may run while a failing test unwinds.
        if !dockerd_answers() {
            if let Err(e) = start_dockerd() {
                eprintln!("{e}");
            }
        }
    }
}
