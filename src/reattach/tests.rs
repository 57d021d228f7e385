use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::Notify;

use super::host::{container_id, parse_namespace};
use super::recorded::Recorded;
use super::*;

const LIVE: &str = "/var/lib/netfs/volumes/data";
const OWN: &str = "22 1 0:21 / / rw - ext4 /dev/vda rw\n\
                   90 22 0:77 / /var/lib/netfs/volumes/data rw,nosuid,nodev,relatime - fuse.sshfs u@h:/srv rw\n";

fn volume() -> VolumeName {
    VolumeName::parse("data").unwrap()
}

/// A container's mount table holding `line` besides its root.
fn container(line: &str) -> String {
    format!("500 400 0:30 / / rw,relatime - overlay overlay rw\n{line}\n")
}

fn host() -> Arc<Recorded> {
    let host = Arc::new(Recorded::default());
    host.own(1, OWN);
    // netfs itself and another host process share its namespace.
    host.process(100, 1, None);
    host.process(101, 1, None);
    host
}

fn pass(host: &Arc<Recorded>, known: &[&str]) -> Outcome {
    let reattacher = Reattacher::new(host.clone(), Arc::new(Notify::new()));
    let known: Vec<String> = known.iter().map(|d| d.to_string()).collect();
    reattacher.after_mount(&volume(), PathBuf::from(LIVE).as_path(), &known)
}

#[test]
fn a_dead_mount_in_a_container_is_replaced_once_per_namespace() {
    let host = host();
    host.table(
        7,
        &container("510 500 0:50 / /data rw,relatime - fuse.sshfs u@h:/srv rw"),
    );
    host.process(200, 7, Some("abcdef012345"));
    host.process(201, 7, Some("abcdef012345"));
    let outcome = pass(&host, &["0:50"]);
    let attaches = host.attaches();
    assert_eq!(attaches.len(), 1, "{attaches:?}");
    let a = &attaches[0];
    assert_eq!((a.pid, a.ns), (200, 7));
    assert_eq!(a.live, PathBuf::from(LIVE));
    assert_eq!(a.target.mount_point, PathBuf::from("/data"));
    assert_eq!(a.target.root, PathBuf::from("/"));
    assert_eq!(a.target.flags, Flags::default());
    assert_eq!(outcome.attached, ["container abcdef012345: /data"]);
    assert!(outcome.failed.is_empty());
    assert_eq!(outcome.devices, ["0:77"], "the dead device is forgotten");
}

#[test]
fn flags_and_subdirectory_are_the_holders() {
    let host = host();
    host.table(
        7,
        &container(
            "510 500 0:50 /sub /data ro,nosuid,nodev,noexec,relatime - fuse.sshfs u@h:/srv rw",
        ),
    );
    host.process(200, 7, None);
    let outcome = pass(&host, &["0:50"]);
    let a = &host.attaches()[0];
    assert_eq!(a.target.root, PathBuf::from("/sub"));
    let all = Flags {
        read_only: true,
        nosuid: true,
        nodev: true,
        noexec: true,
    };
    assert_eq!(a.target.flags, all);
    assert_eq!(outcome.attached, ["mount namespace 7 (pid 200): /data"]);
}

#[test]
fn two_containers_both_get_it() {
    let host = host();
    host.table(
        7,
        &container("510 500 0:50 / /data rw - fuse.sshfs u@h:/srv rw"),
    );
    host.table(
        8,
        &container("610 500 0:50 / /x rw - fuse.sshfs u@h:/srv rw"),
    );
    host.process(200, 7, Some("aaaaaaaaaaaa"));
    host.process(300, 8, Some("bbbbbbbbbbbb"));
    let outcome = pass(&host, &["0:50"]);
    assert_eq!(
        outcome.attached,
        [
            "container aaaaaaaaaaaa: /data",
            "container bbbbbbbbbbbb: /x"
        ]
    );
}

#[test]
fn only_a_namespace_holding_this_volumes_dead_mount_is_entered() {
    let host = host();
    // Another volume's dead mount, another source, the live mount itself,
    // a device netfs never gave out, and netfs's own namespace.
    host.table(
        7,
        &container("510 500 0:51 / /data rw - fuse.sshfs u@h:/srv rw"),
    );
    host.table(
        8,
        &container("610 500 0:50 / /data rw - fuse.sshfs u@h:/other rw"),
    );
    host.table(
        9,
        &container("710 500 0:77 / /data rw - fuse.sshfs u@h:/srv rw"),
    );
    host.table(
        10,
        &container("810 500 0:50 / /data rw - fuse.rclone u@h:/srv rw"),
    );
    host.table(1, "90 22 0:50 / /old rw - fuse.sshfs u@h:/srv rw\n");
    for (pid, ns) in [(200, 7), (300, 8), (400, 9), (500, 10)] {
        host.process(pid, ns, None);
    }
    let outcome = pass(&host, &["0:50"]);
    assert_eq!(host.attaches(), []);
    assert_eq!(
        outcome,
        Outcome {
            devices: vec!["0:77".into()],
            ..Outcome::default()
        }
    );
}

