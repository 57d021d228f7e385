//! `netfs --build-info`: what this binary was built from and which tools it
//! would run, for a bug report to begin with. The build's part comes from
//! build.rs; the tools' part is asked of the tools on PATH when shown. It
//! reads nothing else and touches no socket, state or mount.

pub mod tools;

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

pub use tools::{Probe, Tool};

mod built {
    include!(concat!(env!("OUT_DIR"), "/build_info.rs"));
}

/// How `--build-info` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Lines for people.
    Text,
    /// One JSON object.
    Json,
}

/// The build: fixed when the binary was compiled.
#[derive(Debug, Clone, Serialize)]
pub struct Build {
    pub version: &'static str,
    /// The git commit, `unknown` when built outside a checkout.
    pub revision: &'static str,
    /// Whether the sources differed from that commit; null when unknown.
    pub dirty: Option<bool>,
    /// RFC 3339, UTC.
    pub built_at: String,
    pub rustc: &'static str,
    pub target: &'static str,
    pub profile: &'static str,
    /// Each direct dependency and the version Cargo.lock resolved it to.
    pub dependencies: Vec<Dependency>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Dependency {
    pub name: &'static str,
    pub version: &'static str,
}

/// What `--build-info` shows: the build and the tools found now.
#[derive(Debug, Clone, Serialize)]
pub struct BuildInfo {
    #[serde(flatten)]
    pub build: Build,
    pub tools: Vec<Tool>,
}

impl Build {
    pub fn current() -> Build {
        let built_at = UNIX_EPOCH + Duration::from_secs(built::BUILT_AT_EPOCH);
        Build {
            version: env!("CARGO_PKG_VERSION"),
            revision: built::REVISION.unwrap_or("unknown"),
            dirty: built::DIRTY,
            built_at: humantime::format_rfc3339_seconds(built_at).to_string(),
            rustc: built::RUSTC,
            target: built::TARGET,
            profile: built::PROFILE,
            dependencies: built::DEPENDENCIES
                .iter()
                .map(|&(name, version)| Dependency { name, version })
                .collect(),
        }
    }

    /// The revision as one word: `<commit>`, `<commit>-dirty` or `unknown`.
    pub fn revision_word(&self) -> String {
        match self.dirty {
            Some(true) => format!("{}-dirty", self.revision),
            _ => self.revision.to_owned(),
        }
    }
}

impl BuildInfo {
    /// The build, and every tool looked up on `path` (`PATH`'s value).
    pub async fn gather(path: Option<&std::ffi::OsStr>) -> BuildInfo {
        BuildInfo {
            build: Build::current(),
            tools: tools::probe_all(path).await,
        }
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => self.to_string(),
            Format::Json => {
                let mut text = serde_json::to_string_pretty(self)
                    .unwrap_or_else(|e| format!("{{\"error\": \"cannot encode: {e}\"}}"));
                text.push('\n');
                text
            }
        }
    }
}

impl fmt::Display for BuildInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.build;
        writeln!(f, "netfs {}", b.version)?;
        let state = match b.dirty {
            Some(true) => " (modified sources)",
            Some(false) => "",
            None => " (state unknown)",
        };
        writeln!(f, "revision:  {}{state}", b.revision)?;
        writeln!(f, "built:     {}, {} profile", b.built_at, b.profile)?;
        writeln!(f, "rustc:     {}", b.rustc)?;
        writeln!(f, "target:    {}", b.target)?;
        writeln!(f, "tools (looked up on PATH):")?;
        let width = self.tools.iter().map(|t| t.name.len()).max().unwrap_or(0);
        for tool in &self.tools {
            writeln!(f, "  {:width$}  {}", tool.name, tool.probe)?;
        }
        writeln!(f, "dependencies:")?;
        for d in &b.dependencies {
            writeln!(f, "  {} {}", d.name, d.version)?;
        }
        Ok(())
    }
}

/// Logs the build at start: fixed at compile time, so at once.
pub fn log_build() {
    let b = Build::current();
    tracing::info!(
        version = %b.version,
        revision = %b.revision_word(),
        built_at = %b.built_at,
        profile = %b.profile,
        "netfs build"
    );
}

/// Logs the tools' versions. Each is a process to start (rclone's alone
/// costs a tenth of a second of CPU): netfs does it once the volumes of a
/// restart are back, not while their tools start.
pub async fn log_tools() {
    for tool in tools::probe_all(std::env::var_os("PATH").as_deref()).await {
        match &tool.probe {
            Probe::Found { path, version } => {
                tracing::info!(tool = %tool.name, path = %path.display(), version = %version, "tool")
            }
            Probe::Missing => tracing::info!(tool = %tool.name, "tool not on PATH"),
            Probe::Failed { path, error } => {
                tracing::warn!(tool = %tool.name, path = %path.display(), error = %error, "tool does not tell its version")
            }
        }
    }
}

#[cfg(test)]
mod tests;
