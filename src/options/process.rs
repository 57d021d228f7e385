//! Process options: extra arguments for the volume's tool, separated by `&`
//! (`-C&--opt=value&another arg`). Plugin and volume lists are concatenated,
//! plugin first; each item is one argv element, never a shell word.

use super::OptionError;
use crate::secret::redact_arg;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessOptions(Vec<String>);

/// Values substituted for `{mountPoint}`, `{source}` and `{name}`.
pub struct Placeholders<'a> {
    pub mount_point: &'a str,
    pub source: &'a str,
    pub name: &'a str,
}

impl Placeholders<'_> {
    fn value(&self, name: &str) -> Option<&str> {
        match name {
            "mountPoint" => Some(self.mount_point),
            "source" => Some(self.source),
            "name" => Some(self.name),
            _ => None,
        }
    }

    /// Replaces every placeholder in one pass, so a value that itself holds
    /// `{name}` (a source may) is never expanded again. Unknown `{...}` and
    /// lone braces stay as they are.
    pub fn apply(&self, item: &str) -> String {
        let mut out = String::with_capacity(item.len());
        let mut rest = item;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            match after
                .find('}')
                .and_then(|close| Some((close, self.value(&after[..close])?)))
            {
                Some((close, value)) => {
                    out.push_str(value);
                    rest = &after[close + 1..];
                }
                None => {
                    out.push('{');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

impl ProcessOptions {
    /// Parses `a&b&c`; empty items (doubled or trailing `&`) are ignored,
    /// everything else, spaces included, is kept verbatim.
    pub fn parse(input: &str) -> Result<Self, OptionError> {
        let mut items = Vec::new();
        for (index, item) in input.split('&').enumerate() {
            if item.is_empty() {
                continue;
            }
            if item.chars().any(char::is_control) {
                return Err(OptionError::Item {
                    position: index + 1,
                    item: redact_arg(item),
                    reason: "control characters (newline, tab, NUL, ...) are not allowed",
                });
            }
            items.push(item.to_owned());
        }
        Ok(Self(items))
    }

    pub fn from_items(items: Vec<String>) -> Self {
        Self(items)
    }

    /// Plugin items followed by the volume's.
    pub fn concat(&self, volume: &ProcessOptions) -> ProcessOptions {
        Self(self.0.iter().chain(&volume.0).cloned().collect())
    }

    pub fn substitute(&self, values: &Placeholders<'_>) -> Vec<String> {
        self.0.iter().map(|item| values.apply(item)).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn items(&self) -> &[String] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<String> {
        ProcessOptions::parse(s)
            .unwrap_or_else(|e| panic!("{s:?}: {e}"))
            .items()
            .to_vec()
    }

    /// (input, the argv items)
    const GRAMMAR: &[(&str, &[&str])] = &[
        ("", &[]),
        ("&", &[]),
        ("&&&", &[]),
        ("-C&", &["-C"]),
        ("&-C", &["-C"]),
        ("-C&&-d&", &["-C", "-d"]),
        (
            "-C&--opt=value&another arg",
            &["-C", "--opt=value", "another arg"],
        ),
        ("x=y=z", &["x=y=z"]),
        ("-o&a=1,b", &["-o", "a=1,b"]),
        // spaces are part of the item: no trimming, no shell words
        (" -C & -d ", &[" -C ", " -d "]),
        (" ", &[" "]),
        ("'a b'&\"c\"", &["'a b'", "\"c\""]),
        ("$(id)&`id`&;|>", &["$(id)", "`id`", ";|>"]),
        ("é&日本&a\u{a0}b", &["é", "日本", "a\u{a0}b"]),
        // duplicates are kept
        ("-C&-C", &["-C", "-C"]),
        ("-", &["-"]),
    ];

    #[test]
    fn grammar() {
        for (input, want) in GRAMMAR {
            assert_eq!(p(input), *want, "{input:?}");
        }
    }

    #[test]
    fn errors_quote_the_item_and_its_position() {
        let cases = [
            (
                "a&b\0",
                "item 2 \"b\\0\": control characters (newline, tab, NUL, ...) are not allowed",
            ),
            (
                "a&&-C\n",
                "item 3 \"-C\\n\": control characters (newline, tab, NUL, ...) are not allowed",
            ),
            (
                "\tx",
                "item 1 \"\\tx\": control characters (newline, tab, NUL, ...) are not allowed",
            ),
            (
                "-v&--sftp-pass=hunter2\n",
                "item 2 \"--sftp-pass=***\": control characters (newline, tab, NUL, ...) are not allowed",
            ),
        ];
        for (input, want) in cases {
            let err = ProcessOptions::parse(input).unwrap_err();
            assert_eq!(err.to_string(), want, "{input:?}");
        }
    }

    #[test]
    fn concatenation_is_plugin_first_without_deduplication() {
        let plugin = ProcessOptions::parse("-C&--opt=value").unwrap();
        let volume = ProcessOptions::parse("&&-C&x").unwrap();
        assert_eq!(
            plugin.concat(&volume).items(),
            ["-C", "--opt=value", "-C", "x"]
        );
        assert_eq!(plugin.concat(&ProcessOptions::default()), plugin);
        assert_eq!(ProcessOptions::default().concat(&volume), volume);
        assert_eq!(plugin.items(), ["-C", "--opt=value"]);
    }

    #[test]
    fn placeholders_in_every_item() {
        let values = Placeholders {
            mount_point: "/mnt/v",
            source: "h:/{name}",
            name: "v",
        };
        let cases: &[(&str, &str)] = &[
            ("{mountPoint}", "/mnt/v"),
            ("--name={name}", "--name=v"),
            ("{source}:{source}", "h:/{name}:h:/{name}"),
            ("{name}{name}", "vv"),
            ("{mountpoint}", "{mountpoint}"),
            ("{other}&{", "{other}&{"),
            ("{{name}}", "{v}"),
            ("}{name", "}{name"),
            ("{}", "{}"),
            ("a{mountPoint}/sub", "a/mnt/v/sub"),
            ("é{name}é", "évé"),
        ];
        for (item, want) in cases {
            assert_eq!(values.apply(item), *want, "{item:?}");
        }
        let opts = ProcessOptions::parse("{mountPoint}&--name={name}").unwrap();
        assert_eq!(opts.substitute(&values), ["/mnt/v", "--name=v"]);
    }
}
