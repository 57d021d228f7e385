//! Secrets: a string type that never prints itself, and the one place that
//! decides which option keys hold secrets and hides their values in
//! anything shown to users (commands, logs, errors, Status). The option
//! engine and the backends both use it; it depends on neither.

use std::fmt;

use serde::{Deserialize, Serialize};

mod params;
mod redact;

pub use params::{split_params, Param};
pub use redact::{redact_arg, redact_args, secret_keys, secret_values};

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that hands it to a tool.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What `***` replaces.
pub const REDACTED: &str = "***";

/// A key is a secret when its last word says so (`pass`, `sftp-pass`,
/// `key_file_pass`, `secret_access_key`, `bearer_token`, `client_secret`,
/// `api_key`, `key_pem`, `service_account_credentials`, `http_headers`),
/// or it names a passphrase or a secret anywhere, or it is one of a few
/// rclone spellings that say it otherwise (`sas_url`). Words are split at
/// `-`, `_`, `.` and lower-to-upper case changes, so `--s3-secret-access-key`,
/// `S3_SECRET_ACCESS_KEY` and `secretAccessKey` are the same key; ssh's
/// `PasswordAuthentication` or rclone's `password-command` are not secrets
/// (their last word is not one of those).
pub fn is_secret_key(key: &str) -> bool {
    const LAST: &[&str] = &[
        "pass",
        "password",
        "password2",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "key",
        "pem",
        "credentials",
        "grant",
        "header",
        "headers",
    ];
    const ANYWHERE: &[&str] = &["secret", "passphrase"];
    const WHOLE: &[&str] = &["sas_url", "connection_string", "sse_customer_key_base64"];
    let words = words(key);
    let Some(last) = words.last() else {
        return false;
    };
    let joined = words.join("_");
    LAST.contains(&last.as_str())
        || words.iter().any(|w| ANYWHERE.contains(&w.as_str()))
        || WHOLE
            .iter()
            .any(|w| joined == *w || joined.ends_with(&format!("_{w}")))
}

/// The lower-case words of a key, leading dashes and backslashes dropped.
fn words(key: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for c in key.trim_start_matches('-').chars().filter(|c| *c != '\\') {
        let boundary = matches!(c, '-' | '_' | '.') || (c.is_ascii_uppercase() && prev_lower);
        if boundary && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        if !matches!(c, '-' | '_' | '.') {
            word.push(c.to_ascii_lowercase());
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests;
