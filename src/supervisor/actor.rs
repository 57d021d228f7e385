//! The supervisor task: a loop over requests (start, restore, stop) and
//! events of the running process (it died, a retry is due). A crash is
//! followed by a restart after a backoff; too many crashes in a sliding
//! minute and the volume is `failed` until the next start, which tries
//! afresh at once with the budget counting again from there (Status keeps
//! the restart count and the last error). While a start is mounting, a
//! stop cancels it and other starts wait for its outcome. A tool that
//! connects to a server is spawned only in its turn there (see
//! `crate::pacing`), held until it has mounted or failed.

use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, timeout, Instant};

use super::budget::{Budget, Verdict};
use super::child::Watch;
use super::tool::Tool;
use super::{Policy, ProcState, ProcessError, ProcessSpec, ProcessStatus, Request};
use crate::backend::Server;
use crate::config::RecoveryMode;
use crate::connections::{Lease, REFUSED_SESSION};
use crate::pacing::Permit;

enum Phase<R> {
    /// Nothing runs: never started, stopped, or a start failed.
    Idle,
    Up(Box<R>),
    /// Waiting to start again after a crash or a failed restart.
    Backoff {
        until: Instant,
    },
    /// Crashed too often: nothing runs until the next start.
    GaveUp,
}

enum Event {
    Died(String),
    Detached,
    RetryDue,
}

/// How a launch ended.
enum Outcome {
    Mounted,
    Failed(ProcessError),
    /// A stop request (or the end of the handle) cancelled it.
    Cancelled,
}

type Reply = oneshot::Sender<Result<(), ProcessError>>;

struct Supervisor<T: Tool> {
    tool: T,
    spec: ProcessSpec,
    policy: Policy,
    status: watch::Sender<ProcessStatus>,
    phase: Phase<T::Run>,
    budget: Budget,
    /// Its place on a shared ssh connection: taken at the first start,
    /// kept across restarts (the master outlives a crash of sshfs), given
    /// up when the volume stops or fails.
    lease: Option<Lease>,
    /// The login of the master the running tool goes through.
    through: Option<u64>,
    /// Every handle is gone: stop and end the task.
    closed: bool,
}

pub async fn run<T: Tool>(
    tool: T,
    spec: ProcessSpec,
    policy: Policy,
    mut rx: mpsc::Receiver<Request>,
    status: watch::Sender<ProcessStatus>,
) {
    let mut sup = Supervisor {
        tool,
        budget: Budget::new(policy.max_restarts_per_min),
        spec,
        policy,
        status,
        phase: Phase::Idle,
        lease: None,
        through: None,
        closed: false,
    };
    while !sup.closed {
        tokio::select! {
            request = rx.recv() => match request {
                Some(Request::Start(reply)) => {
                    let result = sup.start(&mut rx, false).await;
                    let _ = reply.send(result);
                }
                Some(Request::Restore(reply)) => {
                    let result = sup.start(&mut rx, true).await;
                    let _ = reply.send(result);
                }
                Some(Request::Stop(reply)) => {
                    sup.stop().await;
                    let _ = reply.send(());
                }
                None => sup.closed = true,
            },
            event = sup.next_event() => match event {
                Event::Died(reason) => sup.died(reason).await,
                Event::Detached => sup.publish(ProcState::Mounted, None, None),
                Event::RetryDue => sup.retry(&mut rx).await,
            },
        }
    }
    sup.stop().await;
}

impl<T: Tool> Supervisor<T> {
    fn publish(&self, state: ProcState, pid: Option<u32>, error: Option<String>) {
        self.status.send_modify(|s| {
            if s.state != state {
                s.since = SystemTime::now();
            }
            s.state = state;
            s.pid = pid;
            if error.is_some() {
                s.last_error = error;
            }
        });
    }

    /// Waits for something to happen; never completes while idle or given up.
    async fn next_event(&mut self) -> Event {
        match &mut self.phase {
            Phase::Idle | Phase::GaveUp => std::future::pending().await,
            Phase::Backoff { until } => {
                sleep_until(*until).await;
                Event::RetryDue
            }
            Phase::Up(running) => {
                let every = self.policy.health_interval;
                let watch = self.tool.watch(running, &self.spec, every);
                let watched = match (&self.lease, self.through) {
                    (Some(lease), Some(login)) => tokio::select! {
                        w = watch => w,
                        why = lease.lost(login) => Watch::Died(why),
                    },
                    _ => watch.await,
                };
                match watched {
                    Watch::Died(reason) => Event::Died(reason),
                    Watch::Detached => Event::Detached,
                }
            }
        }
    }

