//! After each mount: the new mount goes into the running containers that
//! hold a dead one of this volume (see `crate::reattach`), and Status says
//! what was put back and what failed.

use std::time::{Duration, SystemTime};

use super::super::tool::Tool;
use super::Supervisor;

/// A pass that takes longer (a container path on a hung mount) is left to
/// finish on its own; the actor goes on.
const PASS_TIMEOUT: Duration = Duration::from_secs(10);

impl<T: Tool> Supervisor<T> {
    pub(super) async fn reattach(&mut self) {
        let Some(reattacher) = self.supervision.reattach.clone() else {
            return;
        };
        let known = self.status.borrow().devices.clone();
        let name = self.spec.name.clone();
        let live = self.spec.mount_point.clone();
        let pass = {
            let reattacher = reattacher.clone();
            let known = known.clone();
            tokio::task::spawn_blocking(move || reattacher.after_mount(&name, &live, &known))
        };
        let outcome = match tokio::time::timeout(PASS_TIMEOUT, pass).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => {
                tracing::warn!(volume = %self.spec.name, error = %e, "re-attach pass failed");
                return;
            }
            Err(_) => {
                tracing::warn!(volume = %self.spec.name, "re-attach pass did not finish in 10 s");
                return;
            }
        };
        self.status.send_modify(|s| {
            s.devices = outcome.devices.clone();
            s.reattach.record(&outcome, SystemTime::now());
        });
        if outcome.devices != known {
            reattacher.devices_changed();
        }
    }
}
