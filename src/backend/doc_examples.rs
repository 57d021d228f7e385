//! The worked examples of docs/options.md, built through the real merge and
//! backends: if one of these fails, the documentation is wrong.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::backend::{self, BackendSettings, CommandInputs};
use crate::options::{BackendKind, MountOptions, ProcessOptions, VolumeOptions};

struct Example<'a> {
    plugin_o: &'a str,
    plugin_c: &'a str,
    settings: BackendSettings,
    default_type: BackendKind,
    volume: &'a [(&'a str, &'a str)],
    name: &'a str,
}

impl Example<'_> {
    fn argv(&self) -> (Vec<String>, String) {
        let opts: BTreeMap<String, String> = self
            .volume
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let volume = VolumeOptions::parse(&opts).expect("example volume options parse");
        let mount_point = PathBuf::from("/var/lib/netfs/volumes").join(self.name);
        let request = CommandInputs {
            name: self.name,
            source: volume.source.as_deref(),
            mount_point: &mount_point,
            process_options: ProcessOptions::parse(self.plugin_c)
                .unwrap()
                .concat(&volume.process_options),
            mount_options: MountOptions::parse_defaults(self.plugin_o)
                .unwrap()
                .merge(&volume.mount_options),
            password: volume.password.as_ref(),
            settings: &self.settings,
        };
        let kind = volume.kind.unwrap_or(self.default_type);
        let invocation = backend::build(kind, &request).expect("example builds");
        let mut argv = vec![invocation.program.clone()];
        argv.extend(invocation.args.iter().cloned());
        (argv, invocation.display())
    }
}

fn words(line: &str) -> Vec<String> {
    line.split(' ').map(str::to_owned).collect()
}

#[test]
fn sshfs() {
    let mut example = Example {
        plugin_o: "allow_other,reconnect,ServerAliveInterval=15,dir_cache=yes",
        plugin_c: "-C",
        settings: BackendSettings::default(),
        default_type: BackendKind::Sshfs,
        volume: &[
            ("source", "me@files:/srv"),
            ("o", "ServerAliveInterval=5,dir_cache=-,port=2222"),
            ("c", "-o&idmap=user"),
        ],
        name: "data",
    };
    let (argv, display) = example.argv();
    assert_eq!(
        argv,
        words("sshfs me@files:/srv /var/lib/netfs/volumes/data -f -C -o idmap=user -o allow_other,reconnect,ServerAliveInterval=5,port=2222")
    );
    assert_eq!(
        display,
        "sshfs me@files:/srv /var/lib/netfs/volumes/data -f -C -o 'idmap=user' -o 'allow_other,reconnect,ServerAliveInterval=5,port=2222'"
    );
    example.volume = &[("source", "me@files:/other")];
    assert_eq!(
        example.argv().0[3..],
        words("-f -C -o allow_other,reconnect,ServerAliveInterval=15,dir_cache=yes")
    );
    example.volume = &[
        ("source", "me@files:/srv"),
        ("o", "ServerAliveInterval=5,dir_cache=-,port=2222"),
        ("password", "hunter2"),
    ];
    assert_eq!(
        example.argv().0.last().unwrap(),
        "allow_other,reconnect,ServerAliveInterval=5,port=2222,password_stdin"
    );
}

#[test]
fn rclone() {
    let example = Example {
        plugin_o: "allow-other,vfs-cache-mode=writes,dir-cache-time=1m",
        plugin_c: "",
        settings: BackendSettings::default(),
        default_type: BackendKind::Rclone,
        volume: &[
            (
                "source",
                ":sftp,host=files,user=me,key_file=/etc/netfs/ssh/id_ed25519:/srv",
            ),
            ("o", "vfs-cache-mode=full,dir-cache-time=-"),
            ("c", "--log-level=INFO&--log-format=date"),
        ],
        name: "media",
    };
    assert_eq!(
        example.argv().0,
        words("rclone mount :sftp,host=files,user=me,key_file=/etc/netfs/ssh/id_ed25519:/srv /var/lib/netfs/volumes/media --log-level=INFO --log-format=date --allow-other --vfs-cache-mode=full")
    );
}

#[test]
fn nfs() {
    let example = Example {
        plugin_o: "allow_other,reconnect,ServerAliveInterval=15",
        plugin_c: "",
        settings: BackendSettings::default(),
        default_type: BackendKind::Sshfs,
        volume: &[
            ("type", "nfs"),
            ("source", "nas:/volume1/data"),
            (
                "o",
                "allow_other=-,reconnect=-,ServerAliveInterval=-,vers=4.2,soft,timeo=100",
            ),
        ],
        name: "share",
    };
    assert_eq!(
        example.argv().0,
        words(
            "mount.nfs nas:/volume1/data /var/lib/netfs/volumes/share -o vers=4.2,soft,timeo=100"
        )
    );
}

#[test]
fn command() {
    let mut example = Example {
        plugin_o: "IdentityFile=/etc/netfs/ssh/id_ed25519,dir_cache=yes",
        plugin_c: "{source}&{mountPoint}&-f",
        settings: BackendSettings {
            command_binary: Some("/usr/bin/sshfs".into()),
            command_mount_option_flag: Some("-o".into()),
            rclone_rc_dir: None,
        },
        default_type: BackendKind::Sshfs,
        volume: &[
            ("type", "command"),
            ("source", "me@files:/srv"),
            ("o", "reconnect,dir_cache=-"),
        ],
        name: "tool",
    };
    assert_eq!(
        example.argv().0,
        words("/usr/bin/sshfs me@files:/srv /var/lib/netfs/volumes/tool -f -o IdentityFile=/etc/netfs/ssh/id_ed25519,reconnect")
    );
    example.plugin_o = "";
    example.plugin_c = "";
    example.settings.command_binary = Some("/usr/local/bin/mymount".into());
    example.volume = &[("type", "command"), ("o", "a=1,b")];
    example.name = "v";
    assert_eq!(
        example.argv().0,
        words("/usr/local/bin/mymount /var/lib/netfs/volumes/v -o a=1,b")
    );
    example.settings.command_mount_option_flag = None;
    assert_eq!(
        example.argv().0,
        words("/usr/local/bin/mymount /var/lib/netfs/volumes/v a=1,b")
    );
    example.volume = &[("type", "command")];
    assert_eq!(
        example.argv().0,
        words("/usr/local/bin/mymount /var/lib/netfs/volumes/v")
    );
}
