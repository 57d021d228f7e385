//! The fault suite: real processes, real mounts, a real sshd and dockerd.
//! Every scenario breaks something — the volume's tool, the plugin (SIGKILL
//! in the middle of Create, Mount and Remove), sshd, dockerd, the disk under
//! the state file, the state file itself — and then checks that no volume and
//! no remote byte is lost, and that nothing half-made is left behind. Each
//! prints its numbers (`netfs-suite ...` lines, see docs/operations.md).
//! Those where the server takes part run against both stock servers
//! (OpenSSH's defaults, Debian's `sshd_config`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::support::calls::{
    assert_nothing_left, call_ok, create, create_ok, listed, sshfs_opts, start, state_of,
    stored_mount_ids, try_status, wait_mounted, T,
};
use crate::support::client::{self, err_of};
use crate::support::gate::{send_in_background, Gate};
use crate::support::ledger::{bytes, Ledger};
use crate::support::mounts::{is_mounted, process_alive, processes_with_arg, wait_until};
use crate::support::plugin::Plugin;
use crate::support::report;
use crate::support::sshd::{Flavour, Sshd};

fn sigkill(pid: i64) {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill -9");
}

// -------------------------------------------------------------- scenarios

// The ones the server takes part in, against both stock servers.
crate::against_both_servers!(
    the_volume_process_killed_again_and_again_loses_nothing,
    sshd_stopped_and_started_again_loses_no_byte,
);

fn the_volume_process_killed_again_and_again_loses_nothing(flavour: Flavour) {
    const ROUNDS: usize = 10;
    let sshd = Sshd::of(flavour);
    let plugin = start(&[
        "--mount-timeout=15s",
        "--volume-process-recovery-max-per-min=1000",
    ]);
    let name = "killed";
    create_ok(&plugin, name, sshfs_opts(&sshd, "killed"));
    call_ok(
        &plugin,
        "/VolumeDriver.Mount",
        json!({"Name": name, "ID": "holder"}),
    );
    let mp = plugin.mount_root().join(name);
    let remote = sshd.remote_path("killed");
    let mut ledger = Ledger::default();
    let mut pid = wait_mounted(&plugin, name, None);
    for _ in 0..ROUNDS {
        ledger.write(&mp, &remote, 64 * 1024);
        sigkill(pid);
        pid = wait_mounted(&plugin, name, Some(pid));
    }
    ledger.check_mount(&mp);
    ledger.check_remote(&remote);
    let st = try_status(&plugin, name).expect("still known");
    assert_eq!(st["restarts"], ROUNDS, "{st}");
    assert_eq!(st["mountIds"], json!(["holder"]), "the refcount survived");
    assert_eq!(stored_mount_ids(&plugin, name), Some(json!(["holder"])));
    call_ok(
        &plugin,
        "/VolumeDriver.Unmount",
        json!({"Name": name, "ID": "holder"}),
    );
    call_ok(&plugin, "/VolumeDriver.Remove", json!({"Name": name}));
    ledger.check_remote(&remote);
    report(
        "faults",
        &format!(
            "volume process SIGKILLed: {ROUNDS} restarts survived, {}",
            ledger.numbers()
        ),
    );
}

#[test]
fn plugin_sigkill_mid_create_leaves_no_volume_no_process_no_mount() {
    const ROUNDS: usize = 3;
    let sshd = Sshd::new();
    let gate = Gate::new(sshd.port());
    let mut plugin = start(&["--mount-timeout=60s"]);
    // A volume that exists all along, in use, with data on it.
    create_ok(&plugin, "keep", sshfs_opts(&sshd, "keep"));
    call_ok(
        &plugin,
        "/VolumeDriver.Mount",
        json!({"Name": "keep", "ID": "c1"}),
    );
    let keep_mp = plugin.mount_root().join("keep");
    let keep_remote = sshd.remote_path("keep");
    let mut ledger = Ledger::default();
    ledger.write(&keep_mp, &keep_remote, 32 * 1024);
    for round in 0..ROUNDS {
        let name = format!("half-{round}");
        let mp = plugin.mount_root().join(&name);
        gate.set_open(false);
        let opts = json!({"source": sshd.source("half"), "o": gate.sshfs_options(&sshd)});
        let pending = send_in_background(
            plugin.socket(),
            "/VolumeDriver.Create",
            json!({"Name": name, "Opts": opts}),
        );
        wait_until(T, "sshfs started and waits at the gate", || {
            gate.held() > 0 && !processes_with_arg(mp.to_str().unwrap()).is_empty()
        });
        let keep_pid = try_status(&plugin, "keep").unwrap()["pid"].as_i64();
        plugin.kill9();
        assert!(pending.join().unwrap().is_err(), "the Create got no answer");
        plugin.restart();
        // A tool that survived would now get through and mount.
        gate.set_open(true);
        assert_nothing_left(&plugin, &name);
        let new_keep = wait_mounted(&plugin, "keep", keep_pid);
        assert_ne!(Some(new_keep), keep_pid);
        ledger.write(&keep_mp, &keep_remote, 32 * 1024);
        ledger.check_mount(&keep_mp);
        assert_eq!(
            try_status(&plugin, "keep").unwrap()["mountIds"],
            json!(["c1"])
        );
        // The name is free: a Create now works.
        create_ok(&plugin, &name, sshfs_opts(&sshd, "half"));
        fs::write(mp.join(format!("round-{round}")), "x").unwrap();
        call_ok(&plugin, "/VolumeDriver.Remove", json!({"Name": name}));
        assert_nothing_left(&plugin, &name);
    }
    ledger.check_remote(&keep_remote);
    report(
        "faults",
        &format!(
            "plugin SIGKILLed mid-Create: {ROUNDS} restarts survived, 0 half volumes or orphan processes, {}",
            ledger.numbers()
        ),
    );
}

