//! Short forms of the protocol calls the integration suites make over and
//! over against a [`Plugin`]: start one, create, mount, read Status.

use std::time::Duration;

use serde_json::{json, Value};

use super::mounts::wait_until;
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
