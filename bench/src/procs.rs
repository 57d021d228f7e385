//! Processes as `/proc` shows them: resident size, children, and taking
//! down a tree the benchmark started, always by pid.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sched::{sched_setaffinity, CpuSet};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

// Read through netfs's own /proc parsers (one per kernel file).

/// `VmRSS` of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    netfs::procfs::status_kib(pid as i32, "VmRSS")
}

/// Alive and not a zombie.
pub fn alive(pid: i32) -> bool {
    netfs::procfs::alive(pid)
}

/// Direct children of `pid`.
pub fn children(pid: i32) -> Vec<i32> {
    netfs::procfs::pids()
        .into_iter()
        .filter(|child| netfs::procfs::stat(*child).is_some_and(|s| s.ppid == pid))
        .collect()
}

/// SIGKILLs `pid` and everything below it, leaves first.
pub fn kill_tree(pid: i32) {
    for child in children(pid) {
        kill_tree(child);
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// Binds every thread of `pid` and of everything below it to `cpus`;
/// what they start later inherits it.
pub fn pin_tree(pid: i32, cpus: &[usize]) -> Result<()> {
    for child in children(pid) {
        pin_tree(child, cpus)?;
    }
    pin_threads(pid, cpus)
}

/// Binds every thread of `pid` to `cpus`.
pub fn pin_threads(pid: i32, cpus: &[usize]) -> Result<()> {
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu).with_context(|| format!("no CPU {cpu}"))?;
    }
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("cannot list the threads of {pid}"))?;
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        sched_setaffinity(Pid::from_raw(tid), &set)
            .with_context(|| format!("cannot bind thread {tid} of {pid} to CPUs {cpus:?}"))?;
    }
    Ok(())
}

/// Polls `done` every `every` until it holds or `within` passes.
pub fn poll_until(within: Duration, every: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}
