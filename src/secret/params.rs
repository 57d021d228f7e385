//! `key=value,key=value` lists as mount options and rclone connection
//! strings write them: split at commas outside quotes, as byte ranges, so
//! callers can redact or rewrite in place. Knows nothing of secrets.

use std::ops::Range;

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
