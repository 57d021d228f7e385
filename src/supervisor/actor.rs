//! The supervisor task: a loop over requests (start, stop) and events of the
//! running process (exit, dead mount, retry due). Restarts use a backoff and
//! a sliding one-minute budget; past it the volume is `failed` until the
//! next start request.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, sleep_until, Instant};

use super::child::{self, ProcessError, Running};
use super::{Policy, ProcState, ProcessSpec, ProcessStatus, Request};
use crate::config::RecoveryMode;
use crate::mounts::{self, Probe};

const WINDOW: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

enum Phase {
    Idle,
    Up(Running),
    Backoff { until: Instant, reason: String },
}

enum Event {
    Died(String),
    RetryDue,
}

struct Supervisor {
    spec: ProcessSpec,
    policy: Policy,
    status: watch::Sender<ProcessStatus>,
    phase: Phase,
    /// Restart attempts within the last minute.
    attempts: VecDeque<Instant>,
    consecutive_failures: u32,
}

pub async fn run(
    spec: ProcessSpec,
    policy: Policy,
    mut rx: mpsc::Receiver<Request>,
    status: watch::Sender<ProcessStatus>,
) {
    let mut sup = Supervisor {
        spec,
        policy,
        status,
        phase: Phase::Idle,
        attempts: VecDeque::new(),
        consecutive_failures: 0,
    };
    loop {
        tokio::select! {
            request = rx.recv() => match request {
                Some(Request::Start(reply)) => {
                    let result = sup.ensure_started().await;
                    let _ = reply.send(result);
                }
                Some(Request::Restore(reply)) => {
                    let result = sup.ensure_started().await;
                    if let Err(e) = &result {
                        sup.schedule_retry(e.to_string());
                    }
                    let _ = reply.send(result);
                }
                Some(Request::Stop(reply)) => {
                    sup.stop().await;
                    let _ = reply.send(());
                }
                None => {
                    sup.stop().await;
                    return;
                }
            },
            event = sup.next_event() => match event {
                Event::Died(reason) => sup.recover(reason).await,
                Event::RetryDue => sup.retry().await,
            },
        }
    }
}

impl Supervisor {
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

    /// Waits for something to happen to the running process; never
    /// completes when nothing runs.
    async fn next_event(&mut self) -> Event {
        match &mut self.phase {
            Phase::Idle => std::future::pending().await,
            Phase::Backoff { until, .. } => {
                sleep_until(*until).await;
                Event::RetryDue
            }
            Phase::Up(running) => loop {
                let probe_due = sleep(self.policy.health_interval);
                if let Some(child) = running.child.as_mut() {
                    tokio::select! {
                        status = child.wait() => {
                            let how = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                            let tail = running.tail().await;
                            return Event::Died(format!("{} exited unexpectedly ({how}){tail}", self.spec.invocation.program));
                        }
                        _ = probe_due => {}
                    }
                } else {
                    probe_due.await;
                    if !matches!(mounts::is_mounted(&self.spec.mount_point), Ok(true)) {
                        return Event::Died("the mount disappeared".into());
                    }
                }
                if mounts::probe(&self.spec.mount_point, self.policy.health_interval).await
                    == Probe::NotConnected
                {
                    return Event::Died(
                        "the mount stopped answering (transport endpoint is not connected)".into(),
                    );
                }
            },
        }
    }

    async fn ensure_started(&mut self) -> Result<(), ProcessError> {
        if matches!(self.phase, Phase::Up(_)) {
            return Ok(());
        }
        // A start request after failure or during backoff tries afresh.
        self.attempts.clear();
        self.consecutive_failures = 0;
        self.phase = Phase::Idle;
        self.launch().await
    }

    async fn launch(&mut self) -> Result<(), ProcessError> {
        self.publish(ProcState::Mounting, None, None);
        match child::start(&self.spec, &self.policy).await {
            Ok(running) => {
                tracing::info!(volume = %self.spec.name, pid = running.pid, "mounted");
                let pid = running.pid;
                self.phase = Phase::Up(running);
                self.status.send_modify(|s| s.generation += 1);
                self.publish(ProcState::Mounted, pid, None);
                Ok(())
            }
            Err(e) => {
                self.phase = Phase::Idle;
                self.publish(ProcState::Failed, None, Some(e.to_string()));
                Err(e)
            }
        }
    }

    async fn stop(&mut self) {
        // Only what this supervisor started is stopped: an idle one must not
        // touch a mountpoint it never mounted.
        if let Phase::Up(mut running) = std::mem::replace(&mut self.phase, Phase::Idle) {
            child::stop(&mut running, &self.spec, &self.policy).await;
        }
        self.publish(ProcState::Stopped, None, None);
    }

    async fn recover(&mut self, reason: String) {
        tracing::warn!(volume = %self.spec.name, %reason, "volume process died");
        if let Phase::Up(mut running) = std::mem::replace(&mut self.phase, Phase::Idle) {
            child::stop(&mut running, &self.spec, &self.policy).await;
        }
        if self.policy.recovery == RecoveryMode::Ignore {
            self.publish(
                ProcState::Failed,
                None,
                Some(format!("{reason}; recovery mode is ignore")),
            );
            return;
        }
        self.schedule_retry(reason);
    }

    fn schedule_retry(&mut self, reason: String) {
        let now = Instant::now();
        while self
            .attempts
            .front()
            .is_some_and(|t| now.duration_since(*t) > WINDOW)
        {
            self.attempts.pop_front();
        }
        if self.attempts.len() >= self.policy.max_restarts_per_min as usize {
            let why = format!(
                "{reason}; gave up after {} restarts within a minute (--volume-process-recovery-max-per-min); the next mount tries again",
                self.attempts.len()
            );
            tracing::error!(volume = %self.spec.name, reason = %why, "volume failed");
            self.phase = Phase::Idle;
            self.publish(ProcState::Failed, None, Some(why));
            return;
        }
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << self.consecutive_failures.min(10))
            .min(MAX_BACKOFF);
        self.phase = Phase::Backoff {
            until: now + backoff,
            reason: reason.clone(),
        };
        self.publish(ProcState::Restarting, None, Some(reason));
    }

    async fn retry(&mut self) {
        let reason = match &self.phase {
            Phase::Backoff { reason, .. } => reason.clone(),
            _ => return,
        };
        self.attempts.push_back(Instant::now());
        self.status.send_modify(|s| s.restarts += 1);
        match self.launch().await {
            Ok(()) => self.consecutive_failures = 0,
            Err(e) => {
                self.consecutive_failures += 1;
                tracing::warn!(volume = %self.spec.name, %reason, error = %e, "restart failed");
                self.schedule_retry(format!("restart failed: {e}"));
            }
        }
    }
}
