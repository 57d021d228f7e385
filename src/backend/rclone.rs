//! `rclone mount SOURCE MOUNTPOINT [process options] [--key=value ...]`.
//! Mount options become rclone flags: `vfs-cache-mode=full,allow-other` is
//! `--vfs-cache-mode=full --allow-other`. rclone stays in the foreground.
//! Secrets never reach its argv: rclone reads every flag from `RCLONE_FLAG`
//! and every option of a remote from `RCLONE_<BACKEND>_<OPTION>` or
//! `RCLONE_CONFIG_<REMOTE>_<OPTION>`, so a secret flag or connection-string
//! parameter is moved into its environment instead.
//! A volume that names no `vfs-cache-mode` gets [`DEFAULT_VFS_CACHE_MODE`].
//! rclone serves its remote control on a unix socket netfs names (no
//! authentication: the socket's directory is root's alone), so that a stop
//! can let queued uploads through first (`supervisor::uploads`).

use super::{BackendError, BackendKind, CommandInputs, Invocation};
use crate::options::remote::{self, RcloneSource};
use crate::secret::{is_secret_key, secret_keys, Secret};

pub fn build(req: &CommandInputs<'_>) -> Result<Invocation, BackendError> {
    let source = req.source(BackendKind::Rclone)?;
    if req.password.is_some() {
        return Err(BackendError::PasswordUnsupported(BackendKind::Rclone));
    }
    let mut env = Vec::new();
    let mut flags = Vec::new();
    let process_args = req.process_args();
    let mut items = process_args.into_iter();
    while let Some(item) = items.next() {
        match secret_flag(&item) {
            Some((key, Some(value))) => env.push((env_name(&[key]), Secret::new(value))),
            Some((key, None)) => {
                let value = items.next().unwrap_or_default();
                env.push((env_name(&[key]), Secret::new(value)));
            }
            None => flags.push(item),
        }
    }
    for option in req.mount_options.iter() {
        match &option.value {
            Some(v) if is_secret_key(&option.key) => {
                env.push((env_name(&[&option.key]), Secret::new(v.clone())));
            }
            Some(v) => flags.push(format!("--{}={}", option.key, v)),
            None => flags.push(format!("--{}", option.key)),
        }
    }
    // Last: a connection string's parameters win over flags, as in rclone.
    let source = match remote::parse(source) {
        RcloneSource::Remote(r) if r.params.iter().any(is_secret_param) => {
            for p in r.params.iter().filter(|p| is_secret_param(p)) {
                let scope = if r.on_the_fly {
                    vec![r.name]
                } else {
                    vec!["config", r.name]
                };
                let name = env_name(&[scope.as_slice(), &[p.key]].concat());
                env.push((name, Secret::new(p.value().unwrap_or_default())));
            }
            r.render_without(is_secret_param)
        }
        _ => source.to_owned(),
    };
    if !flags.iter().any(|f| f.starts_with("--vfs-cache-mode")) {
        flags.push(format!("--vfs-cache-mode={DEFAULT_VFS_CACHE_MODE}"));
    }
    // An operator who set rclone's remote control up (MOUNT_OPTIONS; a
    // volume may not) keeps theirs, and stops without the wait.
    let rc_socket = match &req.settings.rclone_rc_dir {
        Some(dir) if !flags.iter().any(|f| f.starts_with("--rc")) => {
            let socket = dir.join(rc_socket_name(req.name));
            flags.push("--rc".to_owned());
            flags.push(format!("--rc-addr={}", socket.display()));
            flags.push("--rc-no-auth".to_owned());
            Some(socket)
        }
        _ => None,
    };
    let mut args = vec!["mount".to_owned(), source, req.mount_point()];
    args.extend(flags);
    if let Some(key) = secret_keys(&args).first() {
        return Err(BackendError::SecretLeftInArgv {
            key: (*key).to_owned(),
        });
    }
    Ok(Invocation {
        program: "rclone".to_owned(),
        args,
        env,
        stdin: None,
        hints: HINTS,
        login: None,
        rc_socket,
    })
}

/// The first rclone that serves its remote control on a unix socket and
/// has `vfs/queue`.
pub const RC_SOCKET_SINCE: (u32, u32) = (1, 65);

