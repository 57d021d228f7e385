//! Command line and environment settings: raw flags parsed by clap, then
//! checked and turned into a typed [`Config`] that the rest of netfs reads.
//! Every flag `--some-flag` also comes from `SOME_FLAG`; `-o` and `-c` come
//! from `MOUNT_OPTIONS` and `VOLUME_PROCESS_OPTIONS`. The plugin's option
//! lists are parsed here, once: a volume only ever merges over them.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};

use crate::options::policy::UnknownAllow;
use crate::options::{BackendKind, MountOptions, OptionError, Policy, ProcessOptions};

/// When a volume's mount process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Lifecycle {
    /// From Create to Remove: Create fails fast, Mount is instant.
    Volume,
    /// From the first Mount to the last Unmount.
    Mount,
}

/// Which protocol netfs serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Docker's volume plugin protocol (HTTP on `--socket`).
    Plugin,
    /// The Container Storage Interface (gRPC on `--csi-endpoint`), for
    /// Swarm cluster volumes.
    Csi,
}

/// What to do when a volume's process dies unexpectedly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RecoveryMode {
    Restart,
    Ignore,
}

#[derive(Debug, Parser)]
#[command(
    name = "netfs",
    version,
    about = "Docker volume plugin for network file systems"
)]
pub struct Cli {
    /// Unix socket to serve the plugin protocol on.
    #[arg(long, env = "SOCKET", default_value = "/run/docker/plugins/netfs.sock")]
    pub socket: PathBuf,