#[test]
fn plugin_sigkill_mid_mount_keeps_the_volume_and_an_exact_refcount() {
    const ROUNDS: usize = 3;
    let sshd = Sshd::new();
    let gate = Gate::new(sshd.port());
    let mut plugin = start(&["--mount-timeout=60s", "--volume-process-lifecycle=mount"]);
    let name = "mid-mount";
    let mp = plugin.mount_root().join(name);
    let remote = sshd.remote_path("mid-mount");
    let opts = json!({"source": sshd.source("mid-mount"), "o": gate.sshfs_options(&sshd)});
    create_ok(&plugin, name, opts);
    let mut ledger = Ledger::default();
    for round in 0..ROUNDS {
        gate.set_open(false);
        let pending = send_in_background(
            plugin.socket(),
            "/VolumeDriver.Mount",
            json!({"Name": name, "ID": format!("lost-{round}")}),
        );
        wait_until(T, "sshfs started and waits at the gate", || {
            gate.held() > 0 && !processes_with_arg(mp.to_str().unwrap()).is_empty()
        });
        plugin.kill9();
        assert!(pending.join().unwrap().is_err(), "the Mount got no answer");
        plugin.restart();
        gate.set_open(true);
        let st = try_status(&plugin, name).expect("the volume survived");
        assert_eq!(
            st["mountIds"],
            json!([]),
            "a Mount never answered holds nothing: {st}"
        );
        assert_eq!(stored_mount_ids(&plugin, name), Some(json!([])));
        wait_until(T, "the half-started sshfs is gone", || {
            processes_with_arg(mp.to_str().unwrap()).is_empty()
        });
        assert!(!is_mounted(&mp));
        // The next Mount works, and its Unmount stops the tool again.
        let id = format!("c-{round}");
        call_ok(
            &plugin,
            "/VolumeDriver.Mount",
            json!({"Name": name, "ID": id}),
        );
        ledger.write(&mp, &remote, 32 * 1024);
        ledger.check_mount(&mp);
        call_ok(
            &plugin,
            "/VolumeDriver.Unmount",
            json!({"Name": name, "ID": id}),
        );
        wait_until(T, "the tool stopped after the last Unmount", || {
            processes_with_arg(mp.to_str().unwrap()).is_empty()
        });
    }
    ledger.check_remote(&remote);
    call_ok(&plugin, "/VolumeDriver.Remove", json!({"Name": name}));
    assert_nothing_left(&plugin, name);
    report(
        "faults",
        &format!(
            "plugin SIGKILLed mid-Mount: {ROUNDS} restarts survived, refcount exact, {}",
            ledger.numbers()
        ),
    );
}

