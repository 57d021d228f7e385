//! The netfs binary run as a host-service plugin on a socket of its own,
//! `/run/docker/plugins/<driver name>.sock`, so dockerd finds it under that
//! name and parallel tests never meet (names come from [`DriverSlot`]). Its
//! mount root, state file and log live in a private temporary directory.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tempfile::TempDir;

use super::client;
use super::driver_pool::DriverSlot;
use super::mounts::{self, poll_until};

pub const PLUGIN_DIR: &str = "/run/docker/plugins";
/// How long the plugin gets to answer `Plugin.Activate` after starting.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a SIGTERMed plugin gets to exit before the test fails or (in
/// Drop) it is killed.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Plugin {
    bin: PathBuf,
    name: String,
    slot: DriverSlot,
    dir: Option<TempDir>,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    child: Option<Child>,
    /// Socket activation: the listening socket, held across runs as
    /// systemd's socket unit holds it (see [`Plugin::socket_activated`]).
    held: Option<UnixListener>,
}

impl Plugin {
    /// A plugin not yet started; pass `env!("CARGO_BIN_EXE_netfs")`.
    /// It gets `--socket`, `--propagated-mount` and `--state-file` of its
    /// own, `LOG_LEVEL=debug` and the test sshds' key directory as
    /// `KEY_DIR`, unless told otherwise.
    pub fn new(bin: impl AsRef<Path>) -> Plugin {
        let slot = DriverSlot::acquire();
        let dir = tempfile::Builder::new()
            .prefix("netfs-plugin-")
            .tempdir()
            .expect("create plugin temp dir");
        fs::create_dir_all(dir.path().join("volumes")).expect("create volumes dir");
        Plugin {
            bin: bin.as_ref().to_path_buf(),
            name: slot.name(),
            slot,
            dir: Some(dir),
            args: Vec::new(),
            envs: vec![
                ("LOG_LEVEL".into(), "debug".into()),
                ("KEY_DIR".into(), super::sshd::KEY_DIR.into()),
            ],
            child: None,
            held: None,
        }
    }

