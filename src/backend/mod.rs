//! Backends turn a volume's merged options into the exact argv of its tool.
//! One file per backend; nothing here spawns a process.

mod command;
mod endpoint;
mod nfs;
mod rclone;
mod sshfs;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::options::{is_secret_key, MountOptions, Placeholders, ProcessOptions};
use crate::secret::Secret;

pub use endpoint::{endpoint, Endpoint, Server};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Sshfs,
    Rclone,
    Nfs,
    Command,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sshfs => "sshfs",
            Self::Rclone => "rclone",
            Self::Nfs => "nfs",
            Self::Command => "command",
        }
    }
}

impl FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        <Self as ValueEnum>::from_str(s, false)
            .map_err(|_| format!("unknown type {s:?}; use one of sshfs, rclone, nfs, command"))
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
}

/// Plugin settings a backend may need.
#[derive(Debug, Clone, Default)]
pub struct BackendSettings {
    pub command_binary: Option<PathBuf>,
    pub command_mount_option_flag: Option<String>,
}

/// Everything a backend needs to build one volume's command.
pub struct Request<'a> {
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

impl Request<'_> {
    fn source(&self, kind: BackendKind) -> Result<&str, BackendError> {
        self.source.ok_or(BackendError::MissingSource(kind))
    }

    fn mount_point(&self) -> String {
        self.mount_point.to_string_lossy().into_owned()
    }

    fn process_args(&self) -> Vec<String> {
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
    /// Written to stdin, then stdin is closed (sshfs `password_stdin`).
    pub stdin: Option<Secret>,
    /// The tool exits once mounted (mount.nfs): running means mounted.
    pub one_shot: bool,
    /// Known messages of the tool (a piece of its stderr) and what they
    /// mean for the user, added to an error that shows such a message.
    pub hints: &'static [(&'static str, &'static str)],
}

impl Invocation {
    /// The command quoted for a shell, with secret values shown as `***`.
    pub fn display(&self) -> String {
        let words =
            std::iter::once(self.program.clone()).chain(self.args.iter().map(|a| redact_arg(a)));
        shell_words::join(words)
    }

    /// Every secret this command carries: what goes to stdin and the values
    /// of secret keys in its argv. A tool may quote them back in its own
    /// messages ("unknown option password=..."), which are scrubbed of them.
    pub fn secrets(&self) -> Vec<Secret> {
        let in_args = self.args.iter().flat_map(|a| secret_values(a));
        self.stdin
            .iter()
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

pub fn build(kind: BackendKind, req: &Request<'_>) -> Result<Invocation, BackendError> {
    match kind {
        BackendKind::Sshfs => sshfs::build(req),
        BackendKind::Rclone => rclone::build(req),
        BackendKind::Nfs => nfs::build(req),
        BackendKind::Command => command::build(req),
    }
}

/// Hides the value of every secret key inside one argument, whether it is a
/// mount-option list (`a=1,password=x`), a flag (`--sftp-pass=x`) or an
/// rclone connection string (`:sftp,pass=x:path`).
pub fn redact_arg(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len());
    for (body, sep) in pieces(arg) {
        match secret_in(body) {
            Some((key, _)) => {
                out.push_str(key);
                out.push_str("=***");
            }
            None => out.push_str(body),
        }
        out.push_str(sep);
    }
    out
}

/// The values [`redact_arg`] hides in `arg`.
pub fn secret_values(arg: &str) -> impl Iterator<Item = &str> {
    pieces(arg).filter_map(|(body, _)| secret_in(body).map(|(_, value)| value))
}

/// `arg` cut after each `,` or `:`: (piece, the separator that ended it).
fn pieces(arg: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = arg;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let cut = rest.find([',', ':']).map_or(rest.len(), |i| i + 1);
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(match piece.char_indices().last() {
            Some((i, c)) if c == ',' || c == ':' => piece.split_at(i),
            _ => (piece, ""),
        })
    })
}

/// `key=value` with a secret key: (key as written, value).
fn secret_in(body: &str) -> Option<(&str, &str)> {
    body.split_once('=')
        .filter(|(key, _)| is_secret_key(key.trim_start_matches('-')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secrets_in_any_argument_shape() {
        let cases = [
            ("port=22,password=hunter2,x", "port=22,password=***,x"),
            ("--sftp-pass=hunter2", "--sftp-pass=***"),
            (
                ":sftp,host=h,pass=hunter2:/srv",
                ":sftp,host=h,pass=***:/srv",
            ),
            ("user@host:/srv", "user@host:/srv"),
        ];
        for (arg, want) in cases {
            assert_eq!(redact_arg(arg), want);
        }
    }

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
            stdin: Some(Secret::new("pw")),
            one_shot: false,
            hints: &[],
        };
        let secrets: Vec<String> = inv
            .secrets()
            .iter()
            .map(|s| s.expose().to_owned())
            .collect();
        assert_eq!(secrets, ["pw", "obscured1", "obscured2", "t0k"]);
    }

    #[test]
    fn kind_parse_lists_choices() {
        assert_eq!("rclone".parse::<BackendKind>(), Ok(BackendKind::Rclone));
        assert!("cifs"
            .parse::<BackendKind>()
            .unwrap_err()
            .contains("sshfs, rclone, nfs, command"));
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
    ) -> Request<'a> {
        Request {
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
