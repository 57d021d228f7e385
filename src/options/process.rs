//! Process options: extra arguments for the volume's tool, separated by `&`
//! (`-C&--opt=value&another arg`). Plugin and volume lists are concatenated,
//! plugin first; each item is one argv element, never a shell word.

use super::OptionError;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessOptions(Vec<String>);

/// Values substituted for `{mountPoint}`, `{source}` and `{name}`.
pub struct Placeholders<'a> {
    pub mount_point: &'a str,
    pub source: &'a str,
    pub name: &'a str,
}

impl ProcessOptions {
    /// Parses `a&b&c`; empty items (doubled or trailing `&`) are ignored.
    pub fn parse(input: &str) -> Result<Self, OptionError> {
        let mut items = Vec::new();
        for (index, item) in input.split('&').enumerate() {
            if item.is_empty() {
                continue;
            }
            if item.contains('\0') {
                return Err(OptionError::Item {
                    position: index + 1,
                    item: item.replace('\0', "\\0"),
                    reason: "a NUL byte cannot be passed to a process",
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
        self.0
            .iter()
            .map(|item| {
                item.replace("{mountPoint}", values.mount_point)
                    .replace("{source}", values.source)
                    .replace("{name}", values.name)
            })
            .collect()
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

    #[test]
    fn grammar_and_concatenation() {
        let plugin = ProcessOptions::parse("-C&--opt=value&another arg&").unwrap();
        assert_eq!(plugin.items(), ["-C", "--opt=value", "another arg"]);
        let volume = ProcessOptions::parse("&&-C&x=y=z").unwrap();
        assert_eq!(
            plugin.concat(&volume).items(),
            ["-C", "--opt=value", "another arg", "-C", "x=y=z"]
        );
        assert!(ProcessOptions::parse("").unwrap().is_empty());
        let err = ProcessOptions::parse("a&b\0").unwrap_err();
        assert!(err.to_string().starts_with("item 2 "), "{err}");
    }

    #[test]
    fn placeholders_in_every_item() {
        let opts = ProcessOptions::parse("{mountPoint}&--name={name}&{source}:{source}").unwrap();
        let got = opts.substitute(&Placeholders {
            mount_point: "/mnt/v",
            source: "h:/x",
            name: "v",
        });
        assert_eq!(got, ["/mnt/v", "--name=v", "h:/x:h:/x"]);
    }
}
