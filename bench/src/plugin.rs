//! The plugin daemons under test, each in a work directory of its own:
//! netfs (the binary `make build` produced) and `rclone serve docker`.
//! Started and stopped by pid; dropping one stops it and detaches anything
//! left mounted below its mount root.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::client::Client;
use crate::mounts;
use crate::procs;

const READY: Duration = Duration::from_secs(30);
/// How long a daemon gets to exit on SIGTERM when the benchmark ends.
const EXIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Netfs,
    Rclone,
}

pub struct Daemon {
    pub kind: Kind,
    program: OsString,
    args: Vec<OsString>,
    pub mount_root: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    client: Client,
}

impl Daemon {
    /// netfs with its socket, mount root and state file in `dir`, reading
    /// ssh keys from `key_dir`.
    pub fn netfs(
        bin: &Path,
        dir: &Path,
        socket: &Path,
        lifecycle: &str,
        key_dir: &Path,
    ) -> Result<Daemon> {
        fs::create_dir_all(dir)?;
        let mount_root = dir.join("volumes");
        let args = vec![
            format!("--socket={}", socket.display()).into(),
            format!("--propagated-mount={}", mount_root.display()).into(),
            format!("--state-file={}", dir.join("state.json").display()).into(),
            format!("--volume-process-lifecycle={lifecycle}").into(),
            format!("--key-dir={}", key_dir.display()).into(),
            "--log-level=info".into(),
        ];
        Ok(Daemon::new(
            Kind::Netfs,
            bin.into(),
            args,
            dir,
            socket,
            mount_root,
        ))
    }

    /// The same daemon with one more command line argument.
    pub fn with_arg(mut self, arg: &str) -> Daemon {
        self.args.push(arg.into());
        self
    }

    /// `rclone serve docker` with its socket, base dir, config and state in `dir`.
    pub fn rclone(dir: &Path, socket: &Path) -> Result<Daemon> {
        fs::create_dir_all(dir.join("cache"))?;
        let config = dir.join("rclone.conf");
        fs::write(&config, "")?;
        let mount_root = dir.join("volumes");
        fs::create_dir_all(&mount_root)?;
        let args = vec![
            "serve".into(),
            "docker".into(),
            "--socket-addr".into(),
            socket.into(),
            "--base-dir".into(),
            mount_root.clone().into(),
            "--config".into(),
            config.into(),
            "--cache-dir".into(),
            dir.join("cache").into(),
            "--no-spec".into(),
        ];
        Ok(Daemon::new(
            Kind::Rclone,
            "rclone".into(),
            args,
            dir,
            socket,
            mount_root,
        ))
    }

    fn new(
        kind: Kind,
        program: OsString,
        args: Vec<OsString>,
        dir: &Path,
        socket: &Path,
        mount_root: PathBuf,
    ) -> Daemon {
        Daemon {
            kind,
            program,
            args,
            mount_root,
            log: dir.join("daemon.log"),
            child: None,
            client: Client::new(socket),
        }
    }

    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Netfs => "netfs",
            Kind::Rclone => "rclone",
        }
    }

    /// Starts the process without waiting for it.
    pub fn spawn(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("{} already running", self.name());
        }
        let log = fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Variables netfs reads: the caller's environment changes nothing.
        for var in netfs::Cli::variables() {
            cmd.env_remove(var);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot run {}", self.program.to_string_lossy()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Starts it and waits until it answers `Plugin.Activate`.
    pub async fn start(&mut self) -> Result<()> {
        self.spawn()?;
        self.wait_ready().await
    }

    pub async fn wait_ready(&mut self) -> Result<()> {
        if let Err(e) = self.client.wait_activate(READY).await {
            bail!("{}: {e:#}\n{}", self.name(), self.log_tail());
        }
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn pid(&self) -> Result<u32> {
        self.child
            .as_ref()
            .map(Child::id)
            .ok_or_else(|| anyhow!("{} is not running", self.name()))
    }

    /// Resident size of the daemon process itself, in MiB.
    pub fn rss_mib(&self) -> Result<f64> {
        let pid = self.pid()?;
        procs::rss_kib(pid)
            .map(|kib| kib as f64 / 1024.0)
            .ok_or_else(|| anyhow!("cannot read the resident size of pid {pid}"))
    }

    /// SIGTERM and wait up to `grace` for the exit; past that, SIGKILL to
    /// the whole tree. True if it exited by itself.
    pub fn terminate(&mut self, grace: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let pid = child.id() as i32;
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let exited = procs::poll_until(grace, Duration::from_millis(5), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            procs::kill_tree(pid);
            let _ = child.wait();
        }
        exited
    }

    /// Stops the daemon as a reboot would leave things: SIGTERM (SIGKILL
    /// after `grace`), then whatever is still mounted below its mount root
    /// is detached.
    pub fn stop_like_reboot(&mut self, grace: Duration) -> bool {
        let clean = self.terminate(grace);
        mounts::unmount_all_under(&self.mount_root);
        clean
    }

    /// The last lines the daemon logged, for error messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            let pid = child.id() as i32;
            // Volume processes that outlived a crash are ours to end too.
            let tree = procs::children(pid);
            if !self.terminate(EXIT) {
                for p in tree {
                    procs::kill_tree(p);
                }
            }
        }
        mounts::unmount_all_under(&self.mount_root);
    }
}

/// The name of a volume of this run, safe for both plugins.
pub fn volume_name(prefix: &str, i: usize) -> String {
    format!("{prefix}{i:04}")
}

/// Create + Mount of a volume through a plugin: its mountpoint.
pub async fn create_mount(
    client: &Client,
    name: &str,
    opts: &serde_json::Value,
) -> Result<PathBuf> {
    client
        .call(
            "VolumeDriver.Create",
            &serde_json::json!({ "Name": name, "Opts": opts }),
        )
        .await?;
    let reply = client
        .call(
            "VolumeDriver.Mount",
            &serde_json::json!({ "Name": name, "ID": "bench" }),
        )
        .await?;
    Ok(PathBuf::from(
        reply["Mountpoint"].as_str().unwrap_or_default(),
    ))
}
