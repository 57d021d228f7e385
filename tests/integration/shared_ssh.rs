//! Shared ssh connections against a stock OpenSSH (`MaxSessions 10`):
//! twelve volumes go over two masters and the server sees two logins; a
//! killed master comes back with every volume on it; a killed sshfs comes
//! back through the live master with no login; other identities and
//! password volumes keep connections of their own. Each against both stock
//! servers (OpenSSH's defaults, Debian's `sshd_config`), but the password
//! one: Debian's external `sftp-server` runs through the user's shell, and
//! the password account's is `nologin`.

use std::fs;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::support::calls::{create_ok, sshfs_opts, start, status, try_status};
use crate::support::mounts::{poll_until, processes_with_arg, wait_until};
use crate::support::plugin::Plugin;
use crate::support::sshd::{Flavour, Sshd, PASSWORD_USER, TEST_PASSWORD};

const T: Duration = Duration::from_secs(20);

crate::against_both_servers!(
    twelve_volumes_share_two_masters_and_the_server_sees_two_logins,
    a_killed_master_comes_back_with_every_volume_on_it,
    a_killed_sshfs_comes_back_through_the_live_master_without_a_login,
    volumes_with_other_identities_never_share,
    a_session_the_server_refuses_opens_another_master,
    a_restart_of_netfs_restores_shared_volumes_through_one_login,
);

fn sharing() -> Plugin {
    start(&["--share-ssh-connections=true"])
}

/// Logins the server accepted (`LogLevel VERBOSE` logs each).
fn logins(sshd: &Sshd) -> usize {
    let log = sshd.log();
    log.matches("Accepted publickey for").count() + log.matches("Accepted password for").count()
}

/// TCP connections the server accepted, but for the fixture's probe of
/// its port (closed before the key exchange).
fn connections(sshd: &Sshd) -> usize {
    let log = sshd.log();
    log.matches("Connection from ").count() - log.matches("kex_exchange_identification").count()
}

fn connection_of(plugin: &Plugin, name: &str) -> Value {
    status(plugin, name)["connection"].clone()
}

/// Every volume mounted and its connection up; the Statuses then.
fn all_mounted(plugin: &Plugin, names: &[String]) -> Vec<Value> {
    let mut statuses = Vec::new();
    let ok = poll_until(T, || {
        statuses = names
            .iter()
            .map(|n| try_status(plugin, n).unwrap_or(Value::Null))
            .collect();
        statuses
            .iter()
            .all(|s| s["state"] == "mounted" && s["connection"]["state"] == "up")
    });
    assert!(ok, "not all mounted: {statuses:#?}\n{}", plugin.log());
    statuses
}

/// Writes a file through the volume and reads it back on the remote.
fn check_data(plugin: &Plugin, sshd: &Sshd, name: &str) {
    let path = plugin.mount_root().join(name).join("probe.txt");
    fs::write(&path, name).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let remote = sshd.remote_path(name).join("probe.txt");
    assert_eq!(fs::read_to_string(remote).unwrap(), name);
}

fn master_pid(plugin: &Plugin, name: &str) -> i32 {
    connection_of(plugin, name)["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no master pid: {}", status(plugin, name))) as i32
}

fn twelve_volumes_share_two_masters_and_the_server_sees_two_logins(flavour: Flavour) {
    let sshd = Sshd::of(flavour);
    let plugin = sharing();
    let names: Vec<String> = (0..12).map(|i| format!("shared-{i:02}")).collect();
    for name in &names {
        create_ok(&plugin, name, sshfs_opts(&sshd, name));
    }
    let statuses = all_mounted(&plugin, &names);
    let ids: Vec<&str> = statuses
        .iter()
        .map(|s| s["connection"]["id"].as_str().unwrap_or(""))
        .collect();
    let first = ids.iter().filter(|id| **id == ids[0]).count();
    assert_eq!(
        first, 10,
        "the first master carries MaxSessions volumes: {ids:?}"
    );
    let second: Vec<_> = ids.iter().filter(|id| **id != ids[0]).collect();
    assert_eq!(second.len(), 2, "{ids:?}");
    assert!(second.iter().all(|id| *id == second[0]), "{ids:?}");
    assert_eq!(statuses[0]["connection"]["sessions"], 10);
    assert_eq!(statuses[11]["connection"]["sessions"], 2);
    for name in &names {
        check_data(&plugin, &sshd, name);
    }
    assert_eq!(logins(&sshd), 2, "one login per master:\n{}", sshd.log());
    assert_eq!(connections(&sshd), 2, "{}", sshd.log());
    // The masters' control sockets are private.
    let dir = plugin.state_file().parent().unwrap().join("ssh-control");
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    for entry in fs::read_dir(&dir).unwrap().flatten() {
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", entry.path().display());
    }
}