#[test]
fn plugin_sigkill_mid_remove_ends_with_no_volume_and_the_data_kept() {
    const ROUNDS: usize = 3;
    let sshd = Sshd::new();
    let mut plugin = start(&["--mount-timeout=15s", "--stop-timeout=60s"]);
    let name = "mid-remove";
    let mp = plugin.mount_root().join(name);
    let remote = sshd.remote_path("mid-remove");
    let mut ledger = Ledger::default();
    for _ in 0..ROUNDS {
        create_ok(&plugin, name, sshfs_opts(&sshd, "mid-remove"));
        ledger.check_mount(&mp);
        ledger.write(&mp, &remote, 32 * 1024);
        // A tool that does not act on SIGTERM holds Remove in its grace period.
        let pid = wait_mounted(&plugin, name, None);
        kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap();
        let pending = send_in_background(
            plugin.socket(),
            "/VolumeDriver.Remove",
            json!({"Name": name}),
        );
        wait_until(T, "the state file no longer holds the volume", || {
            state_of(&plugin.state_file())["volumes"]
                .get(name)
                .is_none()
        });
        assert!(process_alive(pid as i32), "the tool is still there");
        plugin.kill9();
        assert!(pending.join().unwrap().is_err(), "the Remove got no answer");
        plugin.restart();
        wait_until(T, "the tool of the removed volume is gone", || {
            !process_alive(pid as i32)
        });
        assert_nothing_left(&plugin, name);
        ledger.check_remote(&remote);
    }
    // The data is all there for the next volume on the same remote.
    create_ok(&plugin, name, sshfs_opts(&sshd, "mid-remove"));
    ledger.check_mount(&mp);
    call_ok(&plugin, "/VolumeDriver.Remove", json!({"Name": name}));
    report(
        "faults",
        &format!(
            "plugin SIGKILLed mid-Remove: {ROUNDS} restarts survived, 0 half volumes or orphan processes, {}",
            ledger.numbers()
        ),
    );
}

fn sshd_stopped_and_started_again_loses_no_byte(flavour: Flavour) {
    let mut sshd = Sshd::of(flavour);
    let plugin = start(&["--mount-timeout=10s"]);
    let keep = format!(
        "{},reconnect,ServerAliveInterval=1,ServerAliveCountMax=3",
        sshd.sshfs_options()
    );
    create_ok(
        &plugin,
        "reconnects",
        json!({"source": sshd.source("a"), "o": keep}),
    );
    create_ok(&plugin, "restarted", sshfs_opts(&sshd, "b"));
    let (mp_a, mp_b) = (
        plugin.mount_root().join("reconnects"),
        plugin.mount_root().join("restarted"),
    );
    let (remote_a, remote_b) = (sshd.remote_path("a"), sshd.remote_path("b"));
    let (mut ledger_a, mut ledger_b) = (Ledger::default(), Ledger::default());
    let mut outages = 0;
    for _ in 0..3 {
        ledger_a.write(&mp_a, &remote_a, 64 * 1024);
        ledger_b.write(&mp_b, &remote_b, 64 * 1024);
        let pid_a = wait_mounted(&plugin, "reconnects", None);
        let pid_b = wait_mounted(&plugin, "restarted", None);
        sshd.stop();
        outages += 1;
        // Without `reconnect` sshfs exits with its connection; netfs notices.
        wait_until(T, "the sshfs without reconnect is gone", || {
            !process_alive(pid_b as i32)
        });
        sshd.start();
        wait_mounted(&plugin, "restarted", Some(pid_b));
        // With `reconnect` the same sshfs carries on once sshd is back.
        let mp = mp_a.clone();
        let probe = thread::spawn(move || fs::write(mp.join("probe"), "after the outage"));
        wait_until(
            T,
            "a write through the reconnecting mount completes",
            || probe.is_finished(),
        );
        probe.join().unwrap().expect("write after the outage");
        assert_eq!(
            wait_mounted(&plugin, "reconnects", None),
            pid_a,
            "reconnected, not restarted"
        );
        ledger_a.check_mount(&mp_a);
        ledger_b.check_mount(&mp_b);
    }
    ledger_a.check_remote(&remote_a);
    ledger_b.check_remote(&remote_b);
    for name in ["reconnects", "restarted"] {
        call_ok(&plugin, "/VolumeDriver.Remove", json!({"Name": name}));
    }
    report(
        "faults",
        &format!(
            "sshd stopped and started {outages} times: 2 volumes (reconnect, restart) kept, \
             {} bytes written, {} bytes read back and compared on the remote",
            ledger_a.total() + ledger_b.total(),
            ledger_a.verified + ledger_b.verified
        ),
    );
}