    /// Start or Restore: makes sure the process runs and is mounted. With
    /// `keep_trying`, a failure leaves a retry scheduled (plugin start).
    async fn start(
        &mut self,
        rx: &mut mpsc::Receiver<Request>,
        keep_trying: bool,
    ) -> Result<(), ProcessError> {
        if let Phase::Up(running) = &mut self.phase {
            match self.tool.check_now(running, &self.spec).await {
                None => return Ok(()),
                Some(reason) => self.died(reason).await,
            }
        }
        let restarting = match &self.phase {
            Phase::GaveUp => {
                tracing::info!(volume = %self.spec.name, "starting afresh after giving up");
                self.budget.reset();
                false
            }
            Phase::Backoff { .. } => true,
            Phase::Idle | Phase::Up(_) => false,
        };
        if restarting {
            self.status.send_modify(|s| s.restarts += 1);
        }
        let turn_within = (!keep_trying).then(|| turn_timeout(self.policy.mount_timeout));
        match self.launch(rx, restarting, turn_within).await {
            Outcome::Mounted => Ok(()),
            Outcome::Cancelled => Err(ProcessError::Stopped),
            Outcome::Failed(e) => {
                if restarting || keep_trying {
                    self.back_off(format!("start failed: {e}"));
                } else {
                    self.phase = Phase::Idle;
                    self.leave_connection();
                    self.publish(ProcState::Failed, None, Some(e.to_string()));
                }
                Err(e)
            }
        }
    }

    /// Spawns the tool and waits until it is mounted, while still taking
    /// requests: a start waits for the same outcome, a stop cancels. With
    /// `turn_within`, a start that cannot get its turn at the server in
    /// that time fails (a caller waits for it); without, it waits its turn.
    async fn launch(
        &mut self,
        rx: &mut mpsc::Receiver<Request>,
        restarting: bool,
        turn_within: Option<Duration>,
    ) -> Outcome {
        let mut waiting: Vec<Reply> = Vec::new();
        let mut stop_reply = None;
        let mut outcome = self
            .mount(rx, restarting, turn_within, &mut waiting, &mut stop_reply)
            .await;
        // A session the server refused: the master is full, take a place
        // on another (a new one if need be).
        for _ in 0..REFUSED_RETRIES {
            match &outcome {
                Outcome::Failed(e)
                    if self.lease.is_some() && e.to_string().contains(REFUSED_SESSION) =>
                {
                    if let Some(lease) = self.lease.take() {
                        lease.refused();
                    }
                    outcome = self
                        .mount(rx, restarting, turn_within, &mut waiting, &mut stop_reply)
                        .await;
                }
                _ => break,
            }
        }
        for reply in waiting {
            let _ = reply.send(match &outcome {
                Outcome::Mounted => Ok(()),
                Outcome::Failed(e) => Err(e.clone()),
                Outcome::Cancelled => Err(ProcessError::Stopped),
            });
        }
        if let Some(reply) = stop_reply {
            let _ = reply.send(());
        }
        outcome
    }

    async fn mount(
        &mut self,
        rx: &mut mpsc::Receiver<Request>,
        restarting: bool,
        turn_within: Option<Duration>,
        waiting: &mut Vec<Reply>,
        stop_reply: &mut Option<oneshot::Sender<()>>,
    ) -> Outcome {
        let state = if restarting {
            ProcState::Restarting
        } else {
            ProcState::Mounting
        };
        self.publish(state, None, None);
        let mut through_master = None;
        // Held from the spawn until mounted or failed (see crate::pacing).
        let _turn = match self.spec.endpoint.as_ref() {
            // A client of a master: no login of its own, so no turn; the
            // master took one for its login.
            _ if self.spec.shared.is_some() => {
                match self.connection(rx, waiting, stop_reply).await {
                    Some(Ok(spec)) => through_master = Some(spec),
                    Some(Err(e)) => {
                        self.phase = Phase::Idle;
                        return Outcome::Failed(e);
                    }
                    None => {
                        self.leave_connection();
                        return self.stopped_waiting("its ssh connection");
                    }
                }
                None
            }
            None => None,
            Some(endpoint) => {
                let turn = self.turn(&endpoint.server, turn_within);
                match take_requests(rx, &mut self.closed, waiting, stop_reply, turn).await {
                    Some(Ok(permit)) => Some(permit),
                    Some(Err(e)) => {
                        self.phase = Phase::Idle;
                        return Outcome::Failed(e);
                    }
                    None => return self.stopped_waiting("its turn"),
                }
            }
        };
        let mut running = match self
            .tool
            .spawn(through_master.as_ref().unwrap_or(&self.spec))
        {
            Ok(running) => running,
            Err(e) => return Outcome::Failed(e),
        };
        self.publish(state, T::pid(&running), None);
        let ready = self.tool.wait_ready(&mut running, &self.spec, &self.policy);
        match take_requests(rx, &mut self.closed, waiting, stop_reply, ready).await {
            Some(Ok(())) => {
                let pid = T::pid(&running);
                tracing::info!(volume = %self.spec.name, pid, "mounted");
                self.phase = Phase::Up(Box::new(running));
                self.budget.mounted();
                self.status.send_modify(|s| s.generation += 1);
                self.publish(ProcState::Mounted, pid, None);
                Outcome::Mounted
            }
            Some(Err(e)) => {
                self.phase = Phase::Idle;
                Outcome::Failed(e)
            }
            None => {
                tracing::info!(volume = %self.spec.name, "stopped while mounting");
                self.tool.stop(&mut running, &self.spec, &self.policy).await;
                self.phase = Phase::Idle;
                self.budget.reset();
                self.publish(ProcState::Stopped, None, None);
                Outcome::Cancelled
            }
        }
    }

