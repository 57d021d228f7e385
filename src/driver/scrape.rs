//! What the metrics endpoint shows of the driver: every stored volume's
//! process and every shared ssh connection, read from the same table and
//! supervisors as Status.

use super::table::{Entry, Phase};
use super::Driver;
use crate::metrics::{self, ConnectionSample, Scrape, VolumeSample};
use crate::name::VolumeName;
use crate::supervisor::ProcState;

impl Driver {
    /// A scrape of the volumes and connections as they are now.
    pub fn scrape(&self) -> Scrape {
        let volumes = {
            let table = self.table();
            table
                .entries
                .iter()
                .filter(|(_, e)| e.phase.stored())
                .map(|(name, entry)| volume(name, entry))
                .collect()
        };
        let masters = self
            .connections
            .as_ref()
            .map(|pool| pool.masters())
            .unwrap_or_default();
        let connections = masters
            .iter()
            .map(|m| {
                let status = m.status();
                ConnectionSample {
                    name: m.name(),
                    endpoint: m.endpoint(),
                    state: status.state,
                    volumes: m.sessions(),
                    logins: status.logins,
                }
            })
            .collect();
        Scrape {
            volumes,
            connections,
            process: metrics::own_process(),
        }
    }
}

fn volume(name: &VolumeName, entry: &Entry) -> VolumeSample {
    let mut sample = VolumeSample {
        name: name.to_string(),
        backend: entry.record.setup.backend_name().to_owned(),
        state: ProcState::Failed,
        restarts: 0,
        last_restart: None,
        mount_duration: None,
        reattaches: 0,
        mount_ids: entry.record.mount_ids.len(),
        connection: None,
    };
    // A refused volume runs nothing: failed, as its Status says.
    if let Phase::Ready(process) = &entry.phase {
        let status = process.handle.status();
        sample.state = status.state;
        sample.restarts = status.restarts;
        sample.last_restart = status.last_restart;
        sample.mount_duration = status.mount_duration;
        sample.reattaches = status.reattach.total;
        sample.connection = status.connection.as_ref().map(|m| m.name());
    }
    sample
}
