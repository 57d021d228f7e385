//! rclone in the managed plugin: the pinned upstream build from the image,
//! its config in the writable `rclone` mount (what it learns, as a token
//! refresh would, is saved on the host), its VFS cache in the `rclonecache`
//! mount on the host, and the plugin's proxy settings in its environment.

use std::fs;

use super::fixture::ManagedPlugin;
use super::{assert_rc_socket, tool_argv, wait_remote, MOUNT_ROOT};
use crate::support::docker::{run_in_container, Cleanup};
use crate::support::mounts::processes_with_arg;
use crate::support::remotes::{Remote, Sftp};
use crate::support::{rclone, unique_name};

#[test]
fn rclone_config_written_back_cache_on_the_host_and_proxy_settings() {
    let proxy = "http://127.0.0.1:3128";
    let mut plugin = ManagedPlugin::take(&[
        ("HTTP_PROXY", proxy),
        ("HTTPS_PROXY", proxy),
        ("NO_PROXY", "127.0.0.1,localhost"),
    ]);
    let remote = Sftp::start();
    // No shell_type: rclone finds it out and saves it in rclone.conf.
    let section = unique_name("mp-learns");
    let conf: String = remote
        .conf_section(&section)
        .lines()
        .filter(|l| !l.starts_with("shell_type"))
        .map(|l| format!("{l}\n"))
        .collect();
    plugin.install_rclone_conf(&conf);
    let mut cleanup = Cleanup::new();
    let volume = cleanup.volume(unique_name("mp-rclone-cfg"));
    plugin.create(
        &volume,
        &[
            ("type", "rclone".into()),
            ("source", format!("{section}:{}", remote.path(""))),
        ],
    );
    let status = plugin.mounted(&volume);
    assert_eq!(
        status["rcloneVersion"],
        format!("v{}", rclone::version()),
        "the image's rclone is the pinned one: {status}"
    );
    let argv = tool_argv(&plugin, "rclone", &volume);
    assert!(
        argv.iter().any(|a| a == "--vfs-cache-mode=writes"),
        "{argv:?}"
    );
    assert_rc_socket(&argv[argv.len() - 3..]);

    let saved = plugin.rclone_dir().join("rclone.conf");
    plugin.wait("rclone saved shell_type in rclone.conf on the host", || {
        fs::read_to_string(&saved).is_ok_and(|t| t.contains("shell_type = unix"))
    });

    run_in_container(&volume, "/data", "echo cached > /data/c.txt");
    wait_remote(&plugin, &remote.disk("c.txt"), "cached\n");
    let vfs = plugin.cache_dir().join("vfs");
    assert!(
        vfs.is_dir(),
        "no VFS cache in {}",
        plugin.cache_dir().display()
    );

    let (pid, _) = processes_with_arg(&format!("{MOUNT_ROOT}/{volume}"))
        .into_iter()
        .find(|(_, argv)| argv.first().is_some_and(|a| a.ends_with("rclone")))
        .expect("the volume's rclone");
    let env =
        String::from_utf8_lossy(&netfs::procfs::environ(pid).unwrap_or_default()).into_owned();
    for var in [
        format!("HTTP_PROXY={proxy}"),
        format!("HTTPS_PROXY={proxy}"),
        "NO_PROXY=127.0.0.1,localhost".to_owned(),
        "RCLONE_CONFIG=/etc/rclone/rclone.conf".to_owned(),
        "RCLONE_CACHE_DIR=/var/cache/rclone".to_owned(),
    ] {
        assert!(
            env.split('\0').any(|v| v == var),
            "{var} not in rclone's environment"
        );
    }
}
