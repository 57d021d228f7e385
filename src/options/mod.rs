//! The option engine: mount options (`key=value,flag`), process options
//! (`-a&--b=c`) and a volume's own options, parsed and merged with the
//! plugin's defaults. Pure logic: nothing here touches processes or files.

mod mount;
mod process;
mod volume;

#[cfg(test)]
mod doc_examples;
#[cfg(test)]
mod proptests;

pub use mount::{MountOption, MountOptions, UNSET};
pub use process::{Placeholders, ProcessOptions};
pub use volume::{VolumeOptions, VOLUME_KEYS};

/// Keys whose values are secrets wherever they appear (mount options,
/// rclone connection strings): shown as `***` in commands, logs and Status.
pub const SECRET_KEYS: &[&str] = &[
    "password",
    "pass",
    "sftp_pass",
    "sftp-pass",
    "key_file_pass",
    "token",
    "secret",
];

pub fn is_secret_key(key: &str) -> bool {
    SECRET_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
}

/// What is wrong with an option string. Messages quote the offending item
/// (a secret's value as `***`) and its 1-based position, counting empty items.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("item {position} {item:?}: {reason}")]
    Item {
        position: usize,
        item: String,
        reason: &'static str,
    },
    #[error(
        "unknown volume option {key:?}; accepted options are: {accepted} \
         (mount options go inside o, e.g. -o o=port=2222,reconnect)"
    )]
    UnknownKey { key: String, accepted: String },
    #[error("volume option {key:?} has an empty value; give it a value or leave it out")]
    EmptyValue { key: String },
    #[error("volume option {key:?}: {reason}")]
    BadValue { key: String, reason: String },
    #[error("mount option {key:?} is denied by the plugin's --deny-options")]
    Denied { key: String },
    #[error(
        "volume option \"c\": item {position} sets {key:?}, which the plugin's --deny-options denies"
    )]
    DeniedInProcess { position: usize, key: String },
    #[error("volume option \"source\" sets {key:?}, which the plugin's --deny-options denies")]
    DeniedInSource { key: String },
}
