//! The life of one master: `ssh -M -N` on its control socket, started (in
//! its turn at the server's pacing gate) while any volume holds a lease on
//! it, logged in again after it dies, stopped when its last volume leaves.
//! `ControlPersist` is off: netfs, not ssh, decides how long it lives.
//!
//! The reconnect logic ([`run`]) sees the ssh client through [`Ssh`]:
//! [`Client`] runs the real one as a [`Group`]; the unit tests put a scripted
//! one behind it and run backoff under tokio's paused clock.

use std::future::Future;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::process::Command;
use tokio::sync::watch;
use tokio::time::{sleep, Instant};

use super::{ConnState, ConnStatus, Master, Settings};
use crate::marks::MARK_ROOT;
use crate::process::{describe, Group, Output};

pub use crate::marks::MARK_CONNECTION;
const POLL: Duration = Duration::from_millis(10);
/// A master that stayed up this long starts its backoff afresh.
const STABLE: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the reconnect logic does with the ssh client.
pub(super) trait Ssh: Send + Sync + 'static {
    /// One logged-in master process.
    type Session: Send + 'static;

    /// Logs in, in its turn at the server: done once the control socket is
    /// there. On failure nothing is left running; the error says why.
    fn connect(
        &self,
        master: &Master,
    ) -> impl Future<Output = Result<Self::Session, String>> + Send;
    fn pid(session: &Self::Session) -> Option<u32>;
    /// Until it dies; why it did.
    fn died(&self, session: &mut Self::Session) -> impl Future<Output = String> + Send;
    /// Stops it and removes its control socket.
    fn stop(&self, session: &mut Self::Session, master: &Master)
        -> impl Future<Output = ()> + Send;
}

pub(super) async fn run<S: Ssh>(master: Arc<Master>, ssh: S) {
    let mut members = master.members.subscribe();
    let mut backoff = Backoff::default();
    loop {
        if *members.borrow() == 0 {
            publish(&master, |s| {
                s.state = ConnState::Idle;
                s.pid = None;
            });
        }
        if !until_used(&mut members).await {
            return;
        }
        let state = if master.status.borrow().logins == 0 {
            ConnState::Connecting
        } else {
            ConnState::Reconnecting
        };
        publish(&master, |s| s.state = state);
        let login = tokio::select! {
            r = ssh.connect(&master) => Some(r),
            _ = until_unused(&mut members) => None,
        };
        let mut session = match login {
            None => {
                publish(&master, |s| s.state = ConnState::Idle);
                continue;
            }
            Some(Err(reason)) => {
                tracing::warn!(connection = %master.name(), endpoint = %master.key, %reason, "ssh connection failed");
                publish(&master, |s| {
                    s.state = ConnState::Reconnecting;
                    s.failures += 1;
                    s.last_error = Some(reason);
                });
                tokio::select! {
                    _ = sleep(backoff.after_failure()) => {}
                    _ = until_unused(&mut members) => {}
                }
                continue;
            }
            Some(Ok(session)) => session,
        };
        let up_at = Instant::now();
        let pid = S::pid(&session);
        tracing::info!(connection = %master.name(), endpoint = %master.key, pid, "ssh connection up");
        publish(&master, |s| {
            s.state = ConnState::Up;
            s.pid = pid;
            s.logins += 1;
            s.generation += 1;
        });
        tokio::select! {
            reason = ssh.died(&mut session) => {
                ssh.stop(&mut session, &master).await;
                tracing::warn!(connection = %master.name(), endpoint = %master.key, %reason, "ssh connection died");
                publish(&master, |s| {
                    s.state = ConnState::Reconnecting;
                    s.pid = None;
                    s.last_error = Some(reason);
                });
                sleep(backoff.after_death(up_at.elapsed())).await;
            }
            _ = until_unused(&mut members) => {
                ssh.stop(&mut session, &master).await;
                tracing::info!(connection = %master.name(), "ssh connection closed: no volume uses it");
                publish(&master, |s| {
                    s.state = ConnState::Idle;
                    s.pid = None;
                });
                backoff = Backoff::default();
            }
        }
    }
}

/// When to log in again. After a failed login: at once, then 250 ms,
/// doubling up to 30 s. After a death: at once the first time (its volumes
/// are waiting), then as after failures; afresh once a master stayed up for
/// a minute.
#[derive(Debug, Default)]
struct Backoff {
    /// None after a long life or none yet: the next login is at once.
    last: Option<Duration>,
}

impl Backoff {
    fn after_failure(&mut self) -> Duration {
        let wait = match self.last {
            None => Duration::ZERO,
            Some(d) if d.is_zero() => FIRST_BACKOFF,
            Some(d) => (d * 2).min(MAX_BACKOFF),
        };
        self.last = Some(wait);
        wait
    }

