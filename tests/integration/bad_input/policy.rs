//! The option policy against the real binary: with the default settings
//! every option that would run a local command, load a library, read
//! another configuration, use the host's credentials, open a tunnel or
//! reach a host file is refused at Create through `o`, `c` and `source`,
//! with a message naming the setting that would allow it, and nothing
//! runs; an operator re-allows one explicitly and it works again.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::tree;
use crate::support::calls::{create, start, try_status, T};
use crate::support::client::err_of;
use crate::support::mounts::{processes_with_arg, wait_until};
use crate::support::report;
use crate::support::sshd::Sshd;

/// What an error names so an operator can allow the option.
const ALLOW: &str = "ALLOW_OPTIONS=";

/// Every option the default policy refuses, as a volume would write it,
/// and the rule (as `ALLOW_OPTIONS` names it) that refuses it. Taken from
/// ssh_config(5), sshfs(1) and `rclone help flags`.
const DENIED: &[(&str, &str)] = &[
    ("ProxyCommand", "ProxyCommand"),
    ("ProxyJump", "ProxyJump"),
    ("ProxyUseFdpass", "ProxyUseFdpass"),
    ("LocalCommand", "LocalCommand"),
    ("PermitLocalCommand", "PermitLocalCommand"),
    ("KnownHostsCommand", "KnownHostsCommand"),
    ("XAuthLocation", "XAuthLocation"),
    ("PKCS11Provider", "PKCS11Provider"),
    ("SmartcardDevice", "SmartcardDevice"),
    ("SecurityKeyProvider", "SecurityKeyProvider"),
    ("F", "F"),
    ("IdentityAgent", "IdentityAgent"),
    ("ForwardAgent", "ForwardAgent"),
    ("AddKeysToAgent", "AddKeysToAgent"),
    ("ControlPath", "ControlPath"),
    ("ControlMaster", "ControlMaster"),
    ("ControlPersist", "ControlPersist"),
    ("GSSAPIDelegateCredentials", "GSSAPIDelegateCredentials"),
    ("EnableSSHKeysign", "EnableSSHKeysign"),
    ("LocalForward", "LocalForward"),
    ("RemoteForward", "RemoteForward"),
    ("DynamicForward", "DynamicForward"),
    ("GatewayPorts", "GatewayPorts"),
    ("PermitRemoteOpen", "PermitRemoteOpen"),
    ("Tunnel", "Tunnel"),
    ("TunnelDevice", "TunnelDevice"),
    ("ForwardX11", "ForwardX11"),
    ("ForwardX11Trusted", "ForwardX11Trusted"),
    ("SendEnv", "SendEnv"),
    ("ssh_command", "ssh_command"),
    ("ssh_protocol", "ssh_protocol"),
    ("sftp_server", "sftp_server"),
    ("password-command", "password_command"),
    ("config", "config"),
    ("cache-dir", "cache_dir"),
    ("temp-dir", "temp_dir"),
    ("log-file", "log_file"),
    ("files-from", "files_from"),
    ("files-from-raw", "files_from_raw"),
    ("include-from", "include_from"),
    ("exclude-from", "exclude_from"),
    ("filter-from", "filter_from"),
    ("cpuprofile", "cpuprofile"),
    ("memprofile", "memprofile"),
    ("rc", "rc*"),
    ("rc-addr", "rc*"),
    ("rc-files", "rc*"),
    ("dump", "dump*"),
    ("dump-headers", "dump*"),
    ("sftp-ssh", "ssh"),
    ("webdav-bearer-token-command", "bearer_token_command"),
    ("sftp-key-use-agent", "key_use_agent"),
    ("s3-env-auth", "env_auth"),
    ("azureblob-use-msi", "use_msi"),
    ("alias-remote", "remote"),
    ("crypt-remote", "remote"),
    ("union-upstreams", "upstreams"),
    ("combine-upstreams", "upstreams"),
    ("cache-chunk-path", "chunk_path"),
    ("cache-db-path", "db_path"),
    ("cache-tmp-upload-path", "tmp_upload_path"),
];

/// Options that name a file, which must lie in the key directory.
const IN_KEY_DIR: &[(&str, &str)] = &[
    ("IdentityFile", "IdentityFile"),
    ("CertificateFile", "CertificateFile"),
    ("UserKnownHostsFile", "UserKnownHostsFile"),
    ("GlobalKnownHostsFile", "GlobalKnownHostsFile"),
    ("RevokedHostKeys", "RevokedHostKeys"),
    ("uidfile", "uidfile"),
    ("gidfile", "gidfile"),
    ("ca-cert", "ca_cert"),
    ("client-cert", "client_cert"),
    ("client-key", "client_key"),
    ("sftp-key-file", "key_file"),
    ("sftp-pubkey-file", "pubkey_file"),
    ("sftp-known-hosts-file", "known_hosts_file"),
    ("drive-service-account-file", "service_account_file"),
    ("azureblob-service-principal-file", "service_principal_file"),
    ("box-box-config-file", "box_config_file"),
    ("s3-shared-credentials-file", "shared_credentials_file"),
];

