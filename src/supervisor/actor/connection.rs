//! The actor's side of a shared ssh connection: a lease taken at the first
//! start and kept across restarts, the wait for its master, and what a
//! restart through a master that is still up may skip. The masters
//! themselves are `crate::connections`'.

use tokio::time::timeout;

use super::super::tool::Tool;
use super::super::{ProcessError, ProcessSpec};
use super::{Inbox, Supervisor};
use crate::connections::NotUp;
use crate::pacing::Permit;

impl<T: Tool> Supervisor<T> {
    /// Takes a place on a shared connection (once), waits for its master
    /// to be up and for a turn to open a session on the server; the spec
    /// to spawn, with the options that make the tool's ssh a client of it,
    /// and the turn, held until mounted.
    pub(super) async fn connection(
        &mut self,
        inbox: &mut Inbox,
    ) -> Option<Result<(ProcessSpec, Permit), ProcessError>> {
        let shared = self.spec.shared.as_ref()?;
        let lease = self
            .lease
            .get_or_insert_with(|| shared.pool.join(&shared.key));
        let master = lease.master().clone();
        self.status
            .send_modify(|s| s.connection = Some(master.clone()));
        let wait = timeout(self.supervision.mount_timeout, lease.ready());
        let up = match inbox.during(wait).await? {
            Ok(up) => up,
            Err(_) => {
                return Some(Err(ProcessError::Connection(NotUp {
                    connection: master.name(),
                    endpoint: shared.key.to_string(),
                    reason: format!(
                        "not up within {}",
                        humantime::format_duration(self.supervision.mount_timeout)
                    ),
                })))
            }
        };
        let up = match up {
            Ok(up) => up,
            Err(e) => return Some(Err(e.into())),
        };
        let turn = inbox.during(lease.open()).await?;
        self.through = Some(up.generation);
        let mut spec = self.spec.clone();
        spec.invocation.args.extend(up.client_args);
        Some(Ok((spec, turn)))
    }

    /// The volume runs through a master whose login it started with is up.
    pub(super) fn master_still_up(&self) -> bool {
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
    pub(super) fn leave_connection(&mut self) {
        self.lease = None;
        self.through = None;
        self.status.send_modify(|s| s.connection = None);
    }
}
