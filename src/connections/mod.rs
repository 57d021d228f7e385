//! Shared ssh connections: one supervised `ssh` master per endpoint (and
//! per [`MaxSessions`](Settings::sessions) volumes), each on a private
//! control socket; sshfs volumes run their ssh as a multiplexing client of
//! it, so a volume after the first mounts with no key exchange.
//!
//! The pool only hands out places ([`Lease`]s) on masters and keeps each
//! master's process running while it has any; the volume's supervisor
//! decides when to take one, waits for the master to be up, and restarts
//! the volume when the master it used is gone.

mod key;
mod master;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use tokio::sync::watch;

pub use key::{key, ConnKey, Unshared, UNSHAREABLE};
pub use master::MARK_CONNECTION;

use crate::backend::Server;
use crate::pacing::{Gate, Permit};

/// OpenSSH's default `MaxSessions`: sessions one connection may carry.
pub const DEFAULT_SESSIONS: usize = 10;

/// The settings every master of a plugin shares.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The ssh client to run as master.
    pub ssh: PathBuf,
    /// Holds the control sockets; mode 0700.
    pub dir: PathBuf,
    /// Volumes per master (the server's `MaxSessions`).
    pub sessions: usize,
    /// How long a master may take to log in.
    pub connect_timeout: Duration,
    pub stop_timeout: Duration,
    /// Marks the masters as this netfs's (its mount root).
    pub mark_root: PathBuf,
    /// Logins take turns per server with the volumes' own start-ups.
    pub pacing: Arc<Gate<Server>>,
}

/// Where a master is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnState {
    /// No volume uses it: no process.
    Idle,
    Connecting,
    Up,
    /// It died, or its login failed; it is tried again while volumes use it.
    Reconnecting,
}

impl ConnState {
    pub const ALL: [Self; 4] = [Self::Idle, Self::Connecting, Self::Up, Self::Reconnecting];

    /// The name Status and metrics show.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Connecting => "connecting",
            Self::Up => "up",
            Self::Reconnecting => "reconnecting",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ConnStatus {
    pub state: ConnState,
    pub pid: Option<u32>,
    pub since: SystemTime,
    /// Logins made (1 while it never died).
    pub logins: u32,
    pub last_error: Option<String>,
    /// Grows with every login: a volume started through an older one
    /// lost its connection.
    pub generation: u64,
    /// Grows with every failed login, so waiters see a failure once.
    pub failures: u64,
    /// Sessions the server refused on this connection.
    pub refused: u32,
    /// What netfs did about the last one, in words.
    pub last_refusal: Option<String>,
}

/// One master: its control socket, its volumes, its state.
pub struct Master {
    id: u64,
    key: ConnKey,
    socket: PathBuf,
    /// Volumes it may carry; lowered when the server refused a session.
    capacity: AtomicUsize,
    /// Volumes holding a lease: the process runs while this is above 0.
    members: watch::Sender<usize>,
    status: watch::Sender<ConnStatus>,
}

impl Master {
    fn new(id: u64, key: ConnKey, socket: PathBuf, sessions: usize) -> Self {
        Self {
            id,
            key,
            socket,
            capacity: AtomicUsize::new(sessions.max(1)),
            members: watch::Sender::new(0),
            status: watch::Sender::new(ConnStatus {
                state: ConnState::Idle,
                pid: None,
                since: SystemTime::now(),
                logins: 0,
                last_error: None,
                generation: 0,
                failures: 0,
                refused: 0,
                last_refusal: None,
            }),
        }
    }

    pub fn name(&self) -> String {
        format!("ssh-{}", self.id)
    }

    pub fn status(&self) -> ConnStatus {
        self.status.borrow().clone()
    }

    /// Volumes on it now.
    pub fn sessions(&self) -> usize {
        *self.members.borrow()
    }

    /// The endpoint it logs in to (`user@host:port` and what else makes
    /// the connection, never a secret).
    pub fn endpoint(&self) -> String {
        self.key.to_string()
    }