    /// Directory under which every volume's mountpoint is created.
    #[arg(
        long,
        env = "PROPAGATED_MOUNT",
        default_value = "/var/lib/netfs/volumes"
    )]
    pub propagated_mount: PathBuf,

    /// JSON file holding the volumes, their options and mount IDs.
    #[arg(long, env = "STATE_FILE", default_value = "/var/lib/netfs/state.json")]
    pub state_file: PathBuf,

    /// Log filter: error, warn, info, debug, trace, or a tracing directive.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Backend used by volumes created without `type`: sshfs, rclone, nfs or command.
    #[arg(long, env = "DEFAULT_TYPE", default_value = "sshfs")]
    pub default_type: BackendKind,

    /// How long a volume process may take to mount (e.g. `20s`, `500ms`).
    #[arg(long, env = "MOUNT_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub mount_timeout: Duration,

    /// How long a stopping process gets after SIGTERM before SIGKILL.
    #[arg(long, env = "STOP_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub stop_timeout: Duration,

    /// How often a running volume's mount is checked (a `stat` that must
    /// answer), between 100ms and 1h.
    #[arg(long, env = "HEALTH_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub health_interval: Duration,

    /// Plugin-wide mount options, `key=value,flag,...`, merged with each volume's `o`.
    #[arg(
        short = 'o',
        long = "mount-options",
        allow_hyphen_values = true,
        env = "MOUNT_OPTIONS",
        default_value = ""
    )]
    pub mount_options: String,

    /// Plugin-wide process arguments, `-a&--b=c`, put before each volume's `c`.
    /// The value may start with `-`: `-c -C` gives the tool `-C`.
    #[arg(
        short = 'c',
        long = "volume-process-options",
        allow_hyphen_values = true,
        env = "VOLUME_PROCESS_OPTIONS",
        default_value = ""
    )]
    pub volume_process_options: String,

    /// `volume`: the process runs from Create to Remove; `mount`: from first Mount to last Unmount.
    #[arg(
        long,
        env = "VOLUME_PROCESS_LIFECYCLE",
        value_enum,
        default_value = "volume"
    )]
    pub volume_process_lifecycle: Lifecycle,

    /// `restart` a process that dies or whose mount stops answering, or `ignore` it.
    #[arg(
        long,
        env = "VOLUME_PROCESS_RECOVERY_MODE",
        value_enum,
        default_value = "restart"
    )]
    pub volume_process_recovery_mode: RecoveryMode,

    /// Restarts allowed per volume within a sliding minute before it is marked failed.
    #[arg(long, env = "VOLUME_PROCESS_RECOVERY_MAX_PER_MIN", default_value_t = 5)]
    pub volume_process_recovery_max_per_min: u32,

    /// Binary run by volumes of type `command`.
    #[arg(long, env = "VOLUME_PROCESS_BINARY")]
    pub volume_process_binary: Option<PathBuf>,

    /// For type `command`: the argument put before the merged mount options (e.g. `-o`).
    #[arg(long, env = "MOUNT_OPTIONS_VOLUME_PROCESS_OPTION")]
    pub mount_options_volume_process_option: Option<String>,

    /// Option keys that volumes may not set, on top of the default policy
    /// (e.g. `reconnect,max_conns`).
    #[arg(long, env = "DENY_OPTIONS", default_value = "")]
    pub deny_options: String,

    /// Tools starting at once per server (host and port); the rest wait their turn.
    #[arg(long, env = "MAX_STARTUPS_PER_ENDPOINT", default_value_t = crate::pacing::DEFAULT_LIMIT)]
    pub max_startups_per_endpoint: usize,
    /// Keys the default option policy refuses that volumes may set after
    /// all (e.g. `ProxyCommand,:local`; `*` for all). See docs/security.md
    /// for what each reopens.
    #[arg(long, env = "ALLOW_OPTIONS", default_value = "")]
    pub allow_options: String,

    /// Directory of ssh keys and known_hosts files: the only place a volume's
    /// IdentityFile, UserKnownHostsFile, rclone key_file, ... may point to.
    #[arg(long, env = "KEY_DIR", default_value = "/etc/netfs/ssh")]
    pub key_dir: PathBuf,

    /// sshfs volumes to the same endpoint share one ssh connection (a master
    /// netfs supervises); `false` gives every volume a login of its own.
    #[arg(long, env = "SHARE_SSH_CONNECTIONS", default_value_t = false, action = clap::ArgAction::Set)]
    pub share_ssh_connections: bool,

    /// After a volume is mounted again (its tool restarted, netfs restarted),
    /// put the new mount in place of the dead one inside every running
    /// container that holds it; `false` leaves them with the dead mount.
    #[arg(long, env = "REATTACH", default_value_t = true, action = clap::ArgAction::Set)]
    pub reattach: bool,

    /// The host's `/proc`, where re-attach finds the containers' mount
    /// namespaces (the managed plugin sees it at `/host/proc`).
    #[arg(long, env = "HOST_PROC", default_value = "/proc")]
    pub host_proc: PathBuf,

    /// Volumes per shared ssh connection: the server's `MaxSessions`.
    #[arg(long, env = "SSH_SESSIONS_PER_CONNECTION", default_value_t = crate::connections::DEFAULT_SESSIONS)]
    pub ssh_sessions_per_connection: usize,
    /// `plugin`: serve Docker's volume plugin protocol; `csi`: serve CSI
    /// for Swarm cluster volumes (see docs/csi.md).
    #[arg(long, env = "MODE", value_enum, default_value = "plugin")]
    pub mode: Mode,

    /// CSI mode: the unix socket to serve gRPC on (`unix://` optional).
    #[arg(
        long,
        env = "CSI_ENDPOINT",
        default_value = "unix:///run/docker/plugins/netfs-csi.sock"
    )]
    pub csi_endpoint: String,

    /// CSI mode: netfs's own staging directory, where Swarm stages
    /// (`/data/staged/<id>`); what an earlier run left there is cleared at
    /// start. --propagated-mount is then netfs's own publish directory,
    /// `/data/published` for Swarm, cleared at start and stop.
    #[arg(long, env = "STAGING_ROOT", default_value = "/data/staged")]
    pub staging_root: PathBuf,

    /// CSI mode: comma-separated directories staging paths may lie below,
    /// at any depth (default: --staging-root). For kubelet:
    /// `/var/lib/kubelet/plugins/kubernetes.io/csi`.
    #[arg(long, env = "STAGING_ROOTS")]
    pub staging_roots: Option<String>,

    /// CSI mode: comma-separated directories publish targets may lie below,
    /// at any depth (default: --propagated-mount). For kubelet:
    /// `/var/lib/kubelet/pods`.
    #[arg(long, env = "PUBLISH_ROOTS")]
    pub publish_roots: Option<String>,

    /// CSI mode: the node ID reported to the orchestrator (default: the host name).
    #[arg(long, env = "NODE_ID")]
    pub node_id: Option<String>,

    /// Print what this binary was built from and the version of each tool
    /// it would run (`--build-info=json` for JSON), then exit. Put it in
    /// bug reports.
    #[arg(
        long,
        value_name = "FORMAT",
        value_enum,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "text"
    )]
    pub build_info: Option<crate::build_info::Format>,

    /// Serve Prometheus metrics at `/metrics` on this address:
    /// `127.0.0.1:PORT`, `[::1]:PORT` or a unix socket path. Off when unset.
    #[arg(long, env = "METRICS_ADDRESS")]
    pub metrics_address: Option<String>,

    /// Let --metrics-address be an address other hosts reach (e.g.
    /// `0.0.0.0:9105`); the metrics name every volume and ssh server.
    #[arg(long, env = "METRICS_ALLOW_REMOTE", default_value_t = false, action = clap::ArgAction::Set)]
    pub metrics_allow_remote: bool,
}

