//! Debian's docker-compose (v1) on examples/docker-compose.yml, with the
//! example's variables set: the driver, the source and the sshfs options.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::cmd::{self, show};
use super::docker::DOCKER_TIMEOUT;

pub fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(file)
}

/// `docker-compose -p project -f examples/docker-compose.yml args...`;
/// `down -v --remove-orphans` when dropped unless `down` ran.
pub struct Compose {
    pub project: String,
    pub env: Vec<(&'static str, String)>,
    /// `down` ran: nothing left to remove (removing a volume dockerd does
    /// not know makes it ask every driver it knows).
    pub down: bool,
}

impl Compose {
    /// The project for `driver`, mounting `source` with sshfs `options`.
    /// Compose waits up to 170 s for dockerd (its default is 60): on a
    /// dockerd shared with other runs, every host-service plugin one of
    /// them left stopped makes dockerd retry it on each look-up of a new
    /// volume name (tests/integration/activation.rs measures that).
    pub fn new(project: String, driver: &str, source: String, options: String) -> Compose {
        Compose {
            project,
            env: vec![
                ("NETFS_DRIVER", driver.to_owned()),
                ("NETFS_SOURCE", source),
                ("NETFS_OPTIONS", options),
                ("COMPOSE_HTTP_TIMEOUT", "170".to_owned()),
            ],
            down: false,
        }
    }

    /// With Compose's own default wait for dockerd (60 s), as users have it.
    pub fn default_timeout(mut self) -> Compose {
        self.env.retain(|(k, _)| *k != "COMPOSE_HTTP_TIMEOUT");
        self
    }

    /// The named volume the file declares: `<project>_data`.
    pub fn volume(&self) -> String {
        format!("{}_data", self.project)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let file = example("docker-compose.yml");
        let mut command = Command::new("docker-compose");
        command
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(&file)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd::run(&mut command, DOCKER_TIMEOUT)
    }

    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{}",
            show(&format!("docker-compose {}", args.join(" ")), &out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if !self.down {
            let _ = self.run(&["down", "-v", "--remove-orphans"]);
        }
    }
}