#[test]
fn nothing_is_scanned_without_a_dead_device_or_for_a_kernel_mount() {
    let host = host();
    host.table(
        7,
        &container("510 500 0:50 / /data rw - fuse.sshfs u@h:/srv rw"),
    );
    host.process(200, 7, None);
    // The first mount of a volume: only the live device is known.
    let outcome = pass(&host, &["0:77"]);
    assert_eq!(host.attaches(), []);
    assert_eq!(outcome.devices, ["0:77"]);
    // An nfs mount does not die while held.
    host.own(
        1,
        "90 22 0:77 / /var/lib/netfs/volumes/data rw - nfs u@h:/srv rw\n",
    );
    host.table(7, &container("510 500 0:50 / /data rw - nfs u@h:/srv rw"));
    pass(&host, &["0:50"]);
    assert_eq!(host.attaches(), []);
}

#[test]
fn a_dead_mount_covered_by_another_is_left_alone() {
    let host = host();
    host.table(
        7,
        &container(
            "510 500 0:50 / /data rw - fuse.sshfs u@h:/srv rw\n\
             511 500 0:60 / /data rw - tmpfs t rw",
        ),
    );
    host.process(200, 7, None);
    pass(&host, &["0:50"]);
    assert_eq!(host.attaches(), []);
}

#[test]
fn a_dead_mount_with_mounts_below_it_is_refused_and_its_device_kept() {
    let host = host();
    host.table(
        7,
        &container(
            "510 500 0:50 / /data rw - fuse.sshfs u@h:/srv rw\n\
             511 510 0:60 / /data/inner rw - tmpfs t rw",
        ),
    );
    host.process(200, 7, Some("cccccccccccc"));
    let outcome = pass(&host, &["0:50"]);
    assert_eq!(host.attaches(), []);
    assert_eq!(outcome.devices, ["0:77", "0:50"]);
    assert_eq!(outcome.failed.len(), 1);
    assert!(
        outcome.failed[0]
            .starts_with("container cccccccccccc: /data: /data/inner is mounted below it"),
        "{:?}",
        outcome.failed
    );
}

#[test]
fn a_failed_attach_is_reported_per_container_and_counted_in_status() {
    let host = host();
    host.table(
        7,
        &container("510 500 0:50 / /data rw - fuse.sshfs u@h:/srv rw"),
    );
    host.table(
        8,
        &container("610 500 0:50 / /data rw - fuse.sshfs u@h:/srv rw"),
    );
    host.process(200, 7, Some("aaaaaaaaaaaa"));
    host.process(300, 8, Some("bbbbbbbbbbbb"));
    host.refuse("/data");
    let outcome = pass(&host, &["0:50"]);
    assert_eq!(outcome.attached, Vec::<String>::new());
    assert_eq!(outcome.failed.len(), 2, "{:?}", outcome.failed);
    assert!(outcome.failed[0].contains("container aaaaaaaaaaaa: /data: move_mount"));
    assert_eq!(outcome.devices, ["0:77", "0:50"], "still held: kept");

    let mut status = ReattachStatus::default();
    assert!(!status.happened());
    let at = SystemTime::UNIX_EPOCH;
    status.record(&outcome, at);
    assert_eq!(status.total, 0);
    assert_eq!(
        status.last_error_at.as_deref(),
        Some("1970-01-01T00:00:00Z")
    );
    let ok = Outcome {
        devices: vec!["0:77".into()],
        attached: vec!["container aaaaaaaaaaaa: /data".into()],
        failed: vec![],
    };
    status.record(&ok, at);
    status.record(&Outcome::default(), at);
    assert_eq!(status.total, 1);
    assert_eq!(status.last, ["container aaaaaaaaaaaa: /data"]);
    assert!(status.last_error.is_some(), "the last error stays shown");
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["total"], 1);
    assert_eq!(json["last"][0], "container aaaaaaaaaaaa: /data");
}

#[test]
fn a_container_gone_mid_way_is_no_failure_and_its_device_is_forgotten() {
    let host = host();
    host.table(
        7,
        &container("510 500 0:50 / /data rw - fuse.sshfs u@h:/srv rw"),
    );
    host.process(200, 7, Some("aaaaaaaaaaaa"));
    host.gone("/data");
    let outcome = pass(&host, &["0:50"]);
    assert_eq!(host.attaches().len(), 1);
    assert_eq!(
        outcome,
        Outcome {
            devices: vec!["0:77".into()],
            ..Outcome::default()
        }
    );
}

