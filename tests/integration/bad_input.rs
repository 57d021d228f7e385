//! The bad-input suite: well over a hundred requests no well-behaved client
//! sends — malformed and oversized bodies, wrong JSON types, unknown
//! endpoints and methods, hostile volume names and options, raw bytes that
//! are not HTTP — against the real binary. Every one gets a clear `Err`, the
//! plugin keeps serving, and nothing is created outside the mount root (nor
//! inside it). The option policy has its own file (`policy`).

use std::fs;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::calls::{create, start, try_status};
use crate::support::client::{self, err_of};
use crate::support::mounts::processes_with_arg;
use crate::support::plugin::Plugin;
use crate::support::report;
use crate::support::sshd::Sshd;

mod policy;

/// What one request should get.
enum Want {
    /// This status, and an `Err` containing this text.
    Err(u16, &'static str),
    /// Any status >= 400 with a non-empty `Err` (the tool's own words).
    AnyErr,
}

struct Case {
    what: String,
    method: &'static str,
    path: String,
    body: Vec<u8>,
    want: Want,
}

fn case(what: impl Into<String>, path: &str, body: impl Into<Vec<u8>>, want: Want) -> Case {
    Case {
        what: what.into(),
        method: "POST",
        path: path.to_owned(),
        body: body.into(),
        want,
    }
}

const BODY_ENDPOINTS: &[&str] = &[
    "/VolumeDriver.Create",
    "/VolumeDriver.Remove",
    "/VolumeDriver.Mount",
    "/VolumeDriver.Unmount",
    "/VolumeDriver.Path",
    "/VolumeDriver.Get",
];

fn malformed_bodies() -> Vec<Case> {
    use Want::Err;
    let mut cases = Vec::new();
    for endpoint in BODY_ENDPOINTS {
        for (what, body, want) in [
            ("cut-off JSON", &b"{\"Name\":"[..], "malformed request body"),
            ("empty body", b"", "empty request body"),
            ("a JSON array", b"[]", "malformed request body"),
            ("JSON null", b"null", "malformed request body"),
        ] {
            cases.push(case(
                format!("{endpoint}: {what}"),
                endpoint,
                body,
                Err(400, want),
            ));
        }
    }
    let create = "/VolumeDriver.Create";
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    for (what, body, want) in [
        ("a JSON string", b"\"v\"".to_vec(), "malformed request body"),
        ("a JSON number", b"42".to_vec(), "malformed request body"),
        (
            "bytes that are not UTF-8",
            b"\xff\xfe{\"Name\":\"v\"}".to_vec(),
            "malformed request body",
        ),
        (
            "trailing garbage",
            b"{\"Name\":\"v\"} x".to_vec(),
            "trailing characters",
        ),
        (
            "two objects",
            b"{\"Name\":\"v\"}{\"Name\":\"w\"}".to_vec(),
            "trailing characters",
        ),
        (
            "10000 nested arrays",
            deep.into_bytes(),
            "malformed request body",
        ),
        (
            "a duplicate Name",
            b"{\"Name\":\"a\",\"Name\":\"b\"}".to_vec(),
            "duplicate field `Name`",
        ),
        (
            "a byte order mark",
            b"\xef\xbb\xbf{\"Name\":\"v\"}".to_vec(),
            "malformed request body",
        ),
        ("whitespace only", b" \n\t ".to_vec(), "empty request body"),
        (
            "cut-off Opts",
            b"{\"Name\":\"v\",\"Opts\":".to_vec(),
            "malformed request body",
        ),
    ] {
        cases.push(case(what, create, body, Err(400, want)));
    }
    cases
}

fn wrong_types() -> Vec<Case> {
    use Want::Err;
    let mut cases = Vec::new();
    let json_case = |what: &str, path: &str, body: Value, want| {
        case(what, path, body.to_string(), Err(400, want))
    };
    for (what, name) in [
        ("Name is a number", json!(7)),
        ("Name is a boolean", json!(true)),
        ("Name is null", json!(null)),
        ("Name is an array", json!(["v"])),
        ("Name is an object", json!({"v": 1})),
    ] {
        cases.push(json_case(
            what,
            "/VolumeDriver.Create",
            json!({"Name": name}),
            "invalid type",
        ));
        cases.push(json_case(
            what,
            "/VolumeDriver.Get",
            json!({"Name": name}),
            "invalid type",
        ));
    }
    for (what, opts) in [
        ("Opts is a string", json!("source=h:/x")),
        ("Opts is an array", json!(["source", "h:/x"])),
        ("Opts is a number", json!(1)),
        ("an option is a number", json!({"o": 1})),
        ("an option is a boolean", json!({"o": true})),
        ("an option is null", json!({"o": null})),
        ("an option is an object", json!({"o": {"port": "22"}})),
        ("an option is an array", json!({"c": ["-C"]})),
    ] {
        cases.push(json_case(
            what,
            "/VolumeDriver.Create",
            json!({"Name": "v", "Opts": opts}),
            "invalid type",
        ));
    }
    for (what, path, body, want) in [
        (
            "ID is a number",
            "/VolumeDriver.Mount",
            json!({"Name": "v", "ID": 1}),
            "invalid type",
        ),
        (
            "ID is null",
            "/VolumeDriver.Unmount",
            json!({"Name": "v", "ID": null}),
            "invalid type",
        ),
        (
            "no ID",
            "/VolumeDriver.Mount",
            json!({"Name": "v"}),
            "missing field `ID`",
        ),
        (
            "no ID",
            "/VolumeDriver.Unmount",
            json!({"Name": "v"}),
            "missing field `ID`",
        ),
        (
            "no Name",
            "/VolumeDriver.Create",
            json!({"Opts": {}}),
            "missing field `Name`",
        ),
        (
            "no Name",
            "/VolumeDriver.Remove",
            json!({}),
            "missing field `Name`",
        ),
        (
            "lower-case name key",
            "/VolumeDriver.Path",
            json!({"name": "v"}),
            "missing field `Name`",
        ),
    ] {
        cases.push(json_case(what, path, body, want));
    }
    cases
}

fn oversized() -> Vec<Case> {
    use Want::Err;
    const MIB: usize = 1 << 20;
    // A valid request padded with spaces to an exact size.
    let padded = |size: usize| {
        let mut body = br#"{"Name":"../padded"}"#.to_vec();
        body.resize(size, b' ');
        body
    };
    let many_keys: serde_json::Map<String, Value> =
        (0..10_000).map(|i| (format!("k{i}"), json!("v"))).collect();
    vec![
        case(
            "a body of 1 MiB + 1",
            "/VolumeDriver.Create",
            padded(MIB + 1),
            Err(413, "exceeds 1048576 bytes"),
        ),
        case(
            "a body of 8 MiB",
            "/VolumeDriver.Create",
            padded(8 * MIB),
            Err(413, "exceeds 1048576 bytes"),
        ),
        case(
            "a body of exactly 1 MiB is read",
            "/VolumeDriver.Create",
            padded(MIB),
            Err(500, "is not allowed"),
        ),
        case(
            "10000 unknown options",
            "/VolumeDriver.Create",
            json!({"Name": "v", "Opts": many_keys}).to_string(),
            Err(500, "accepted options are"),
        ),
        case(
            "a name of 300 KB",
            "/VolumeDriver.Create",
            json!({"Name": "x".repeat(300_000)}).to_string(),
            Err(500, "300000 bytes long; the limit is 255"),
        ),
    ]
}

fn endpoints_and_methods() -> Vec<Case> {
    use Want::Err;
    let mut cases: Vec<Case> = [
        "/VolumeDriver.Explode",
        "/",
        "/Plugin.Deactivate",
        "/volumedriver.create",
        "/VolumeDriver.Create/",
        "//VolumeDriver.List",
        "/VolumeDriver.Create/../VolumeDriver.Remove",
        "/VolumeDriver.%43reate",
        "/NetworkDriver.CreateNetwork",
        "/IpamDriver.RequestPool",
        "/VolumeDriver",
    ]
    .into_iter()
    .map(|path| {
        case(
            format!("unknown endpoint {path}"),
            path,
            "{}",
            Err(404, "unknown endpoint"),
        )
    })
    .collect();
    let long = format!("/{}", "A".repeat(8000));
    cases.push(case(
        "an 8000-byte endpoint",
        &long,
        "{}",
        Err(404, "unknown endpoint"),
    ));
    for method in ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"] {
        cases.push(Case {
            method,
            ..case(
                format!("{method} /VolumeDriver.Create"),
                "/VolumeDriver.Create",
                "{}",
                Err(405, "use POST"),
            )
        });
    }
    cases.push(Case {
        method: "GET",
        ..case(
            "GET /VolumeDriver.List",
            "/VolumeDriver.List",
            "",
            Err(405, "use POST"),
        )
    });
    cases
}

