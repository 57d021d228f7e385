//! Where each backend's tool connects, read from sources and options as the
//! tool would read them: hosts, ports, ssh aliases, rclone remotes.

use super::super::test_support::request;
use super::super::BackendSettings;
use super::*;

fn tcp_at(user: Option<&str>, host: &str, port: u16) -> Option<Endpoint> {
    Some(Endpoint {
        user: user.map(str::to_owned),
        server: Server::Tcp {
            host: host.to_owned(),
            port,
        },
    })
}

fn of(kind: BackendKind, source: &str, c: &str, o: &str) -> Option<Endpoint> {
    let s = BackendSettings::default();
    endpoint(kind, &request(&s, Some(source), c, o, None))
}

#[test]
fn sshfs_endpoints_as_ssh_reads_them() {
    use BackendKind::Sshfs;
    let cases = [
        (
            "u@Files.Example:/srv",
            "",
            "",
            tcp_at(Some("u"), "files.example", 22),
        ),
        ("files:", "", "", tcp_at(None, "files", 22)),
        ("u@h:/srv", "", "port=2222", tcp_at(Some("u"), "h", 2222)),
        (
            "u@h:/srv",
            "",
            "Port=2200,reconnect",
            tcp_at(Some("u"), "h", 2200),
        ),
        (
            "u@h:/srv",
            "-p&2201",
            "port=2222",
            tcp_at(Some("u"), "h", 2201),
        ),
        ("u@h:/srv", "-p2202", "", tcp_at(Some("u"), "h", 2202)),
        ("u@h:/srv", "-o&Port=2203", "", tcp_at(Some("u"), "h", 2203)),
        (
            "u@h:/srv",
            "-oreconnect,port=2204",
            "",
            tcp_at(Some("u"), "h", 2204),
        ),
        ("u@h:/a@b:c", "", "", tcp_at(Some("u"), "h", 22)),
        (
            "me@[::1]:/srv",
            "",
            "port=22",
            tcp_at(Some("me"), "::1", 22),
        ),
        (
            "alias:/srv",
            "",
            "HostName=10.0.0.9,User=svc",
            tcp_at(Some("svc"), "10.0.0.9", 22),
        ),
        ("h:/srv", "", "directport=7000", tcp_at(None, "h", 7000)),
        ("u@h:/srv", "", "port=nonsense", tcp_at(Some("u"), "h", 22)),
    ];
    for (source, c, o, want) in cases {
        assert_eq!(of(Sshfs, source, c, o), want, "{source} c={c} o={o}");
    }
    assert_eq!(of(Sshfs, "no-colon", "", ""), None);
}

#[test]
fn rclone_endpoints_from_connection_strings_flags_and_variables() {
    use BackendKind::Rclone;
    let none = |_: &str| None;
    let opts = |o: &str| MountOptions::parse(o).unwrap();
    let cases = [
        (
            ":sftp,host=127.0.0.1,port=2222,user=root,key_file=/k:/srv",
            "",
            tcp_at(Some("root"), "127.0.0.1", 2222),
        ),
        (":sftp,host=h:/srv", "", tcp_at(None, "h", 22)),
        (
            ":sftp,host=\"h\",user='a:b':/srv",
            "",
            tcp_at(Some("a:b"), "h", 22),
        ),
        (
            ":sftp:/srv",
            "sftp-host=h,sftp-port=2022",
            tcp_at(None, "h", 2022),
        ),
        (":ftp,host=f:/pub", "", tcp_at(None, "f", 21)),
        (":local:/srv", "", None),
        (":s3,provider=AWS:bucket", "", None),
    ];
    for (source, o, want) in cases {
        assert_eq!(rclone(source, &opts(o), &none), want, "{source} o={o}");
    }
    assert_eq!(
        rclone("nas:media", &opts(""), &none),
        Some(Endpoint {
            user: None,
            server: Server::RcloneRemote("nas".into())
        }),
        "a remote defined in a config file: paced by its name"
    );
    let env = |var: &str| match var {
        "RCLONE_CONFIG_NAS_TYPE" => Some("sftp".to_owned()),
        "RCLONE_CONFIG_NAS_HOST" => Some("nas.lan".to_owned()),
        "RCLONE_CONFIG_NAS_PORT" => Some("2222".to_owned()),
        _ => None,
    };
    assert_eq!(
        rclone("nas:media", &opts(""), &env),
        tcp_at(None, "nas.lan", 2222)
    );
    assert_eq!(
        rclone("nas,host=other:media", &opts(""), &env),
        tcp_at(None, "other", 2222)
    );
    let flag_env = |var: &str| (var == "RCLONE_SFTP_HOST").then(|| "from-env".to_owned());
    assert_eq!(
        rclone(":sftp:/srv", &opts(""), &flag_env),
        tcp_at(None, "from-env", 22)
    );
    // Through the backend entry point too.
    assert_eq!(
        of(Rclone, ":sftp,host=h,user=u:/x", "", ""),
        tcp_at(Some("u"), "h", 22)
    );
}

#[test]
fn nfs_and_command_endpoints() {
    assert_eq!(
        of(BackendKind::Nfs, "Server:/export", "", "vers=4.2"),
        tcp_at(None, "server", 2049)
    );
    assert_eq!(
        of(BackendKind::Nfs, "[fd00::1]:/export", "", "port=3049"),
        tcp_at(None, "fd00::1", 3049)
    );
    assert_eq!(of(BackendKind::Command, "u@h:/x", "", ""), None);
}

#[test]
fn shown_as_a_user_reads_it() {
    let e = tcp_at(Some("u"), "fd00::1", 22).unwrap();
    assert_eq!(e.to_string(), "u@[fd00::1]:22");
    assert_eq!(e.server.to_string(), "[fd00::1]:22");
    assert_eq!(
        Server::RcloneRemote("nas".into()).to_string(),
        "rclone remote nas:"
    );
}