    fn has_room(&self) -> bool {
        self.sessions() < self.capacity.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Master {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Master")
            .field("id", &self.id)
            .field("key", &self.key.to_string())
            .finish()
    }
}

/// Every master of this netfs, by the key of its connection.
pub struct Connections {
    settings: Arc<Settings>,
    pool: Mutex<HashMap<ConnKey, Vec<Arc<Master>>>>,
    next_id: AtomicU64,
    /// Sessions opening on one server at once (see [`Lease::open`]).
    opening: Arc<Gate<Server>>,
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("dir", &self.settings.dir)
            .finish()
    }
}

impl Connections {
    /// The pool; makes its socket directory (0700) and clears sockets an
    /// earlier run left behind (ssh would not bind over them).
    pub fn new(settings: Settings) -> std::io::Result<Arc<Self>> {
        make_private_dir(&settings.dir)?;
        if let Ok(entries) = std::fs::read_dir(&settings.dir) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().ends_with(".sock") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(Arc::new(Self {
            opening: Arc::new(Gate::new(settings.sessions)),
            settings: Arc::new(settings),
            pool: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }))
    }

    /// A place on a master of `key` with room, or on a new one (spawned as
    /// a task; its process starts at once). Call from within the runtime.
    pub fn join(&self, key: &ConnKey) -> Lease {
        let mut pool = self.lock();
        let masters = pool.entry(key.clone()).or_default();
        let master = match masters.iter().find(|m| m.has_room()) {
            Some(m) => m.clone(),
            None => {
                let master = self.new_master(key);
                masters.push(master.clone());
                master
            }
        };
        master.members.send_modify(|n| *n += 1);
        Lease {
            master,
            opening: self.opening.clone(),
        }
    }

    fn new_master(&self, key: &ConnKey) -> Arc<Master> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let socket = self.settings.dir.join(format!("{id}.sock"));
        let master = Arc::new(Master::new(id, key.clone(), socket, self.settings.sessions));
        let client = master::Client::new(self.settings.clone());
        tokio::spawn(master::run(master.clone(), client));
        master
    }

