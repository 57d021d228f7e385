//! The option policy: which volume options the plugin refuses. Out of the
//! box it refuses every option of ssh, sshfs and rclone that makes the tool
//! run a local command, load a library, read another configuration, use the
//! host's agent, credentials or connections, open a tunnel to the host, or
//! touch a host file, and every rclone source that serves the plugin's own
//! filesystem; files a volume names (identities, known hosts) must lie in
//! the key directory. The operator lifts rules with `--allow-options` and
//! adds keys with `--deny-options`. Pure logic, like the rest of `options`.

use std::path::{Component, Path, PathBuf};

use super::remote::{self, RcloneSource};
use super::{BackendKind, Placeholders, VolumeOptions, UNSET};
use crate::secret::{is_secret_key, REDACTED};

mod rules;

use rules::RCLONE_BACKENDS;
pub use rules::{Effect, Rule, RULES};

/// The setting that lifts a rule, as error messages name it.
pub const ALLOW_SETTING: &str = "ALLOW_OPTIONS (--allow-options)";
/// The setting that adds keys, as error messages name it.
pub const DENY_SETTING: &str = "DENY_OPTIONS (--deny-options)";

/// Keys compare as ssh and rclone compare them: case-insensitive, `-` the
/// same as `_`. A backslash is dropped, as FUSE's option parser unescapes
/// (`Proxy\Command` reaches ssh as `ProxyCommand`). A one-letter key is a
/// short option and keeps its case (`-F` is not `-f`).
fn normalize(key: &str) -> String {
    let key: String = key.chars().filter(|c| *c != '\\').collect();
    if key.chars().count() == 1 {
        return key;
    }
    key.chars()
        .map(|c| match c {
            '-' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Whether `key` (as a volume wrote it) is what `name` (a rule key or a
/// `--deny-options` entry) names: the same key, the key with an rclone
/// backend in front, or a member of a `name*` family.
fn names(name: &str, key: &str) -> bool {
    let name = normalize(name);
    let key = normalize(key);
    let bare = RCLONE_BACKENDS
        .iter()
        .find_map(|b| key.strip_prefix(b).and_then(|k| k.strip_prefix('_')));
    let is = |n: &str, k: &str| match n.strip_suffix('*') {
        Some(family) => k == family || k.strip_prefix(family).is_some_and(|r| r.starts_with('_')),
        None => n == k,
    };
    is(&name, &key) || bare.is_some_and(|b| is(&name, b))
}

/// Where in a volume's options a key was found, as an error says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    O,
    C { position: usize },
    Source,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::O => f.write_str("volume option \"o\""),
            Self::C { position } => write!(f, "volume option \"c\": item {position}"),
            Self::Source => f.write_str("volume option \"source\""),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "{place} sets {key:?}, which {why}; the plugin's option policy refuses it \
         (an operator can allow it with ALLOW_OPTIONS={rule}, or --allow-options={rule})"
    )]
    Denied {
        place: Place,
        key: String,
        why: &'static str,
        rule: &'static str,
    },
    #[error(
        "{place} sets {key:?} to {value}, outside the key directory {key_dir}: \
         put the file there, or an operator can allow any path with ALLOW_OPTIONS={rule} \
         (--allow-options={rule})"
    )]
    OutsideKeyDir {
        place: Place,
        key: String,
        value: String,
        key_dir: String,
        rule: &'static str,
    },
    #[error(
        "volume option \"source\" {what}, which {why}; the plugin's option policy refuses it \
         (an operator can allow it with ALLOW_OPTIONS={rule}, or --allow-options={rule})"
    )]
    DeniedSource {
        what: String,
        why: &'static str,
        rule: &'static str,
    },
    #[error("{place} sets {key:?}, which the plugin's {DENY_SETTING} refuses")]
    DeniedByOperator { place: Place, key: String },
}

/// What `--allow-options` may name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{ALLOW_SETTING}: {0:?} is not something the default option policy refuses; \
     name a key from docs/security.md (e.g. ProxyCommand, IdentityFile, :local), or * for all"
)]
pub struct UnknownAllow(pub String);

/// The plugin's option policy: the default rules minus what the operator
/// allowed, plus what the operator denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Every default rule lifted (`--allow-options='*'`).
    allow_all: bool,
    allowed: Vec<&'static str>,
    denied: Vec<String>,
    key_dir: PathBuf,
}

impl Policy {
    /// `allow` names default rules to lift (or `*`); `deny` adds keys;
    /// `key_dir` is where files a volume names must be.
    pub fn new(allow: &[String], deny: &[String], key_dir: PathBuf) -> Result<Self, UnknownAllow> {
        let mut policy = Self {
            allow_all: false,
            allowed: Vec::new(),
            denied: deny.to_vec(),
            key_dir,
        };
        for name in allow {
            if name == "*" {
                policy.allow_all = true;
                continue;
            }
            match RULES.iter().find(|r| normalize(r.key) == normalize(name)) {
                Some(rule) => policy.allowed.push(rule.key),
                None => return Err(UnknownAllow(name.clone())),
            }
        }
        Ok(policy)
    }

    pub fn key_dir(&self) -> &Path {
        &self.key_dir
    }