fn names() -> Vec<Case> {
    use Want::Err;
    const NOT_ALLOWED: &str = "is not allowed: use letters, digits";
    let long = "x".repeat(256);
    let longer = "x".repeat(1000);
    let mut cases = Vec::new();
    let bad: Vec<(&str, &str)> = vec![
        ("a/b", NOT_ALLOWED),
        ("../x", NOT_ALLOWED),
        ("..", NOT_ALLOWED),
        (".", NOT_ALLOWED),
        ("/etc", NOT_ALLOWED),
        ("a/../../etc", NOT_ALLOWED),
        ("a\0b", NOT_ALLOWED),
        ("\0", NOT_ALLOWED),
        (" a", NOT_ALLOWED),
        ("a ", NOT_ALLOWED),
        ("a b", NOT_ALLOWED),
        ("a\tb", NOT_ALLOWED),
        ("a\nb", NOT_ALLOWED),
        ("a\rb", NOT_ALLOWED),
        ("", "volume name is empty"),
        (&long, "256 bytes long; the limit is 255"),
        (&longer, "1000 bytes long; the limit is 255"),
        ("é", NOT_ALLOWED),
        ("vol-é", NOT_ALLOWED),
        ("日本語", NOT_ALLOWED),
        ("💾", NOT_ALLOWED),
        ("a\u{202e}b", NOT_ALLOWED),
        ("a\u{ff0f}b", NOT_ALLOWED),
        ("a\u{2215}b", NOT_ALLOWED),
        ("e\u{0301}", NOT_ALLOWED),
        ("-rf", NOT_ALLOWED),
        (".hidden", NOT_ALLOWED),
        ("_x", NOT_ALLOWED),
        ("a;b", NOT_ALLOWED),
        ("$(touch x)", NOT_ALLOWED),
        ("`touch x`", NOT_ALLOWED),
        ("a|b", NOT_ALLOWED),
        ("a&b", NOT_ALLOWED),
        ("*", NOT_ALLOWED),
        ("~root", NOT_ALLOWED),
        ("a:b", NOT_ALLOWED),
        ("a\\b", NOT_ALLOWED),
        ("%2e%2e", NOT_ALLOWED),
    ];
    for (name, want) in bad {
        let body = json!({"Name": name, "Opts": {"source": "root@127.0.0.1:/x"}}).to_string();
        cases.push(case(
            format!("Create named {name:?}"),
            "/VolumeDriver.Create",
            body,
            Err(500, want),
        ));
    }
    for (path, name, want) in [
        ("/VolumeDriver.Mount", "../x", NOT_ALLOWED),
        ("/VolumeDriver.Unmount", "..", NOT_ALLOWED),
        ("/VolumeDriver.Remove", "a/b", NOT_ALLOWED),
        ("/VolumeDriver.Path", "\0", NOT_ALLOWED),
        ("/VolumeDriver.Get", long.as_str(), "256 bytes long"),
        ("/VolumeDriver.Mount", "nope", "no such volume: nope"),
        ("/VolumeDriver.Unmount", "nope", "no such volume: nope"),
        ("/VolumeDriver.Remove", "nope", "no such volume: nope"),
        ("/VolumeDriver.Path", "nope", "no such volume: nope"),
    ] {
        let body = json!({"Name": name, "ID": "c1"}).to_string();
        cases.push(case(
            format!("{path} of {name:?}"),
            path,
            body,
            Err(500, want),
        ));
    }
    // The longest name is fine; the unreachable remote is what fails.
    let longest = json!({"Name": "x".repeat(255), "Opts": {"source": "root@127.0.0.1:/x"}});
    cases.push(case(
        "Create with a 255-byte name",
        "/VolumeDriver.Create",
        longest.to_string(),
        Want::AnyErr,
    ));
    cases
}