    /// Runs the plugin as systemd's socket activation would: this fixture
    /// binds the socket and keeps it for the plugin's whole life, and each
    /// start runs `systemd-socket-activate`, which waits for the first
    /// connection and then becomes netfs with the socket as fd 3
    /// (`LISTEN_FDS=1`, `LISTEN_PID` its own pid).
    pub fn socket_activated(mut self) -> Plugin {
        let path = self.socket();
        let _ = fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o660)).expect("chmod the socket");
        self.held = Some(listener);
        self
    }

    /// The listening socket this fixture holds for a socket-activated plugin.
    pub fn held_socket(&self) -> &UnixListener {
        self.held.as_ref().expect("not socket-activated")
    }

    /// The name of the plugin's process: `systemd-socket-` (as the kernel
    /// cuts it) while it waits for a connection, `netfs` once it runs.
    pub fn process_name(&self) -> String {
        let pid = self.pid();
        fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    }

    /// Adds a command line argument, e.g. `.arg("--mount-timeout=5s")`.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Plugin {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Plugin {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the plugin, e.g. `MOUNT_OPTIONS`.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Plugin {
        self.set_env(key, value);
        self
    }

    /// [`Plugin::env`] for a plugin already built, e.g. between restarts.
    pub fn set_env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) {
        let key = key.as_ref().to_owned();
        self.envs.retain(|(k, _)| *k != key);
        self.envs.push((key, value.as_ref().to_owned()));
    }

    /// Starts it and waits until it answers `Plugin.Activate`.
    pub fn start(mut self) -> Plugin {
        self.spawn();
        self.wait_ready();
        self
    }

    /// Starts the process without waiting for it (see [`Plugin::wait_exit`]
    /// for a plugin that must refuse to start).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "plugin {} already started", self.name);
        fs::create_dir_all(PLUGIN_DIR).expect("create /run/docker/plugins");
        let log = fs::File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open plugin log");
        let mut cmd = match &self.held {
            None => Command::new(&self.bin),
            Some(held) => activation(&self.bin, held.as_raw_fd(), &self.envs),
        };
        cmd.arg(format!("--socket={}", self.socket().display()))
            .arg(format!(
                "--propagated-mount={}",
                self.mount_root().display()
            ))
            .arg(format!("--state-file={}", self.state_file().display()))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone plugin log handle"))
            .stderr(log);
        // The test runner's environment never changes a test: every
        // variable the plugin reads is cleared (set them with `env`).
        for var in netfs::Cli::variables() {
            cmd.env_remove(var);
        }
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        // The pinned rclone comes first, as an operator's own would.
        if !self.envs.iter().any(|(k, _)| k == "PATH") {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut dirs = vec![super::rclone::dir()];
            dirs.extend(std::env::split_paths(&path));
            cmd.env("PATH", std::env::join_paths(dirs).expect("a PATH"));
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        self.child = Some(child);
    }

    /// Waits until the socket answers `POST /Plugin.Activate` with 200;
    /// panics with the log if the process exits or time runs out.
    pub fn wait_ready(&mut self) {
        let socket = self.socket();
        let mut exited = None;
        let child = self.child.as_mut().expect("plugin not started");
        let ready = poll_until(READY_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
                return true;
            }
            matches!(
                client::try_request(&socket, "POST", "/Plugin.Activate", b"{}".to_vec()),
                Ok(reply) if reply.status == 200
            )
        });
        if let Some(status) = exited {
            self.child = None;
            panic!(
                "plugin {} exited ({status}) before answering:\n{}",
                self.name,
                self.log()
            );
        }
        assert!(
            ready,
            "plugin {} not answering after {READY_TIMEOUT:?}:\n{}",
            self.name,
            self.log()
        );
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("plugin not started");
        let mut status = None;
        let done = poll_until(timeout, || {
            status = child.try_wait().expect("wait for plugin");
            status.is_some()
        });
        assert!(
            done,
            "plugin {} still running after {timeout:?}:\n{}",
            self.name,
            self.log()
        );
        self.child = None;
        status.expect("exit status")
    }

    /// SIGKILL, as a crash: nothing is cleaned up by the plugin.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for the exit; panics with the log if it hangs.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = Pid::from_raw(self.pid() as i32);
        kill(pid, Signal::SIGTERM).expect("send SIGTERM to plugin");
        self.wait_exit(EXIT_TIMEOUT)
    }

    /// Stops it if running, then starts it again: same name, socket, dirs,
    /// state file and arguments.
    pub fn restart(&mut self) {
        if self.is_running() {
            self.terminate();
        }
        self.child = None;
        self.spawn();
        self.wait_ready();
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("plugin not running").id()
    }

    /// The name to use with `docker volume create -d`.
    pub fn driver_name(&self) -> &str {
        &self.name
    }

    pub fn socket(&self) -> PathBuf {
        self.slot.socket()
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("plugin dir").path()
    }

    /// `--propagated-mount`: every volume's mountpoint lies below it.
    pub fn mount_root(&self) -> PathBuf {
        self.dir().join("volumes")
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir().join("state.json")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir().join("plugin.log")
    }

    /// Everything the plugin wrote on stdout and stderr, over all its runs.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// `POST endpoint` on this plugin's socket: (status, reply JSON).
    pub fn post(&self, endpoint: &str, body: Value) -> (u16, Value) {
        client::post(&self.socket(), endpoint, body)
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- log of plugin {} -----\n{}-----",
                self.name,
                self.log()
            );
        }
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let exited = poll_until(EXIT_TIMEOUT, || !matches!(child.try_wait(), Ok(None)));
            if !exited {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let root = self.mount_root();
        let left = mounts::unmount_all_under(&root);
        // Volume processes the plugin left behind (their argv names the mountpoint).
        for (pid, _) in mounts::processes_with_arg(&root.to_string_lossy()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // Shared ssh connections a crashed plugin left (their argv names
        // the control socket directory beside the state file).
        let control = self.state_file().with_file_name("ssh-control");
        for (pid, _) in mounts::processes_with_arg(&control.to_string_lossy()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = fs::remove_file(self.socket());
        if !left.is_empty() {
            // Deleting the dir would walk into a live mount: the remote's data.
            let dir = self.dir.take().expect("plugin dir").keep();
            eprintln!("still mounted {left:?}: leaving {}", dir.display());
        }
    }
}

/// `systemd-socket-activate bin` with `fd` as its fd 3 and the variables
/// systemd would set: `LISTEN_PID` must be the pid that reads it, which
/// only the shell that execs knows (`$$`), and keeps through its exec.
/// `envs` reach netfs as `-E` (a unit's `Environment=`): the tool passes
/// no other variable of its own environment but PATH and HOME.
fn activation(bin: &Path, fd: RawFd, envs: &[(OsString, OsString)]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"LISTEN_PID=$$ LISTEN_FDS=1 exec systemd-socket-activate "$@""#)
        .arg("sh");
    for (key, value) in envs {
        let mut pair = key.clone();
        pair.push("=");
        pair.push(value);
        cmd.arg("-E").arg(pair);
    }
    cmd.arg(bin);
    pass_fds(&mut cmd, &[fd]);
    cmd
}

/// Makes the child's fds 3, 4, ... copies of `fds` (at most 4), inherited
/// across exec, as a service manager passes listening sockets.
pub fn pass_fds(cmd: &mut Command, fds: &[RawFd]) {
    assert!(fds.len() <= 4, "at most 4 fds");
    let mut given = [-1; 4];
    given[..fds.len()].copy_from_slice(fds);
    let count = fds.len();
    // SAFETY: between fork and exec only fcntl and dup2, which are
    // async-signal-safe, on fds that stay open in the parent meanwhile.
    unsafe {
        cmd.pre_exec(move || {
            use nix::libc::{dup2, fcntl, F_DUPFD_CLOEXEC, F_SETFD};
            let fail = || Err(std::io::Error::last_os_error());
            // First out of the way (a source may be another's target), and
            // closed at exec.
            let mut moved = [-1; 4];
            for i in 0..count {
                moved[i] = fcntl(given[i], F_DUPFD_CLOEXEC, 100);
                if moved[i] < 0 {
                    return fail();
                }
            }
            for (i, &fd) in moved.iter().take(count).enumerate() {
                let target = 3 + i as RawFd;
                // dup2 leaves the copy without close-on-exec.
                if dup2(fd, target) < 0 || fcntl(target, F_SETFD, 0) < 0 {
                    return fail();
                }
            }
            Ok(())
        });
    }
}
