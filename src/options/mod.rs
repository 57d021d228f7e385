//! The option engine: mount options (`key=value,flag`), process options
//! (`-a&--b=c`) and a volume's own options, parsed and merged with the
//! plugin's defaults. Pure logic: nothing here touches processes or files.

mod kind;
mod mount;
pub mod policy;
mod process;
pub mod remote;
mod volume;

#[cfg(test)]
mod proptests;

pub use kind::BackendKind;
pub use mount::{MountOption, MountOptions, UNSET};
pub use policy::{Policy, PolicyError};
pub use process::{Placeholders, ProcessOptions};
pub use volume::{VolumeOptions, VOLUME_KEYS};

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
    #[error(transparent)]
    Policy(Box<PolicyError>),
}

impl From<PolicyError> for OptionError {
    fn from(e: PolicyError) -> Self {
        Self::Policy(Box::new(e))
    }
}