/// True if rclone `version` (`v1.75.2`, `v1.60.1-DEV`) serves its remote
/// control on a unix socket.
pub fn serves_rc_socket(version: &str) -> bool {
    let mut parts = version.trim_start_matches('v').split(['.', '-']);
    let mut number = || parts.next().and_then(|p| p.parse::<u32>().ok());
    match (number(), number()) {
        (Some(major), Some(minor)) => (major, minor) >= RC_SOCKET_SINCE,
        _ => false,
    }
}

/// A socket name short enough for any volume name (a unix socket path has
/// 108 bytes): a hash of the name, unique among the volumes of one run.
fn rc_socket_name(volume: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    volume.hash(&mut hasher);
    format!("{:016x}.sock", hasher.finish())
}

/// rclone's own default, `off`, cannot open a file for reading and writing
/// at once, nor write into the middle of one: sqlite, editors and most
/// programs that keep a file open fail on it. `writes` stages written files
/// in the VFS cache and uploads them when closed. A volume sets
/// `vfs-cache-mode=off` (or `full`) to choose otherwise.
pub const DEFAULT_VFS_CACHE_MODE: &str = "writes";

fn is_secret_param(p: &remote::RemoteParam<'_>) -> bool {
    p.raw.is_some() && is_secret_key(p.key)
}

/// `--key=value` or `--key` (value in the next argument) with a secret key.
fn secret_flag(item: &str) -> Option<(&str, Option<&str>)> {
    let flag = item.strip_prefix("--")?;
    let (key, value) = match flag.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (flag, None),
    };
    is_secret_key(key).then_some((key, value))
}

/// `RCLONE_` and the parts, upper case, `-` as `_`: how rclone names the
/// variable of a flag (`sftp-pass`) or a remote's option (`config`, `media`, `pass`).
fn env_name(parts: &[&str]) -> String {
    let mut name = "RCLONE".to_owned();
    for part in parts {
        name.push('_');
        name.extend(part.chars().map(|c| match c {
            '-' => '_',
            c => c.to_ascii_uppercase(),
        }));
    }
    name
}

const HINTS: &[(&str, &str)] = &[
    (
        "didn't find section in config file",
        "no such remote: use an on-the-fly remote such as :sftp,host=...:path, or define it in the rclone config (RCLONE_CONFIG)",
    ),
    (
        "unknown flag",
        "this rclone does not know that option: it may need a newer rclone than the one netfs runs (see `rclone version`, or rcloneVersion in another rclone volume's Status)",
    ),
    (
        "didn't find backend called",
        "this rclone has no such backend: it may need a newer rclone than the one netfs runs (see `rclone version`)",
    ),
    (
        "is a file not a directory",
        "rclone found no directory at that path; on S3 a wrong access key or secret reads the same, as the check of the path is refused",
    ),
];

#[cfg(test)]
mod tests {
    use super::super::test_support::request;
    use super::super::BackendSettings;
    use super::*;

    fn env(inv: &Invocation) -> Vec<(&str, &str)> {
        inv.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect()
    }

    #[test]
    fn argv() {
        let s = BackendSettings::default();
        let src = ":sftp,host=127.0.0.1,port=22:/srv";
        let inv = build(&request(
            &s,
            Some(src),
            "-v",
            "vfs-cache-mode=full,allow-other",
            None,
        ))
        .unwrap();
        assert_eq!(
            inv.args,
            [
                "mount",
                src,
                "/mnt/volumes/vol",
                "-v",
                "--vfs-cache-mode=full",
                "--allow-other"
            ]
        );
        assert!(inv.env.is_empty());
        assert_eq!(
            inv.display(),
            "rclone mount ':sftp,host=127.0.0.1,port=22:/srv' /mnt/volumes/vol -v '--vfs-cache-mode=full' --allow-other"
        );
    }

    #[test]
    fn the_vfs_cache_mode_defaults_to_writes_unless_named() {
        let s = BackendSettings::default();
        let args = |c: &str, o: &str| build(&request(&s, Some("r:"), c, o, None)).unwrap().args;
        assert_eq!(args("", "")[3..], ["--vfs-cache-mode=writes"]);
        assert_eq!(
            args("", "vfs-cache-mode=off")[3..],
            ["--vfs-cache-mode=off"]
        );
        assert_eq!(
            args("--vfs-cache-mode&full", "")[3..],
            ["--vfs-cache-mode", "full"]
        );
    }