    /// Every master, for status and tests.
    pub fn masters(&self) -> Vec<Arc<Master>> {
        let pool = self.lock();
        let mut all: Vec<Arc<Master>> = pool.values().flatten().cloned().collect();
        all.sort_by_key(|m| m.id);
        all
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnKey, Vec<Arc<Master>>>> {
        // The map holds no invariant a panic could break half-way.
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// A volume's place on a master, from its first start until it is stopped
/// (kept across its restarts, so the master outlives a crash of sshfs).
pub struct Lease {
    master: Arc<Master>,
    opening: Arc<Gate<Server>>,
}

/// A volume cannot go through its shared connection: the master did not
/// come up.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the shared ssh connection {connection} to {endpoint} is not up: {reason}")]
pub struct NotUp {
    pub connection: String,
    pub endpoint: String,
    /// What the ssh master wrote on stderr, then maybe a hint.
    pub reason: String,
}

impl Lease {
    pub fn master(&self) -> &Arc<Master> {
        &self.master
    }

    /// Waits until the master is up: its control socket and the login it
    /// holds, or the error of its next failed login.
    pub async fn ready(&self) -> Result<Up, NotUp> {
        let mut rx = self.master.status.subscribe();
        let failures = rx.borrow().failures;
        let status = rx
            .wait_for(|s| s.state == ConnState::Up || s.failures > failures)
            .await
            .map(|s| s.clone());
        match status {
            Ok(s) if s.state == ConnState::Up => Ok(Up {
                generation: s.generation,
                client_args: client_args(&self.master.socket),
            }),
            Ok(s) => Err(self.not_up(s.last_error.unwrap_or_default())),
            Err(_) => Err(self.not_up("its supervisor is gone".to_owned())),
        }
    }

    /// Waits for a turn to open a session on the server: at most
    /// `MaxSessions` sessions start on one server at once, whatever the
    /// number of masters. Held from the spawn of the volume's tool until
    /// it has mounted or failed. A session costs the server a process
    /// start-up, and with an external `sftp-server` (Debian's stock
    /// configuration) the user's shell and its start-up files too: a
    /// hundred at once on a small server each take seconds, their tools
    /// time out and are killed, and the server counts their sessions until
    /// its side of each has started and seen the client gone, refusing
    /// the restarts (`MaxSessions`).
    pub async fn open(&self) -> Permit {
        self.opening.enter(&self.master.key.server()).await
    }

    /// Returns once the login of `generation` is gone.
    pub async fn lost(&self, generation: u64) -> String {
        let mut rx = self.master.status.subscribe();
        let status = rx
            .wait_for(|s| s.generation != generation || s.state != ConnState::Up)
            .await
            .map(|s| s.last_error.clone().unwrap_or_default());
        match status {
            Ok(why) => format!("its ssh connection {} was lost: {why}", self.master.name()),
            Err(_) => std::future::pending().await,
        }
    }

    /// The server refused `volume` a session on this master: it takes no
    /// more than it has now (that one left out), and the volume leaves it
    /// for another (the caller drops the lease and joins again).
    pub fn refused(&self, volume: &str) {
        let now = self.master.sessions().saturating_sub(1).max(1);
        self.master.capacity.store(now, Ordering::Relaxed);
        let what = format!(
            "the server refused a session to volume {volume} with {now} open: this connection \
             now takes at most {now} volumes, and {volume} was placed on another"
        );
        tracing::warn!(
            connection = %self.master.name(), endpoint = %self.master.key, sessions = now, %volume,
            "the server refused another session on this connection; the volume goes to another"
        );
        self.master.status.send_modify(|s| {
            s.refused += 1;
            s.last_refusal = Some(what);
        });
    }

    /// The error of a master that is not up, with `reason`.
    pub fn not_up(&self, reason: String) -> NotUp {
        NotUp {
            connection: self.master.name(),
            endpoint: self.master.key.to_string(),
            reason,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.master
            .members
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.master.fmt(f)
    }
}

/// A master that is up, as a volume's start needs it.
#[derive(Debug)]
pub struct Up {
    pub generation: u64,
    /// What makes sshfs's ssh a client of the master (see [`client_args`]).
    pub client_args: Vec<String>,
}

/// The ssh options of a multiplexing client: the master's socket, and no
/// connection of its own if the master is gone or the server refuses a
/// session there (ssh falls back to a login of its own otherwise, which
/// would escape pacing and the session count).
pub fn client_args(socket: &Path) -> Vec<String> {
    vec![
        "-o".to_owned(),
        format!(
            "ControlMaster=no,ControlPath={},ProxyCommand=false,BatchMode=yes",
            socket.display()
        ),
    ]
}

/// What a multiplexing client says when the server refused it a session
/// on the master's connection (OpenSSH's `mux_client_request_session:
/// session request failed: Session open refused by peer`): the server
/// holds its `MaxSessions` on that connection, counting sessions whose
/// clients are gone but whose server side has not ended yet.
const REFUSED_SESSION: &str = "session request failed";

/// True if a tool's stderr says its ssh was refused a session.
pub fn refused_session(stderr: &str) -> bool {
    stderr.contains(REFUSED_SESSION)
}

/// The connection as a volume's Status shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionReport {
    pub id: String,
    pub endpoint: String,
    pub state: ConnState,
    pub pid: Option<u32>,
    /// RFC 3339.
    pub since: String,
    pub sessions: usize,
    pub logins: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Once the server refused a session: what it may carry now, the
    /// sessions refused, and what netfs did about the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused_sessions: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_refusal: Option<String>,
}

impl ConnectionReport {
    pub fn of(master: &Master) -> Self {
        let s = master.status();
        let refused = s.last_refusal.is_some();
        Self {
            id: master.name(),
            endpoint: master.key.to_string(),
            state: s.state,
            pid: s.pid,
            since: humantime::format_rfc3339_seconds(s.since).to_string(),
            sessions: master.sessions(),
            logins: s.logins,
            last_error: s.last_error,
            capacity: refused.then(|| master.capacity.load(Ordering::Relaxed)),
            refused_sessions: refused.then_some(s.refused),
            last_refusal: s.last_refusal,
        }
    }
}

#[cfg(test)]
mod tests;