/// Options, each on a Create of a fresh valid name; the plugin connects to
/// port 1 (refused) unless an option says otherwise, so an option the
/// engine accepts still ends in the tool's own error. `marks` is where a
/// command that ran would leave a file.
fn options(marks: &Path) -> Vec<Case> {
    use Want::{AnyErr, Err};
    let m = |n: &str| marks.join(n).display().to_string();
    let src = "root@127.0.0.1:/x";
    let unknown = "accepted options are: type, source, o, c, password";
    let denied_c =
        "the plugin's option policy refuses it (an operator can allow it with ALLOW_OPTIONS";
    let denied_o = denied_c;
    let long_key = "k".repeat(5000);
    let cases: Vec<(String, Value, Want)> = vec![
        (
            "unknown key sorce".into(),
            json!({"sorce": src}),
            Err(500, unknown),
        ),
        (
            "key Source".into(),
            json!({"Source": src}),
            Err(500, unknown),
        ),
        ("empty key".into(), json!({"": src}), Err(500, unknown)),
        (
            "key with a trailing space".into(),
            json!({"o ": "port=1"}),
            Err(500, unknown),
        ),
        (
            "key with a newline".into(),
            json!({"type\n": "sshfs"}),
            Err(500, unknown),
        ),
        (
            "key password2".into(),
            json!({"password2": "x"}),
            Err(500, unknown),
        ),
        (
            "key __proto__".into(),
            json!({"__proto__": "x"}),
            Err(500, unknown),
        ),
        (
            "a mount option as a key".into(),
            json!({"port": "22"}),
            Err(500, "mount options go inside o"),
        ),
        (
            "key with NUL".into(),
            json!({"o\0": "x"}),
            Err(500, unknown),
        ),
        (
            "a 5000-byte key".into(),
            json!({long_key: "x"}),
            Err(500, unknown),
        ),
        (
            "empty source".into(),
            json!({"source": ""}),
            Err(500, "has an empty value"),
        ),
        (
            "type smb".into(),
            json!({"type": "smb", "source": src}),
            Err(500, "unknown type \"smb\""),
        ),
        (
            "type SSHFS".into(),
            json!({"type": "SSHFS", "source": src}),
            Err(500, "unknown type"),
        ),
        (
            "type with a space".into(),
            json!({"type": "sshfs ", "source": src}),
            Err(500, "unknown type"),
        ),
        (
            "source is an option".into(),
            json!({"source": format!("-oProxyCommand=touch {}", m("s1"))}),
            Err(500, "may not start with '-'"),
        ),
        (
            "source with a newline".into(),
            json!({"source": "h:/a\nb"}),
            Err(500, "control characters"),
        ),
        (
            "source with $(...)".into(),
            json!({"source": format!("$(touch {})@127.0.0.1:/x", m("s2"))}),
            AnyErr,
        ),
        (
            "source with backticks".into(),
            json!({"source": format!("`touch {}`:/x", m("s3"))}),
            AnyErr,
        ),
        (
            "source with ;".into(),
            json!({"source": format!("127.0.0.1:/x;touch {}", m("s4"))}),
            AnyErr,
        ),
        (
            "source with |".into(),
            json!({"source": format!("127.0.0.1:/x|touch {}", m("s5"))}),
            AnyErr,
        ),
        (
            "source with &&".into(),
            json!({"source": format!("127.0.0.1:/x && touch {}", m("s6"))}),
            AnyErr,
        ),
        (
            "o value with ;".into(),
            json!({"source": src, "o": format!("port=1;touch {}", m("o1"))}),
            AnyErr,
        ),
        (
            "o key with $(...)".into(),
            json!({"source": src, "o": format!("reconnect,$(touch {})", m("o2"))}),
            AnyErr,
        ),
        (
            "o value with backticks".into(),
            json!({"source": src, "o": format!("IdentityFile=`touch {}`", m("o3"))}),
            AnyErr,
        ),
        (
            "o with a newline".into(),
            json!({"source": src, "o": "a\nb"}),
            Err(500, "control characters"),
        ),
        (
            "o with NUL".into(),
            json!({"source": src, "o": "a\0b"}),
            Err(500, "control characters"),
        ),
        (
            "o is =".into(),
            json!({"source": src, "o": "="}),
            Err(500, "the key before '=' is empty"),
        ),
        ("o is ,".into(), json!({"source": src, "o": ","}), AnyErr),
        (
            "o is ,,,".into(),
            json!({"source": src, "o": ",,,"}),
            AnyErr,
        ),
        (
            "o is =x".into(),
            json!({"source": src, "o": "=x"}),
            Err(500, "the key before '=' is empty"),
        ),
        ("o a==b".into(), json!({"source": src, "o": "a==b"}), AnyErr),
        (
            "o a=b=c".into(),
            json!({"source": src, "o": "a=b=c"}),
            AnyErr,
        ),
        (
            "o unsets a missing key".into(),
            json!({"source": src, "o": "nosuchkey=-"}),
            AnyErr,
        ),
        (
            "o with a space after ,".into(),
            json!({"source": src, "o": "reconnect, cache=no"}),
            Err(500, "a key may not contain whitespace"),
        ),
        (
            "o of 100 commas".into(),
            json!({"source": src, "o": ",".repeat(100)}),
            AnyErr,
        ),
        (
            "o ProxyCommand".into(),
            json!({"source": src, "o": format!("ProxyCommand=touch {}", m("d1"))}),
            Err(500, denied_o),
        ),
        (
            "o proxycommand".into(),
            json!({"source": src, "o": format!("proxycommand=touch {}", m("d2"))}),
            Err(500, denied_o),
        ),
        (
            "o Proxy\\Command".into(),
            json!({"source": src, "o": format!("Proxy\\Command=touch {}", m("d3"))}),
            Err(500, denied_o),
        ),
        (
            "o ssh_command".into(),
            json!({"source": src, "o": format!("ssh_command=touch {}", m("d4"))}),
            Err(500, denied_o),
        ),
        (
            "o LocalCommand".into(),
            json!({"source": src, "o": format!("PermitLocalCommand=yes,LocalCommand=touch {}", m("d5"))}),
            Err(500, denied_o),
        ),
        (
            "o KnownHostsCommand".into(),
            json!({"source": src, "o": format!("KnownHostsCommand=touch {}", m("d6"))}),
            Err(500, denied_o),
        ),
        (
            "o PKCS11Provider".into(),
            json!({"source": src, "o": format!("PKCS11Provider={}", m("evil.so"))}),
            Err(500, denied_o),
        ),
        ("c is &".into(), json!({"source": src, "c": "&"}), AnyErr),
        (
            "c is &&&".into(),
            json!({"source": src, "c": "&&&"}),
            AnyErr,
        ),
        (
            "c -o then ProxyCommand".into(),
            json!({"source": src, "c": format!("-o&ProxyCommand=touch {}", m("c1"))}),
            Err(500, denied_c),
        ),
        (
            "c -oProxyCommand".into(),
            json!({"source": src, "c": format!("-oProxyCommand=touch {}", m("c2"))}),
            Err(500, denied_c),
        ),
        (
            "c -F with a path".into(),
            json!({"source": src, "c": format!("-F{}", m("ssh_config"))}),
            Err(500, denied_c),
        ),
        (
            "c -F then a path".into(),
            json!({"source": src, "c": format!("-F&{}", m("ssh_config"))}),
            Err(500, denied_c),
        ),
        (
            "c -o{source} smuggling".into(),
            json!({"source": format!("ProxyCommand=touch {} #@127.0.0.1:/x", m("c3")), "c": "-o{source}"}),
            Err(500, denied_c),
        ),
        (
            "c with a newline".into(),
            json!({"source": src, "c": "-C&a\nb"}),
            Err(500, "control characters"),
        ),
        (
            "c with NUL".into(),
            json!({"source": src, "c": "-C&-o\0x"}),
            Err(500, "control characters"),
        ),
        (
            "c of 1000 items".into(),
            json!({"source": src, "c": vec!["-C"; 1000].join("&")}),
            AnyErr,
        ),
        (
            "c escaping the mountpoint".into(),
            json!({"source": src, "c": "{mountPoint}/../../etc"}),
            AnyErr,
        ),
        (
            "c unknown placeholder".into(),
            json!({"source": src, "c": "{nope}"}),
            AnyErr,
        ),
        (
            "password with a newline".into(),
            json!({"source": src, "password": "a\nb"}),
            Err(500, "may not contain a newline"),
        ),
        (
            "password with NUL".into(),
            json!({"source": src, "password": "a\0b"}),
            Err(500, "may not contain a newline or NUL"),
        ),
        (
            "empty password".into(),
            json!({"source": src, "password": ""}),
            Err(500, "has an empty value"),
        ),
        (
            "password with shell syntax".into(),
            json!({"source": src, "password": format!("$(touch {});`touch {}`", m("p1"), m("p2"))}),
            AnyErr,
        ),
        (
            "nfs without source".into(),
            json!({"type": "nfs"}),
            Err(500, "\"source\" is required"),
        ),
        (
            "command without a binary".into(),
            json!({"type": "command", "source": "x"}),
            Err(500, "--volume-process-binary"),
        ),
        (
            "rclone with a password".into(),
            json!({"type": "rclone", "source": ":sftp:/x", "password": "x"}),
            Err(500, "not supported"),
        ),
        (
            "an unreachable remote".into(),
            json!({"source": src}),
            Err(500, "Connection refused"),
        ),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (what, opts, want))| {
            let body = json!({"Name": format!("opt-{i}"), "Opts": opts}).to_string();
            case(
                format!("option: {what}"),
                "/VolumeDriver.Create",
                body,
                want,
            )
        })
        .collect()
}

