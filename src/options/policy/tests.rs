//! The default policy rule by rule, and how `--allow-options` and
//! `--deny-options` widen and narrow it.

use std::collections::BTreeMap;

use super::*;

const KEY_DIR: &str = "/etc/netfs/ssh";

const PLACES: Placeholders<'static> = Placeholders {
    mount_point: "/m/vol",
    source: "",
    name: "vol",
};

fn policy(allow: &[&str], deny: &[&str]) -> Policy {
    let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Policy::new(&list(allow), &list(deny), KEY_DIR.into()).unwrap()
}

fn check_as(
    policy: &Policy,
    kind: BackendKind,
    pairs: &[(&str, &str)],
    name: &str,
) -> Result<(), String> {
    let opts: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    VolumeOptions::parse(&opts)
        .unwrap()
        .check(policy, kind, &Placeholders { name, ..PLACES })
        .map_err(|e| e.to_string())
}

impl VolumeOptions {
    fn check(
        &self,
        policy: &Policy,
        kind: BackendKind,
        places: &Placeholders<'_>,
    ) -> Result<(), PolicyError> {
        policy.check(self, kind, places)
    }
}

fn check(pairs: &[(&str, &str)]) -> Result<(), String> {
    check_as(&policy(&[], &[]), BackendKind::Sshfs, pairs, "vol")
}

fn rclone(pairs: &[(&str, &str)]) -> Result<(), String> {
    check_as(&policy(&[], &[]), BackendKind::Rclone, pairs, "vol")
}

#[test]
fn every_rule_is_refused_in_o_c_and_source() {
    for rule in RULES {
        let value = "/tmp/x";
        if let Some(backend) = rule.key.strip_prefix(':') {
            let err = rclone(&[("source", &format!(":{backend}:/etc"))]).unwrap_err();
            assert!(
                err.contains(&format!("ALLOW_OPTIONS={}", rule.key)),
                "{err}"
            );
            continue;
        }
        let key = rule.key.trim_end_matches('*');
        let wants = |err: &str| {
            assert!(
                err.contains(&format!("ALLOW_OPTIONS={}", rule.key)),
                "{key}: {err}"
            );
        };
        wants(&check(&[("o", &format!("{key}={value}"))]).unwrap_err());
        let c = if key.len() == 1 {
            format!("-{key}{value}")
        } else {
            format!("--{key}={value}")
        };
        wants(&rclone(&[("source", ":sftp:/x"), ("c", &c)]).unwrap_err());
        if key.len() > 1 {
            wants(&check(&[("c", &format!("-o{key}={value}"))]).unwrap_err());
            wants(&rclone(&[("source", &format!(":sftp,{key}={value}:/x"))]).unwrap_err());
        }
    }
}

#[test]
fn messages_name_the_place_the_reason_and_the_setting() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("o", "reconnect,ProxyCommand=touch /x")],
            "volume option \"o\" sets \"ProxyCommand\", which runs a local command; the plugin's \
             option policy refuses it (an operator can allow it with \
             ALLOW_OPTIONS=ProxyCommand, or --allow-options=ProxyCommand)",
        ),
        (
            &[("c", "-C&-F/etc/evil.conf")],
            "volume option \"c\": item 2 sets \"F\", which makes the tool read another configuration \
             file; the plugin's option policy refuses it (an operator can allow it with \
             ALLOW_OPTIONS=F, or --allow-options=F)",
        ),
        (
            &[("o", "IdentityFile=/root/.ssh/id_rsa")],
            "volume option \"o\" sets \"IdentityFile\" to /root/.ssh/id_rsa, outside the key \
             directory /etc/netfs/ssh: put the file there, or an operator can allow any path with \
             ALLOW_OPTIONS=IdentityFile (--allow-options=IdentityFile)",
        ),
    ];
    for (pairs, want) in cases {
        assert_eq!(check(pairs).unwrap_err(), *want);
    }
    assert_eq!(
        rclone(&[("source", "/etc")]).unwrap_err(),
        "volume option \"source\" is a local path, which serves a directory of the plugin's own \
         filesystem; the plugin's option policy refuses it (an operator can allow it with \
         ALLOW_OPTIONS=:local, or --allow-options=:local)"
    );
    assert_eq!(
        check_as(&policy(&[], &["reconnect"]), BackendKind::Sshfs, &[("o", "reconnect")], "v")
            .unwrap_err(),
        "volume option \"o\" sets \"reconnect\", which the plugin's DENY_OPTIONS (--deny-options) refuses"
    );
}