    /// A stop came while a start waited for `what`, before any spawn.
    fn stopped_waiting(&mut self, what: &str) -> Outcome {
        tracing::info!(volume = %self.spec.name, "stopped while waiting for {what}");
        self.phase = Phase::Idle;
        self.budget.reset();
        self.publish(ProcState::Stopped, None, None);
        Outcome::Cancelled
    }

    /// Takes a place on a shared connection (once) and waits for its
    /// master to be up; the spec to spawn, with the options that make the
    /// tool's ssh a client of it.
    async fn connection(
        &mut self,
        rx: &mut mpsc::Receiver<Request>,
        waiting: &mut Vec<Reply>,
        stop_reply: &mut Option<oneshot::Sender<()>>,
    ) -> Option<Result<ProcessSpec, ProcessError>> {
        let shared = self.spec.shared.as_ref()?;
        let lease = self
            .lease
            .get_or_insert_with(|| shared.pool.join(&shared.key));
        let master = lease.master().clone();
        self.status
            .send_modify(|s| s.connection = Some(master.clone()));
        let wait = timeout(self.policy.mount_timeout, lease.ready());
        let up = match take_requests(rx, &mut self.closed, waiting, stop_reply, wait).await? {
            Ok(up) => up,
            Err(_) => {
                return Some(Err(ProcessError::Connection {
                    connection: master.name(),
                    endpoint: shared.key.to_string(),
                    reason: format!(
                        "not up within {}",
                        humantime::format_duration(self.policy.mount_timeout)
                    ),
                }))
            }
        };
        Some(up.map(|up| {
            self.through = Some(up.generation);
            let mut spec = self.spec.clone();
            spec.invocation.args.extend(up.client_args);
            spec
        }))
    }

    /// The volume runs through a master whose login it started with is up.
    fn master_still_up(&self) -> bool {
        match (&self.lease, self.through) {
            (Some(lease), Some(login)) => {
                let s = lease.master().status();
                s.state == crate::connections::ConnState::Up && s.generation == login
            }
            _ => false,
        }
    }

    /// Gives up the volume's place on its shared connection: the master
    /// stops when no volume holds one.
    fn leave_connection(&mut self) {
        self.lease = None;
        self.through = None;
        self.status.send_modify(|s| s.connection = None);
    }

