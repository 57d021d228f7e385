//! Secrets: a string type that never prints itself, and the one place that
//! decides which option keys hold secrets and hides their values in
//! anything shown to users (commands, logs, errors, Status). The option
//! engine and the backends both use it; it depends on neither.

use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Serialize};

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

/// Hides the value of every secret key inside one argument, whether it is
/// a flag (`--sftp-pass=x`: the rest of the argument), a mount-option list
/// (`a=1,password=x`), `-o` with one attached, or an rclone connection
/// string (`:sftp,pass=x:/path`). A value runs to the next `,` outside
/// quotes: in a connection string that also hides the path after a secret,
/// which is safer than guessing where an unquoted value with a `:` ends.
pub fn redact_arg(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut at = 0;
    for span in secret_spans(arg) {
        out.push_str(&arg[at..span.start]);
        out.push_str(REDACTED);
        at = span.end;
    }
    out.push_str(&arg[at..]);
    out
}

/// [`redact_arg`] for a whole argv: a flag naming a secret key without a
/// value (`--sftp-pass`, `hunter2`) hides the next argument entirely.
pub fn redact_args(args: &[String]) -> Vec<String> {
    let mut hide_next = false;
    args.iter()
        .map(|arg| {
            if std::mem::take(&mut hide_next) {
                return REDACTED.to_owned();
            }
            hide_next = is_bare_secret_flag(arg);
            redact_arg(arg)
        })
        .collect()
}

/// The values [`redact_args`] hides.
pub fn secret_values(args: &[String]) -> Vec<&str> {
    let mut values = Vec::new();
    let mut hide_next = false;
    for arg in args {
        if std::mem::take(&mut hide_next) {
            values.push(arg.as_str());
            continue;
        }
        hide_next = is_bare_secret_flag(arg);
        for value in secret_spans(arg).into_iter().map(|r| &arg[r]) {
            values.push(value);
            // In a connection string an unquoted value ends at a `:`.
            if let Some((head, _)) = value
                .split_once(':')
                .filter(|_| !value.starts_with(['"', '\'']))
            {
                values.push(head);
            }
        }
    }
    values
}

/// The secret keys in an argv, as written (`--sftp-pass`, `password`).
pub fn secret_keys(args: &[String]) -> Vec<&str> {
    let mut keys = Vec::new();
    for arg in args {
        if is_bare_secret_flag(arg) {
            keys.push(arg.trim_start_matches('-'));
            continue;
        }
        if let Some(flag) = arg.strip_prefix("--") {
            keys.extend(
                flag.split_once('=')
                    .map(|(k, _)| k)
                    .filter(|k| is_secret_key(k)),
            );
            continue;
        }
        let list = match arg.strip_prefix("-o") {
            Some(rest) => rest,
            None if arg.starts_with('-') => continue,
            None => arg,
        };
        keys.extend(
            split_params(list)
                .into_iter()
                .filter(|p| p.value.is_some())
                .map(|p| &list[p.key])
                .filter(|k| is_secret_key(k)),
        );
    }
    keys
}

/// `--key` (two dashes, no `=`) with a secret key: its value is the next argument.
fn is_bare_secret_flag(arg: &str) -> bool {
    arg.strip_prefix("--")
        .is_some_and(|key| !key.contains('=') && is_secret_key(key))
}

/// Byte ranges of the secret values in one argument.
fn secret_spans(arg: &str) -> Vec<Range<usize>> {
    if let Some(flag) = arg.strip_prefix("--") {
        // A long flag's value is everything after its `=`.
        return match flag.split_once('=') {
            Some((key, value)) if is_secret_key(key) => {
                let start = arg.len() - value.len();
                std::iter::once(start..arg.len()).collect()
            }
            _ => Vec::new(),
        };
    }
    let (offset, list) = match arg.strip_prefix("-o") {
        Some(rest) => (2, rest),
        None if arg.starts_with('-') => return Vec::new(),
        None => (0, arg),
    };
    split_params(list)
        .into_iter()
        .filter_map(|p| {
            let value = p.value?;
            is_secret_key(&list[p.key]).then(|| value.start + offset..value.end + offset)
        })
        .collect()
}

/// One `key=value` item of a list, as byte ranges into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub key: Range<usize>,
    /// After the `=`, quotes included; `None` for a bare flag.
    pub value: Option<Range<usize>>,
}

