//! Re-attach: running containers keep their volumes. A container holds the
//! mount it was given, not the path, so when a volume's tool dies and is
//! mounted again, every container that had it still sees the dead mount.
//! After each mount this module finds the mount namespaces that hold a dead
//! mount of the volume (by its device number, type and source) and puts a
//! clone of the new mount in its place, once per namespace, with the
//! holder's flags and subdirectory. Finding and deciding is here; every
//! host call (`/proc`, the mount API, entering a namespace) is behind the
//! [`Host`] seam, real in [`host::Kernel`], recorded in unit tests.

mod host;
#[cfg(test)]
pub(crate) mod recorded;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::Notify;

use crate::name::VolumeName;
use crate::procfs::{self, MountEntry};

pub use host::{AttachError, Host, Kernel};

/// How many device numbers a volume keeps: the live mount's and those of
/// dead mounts still held after a failed attach.
const KEPT_DEVICES: usize = 8;

/// The flags of a holder's mount that its replacement carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub read_only: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
}

impl Flags {
    fn of(entry: &MountEntry) -> Self {
        Self {
            read_only: entry.has_option("ro"),
            nosuid: entry.has_option("nosuid"),
            nodev: entry.has_option("nodev"),
            noexec: entry.has_option("noexec"),
        }
    }
}

/// A dead mount of the volume in a holder's namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Where it is mounted, as the holder's namespace sees it.
    pub mount_point: PathBuf,
    /// The subdirectory of the volume it shows (`/` for all of it).
    pub root: PathBuf,
    pub flags: Flags,
    /// The dead mount's device number.
    pub device: String,
}

/// A mount namespace holding dead mounts of the volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// A process of the namespace, through which it is entered.
    pub pid: i32,
    /// The namespace's inode, checked again when it is entered.
    pub ns: u64,
    /// The container the process runs in, if its cgroup names one.
    pub container: Option<String>,
    pub targets: Vec<Target>,
    /// Dead mounts left as they are, and why.
    pub refused: Vec<(Target, String)>,
}

impl Holder {
    /// How a log line or Status names this holder.
    pub fn describe(&self, target: &Target) -> String {
        let who = match &self.container {
            Some(id) => format!("container {id}"),
            None => format!("mount namespace {} (pid {})", self.ns, self.pid),
        };
        format!("{who}: {}", target.mount_point.display())
    }
}

/// One attach asked of the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attach {
    pub pid: i32,
    pub ns: u64,
    /// The volume's live mount, in netfs's own namespace.
    pub live: PathBuf,
    pub target: Target,
}

/// What one pass after a mount did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The device numbers that containers may hold from now on: the live
    /// mount's, and those of dead mounts that could not be replaced.
    pub devices: Vec<String>,
    /// The places a mount was put back, as [`Holder::describe`] says.
    pub attached: Vec<String>,
    /// What failed, one line per place.
    pub failed: Vec<String>,
}

/// Re-attaches for every volume of one netfs; `None` in the supervisor's
/// policy when the operator turned it off.
pub struct Reattacher {
    host: Arc<dyn Host>,
    /// Told when a volume's devices changed, so the state file keeps them.
    changed: Arc<Notify>,
    scans: Scans,
}

/// The mount tables of every namespace but netfs's own, as one read of
/// `/proc` found them: each namespace once, through the first of its
/// processes that answered.
#[derive(Debug, Default)]
struct Scan {
    tables: Vec<(i32, u64, Vec<MountEntry>)>,
}

impl Scan {
    /// `None` when netfs cannot tell its own namespace: it could then take
    /// its own live mount's place for a holder's, so it enters none.
    fn take(host: &dyn Host) -> Option<Scan> {
        let own = host.own_namespace().ok()?;
        let mut done: HashSet<u64> = HashSet::new();
        let mut tables = Vec::new();
        for (pid, ns) in host.namespaces() {
            if ns == own || done.contains(&ns) {
                continue;
            }
            // A process that is gone: another one of its namespace may answer.
            let Ok(text) = host.mountinfo(pid) else {
                continue;
            };
            done.insert(ns);
            tables.push((pid, ns, procfs::parse_mountinfo(&text)));
        }
        Some(Scan { tables })
    }
}