/// CSI mode's settings (see [`Mode::Csi`]).
#[derive(Debug, Clone)]
pub struct CsiConfig {
    /// netfs's own publish directory (Swarm's propagated mount): cleared
    /// at start and stop. Its own staging directory is `mount_root`.
    pub publish_root: PathBuf,
    /// Where staging paths may lie, at any depth.
    pub staging_roots: Vec<PathBuf>,
    /// Where publish targets may lie, at any depth.
    pub publish_roots: Vec<PathBuf>,
    pub node_id: String,
}

/// The bounds of `--health-interval`: checks closer than this would cost
/// the server more than they tell; further apart, a dead mount would go
/// unnoticed too long.
const HEALTH_INTERVAL_MIN: Duration = Duration::from_millis(100);
const HEALTH_INTERVAL_MAX: Duration = Duration::from_secs(3600);

/// Checked settings, built once at start and shared read-only.
#[derive(Debug, Clone)]
pub struct Config {
    pub socket: PathBuf,
    pub mount_root: PathBuf,
    pub state_file: PathBuf,
    pub default_type: BackendKind,
    pub mount_timeout: Duration,
    pub stop_timeout: Duration,
    /// How often a running volume's mount is checked.
    pub health_interval: Duration,
    pub mount_options: MountOptions,
    pub process_options: ProcessOptions,
    pub lifecycle: Lifecycle,
    pub recovery: RecoveryMode,
    pub recovery_max_per_min: u32,
    pub command_binary: Option<PathBuf>,
    pub command_mount_option_flag: Option<String>,
    /// Start-ups in flight at once to one server (see [`crate::pacing`]).
    pub max_startups_per_endpoint: usize,
    /// What volumes may ask of their tools.
    pub policy: Policy,
    /// sshfs volumes share ssh connections (see [`crate::connections`]).
    pub share_ssh_connections: bool,
    /// Running containers get a volume's new mount (see [`crate::reattach`]).
    pub reattach: bool,
    /// The host's `/proc` as netfs sees it.
    pub host_proc: PathBuf,
    /// Volumes per shared ssh connection.
    pub ssh_sessions_per_connection: usize,
    /// Set in CSI mode; `socket` is then the CSI endpoint and `mount_root`
    /// the staging root.
    pub csi: Option<CsiConfig>,
    /// Where Prometheus metrics are served, if anywhere.
    pub metrics: Option<crate::metrics::Address>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid {flag}: {source}")]
    Options {
        flag: &'static str,
        #[source]
        source: OptionError,
    },
    #[error("--propagated-mount must be an absolute path, got {0:?}")]
    RelativeMountRoot(PathBuf),
    #[error("--volume-process-recovery-max-per-min must be at least 1")]
    ZeroRecovery,
    #[error("--max-startups-per-endpoint (MAX_STARTUPS_PER_ENDPOINT) must be at least 1")]
    ZeroStartups,
    #[error("--health-interval (HEALTH_INTERVAL) must be between 100ms and 1h, got {0}")]
    HealthInterval(String),
    #[error(transparent)]
    UnknownAllow(#[from] UnknownAllow),
    #[error("--ssh-sessions-per-connection (SSH_SESSIONS_PER_CONNECTION) must be at least 1")]
    ZeroSessions,
    #[error("--key-dir (KEY_DIR) must be an absolute path, got {0:?}")]
    RelativeKeyDir(PathBuf),
    #[error("--csi-endpoint (CSI_ENDPOINT) must be a unix socket path, `/path` or `unix:///path`, got {0:?}")]
    CsiEndpoint(String),
    #[error("--staging-root (STAGING_ROOT) must be an absolute path, got {0:?}")]
    RelativeStagingRoot(PathBuf),
    #[error(
        "{flag} must list absolute paths without `.` or `..`, separated by commas, got {value:?}"
    )]
    CsiRoots { flag: &'static str, value: String },
    #[error("cannot read the host name for --node-id (NODE_ID): {0}; set it")]
    NodeId(std::io::Error),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
}

