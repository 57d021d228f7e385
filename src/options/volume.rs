//! A volume's own options, as given to `docker volume create -o KEY=VALUE`.
//! They are checked at Create and stored as given; the effective command is
//! recomputed from them and the plugin's current defaults at every start.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{MountOptions, OptionError, ProcessOptions};
use crate::backend::BackendKind;
use crate::secret::Secret;

/// The keys a volume may set.
pub const VOLUME_KEYS: &[&str] = &["type", "source", "o", "c", "password"];

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct VolumeOptions {
    pub kind: Option<BackendKind>,
    pub source: Option<String>,
    pub mount_options: MountOptions,
    pub process_options: ProcessOptions,
    raw_o: Option<String>,
    raw_c: Option<String>,
    pub password: Option<Secret>,
}

impl VolumeOptions {
    /// Checks Docker's `Opts`: known keys only, no empty values, parsable lists.
    pub fn parse(opts: &BTreeMap<String, String>) -> Result<Self, OptionError> {
        let mut out = Self::default();
        for (key, value) in opts {
            if !VOLUME_KEYS.contains(&key.as_str()) {
                return Err(OptionError::UnknownKey {
                    key: key.clone(),
                    accepted: VOLUME_KEYS.join(", "),
                });
            }
            if value.is_empty() {
                return Err(OptionError::EmptyValue { key: key.clone() });
            }
            let bad = |reason: String| OptionError::BadValue {
                key: key.clone(),
                reason,
            };
            match key.as_str() {
                "type" => {
                    out.kind = Some(value.parse().map_err(bad)?);
                }
                "source" => {
                    if value.starts_with('-') {
                        return Err(bad("a source may not start with '-'".into()));
                    }
                    if value.chars().any(char::is_control) {
                        return Err(bad("control characters are not allowed".into()));
                    }
                    out.source = Some(value.clone());
                }
                "o" => {
                    out.mount_options =
                        MountOptions::parse(value).map_err(|e| bad(e.to_string()))?;
                    out.raw_o = Some(value.clone());
                }
                "c" => {
                    out.process_options =
                        ProcessOptions::parse(value).map_err(|e| bad(e.to_string()))?;
                    out.raw_c = Some(value.clone());
                }
                "password" => {
                    if value.contains(['\n', '\0']) {
                        return Err(bad("a password may not contain a newline or NUL".into()));
                    }
                    out.password = Some(Secret::new(value.clone()));
                }
                _ => unreachable!("key checked against VOLUME_KEYS"),
            }
        }
        Ok(out)
    }

    /// Refuses mount-option keys the operator denied.
    pub fn check_denied(&self, denied: &[String]) -> Result<(), OptionError> {
        for option in self.mount_options.iter() {
            if denied.iter().any(|d| d.eq_ignore_ascii_case(&option.key)) {
                return Err(OptionError::Denied {
                    key: option.key.clone(),
                });
            }
        }
        Ok(())
    }
}

impl TryFrom<BTreeMap<String, String>> for VolumeOptions {
    type Error = OptionError;
    fn try_from(map: BTreeMap<String, String>) -> Result<Self, Self::Error> {
        Self::parse(&map)
    }
}

impl From<VolumeOptions> for BTreeMap<String, String> {
    fn from(v: VolumeOptions) -> Self {
        let mut map = BTreeMap::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                map.insert(k.to_owned(), v);
            }
        };
        put("type", v.kind.map(|k| k.as_str().to_owned()));
        put("source", v.source);
        put("o", v.raw_o);
        put("c", v.raw_c);
        put("password", v.password.map(|p| p.expose().to_owned()));
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn accepts_known_keys_and_round_trips() {
        let given = opts(&[
            ("type", "sshfs"),
            ("source", "u@h:/x"),
            ("o", "port=2,a"),
            ("c", "-C"),
            ("password", "pw"),
        ]);
        let parsed = VolumeOptions::parse(&given).unwrap();
        assert_eq!(parsed.kind, Some(BackendKind::Sshfs));
        assert_eq!(parsed.mount_options.to_string(), "port=2,a");
        assert_eq!(BTreeMap::from(parsed), given);
    }

    #[test]
    fn refuses_with_messages_a_user_can_act_on() {
        let err = VolumeOptions::parse(&opts(&[("sorce", "x")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown volume option \"sorce\"; accepted options are: type, source, o, c, password"
        );
        let err = VolumeOptions::parse(&opts(&[("source", "")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "volume option \"source\" has an empty value"
        );
        let err = VolumeOptions::parse(&opts(&[("type", "smb")])).unwrap_err();
        assert!(
            err.to_string().contains("sshfs, rclone, nfs, command"),
            "{err}"
        );
        let err = VolumeOptions::parse(&opts(&[("source", "-oProxyCommand=x")])).unwrap_err();
        assert!(err.to_string().contains("may not start with '-'"), "{err}");
        let err = VolumeOptions::parse(&opts(&[("o", "a,=b")])).unwrap_err();
        assert!(
            err.to_string().starts_with("volume option \"o\": item 2"),
            "{err}"
        );
    }

    #[test]
    fn denied_keys() {
        let v = VolumeOptions::parse(&opts(&[("o", "port=1,ssh_command=evil")])).unwrap();
        let err = v.check_denied(&["ssh_command".into()]).unwrap_err();
        assert!(err.to_string().contains("ssh_command"), "{err}");
        assert!(v.check_denied(&["ProxyCommand".into()]).is_ok());
    }
}
