//! rclone's remote syntax, as a volume's `source` gives it:
//! `name:path`, `name,key=value:path` (a configured remote with overrides)
//! or `:backend,key=value:path` (an on-the-fly remote). Anything else is a
//! path of the plugin's own filesystem, which rclone serves as `local`.

use crate::secret::{is_secret_key, split_params, REDACTED};

/// A parsed rclone source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcloneSource<'a> {
    /// Not a remote: rclone reads it as a local path.
    LocalPath,
    Remote(Remote<'a>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote<'a> {
    /// `:sftp,...` names a backend; `name,...` a remote of the config file.
    pub on_the_fly: bool,
    /// The backend (on the fly) or the configured remote's name.
    pub name: &'a str,
    pub params: Vec<RemoteParam<'a>>,
    /// After the `:` that ends the remote.
    pub path: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteParam<'a> {
    pub key: &'a str,
    /// As written, quotes included; `None` for a bare flag (`true`).
    pub raw: Option<&'a str>,
}

impl RemoteParam<'_> {
    /// The value as rclone reads it: quotes removed, doubled quotes single.
    pub fn value(&self) -> Option<String> {
        let raw = self.raw?;
        Some(match raw.chars().next() {
            Some(q @ ('"' | '\'')) if raw.len() >= 2 && raw.ends_with(q) => {
                let pair: String = [q, q].iter().collect();
                raw[1..raw.len() - 1].replace(&pair, &q.to_string())
            }
            _ => raw.to_owned(),
        })
    }
}

/// A remote name or backend: rclone accepts letters, digits and `_.+@ -`.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '+' | '@' | ' ' | '-'))
}

pub fn parse(source: &str) -> RcloneSource<'_> {
    let (on_the_fly, rest) = match source.strip_prefix(':') {
        Some(rest) => (true, rest),
        None => (false, source),
    };
    let Some(name_end) = rest.find([',', ':']) else {
        return RcloneSource::LocalPath;
    };
    let name = &rest[..name_end];
    if !is_name(name) {
        return RcloneSource::LocalPath;
    }
    let after = &rest[name_end..];
    let (params, path) = match after.strip_prefix(',') {
        Some(list) => match params_end(list) {
            Some(end) => (parse_params(&list[..end]), &list[end + 1..]),
            None => return RcloneSource::LocalPath,
        },
        None => (Vec::new(), &after[1..]),
    };
    RcloneSource::Remote(Remote {
        on_the_fly,
        name,
        params,
        path,
    })
}

/// Where the parameter list ends: the first `:` outside a quoted value.
/// A value is quoted when it starts with `"` or `'`; a doubled quote is
/// one quote inside it.
fn params_end(list: &str) -> Option<usize> {
    let bytes = list.as_bytes();
    let mut i = 0;
    let mut value_start = None;
    while i < bytes.len() {
        match bytes[i] {
            b':' => return Some(i),
            b',' => value_start = None,
            b'=' if value_start.is_none() => {
                value_start = Some(i + 1);
                if let Some(&quote @ (b'"' | b'\'')) = bytes.get(i + 1) {
                    i += 2;
                    loop {
                        match bytes.get(i) {
                            None => return None,
                            Some(b) if *b == quote && bytes.get(i + 1) == Some(&quote) => i += 2,
                            Some(b) if *b == quote => break,
                            Some(_) => i += 1,
                        }
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn parse_params(list: &str) -> Vec<RemoteParam<'_>> {
    split_params(list)
        .into_iter()
        .map(|p| RemoteParam {
            key: &list[p.key],
            raw: p.value.map(|v| &list[v]),
        })
        .collect()
}

impl Remote<'_> {
    /// The source again, without the parameters `drop` says to leave out.
    pub fn render_without(&self, drop: impl Fn(&RemoteParam<'_>) -> bool) -> String {
        self.render(|p| (!drop(p)).then_some(p.raw))
    }

    /// The source again, the value of every secret parameter as `***`:
    /// unlike a redaction that cannot tell where a value ends, it keeps
    /// the path.
    pub fn redacted(&self) -> String {
        self.render(|p| match p.raw {
            Some(_) if is_secret_key(p.key) => Some(Some(REDACTED)),
            raw => Some(raw),
        })
    }

    /// Each parameter as `show` gives its value: `None` leaves it out,
    /// `Some(None)` writes the bare key.
    fn render<'s>(&'s self, show: impl Fn(&RemoteParam<'s>) -> Option<Option<&'s str>>) -> String {
        let mut out = String::new();
        if self.on_the_fly {
            out.push(':');
        }
        out.push_str(self.name);
        for p in &self.params {
            let Some(value) = show(p) else { continue };
            out.push(',');
            out.push_str(p.key);
            if let Some(value) = value {
                out.push('=');
                out.push_str(value);
            }
        }
        out.push(':');
        out.push_str(self.path);
        out
    }

    /// The backend this remote is of, when the source says (on the fly,
    /// or a `type=` override of a configured remote).
    pub fn backend(&self) -> Option<String> {
        if self.on_the_fly {
            return Some(self.name.to_owned());
        }
        self.params
            .iter()
            .find(|p| p.key == "type")
            .and_then(RemoteParam::value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(source: &str) -> Remote<'_> {
        match parse(source) {
            RcloneSource::Remote(r) => r,
            RcloneSource::LocalPath => panic!("{source} parsed as a local path"),
        }
    }

    #[test]
    fn remotes_and_local_paths() {
        for local in [
            "/etc",
            "etc",
            "./x:y",
            "a/b:c",
            "",
            ":",
            ",x:y",
            ":sftp,host=\"h:/x",
        ] {
            assert_eq!(parse(local), RcloneSource::LocalPath, "{local:?}");
        }
        let r = remote("media:/srv/a");
        assert_eq!((r.on_the_fly, r.name, r.path), (false, "media", "/srv/a"));
        assert!(r.params.is_empty());
        let r = remote(":sftp,host=h,pass=\"a:b,c\",flag:/srv:x");
        assert_eq!((r.on_the_fly, r.name, r.path), (true, "sftp", "/srv:x"));
        let params: Vec<(&str, Option<String>)> =
            r.params.iter().map(|p| (p.key, p.value())).collect();
        assert_eq!(
            params,
            [
                ("host", Some("h".into())),
                ("pass", Some("a:b,c".into())),
                ("flag", None)
            ]
        );
        assert_eq!(
            r.render_without(|p| p.key == "pass"),
            ":sftp,host=h,flag:/srv:x"
        );
        assert_eq!(r.redacted(), ":sftp,host=h,pass=***,flag:/srv:x");
        assert_eq!(remote(":local:/etc").backend().as_deref(), Some("local"));
        assert_eq!(
            remote("mine,type='local':/etc").backend().as_deref(),
            Some("local")
        );
        assert_eq!(remote("user@host:/srv").backend(), None);
        let quoted = remote(":sftp,pass='it''s':/");
        assert_eq!(quoted.params[0].value().as_deref(), Some("it's"));
    }
}