/// rclone sources that serve the plugin's own filesystem, and their rule.
const SOURCES: &[(&str, &str)] = &[
    ("/etc", ":local"),
    ("etc", ":local"),
    (":local:/etc", ":local"),
    ("mine,type=local:/etc", ":local"),
    (":alias,remote=/etc:", ":alias"),
    (":union,upstreams=/etc:", ":union"),
    (":combine,upstreams=\"etc=/etc\":", ":combine"),
    (":crypt,remote=/etc:", ":crypt"),
    (":chunker,remote=/etc:", ":chunker"),
    (":hasher,remote=/etc:", ":hasher"),
    (":compress,remote=/etc:", ":compress"),
    (":cache,remote=/etc:", ":cache"),
];

struct Attempt {
    what: String,
    opts: Value,
    /// Texts the error must contain.
    says: Vec<String>,
}

fn attempts(sshd: &Sshd, marks: &Path) -> Vec<Attempt> {
    let src = sshd.source("");
    let base = sshd.sshfs_options();
    let rclone_src = ":sftp,host=127.0.0.1,port=1:/x";
    let mut out = Vec::new();
    let mut add = |key: &str, rule: &str, value: &str| {
        let allow = format!("{ALLOW}{rule}");
        let says = |place: &str| vec![place.to_owned(), format!("{key:?}"), allow.clone()];
        out.push(Attempt {
            what: format!("o {key}"),
            opts: json!({"source": src, "o": format!("{base},{key}={value}")}),
            says: says("volume option \"o\""),
        });
        let (c_ssh, c_long) = match key.len() {
            1 => (format!("-{key}{value}"), format!("-{key}&{value}")),
            _ => (format!("-o{key}={value}"), format!("--{key}&{value}")),
        };
        out.push(Attempt {
            what: format!("c {c_ssh}"),
            opts: json!({"source": src, "o": base, "c": format!("-C&{c_ssh}")}),
            says: says("volume option \"c\": item 2"),
        });
        out.push(Attempt {
            what: format!("rclone c {c_long}"),
            opts: json!({"type": "rclone", "source": rclone_src, "c": c_long}),
            says: says("volume option \"c\": item 1"),
        });
        out.push(Attempt {
            what: format!("rclone source {key}"),
            opts: json!({"type": "rclone", "source": format!(":sftp,host=127.0.0.1,{key}={value}:/x")}),
            says: says("volume option \"source\""),
        });
    };
    for (n, (key, rule)) in DENIED.iter().enumerate() {
        let value = format!("touch {}", marks.join(format!("d{n}")).display());
        add(key, rule, &value);
    }
    for (n, (key, rule)) in IN_KEY_DIR.iter().enumerate() {
        let outside = marks.join(format!("f{n}"));
        fs::write(&outside, "not a key").unwrap();
        add(key, rule, &outside.display().to_string());
    }
    for (source, rule) in SOURCES {
        out.push(Attempt {
            what: format!("rclone source {source}"),
            opts: json!({"type": "rclone", "source": source}),
            says: vec![
                "volume option \"source\"".to_owned(),
                format!("{ALLOW}{rule}"),
            ],
        });
    }
    out
}

/// With the default settings, each way to ask for each denied option is
/// refused at Create with a message naming the option and the setting that
/// would allow it, and nothing runs or is read.
#[test]
fn every_denied_option_is_refused_through_o_c_and_source_by_default() {
    let listed: BTreeSet<&str> = DENIED
        .iter()
        .chain(IN_KEY_DIR)
        .chain(SOURCES)
        .map(|(_, rule)| *rule)
        .collect();
    let rules: BTreeSet<&str> = netfs::options::policy::RULES
        .iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(
        listed, rules,
        "every rule of the default policy is tried here"
    );

    let sshd = Sshd::new();
    let marks = tempfile::Builder::new()
        .prefix("netfs-marks-")
        .tempdir()
        .unwrap();
    let plugin = start(&["--mount-timeout=5s"]);
    let attempts = attempts(&sshd, marks.path());
    let before = tree(marks.path());
    for a in &attempts {
        let (code, reply) = create(&plugin, "evil", a.opts.clone());
        assert_eq!(code, 500, "{}: {reply}", a.what);
        let err = err_of(&reply);
        for text in &a.says {
            assert!(
                err.contains(text.as_str()),
                "{}: {err:?} should say {text}",
                a.what
            );
        }
    }
    assert!(try_status(&plugin, "evil").is_none());
    assert_eq!(tree(marks.path()), before, "a command ran");
    let root = format!("{}/", plugin.mount_root().display());
    assert!(processes_with_arg(&root).is_empty(), "a tool was started");
    // What the policy lets through still mounts: a key in the key directory.
    let fine =
        json!({"source": sshd.source(""), "o": format!("{},reconnect", sshd.sshfs_options())});
    assert_eq!(create(&plugin, "fine", fine).0, 200, "{}", plugin.log());
    assert_eq!(
        plugin
            .post("/VolumeDriver.Remove", json!({"Name": "fine"}))
            .0,
        200
    );
    report(
        "bad-input",
        &format!(
            "option policy, default settings: {} options and {} sources tried in {} Creates through o, c \
             and source; all refused naming ALLOW_OPTIONS, 0 commands ran, 0 tools started",
            DENIED.len() + IN_KEY_DIR.len(),
            SOURCES.len(),
            attempts.len()
        ),
    );
}

