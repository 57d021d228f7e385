//! Mount options in mtab style: `key1=value1,key2,flag3`.
//!
//! Merge rule: start from the plugin's list in its order; for each volume
//! item, `key=-` removes `key`, an existing key is replaced in place, a new
//! key is appended. Within one list a repeated key keeps its first position
//! and its last value.

use std::fmt;

use super::{is_secret_key, OptionError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountOption {
    pub key: String,
    pub value: Option<String>,
}

impl MountOption {
    fn is_unset(&self) -> bool {
        self.value.as_deref() == Some("-")
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
    /// Parses `key=value,flag,...`. Empty items (doubled or trailing commas)
    /// are ignored, as mount(8) does. Values may hold `=` and whitespace.
    pub fn parse(input: &str) -> Result<Self, OptionError> {
        let mut list = Self::default();
        for (index, item) in input.split(',').enumerate() {
            if item.is_empty() {
                continue;
            }
            let bad = |reason| OptionError::Item {
                position: index + 1,
                item: item.to_owned(),
                reason,
            };
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (item, None),
            };
            if key.is_empty() {
                return Err(bad("the key before '=' is empty"));
            }
            if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(bad(
                    "a key may not contain whitespace or control characters",
                ));
            }
            if item.chars().any(char::is_control) {
                return Err(bad(
                    "control characters (newline, tab, NUL, ...) are not allowed",
                ));
            }
            list.set(MountOption {
                key: key.to_owned(),
                value: value.map(str::to_owned),
            });
        }
        Ok(list)
    }

    fn set(&mut self, option: MountOption) {
        match self.0.iter_mut().find(|o| o.key == option.key) {
            Some(existing) => *existing = option,
            None => self.0.push(option),
        }
    }

    /// Merges a volume's options over these plugin defaults; `self` is untouched.
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
            .map(|o| match &o.value {
                Some(_) if is_secret_key(&o.key) => format!("{}=***", o.key),
                _ => o.to_string(),
            })
            .collect::<Vec<_>>()
            .join(",")
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
mod tests {
    use super::*;

    fn p(s: &str) -> MountOptions {
        MountOptions::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn grammar() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            (",", ""),
            ("a,,b,", "a,b"),
            ("a=1,b", "a=1,b"),
            ("ssh_command=ssh -p 22", "ssh_command=ssh -p 22"),
            ("k=a=b=c", "k=a=b=c"),
            ("k=", "k="),
            ("k=é ü", "k=é ü"),
            ("a=1,b,a=2", "a=2,b"),
            ("a=1,a", "a"),
            ("a,a=1", "a=1"),
        ];
        for (input, want) in cases {
            assert_eq!(p(input).to_string(), *want, "{input:?}");
        }
    }

    #[test]
    fn errors_name_the_item_and_its_position() {
        let err = MountOptions::parse("a,=x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "item 2 \"=x\": the key before '=' is empty"
        );
        let err = MountOptions::parse("a,b c=1").unwrap_err();
        assert!(err.to_string().starts_with("item 2 \"b c=1\""), "{err}");
        assert!(MountOptions::parse("a=x\ny").is_err());
        assert!(MountOptions::parse("a=x\0").is_err());
    }

    #[test]
    fn merge_rules() {
        let plugin = p("allow_other,reconnect,ServerAliveInterval=15,cache=yes");
        let cases: &[(&str, &str)] = &[
            ("", "allow_other,reconnect,ServerAliveInterval=15,cache=yes"),
            (
                "ServerAliveInterval=5",
                "allow_other,reconnect,ServerAliveInterval=5,cache=yes",
            ),
            (
                "reconnect=-",
                "allow_other,ServerAliveInterval=15,cache=yes",
            ),
            (
                "absent=-",
                "allow_other,reconnect,ServerAliveInterval=15,cache=yes",
            ),
            (
                "port=2222",
                "allow_other,reconnect,ServerAliveInterval=15,cache=yes,port=2222",
            ),
            (
                "cache",
                "allow_other,reconnect,ServerAliveInterval=15,cache",
            ),
            (
                "reconnect=1",
                "allow_other,reconnect=1,ServerAliveInterval=15,cache=yes",
            ),
            (
                "reconnect=-,reconnect",
                "allow_other,reconnect,ServerAliveInterval=15,cache=yes",
            ),
        ];
        for (volume, want) in cases {
            assert_eq!(
                plugin.merge(&p(volume)).to_string(),
                *want,
                "volume {volume:?}"
            );
        }
        assert_eq!(
            plugin,
            p("allow_other,reconnect,ServerAliveInterval=15,cache=yes")
        );
    }

    #[test]
    fn redaction_hides_secret_values_only() {
        assert_eq!(
            p("port=22,password=x,pass=y").redacted(),
            "port=22,password=***,pass=***"
        );
    }
}