/// Splits `a=1,b="x,y",c` at the commas outside quotes. A value that
/// starts with `"` or `'` runs to its closing quote (a doubled quote is
/// one quote inside, as rclone reads connection strings) and then to the
/// next comma; an unclosed quote runs to the end.
pub fn split_params(list: &str) -> Vec<Param> {
    let bytes = list.as_bytes();
    let mut params = Vec::new();
    let mut start = 0;
    while start <= bytes.len() {
        let mut i = start;
        while i < bytes.len() && bytes[i] != b'=' && bytes[i] != b',' {
            i += 1;
        }
        let key = start..i;
        let value = if i < bytes.len() && bytes[i] == b'=' {
            let value_start = i + 1;
            let mut j = value_start;
            if let Some(&quote @ (b'"' | b'\'')) = bytes.get(j) {
                j += 1;
                while j < bytes.len() {
                    if bytes[j] == quote {
                        if bytes.get(j + 1) == Some(&quote) {
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    j += 1;
                }
            }
            while j < bytes.len() && bytes[j] != b',' {
                j += 1;
            }
            i = j;
            Some(value_start..j)
        } else {
            None
        };
        if !key.is_empty() || value.is_some() {
            params.push(Param { key, value });
        }
        start = i + 1;
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_itself() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?} {:?}", Some(&s)), "*** *** Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn secret_keys_by_pattern_in_every_spelling() {
        let secret = [
            "password",
            "pass",
            "PASSWORD",
            "sftp_pass",
            "sftp-pass",
            "--sftp-pass",
            "--ftp-pass",
            "--webdav-pass",
            "--sftp-key-file-pass",
            "key_file_pass",
            "--s3-secret-access-key",
            "secret_access_key",
            "S3_SECRET_ACCESS_KEY",
            "secretAccessKey",
            "bearer_token",
            "--webdav-bearer-token",
            "session_token",
            "--s3-session-token",
            "token",
            "client_secret",
            "--drive-client-secret",
            "secret",
            "--b2-key",
            "--azureblob-key",
            "api_key",
            "--fichier-api-key",
            "--sftp-key-pem",
            "--crypt-password2",
            "--s3-sse-customer-key",
            "--s3-sse-customer-key-base64",
            "--drive-service-account-credentials",
            "--storj-access-grant",
            "--azureblob-sas-url",
            "--netstorage-secret",
            "--rc-pass",
            "--http-headers",
            "passphrase",
            "Pass\\word",
        ];
        for key in secret {
            assert!(is_secret_key(key), "{key} should be secret");
        }
        let not_secret = [
            "PasswordAuthentication",
            "passwordauthentication",
            "NumberOfPasswordPrompts",
            "password_stdin",
            "password-command",
            "--webdav-bearer-token-command",
            "key_file",
            "--sftp-key-file",
            "--sftp-pubkey-file",
            "--sftp-key-use-agent",
            "--s3-access-key-id",
            "IdentityFile",
            "StrictHostKeyChecking",
            "HostKeyAlias",
            "port",
            "",
            "--",
        ];
        for key in not_secret {
            assert!(!is_secret_key(key), "{key} should not be secret");
        }
    }

    #[test]
    fn redacts_secrets_in_any_argument_shape() {
        let cases = [
            ("port=22,password=hunter2,x", "port=22,password=***,x"),
            ("--sftp-pass=hunter2", "--sftp-pass=***"),
            ("--webdav-pass=hun:ter,2", "--webdav-pass=***"),
            ("-opassword=hunter2,port=1", "-opassword=***,port=1"),
            (":sftp,host=h,pass=hunter2:/srv", ":sftp,host=h,pass=***"),
            (
                ":sftp,pass=\"a,b:c\",host=h:/srv",
                ":sftp,pass=***,host=h:/srv",
            ),
            (":sftp,pass='it''s,x':/srv", ":sftp,pass=***"),
            ("name,token=\"unclosed,x:/y", "name,token=***"),
            ("user@host:/srv", "user@host:/srv"),
            ("-p", "-p"),
            ("--password-command=echo x", "--password-command=echo x"),
        ];
        for (arg, want) in cases {
            assert_eq!(redact_arg(arg), want, "{arg}");
        }
    }

    #[test]
    fn a_bare_secret_flag_hides_the_next_argument() {
        let args: Vec<String> = ["--sftp-pass", "hunter2", "-v", "--s3-secret-access-key=k"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            redact_args(&args),
            ["--sftp-pass", "***", "-v", "--s3-secret-access-key=***"]
        );
        assert_eq!(secret_values(&args), ["hunter2", "k"]);
        assert_eq!(secret_keys(&args), ["sftp-pass", "s3-secret-access-key"]);
        let list = ["-o".to_owned(), "port=1,password=x,pass".to_owned()];
        assert_eq!(secret_keys(&list), ["password"]);
    }

    #[test]
    fn params_split_outside_quotes() {
        let list = "a=1,b=\"x,\"\"y\",c,,d=";
        let shown: Vec<(&str, Option<&str>)> = split_params(list)
            .into_iter()
            .map(|p| (&list[p.key], p.value.map(|v| &list[v])))
            .collect();
        assert_eq!(
            shown,
            [
                ("a", Some("1")),
                ("b", Some("\"x,\"\"y\"")),
                ("c", None),
                ("d", Some(""))
            ]
        );
    }
}
