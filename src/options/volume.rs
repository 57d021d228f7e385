//! A volume's own options, as given to `docker volume create -o KEY=VALUE`.
//! They are checked at Create and stored as given; the effective command is
//! recomputed from them and the plugin's current defaults at every start.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};

use super::{BackendKind, MountOptions, OptionError, ProcessOptions};
use crate::secret::Secret;

/// The keys a volume may set.
pub const VOLUME_KEYS: &[&str] = &["type", "source", "o", "c", "password"];

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "BTreeMap<String, String>")]
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
}

impl TryFrom<BTreeMap<String, String>> for VolumeOptions {
    type Error = OptionError;
    fn try_from(map: BTreeMap<String, String>) -> Result<Self, Self::Error> {
        Self::parse(&map)
    }
}

/// The same map as `BTreeMap::from`, keys in the same order, written from
/// borrowed fields: the state file encodes every volume at every change.
impl Serialize for VolumeOptions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let entries = [
            ("c", self.raw_c.as_deref()),
            ("o", self.raw_o.as_deref()),
            ("password", self.password.as_ref().map(Secret::expose)),
            ("source", self.source.as_deref()),
            ("type", self.kind.map(BackendKind::as_str)),
        ];
        serializer.collect_map(entries.into_iter().filter_map(|(k, v)| Some((k, v?))))
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
    fn accepts_known_keys_and_stores_them_as_given() {
        let given = opts(&[
            ("type", "sshfs"),
            ("source", "u@h:/x"),
            ("o", "port=2,a,,cache=-,a=1"),
            ("c", "-C&&{name}"),
            ("password", "pw"),
        ]);
        let parsed = VolumeOptions::parse(&given).unwrap();
        assert_eq!(parsed.kind, Some(BackendKind::Sshfs));
        assert_eq!(parsed.mount_options.to_string(), "port=2,a=1,cache=-");
        assert_eq!(parsed.process_options.items(), ["-C", "{name}"]);
        // what is stored is the volume's own text, not a merge or a re-rendering
        assert_eq!(BTreeMap::from(parsed.clone()), given);
        let json = serde_json::to_string(&parsed).unwrap();
        let back: VolumeOptions = serde_json::from_str(&json).unwrap();
        assert_eq!(back, parsed);
        assert_eq!(
            VolumeOptions::parse(&opts(&[])).unwrap(),
            VolumeOptions::default()
        );
    }

    /// (Opts, exact message)
    const REFUSED: &[(&[(&str, &str)], &str)] = &[
        (
            &[("sorce", "x")],
            "unknown volume option \"sorce\"; accepted options are: type, source, o, c, password \
             (mount options go inside o, e.g. -o o=port=2222,reconnect)",
        ),
        (
            &[("port", "2222")],
            "unknown volume option \"port\"; accepted options are: type, source, o, c, password \
             (mount options go inside o, e.g. -o o=port=2222,reconnect)",
        ),
        (
            &[("Type", "sshfs")],
            "unknown volume option \"Type\"; accepted options are: type, source, o, c, password \
             (mount options go inside o, e.g. -o o=port=2222,reconnect)",
        ),
        (
            &[("source", "")],
            "volume option \"source\" has an empty value; give it a value or leave it out",
        ),
        (
            &[("o", "")],
            "volume option \"o\" has an empty value; give it a value or leave it out",
        ),
        (
            &[("type", "smb")],
            "volume option \"type\": unknown type \"smb\"; use one of sshfs, rclone, nfs, command",
        ),
        (
            &[("source", "-oProxyCommand=x")],
            "volume option \"source\": a source may not start with '-'",
        ),
        (
            &[("source", "h:/a\nb")],
            "volume option \"source\": control characters are not allowed",
        ),
        (
            &[("o", "a,=b")],
            "volume option \"o\": item 2 \"=b\": the key before '=' is empty",
        ),
        (
            &[("o", "reconnect, cache=no")],
            "volume option \"o\": item 2 \" cache=no\": a key may not contain whitespace \
             (a space after ',' is part of the next key)",
        ),
        (
            &[("o", "port=1,password=secret\0")],
            "volume option \"o\": item 2 \"password=***\": control characters (newline, tab, NUL, ...) are not allowed",
        ),
        (
            &[("c", "-C&-o\nx")],
            "volume option \"c\": item 2 \"-o\\nx\": control characters (newline, tab, NUL, ...) are not allowed",
        ),
        (
            &[("password", "a\nb")],
            "volume option \"password\": a password may not contain a newline or NUL",
        ),
    ];

    #[test]
    fn refuses_with_messages_a_user_can_act_on() {
        for (given, want) in REFUSED {
            let err = VolumeOptions::parse(&opts(given)).unwrap_err();
            assert_eq!(err.to_string(), *want, "{given:?}");
        }
        // a stored volume is checked again when read back
        let bad: Result<VolumeOptions, _> = serde_json::from_str(r#"{"o":"=x"}"#);
        assert!(bad.is_err());
    }
}
