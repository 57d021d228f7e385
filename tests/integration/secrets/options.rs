//! Secrets given as options rather than as `password`: every spelling
//! rclone accepts (a connection-string parameter, a flag in `o`, a flag in
//! `c` with its value attached or in the next item) reaches rclone through
//! its environment, so a real mount uses them while no value shows in any
//! process's argv, a log line, an error or Status. Backends that cannot
//! mount here (s3, webdav, ftp) show the same through their Creates. sshfs
//! and ssh take no secret but `password` on stdin: a secret-looking option
//! for sshfs is refused without quoting its value.

use std::fs;
use std::process::Command;

use serde_json::{json, Value};

use super::Audit;
use crate::support::calls::{create, start, try_status};
use crate::support::client::err_of;
use crate::support::cmd;
use crate::support::mounts::{all_pids, cmdline};
use crate::support::report;
use crate::support::sshd::Sshd;

fn obscure(clear: &str) -> String {
    let out = cmd::run_ok(Command::new("rclone").args(["obscure", clear]));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A value no other process on the machine holds.
fn unique(what: &str) -> String {
    format!("{what}-{}-{:x}", std::process::id(), rand_u64())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(1);
    h.finish()
}

/// A fresh secret, kept in `list` in clear and as given (obscured or not).
fn secret(list: &mut Vec<String>, what: &str, obscured: bool) -> String {
    let clear = unique(what);
    let value = if obscured {
        obscure(&clear)
    } else {
        clear.clone()
    };
    list.push(clear);
    list.push(value.clone());
    value
}

#[test]
fn secret_options_in_every_spelling_stay_out_of_argv_logs_errors_and_status() {
    let sshd = Sshd::new();
    // A passphrase-protected copy of the login key, in the key directory:
    // the mount works only if key_file_pass reaches rclone.
    let enc_key = sshd.key_path().with_file_name("client_key_enc");
    fs::copy(sshd.key_path(), &enc_key).unwrap();
    let passphrase = unique("passphrase");
    cmd::run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-p", "-P", "", "-N", &passphrase, "-f"])
            .arg(&enc_key),
    );

    let plugin = start(&["--mount-timeout=15s", "--log-level=trace"]);
    let mut secrets: Vec<String> = vec![passphrase.clone()];
    let mut secret = |what: &str, obscured: bool| secret(&mut secrets, what, obscured);
    let key_file_pass = obscure(&passphrase);
    let (pass, s3_key, ftp_pass, webdav_pass, session, bearer) = (
        secret("pass", true),
        secret("s3-secret", false),
        secret("ftp-pass", true),
        secret("webdav-pass", true),
        secret("session-token", false),
        secret("bearer", false),
    );

    // A real rclone mount carrying a secret in every spelling.
    let remote = sshd.remote_path("rclone");
    let source = format!(
        ":sftp,host=127.0.0.1,port={},user=root,key_file={},key_file_pass={key_file_pass},\
         pass=\"{pass}\",shell_type=unix:{}",
        sshd.port(),
        enc_key.display(),
        remote.display()
    );
    let mounted = json!({
        "type": "rclone",
        "source": source,
        "o": format!("s3-secret-access-key={s3_key},ftp-pass={ftp_pass}"),
        "c": format!("--webdav-pass&{webdav_pass}&--s3-session-token={session}&--webdav-bearer-token={bearer}"),
    });
    let (code, reply) = create(&plugin, "rclone-secrets", mounted);
    assert_eq!(code, 200, "{reply}\n{}", plugin.log());
    let mp = plugin.mount_root().join("rclone-secrets");
    fs::write(mp.join("through.txt"), "written").unwrap();
    // Uploaded from rclone's VFS cache a few seconds after the close.
    let through = remote.join("through.txt");
    crate::support::mounts::wait_until(
        std::time::Duration::from_secs(20),
        "through.txt uploaded",
        || fs::read_to_string(&through).is_ok_and(|t| t == "written"),
    );

    // Backends that cannot mount here: whatever their Create gives.
    // An access key id names the key; it is not secret (and shows).
    let (s3_access, s3_secret2, s3_token) = (
        unique("s3-access"),
        secret("s3-secret2", false),
        secret("s3-token", false),
    );
    let (dav_pass, dav_bearer, ftp2) = (
        secret("dav-pass", true),
        secret("dav-bearer", false),
        secret("ftp2", true),
    );
    let (sshfs_pw, sshfs_phrase) = (secret("sshfs-pw", false), secret("sshfs-phrase", false));
    let others: Vec<(&str, Value)> = vec![
        (
            "s3",
            json!({"type": "rclone", "source": format!(
            ":s3,provider=Other,endpoint='http://127.0.0.1:1',access_key_id={s3_access},\
             secret_access_key={s3_secret2},session_token={s3_token}:bucket")}),
        ),
        (
            "webdav",
            json!({"type": "rclone", "source": format!(
            ":webdav,url='http://127.0.0.1:1',user=u,pass={dav_pass},bearer_token={dav_bearer}:/")}),
        ),
        (
            "webdav-unquoted",
            json!({"type": "rclone", "source": format!(
            ":webdav,url=http://127.0.0.1:1,pass={dav_pass}:/")}),
        ),
        (
            "ftp",
            json!({"type": "rclone", "source": format!(":ftp,host=127.0.0.1,port=1,user=u,pass={ftp2}:/")}),
        ),
        (
            "sshfs-o",
            json!({"source": sshd.source(""), "o": format!("{},password={sshfs_pw}", sshd.sshfs_options())}),
        ),
        (
            "sshfs-c",
            json!({"source": sshd.source(""), "o": sshd.sshfs_options(), "c": format!("-opassphrase={sshfs_phrase}")}),
        ),
    ];
    secrets.push(key_file_pass.clone());
    let mut audit = Audit::default();
    let mut errors = 0;
    for (name, opts) in &others {
        let (code, reply) = create(&plugin, name, opts.clone());
        if code != 200 {
            errors += 1;
            for s in &secrets {
                audit.clean(&format!("the error of {name}"), err_of(&reply), s);
            }
        }
        if *name == "webdav-unquoted" {
            assert!(err_of(&reply).contains("quote a value"), "{reply}");
        }
        if name.starts_with("sshfs") {
            assert_eq!(code, 500, "{reply}");
            assert!(
                err_of(&reply).contains("takes a secret only on its stdin"),
                "{reply}"
            );
        }
    }

    // Status of every volume, every process's argv, netfs's environment, the log.
    let mut volumes: Vec<&str> = vec!["rclone-secrets"];
    volumes.extend(others.iter().map(|(n, _)| *n));
    for v in &volumes {
        if let Some(st) = try_status(&plugin, v) {
            for s in &secrets {
                audit.clean(&format!("Status of {v}"), &st.to_string(), s);
            }
        }
    }
    let st = try_status(&plugin, "rclone-secrets").unwrap();
    assert!(
        st["command"]
            .as_str()
            .unwrap()
            .contains("RCLONE_SFTP_PASS=*** "),
        "{st}"
    );
    let shown = st["source"].as_str().unwrap();
    assert!(
        shown.contains("pass=***") && shown.ends_with(&format!(":{}", remote.display())),
        "{st}"
    );
    let pids = all_pids();
    for pid in &pids {
        let argv = cmdline(*pid).join(" ");
        for s in &secrets {
            audit.clean(&format!("/proc/{pid}/cmdline"), &argv, s);
        }
    }
    let env = netfs::procfs::environ(plugin.pid() as i32).unwrap_or_default();
    for s in &secrets {
        audit.clean("netfs's environment", &String::from_utf8_lossy(&env), s);
    }
    let log = plugin.log();
    for line in log.lines() {
        for s in &secrets {
            audit.clean("the log", line, s);
        }
    }
    for v in &volumes {
        plugin.post("/VolumeDriver.Remove", json!({"Name": v}));
    }
    report(
        "secrets",
        &format!(
            "{} secret values (rclone pass, key_file_pass, s3 secret/session, ftp, webdav pass/bearer, sshfs o/c) \
             in a real rclone mount and {} other Creates ({errors} failed): 0 in {} checks of argv of {} processes, \
             Status, errors, netfs's environment and {} log lines",
            secrets.len(),
            others.len(),
            audit.places,
            pids.len(),
            log.lines().count()
        ),
    );
}
