//! Driver names for test plugins: a fixed pool `netfs-t0` .. `netfs-t31`.
//! dockerd remembers every legacy plugin name it has ever used and, for a
//! volume name it does not know or for `docker volume ls`, asks each one,
//! retrying a missing socket for ~15 s. Unique names per test would make
//! every run slower than the last, so names are reused, and whenever no
//! test owns a name a caretaker thread answers on its socket at once
//! ("not running"), so dockerd never waits for it.
//!
//! Ownership is an exclusive `flock` on `/run/netfs-test/slot-<n>.lock`,
//! which also works between test processes. The caretaker binds a socket
//! only while holding that lock, so it never races an owner's plugin.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use super::mounts::{poll_until, POLL};
use super::plugin::PLUGIN_DIR;

pub const SLOTS: usize = 32;
const LOCK_DIR: &str = "/run/netfs-test";
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(120);
const UPKEEP_EVERY: Duration = Duration::from_millis(500);

pub fn slot_name(slot: usize) -> String {
    format!("netfs-t{slot}")
}

pub fn slot_socket(slot: usize) -> PathBuf {
    Path::new(PLUGIN_DIR).join(format!("{}.sock", slot_name(slot)))
}

fn try_lock(slot: usize) -> Option<Flock<File>> {
    fs::create_dir_all(LOCK_DIR).expect("create /run/netfs-test");
    let path = Path::new(LOCK_DIR).join(format!("slot-{slot}.lock"));
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
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
        // Start past the last name taken here: a name just given back goes
        // to the caretaker rather than straight to the next test.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let first = (std::process::id() as usize + NEXT.fetch_add(1, Ordering::Relaxed)) % SLOTS;
        let mut found = None;
        let ok = poll_until(ACQUIRE_TIMEOUT, || {
            found = (0..SLOTS)
                .map(|i| (first + i) % SLOTS)
                .find_map(|slot| try_lock(slot).map(|lock| (slot, lock)));
            found.is_some()
        });
        assert!(
            ok,
            "all {SLOTS} test driver names busy for {ACQUIRE_TIMEOUT:?}"
        );
        let (slot, lock) = found.expect("a slot");
        // A caretaker's socket, or one a crashed test left: the plugin binds anew.
        served()[slot] = None;
        let _ = fs::remove_file(slot_socket(slot));
        DriverSlot { slot, _lock: lock }
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
    });
}

/// A socket the caretaker serves, and the inode it had when bound: once
/// the path names another inode, an owner took the slot over.
struct Served {
    listener: UnixListener,
    ino: u64,
}

fn served() -> MutexGuard<'static, Vec<Option<Served>>> {
    static SERVED: OnceLock<Mutex<Vec<Option<Served>>>> = OnceLock::new();
    SERVED
        .get_or_init(|| Mutex::new((0..SLOTS).map(|_| None).collect()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn caretaker() {
    let mut last_upkeep: Option<Instant> = None;
    loop {
        let mut served = served();
        if last_upkeep.map_or(true, |t| t.elapsed() >= UPKEEP_EVERY) {
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
    let Some(_lock) = try_lock(slot) else {
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