fn a_killed_master_comes_back_with_every_volume_on_it(flavour: Flavour) {
    let sshd = Sshd::of(flavour);
    let plugin = sharing();
    let names: Vec<String> = (0..3).map(|i| format!("master-{i}")).collect();
    for name in &names {
        create_ok(&plugin, name, sshfs_opts(&sshd, name));
    }
    all_mounted(&plugin, &names);
    let pid = master_pid(&plugin, &names[0]);
    let before = logins(&sshd);
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    wait_until(T, "a new master", || {
        try_status(&plugin, &names[0]).is_some_and(|s| {
            s["connection"]["pid"]
                .as_i64()
                .is_some_and(|p| p != pid as i64)
        })
    });
    let statuses = all_mounted(&plugin, &names);
    for (name, s) in names.iter().zip(&statuses) {
        assert_eq!(s["connection"]["logins"], 2, "{s}");
        assert!(s["restarts"].as_u64() >= Some(1), "{s}");
        check_data(&plugin, &sshd, name);
    }
    assert_eq!(
        logins(&sshd),
        before + 1,
        "one new login for all:\n{}",
        sshd.log()
    );
}

fn a_killed_sshfs_comes_back_through_the_live_master_without_a_login(flavour: Flavour) {
    let sshd = Sshd::of(flavour);
    let plugin = sharing();
    let names = ["one-a".to_owned(), "one-b".to_owned()];
    for name in &names {
        create_ok(&plugin, name, sshfs_opts(&sshd, name));
    }
    all_mounted(&plugin, &names);
    let master = master_pid(&plugin, &names[0]);
    let before = logins(&sshd);
    let sshfs = status(&plugin, &names[0])["pid"].as_i64().unwrap() as i32;
    // Its ssh is a client of the master, not a login of its own.
    let (_, argv) = processes_with_arg(&plugin.mount_root().join(&names[0]).display().to_string())
        .into_iter()
        .find(|(p, _)| *p == sshfs)
        .expect("the sshfs process");
    assert!(argv.iter().any(|a| a.contains("ControlPath=")), "{argv:?}");
    kill(Pid::from_raw(sshfs), Signal::SIGKILL).unwrap();
    wait_until(T, "the volume restarted", || {
        try_status(&plugin, &names[0])
            .is_some_and(|s| s["state"] == "mounted" && s["restarts"] == 1)
    });
    check_data(&plugin, &sshd, &names[0]);
    assert_eq!(master_pid(&plugin, &names[0]), master, "the same master");
    assert_eq!(logins(&sshd), before, "no new login:\n{}", sshd.log());
    assert_eq!(status(&plugin, &names[1])["restarts"], 0);
    // The master lives while a volume uses it, and no longer.
    let remove = |name: &str| plugin.post("/VolumeDriver.Remove", json!({"Name": name}));
    assert_eq!(remove(&names[0]).0, 200);
    assert_eq!(connection_of(&plugin, &names[1])["sessions"], 1);
    assert!(std::path::Path::new(&format!("/proc/{master}")).exists());
    assert_eq!(remove(&names[1]).0, 200);
    wait_until(T, "the unused master stopped", || {
        !std::path::Path::new(&format!("/proc/{master}")).exists()
    });
}

fn volumes_with_other_identities_never_share(flavour: Flavour) {
    let sshd = Sshd::of(flavour);
    let plugin = sharing();
    // The same key under another name: another IdentityFile, another login.
    let other = sshd.key_path().with_file_name("client_key_copy");
    fs::copy(sshd.key_path(), &other).unwrap();
    create_ok(&plugin, "id-a", sshfs_opts(&sshd, "id-a"));
    let opts = sshd.sshfs_options().replace(
        &sshd.key_path().display().to_string(),
        &other.display().to_string(),
    );
    create_ok(
        &plugin,
        "id-b",
        json!({"source": sshd.source("id-b"), "o": opts}),
    );
    create_ok(&plugin, "id-c", sshfs_opts(&sshd, "id-c"));
    let names = ["id-a".to_owned(), "id-b".to_owned(), "id-c".to_owned()];
    let s = all_mounted(&plugin, &names);
    assert_ne!(s[0]["connection"]["id"], s[1]["connection"]["id"]);
    assert_eq!(s[0]["connection"]["id"], s[2]["connection"]["id"]);
    assert_eq!(logins(&sshd), 2, "{}", sshd.log());
}

