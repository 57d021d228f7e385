//! Backends turn a volume's merged options into the exact argv of its tool.
//! One file per backend; nothing here spawns a process.

mod command;
#[cfg(test)]
mod doc_examples;
mod endpoint;
mod nfs;
pub mod rclone;
mod sshfs;

use std::path::{Path, PathBuf};

pub use crate::options::BackendKind;
use crate::options::{MountOptions, Placeholders, ProcessOptions};
use crate::secret::{is_secret_key, redact_args, secret_keys, secret_values, Secret, REDACTED};

pub use endpoint::{endpoint, Endpoint, Server};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("volume option \"source\" is required for type {0}")]
    MissingSource(BackendKind),
    #[error(
        "type command needs the plugin setting --volume-process-binary (VOLUME_PROCESS_BINARY)"
    )]
    NoCommandBinary,
    #[error("volume option \"password\" is not supported by type {0}")]
    PasswordUnsupported(BackendKind),
    #[error(
        "{place} set {key:?}, which looks like a secret, but {kind} takes a secret only on its \
         stdin (an option would show in the process list): give it as the volume option password"
    )]
    SecretInArgv {
        kind: BackendKind,
        place: &'static str,
        key: String,
    },
    #[error(
        "{key:?} looks like a secret, but is written where rclone would not read it as an \
         option, so it would show in the process list: in a connection string, quote a value \
         that holds ':' or ',' (url=\"http://host:8080\")"
    )]
    SecretLeftInArgv { key: String },
}

/// Plugin settings a backend may need.
#[derive(Debug, Clone, Default)]
pub struct BackendSettings {
    pub command_binary: Option<PathBuf>,
    pub command_mount_option_flag: Option<String>,
    /// Where rclone volumes get their remote control socket; `None` when
    /// the rclone netfs runs cannot serve one (older than
    /// [`rclone::RC_SOCKET_SINCE`]).
    pub rclone_rc_dir: Option<PathBuf>,
}

/// Everything a backend needs to build one volume's command.
pub struct CommandInputs<'a> {
    pub name: &'a str,
    pub source: Option<&'a str>,
    pub mount_point: &'a Path,
    /// Plugin and volume process options, concatenated, placeholders not yet replaced.
    pub process_options: ProcessOptions,
    /// Plugin and volume mount options, merged.
    pub mount_options: MountOptions,
    pub password: Option<&'a Secret>,
    pub settings: &'a BackendSettings,
}

impl CommandInputs<'_> {
    fn source(&self, kind: BackendKind) -> Result<&str, BackendError> {
        self.source.ok_or(BackendError::MissingSource(kind))
    }

    fn mount_point(&self) -> String {
        self.mount_point.to_string_lossy().into_owned()
    }

    /// Refuses secret-looking options for a tool that takes secrets only on
    /// its stdin: in its argv they would be readable in `/proc/*/cmdline`.
    fn refuse_secrets(&self, kind: BackendKind) -> Result<(), BackendError> {
        let refuse = |place, key: &str| BackendError::SecretInArgv {
            kind,
            place,
            key: key.to_owned(),
        };
        if let Some(o) = self
            .mount_options
            .iter()
            .find(|o| o.value.is_some() && is_secret_key(&o.key))
        {
            return Err(refuse("the mount options", &o.key));
        }
        match secret_keys(&self.process_args()).first() {
            Some(key) => Err(refuse("the process options", key)),
            None => Ok(()),
        }
    }

    /// The process options with their placeholders replaced.
    pub fn process_args(&self) -> Vec<String> {
        let mount_point = self.mount_point();
        self.process_options.substitute(&Placeholders {
            mount_point: &mount_point,
            source: self.source.unwrap_or(""),
            name: self.name,
        })
    }
}

/// A command ready to spawn: program, argv, and what goes to its stdin.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub program: String,
    pub args: Vec<String>,
    /// Variables added to the tool's environment (rclone reads every
    /// option from one): how secrets reach it without showing in argv.
    pub env: Vec<(String, Secret)>,
    /// Written to stdin, then stdin is closed (sshfs `password_stdin`).
    pub stdin: Option<Secret>,
    /// Known messages of the tool (a piece of its stderr) and what they
    /// mean for the user, added to an error that shows such a message.
    pub hints: &'static [(&'static str, &'static str)],
    /// How its login to the server shows, for tools that log in.
    pub login: Option<Login>,
    /// rclone's remote control socket, asked before a stop for uploads
    /// still queued (`supervisor::uploads`).
    pub rc_socket: Option<PathBuf>,
}

