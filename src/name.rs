//! Volume names: the only user input that ever becomes part of a path, so it
//! is checked once, here, and carried as a type afterwards.

use std::fmt;

use serde::{Deserialize, Serialize};

pub const MAX_NAME_LEN: usize = 255;

/// A checked volume name: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 255 bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VolumeName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("volume name is empty")]
    Empty,
    #[error("volume name is {0} bytes long; the limit is 255")]
    TooLong(usize),
    #[error(
        "volume name {0:?} is not allowed: use letters, digits, '_', '.' and '-', starting with a letter or digit"
    )]
    Invalid(String),
}

impl VolumeName {
    pub fn parse(name: &str) -> Result<Self, NameError> {
        let bytes = name.as_bytes();
        let Some(first) = bytes.first() else {
            return Err(NameError::Empty);
        };
        if bytes.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(bytes.len()));
        }
        let tail_ok = bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !first.is_ascii_alphanumeric() || !tail_ok {
            return Err(NameError::Invalid(name.to_owned()));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for VolumeName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<VolumeName> for String {
    fn from(name: VolumeName) -> Self {
        name.0
    }
}

impl fmt::Display for VolumeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_docker_style_names() {
        for ok in ["a", "data", "my-vol_1.2", "0", "A.b-c_d", &"x".repeat(255)] {
            assert!(VolumeName::parse(ok).is_ok(), "{ok:?} should be accepted");
        }
    }

    #[test]
    fn refuses_anything_that_could_escape_a_path() {
        let long = "x".repeat(256);
        let cases = [
            ("", NameError::Empty),
            ("../x", NameError::Invalid("../x".into())),
            ("a/b", NameError::Invalid("a/b".into())),
            (".hidden", NameError::Invalid(".hidden".into())),
            ("-flag", NameError::Invalid("-flag".into())),
            ("a b", NameError::Invalid("a b".into())),
            ("a\0b", NameError::Invalid("a\0b".into())),
            ("é", NameError::Invalid("é".into())),
            (long.as_str(), NameError::TooLong(256)),
        ];
        for (name, want) in cases {
            assert_eq!(VolumeName::parse(name), Err(want), "{name:?}");
        }
    }
}