/// An operator re-allows ProxyCommand and LocalCommand: they run again.
/// Without the allowance the stored volume is kept but not started.
#[test]
fn an_operator_reallows_an_option_explicitly() {
    let sshd = Sshd::new();
    let marks = tempfile::Builder::new()
        .prefix("netfs-marks-")
        .tempdir()
        .unwrap();
    let mark = |n: &str| marks.path().join(n);
    let src = sshd.source("");
    let opts = |o: String| json!({"source": src, "o": format!("{},{o}", sshd.sshfs_options())});
    let proxy = opts(format!("ProxyCommand=touch {}", mark("ran").display()));
    let local = opts(format!(
        "PermitLocalCommand=yes,LocalCommand=touch {}",
        mark("local").display()
    ));

    // Default: refused, and nothing ran.
    let mut plugin = start(&["--mount-timeout=5s"]);
    for body in [&proxy, &local] {
        let (code, reply) = create(&plugin, "v", body.clone());
        assert_eq!(code, 500, "{reply}");
        assert!(err_of(&reply).contains(ALLOW), "{reply}");
    }
    assert!(tree(marks.path()).is_empty());

    // Allowed: ProxyCommand runs (the Create then fails, as `touch` is no
    // proxy), and a volume with a LocalCommand mounts and runs it.
    plugin.set_env(
        "ALLOW_OPTIONS",
        "ProxyCommand,PermitLocalCommand,LocalCommand",
    );
    plugin.restart();
    let (code, reply) = create(&plugin, "open", proxy);
    assert_eq!(code, 500, "{reply}");
    wait_until(T, "ProxyCommand ran once allowed", || mark("ran").exists());
    assert_eq!(
        create(&plugin, "was-allowed", local).0,
        200,
        "{}",
        plugin.log()
    );
    wait_until(T, "LocalCommand ran once allowed", || {
        mark("local").exists()
    });
    fs::remove_file(mark("local")).unwrap();

    // The allowance is withdrawn: the stored volume stays listed and
    // stored, its tool is not started again, and it refuses Mount.
    plugin.set_env("ALLOW_OPTIONS", "");
    plugin.restart();
    let st = try_status(&plugin, "was-allowed").expect("still listed");
    assert_eq!(st["state"], "failed", "{st}");
    assert!(st["lastError"].as_str().unwrap().contains(ALLOW), "{st}");
    let (code, reply) = plugin.post(
        "/VolumeDriver.Mount",
        json!({"Name": "was-allowed", "ID": "c1"}),
    );
    assert_eq!(code, 500);
    assert!(
        err_of(&reply).contains("cannot be used") && err_of(&reply).contains(ALLOW),
        "{reply}"
    );
    let mp = plugin.mount_root().join("was-allowed");
    assert!(processes_with_arg(mp.to_str().unwrap()).is_empty());
    assert!(!mark("local").exists(), "LocalCommand ran again");
    assert!(fs::read_to_string(plugin.state_file())
        .unwrap()
        .contains("was-allowed"));
    assert_eq!(
        plugin
            .post("/VolumeDriver.Remove", json!({"Name": "was-allowed"}))
            .0,
        200
    );
    report(
        "bad-input",
        "option policy: ProxyCommand and LocalCommand refused by default, ran once ALLOW_OPTIONS named them, \
         and a volume stored under the allowance was kept but not started once it was withdrawn",
    );
}

/// Key files: inside the key directory a volume mounts with its key; a key
/// outside it is refused unless the operator lifts the rule.
#[test]
fn key_files_must_lie_in_the_key_directory() {
    let sshd = Sshd::new();
    let outside: PathBuf = tempfile::Builder::new()
        .prefix("netfs-key-")
        .tempdir()
        .unwrap()
        .keep();
    let key = outside.join("id");
    fs::copy(sshd.key_path(), &key).unwrap();
    let opts = json!({
        "source": sshd.source(""),
        "o": format!("port={},IdentityFile={},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null", sshd.port(), key.display()),
    });
    let plugin = start(&["--mount-timeout=10s"]);
    let (code, reply) = create(&plugin, "k", opts.clone());
    assert_eq!(code, 500);
    assert!(
        err_of(&reply).contains("outside the key directory /run/netfs-test/keys"),
        "{reply}"
    );
    drop(plugin);
    // The flag form of the setting, on the command line.
    let plugin = start(&["--mount-timeout=10s", "--allow-options=IdentityFile"]);
    assert_eq!(create(&plugin, "k", opts).0, 200, "{}", plugin.log());
    assert_eq!(try_status(&plugin, "k").unwrap()["state"], "mounted");
    assert_eq!(
        plugin.post("/VolumeDriver.Remove", json!({"Name": "k"})).0,
        200
    );
    let _ = fs::remove_dir_all(&outside);
}