    /// The default rules lifted, as named in the docs (`*` for all).
    pub fn allowed(&self) -> Vec<&'static str> {
        match self.allow_all {
            true => vec!["*"],
            false => self.allowed.clone(),
        }
    }

    /// The operator's own keys.
    pub fn denied(&self) -> &[String] {
        &self.denied
    }

    /// The default rule that applies to `key`, unless the operator lifted it.
    fn rule(&self, key: &str) -> Option<&'static Rule> {
        if self.allow_all {
            return None;
        }
        RULES
            .iter()
            .find(|r| names(r.key, key))
            .filter(|r| !self.allowed.contains(&r.key))
    }

    /// Checks one key (and its value, if it has one) found at `place`.
    fn check_key(&self, place: &Place, key: &str, value: Option<&str>) -> Result<(), PolicyError> {
        if self.denied.iter().any(|d| names(d, key)) {
            return Err(PolicyError::DeniedByOperator {
                place: place.clone(),
                key: key.to_owned(),
            });
        }
        let Some(rule) = self.rule(key) else {
            return Ok(());
        };
        match rule.effect {
            Effect::Deny(why) => Err(PolicyError::Denied {
                place: place.clone(),
                key: key.to_owned(),
                why,
                rule: rule.key,
            }),
            Effect::InKeyDir => match value {
                Some(value)
                    if value != UNSET && value.split_whitespace().any(|f| !self.is_key_file(f)) =>
                {
                    Err(PolicyError::OutsideKeyDir {
                        place: place.clone(),
                        key: key.to_owned(),
                        value: if is_secret_key(key) {
                            REDACTED.to_owned()
                        } else {
                            value.to_owned()
                        },
                        key_dir: self.key_dir.display().to_string(),
                        rule: rule.key,
                    })
                }
                _ => Ok(()),
            },
        }
    }

    /// A file a volume may name: one in the key directory, written plainly
    /// (absolute, no `.` or `..`, none of the `~`, `%` and `$` that ssh
    /// and rclone expand), or `none` and `/dev/null`, which name no file.
    fn is_key_file(&self, file: &str) -> bool {
        if file == "none" || file == "/dev/null" {
            return true;
        }
        let path = Path::new(file);
        path.is_absolute()
            && !file.contains(['~', '%', '$'])
            && path
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
            && path.starts_with(&self.key_dir)
            && path != self.key_dir
    }

    /// Checks a volume's `o`, `c` and `source` for the tool of `kind`.
    /// `c` is checked as the tool will get it, with `{source}`, `{name}`
    /// and `{mountPoint}` replaced, so a placeholder cannot carry a key
    /// past the check.
    pub fn check(
        &self,
        options: &VolumeOptions,
        kind: BackendKind,
        placeholders: &Placeholders<'_>,
    ) -> Result<(), PolicyError> {
        for option in options.mount_options.iter() {
            self.check_key(&Place::O, &option.key, option.value.as_deref())?;
        }
        let source = options.source.as_deref().unwrap_or("");
        let placeholders = Placeholders {
            source,
            ..*placeholders
        };
        let items = options.process_options.substitute(&placeholders);
        for (index, item) in items.iter().enumerate() {
            let place = Place::C {
                position: index + 1,
            };
            for (key, value) in keys_in_argument(item) {
                // `--key value`: a flag without `=` takes the next item.
                let value = value.or_else(|| {
                    item.starts_with("--")
                        .then(|| items.get(index + 1).map(String::as_str))
                        .flatten()
                });
                self.check_key(&place, key, value)?;
            }
        }
        match &options.source {
            Some(source) => self.check_source(source, kind),
            None => Ok(()),
        }
    }

    fn check_source(&self, source: &str, kind: BackendKind) -> Result<(), PolicyError> {
        let parsed = remote::parse(source);
        if kind == BackendKind::Rclone {
            let backend = match &parsed {
                RcloneSource::LocalPath => Some(("is a local path".to_owned(), "local".to_owned())),
                RcloneSource::Remote(r) => r.backend().map(|b| {
                    let what = format!("uses the rclone backend {b:?}");
                    (what, b)
                }),
            };
            if let Some((what, backend)) = backend {
                let name = format!(":{}", backend.to_ascii_lowercase());
                if let Some(rule) = self.rule(&name) {
                    if let Effect::Deny(why) = rule.effect {
                        return Err(PolicyError::DeniedSource {
                            what,
                            why,
                            rule: rule.key,
                        });
                    }
                }
            }
        }
        if let RcloneSource::Remote(r) = parsed {
            for p in &r.params {
                let value = p.value();
                self.check_key(&Place::Source, p.key, value.as_deref())?;
            }
        }
        Ok(())
    }
}

/// The option keys one process argument may set, with a value when the
/// argument carries one: `-okey=v`, `-o` then `key=v,...`, `--key=v`,
/// `--key`, and a short option with its value attached (`-F/path` names `F`).
fn keys_in_argument(item: &str) -> Vec<(&str, Option<&str>)> {
    let short = item
        .strip_prefix('-')
        .filter(|rest| !rest.starts_with('-'))
        .and_then(|rest| rest.get(..1))
        .map(|k| (k, None));
    if let Some(long) = item.strip_prefix("--") {
        let (key, value) = match long.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (long, None),
        };
        return vec![(key.trim(), value)];
    }
    let body = item
        .strip_prefix("-o")
        .or_else(|| item.strip_prefix('-'))
        .unwrap_or(item);
    short
        .into_iter()
        .chain(body.split(',').map(|part| match part.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v)),
            None => (part.trim(), None),
        }))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

#[cfg(test)]
mod tests;
