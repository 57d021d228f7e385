//! Which keys are secret in every spelling, and that no argument shape lets
//! a secret value through redaction.

use super::*;

#[test]
fn never_prints_itself() {
    let s = Secret::new("hunter2");
    assert_eq!(format!("{s} {s:?} {:?}", Some(&s)), "*** *** Some(***)");
    assert_eq!(s.expose(), "hunter2");
}

#[test]
fn secret_keys_by_pattern_in_every_spelling() {
    let secret = [
        "password",
        "pass",
        "PASSWORD",
        "sftp_pass",
        "sftp-pass",
        "--sftp-pass",
        "--ftp-pass",
        "--webdav-pass",
        "--sftp-key-file-pass",
        "key_file_pass",
        "--s3-secret-access-key",
        "secret_access_key",
        "S3_SECRET_ACCESS_KEY",
        "secretAccessKey",
        "bearer_token",
        "--webdav-bearer-token",
        "session_token",
        "--s3-session-token",
        "token",
        "client_secret",
        "--drive-client-secret",
        "secret",
        "--b2-key",
        "--azureblob-key",
        "api_key",
        "--fichier-api-key",
        "--sftp-key-pem",
        "--crypt-password2",
        "--s3-sse-customer-key",
        "--s3-sse-customer-key-base64",
        "--drive-service-account-credentials",
        "--storj-access-grant",
        "--azureblob-sas-url",
        "--netstorage-secret",
        "--rc-pass",
        "--http-headers",
        "passphrase",
        "Pass\\word",
    ];
    for key in secret {
        assert!(is_secret_key(key), "{key} should be secret");
    }
    let not_secret = [
        "PasswordAuthentication",
        "passwordauthentication",
        "NumberOfPasswordPrompts",
        "password_stdin",
        "password-command",
        "--webdav-bearer-token-command",
        "key_file",
        "--sftp-key-file",
        "--sftp-pubkey-file",
        "--sftp-key-use-agent",
        "--s3-access-key-id",
        "IdentityFile",
        "StrictHostKeyChecking",
        "HostKeyAlias",
        "port",
        "",
        "--",
    ];
    for key in not_secret {
        assert!(!is_secret_key(key), "{key} should not be secret");
    }
}

#[test]
fn redacts_secrets_in_any_argument_shape() {
    let cases = [
        ("port=22,password=hunter2,x", "port=22,password=***,x"),
        ("--sftp-pass=hunter2", "--sftp-pass=***"),
        ("--webdav-pass=hun:ter,2", "--webdav-pass=***"),
        ("-opassword=hunter2,port=1", "-opassword=***,port=1"),
        (":sftp,host=h,pass=hunter2:/srv", ":sftp,host=h,pass=***"),
        (
            ":sftp,pass=\"a,b:c\",host=h:/srv",
            ":sftp,pass=***,host=h:/srv",
        ),
        (":sftp,pass='it''s,x':/srv", ":sftp,pass=***"),
        ("name,token=\"unclosed,x:/y", "name,token=***"),
        ("user@host:/srv", "user@host:/srv"),
        ("-p", "-p"),
        ("--password-command=echo x", "--password-command=echo x"),
    ];
    for (arg, want) in cases {
        assert_eq!(redact_arg(arg), want, "{arg}");
    }
}

#[test]
fn a_bare_secret_flag_hides_the_next_argument() {
    let args: Vec<String> = ["--sftp-pass", "hunter2", "-v", "--s3-secret-access-key=k"]
        .map(String::from)
        .to_vec();
    assert_eq!(
        redact_args(&args),
        ["--sftp-pass", "***", "-v", "--s3-secret-access-key=***"]
    );
    assert_eq!(secret_values(&args), ["hunter2", "k"]);
    assert_eq!(secret_keys(&args), ["sftp-pass", "s3-secret-access-key"]);
    let list = ["-o".to_owned(), "port=1,password=x,pass".to_owned()];
    assert_eq!(secret_keys(&list), ["password"]);
}

#[test]
fn params_split_outside_quotes() {
    let list = "a=1,b=\"x,\"\"y\",c,,d=";
    let shown: Vec<(&str, Option<&str>)> = split_params(list)
        .into_iter()
        .map(|p| (&list[p.key], p.value.map(|v| &list[v])))
        .collect();
    assert_eq!(
        shown,
        [
            ("a", Some("1")),
            ("b", Some("\"x,\"\"y\"")),
            ("c", None),
            ("d", Some(""))
        ]
    );
}