/// Scans shared by the passes that ask for one at the same time: when a
/// hundred volumes mount at once (a restore), each would otherwise read
/// every process's namespace and every namespace's mount table. A pass
/// takes the next scan that begins after it asked, so it sees every
/// change made before it asked; the passes waiting while one runs share
/// the one after it.
#[derive(Default)]
struct Scans {
    state: Mutex<ScanState>,
    finished: Condvar,
}

#[derive(Default)]
struct ScanState {
    /// Scans finished so far.
    count: u64,
    running: bool,
    last: Option<Arc<Scan>>,
    /// Passes waiting for a scan (the tests watch it).
    waiting: usize,
}

impl Scans {
    fn lock(&self) -> MutexGuard<'_, ScanState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fresh(&self, host: &dyn Host) -> Option<Arc<Scan>> {
        let mut state = self.lock();
        // One under way began before this call and may miss what changed
        // since: the one after it does not.
        let wanted = state.count + if state.running { 2 } else { 1 };
        loop {
            if state.count >= wanted {
                return state.last.clone();
            }
            if state.running {
                state.waiting += 1;
                state = self.finished.wait(state).unwrap_or_else(|p| p.into_inner());
                state.waiting -= 1;
                continue;
            }
            state.running = true;
            drop(state);
            let mut scanning = Scanning {
                scans: self,
                scan: None,
            };
            scanning.scan = Scan::take(host).map(Arc::new);
            drop(scanning);
            state = self.lock();
        }
    }
}

/// A scan under way: when it ends, even by a panic (then with no scan),
/// it is published and the waiting passes go on.
struct Scanning<'a> {
    scans: &'a Scans,
    scan: Option<Arc<Scan>>,
}

impl Drop for Scanning<'_> {
    fn drop(&mut self) {
        let mut state = self.scans.lock();
        state.running = false;
        state.count += 1;
        state.last = self.scan.take();
        self.scans.finished.notify_all();
    }
}

impl std::fmt::Debug for Reattacher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reattacher")
    }
}

impl Reattacher {
    pub fn new(host: Arc<dyn Host>, changed: Arc<Notify>) -> Self {
        Self {
            host,
            changed,
            scans: Scans::default(),
        }
    }

    /// After `volume` mounted at `live_path`: puts the new mount in place
    /// of every dead one of the devices in `known` that a namespace holds.
    /// Blocking (reads `/proc`, enters namespaces): run it off the runtime.
    pub fn after_mount(&self, volume: &VolumeName, live_path: &Path, known: &[String]) -> Outcome {
        self.pass(volume, live_path, known)
    }

    /// Tells the driver that a volume's devices changed, once the
    /// supervisor's status shows them, so the state file keeps them.
    pub fn devices_changed(&self) {
        self.changed.notify_one();
    }

    fn pass(&self, volume: &VolumeName, live_path: &Path, known: &[String]) -> Outcome {
        let live = match self.host.mount_at(live_path) {
            Ok(Some(live)) => live,
            Ok(None) | Err(_) => {
                return Outcome {
                    devices: known.to_vec(),
                    failed: vec![format!("no mount at {} to re-attach", live_path.display())],
                    ..Outcome::default()
                }
            }
        };
        let dead: Vec<String> = known
            .iter()
            .filter(|d| **d != live.device)
            .cloned()
            .collect();
        let mut outcome = Outcome {
            devices: vec![live.device.clone()],
            ..Outcome::default()
        };
        // Only a FUSE mount dies while held; a kernel mount (nfs) does not.
        if dead.is_empty() || !live.fs_type.starts_with("fuse") {
            return outcome;
        }
        let mut still_held = HashSet::new();
        let scan = self.scans.fresh(self.host.as_ref());
        let holders = scan.map_or_else(Vec::new, |scan| {
            holders(&scan, self.host.as_ref(), &live, &dead)
        });
        for holder in holders {
            for (target, why) in &holder.refused {
                let place = holder.describe(target);
                tracing::warn!(volume = %volume, %place, reason = %why, "dead mount left in place");
                outcome.failed.push(format!("{place}: {why}"));
                still_held.insert(target.device.clone());
            }
            for target in &holder.targets {
                let place = holder.describe(target);
                let attach = Attach {
                    pid: holder.pid,
                    ns: holder.ns,
                    live: live_path.to_owned(),
                    target: target.clone(),
                };
                let started = std::time::Instant::now();
                match self.host.attach(&attach) {
                    Ok(()) => {
                        tracing::info!(volume = %volume, %place, sub = %target.root.display(),
                            read_only = target.flags.read_only,
                            took_us = started.elapsed().as_micros() as u64, "volume re-attached");
                        outcome.attached.push(place);
                    }
                    // Still served (by a tool an earlier run left
                    // running): kept, so that it is found once it dies.
                    Err(AttachError::NotDead { .. }) => {
                        still_held.insert(target.device.clone());
                    }
                    // The namespace went away: nothing holds the dead mount.
                    Err(AttachError::Gone { .. }) => {}
                    Err(e) => {
                        tracing::warn!(volume = %volume, %place, error = %e, "re-attach failed");
                        outcome.failed.push(format!("{place}: {e}"));
                        still_held.insert(target.device.clone());
                    }
                }
            }
        }
        outcome.devices.extend(
            dead.into_iter()
                .filter(|d| still_held.contains(d))
                .take(KEPT_DEVICES - 1),
        );
        outcome
    }
}

