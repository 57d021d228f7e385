//! The `type` of a volume: which backend's tool mounts it. Parsed from a
//! volume's options and the plugin's `--default-type`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Sshfs,
    Rclone,
    Nfs,
    Command,
}

impl BackendKind {
    pub const ALL: [BackendKind; 4] = [Self::Sshfs, Self::Rclone, Self::Nfs, Self::Command];

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
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown type {s:?}; use one of sshfs, rclone, nfs, command"))
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_lists_choices() {
        for kind in BackendKind::ALL {
            assert_eq!(kind.as_str().parse::<BackendKind>(), Ok(kind));
        }
        assert!("cifs"
            .parse::<BackendKind>()
            .unwrap_err()
            .contains("sshfs, rclone, nfs, command"));
        assert!("SSHFS".parse::<BackendKind>().is_err());
    }
}