#[test]
fn a_vanished_process_gives_way_to_another_of_its_namespace() {
    let host = host();
    host.table(
        7,
        &container("510 500 0:50 / /data rw - fuse.sshfs u@h:/srv rw"),
    );
    // pid 150 is gone by the time its table is read; pid 200 answers.
    host.process(150, 7, None);
    host.process(200, 7, None);
    host.vanish(150);
    pass(&host, &["0:50"]);
    assert_eq!(host.attaches().len(), 1);
}

#[test]
fn without_the_live_mount_nothing_is_attached_and_devices_are_kept() {
    let host = host();
    host.own(1, "22 1 0:21 / / rw - ext4 /dev/vda rw\n");
    let outcome = pass(&host, &["0:50"]);
    assert_eq!(outcome.devices, ["0:50"]);
    assert_eq!(host.attaches(), []);
}

#[test]
fn container_ids_and_namespace_links_are_read() {
    let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    assert_eq!(
        container_id(&format!("0::/system.slice/docker-{id}.scope\n")).as_deref(),
        Some("0123456789ab")
    );
    assert_eq!(
        container_id(&format!("12:memory:/docker/{id}\n")).as_deref(),
        Some("0123456789ab")
    );
    assert_eq!(container_id("0::/user.slice/session-1.scope\n"), None);
    assert_eq!(parse_namespace("mnt:[4026531841]"), Some(4026531841));
    assert_eq!(parse_namespace("net:[1]"), None);
}

/// A host whose `/proc` listing waits until the test opens a gate, and
/// counts how often it was read.
struct Gated {
    inner: Arc<Recorded>,
    scans: std::sync::atomic::AtomicUsize,
    open: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
}

impl Host for Gated {
    fn mount_at(&self, path: &Path) -> std::io::Result<Option<MountEntry>> {
        self.inner.mount_at(path)
    }
    fn own_namespace(&self) -> std::io::Result<u64> {
        self.inner.own_namespace()
    }
    fn namespaces(&self) -> Vec<(i32, u64)> {
        self.scans.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
        self.inner.namespaces()
    }
    fn mountinfo(&self, pid: i32) -> std::io::Result<String> {
        self.inner.mountinfo(pid)
    }
    fn container(&self, pid: i32) -> Option<String> {
        self.inner.container(pid)
    }
    fn attach(&self, attach: &Attach) -> Result<(), AttachError> {
        self.inner.attach(attach)
    }
}

/// Passes that ask while a scan runs share the next one: three volumes
/// mounted at once read `/proc` twice, not three times, and each is
/// re-attached.
#[test]
fn passes_asking_during_a_scan_share_the_next_one() {
    let recorded = host();
    let mut own = OWN.to_owned();
    for (i, name) in ["b", "c"].iter().enumerate() {
        own.push_str(&format!(
            "9{i} 22 0:8{i} / /var/lib/netfs/volumes/{name} rw,nosuid,nodev,relatime - fuse.sshfs u@h:/srv rw\n"
        ));
    }
    recorded.own(1, &own);
    recorded.table(
        7,
        &container(
            "510 500 0:50 / /a rw,relatime - fuse.sshfs u@h:/srv rw\n\
             511 500 0:51 / /b rw,relatime - fuse.sshfs u@h:/srv rw\n\
             512 500 0:52 / /c rw,relatime - fuse.sshfs u@h:/srv rw",
        ),
    );
    recorded.process(200, 7, Some("abcdef012345"));
    let gated = Arc::new(Gated {
        inner: recorded.clone(),
        scans: Default::default(),
        open: std::sync::Mutex::new(false),
        opened: std::sync::Condvar::new(),
    });
    let reattacher = Arc::new(Reattacher::new(gated.clone(), Arc::new(Notify::new())));
    let scans = || gated.scans.load(std::sync::atomic::Ordering::SeqCst);
    let pass = |live: &'static str, dead: &'static str| {
        let reattacher = reattacher.clone();
        std::thread::spawn(move || {
            reattacher.after_mount(&volume(), Path::new(live), &[dead.to_owned()])
        })
    };
    let until = |what: &str, cond: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !cond() {
            assert!(std::time::Instant::now() < deadline, "never: {what}");
            std::thread::yield_now();
        }
    };

    let first = pass(LIVE, "0:50");
    until("the first pass scans", &|| scans() == 1);
    let second = pass("/var/lib/netfs/volumes/b", "0:51");
    let third = pass("/var/lib/netfs/volumes/c", "0:52");
    until("both wait for the scan after it", &|| {
        reattacher.scans.lock().waiting == 2
    });
    *gated.open.lock().unwrap() = true;
    gated.opened.notify_all();
    let outcomes = [first, second, third].map(|t| t.join().unwrap());

    assert_eq!(scans(), 2, "the two waiting passes shared one scan");
    for (outcome, place) in outcomes.iter().zip(["/a", "/b", "/c"]) {
        assert_eq!(
            outcome.attached,
            [format!("container abcdef012345: {place}")],
            "{outcome:?}"
        );
    }
}