/// Bytes that are not a request the plugin could answer.
fn raw() -> Vec<(&'static str, Vec<u8>)> {
    let mut many_headers = b"POST /VolumeDriver.List HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..200 {
        many_headers.extend(format!("X-{i}: y\r\n").into_bytes());
    }
    many_headers.extend(b"Content-Length: 2\r\nConnection: close\r\n\r\n{}");
    let mut chunked = b"POST /VolumeDriver.Create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..20 {
        chunked.extend(format!("{:x}\r\n", 65536).into_bytes());
        chunked.extend(vec![b' '; 65536]);
        chunked.extend(b"\r\n");
    }
    chunked.extend(b"0\r\n\r\n");
    vec![
        ("not HTTP", b"hello\r\n\r\n".to_vec()),
        ("an HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
        ("a header without a colon", b"POST /VolumeDriver.List HTTP/1.1\r\nHost x\r\n\r\n".to_vec()),
        ("a negative Content-Length", b"POST /VolumeDriver.List HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec()),
        ("two Content-Lengths", b"POST /VolumeDriver.List HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_vec()),
        ("200 headers", many_headers),
        ("half a request line, then close", b"POST /Volume".to_vec()),
        ("a declared 5 MB body never sent", b"POST /VolumeDriver.Create HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\nConnection: close\r\n\r\n{".to_vec()),
        ("a chunked body over 1 MiB", chunked),
    ]
}

/// Writes `bytes`, closes the writing side, and reads what comes back
/// until the plugin closes (at most 10 s).
fn send_raw(socket: &Path, bytes: &[u8]) -> Vec<u8> {
    let mut stream = UnixStream::connect(socket).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The plugin may answer and close before reading all of a large body.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    reply
}

/// Every file and directory below `dir`, as relative paths.
pub(super) fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            out.push(path.strip_prefix(dir).unwrap().to_owned());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

fn check(plugin: &Plugin, c: &Case) {
    let reply = client::try_request(&plugin.socket(), c.method, &c.path, c.body.clone())
        .unwrap_or_else(|e| panic!("{}: no reply: {e}", c.what));
    match c.want {
        Want::Err(status, text) => {
            assert_eq!(reply.status, status, "{}: {}", c.what, reply.text());
            assert_eq!(
                reply.content_type.as_deref(),
                Some("application/vnd.docker.plugins.v1.1+json"),
                "{}",
                c.what
            );
            let body = reply.json();
            assert!(
                err_of(&body).contains(text),
                "{}: {body} should say {text:?}",
                c.what
            );
        }
        Want::AnyErr => {
            assert!(reply.status >= 400, "{}: {}", c.what, reply.text());
            assert!(
                !err_of(&reply.json()).is_empty(),
                "{}: {}",
                c.what,
                reply.text()
            );
        }
    }
}

#[test]
fn every_bad_request_gets_a_clear_error_and_nothing_is_created() {
    let sshd = Sshd::new();
    let marks = tempfile::Builder::new()
        .prefix("netfs-marks-")
        .tempdir()
        .unwrap();
    let plugin = start(&[
        "--mount-timeout=5s",
        "-o",
        "port=1,StrictHostKeyChecking=no,BatchMode=yes",
    ]);
    let pid = plugin.pid();
    let dir_before = tree(plugin.mount_root().parent().unwrap());
    let mut cases = malformed_bodies();
    cases.extend(wrong_types());
    cases.extend(oversized());
    cases.extend(endpoints_and_methods());
    cases.extend(names());
    cases.extend(options(marks.path()));
    for c in &cases {
        check(&plugin, c);
    }
    // HEAD: the same refusal, without a body.
    let head = client::request(&plugin.socket(), "HEAD", "/VolumeDriver.Create", Vec::new());
    assert_eq!(head.status, 405);
    let raw = raw();
    for (what, bytes) in &raw {
        let reply = send_raw(&plugin.socket(), bytes);
        let text = String::from_utf8_lossy(&reply);
        assert!(
            reply.is_empty() || text.starts_with("HTTP/1.1 4") || text.starts_with("HTTP/1.1 5"),
            "{what}: {text}"
        );
        if what.contains("5 MB") || what.contains("chunked") {
            assert!(
                text.contains("413") && text.contains("exceeds 1048576 bytes"),
                "{what}: {text}"
            );
        }
        assert_eq!(
            plugin.post("/Plugin.Activate", json!({})).0,
            200,
            "serving after {what}"
        );
    }
    let tried = cases.len() + 1 + raw.len();

    // Still the same process, serving, and nothing was made anywhere.
    assert_eq!(plugin.pid(), pid);
    assert_eq!(plugin.post("/Plugin.Activate", json!({})).0, 200);
    assert_eq!(
        plugin.post("/VolumeDriver.List", json!({})),
        (200, json!({"Volumes": []}))
    );
    assert!(
        tree(&plugin.mount_root()).is_empty(),
        "{:?}",
        tree(&plugin.mount_root())
    );
    let dir_after = tree(plugin.mount_root().parent().unwrap());
    assert_eq!(dir_after, dir_before, "the plugin's directory is as it was");
    assert!(
        tree(marks.path()).is_empty(),
        "a command ran: {:?}",
        tree(marks.path())
    );
    let root = format!("{}/", plugin.mount_root().display());
    assert!(processes_with_arg(&root).is_empty(), "a tool is left");
    for name in ["etc", "x", "padded"] {
        assert!(!plugin.mount_root().parent().unwrap().join(name).exists());
    }
    // A good volume still works after all that.
    let opts = json!({"source": sshd.source(""), "o": sshd.sshfs_options()});
    assert_eq!(create(&plugin, "good", opts).0, 200, "{}", plugin.log());
    assert_eq!(try_status(&plugin, "good").unwrap()["state"], "mounted");
    assert_eq!(
        plugin
            .post("/VolumeDriver.Remove", json!({"Name": "good"}))
            .0,
        200
    );
    assert!(tried >= 100, "only {tried} cases");
    report(
        "bad-input",
        &format!("{tried} bad requests tried, {tried} refused with a clear Err, plugin kept serving (same pid), 0 files created"),
    );
}