#[test]
fn a_password_volume_keeps_its_own_connection() {
    let sshd = Sshd::with_password();
    let plugin = sharing();
    create_ok(&plugin, "pw-key", sshfs_opts(&sshd, "pw-key"));
    let opts = json!({
        "source": sshd.password_source("pw-pass"),
        "o": sshd.password_sshfs_options(),
        "password": TEST_PASSWORD,
    });
    create_ok(&plugin, "pw-pass", opts);
    all_mounted(&plugin, &["pw-key".to_owned()]);
    let pw = status(&plugin, "pw-pass");
    assert_eq!(pw["state"], "mounted", "{pw}");
    assert!(pw["connection"].is_null(), "{pw}");
    let pid = pw["pid"].as_i64().unwrap() as i32;
    let (_, argv) = processes_with_arg(PASSWORD_USER)
        .into_iter()
        .find(|(p, _)| *p == pid)
        .expect("the password volume's sshfs");
    assert!(!argv.iter().any(|a| a.contains("ControlPath")), "{argv:?}");
    assert!(plugin
        .log()
        .contains("volume keeps an ssh connection of its own"));
}

fn a_session_the_server_refuses_opens_another_master(flavour: Flavour) {
    let mut sshd = Sshd::of(flavour);
    // A server stricter than stock: two sessions per connection.
    let config = sshd.config_path();
    let mut text = fs::read_to_string(&config).unwrap();
    text.push_str("\nMaxSessions 2\n");
    fs::write(&config, text).unwrap();
    sshd.stop();
    sshd.start();
    let plugin = sharing();
    let names: Vec<String> = (0..3).map(|i| format!("refused-{i}")).collect();
    for name in &names {
        create_ok(&plugin, name, sshfs_opts(&sshd, name));
    }
    let s = all_mounted(&plugin, &names);
    assert_eq!(s[0]["connection"]["id"], s[1]["connection"]["id"]);
    assert_ne!(s[0]["connection"]["id"], s[2]["connection"]["id"], "{s:#?}");
    assert_eq!(s[2]["restarts"], 0, "a refused session is not a crash");
    // The Status of the connection that refused says so, and what netfs did.
    let first = &s[0]["connection"];
    assert_eq!(first["refusedSessions"], 1, "{first}");
    assert_eq!(first["capacity"], 2, "{first}");
    let what = first["lastRefusal"].as_str().unwrap_or_default();
    assert!(
        what.contains("refused a session to volume refused-2 with 2 open")
            && what.contains("refused-2 was placed on another"),
        "{what}"
    );
    // At once, not after a mount timeout.
    assert!(
        !plugin.log().contains("did not mount the volume within"),
        "{}",
        plugin.log()
    );
    check_data(&plugin, &sshd, &names[2]);
    assert_eq!(logins(&sshd), 2, "{}", sshd.log());
    assert!(
        plugin.log().contains("refused another session"),
        "{}",
        plugin.log()
    );
}

fn a_restart_of_netfs_restores_shared_volumes_through_one_login(flavour: Flavour) {
    let sshd = Sshd::of(flavour);
    let mut plugin = sharing();
    let names: Vec<String> = (0..3).map(|i| format!("restore-{i}")).collect();
    for name in &names {
        create_ok(&plugin, name, sshfs_opts(&sshd, name));
    }
    all_mounted(&plugin, &names);
    let old = master_pid(&plugin, &names[0]);
    plugin.restart();
    wait_until(T, "the old master gone", || {
        !std::path::Path::new(&format!("/proc/{old}")).exists()
    });
    let s = all_mounted(&plugin, &names);
    let first = &s[0]["connection"]["id"];
    assert!(s.iter().all(|x| x["connection"]["id"] == *first), "{s:#?}");
    for name in &names {
        check_data(&plugin, &sshd, name);
    }
    assert_eq!(logins(&sshd), 2, "one login per run:\n{}", sshd.log());
    // A crash of netfs: its tools are left to the old mounts (and so is
    // their master); the volumes come back through one new login.
    plugin.kill9();
    plugin.spawn();
    plugin.wait_ready();
    let s = all_mounted(&plugin, &names);
    let first = &s[0]["connection"]["id"];
    assert!(s.iter().all(|x| x["connection"]["id"] == *first), "{s:#?}");
    for name in &names {
        check_data(&plugin, &sshd, name);
    }
    assert_eq!(logins(&sshd), 3, "{}", sshd.log());
}
