//! Driver names for test plugins: a reused pool `netfs-t0`, `netfs-t1`, ...
//! dockerd remembers every legacy plugin name it has ever seen (used, or
//! found as a socket when it scanned) and, for a volume name it does not
//! know, asks each in turn, retrying a dead socket for ~15 s. A new name
//! per test would make every docker call slower than the last; instead the
//! lowest free name is reused, and while a test process runs, a caretaker
//! thread answers at once ("not running") on every name no test owns.
//!
//! Ownership is an exclusive `flock` on `/run/netfs-test/slot-<n>.lock`,
//! which also works between test processes; the lock file's existence marks
//! a name ever used, the only ones the caretaker serves. It binds a socket
//! only while holding the lock, so it never races an owner's plugin.
//!
//! One more name, `netfs-t64`, lies outside the pool that `acquire` draws
//! from: the test of the caretaker itself takes it, so no plugin can start
//! on it while that test watches the caretaker answer.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use super::mounts::{poll_until, POLL};
use super::plugin::PLUGIN_DIR;

/// The pool `DriverSlot::acquire` draws from.
pub const SLOTS: usize = 64;
/// The name outside the pool, for the caretaker's own test.
const RESERVED: usize = SLOTS;
/// Every name the caretaker may serve: the pool and the reserved one.
const SERVED_SLOTS: usize = SLOTS + 1;
const LOCK_DIR: &str = "/run/netfs-test";
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(120);
const UPKEEP_EVERY: Duration = Duration::from_millis(500);

pub fn slot_name(slot: usize) -> String {
    format!("netfs-t{slot}")
}

pub fn slot_socket(slot: usize) -> PathBuf {
    Path::new(PLUGIN_DIR).join(format!("{}.sock", slot_name(slot)))
}

/// Locks the slot; `create` also marks it used. None if it is owned (or,
/// without `create`, was never used).
fn try_lock(slot: usize, create: bool) -> Option<Flock<File>> {
    fs::create_dir_all(LOCK_DIR).expect("create /run/netfs-test");
    let path = Path::new(LOCK_DIR).join(format!("slot-{slot}.lock"));
    let file = File::options()
        .create(create)
        .truncate(false)
        .write(true)
        .open(&path);
    let file = match file {
        Ok(file) => file,
        Err(_) if !create => return None,
        Err(e) => panic!("open {}: {e}", path.display()),
    };
    Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()
}

/// A driver name owned by one test plugin until dropped.
pub struct DriverSlot {
    slot: usize,
    _lock: Flock<File>,
}

impl DriverSlot {
    /// Takes a free name, waiting (bounded) while all are in use.
    pub fn acquire() -> DriverSlot {
        start_caretaker();
        // The lowest free name: dockerd gets to know as few as possible.
        let mut found = None;
        let ok = poll_until(ACQUIRE_TIMEOUT, || {
            found = (0..SLOTS).find_map(|slot| try_lock(slot, true).map(|lock| (slot, lock)));
            found.is_some()
        });
        assert!(
            ok,
            "all {SLOTS} test driver names busy for {ACQUIRE_TIMEOUT:?}"
        );
        let (slot, lock) = found.expect("a slot");
        DriverSlot::own(slot, lock)
    }

    /// Takes the name outside the pool, waiting (bounded) while another
    /// test process holds it. No `acquire` can take it from its owner, nor
    /// from the caretaker once the owner drops it.
    pub fn reserved() -> DriverSlot {
        start_caretaker();
        let mut found = None;
        let ok = poll_until(ACQUIRE_TIMEOUT, || {
            found = try_lock(RESERVED, true);
            found.is_some()
        });
        assert!(ok, "the reserved driver name busy for {ACQUIRE_TIMEOUT:?}");
        DriverSlot::own(RESERVED, found.expect("the reserved slot"))
    }

    fn own(slot: usize, lock: Flock<File>) -> DriverSlot {
        // A caretaker's socket, or one a crashed test left: the plugin binds anew.
        served()[slot] = None;
        let _ = fs::remove_file(slot_socket(slot));
        DriverSlot { slot, _lock: lock }
    }

    pub fn slot(&self) -> usize {
        self.slot
    }

    pub fn name(&self) -> String {
        slot_name(self.slot)
    }

    pub fn socket(&self) -> PathBuf {
        slot_socket(self.slot)
    }
}