/// A small tmpfs mounted over the plugin's own directory (state file, mount
/// root and log), so the state can be written into a full disk. Dropping it
/// detaches it, with whatever is still mounted below.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={size},mode=0700").as_str()),
        )
        .unwrap_or_else(|e| panic!("mount a tmpfs on {}: {e}", dir.display()));
        fs::create_dir_all(dir.join("volumes")).expect("create the mount root");
        SmallDisk(dir.to_owned())
    }

    /// Writes zeros until the disk refuses; returns the filler's path.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("filler");
        let mut file = fs::File::create(&path).expect("create filler");
        let chunk = vec![0u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if thread::panicking() {
            // The plugin's log lives here: show it before it goes.
            let log = fs::read(self.0.join("plugin.log")).unwrap_or_default();
            eprintln!(
                "----- plugin log on the small disk -----\n{}",
                String::from_utf8_lossy(&log)
            );
        }
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn a_full_disk_under_the_state_file_fails_calls_cleanly_and_loses_nothing() {
    let sshd = Sshd::new();
    let mut plugin = Plugin::new(env!("CARGO_BIN_EXE_netfs")).arg("--mount-timeout=15s");
    let dir = plugin.state_file().parent().unwrap().to_owned();
    let disk = SmallDisk::mount(&dir, "512k");
    plugin.spawn();
    plugin.wait_ready();
    let state = plugin.state_file();
    create_ok(&plugin, "v0", sshfs_opts(&sshd, "v0"));
    create_ok(&plugin, "v1", sshfs_opts(&sshd, "v1"));
    call_ok(
        &plugin,
        "/VolumeDriver.Mount",
        json!({"Name": "v1", "ID": "a"}),
    );
    let mp1 = plugin.mount_root().join("v1");
    let remote1 = sshd.remote_path("v1");
    let mut ledger = Ledger::default();
    ledger.write(&mp1, &remote1, 64 * 1024);
    let before = fs::read(&state).unwrap();

    let filler = disk.fill();
    let mut refused = 0;
    let full_err = |reply: &Value| {
        let err = err_of(reply);
        assert!(
            err.contains("cannot write state file")
                && err.contains(state.to_str().unwrap())
                && err.contains("No space left on device"),
            "{err}"
        );
    };
    // Create: the tool started and mounted, but the volume could not be
    // recorded, so it is undone completely.
    let (code, reply) = create(&plugin, "v2", sshfs_opts(&sshd, "v2"));
    assert_eq!(code, 500, "{reply}");
    full_err(&reply);
    refused += 1;
    assert_nothing_left(&plugin, "v2");
    // Mount: refused, and the refcount is as before.
    let (code, reply) = plugin.post("/VolumeDriver.Mount", json!({"Name": "v1", "ID": "b"}));
    assert_eq!(code, 500, "{reply}");
    full_err(&reply);
    refused += 1;
    assert_eq!(try_status(&plugin, "v1").unwrap()["mountIds"], json!(["a"]));
    // Unmount: refused and undone like Mount, so memory and disk agree: the
    // ID is still held (Docker sends it again at the container's next stop).
    let (code, reply) = plugin.post("/VolumeDriver.Unmount", json!({"Name": "v1", "ID": "a"}));
    assert_eq!(code, 500, "{reply}");
    full_err(&reply);
    refused += 1;
    assert_eq!(try_status(&plugin, "v1").unwrap()["mountIds"], json!(["a"]));
    // An Unmount of an ID that is not held has nothing to write: it succeeds.
    call_ok(
        &plugin,
        "/VolumeDriver.Unmount",
        json!({"Name": "v1", "ID": "never-mounted"}),
    );
    // Remove (of a volume no container holds): refused, and the volume is
    // whole: listed, mounted, serving.
    let (code, reply) = plugin.post("/VolumeDriver.Remove", json!({"Name": "v0"}));
    assert_eq!(code, 500, "{reply}");
    full_err(&reply);
    refused += 1;
    assert!(listed(&plugin).contains(&"v0".to_owned()));
    assert_eq!(try_status(&plugin, "v0").unwrap()["state"], "mounted");
    assert_eq!(try_status(&plugin, "v1").unwrap()["state"], "mounted");
    ledger.check_mount(&mp1);
    // The state on disk is the last good one, whole.
    assert_eq!(
        fs::read(&state).unwrap(),
        before,
        "the state file is untouched"
    );

    fs::remove_file(&filler).unwrap();
    // The Unmount sent again once there is room goes through.
    call_ok(
        &plugin,
        "/VolumeDriver.Unmount",
        json!({"Name": "v1", "ID": "a"}),
    );
    create_ok(&plugin, "v2", sshfs_opts(&sshd, "v2"));
    call_ok(
        &plugin,
        "/VolumeDriver.Mount",
        json!({"Name": "v1", "ID": "b"}),
    );
    let stored = state_of(&state);
    assert_eq!(
        stored["volumes"]["v1"]["mountIds"],
        json!(["b"]),
        "{stored}"
    );
    assert!(stored["volumes"].get("v2").is_some(), "{stored}");
    // Everything comes back after a crash.
    plugin.kill9();
    plugin.restart();
    for name in ["v0", "v1", "v2"] {
        wait_mounted(&plugin, name, None);
    }
    assert_eq!(try_status(&plugin, "v1").unwrap()["mountIds"], json!(["b"]));
    ledger.write(&mp1, &remote1, 64 * 1024);
    ledger.check_mount(&mp1);
    call_ok(
        &plugin,
        "/VolumeDriver.Unmount",
        json!({"Name": "v1", "ID": "b"}),
    );
    for name in ["v0", "v1", "v2"] {
        call_ok(&plugin, "/VolumeDriver.Remove", json!({"Name": name}));
    }
    plugin.terminate();
    drop(disk);
    report(
        "faults",
        &format!(
            "state disk full: {refused} calls failed cleanly (Create, Mount, Unmount, Remove), 0 volumes lost or half-made, {}",
            ledger.numbers()
        ),
    );
}

#[test]
fn a_damaged_state_file_stops_the_plugin_untouched_and_the_bak_recovers() {
    let sshd = Sshd::new();
    let mut plugin = start(&["--mount-timeout=15s"]);
    let state = plugin.state_file();
    let bak = state.with_file_name("state.json.bak");
    create_ok(&plugin, "v1", sshfs_opts(&sshd, "v1"));
    create_ok(&plugin, "v2", sshfs_opts(&sshd, "v2"));
    call_ok(
        &plugin,
        "/VolumeDriver.Mount",
        json!({"Name": "v1", "ID": "c1"}),
    );
    let mp1 = plugin.mount_root().join("v1");
    let remote1 = sshd.remote_path("v1");
    let mut ledger = Ledger::default();
    ledger.write(&mp1, &remote1, 64 * 1024);
    plugin.terminate();
    let good = fs::read(&state).unwrap();
    let good_bak = fs::read(&bak).expect("a .bak exists after a few changes");
    assert_eq!(
        serde_json::from_slice::<Value>(&good_bak).unwrap()["volumes"]["v1"]["mountIds"],
        json!(["c1"]),
        "the .bak holds the state before the last write"
    );
    let text = String::from_utf8(good.clone()).unwrap();
    let cases: Vec<(&str, Option<Vec<u8>>, &str)> = vec![
        (
            "truncated to half",
            Some(good[..good.len() / 2].to_vec()),
            "is corrupt",
        ),
        ("truncated to zero bytes", Some(Vec::new()), "is corrupt"),
        ("garbage bytes", Some(bytes(7, 300)), "is corrupt"),
        ("a JSON array", Some(b"[]".to_vec()), "is corrupt"),
        (
            "a hand-edited bad volume name",
            Some(text.replacen("\"v2\"", "\"../v2\"", 1).into_bytes()),
            "is corrupt",
        ),
        (
            "a future version",
            Some(
                text.replacen("\"version\": 1", "\"version\": 2", 1)
                    .into_bytes(),
            ),
            "has version 2",
        ),
        ("a directory (unreadable)", None, "cannot read state file"),
    ];
    let mut refused = 0;
    for (what, content, want) in &cases {
        let _ = fs::remove_file(&state);
        match content {
            Some(bytes) => fs::write(&state, bytes).unwrap(),
            None => fs::create_dir(&state).unwrap(),
        }
        let mtime = fs::metadata(&state).unwrap().modified().unwrap();
        let log_before = plugin.log().len();
        plugin.spawn();
        let exit = plugin.wait_exit(T);
        assert!(
            !exit.success(),
            "{what}: netfs started on a damaged state file"
        );
        let log = plugin.log()[log_before..].to_owned();
        assert!(
            log.contains(want)
                && log.contains(state.to_str().unwrap())
                && log.contains("left untouched"),
            "{what}: {log}"
        );
        if !want.contains("version") {
            assert!(
                log.contains("state.json.bak holds the previous good state (2 volume(s))"),
                "{what}: {log}"
            );
        }
        match content {
            Some(bytes) => assert_eq!(&fs::read(&state).unwrap(), bytes, "{what}: file changed"),
            None => assert!(state.is_dir(), "{what}: directory replaced"),
        }
        assert_eq!(
            fs::metadata(&state).unwrap().modified().unwrap(),
            mtime,
            "{what}"
        );
        assert_eq!(
            fs::read(&bak).unwrap(),
            good_bak,
            "{what}: the .bak changed"
        );
        assert!(
            client::try_request(&plugin.socket(), "POST", "/Plugin.Activate", b"{}".to_vec())
                .is_err(),
            "{what}: something answers on the socket"
        );
        refused += 1;
        if state.is_dir() {
            fs::remove_dir(&state).unwrap();
        }
    }
    // Recovery as docs/operations.md says: put the .bak in place, start.
    let _ = fs::remove_file(&state);
    fs::copy(&bak, &state).unwrap();
    plugin.spawn();
    plugin.wait_ready();
    let mut names = listed(&plugin);
    names.sort();
    assert_eq!(names, ["v1", "v2"]);
    wait_mounted(&plugin, "v1", None);
    wait_mounted(&plugin, "v2", None);
    assert_eq!(
        try_status(&plugin, "v1").unwrap()["mountIds"],
        json!(["c1"])
    );
    ledger.check_mount(&mp1);
    ledger.check_remote(&remote1);
    call_ok(
        &plugin,
        "/VolumeDriver.Unmount",
        json!({"Name": "v1", "ID": "c1"}),
    );
    for name in ["v1", "v2"] {
        call_ok(&plugin, "/VolumeDriver.Remove", json!({"Name": name}));
    }
    report(
        "faults",
        &format!(
            "damaged state file: {refused} kinds refused at start with the file untouched, recovered from .bak with 2 of 2 volumes, {}",
            ledger.numbers()
        ),
    );
}

#[test]
fn the_socket_is_0660_a_stale_one_is_replaced_and_a_live_one_never_taken() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let mut plugin = start(&[]);
    let socket = plugin.socket();
    let meta = fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    // A second instance on the same socket refuses to start and names it;
    // the first one keeps serving.
    let other = tempfile::tempdir().unwrap();
    let second = |socket: &Path| {
        crate::support::cmd::run(
            std::process::Command::new(env!("CARGO_BIN_EXE_netfs"))
                .arg(format!("--socket={}", socket.display()))
                .arg(format!(
                    "--propagated-mount={}",
                    other.path().join("v").display()
                ))
                .arg(format!(
                    "--state-file={}",
                    other.path().join("s.json").display()
                )),
            T,
        )
    };
    let out = second(&socket);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "another process is already serving on {}",
            socket.display()
        )),
        "{stderr}"
    );
    assert_eq!(plugin.post("/Plugin.Activate", json!({})).0, 200);
    assert!(
        !other.path().join("v").exists(),
        "the second instance touched nothing"
    );

    // SIGKILL leaves the socket file behind, answering nobody: the next
    // start replaces it.
    plugin.kill9();
    assert!(socket.exists());
    assert!(client::try_request(&socket, "POST", "/Plugin.Activate", b"{}".to_vec()).is_err());
    plugin.restart();
    let meta = fs::symlink_metadata(&socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    // Something that is not a socket is never replaced.
    let not_a_socket = other.path().join("important.sock");
    fs::write(&not_a_socket, "keep me").unwrap();
    let out = second(&not_a_socket);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a socket"));
    assert_eq!(fs::read_to_string(&not_a_socket).unwrap(), "keep me");
    report(
        "faults",
        "socket: mode 0660, a second instance refused, a stale socket replaced after SIGKILL, a non-socket file kept",
    );
}