#[test]
fn keys_cannot_hide_behind_spellings_escapes_placeholders_or_flags() {
    /// (volume options, volume name, type)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, BackendKind);
    let refused: &[Case] = &[
        (&[("o", "PROXYCOMMAND=x")], "vol", BackendKind::Sshfs),
        (&[("o", "Proxy\\Command=x")], "vol", BackendKind::Sshfs),
        (&[("o", "ssh-command=x")], "vol", BackendKind::Sshfs),
        (&[("o", "SSH_COMMAND=x")], "vol", BackendKind::Sshfs),
        (&[("o", "ProxyCommand=-")], "vol", BackendKind::Sshfs),
        (
            &[("o", "SmartcardDevice=/lib/x.so")],
            "vol",
            BackendKind::Sshfs,
        ),
        (
            &[("c", "-o&reconnect,LocalCommand=x")],
            "vol",
            BackendKind::Sshfs,
        ),
        (&[("c", "-F&/etc/x")], "vol", BackendKind::Sshfs),
        (
            &[
                ("source", "ProxyCommand=touch x #@h:/"),
                ("c", "-o{source}"),
            ],
            "vol",
            BackendKind::Sshfs,
        ),
        (
            &[("c", "-o{name}=touch x")],
            "ProxyCommand",
            BackendKind::Sshfs,
        ),
        (
            &[("c", "--password-command&echo x")],
            "vol",
            BackendKind::Rclone,
        ),
        (&[("o", "sftp-ssh=evil")], "vol", BackendKind::Rclone),
        (
            &[("source", ":sftp,ssh=evil:/x")],
            "vol",
            BackendKind::Rclone,
        ),
        (
            &[("source", ":sftp,ssh=\"evil:x\":/x")],
            "vol",
            BackendKind::Rclone,
        ),
        (&[("o", "rc-addr=:5572")], "vol", BackendKind::Rclone),
        (&[("o", "rc")], "vol", BackendKind::Rclone),
        (&[("o", "dump=auth")], "vol", BackendKind::Rclone),
        (&[("o", "crypt-remote=/etc")], "vol", BackendKind::Rclone),
        (&[("o", "s3-env-auth=true")], "vol", BackendKind::Rclone),
        (&[("source", "etc")], "vol", BackendKind::Rclone),
        (&[("source", ":LOCAL:/etc")], "vol", BackendKind::Rclone),
        (
            &[("source", "mine,type=local:/etc")],
            "vol",
            BackendKind::Rclone,
        ),
        (
            &[("source", "mine,type='alias',remote=/:/")],
            "vol",
            BackendKind::Rclone,
        ),
        (
            &[("source", ":union,upstreams=/etc:")],
            "vol",
            BackendKind::Rclone,
        ),
        (
            &[("source", ":sftp,key_file=/root/.ssh/id_rsa:/")],
            "vol",
            BackendKind::Rclone,
        ),
        (
            &[("c", "--sftp-key-file&/root/.ssh/id_rsa")],
            "vol",
            BackendKind::Rclone,
        ),
        (
            &[("o", "IdentityFile=/etc/netfs/ssh/../../shadow")],
            "vol",
            BackendKind::Sshfs,
        ),
        (
            &[("o", "IdentityFile=~/.ssh/id_rsa")],
            "vol",
            BackendKind::Sshfs,
        ),
        (
            &[("o", "IdentityFile=/etc/netfs/ssh/%d/id")],
            "vol",
            BackendKind::Sshfs,
        ),
        (
            &[("o", "IdentityFile=${HOME}/id")],
            "vol",
            BackendKind::Sshfs,
        ),
        (
            &[("o", "IdentityFile=etc/netfs/ssh/id")],
            "vol",
            BackendKind::Sshfs,
        ),
        (
            &[("o", "IdentityFile=/etc/netfs/sshx/id")],
            "vol",
            BackendKind::Sshfs,
        ),
        (
            &[("o", "IdentityFile=/etc/netfs/ssh")],
            "vol",
            BackendKind::Sshfs,
        ),
        (
            &[(
                "o",
                "UserKnownHostsFile=/etc/netfs/ssh/k /root/.ssh/authorized_keys",
            )],
            "vol",
            BackendKind::Sshfs,
        ),
    ];
    let p = policy(&[], &[]);
    for (pairs, name, kind) in refused {
        assert!(
            check_as(&p, *kind, pairs, name).is_err(),
            "{pairs:?} as {kind} was accepted"
        );
    }
}