    /// Waits for a turn to start a tool that connects to `server`.
    fn turn(
        &self,
        server: &Server,
        within: Option<Duration>,
    ) -> impl Future<Output = Result<Permit, ProcessError>> + 'static {
        let gate = self.policy.pacing.clone();
        let server = server.clone();
        let name = self.spec.name.clone();
        async move {
            if gate.in_flight(&server) >= gate.limit() {
                tracing::debug!(volume = %name, %server, "waiting for a turn to start");
            }
            let enter = gate.enter(&server);
            match within {
                None => Ok(enter.await),
                Some(limit) => timeout(limit, enter)
                    .await
                    .map_err(|_| ProcessError::NoTurn {
                        server: server.to_string(),
                        limit: gate.limit(),
                        timeout: humantime::format_duration(limit).to_string(),
                    }),
            }
        }
    }

    async fn stop(&mut self) {
        // Only what this supervisor started is stopped: an idle one must not
        // touch a mountpoint it never mounted.
        if let Phase::Up(mut running) = std::mem::replace(&mut self.phase, Phase::Idle) {
            self.tool.stop(&mut running, &self.spec, &self.policy).await;
            tracing::info!(volume = %self.spec.name, "volume process stopped");
        }
        self.leave_connection();
        self.budget.reset();
        self.publish(ProcState::Stopped, None, None);
    }

    /// The process died or its mount stopped answering: clean up what is
    /// left, then restart after a backoff, or give up.
    async fn died(&mut self, reason: String) {
        let Phase::Up(mut running) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return;
        };
        self.tool.stop(&mut running, &self.spec, &self.policy).await;
        let reason = format!("{reason}{}", T::tail(&running));
        tracing::warn!(volume = %self.spec.name, %reason, "volume process died");
        if self.policy.recovery == RecoveryMode::Ignore {
            let why = format!(
                "{reason}; not restarted (--volume-process-recovery-mode=ignore); the next Mount starts it again"
            );
            self.leave_connection();
            self.publish(ProcState::Failed, None, Some(why));
            return;
        }
        let now = Instant::now();
        match self.budget.crash(now) {
            // Through a master that is still up, a restart costs the server
            // no login: the first one in the window goes at once (the
            // budget still bounds a crash loop).
            Verdict::RetryAt(_) if self.budget.first_crash() && self.master_still_up() => {
                self.phase = Phase::Backoff { until: now };
                self.publish(ProcState::Restarting, None, Some(reason));
            }
            Verdict::RetryAt(until) => {
                self.phase = Phase::Backoff { until };
                self.publish(ProcState::Restarting, None, Some(reason));
            }
            Verdict::GiveUp { crashes } => {
                let why = format!(
                    "{} died {crashes} times within a minute, more than \
                     --volume-process-recovery-max-per-min={} allows; last: {reason}; \
                     the next Mount starts it again",
                    self.spec.invocation.program, self.policy.max_restarts_per_min,
                );
                tracing::error!(volume = %self.spec.name, reason = %why, "volume failed");
                self.leave_connection();
                self.publish(ProcState::Failed, None, Some(why));
                self.phase = Phase::GaveUp;
            }
        }
    }

    fn back_off(&mut self, reason: String) {
        let until = self.budget.failed_start(Instant::now());
        tracing::warn!(
            volume = %self.spec.name, %reason,
            retry_in = ?until.saturating_duration_since(Instant::now()),
            "volume not mounted; will retry"
        );
        self.phase = Phase::Backoff { until };
        self.publish(ProcState::Restarting, None, Some(reason));
    }

    async fn retry(&mut self, rx: &mut mpsc::Receiver<Request>) {
        self.status.send_modify(|s| s.restarts += 1);
        match self.launch(rx, true, None).await {
            Outcome::Mounted => tracing::info!(volume = %self.spec.name, "volume restarted"),
            Outcome::Cancelled => {}
            Outcome::Failed(e) => self.back_off(format!("restart failed: {e}")),
        }
    }
}

/// Further masters tried when the server refuses a session on one.
const REFUSED_RETRIES: usize = 3;

/// dockerd gives up on a Create or Mount after 2 minutes; 10 s of them are
/// kept for the rest of the call (state write, reply).
const CALL_BUDGET: Duration = Duration::from_secs(110);

/// How long a start that a caller waits for may wait for its turn: what is
/// left of dockerd's deadline after `--mount-timeout` for the mount itself,
/// and never less than the mount timeout.
fn turn_timeout(mount_timeout: Duration) -> Duration {
    CALL_BUDGET
        .saturating_sub(mount_timeout)
        .max(mount_timeout.min(CALL_BUDGET))
}

/// Runs `work` while taking requests: a start waits for the same outcome
/// (queued in `waiting`), a stop or the end of every handle cancels it
/// (`None`; the stop's reply is kept in `stop_reply`).
async fn take_requests<T>(
    rx: &mut mpsc::Receiver<Request>,
    closed: &mut bool,
    waiting: &mut Vec<Reply>,
    stop_reply: &mut Option<oneshot::Sender<()>>,
    work: impl Future<Output = T>,
) -> Option<T> {
    tokio::pin!(work);
    loop {
        tokio::select! {
            result = &mut work => return Some(result),
            request = rx.recv() => match request {
                Some(Request::Start(reply) | Request::Restore(reply)) => waiting.push(reply),
                Some(Request::Stop(reply)) => {
                    *stop_reply = Some(reply);
                    return None;
                }
                None => {
                    *closed = true;
                    return None;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod turn_tests {
    use super::*;

    #[test]
    fn a_caller_waits_for_its_turn_within_dockers_deadline() {
        let s = Duration::from_secs;
        assert_eq!(turn_timeout(s(20)), s(90));
        assert_eq!(turn_timeout(s(60)), s(60));
        assert_eq!(turn_timeout(s(300)), s(110));
    }
}
