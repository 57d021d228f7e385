//! How a volume's record becomes something that can run: its options
//! checked against the plugin's policy, its tool's command line, its
//! supervisor (idle until started) and its shared ssh connection.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::table::Supervised;
use super::{rc_dir, Driver, DriverError};
use crate::backend::{self, BackendSettings, CommandInputs};
use crate::connections;
use crate::name::VolumeName;
use crate::options::{BackendKind, OptionError, Placeholders, VolumeOptions};
use crate::state::{Setup, VolumeRecord};
use crate::supervisor::{ProcessSpec, Shared, Supervision, SupervisorHandle};

impl Driver {
    pub(super) fn mount_point(&self, name: &VolumeName) -> PathBuf {
        self.config.mount_root.join(name.as_str())
    }

    /// Where rclone volumes put their remote control socket (made at
    /// start, for root alone); `None` while the rclone netfs runs is not
    /// known to serve one (its version is asked before the first rclone
    /// volume is built), or without the directory.
    fn rclone_rc_dir(&self) -> Option<PathBuf> {
        let version = self.versions.rclone_known()?;
        let dir = rc_dir(&self.config.state_file);
        (backend::rclone::serves_rc_socket(version) && dir.is_dir()).then_some(dir)
    }

    fn supervision(&self) -> Supervision {
        Supervision {
            mount_timeout: self.config.mount_timeout,
            stop_timeout: self.config.stop_timeout,
            recovery: self.config.recovery,
            max_restarts_per_min: self.config.recovery_max_per_min,
            health_interval: self.config.health_interval,
            pacing: self.pacing.clone(),
            reattach: self.reattacher.clone(),
        }
    }

    /// Checks a volume's options against the plugin's option policy, as
    /// the tool of its type will get them.
    pub(super) fn check_policy(
        &self,
        name: &VolumeName,
        mount_point: &Path,
        options: &VolumeOptions,
        kind: BackendKind,
    ) -> Result<(), OptionError> {
        let places = Placeholders {
            mount_point: &mount_point.to_string_lossy(),
            source: "",
            name: name.as_str(),
        };
        Ok(self.config.policy.check(options, kind, &places)?)
    }

    /// The process of a stored or new volume, mounting at `mount_point`,
    /// its supervisor idle.
    pub(super) fn process(
        &self,
        name: &VolumeName,
        mount_point: &Path,
        record: &VolumeRecord,
    ) -> Result<Supervised, DriverError> {
        let (kind, opts) = match &record.setup {
            Setup::Valid { backend, options } => (*backend, options),
            Setup::Unaccepted { reason, .. } => {
                return Err(DriverError::Refused {
                    name: name.to_string(),
                    reason: reason.clone(),
                })
            }
        };
        let settings = BackendSettings {
            command_binary: self.config.command_binary.clone(),
            command_mount_option_flag: self.config.command_mount_option_flag.clone(),
            rclone_rc_dir: self.rclone_rc_dir(),
        };
        let request = CommandInputs {
            name: name.as_str(),
            source: opts.source.as_deref(),
            mount_point,
            process_options: self.config.process_options.concat(&opts.process_options),
            mount_options: self.config.mount_options.merge(&opts.mount_options),
            password: opts.password.as_ref(),
            settings: &settings,
        };
        let mut invocation =
            backend::build(kind, &request).map_err(|source| DriverError::Backend {
                name: name.to_string(),
                source,
            })?;
        let endpoint = backend::endpoint(kind, &request);
        let shared = self.shared(name, kind, &request, endpoint.as_ref());
        // A tool that logs in itself is made to say when its login is done:
        // its turn at the server ends there (see crate::pacing). A client
        // of a shared master does not log in.
        match (&shared, &endpoint, invocation.login) {
            (None, Some(_), Some(login)) => invocation
                .args
                .extend(login.args.iter().map(|a| a.to_string())),
            _ => invocation.login = None,
        }
        let command = invocation.display();
        let spec = ProcessSpec {
            name: name.clone(),
            mount_point: mount_point.to_owned(),
            invocation,
            endpoint,
            shared,
            devices: record.devices.clone(),
        };
        Ok(Supervised {
            handle: SupervisorHandle::new(spec, self.supervision(), self.launcher.clone()),
            command,
            mounted_at: HashMap::new(),
        })
    }

    /// The shared connection a volume runs through, if sharing is on and
    /// it can share.
    fn shared(
        &self,
        name: &VolumeName,
        kind: BackendKind,
        request: &CommandInputs<'_>,
        endpoint: Option<&backend::Endpoint>,
    ) -> Option<Shared> {
        let pool = self.connections.as_ref()?;
        if kind != BackendKind::Sshfs {
            return None;
        }
        let args = request.process_args();
        let has_password = request.password.is_some();
        match connections::key(endpoint?, &args, &request.mount_options, has_password) {
            Ok(key) => Some(Shared {
                pool: pool.clone(),
                key,
            }),
            Err(why) => {
                tracing::info!(volume = %name, reason = %why, "volume keeps an ssh connection of its own");
                None
            }
        }
    }
}