#[test]
fn what_the_default_policy_lets_through() {
    let fine: &[(&[(&str, &str)], BackendKind)] = &[
        (
            &[("o", "port=2222,reconnect,ServerAliveInterval=15")],
            BackendKind::Sshfs,
        ),
        (
            &[("o", "IdentityFile=/etc/netfs/ssh/id_ed25519")],
            BackendKind::Sshfs,
        ),
        (
            &[("o", "UserKnownHostsFile=/dev/null,StrictHostKeyChecking=no")],
            BackendKind::Sshfs,
        ),
        (&[("o", "UserKnownHostsFile=none")], BackendKind::Sshfs),
        (&[("o", "IdentityFile=-")], BackendKind::Sshfs),
        (&[("c", "-C&-p&22&-f")], BackendKind::Sshfs),
        (&[("c", "{mountPoint}")], BackendKind::Command),
        (
            &[("source", "user@files.example.com:/srv")],
            BackendKind::Sshfs,
        ),
        (&[("source", "ssh_command@h:/x")], BackendKind::Sshfs),
        (&[("c", "{source}"), ("source", "h:/x")], BackendKind::Sshfs),
        (&[("source", "media:/srv")], BackendKind::Rclone),
        (
            &[(
                "source",
                ":sftp,host=h,user=u,key_file=/etc/netfs/ssh/k,shell_type=unix:/srv",
            )],
            BackendKind::Rclone,
        ),
        (
            &[("source", ":s3,provider=AWS,secret_access_key=x:/b")],
            BackendKind::Rclone,
        ),
        (&[("source", ":memory:")], BackendKind::Rclone),
        (
            &[("o", "vfs-cache-mode=full,allow-other")],
            BackendKind::Rclone,
        ),
        (
            &[("o", "include=*.jpg"), ("c", "--include&*.png")],
            BackendKind::Rclone,
        ),
        (
            &[("o", "sftp-host=h,sftp-user=u,log-level=DEBUG")],
            BackendKind::Rclone,
        ),
        (
            &[("o", "sftp-key-file=/etc/netfs/ssh/k")],
            BackendKind::Rclone,
        ),
        (&[("source", "/etc")], BackendKind::Sshfs),
    ];
    let p = policy(&[], &[]);
    for (pairs, kind) in fine {
        assert_eq!(check_as(&p, *kind, pairs, "vol"), Ok(()), "{pairs:?}");
    }
}

#[test]
fn an_operator_lifts_rules_one_by_one_or_all() {
    let p = policy(&["proxycommand", ":local", "IdentityFile", "rc*"], &[]);
    for (pairs, kind) in [
        (&[("o", "ProxyCommand=nc %h %p")][..], BackendKind::Sshfs),
        (&[("source", "/srv/data")], BackendKind::Rclone),
        (&[("source", ":local:/srv/data")], BackendKind::Rclone),
        (
            &[("o", "IdentityFile=/root/.ssh/id_rsa")],
            BackendKind::Sshfs,
        ),
        (&[("o", "rc-addr=:5572")], BackendKind::Rclone),
    ] {
        assert_eq!(check_as(&p, kind, pairs, "vol"), Ok(()), "{pairs:?}");
    }
    // what was not named stays refused
    assert!(check_as(&p, BackendKind::Sshfs, &[("o", "LocalCommand=x")], "v").is_err());
    assert!(check_as(&p, BackendKind::Rclone, &[("source", ":alias:/x")], "v").is_err());
    let all = policy(&["*"], &["ProxyCommand"]);
    assert_eq!(
        check_as(&all, BackendKind::Sshfs, &[("o", "LocalCommand=x")], "v"),
        Ok(())
    );
    // the operator's own deny list wins over an allow
    assert!(
        check_as(&all, BackendKind::Sshfs, &[("o", "ProxyCommand=x")], "v")
            .unwrap_err()
            .contains("DENY_OPTIONS")
    );
    let unknown = Policy::new(&["ProxyComand".into()], &[], KEY_DIR.into()).unwrap_err();
    assert!(unknown
        .to_string()
        .contains("\"ProxyComand\" is not something"));
}

#[test]
fn a_secret_path_is_not_quoted_back() {
    let err = rclone(&[("o", "client-key=/root/k")]).unwrap_err();
    assert!(err.contains("to ***,"), "{err}");
}
