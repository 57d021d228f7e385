//! The managed plugin's defaults as config.json ships them: its key
//! directory is a dedicated host directory mounted read-only, and its
//! option policy refuses a LocalCommand until `docker plugin set
//! ALLOW_OPTIONS=...` allows it.

use std::fs;
use std::path::Path;

use serde_json::Value;

use super::fixture::ManagedPlugin;
use super::{host_mountpoint, sshfs_options};
use crate::support::docker::{docker, Cleanup};
use crate::support::sshd::Sshd;
use crate::support::unique_name;

#[test]
fn config_json_mounts_a_dedicated_key_directory_read_only() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.json");
    let config: Value = serde_json::from_str(&fs::read_to_string(config).unwrap()).unwrap();
    let mounts = config["linux"]["mounts"]
        .as_array()
        .or_else(|| config["mounts"].as_array())
        .unwrap();
    let keys = mounts.iter().find(|m| m["name"] == "sshkeys").unwrap();
    assert_eq!(keys["source"], "/etc/netfs/ssh", "{keys}");
    assert_eq!(keys["destination"], "/root/.ssh", "{keys}");
    let options: Vec<&str> = keys["options"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        options.contains(&"ro") && !options.contains(&"rw"),
        "{keys}"
    );
    let env = config["env"].as_array().unwrap();
    let key_dir = env.iter().find(|e| e["name"] == "KEY_DIR").unwrap();
    assert_eq!(key_dir["value"], "/root/.ssh");
    assert!(env.iter().any(|e| e["name"] == "ALLOW_OPTIONS"));
}

#[test]
fn the_policy_is_widened_with_docker_plugin_set_and_keys_are_read_only() {
    let mut plugin = ManagedPlugin::take(&[]);
    let sshd = Sshd::new();
    let key = plugin.install_key(&sshd);
    let mut cleanup = Cleanup::new();
    let mark = unique_name("policy-mark");
    let volume = cleanup.volume(unique_name("mp-policy"));
    // ssh may not write known_hosts into the read-only key directory: it
    // says so and goes on; the host directory stays as it was.
    let known_hosts = format!("/root/.ssh/{}", unique_name("kh"));
    let o = format!(
        "{},UserKnownHostsFile={known_hosts},StrictHostKeyChecking=accept-new,\
         PermitLocalCommand=yes,LocalCommand=touch /mnt/volumes/{mark}",
        sshfs_options(&sshd, &key).replace(",UserKnownHostsFile=/dev/null", "")
    );
    let create = |plugin: &ManagedPlugin| {
        let args = [
            "volume",
            "create",
            "-d",
            plugin.name(),
            "-o",
            &format!("source={}", sshd.source("")),
            "-o",
            &format!("o={o}"),
            &volume,
        ];
        docker(&args)
    };
    let refused = create(&plugin);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("ALLOW_OPTIONS=PermitLocalCommand"),
        "{stderr}"
    );
    let on_host = host_mountpoint(&plugin, &mark);
    assert!(!Path::new(&on_host).exists());

    plugin.apply(&[("ALLOW_OPTIONS", "PermitLocalCommand,LocalCommand")]);
    let allowed = create(&plugin);
    assert!(
        allowed.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&allowed.stderr),
        plugin.log_tail()
    );
    plugin.mounted(&volume);
    plugin.wait("the allowed LocalCommand ran", || {
        Path::new(&on_host).exists()
    });
    let _ = fs::remove_file(&on_host);
    let written = plugin
        .keys_dir()
        .join(known_hosts.trim_start_matches("/root/.ssh/"));
    assert!(
        !written.exists(),
        "ssh wrote {} through the key directory mount",
        written.display()
    );
}
