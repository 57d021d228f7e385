//! A scrape as Prometheus' text exposition format (version 0.0.4): what
//! the driver saw of its volumes and ssh connections, and netfs's own
//! memory and file descriptors. Pure: the caller takes the samples.

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::connections::ConnState;
use crate::supervisor::ProcState;

/// Everything one scrape shows.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub volumes: Vec<VolumeSample>,
    pub connections: Vec<ConnectionSample>,
    pub process: ProcessSample,
}

/// One stored volume.
#[derive(Debug, Clone)]
pub struct VolumeSample {
    pub name: String,
    pub backend: String,
    pub state: ProcState,
    pub restarts: u32,
    pub last_restart: Option<SystemTime>,
    pub mount_duration: Option<Duration>,
    pub reattaches: u64,
    /// Containers (mount IDs) holding it.
    pub mount_ids: usize,
    /// The shared ssh connection it runs through, if any.
    pub connection: Option<String>,
}

/// One shared ssh connection (a master).
#[derive(Debug, Clone)]
pub struct ConnectionSample {
    pub name: String,
    pub endpoint: String,
    pub state: ConnState,
    /// Volumes holding a place on it.
    pub volumes: usize,
    pub logins: u32,
}

/// netfs's own process; `None` where /proc could not tell.
#[derive(Debug, Clone, Default)]
pub struct ProcessSample {
    pub resident_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The whole exposition, every family with its HELP and TYPE lines, even
/// when it has no sample (so a dashboard sees the names from the start).
pub fn render(scrape: &Scrape) -> String {
    let mut out = Text::default();
    let volumes = &scrape.volumes;

    out.family(
        "netfs_volume_state",
        "gauge",
        "The state of the volume's process: 1 for the state it is in, 0 for the others.",
    );
    for v in volumes {
        for state in ProcState::ALL {
            let labels = [
                ("volume", v.name.as_str()),
                ("backend", &v.backend),
                ("state", state.as_str()),
            ];
            out.sample("netfs_volume_state", &labels, u8::from(v.state == state));
        }
    }
    out.family(
        "netfs_volume_restarts_total",
        "counter",
        "Restarts of the volume's process since netfs started it (after a crash, a dead mount or a failed restart).",
    );
    for v in volumes {
        out.sample(
            "netfs_volume_restarts_total",
            &[("volume", &v.name)],
            v.restarts,
        );
    }
    out.family(
        "netfs_volume_last_restart_timestamp_seconds",
        "gauge",
        "When the volume's last restart began, in seconds since the epoch; absent until its first restart.",
    );
    for v in volumes {
        if let Some(at) = v.last_restart {
            let name = "netfs_volume_last_restart_timestamp_seconds";
            out.sample(name, &[("volume", &v.name)], epoch_seconds(at));
        }
    }
    out.family(
        "netfs_volume_mount_duration_seconds",
        "gauge",
        "How long the volume's last successful mount took, from the tool's start until its mount answered.",
    );
    for v in volumes {
        if let Some(took) = v.mount_duration {
            let name = "netfs_volume_mount_duration_seconds";
            out.sample(name, &[("volume", &v.name)], took.as_secs_f64());
        }
    }
    out.family(
        "netfs_volume_reattaches_total",
        "counter",
        "Mount namespaces (containers) given the volume's new mount in place of a dead one.",
    );
    for v in volumes {
        out.sample(
            "netfs_volume_reattaches_total",
            &[("volume", &v.name)],
            v.reattaches,
        );
    }
    out.family(
        "netfs_volume_mount_ids",
        "gauge",
        "Containers holding the volume (Docker mount IDs).",
    );
    for v in volumes {
        out.sample(
            "netfs_volume_mount_ids",
            &[("volume", &v.name)],
            v.mount_ids,
        );
    }
    out.family(
        "netfs_volume_ssh_connection",
        "gauge",
        "1 for the shared ssh connection the volume's sshfs runs through.",
    );
    for v in volumes {
        if let Some(conn) = &v.connection {
            let labels = [("volume", v.name.as_str()), ("connection", conn)];
            out.sample("netfs_volume_ssh_connection", &labels, 1);
        }
    }

    let connections = &scrape.connections;
    out.family(
        "netfs_ssh_connection_state",
        "gauge",
        "The state of a shared ssh connection: 1 for the state it is in, 0 for the others.",
    );
    for c in connections {
        for state in ConnState::ALL {
            let labels = [
                ("connection", c.name.as_str()),
                ("endpoint", &c.endpoint),
                ("state", state.as_str()),
            ];
            out.sample(
                "netfs_ssh_connection_state",
                &labels,
                u8::from(c.state == state),
            );
        }
    }
    out.family(
        "netfs_ssh_connection_volumes",
        "gauge",
        "Volumes a shared ssh connection serves.",
    );
    for c in connections {
        let labels = [("connection", c.name.as_str()), ("endpoint", &c.endpoint)];
        out.sample("netfs_ssh_connection_volumes", &labels, c.volumes);
    }
    out.family(
        "netfs_ssh_connection_logins_total",
        "counter",
        "Logins a shared ssh connection made (1 while it never died).",
    );
    for c in connections {
        let labels = [("connection", c.name.as_str()), ("endpoint", &c.endpoint)];
        out.sample("netfs_ssh_connection_logins_total", &labels, c.logins);
    }

    // Prometheus' own names for these, as its client libraries export them.
    let p = &scrape.process;
    let own = [
        (
            "process_resident_memory_bytes",
            "Resident memory of netfs itself, in bytes.",
            p.resident_bytes,
        ),
        (
            "process_open_fds",
            "File descriptors netfs itself holds open.",
            p.open_fds,
        ),
        (
            "process_max_fds",
            "The most file descriptors netfs may open (its soft limit).",
            p.max_fds,
        ),
    ];
    for (name, help, value) in own {
        out.family(name, "gauge", help);
        if let Some(value) = value {
            out.sample(name, &[], value);
        }
    }
    out.0
}

fn epoch_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[derive(Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{key}=\"{}\"", escape(value));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(name: &str, state: ProcState) -> VolumeSample {
        VolumeSample {
            name: name.to_owned(),
            backend: "sshfs".to_owned(),
            state,
            restarts: 0,
            last_restart: None,
            mount_duration: None,
            reattaches: 0,
            mount_ids: 0,
            connection: None,
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn every_state_of_a_volume_is_a_sample_and_only_its_own_is_one() {
        let text = render(&Scrape {
            volumes: vec![volume("data", ProcState::Restarting)],
            ..Scrape::default()
        });
        let states: Vec<&str> = lines(&text)
            .into_iter()
            .filter(|l| l.starts_with("netfs_volume_state{"))
            .collect();
        assert_eq!(states.len(), ProcState::ALL.len());
        assert!(states.contains(
            &r#"netfs_volume_state{volume="data",backend="sshfs",state="restarting"} 1"#
        ));
        assert!(states
            .contains(&r#"netfs_volume_state{volume="data",backend="sshfs",state="mounted"} 0"#));
        assert_eq!(states.iter().filter(|l| l.ends_with(" 1")).count(), 1);
    }

    #[test]
    fn restarts_times_and_durations_are_numbers_prometheus_reads() {
        let mut v = volume("data", ProcState::Mounted);
        v.restarts = 3;
        v.last_restart = Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_250));
        v.mount_duration = Some(Duration::from_millis(1500));
        v.reattaches = 2;
        v.mount_ids = 4;
        v.connection = Some("ssh-1".to_owned());
        let text = render(&Scrape {
            volumes: vec![v],
            ..Scrape::default()
        });
        let samples = lines(&text);
        for expected in [
            r#"netfs_volume_restarts_total{volume="data"} 3"#,
            r#"netfs_volume_last_restart_timestamp_seconds{volume="data"} 1700000000.25"#,
            r#"netfs_volume_mount_duration_seconds{volume="data"} 1.5"#,
            r#"netfs_volume_reattaches_total{volume="data"} 2"#,
            r#"netfs_volume_mount_ids{volume="data"} 4"#,
            r#"netfs_volume_ssh_connection{volume="data",connection="ssh-1"} 1"#,
        ] {
            assert!(
                samples.contains(&expected),
                "{expected} missing from\n{text}"
            );
        }
    }

    #[test]
    fn a_volume_never_restarted_or_mounted_has_no_time_and_no_duration() {
        let text = render(&Scrape {
            volumes: vec![volume("idle", ProcState::Stopped)],
            ..Scrape::default()
        });
        assert!(!text.contains("netfs_volume_last_restart_timestamp_seconds{"));
        assert!(!text.contains("netfs_volume_mount_duration_seconds{"));
        assert!(text.contains(r#"netfs_volume_restarts_total{volume="idle"} 0"#));
        // The family is still declared.
        assert!(text.contains("# TYPE netfs_volume_mount_duration_seconds gauge\n"));
    }

    #[test]
    fn connections_show_their_state_and_volumes() {
        let text = render(&Scrape {
            connections: vec![ConnectionSample {
                name: "ssh-2".to_owned(),
                endpoint: "me@files:22".to_owned(),
                state: ConnState::Up,
                volumes: 7,
                logins: 1,
            }],
            ..Scrape::default()
        });
        let samples = lines(&text);
        for expected in [
            r#"netfs_ssh_connection_state{connection="ssh-2",endpoint="me@files:22",state="up"} 1"#,
            r#"netfs_ssh_connection_state{connection="ssh-2",endpoint="me@files:22",state="reconnecting"} 0"#,
            r#"netfs_ssh_connection_volumes{connection="ssh-2",endpoint="me@files:22"} 7"#,
            r#"netfs_ssh_connection_logins_total{connection="ssh-2",endpoint="me@files:22"} 1"#,
        ] {
            assert!(
                samples.contains(&expected),
                "{expected} missing from\n{text}"
            );
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("a\nb"), r"a\nb");
    }

    #[test]
    fn every_family_is_declared_once_with_help_and_type() {
        let text = render(&Scrape {
            volumes: vec![
                volume("a", ProcState::Mounted),
                volume("b", ProcState::Failed),
            ],
            process: ProcessSample {
                resident_bytes: Some(4096),
                open_fds: Some(12),
                max_fds: Some(1024),
            },
            ..Scrape::default()
        });
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let mut names: Vec<&str> = types.iter().filter_map(|l| l.split(' ').nth(2)).collect();
        let declared = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), declared);
        assert_eq!(text.matches("# HELP ").count(), declared);
        // Every sample belongs to a declared family, after its declaration.
        let mut seen = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                seen.push(rest.split(' ').next().unwrap_or_default());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                assert_eq!(
                    seen.last(),
                    Some(&name),
                    "sample outside its family: {line}"
                );
            }
        }
        assert!(text.contains("process_resident_memory_bytes 4096\n"));
        assert!(text.contains("process_open_fds 12\n"));
    }
}
