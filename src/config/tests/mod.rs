//! Flags and their variables. The environment is process-global and tests
//! run in parallel, so every parse happens in a fresh run of this test
//! binary with exactly the variables the case names (see `isolated_parse`).

use std::collections::BTreeMap;
use std::process::Command;

use clap::CommandFactory;
use serde_json::{json, Value};

use super::Cli;

mod flags;

use flags::FLAGS;

const ARGS_VAR: &str = "NETFS_CONFIG_TEST_ARGS";
const RESULT_MARK: &str = "netfs-config-test-result ";
const SEP: char = '\u{1f}';

/// Parses `args` with the environment `env` and nothing else, in a child
/// run of this test binary: the parsed settings, or the error message.
fn parse_with_env(args: &[&str], env: &[(&str, &str)]) -> Result<BTreeMap<String, Value>, String> {
    let exe = std::env::current_exe().expect("test binary path");
    let joined: String = args.iter().flat_map(|a| [a, "\u{1f}"]).collect();
    let out = Command::new(exe)
        .args([
            "--exact",
            "config::tests::isolated_parse",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        .env(ARGS_VAR, joined)
        .envs(env.iter().copied())
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once(RESULT_MARK).map(|(_, json)| json))
        .unwrap_or_else(|| {
            panic!(
                "child gave no result; stdout:\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    match serde_json::from_str(line).expect("child result is JSON") {
        Value::String(err) => Err(err),
        Value::Object(map) => Ok(map.into_iter().collect()),
        other => panic!("unexpected child result {other}"),
    }
}

/// The child's side of [`parse_with_env`]; does nothing in a normal run.
#[test]
fn isolated_parse() {
    let Ok(joined) = std::env::var(ARGS_VAR) else {
        return;
    };
    let argv = std::iter::once("netfs").chain(joined.split_terminator(SEP));
    let result = match Cli::try_parse_env_from(argv) {
        Err(e) => json!(e.render().to_string()),
        Ok(cli) => {
            let log_level = cli.log_level.clone();
            // The CSI flags as given: in plugin mode the config has no trace of them.
            let raw = json!({
                "csi_endpoint": cli.csi_endpoint,
                "staging_root": cli.staging_root,
                "staging_roots": cli.staging_roots,
                "publish_roots": cli.publish_roots,
                "node_id": cli.node_id,
                "metrics_allow_remote": cli.metrics_allow_remote,
            });
            match cli.into_config() {
                Err(e) => json!(e.to_string()),
                Ok(c) => json!({
                    "socket": c.socket,
                    "mount_root": c.mount_root,
                    "state_file": c.state_file,
                    "log_level": log_level,
                    "default_type": c.default_type.as_str(),
                    "mount_timeout": humantime::format_duration(c.mount_timeout).to_string(),
                    "stop_timeout": humantime::format_duration(c.stop_timeout).to_string(),
                    "health_interval": humantime::format_duration(c.health_interval).to_string(),
                    "mount_options": c.mount_options.to_string(),
                    "process_options": c.process_options.items(),
                    "lifecycle": format!("{:?}", c.lifecycle),
                    "recovery": format!("{:?}", c.recovery),
                    "recovery_max_per_min": c.recovery_max_per_min,
                    "command_binary": c.command_binary,
                    "command_mount_option_flag": c.command_mount_option_flag,
                    "max_startups_per_endpoint": c.max_startups_per_endpoint,
                    "deny_options": c.policy.denied(),
                    "allow_options": c.policy.allowed(),
                    "key_dir": c.policy.key_dir(),
                    "share_ssh_connections": c.share_ssh_connections,
                    "reattach": c.reattach,
                    "host_proc": c.host_proc,
                    "ssh_sessions_per_connection": c.ssh_sessions_per_connection,
                    "mode": format!("{:?}", c.mode()),
                    "csi_endpoint": raw["csi_endpoint"],
                    "staging_root": raw["staging_root"],
                    "staging_roots": raw["staging_roots"],
                    "publish_roots": raw["publish_roots"],
                    "node_id": raw["node_id"],
                    "csi_staging_roots": c.csi.as_ref().map(|c| &c.staging_roots),
                    "csi_publish_roots": c.csi.as_ref().map(|c| &c.publish_roots),
                    "publish_root": c.csi.as_ref().map(|c| &c.publish_root),
                    "metrics": c.metrics.as_ref().map(|m| m.to_string()),
                    "metrics_allow_remote": raw["metrics_allow_remote"],
                    "csi_node_id": c.csi.as_ref().map(|c| &c.node_id),
                }),
            }
        }
    };
    println!("{RESULT_MARK}{result}");
}

fn field(map: &BTreeMap<String, Value>, name: &str) -> String {
    match &map[name] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Flags that, like `--help` and `--version`, only print and exit: no
/// variable, as one left in a plugin's environment would stop it serving.
const PRINT_AND_EXIT: &[&str] = &["build-info"];

fn settings() -> impl Iterator<Item = clap::Arg> {
    Cli::command()
        .get_arguments()
        .filter(|a| !a.get_long().is_some_and(|l| PRINT_AND_EXIT.contains(&l)))
        .cloned()
        .collect::<Vec<_>>()
        .into_iter()
}

#[test]
fn the_table_names_every_flag() {
    let mut longs: Vec<String> = settings()
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect();
    let mut listed: Vec<String> = FLAGS
        .iter()
        .map(|f| f.cli[2..f.cli.find('=').unwrap()].to_owned())
        .collect();
    longs.sort();
    listed.sort();
    assert_eq!(longs, listed, "a flag was added: give it a row in FLAGS");
}

#[test]
fn every_flag_has_its_variable() {
    for arg in settings() {
        let id = arg.get_id().as_str();
        let long = arg
            .get_long()
            .unwrap_or_else(|| panic!("{id} has no long name"));
        let want = long.to_uppercase().replace('-', "_");
        let env = arg.get_env().and_then(|v| v.to_str());
        assert_eq!(env, Some(want.as_str()), "--{long}");
    }
    let short = |c: char| {
        Cli::command()
            .get_arguments()
            .find(|a| a.get_short() == Some(c))
            .and_then(|a| a.get_env())
            .and_then(|v| v.to_str().map(str::to_owned))
    };
    assert_eq!(short('o').as_deref(), Some("MOUNT_OPTIONS"));
    assert_eq!(short('c').as_deref(), Some("VOLUME_PROCESS_OPTIONS"));
    for long in PRINT_AND_EXIT {
        let arg = Cli::command()
            .get_arguments()
            .find(|a| a.get_long() == Some(long))
            .cloned()
            .unwrap_or_else(|| panic!("--{long} exists"));
        assert_eq!(arg.get_env(), None, "--{long} has no variable");
    }
}

#[test]
fn command_line_wins_over_the_environment() {
    let cli: Vec<&str> = FLAGS.iter().map(|f| f.cli).collect();
    let env: Vec<(&str, &str)> = FLAGS.iter().map(|f| (f.var, f.var_value)).collect();
    let none = parse_with_env(&[], &[]).unwrap();
    let only_cli = parse_with_env(&cli, &[]).unwrap();
    let only_env = parse_with_env(&[], &env).unwrap();
    let both = parse_with_env(&cli, &env).unwrap();
    for f in FLAGS {
        assert_eq!(field(&none, f.field), f.default, "{} by default", f.field);
        assert_eq!(field(&only_cli, f.field), f.from_cli, "{}", f.cli);
        assert_eq!(
            field(&only_env, f.field),
            f.from_env,
            "{}={}",
            f.var,
            f.var_value
        );
        assert_eq!(
            field(&both, f.field),
            f.from_cli,
            "{} over {}",
            f.cli,
            f.var
        );
    }
}

#[test]
fn an_empty_variable_counts_as_unset() {
    let env: Vec<(&str, &str)> = FLAGS.iter().map(|f| (f.var, "")).collect();
    let got = parse_with_env(&[], &env).unwrap();
    for f in FLAGS {
        assert_eq!(field(&got, f.field), f.default, "{}=", f.var);
    }
    let cli: Vec<&str> = FLAGS.iter().map(|f| f.cli).collect();
    let got = parse_with_env(&cli, &env).unwrap();
    for f in FLAGS {
        assert_eq!(
            field(&got, f.field),
            f.from_cli,
            "{} with {}=",
            f.cli,
            f.var
        );
    }
}

#[test]
fn short_flags_and_their_variables() {
    let env = [
        ("MOUNT_OPTIONS", "from=env"),
        ("VOLUME_PROCESS_OPTIONS", "-E"),
    ];
    let cases: &[(&[&str], &str, &str)] = &[
        (&["-o", "a=1,b", "-c", "-C&x y"], "a=1,b", r#"["-C","x y"]"#),
        (&["-oa=1", "-c-C"], "a=1", r#"["-C"]"#),
        (&["-o", "", "-c", ""], "", "[]"),
        (&["-c", "-C"], "from=env", r#"["-C"]"#),
        (&[], "from=env", r#"["-E"]"#),
    ];
    for (args, mount, process) in cases {
        let got = parse_with_env(args, &env).unwrap();
        assert_eq!(field(&got, "mount_options"), *mount, "{args:?}");
        assert_eq!(field(&got, "process_options"), *process, "{args:?}");
    }
}

#[test]
fn plugin_options_are_checked_at_start() {
    let mount = "invalid plugin mount options (-o, --mount-options or MOUNT_OPTIONS): ";
    let process =
        "invalid plugin process options (-c, --volume-process-options or VOLUME_PROCESS_OPTIONS): ";
    type Case = (
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
        String,
    );
    let cases: &[Case] = &[
        (
            &[],
            &[("MOUNT_OPTIONS", "reconnect,cache=-")],
            format!("{mount}item 2 \"cache=-\": '-' only means something in a volume's o, where it removes a plugin default; to have no default, leave the key out"),
        ),
        (
            &["-o", "a,,=1"],
            &[],
            format!("{mount}item 3 \"=1\": the key before '=' is empty"),
        ),
        (
            &[],
            &[("VOLUME_PROCESS_OPTIONS", "-C&-d\n")],
            format!("{process}item 2 \"-d\\n\": control characters (newline, tab, NUL, ...) are not allowed"),
        ),
        (
            &["--propagated-mount=rel/dir"],
            &[],
            "--propagated-mount must be an absolute path, got \"rel/dir\"".to_owned(),
        ),
        (
            &["--ssh-sessions-per-connection=0"],
            &[],
            "--ssh-sessions-per-connection (SSH_SESSIONS_PER_CONNECTION) must be at least 1"
                .to_owned(),
        ),
        (
            &["--health-interval=10ms"],
            &[],
            "--health-interval (HEALTH_INTERVAL) must be between 100ms and 1h, got 10ms".to_owned(),
        ),
        (
            &[],
            &[("HEALTH_INTERVAL", "2h")],
            "--health-interval (HEALTH_INTERVAL) must be between 100ms and 1h, got 2h".to_owned(),
        ),
    ];
    for (args, env, want) in cases {
        assert_eq!(
            parse_with_env(args, env).unwrap_err(),
            *want,
            "{args:?} {env:?}"
        );
    }
    // the command line wins, so a bad variable it overrides is never read
    let got = parse_with_env(&["-o", "ok"], &[("MOUNT_OPTIONS", "bad=-")]).unwrap();
    assert_eq!(field(&got, "mount_options"), "ok");
}

#[test]
fn at_least_one_start_up_per_endpoint() {
    let err = parse_with_env(&[], &[("MAX_STARTUPS_PER_ENDPOINT", "0")]).unwrap_err();
    assert!(
        err.contains("MAX_STARTUPS_PER_ENDPOINT") && err.contains("at least 1"),
        "{err}"
    );
}

#[test]
fn csi_mode() {
    let env = [
        ("MODE", "csi"),
        ("CSI_ENDPOINT", "unix:///run/docker/plugins/netfs-csi.sock"),
        ("PROPAGATED_MOUNT", "/data/published"),
        ("NODE_ID", "n1"),
    ];
    let got = parse_with_env(&[], &env).unwrap();
    assert_eq!(field(&got, "mode"), "Csi");
    assert_eq!(field(&got, "socket"), "/run/docker/plugins/netfs-csi.sock");
    assert_eq!(field(&got, "mount_root"), "/data/staged");
    assert_eq!(field(&got, "publish_root"), "/data/published");
    assert_eq!(field(&got, "csi_node_id"), "n1");
    // Swarm's paths are the default roots; kubelet's are given.
    assert_eq!(field(&got, "csi_staging_roots"), r#"["/data/staged"]"#);
    assert_eq!(field(&got, "csi_publish_roots"), r#"["/data/published"]"#);
    let kubelet = [
        ("MODE", "csi"),
        (
            "STAGING_ROOTS",
            "/var/lib/kubelet/plugins/kubernetes.io/csi, /data/staged/",
        ),
        ("PUBLISH_ROOTS", "/var/lib/kubelet/pods"),
    ];
    let got = parse_with_env(&[], &kubelet).unwrap();
    assert_eq!(
        field(&got, "csi_staging_roots"),
        r#"["/var/lib/kubelet/plugins/kubernetes.io/csi","/data/staged"]"#
    );
    assert_eq!(
        field(&got, "csi_publish_roots"),
        r#"["/var/lib/kubelet/pods"]"#
    );
    // without NODE_ID, the host name
    let got = parse_with_env(&["--mode=csi"], &[]).unwrap();
    let host = nix::unistd::gethostname().unwrap();
    assert_eq!(field(&got, "csi_node_id"), host.to_string_lossy());
    for (args, want) in [
        (
            &["--mode=csi", "--csi-endpoint=tcp://1.2.3.4:5"][..],
            "--csi-endpoint (CSI_ENDPOINT) must be a unix socket path, `/path` or `unix:///path`, got \"tcp://1.2.3.4:5\"",
        ),
        (
            &["--mode=csi", "--staging-root=staged"][..],
            "--staging-root (STAGING_ROOT) must be an absolute path, got \"staged\"",
        ),
        (
            &["--mode=csi", "--staging-roots=/a,b"][..],
            "--staging-roots (STAGING_ROOTS) must list absolute paths without `.` or `..`, separated by commas, got \"/a,b\"",
        ),
        (
            &["--mode=csi", "--publish-roots=/a/../etc"][..],
            "--publish-roots (PUBLISH_ROOTS) must list absolute paths without `.` or `..`, separated by commas, got \"/a/../etc\"",
        ),
        (
            &["--mode=csi", "--publish-roots=,"][..],
            "--publish-roots (PUBLISH_ROOTS) must list absolute paths without `.` or `..`, separated by commas, got \",\"",
        ),
    ] {
        assert_eq!(parse_with_env(args, &[]).unwrap_err(), want, "{args:?}");
    }
}
