//! Which version of a tool netfs runs, as the tool itself says: shown in the
//! Status of the volumes it serves. Asked once per run of netfs (the first
//! volume of that kind), as the operator's tool does not change under it.

use std::path::Path;
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::build_info::tools;

/// How long `rclone version` may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(super) struct Versions {
    rclone: OnceCell<String>,
}

impl Versions {
    /// rclone's version (`v1.75.2`), asked on first use; what went wrong
    /// in its place when it could not be read.
    pub async fn rclone(&self) -> &str {
        self.rclone.get_or_init(|| ask("rclone")).await
    }

    /// The version, if it was asked already.
    pub fn rclone_known(&self) -> Option<&str> {
        self.rclone.get().map(String::as_str)
    }
}

/// Asks `program version`, spawned as a child the reaper leaves to tokio
/// (a plain spawn could be reaped before tokio waits for it: ECHILD).
async fn ask(program: &str) -> String {
    match tools::version(Path::new(program), "rclone", &["version"], ASK_TIMEOUT).await {
        Ok(line) => parse(&line)
            .unwrap_or_else(|| format!("unknown ({program} version printed no version)")),
        Err(e) => format!("unknown ({program} version: {e})"),
    }
}

/// `v1.75.2` from `rclone v1.75.2\n- os/version: ...`.
fn parse(out: &str) -> Option<String> {
    let first = out.lines().next()?;
    let version = first.strip_prefix("rclone ")?.trim();
    version.starts_with('v').then(|| version.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_line() {
        assert_eq!(
            parse("rclone v1.75.2\n- os/version: debian 12.11 (64 bit)\n").as_deref(),
            Some("v1.75.2")
        );
        assert_eq!(
            parse("rclone v1.60.1-DEV\n").as_deref(),
            Some("v1.60.1-DEV")
        );
        assert_eq!(parse("usage: rclone ...\n"), None);
        assert_eq!(parse(""), None);
    }

    #[tokio::test]
    async fn a_missing_tool_is_said_so() {
        let v = ask("/nonexistent/rclone").await;
        assert!(
            v.starts_with("unknown (/nonexistent/rclone version: cannot run it: "),
            "{v}"
        );
    }
}
