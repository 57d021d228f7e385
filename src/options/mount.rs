//! Mount options in mtab style: `key1=value1,key2,flag3`.
//!
//! Merge rule: start from the plugin's list in its order; for each volume
//! item, `key=-` removes `key`, an existing key is replaced in place, a new
//! key is appended. Within one list a repeated key keeps its first position
//! and its last value.

use std::fmt;

use super::OptionError;
use crate::secret::is_secret_key;

/// The value that, in a volume's `o`, removes a plugin default.
pub const UNSET: &str = "-";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountOption {
    pub key: String,
    pub value: Option<String>,
}

impl MountOption {
    fn is_unset(&self) -> bool {
        self.value.as_deref() == Some(UNSET)
    }
}

impl fmt::Display for MountOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={}", self.key, v),
            None => f.write_str(&self.key),
        }
    }
}

/// An ordered list of mount options with unique keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountOptions(Vec<MountOption>);

impl MountOptions {
    /// Parses a volume's `key=value,flag,...`, where `key=-` asks to remove
    /// a plugin default. Empty items (doubled or trailing commas) are
    /// ignored, as mount(8) does. Values may hold `=`, whitespace and any
    /// printable character but `,`; keys may not be empty or hold whitespace.
    pub fn parse(input: &str) -> Result<Self, OptionError> {
        Self::parse_items(input, true)
    }

    /// Parses the plugin's defaults (`-o`, `MOUNT_OPTIONS`): the same grammar,
    /// but `key=-` is refused, since there is nothing below it to remove.
    pub fn parse_defaults(input: &str) -> Result<Self, OptionError> {
        Self::parse_items(input, false)
    }

    fn parse_items(input: &str, allow_unset: bool) -> Result<Self, OptionError> {
        let mut list = Self::default();
        for (index, item) in input.split(',').enumerate() {
            if item.is_empty() {
                continue;
            }
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (item, None),
            };
            let bad = |reason| OptionError::Item {
                position: index + 1,
                item: quoted_item(key, value),
                reason,
            };
            if key.is_empty() {
                return Err(bad("the key before '=' is empty"));
            }
            if item.chars().any(char::is_control) {
                return Err(bad(
                    "control characters (newline, tab, NUL, ...) are not allowed",
                ));
            }
            if key.chars().any(char::is_whitespace) {
                return Err(bad(
                    "a key may not contain whitespace (a space after ',' is part of the next key)",
                ));
            }
            let option = MountOption {
                key: key.to_owned(),
                value: value.map(str::to_owned),
            };
            if option.is_unset() && !allow_unset {
                return Err(bad(
                    "'-' only means something in a volume's o, where it removes a plugin default; \
                     to have no default, leave the key out",
                ));
            }
            list.set(option);
        }
        Ok(list)
    }

    fn set(&mut self, option: MountOption) {
        match self.0.iter_mut().find(|o| o.key == option.key) {
            Some(existing) => *existing = option,
            None => self.0.push(option),
        }
    }

    /// Merges a volume's options over these plugin defaults; `self` is
    /// untouched, so the next volume sees the same defaults.
    pub fn merge(&self, volume: &MountOptions) -> MountOptions {
        let mut merged = self.clone();
        for item in &volume.0 {
            if item.is_unset() {
                merged.0.retain(|o| o.key != item.key);
            } else {
                merged.set(item.clone());
            }
        }
        merged
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &MountOption> {
        self.0.iter()
    }

    pub fn get(&self, key: &str) -> Option<&MountOption> {
        self.0.iter().find(|o| o.key == key)
    }

    /// Keys set to `-`: meaningful only in a volume's list.
    pub fn unset_keys(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(|o| o.is_unset())
            .map(|o| o.key.as_str())
    }

    pub fn push_flag(&mut self, key: &str) {
        self.set(MountOption {
            key: key.to_owned(),
            value: None,
        });
    }

    /// The list as the tool wants it, secrets included.
    pub fn to_arg(&self) -> String {
        self.to_string()
    }

    /// The list with the values of secret keys replaced by `***`.
    pub fn redacted(&self) -> String {
        self.0
            .iter()
            .map(|o| quoted_item(&o.key, o.value.as_deref()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One item as an error message or log may show it: a secret's value is `***`.
fn quoted_item(key: &str, value: Option<&str>) -> String {
    match value {
        Some(_) if is_secret_key(key) => format!("{key}=***"),
        Some(v) => format!("{key}={v}"),
        None => key.to_owned(),
    }
}

impl fmt::Display for MountOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, o) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{o}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