/// How a tool's login to its server can be seen to be done: arguments that
/// make it say so on stderr, and what it says. A start-up's turn at the
/// server (`crate::pacing`) covers the login only: what a server limits
/// (OpenSSH's `MaxStartups`) are connections not yet logged in, and what
/// comes after (a PAM session, the user's shell, an `sftp-server`) is the
/// server's to run for a user it has let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Login {
    /// Added at the end of the argv of a volume that logs in itself (not
    /// of a client of a shared connection).
    pub args: &'static [&'static str],
    /// A piece of the stderr line that says the login is done.
    pub done: &'static str,
}

impl Invocation {
    /// The command quoted for a shell, with secret values shown as `***`;
    /// variables it gets in its environment come first (`VAR=*** tool ...`),
    /// as a shell would take them.
    pub fn display(&self) -> String {
        let env: String = self
            .env
            .iter()
            .map(|(k, _)| format!("{}={REDACTED} ", shell_words::quote(k)))
            .collect();
        let words = std::iter::once(self.program.clone()).chain(redact_args(&self.args));
        env + &shell_words::join(words)
    }

    /// Every secret this command carries: what goes to stdin and to its
    /// environment, and the values of secret keys left in its argv. A tool
    /// may quote them back in its own messages ("unknown option
    /// password=..."), which are scrubbed of them.
    pub fn secrets(&self) -> Vec<Secret> {
        let in_args = secret_values(&self.args);
        self.stdin
            .iter()
            .chain(self.env.iter().map(|(_, v)| v))
            .map(|s| s.expose())
            .chain(in_args)
            .filter(|s| !s.is_empty())
            .map(Secret::new)
            .collect()
    }

    /// `" (explanation)"` for the first known message found in `stderr`,
    /// or empty.
    pub fn hint(&self, stderr: &str) -> String {
        self.hints
            .iter()
            .chain(COMMON_HINTS)
            .find(|(needle, _)| stderr.contains(needle))
            .map(|(_, why)| format!(" ({why})"))
            .unwrap_or_default()
    }
}

/// Messages any backend's tool may print (the FUSE ones, mostly).
const COMMON_HINTS: &[(&str, &str)] = &[
    (
        "fuse: device not found",
        "/dev/fuse is missing: give the plugin the fuse device",
    ),
    (
        "allow_other only allowed if",
        "allow_other needs user_allow_other in /etc/fuse.conf for a non-root user",
    ),
];

pub fn build(kind: BackendKind, req: &CommandInputs<'_>) -> Result<Invocation, BackendError> {
    match kind {
        BackendKind::Sshfs => sshfs::build(req),
        BackendKind::Rclone => rclone::build(req),
        BackendKind::Nfs => nfs::build(req),
        BackendKind::Command => command::build(req),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invocation_knows_every_secret_it_carries() {
        let inv = Invocation {
            program: "rclone".into(),
            args: vec![
                "mount".into(),
                ":sftp,host=h,pass=obscured1:/srv".into(),
                "--sftp-pass=obscured2".into(),
                "-o".into(),
                "port=22,token=t0k,x".into(),
            ],
            env: vec![("RCLONE_SFTP_PASS".into(), Secret::new("e"))],
            stdin: Some(Secret::new("pw")),
            hints: &[],
            login: None,
            rc_socket: None,
        };
        let secrets: Vec<String> = inv
            .secrets()
            .iter()
            .map(|s| s.expose().to_owned())
            .collect();
        assert_eq!(
            secrets,
            ["pw", "e", "obscured1:/srv", "obscured1", "obscured2", "t0k"]
        );
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub fn request<'a>(
        settings: &'a BackendSettings,
        source: Option<&'a str>,
        c: &str,
        o: &str,
        password: Option<&'a Secret>,
    ) -> CommandInputs<'a> {
        CommandInputs {
            name: "vol",
            source,
            mount_point: Path::new("/mnt/volumes/vol"),
            process_options: ProcessOptions::parse(c).unwrap(),
            mount_options: MountOptions::parse(o).unwrap(),
            password,
            settings,
        }
    }
}
