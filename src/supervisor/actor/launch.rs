//! One launch of the tool: its turn at the server or its place on a shared
//! connection, the spawn, and the wait until it is mounted, all while
//! still taking requests (a start joins, a stop cancels). What happens
//! after a launch (backoff, giving up) is the actor's, in `mod.rs`.

use std::future::Future;
use std::time::Duration;

use tokio::time::{timeout, Instant};

use super::super::tool::Tool;
use super::super::{ProcState, ProcessError};
use super::{Cycle, Inbox, Outcome, Supervisor};
use crate::backend::Server;
use crate::pacing::Permit;

impl<T: Tool> Supervisor<T> {
    /// Spawns the tool and waits until it is mounted, while still taking
    /// requests: a start waits for the same outcome, a stop cancels. With
    /// `turn_within`, a start that cannot get its turn at the server in
    /// that time fails (a caller waits for it); without, it waits its turn.
    pub(super) async fn launch(
        &mut self,
        inbox: &mut Inbox,
        restarting: bool,
        turn_within: Option<Duration>,
    ) -> Outcome {
        let mut outcome = self.mount(inbox, restarting, turn_within).await;
        // A session the server refused: the master is full, take a place
        // on another (a new one if need be).
        for _ in 0..REFUSED_RETRIES {
            match &outcome {
                Outcome::Failed(ProcessError::SessionRefused { .. }) if self.lease.is_some() => {
                    if let Some(lease) = self.lease.take() {
                        lease.refused(self.spec.name.as_str());
                    }
                    outcome = self.mount(inbox, restarting, turn_within).await;
                }
                _ => break,
            }
        }
        inbox.answer(&outcome);
        outcome
    }

    pub(super) async fn mount(
        &mut self,
        inbox: &mut Inbox,
        restarting: bool,
        turn_within: Option<Duration>,
    ) -> Outcome {
        let state = if restarting {
            ProcState::Restarting
        } else {
            ProcState::Mounting
        };
        self.publish(state, None, None);
        let mut through_master = None;
        // Held from the spawn until logged in, mounted or failed (see
        // crate::pacing).
        let mut turn = match self.spec.endpoint.as_ref() {
            // A client of a master: no login of its own, so no turn at the
            // server's gate (the master took one for its login), but one
            // to open its session.
            _ if self.spec.shared.is_some() => match self.connection(inbox).await {
                Some(Ok((spec, turn))) => {
                    through_master = Some(spec);
                    Some(turn)
                }
                Some(Err(e)) => {
                    self.cycle = Cycle::Idle;
                    return Outcome::Failed(e);
                }
                None => {
                    self.leave_connection();
                    return self.stopped_waiting("its ssh connection");
                }
            },
            None => None,
            Some(endpoint) => {
                let turn = self.turn(&endpoint.server, turn_within);
                match inbox.during(turn).await {
                    Some(Ok(permit)) => Some(permit),
                    Some(Err(e)) => {
                        self.cycle = Cycle::Idle;
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
        let spawned = Instant::now();
        let ready = self
            .tool
            .wait_ready(&mut running, &self.spec, &self.supervision, &mut turn);
        match inbox.during(ready).await {
            Some(Ok(())) => {
                let pid = T::pid(&running);
                tracing::info!(volume = %self.spec.name, pid, "mounted");
                self.cycle = Cycle::Up(Box::new(running));
                self.budget.mounted();
                self.status.send_modify(|s| {
                    s.generation += 1;
                    s.mount_duration = Some(spawned.elapsed());
                });
                self.publish(ProcState::Mounted, pid, None);
                self.reattach().await;
                Outcome::Mounted
            }
            Some(Err(e)) => {
                self.cycle = Cycle::Idle;
                Outcome::Failed(e)
            }
            None => {
                tracing::info!(volume = %self.spec.name, "stopped while mounting");
                self.tool
                    .stop(&mut running, &self.spec, &self.supervision)
                    .await;
                self.cycle = Cycle::Idle;
                self.budget.reset();
                self.publish(ProcState::Stopped, None, None);
                Outcome::Cancelled
            }
        }
    }

    /// A stop came while a start waited for `what`, before any spawn.
    pub(super) fn stopped_waiting(&mut self, what: &str) -> Outcome {
        tracing::info!(volume = %self.spec.name, "stopped while waiting for {what}");
        self.cycle = Cycle::Idle;
        self.budget.reset();
        self.publish(ProcState::Stopped, None, None);
        Outcome::Cancelled
    }

    /// Waits for a turn to start a tool that connects to `server`.
    pub(super) fn turn(
        &self,
        server: &Server,
        within: Option<Duration>,
    ) -> impl Future<Output = Result<Permit, ProcessError>> + 'static {
        let gate = self.supervision.pacing.clone();
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
}

/// Further masters tried when the server refuses a session on one.
const REFUSED_RETRIES: usize = 3;

/// dockerd gives up on a Create or Mount after 2 minutes; 10 s of them are
/// kept for the rest of the call (state write, reply).
const CALL_BUDGET: Duration = Duration::from_secs(110);

/// How long a start that a caller waits for may wait for its turn: what is
/// left of dockerd's deadline after `--mount-timeout` for the mount itself,
/// and never less than the mount timeout.
pub(super) fn turn_timeout(mount_timeout: Duration) -> Duration {
    CALL_BUDGET
        .saturating_sub(mount_timeout)
        .max(mount_timeout.min(CALL_BUDGET))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_waits_for_its_turn_within_dockers_deadline() {
        let s = Duration::from_secs;
        assert_eq!(turn_timeout(s(20)), s(90));
        assert_eq!(turn_timeout(s(60)), s(60));
        assert_eq!(turn_timeout(s(300)), s(110));
    }
}