/// The namespaces other than netfs's own that hold, as the topmost mount
/// at some place, a mount of one of the `dead` devices with the live
/// mount's type and source; one holder per namespace.
fn holders(scan: &Scan, host: &dyn Host, live: &MountEntry, dead: &[String]) -> Vec<Holder> {
    let mut found = Vec::new();
    for (pid, ns, entries) in &scan.tables {
        let (pid, ns) = (*pid, *ns);
        let mut holder = Holder {
            pid,
            ns,
            container: None,
            targets: Vec::new(),
            refused: Vec::new(),
        };
        for (i, entry) in entries.iter().enumerate() {
            let ours = dead.contains(&entry.device)
                && entry.fs_type == live.fs_type
                && entry.source == live.source;
            // Something mounted over it since: that place is not dead.
            let covered = || {
                entries[i + 1..]
                    .iter()
                    .any(|e| e.mount_point == entry.mount_point)
            };
            if !ours || covered() {
                continue;
            }
            let target = Target {
                mount_point: entry.mount_point.clone(),
                root: entry.root.clone(),
                flags: Flags::of(entry),
                device: entry.device.clone(),
            };
            match refusal(entry, entries) {
                Some(why) => holder.refused.push((target, why)),
                None => holder.targets.push(target),
            }
        }
        if !holder.targets.is_empty() || !holder.refused.is_empty() {
            holder.container = host.container(pid);
            found.push(holder);
        }
    }
    found
}

/// Why a dead mount is left where it is, if it is.
fn refusal(entry: &MountEntry, entries: &[MountEntry]) -> Option<String> {
    if !entry.mount_point.is_absolute() || !entry.root.is_absolute() {
        return Some("its place is not an absolute path".to_owned());
    }
    // The kernel marks a subdirectory that was removed.
    if entry.root.to_string_lossy().ends_with("//deleted") {
        return Some(format!(
            "its subdirectory {} was deleted",
            entry.root.display()
        ));
    }
    // Detaching it would take the mounts below it along.
    let below = entries.iter().find(|e| {
        e.mount_point != entry.mount_point && e.mount_point.starts_with(&entry.mount_point)
    });
    below.map(|e| {
        format!(
            "{} is mounted below it; restart the container",
            e.mount_point.display()
        )
    })
}

/// What Status shows of re-attaches.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReattachStatus {
    /// Mounts put back into containers since netfs started.
    pub total: u64,
    /// When the last pass put something back or failed (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_at: Option<String>,
    /// What the last pass put back.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub last: Vec<String>,
    /// The last failure, and when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<String>,
}

impl ReattachStatus {
    /// Counts a pass; one that neither attached nor failed changes nothing.
    pub fn record(&mut self, outcome: &Outcome, at: SystemTime) {
        let at = humantime::format_rfc3339_seconds(at).to_string();
        if !outcome.attached.is_empty() || !outcome.failed.is_empty() {
            self.last_at = Some(at.clone());
            self.last = outcome.attached.clone();
            self.total += outcome.attached.len() as u64;
        }
        if !outcome.failed.is_empty() {
            self.last_error = Some(outcome.failed.join("; "));
            self.last_error_at = Some(at);
        }
    }

    /// True once something was re-attached or failed.
    pub fn happened(&self) -> bool {
        self.last_at.is_some()
    }
}
