//! Short forms of the protocol calls the integration suites make over and
//! over against a [`Plugin`]: start one, create, mount, read Status.

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::mounts::{is_mounted, processes_with_arg, wait_until};
use super::plugin::Plugin;
use super::sshd::Sshd;

/// The netfs binary of this build as a host-service plugin, started.
pub fn start(args: &[&str]) -> Plugin {
    Plugin::new(env!("CARGO_BIN_EXE_netfs")).args(args).start()
}

/// Volume options for an sshfs volume on `sshd`'s `subdir`.
pub fn sshfs_opts(sshd: &Sshd, subdir: &str) -> Value {
    json!({"source": sshd.source(subdir), "o": sshd.sshfs_options()})
}

pub fn create(plugin: &Plugin, name: &str, opts: Value) -> (u16, Value) {
    plugin.post("/VolumeDriver.Create", json!({"Name": name, "Opts": opts}))
}

pub fn create_ok(plugin: &Plugin, name: &str, opts: Value) {
    let (code, reply) = create(plugin, name, opts);
    assert_eq!(code, 200, "create {name}: {reply}\n{}", plugin.log());
}

pub fn mount(plugin: &Plugin, name: &str, id: &str) -> (u16, Value) {
    plugin.post("/VolumeDriver.Mount", json!({"Name": name, "ID": id}))
}

pub fn unmount(plugin: &Plugin, name: &str, id: &str) -> (u16, Value) {
    plugin.post("/VolumeDriver.Unmount", json!({"Name": name, "ID": id}))
}

/// The volume's Status, or None if the plugin does not know it.
pub fn try_status(plugin: &Plugin, name: &str) -> Option<Value> {
    let (code, reply) = plugin.post("/VolumeDriver.Get", json!({"Name": name}));
    (code == 200).then(|| reply["Volume"]["Status"].clone())
}

/// The volume's Status as `docker volume inspect` shows it; the volume must exist.
pub fn status(plugin: &Plugin, name: &str) -> Value {
    try_status(plugin, name).unwrap_or_else(|| panic!("volume {name} is unknown\n{}", plugin.log()))
}

/// Waits until the volume's state is `state`; returns its Status then.
pub fn wait_state(plugin: &Plugin, name: &str, state: &str, within: Duration) -> Value {
    wait_until(within, &format!("{name} is {state}"), || {
        try_status(plugin, name).is_some_and(|s| s["state"] == state)
    });
    status(plugin, name)
}

/// How long the suites wait for a mount, a process or a file.
pub const T: Duration = Duration::from_secs(30);

pub fn call_ok(plugin: &Plugin, endpoint: &str, body: Value) -> Value {
    let (code, reply) = plugin.post(endpoint, body.clone());
    assert_eq!(code, 200, "{endpoint} {body}: {reply}\n{}", plugin.log());
    reply
}

pub fn listed(plugin: &Plugin) -> Vec<String> {
    let (_, list) = plugin.post("/VolumeDriver.List", json!({}));
    list["Volumes"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|v| v["Name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the volume is mounted by a process other than `not_pid`;
/// returns the new pid.
pub fn wait_mounted(plugin: &Plugin, name: &str, not_pid: Option<i64>) -> i64 {
    let mut pid = None;
    wait_until(T, &format!("{name} is mounted by a new process"), || {
        let Some(st) = try_status(plugin, name) else {
            return false;
        };
        pid = st["pid"].as_i64();
        st["state"] == "mounted" && pid.is_some() && pid != not_pid
    });
    pid.expect("pid")
}

/// The state file as JSON (`{"version", "volumes"}`), or Null if missing.
pub fn state_of(path: &Path) -> Value {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

pub fn stored_mount_ids(plugin: &Plugin, name: &str) -> Option<Value> {
    let state = state_of(&plugin.state_file());
    let record = state["volumes"].get(name)?;
    Some(record.get("mountIds").cloned().unwrap_or(json!([])))
}

/// Nothing of a volume is left: no process names its mountpoint, nothing
/// is mounted there and its directory is gone.
pub fn assert_nothing_left(plugin: &Plugin, name: &str) {
    let mp = plugin.mount_root().join(name);
    wait_until(T, &format!("no process of {name} left"), || {
        processes_with_arg(mp.to_str().unwrap()).is_empty()
    });
    assert!(!is_mounted(&mp), "{} still mounted", mp.display());
    assert!(!mp.exists(), "{} still exists", mp.display());
    assert!(try_status(plugin, name).is_none(), "{name} still known");
    assert!(!listed(plugin).contains(&name.to_owned()));
    assert!(
        state_of(&plugin.state_file())["volumes"]
            .get(name)
            .is_none(),
        "{name} still in the state file"
    );
}