impl Drop for DriverSlot {
    fn drop(&mut self) {
        // Still holding the lock: hand the name straight to the caretaker,
        // so dockerd never finds the socket missing.
        let _ = fs::remove_file(self.socket());
        let fresh = bind(self.slot);
        served()[self.slot] = fresh;
    }
}

/// Starts, once per process, the thread that answers for unowned names.
pub fn start_caretaker() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        fs::create_dir_all(PLUGIN_DIR).expect("create /run/docker/plugins");
        thread::Builder::new()
            .name("driver-caretaker".into())
            .spawn(caretaker)
            .expect("spawn the driver caretaker thread");
        // SAFETY: registers a plain function with no preconditions.
        let registered = unsafe { nix::libc::atexit(remove_served_sockets) };
        assert_eq!(registered, 0, "atexit failed");
    });
}

/// At exit: a socket nobody answers on is what makes dockerd wait, so the
/// caretaker's sockets go with the process.
extern "C" fn remove_served_sockets() {
    for _ in 0..50 {
        let Some(cell) = SERVED.get() else {
            return;
        };
        if let Ok(served) = cell.try_lock() {
            for (slot, entry) in served.iter().enumerate() {
                let path = slot_socket(slot);
                if entry.as_ref().map(|s| s.ino) == fs::metadata(&path).ok().map(|m| m.ino()) {
                    let _ = fs::remove_file(&path);
                }
            }
            return;
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// A socket the caretaker serves, and the inode it had when bound: once
/// the path names another inode, an owner took the slot over.
struct Served {
    listener: UnixListener,
    ino: u64,
}

static SERVED: OnceLock<Mutex<Vec<Option<Served>>>> = OnceLock::new();

fn served() -> MutexGuard<'static, Vec<Option<Served>>> {
    SERVED
        .get_or_init(|| Mutex::new((0..SERVED_SLOTS).map(|_| None).collect()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn caretaker() {
    let mut last_upkeep: Option<Instant> = None;
    loop {
        let mut served = served();
        if last_upkeep.is_none_or(|t| t.elapsed() >= UPKEEP_EVERY) {
            for (slot, entry) in served.iter_mut().enumerate() {
                upkeep(slot, entry);
            }
            last_upkeep = Some(Instant::now());
        }
        for (slot, entry) in served.iter().enumerate() {
            if let Some(s) = entry {
                while let Ok((stream, _)) = s.listener.accept() {
                    let name = slot_name(slot);
                    thread::spawn(move || answer(stream, &name));
                }
            }
        }
        drop(served);
        thread::sleep(POLL);
    }
}

fn upkeep(slot: usize, entry: &mut Option<Served>) {
    let path = slot_socket(slot);
    if let Some(s) = entry {
        if fs::metadata(&path).map(|m| m.ino()).ok() != Some(s.ino) {
            *entry = None;
        }
        return;
    }
    // Bind only under the slot's lock: no owner can be starting a plugin.
    let Some(_lock) = try_lock(slot, false) else {
        return;
    };
    if path.exists() {
        if UnixStream::connect(&path).is_ok() {
            return; // another test process's caretaker answers here
        }
        let _ = fs::remove_file(&path);
    }
    *entry = bind(slot);
}

/// Listens on the slot's socket; the caller holds the slot's lock and has
/// removed any old socket file.
fn bind(slot: usize) -> Option<Served> {
    let path = slot_socket(slot);
    let listener = UnixListener::bind(&path).ok()?;
    let ino = fs::metadata(&path).ok()?.ino();
    listener.set_nonblocking(true).ok()?;
    Some(Served { listener, ino })
}

/// Answers one request the way a plugin that is not running would want
/// dockerd to see it: activation and empty lists succeed, the rest errs.
fn answer(mut stream: UnixStream, name: &str) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut have = buf.len() - head_end;
    while have < length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => have += n,
        }
    }
    let (status, body) = match path.as_str() {
        "/Plugin.Activate" => ("200 OK", r#"{"Implements":["VolumeDriver"]}"#.to_owned()),
        "/VolumeDriver.List" => ("200 OK", r#"{"Volumes":[]}"#.to_owned()),
        "/VolumeDriver.Capabilities" => {
            ("200 OK", r#"{"Capabilities":{"Scope":"local"}}"#.to_owned())
        }
        _ => (
            "500 Internal Server Error",
            format!(r#"{{"Err":"test driver {name} is not running"}}"#),
        ),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/vnd.docker.plugins.v1.1+json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes());
}