    fn after_death(&mut self, lived: Duration) -> Duration {
        if lived >= STABLE {
            self.last = None;
            Duration::ZERO
        } else if self.last.is_some() {
            self.after_failure()
        } else {
            self.last = Some(Duration::ZERO);
            Duration::ZERO
        }
    }
}

/// Waits until a volume holds a lease; false once the master is gone.
async fn until_used(members: &mut watch::Receiver<usize>) -> bool {
    members.wait_for(|n| *n > 0).await.is_ok()
}

/// Waits until no volume holds a lease (never, once the master is gone).
async fn until_unused(members: &mut watch::Receiver<usize>) {
    if members.wait_for(|n| *n == 0).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn publish(master: &Master, change: impl FnOnce(&mut ConnStatus)) {
    master.status.send_modify(|s| {
        let before = s.state;
        change(s);
        if s.state != before {
            s.since = SystemTime::now();
        }
    });
}

/// The real ssh client.
pub(super) struct Client {
    settings: Arc<Settings>,
}

impl Client {
    pub(super) fn new(settings: Arc<Settings>) -> Self {
        Self { settings }
    }
}

impl Ssh for Client {
    type Session = Group;

    async fn connect(&self, master: &Master) -> Result<Group, String> {
        let settings = &self.settings;
        let _turn = settings.pacing.enter(&master.key.server()).await;
        let _ = std::fs::remove_file(&master.socket);
        let mut command = Command::new(&settings.ssh);
        command
            .args(master.key.ssh_args())
            .args(["-o", "BatchMode=yes", "-o", "ServerAliveInterval=15"])
            .args(["-x", "-a", "-M", "-N", "-o", "ControlMaster=yes", "-o"])
            .arg(format!("ControlPath={}", master.socket.display()))
            .args(["-o", "ControlPersist=no", "--", &master.key.host])
            .env(MARK_CONNECTION, master.id.to_string())
            .env(MARK_ROOT, &settings.mark_root)
            .kill_on_drop(true)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let output = Output {
            label: master.name(),
            secrets: Arc::from([]),
            stdout: false,
        };
        let mut session =
            Group::spawn(&mut command, output).map_err(|e| format!("cannot start ssh: {e}"))?;
        tracing::info!(connection = %master.name(), endpoint = %master.key, pid = session.pid(), "ssh connection started");
        let deadline = Instant::now() + settings.connect_timeout;
        loop {
            if master.socket.exists() {
                return Ok(session);
            }
            if Instant::now() >= deadline {
                self.stop(&mut session, master).await;
                return Err(format!(
                    "not logged in within {}{}",
                    humantime::format_duration(settings.connect_timeout),
                    session.tail()
                ));
            }
            tokio::select! {
                status = session.wait() => {
                    // Its last words reach the tail a moment after it exits.
                    session.drain().await;
                    let reason = format!("ssh exited ({}){}", describe(status), session.tail());
                    self.stop(&mut session, master).await;
                    return Err(reason);
                }
                _ = sleep(POLL) => {}
            }
        }
    }

    fn pid(session: &Group) -> Option<u32> {
        session.pid()
    }

    async fn died(&self, session: &mut Group) -> String {
        let status = session.wait().await;
        session.drain().await;
        format!("ssh exited ({}){}", describe(status), session.tail())
    }

    async fn stop(&self, session: &mut Group, master: &Master) {
        session.stop(self.settings.stop_timeout).await;
        let _ = std::fs::remove_file(&master.socket);
    }
}

#[cfg(test)]
mod tests {
    //! The reconnect logic under tokio's paused clock, with a scripted ssh.

    use std::collections::VecDeque;
    use std::sync::Mutex;

    use tokio::sync::Notify;

    use super::*;
    use crate::backend::{Endpoint, Server};
    use crate::options::MountOptions;

    /// What one login does.
    enum Login {
        Fails,
        /// Logged in; dies after this long (never if None).
        Up(Option<Duration>),
    }

    #[derive(Default)]
    struct Log {
        script: VecDeque<Login>,
        /// When each login was tried, from the test's start.
        tries: Vec<Duration>,
        stops: u32,
    }

    #[derive(Clone)]
    struct Scripted {
        log: Arc<Mutex<Log>>,
        start: Instant,
        tried: Arc<Notify>,
    }

    impl Scripted {
        fn new(script: impl IntoIterator<Item = Login>) -> Self {
            Self {
                log: Arc::new(Mutex::new(Log {
                    script: script.into_iter().collect(),
                    ..Log::default()
                })),
                start: Instant::now(),
                tried: Arc::new(Notify::new()),
            }
        }

        fn log(&self) -> std::sync::MutexGuard<'_, Log> {
            self.log.lock().unwrap()
        }

        /// Until `n` logins were tried.
        async fn tries(&self, n: usize) -> Vec<Duration> {
            loop {
                let notified = self.tried.notified();
                if self.log().tries.len() >= n {
                    return self.log().tries.clone();
                }
                notified.await;
            }
        }
    }

    impl Ssh for Scripted {
        type Session = Option<Duration>;

        async fn connect(&self, _: &Master) -> Result<Option<Duration>, String> {
            let next = {
                let mut log = self.log();
                log.tries.push(self.start.elapsed());
                log.script.pop_front().unwrap_or(Login::Up(None))
            };
            self.tried.notify_waiters();
            match next {
                Login::Fails => Err("Permission denied".into()),
                Login::Up(life) => Ok(life),
            }
        }

        fn pid(_: &Option<Duration>) -> Option<u32> {
            Some(4242)
        }

        async fn died(&self, life: &mut Option<Duration>) -> String {
            match life {
                Some(life) => sleep(*life).await,
                None => std::future::pending().await,
            }
            "ssh exited (exit status 255)".into()
        }

        async fn stop(&self, _: &mut Option<Duration>, _: &Master) {
            self.log().stops += 1;
        }
    }

    fn master() -> Arc<Master> {
        let endpoint = Endpoint {
            user: Some("u".into()),
            server: Server::Tcp {
                host: "nas".into(),
                port: 22,
            },
        };
        let key =
            super::super::key(&endpoint, &[], &MountOptions::parse("").unwrap(), false).unwrap();
        Arc::new(Master::new(1, key, "/nonexistent/1.sock".into(), 10))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn start(ssh: &Scripted) -> Arc<Master> {
        let master = master();
        master.members.send_modify(|n| *n += 1);
        tokio::spawn(run(master.clone(), ssh.clone()));
        master
    }

    #[tokio::test(start_paused = true)]
    async fn failed_logins_are_tried_again_at_once_then_doubling_up_to_30_s() {
        let ssh = Scripted::new((0..10).map(|_| Login::Fails));
        let master = start(&ssh);
        let tries = ssh.tries(11).await;
        let gaps: Vec<Duration> = tries.windows(2).map(|w| w[1] - w[0]).collect();
        let want = [0, 250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000];
        assert_eq!(gaps, want.map(ms));
        let status = master.status();
        assert_eq!(status.failures, 10);
        assert_eq!(status.last_error.as_deref(), Some("Permission denied"));
        // The 11th login holds.
        tokio::task::yield_now().await;
        let status = master.status();
        assert_eq!(status.state, ConnState::Up);
        assert_eq!(
            (status.logins, status.generation, status.pid),
            (1, 1, Some(4242))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_death_logs_in_at_once_quick_deaths_back_off_a_long_life_starts_afresh() {
        let ssh = Scripted::new([
            Login::Up(Some(Duration::from_secs(5))),
            Login::Up(Some(ms(100))),
            Login::Up(Some(ms(100))),
            Login::Up(Some(Duration::from_secs(61))),
            Login::Up(None),
        ]);
        let master = start(&ssh);
        let tries = ssh.tries(5).await;
        let gaps: Vec<Duration> = tries.windows(2).map(|w| w[1] - w[0]).collect();
        // Alive 5 s then at once; 100 ms then 250 ms; 100 ms then 500 ms;
        // a minute and more then at once.
        assert_eq!(gaps, [5000, 350, 600, 61000].map(ms));
        tokio::task::yield_now().await;
        let status = master.status();
        assert_eq!(status.state, ConnState::Up);
        assert_eq!((status.logins, status.generation), (5, 5));
        assert_eq!(
            ssh.log().stops,
            4,
            "each dead ssh was stopped (its socket removed)"
        );
        assert_eq!(
            status.last_error.as_deref(),
            Some("ssh exited (exit status 255)")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_volume_leaving_stops_it_and_a_new_one_logs_in_at_once() {
        let ssh = Scripted::new([Login::Fails, Login::Fails, Login::Fails]);
        let master = start(&ssh);
        ssh.tries(3).await;
        // Leaves while it waits 500 ms for its 4th try: no more logins.
        master.members.send_modify(|n| *n -= 1);
        sleep(Duration::from_secs(120)).await;
        assert_eq!(ssh.log().tries.len(), 3);
        assert_eq!(master.status().state, ConnState::Idle);
        // A volume comes: a login at once, and it holds.
        let back = Instant::now() - ssh.start;
        master.members.send_modify(|n| *n += 1);
        let tries = ssh.tries(4).await;
        assert_eq!(tries[3], back);
        tokio::task::yield_now().await;
        assert_eq!(master.status().state, ConnState::Up);
        // It leaves again: the running ssh is stopped.
        master.members.send_modify(|n| *n -= 1);
        sleep(ms(1)).await;
        assert_eq!(ssh.log().stops, 1);
        let status = master.status();
        assert_eq!((status.state, status.pid), (ConnState::Idle, None));
    }
}
