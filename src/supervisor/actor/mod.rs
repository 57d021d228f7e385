//! The supervisor task: a loop over requests (start, restore, stop) and
//! events of the running process (it died, a retry is due). A crash is
//! followed by a restart after a backoff; too many crashes in a sliding
//! minute and the volume is `failed` until the next start, which tries
//! afresh at once with the budget counting again from there (Status keeps
//! the restart count and the last error). While a start is mounting, a
//! stop cancels it and other starts wait for its outcome. A tool that
//! connects to a server is spawned only in its turn there (see
//! `crate::pacing`), held until it has mounted or failed.
//!
//! Here: the loop and what follows an outcome (backoff, the crash budget,
//! giving up). Getting one process mounted is `launch`; the shared ssh
//! connection's lease is `connection`.

use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, Instant};

mod connection;
mod inbox;
mod launch;
mod reattach;

use inbox::Inbox;

use launch::turn_timeout;

use super::budget::{Budget, Verdict};
use super::child::Watch;
use super::tool::Tool;
use super::{Order, ProcState, ProcessError, ProcessSpec, ProcessStatus, Supervision};
use crate::config::RecoveryMode;
use crate::connections::Lease;

/// Where a supervisor is in its start, crash and restart cycle.
enum Cycle<R> {
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
    supervision: Supervision,
    status: watch::Sender<ProcessStatus>,
    cycle: Cycle<T::Run>,
    budget: Budget,
    /// Its place on a shared ssh connection: taken at the first start,
    /// kept across restarts (the master outlives a crash of sshfs), given
    /// up when the volume stops or fails.
    lease: Option<Lease>,
    /// The login of the master the running tool goes through.
    through: Option<u64>,
}

pub async fn run<T: Tool>(
    tool: T,
    spec: ProcessSpec,
    supervision: Supervision,
    rx: mpsc::Receiver<Order>,
    status: watch::Sender<ProcessStatus>,
) {
    let mut sup = Supervisor {
        tool,
        budget: Budget::new(supervision.max_restarts_per_min),
        spec,
        supervision,
        status,
        cycle: Cycle::Idle,
        lease: None,
        through: None,
    };
    let mut inbox = Inbox::new(rx);
    while !inbox.is_closed() {
        tokio::select! {
            request = inbox.recv() => match request {
                Some(Order::Start(reply)) => {
                    let result = sup.start(&mut inbox, false).await;
                    let _ = reply.send(result);
                }
                Some(Order::Restore(reply)) => {
                    let result = sup.start(&mut inbox, true).await;
                    let _ = reply.send(result);
                }
                Some(Order::Stop(reply)) => {
                    sup.stop().await;
                    let _ = reply.send(());
                }
                None => {}
            },
            event = sup.next_event() => match event {
                Event::Died(reason) => sup.died(reason).await,
                Event::Detached => sup.publish(ProcState::Mounted, None, None),
                Event::RetryDue => sup.retry(&mut inbox).await,
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

    fn count_restart(&self) {
        self.status.send_modify(|s| {
            s.restarts += 1;
            s.last_restart = Some(SystemTime::now());
        });
    }

    /// Waits for something to happen; never completes while idle or given up.
    async fn next_event(&mut self) -> Event {
        match &mut self.cycle {
            Cycle::Idle | Cycle::GaveUp => std::future::pending().await,
            Cycle::Backoff { until } => {
                sleep_until(*until).await;
                Event::RetryDue
            }
            Cycle::Up(running) => {
                let every = self.supervision.health_interval;
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
    async fn start(&mut self, inbox: &mut Inbox, keep_trying: bool) -> Result<(), ProcessError> {
        if let Cycle::Up(running) = &mut self.cycle {
            match self.tool.check_now(running, &self.spec).await {
                None => return Ok(()),
                Some(reason) => self.died(reason).await,
            }
        }
        let restarting = match &self.cycle {
            Cycle::GaveUp => {
                tracing::info!(volume = %self.spec.name, "starting afresh after giving up");
                self.budget.reset();
                false
            }
            Cycle::Backoff { .. } => true,
            Cycle::Idle | Cycle::Up(_) => false,
        };
        if restarting {
            self.count_restart();
        }
        let turn_within = (!keep_trying).then(|| turn_timeout(self.supervision.mount_timeout));
        match self.launch(inbox, restarting, turn_within).await {
            Outcome::Mounted => Ok(()),
            Outcome::Cancelled => Err(ProcessError::Stopped),
            Outcome::Failed(e) => {
                if restarting || keep_trying {
                    self.back_off(format!("start failed: {e}"));
                } else {
                    self.cycle = Cycle::Idle;
                    self.leave_connection();
                    self.publish(ProcState::Failed, None, Some(e.to_string()));
                }
                Err(e)
            }
        }
    }

    async fn stop(&mut self) {
        // Only what this supervisor started is stopped: an idle one must not
        // touch a mountpoint it never mounted.
        if let Cycle::Up(mut running) = std::mem::replace(&mut self.cycle, Cycle::Idle) {
            self.tool.settle(&mut running, &self.spec).await;
            self.tool
                .stop(&mut running, &self.spec, &self.supervision)
                .await;
            tracing::info!(volume = %self.spec.name, "volume process stopped");
        }
        self.leave_connection();
        self.budget.reset();
        self.publish(ProcState::Stopped, None, None);
    }

    /// The process died or its mount stopped answering: clean up what is
    /// left, then restart after a backoff, or give up.
    async fn died(&mut self, reason: String) {
        let Cycle::Up(mut running) = std::mem::replace(&mut self.cycle, Cycle::Idle) else {
            return;
        };
        self.tool
            .stop(&mut running, &self.spec, &self.supervision)
            .await;
        let reason = format!("{reason}{}", T::tail(&running));
        tracing::warn!(volume = %self.spec.name, %reason, "volume process died");
        if self.supervision.recovery == RecoveryMode::Ignore {
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
                self.cycle = Cycle::Backoff { until: now };
                self.publish(ProcState::Restarting, None, Some(reason));
            }
            Verdict::RetryAt(until) => {
                self.cycle = Cycle::Backoff { until };
                self.publish(ProcState::Restarting, None, Some(reason));
            }
            Verdict::GiveUp { crashes } => {
                let why = format!(
                    "{} died {crashes} times within a minute, more than \
                     --volume-process-recovery-max-per-min={} allows; last: {reason}; \
                     the next Mount starts it again",
                    self.spec.invocation.program, self.supervision.max_restarts_per_min,
                );
                tracing::error!(volume = %self.spec.name, reason = %why, "volume failed");
                self.leave_connection();
                self.publish(ProcState::Failed, None, Some(why));
                self.cycle = Cycle::GaveUp;
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
        self.cycle = Cycle::Backoff { until };
        self.publish(ProcState::Restarting, None, Some(reason));
    }

    async fn retry(&mut self, inbox: &mut Inbox) {
        self.count_restart();
        match self.launch(inbox, true, None).await {
            Outcome::Mounted => tracing::info!(volume = %self.spec.name, "volume restarted"),
            Outcome::Cancelled => {}
            Outcome::Failed(e) => self.back_off(format!("restart failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests;