/// Starts dockerd again the way `make test` does (scripts/setup.sh), and
/// makes sure it answers, also when the test fails half-way.
struct DockerdBack;

impl DockerdBack {
    fn docker_answers() -> bool {
        let out = crate::support::cmd::try_run_input(
            std::process::Command::new("docker").arg("info"),
            None,
            Duration::from_secs(30),
        );
        out.is_ok_and(|o| o.status.success())
    }

    fn start() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup.sh");
        let out = crate::support::cmd::run(
            std::process::Command::new(&script).env("SKIP_PACKAGES", "1"),
            Duration::from_secs(300),
        );
        assert!(
            out.status.success() && Self::docker_answers(),
            "{} did not bring dockerd back:\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// SIGTERM, as `systemctl stop docker` or `pkill dockerd` would send;
    /// dockerd stops its containers (it runs without live-restore).
    fn stop() {
        let pid: i32 = fs::read_to_string("/var/run/docker.pid")
            .expect("dockerd's pid file")
            .trim()
            .parse()
            .expect("a pid");
        kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM dockerd");
        wait_until(Duration::from_secs(120), "dockerd has exited", || {
            !process_alive(pid)
        });
    }
}

impl Drop for DockerdBack {
    fn drop(&mut self) {
        if !Self::docker_answers() {
            Self::start();
        }
    }
}

#[test]
fn dockerd_restarted_with_a_container_running_keeps_the_volume() {
    use crate::support::docker::{
        docker, docker_ok, own_daemon, require_docker, volume_inspect, Cleanup, TEST_IMAGE,
    };
    require_docker();
    // No other test uses dockerd while it goes down and comes back.
    let _owner = own_daemon();
    let _back = DockerdBack;
    let sshd = Sshd::new();
    let plugin = start(&["--mount-timeout=15s"]);
    let mut cleanup = Cleanup::new();
    let volume = cleanup.volume(crate::support::unique_name("dockerd"));
    let container = cleanup.container(crate::support::unique_name("writer"));
    docker_ok(&[
        "volume",
        "create",
        "-d",
        plugin.driver_name(),
        "-o",
        &format!("source={}", sshd.source("dockerd")),
        "-o",
        &format!("o={}", sshd.sshfs_options()),
        &volume,
    ]);
    let script = "trap 'exit 0' TERM; echo start >> /data/starts; i=0; \
                  while :; do i=$((i+1)); echo $i > /data/beat; sleep 0.2; done";
    docker_ok(&[
        "run",
        "-d",
        "--restart=always",
        "--name",
        &container,
        "-v",
        &format!("{volume}:/data"),
        TEST_IMAGE,
        "sh",
        "-c",
        script,
    ]);
    let remote = sshd.remote_path("dockerd");
    let starts = || {
        fs::read_to_string(remote.join("starts"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let beat = || {
        fs::read_to_string(remote.join("beat"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    wait_until(T, "the container writes to the volume", || {
        starts() == 1 && beat().is_some()
    });
    let ids = try_status(&plugin, &volume).unwrap()["mountIds"].clone();
    assert_eq!(ids.as_array().map(Vec::len), Some(1), "{ids}");
    let mp = plugin.mount_root().join(&volume);
    let mut ledger = Ledger::default();
    ledger.write(&mp, &remote, 256 * 1024);

    DockerdBack::stop();
    // dockerd stopped the container and released its mount; the volume and
    // its process are the plugin's and stay.
    assert_eq!(try_status(&plugin, &volume).unwrap()["mountIds"], json!([]));
    assert_eq!(try_status(&plugin, &volume).unwrap()["state"], "mounted");
    ledger.check_mount(&mp);
    let last_beat = beat().unwrap();
    DockerdBack::start();

    wait_until(
        Duration::from_secs(120),
        "the container started again on the volume",
        || starts() == 2,
    );
    wait_until(T, "it writes again", || {
        beat().is_some_and(|b| b < last_beat || b > 5)
    });
    let inspect = volume_inspect(&volume);
    assert_eq!(inspect["Driver"], plugin.driver_name());
    assert_eq!(inspect["Status"]["state"], "mounted", "{inspect}");
    // dockerd takes a fresh mount ID for each mount: one held, not the old.
    let now = &inspect["Status"]["mountIds"];
    assert_eq!(now.as_array().map(Vec::len), Some(1), "{inspect}");
    assert_ne!(*now, ids, "the mount before the restart was released");
    ledger.check_remote(&remote);
    let read_back =
        crate::support::docker::run_in_container(&volume, "/data", "cat /data/file-0 | wc -c");
    assert_eq!(read_back.trim(), (256 * 1024).to_string());
    let out = docker(&["rm", "-f", &container]);
    assert!(out.status.success());
    assert_eq!(try_status(&plugin, &volume).unwrap()["mountIds"], json!([]));
    docker_ok(&["volume", "rm", &volume]);
    assert!(try_status(&plugin, &volume).is_none());
    report(
        "faults",
        &format!(
            "dockerd restarted with a container running: volume kept, container back through a new Mount (mount IDs 1 -> 0 -> 1), {}",
            ledger.numbers()
        ),
    );
}

/// A stored volume that the plugin's new settings cannot run (here: type
/// `command` after the binary setting went away) is never dropped: it stays
/// listed and in the state file through later writes, refuses Mount, and
/// runs again once the setting is back.
#[test]
fn a_volume_the_new_settings_cannot_run_is_kept_not_dropped() {
    let sshd = Sshd::new();
    let mut plugin = Plugin::new(env!("CARGO_BIN_EXE_netfs"))
        .args(["--mount-timeout=15s", "--volume-process-lifecycle=mount"])
        .env("VOLUME_PROCESS_BINARY", "/usr/bin/sshfs")
        .start();
    let opts = json!({"type": "command", "source": sshd.source("cmd"), "c": format!("{{source}}&{{mountPoint}}&-f&-o&{}", sshd.sshfs_options())});
    create_ok(&plugin, "by-command", opts);
    plugin.set_env("VOLUME_PROCESS_BINARY", "");
    plugin.restart();
    let st = try_status(&plugin, "by-command").expect("still listed");
    assert_eq!(st["state"], "failed", "{st}");
    assert!(
        st["lastError"]
            .as_str()
            .unwrap()
            .contains("--volume-process-binary"),
        "{st}"
    );
    let (code, reply) = plugin.post(
        "/VolumeDriver.Mount",
        json!({"Name": "by-command", "ID": "c1"}),
    );
    assert_eq!(code, 500, "{reply}");
    // Another change writes the state: the refused volume is still in it.
    create_ok(
        &plugin,
        "other",
        json!({"source": sshd.source("other"), "o": sshd.sshfs_options()}),
    );
    assert!(state_of(&plugin.state_file())["volumes"]
        .get("by-command")
        .is_some());
    plugin.set_env("VOLUME_PROCESS_BINARY", "/usr/bin/sshfs");
    plugin.restart();
    call_ok(
        &plugin,
        "/VolumeDriver.Mount",
        json!({"Name": "by-command", "ID": "c1"}),
    );
    let mut ledger = Ledger::default();
    ledger.write(
        &plugin.mount_root().join("by-command"),
        &sshd.remote_path("cmd"),
        4096,
    );
    call_ok(
        &plugin,
        "/VolumeDriver.Unmount",
        json!({"Name": "by-command", "ID": "c1"}),
    );
    for name in ["by-command", "other"] {
        call_ok(&plugin, "/VolumeDriver.Remove", json!({"Name": name}));
    }
    report("faults", "a volume the new settings cannot run: kept listed and stored through 2 restarts and a write, served again once the setting was back");
}

/// A state file written by a netfs whose option grammar was looser (an
/// option key or a backend this one does not know) is not a damaged file:
/// the plugin starts, lists those volumes as `failed` with the reason,
/// refuses to Mount them, keeps them as stored through later writes, and
/// removes them on request.
#[test]
fn a_stored_volume_this_netfs_no_longer_accepts_is_kept_listed_refused_and_removable() {
    let sshd = Sshd::new();
    let mut plugin = start(&["--mount-timeout=15s"]);
    create_ok(&plugin, "good", sshfs_opts(&sshd, "good"));
    plugin.terminate();
    let state = plugin.state_file();
    let mut doc = state_of(&state);
    let older = json!({
        "old-key": {"backend": "sshfs", "createdAt": "2026-01-02T00:00:00Z", "mountIds": [],
                    "options": {"source": sshd.source("old"), "cache": "yes", "password": "hunter2-old"}},
        "old-type": {"backend": "smb", "createdAt": "2026-01-03T00:00:00Z", "mountIds": ["c9"],
                     "options": {"source": "//files/share"}},
    });
    for (name, record) in older.as_object().unwrap() {
        doc["volumes"][name] = record.clone();
    }
    fs::write(&state, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();

    plugin.spawn();
    plugin.wait_ready();
    let mut names = listed(&plugin);
    names.sort();
    assert_eq!(names, ["good", "old-key", "old-type"]);
    wait_mounted(&plugin, "good", None);
    let st = try_status(&plugin, "old-key").expect("listed");
    assert_eq!(st["state"], "failed", "{st}");
    let why = st["lastError"].as_str().unwrap_or_default();
    assert!(
        why.contains("does not accept what an older one stored")
            && why.contains("unknown volume option \"cache\""),
        "{st}"
    );
    assert!(!st.to_string().contains("hunter2-old"), "{st}");
    let st = try_status(&plugin, "old-type").expect("listed");
    assert_eq!(
        (&st["state"], &st["backend"]),
        (&json!("failed"), &json!("smb")),
        "{st}"
    );
    assert_eq!(st["mountIds"], json!(["c9"]), "{st}");

    let (code, reply) = plugin.post(
        "/VolumeDriver.Mount",
        json!({"Name": "old-key", "ID": "c1"}),
    );
    assert_eq!(code, 500, "{reply}");
    let err = err_of(&reply);
    assert!(
        err.contains("volume old-key cannot be used") && err.contains("\"cache\""),
        "{err}"
    );
    assert!(!is_mounted(plugin.mount_root().join("old-key")));
    // Another change writes the state: both are still in it, as stored.
    call_ok(
        &plugin,
        "/VolumeDriver.Mount",
        json!({"Name": "good", "ID": "c1"}),
    );
    let stored = state_of(&state);
    for name in ["old-key", "old-type"] {
        assert_eq!(
            stored["volumes"][name]["options"], older[name]["options"],
            "{stored}"
        );
    }
    // The container that held old-type lets go; then both are removed.
    call_ok(
        &plugin,
        "/VolumeDriver.Unmount",
        json!({"Name": "old-type", "ID": "c9"}),
    );
    for name in ["old-key", "old-type"] {
        call_ok(&plugin, "/VolumeDriver.Remove", json!({"Name": name}));
    }
    assert_eq!(listed(&plugin), ["good"]);
    let stored = state_of(&state);
    assert!(stored["volumes"].get("old-key").is_none(), "{stored}");
    assert!(stored["volumes"].get("old-type").is_none(), "{stored}");
    call_ok(
        &plugin,
        "/VolumeDriver.Unmount",
        json!({"Name": "good", "ID": "c1"}),
    );
    call_ok(&plugin, "/VolumeDriver.Remove", json!({"Name": "good"}));
    report("faults", "2 stored volumes this netfs no longer accepts: plugin started, both listed failed with the reason, Mount refused, kept as stored through a write, removed");
}
