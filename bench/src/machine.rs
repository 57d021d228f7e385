//! What the figures were taken on: hardware, kernel, tool versions, and the
//! other load on the machine while the benchmark ran (CPU time of every
//! process it did not start, sampled from `/proc`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The first line of a command's output that contains `want`, or "unknown".
fn line_with(program: &str, args: &[&str], want: &str) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .find(|l| l.contains(want))
                .map(|l| l.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// One line of output of a command, or "unknown".
fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn mem_total_gib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0)
}

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A Markdown list describing the machine and the versions measured.
pub fn describe(netfs: &std::path::Path) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let netfs_version = first_line(&netfs.to_string_lossy(), &["--version"]);
    let commit = first_line("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    let docker = first_line(
        &crate::data::docker(),
        &["version", "--format", "{{.Server.Version}}"],
    );
    let mut out = String::new();
    let _ = writeln!(out, "- CPU: {} ({cores} cores visible)", cpu_model());
    let _ = writeln!(out, "- memory: {:.1} GiB", mem_total_gib());
    let _ = writeln!(
        out,
        "- system: {}, kernel {}",
        os_name(),
        first_line("uname", &["-r"])
    );
    let _ = writeln!(
        out,
        "- netfs: {netfs_version}, commit {commit}{}",
        if dirty {
            " with uncommitted changes in the tree"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "- peers: {}, {}, {}; docker {docker}",
        line_with("sshfs", &["--version"], "SSHFS"),
        first_line("ssh", &["-V"]),
        first_line("rclone", &["version"]),
    );
    out
}

/// Samples, every second, the CPU time of every process that is not a
/// descendant of this one.
pub struct LoadSampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<HashMap<String, f64>>>,
}

struct Proc {
    ppid: i32,
    comm: String,
    ticks: u64,
}

fn processes() -> HashMap<i32, Proc> {
    netfs::procfs::pids()
        .into_iter()
        .filter_map(|pid| {
            let stat = netfs::procfs::stat(pid)?;
            let proc = Proc {
                ppid: stat.ppid,
                ticks: stat.utime + stat.stime,
                comm: stat.comm,
            };
            Some((pid, proc))
        })
        .collect()
}

fn descends_from(pid: i32, root: i32, procs: &HashMap<i32, Proc>) -> bool {
    let mut at = pid;
    for _ in 0..64 {
        if at == root {
            return true;
        }
        match procs.get(&at) {
            Some(p) if p.ppid > 0 => at = p.ppid,
            _ => return false,
        }
    }
    false
}

impl LoadSampler {
    pub fn start() -> LoadSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let me = std::process::id() as i32;
            let hz = netfs::procfs::ticks_per_second();
            let mut seen: HashMap<i32, u64> =
                processes().into_iter().map(|(p, s)| (p, s.ticks)).collect();
            let mut by_name: HashMap<String, f64> = HashMap::new();
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                let now = processes();
                for (pid, p) in &now {
                    let before = seen.get(pid).copied().unwrap_or(0);
                    let delta = p.ticks.saturating_sub(before);
                    if delta > 0 && !descends_from(*pid, me, &now) {
                        *by_name.entry(p.comm.clone()).or_default() += delta as f64 / hz;
                    }
                }
                seen = now.into_iter().map(|(p, s)| (p, s.ticks)).collect();
            }
            by_name
        });
        LoadSampler {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the top CPU users not started by the benchmark,
    /// as "name N s", most first.
    pub fn finish(mut self) -> Vec<(String, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        let by_name = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        let mut top: Vec<(String, f64)> = by_name.into_iter().filter(|(_, s)| *s >= 1.0).collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        top.truncate(8);
        top
    }
}
