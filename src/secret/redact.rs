//! Hiding secret values in argv: which spans of an argument are secret (a
//! long flag's value, an item of a mount-option list, `-o` attached, an
//! rclone connection string), and the redacted argv users are shown.

use std::ops::Range;

use super::{is_secret_key, split_params, REDACTED};

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