    #[test]
    fn secrets_go_to_the_environment_in_every_spelling() {
        let s = BackendSettings::default();
        let inv = build(&request(
            &s,
            Some(":sftp,host=h,pass=\"p,1\",key_file_pass=p2:/srv"),
            "--ftp-pass=p3&-v&--webdav-pass&p4",
            "s3-secret-access-key=p5,vfs-cache-mode=full,s3-session-token=p6",
            None,
        ))
        .unwrap();
        assert_eq!(
            inv.args,
            [
                "mount",
                ":sftp,host=h:/srv",
                "/mnt/volumes/vol",
                "-v",
                "--vfs-cache-mode=full"
            ]
        );
        assert_eq!(
            env(&inv),
            [
                ("RCLONE_FTP_PASS", "p3"),
                ("RCLONE_WEBDAV_PASS", "p4"),
                ("RCLONE_S3_SECRET_ACCESS_KEY", "p5"),
                ("RCLONE_S3_SESSION_TOKEN", "p6"),
                ("RCLONE_SFTP_PASS", "p,1"),
                ("RCLONE_SFTP_KEY_FILE_PASS", "p2"),
            ]
        );
        let shown = inv.display();
        assert!(shown.starts_with("RCLONE_FTP_PASS=*** "), "{shown}");
        for p in ["p,1", "p2", "p3", "p4", "p5", "p6"] {
            assert!(!shown.contains(p), "{p} in {shown}");
            assert!(inv.secrets().iter().any(|s| s.expose() == p), "{p}");
        }
        // a configured remote's own variable
        let inv = build(&request(
            &s,
            Some("my-media,bearer_token=t:/x"),
            "",
            "",
            None,
        ))
        .unwrap();
        assert_eq!(
            inv.args[1..],
            ["my-media:/x", "/mnt/volumes/vol", "--vfs-cache-mode=writes"]
        );
        assert_eq!(env(&inv), [("RCLONE_CONFIG_MY_MEDIA_BEARER_TOKEN", "t")]);
        // an unquoted url ends the parameters early: what follows is no
        // option for rclone, and is refused rather than put in argv
        let err = build(&request(
            &s,
            Some(":webdav,url=http://h:1,pass=p:/"),
            "",
            "",
            None,
        ))
        .unwrap_err();
        assert_eq!(err, BackendError::SecretLeftInArgv { key: "pass".into() });
    }

    #[test]
    fn a_remote_control_socket_where_rclone_serves_one() {
        let s = BackendSettings {
            rclone_rc_dir: Some("/var/lib/netfs/rclone-rc".into()),
            ..BackendSettings::default()
        };
        let inv = build(&request(&s, Some(":s3:bucket"), "", "", None)).unwrap();
        let socket = inv.rc_socket.clone().expect("a socket");
        assert!(socket.starts_with("/var/lib/netfs/rclone-rc"), "{socket:?}");
        assert_eq!(
            inv.args[inv.args.len() - 3..],
            [
                "--rc".to_owned(),
                format!("--rc-addr={}", socket.display()),
                "--rc-no-auth".to_owned()
            ]
        );
        // An operator's own remote control stays as it is, with no wait.
        let own = build(&request(
            &s,
            Some(":s3:bucket"),
            "",
            "rc,rc-addr=127.0.0.1:5572",
            None,
        ))
        .unwrap();
        assert_eq!(own.rc_socket, None);
        assert_eq!(own.args.iter().filter(|a| a.starts_with("--rc")).count(), 2);
        // Without a directory (an rclone too old), none.
        let old = build(&request(
            &BackendSettings::default(),
            Some(":s3:b"),
            "",
            "",
            None,
        ))
        .unwrap();
        assert_eq!(old.rc_socket, None);
        assert!(!old.args.iter().any(|a| a.starts_with("--rc")));
    }

    #[test]
    fn which_rclone_serves_its_remote_control_on_a_socket() {
        assert!(serves_rc_socket("v1.75.2"));
        assert!(serves_rc_socket("v1.65.0"));
        assert!(serves_rc_socket("v2.0.0-beta"));
        assert!(!serves_rc_socket("v1.60.1-DEV"));
        assert!(!serves_rc_socket("v1.64.2"));
        assert!(!serves_rc_socket(
            "unknown (rclone: No such file or directory)"
        ));
    }

    #[test]
    fn socket_names_fit_any_volume_name() {
        let long = "v".repeat(255);
        assert_eq!(rc_socket_name(&long).len(), 21);
        assert_ne!(rc_socket_name("a"), rc_socket_name("b"));
        assert_eq!(rc_socket_name("a"), rc_socket_name("a"));
    }
}
