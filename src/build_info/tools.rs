//! The tools netfs runs, looked up on PATH as a spawn would find them, each
//! asked for its version with a bounded wait. A tool that is missing, hangs
//! or says nothing is reported as such; none of that is an error here.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::reaper;

/// Each tool and the arguments that make it print its version.
pub const TOOLS: &[(&str, &[&str])] = &[
    ("sshfs", &["--version"]),
    ("ssh", &["-V"]),
    ("rclone", &["version"]),
    ("mount.nfs", &["-V"]),
    ("fusermount3", &["-V"]),
];

/// How long a tool gets to print its version.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// What is read of a tool's output, per stream.
const OUTPUT_LIMIT: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tool {
    pub name: &'static str,
    #[serde(flatten)]
    pub probe: Probe,
}

/// What looking for a tool found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Probe {
    /// On PATH; `version` is the line it printed that names it.
    Found { path: PathBuf, version: String },
    /// Not on PATH.
    Missing,
    /// On PATH, but it did not tell its version (it failed, hung or said nothing).
    Failed { path: PathBuf, error: String },
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Found { path, version } => write!(f, "{version} ({})", path.display()),
            Probe::Missing => write!(f, "missing"),
            Probe::Failed { path, error } => {
                write!(f, "{} gives no version: {error}", path.display())
            }
        }
    }
}

/// Every tool of [`TOOLS`], looked up on `path` (the value of `PATH`), all
/// asked at once: the whole takes at most about [`TIMEOUT`].
pub async fn probe_all(path: Option<&OsStr>) -> Vec<Tool> {
    let probes = TOOLS.iter().map(|&(name, args)| {
        let found = find(name, path);
        async move {
            let probe = match found {
                None => Probe::Missing,
                Some(path) => match version(&path, name, args, TIMEOUT).await {
                    Ok(version) => Probe::Found { path, version },
                    Err(error) => Probe::Failed { path, error },
                },
            };
            Tool { name, probe }
        }
    });
    let handles: Vec<_> = probes.map(tokio::spawn).collect();
    let mut tools = Vec::with_capacity(handles.len());
    for (handle, &(name, _)) in handles.into_iter().zip(TOOLS) {
        tools.push(handle.await.unwrap_or_else(|e| Tool {
            name,
            probe: Probe::Failed {
                path: PathBuf::from(name),
                error: format!("the probe failed: {e}"),
            },
        }));
    }
    tools
}

/// The first executable file `name` in the directories of `path`, as
/// `execvp` would take it.
pub fn find(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `program args`, waiting at most `timeout`, and picks the line of
/// its output that names the tool (sshfs prints fusermount3's version
/// first), or else the first line.
pub async fn version(
    program: &Path,
    name: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<String, String> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = reaper::spawn(&mut command).map_err(|e| format!("cannot run it: {e}"))?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let run = async {
        let (out, err) = tokio::join!(read(stdout), read(stderr));
        let status = child.wait().await;
        (out, err, status)
    };
    let (out, err, status) = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?;
    let text = format!("{out}\n{err}");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let key = name.to_ascii_lowercase();
    let short = |line: &str| line.chars().take(200).collect::<String>();
    if let Some(line) = lines.iter().find(|l| l.to_ascii_lowercase().contains(&key)) {
        return Ok(short(line));
    }
    match (status, lines.first()) {
        (Ok(status), Some(line)) if status.success() => Ok(short(line)),
        (Ok(status), Some(line)) => Err(format!("{status}: {}", short(line))),
        (Ok(status), None) => Err(format!("it printed nothing ({status})")),
        (Err(e), _) => Err(format!("cannot wait for it: {e}")),
    }
}

async fn read(stream: Option<impl AsyncRead + Unpin>) -> String {
    let mut buf = Vec::new();
    if let Some(stream) = stream {
        let _ = stream.take(OUTPUT_LIMIT).read_to_end(&mut buf).await;
    }
    String::from_utf8_lossy(&buf).into_owned()
}