impl Config {
    pub fn mode(&self) -> Mode {
        if self.csi.is_some() {
            Mode::Csi
        } else {
            Mode::Plugin
        }
    }
}

impl Cli {
    /// Parses the process's command line and environment, exiting with
    /// clap's message on a bad flag (see [`Cli::try_parse_env_from`]).
    pub fn parse_env() -> Self {
        Self::try_parse_env_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses `args` (program name first) and the environment. A variable set
    /// to the empty string counts as unset, so `docker plugin set netfs
    /// VOLUME_PROCESS_BINARY=` goes back to the default instead of failing.
    pub fn try_parse_env_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut command = Self::command();
        let empty: Vec<clap::Id> = command
            .get_arguments()
            .filter(|a| {
                a.get_env()
                    .and_then(std::env::var_os)
                    .is_some_and(|v| v.is_empty())
            })
            .map(|a| a.get_id().clone())
            .collect();
        for id in empty {
            command = command.mut_arg(id, |a| a.env(None));
        }
        let matches = command.try_get_matches_from(args)?;
        Self::from_arg_matches(&matches)
    }

    /// Every environment variable netfs takes a setting from.
    pub fn variables() -> Vec<String> {
        Self::command()
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|v| v.to_string_lossy().into_owned())
            .collect()
    }

    /// Turns raw flags into checked settings.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let mount_options =
            MountOptions::parse_defaults(&self.mount_options).map_err(|source| {
                ConfigError::Options {
                    flag: "plugin mount options (-o, --mount-options or MOUNT_OPTIONS)",
                    source,
                }
            })?;
        let process_options =
            ProcessOptions::parse(&self.volume_process_options).map_err(|source| {
                ConfigError::Options {
                    flag: "plugin process options (-c, --volume-process-options or VOLUME_PROCESS_OPTIONS)",
                    source,
                }
            })?;
        if !self.propagated_mount.is_absolute() {
            return Err(ConfigError::RelativeMountRoot(self.propagated_mount));
        }
        if self.volume_process_recovery_max_per_min == 0 {
            return Err(ConfigError::ZeroRecovery);
        }
        if !(HEALTH_INTERVAL_MIN..=HEALTH_INTERVAL_MAX).contains(&self.health_interval) {
            return Err(ConfigError::HealthInterval(
                humantime::format_duration(self.health_interval).to_string(),
            ));
        }
        if self.max_startups_per_endpoint == 0 {
            return Err(ConfigError::ZeroStartups);
        }
        if self.ssh_sessions_per_connection == 0 {
            return Err(ConfigError::ZeroSessions);
        }
        if !self.key_dir.is_absolute() {
            return Err(ConfigError::RelativeKeyDir(self.key_dir));
        }
        let metrics = self
            .metrics_address
            .as_deref()
            .map(|a| crate::metrics::Address::parse(a, self.metrics_allow_remote))
            .transpose()?;
        let policy = Policy::new(
            &list(&self.allow_options),
            &list(&self.deny_options),
            self.key_dir,
        )?;
        let (socket, mount_root, csi) = match self.mode {
            Mode::Plugin => (self.socket, self.propagated_mount, None),
            Mode::Csi => {
                let endpoint = self.csi_endpoint;
                let socket = PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(&endpoint));
                if !socket.is_absolute() {
                    return Err(ConfigError::CsiEndpoint(endpoint));
                }
                if !self.staging_root.is_absolute() {
                    return Err(ConfigError::RelativeStagingRoot(self.staging_root));
                }
                let node_id = match self.node_id {
                    Some(id) => id,
                    None => nix::unistd::gethostname()
                        .map_err(|e| ConfigError::NodeId(e.into()))?
                        .to_string_lossy()
                        .into_owned(),
                };
                let staging_roots = roots(
                    "--staging-roots (STAGING_ROOTS)",
                    self.staging_roots.as_deref(),
                    &self.staging_root,
                )?;
                let publish_roots = roots(
                    "--publish-roots (PUBLISH_ROOTS)",
                    self.publish_roots.as_deref(),
                    &self.propagated_mount,
                )?;
                let csi = CsiConfig {
                    publish_root: self.propagated_mount,
                    staging_roots,
                    publish_roots,
                    node_id,
                };
                (socket, self.staging_root, Some(csi))
            }
        };
        Ok(Config {
            socket,
            mount_root,
            state_file: self.state_file,
            default_type: self.default_type,
            mount_timeout: self.mount_timeout,
            stop_timeout: self.stop_timeout,
            health_interval: self.health_interval,
            mount_options,
            process_options,
            lifecycle: self.volume_process_lifecycle,
            recovery: self.volume_process_recovery_mode,
            recovery_max_per_min: self.volume_process_recovery_max_per_min,
            command_binary: self.volume_process_binary,
            command_mount_option_flag: self.mount_options_volume_process_option,
            max_startups_per_endpoint: self.max_startups_per_endpoint,
            policy,
            share_ssh_connections: self.share_ssh_connections,
            reattach: self.reattach,
            host_proc: self.host_proc,
            ssh_sessions_per_connection: self.ssh_sessions_per_connection,
            csi,
            metrics,
        })
    }
}

/// A list of CSI roots, or `default` alone when unset: each absolute and
/// plain (no `.`, `..`), as paths are compared with them component-wise.
fn roots(
    flag: &'static str,
    value: Option<&str>,
    default: &Path,
) -> Result<Vec<PathBuf>, ConfigError> {
    let Some(value) = value else {
        return Ok(vec![default.to_owned()]);
    };
    let bad = || ConfigError::CsiRoots {
        flag,
        value: value.to_owned(),
    };
    let roots: Vec<PathBuf> = list(value).into_iter().map(PathBuf::from).collect();
    let plain = |p: &PathBuf| {
        p.is_absolute()
            && p.components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
    };
    if roots.is_empty() || !roots.iter().all(plain) {
        return Err(bad());
    }
    Ok(roots
        .into_iter()
        .map(|p| p.components().collect())
        .collect())
}

/// A comma-separated setting, items trimmed, empty ones dropped.
fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests;
