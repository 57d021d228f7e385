//! `sshfs SOURCE MOUNTPOINT -f [process options] [-o mount options]`.
//! `-f` keeps sshfs in the foreground so the supervisor owns it; a password
//! goes to stdin with `password_stdin`, never into argv.

use super::{BackendError, BackendKind, CommandInputs, Invocation, Login};

pub fn build(req: &CommandInputs<'_>) -> Result<Invocation, BackendError> {
    let source = req.source(BackendKind::Sshfs)?;
    req.refuse_secrets(BackendKind::Sshfs)?;
    let mut args = vec![source.to_owned(), req.mount_point(), "-f".to_owned()];
    args.extend(req.process_args());
    let mut options = req.mount_options.clone();
    let stdin = req.password.cloned();
    if stdin.is_some() {
        options.push_flag("password_stdin");
    }
    if !options.is_empty() {
        args.push("-o".to_owned());
        args.push(options.to_arg());
    }
    Ok(Invocation {
        program: "sshfs".to_owned(),
        args,
        env: Vec::new(),
        stdin,
        hints: HINTS,
        login: Some(SSH_LOGIN),
        rc_socket: None,
    })
}

/// ssh says when its login is done at `LogLevel=VERBOSE` (`Authenticated
/// to host ([addr]:port) using "publickey".`); sshfs hands `-o` options on
/// to it, after the volume's own, so a `LogLevel` the volume sets wins.
const SSH_LOGIN: Login = Login {
    args: &["-o", "LogLevel=VERBOSE"],
    done: "Authenticated to ",
};

const HINTS: &[(&str, &str)] = &[
    (
        "Host key verification failed",
        "the server's host key is not in known_hosts: add it, or set -o StrictHostKeyChecking=accept-new",
    ),
    (
        "Permission denied",
        "the server refused the login: check the user, the key (IdentityFile) or the password",
    ),
    (
        "Connection refused",
        "nothing listens on that host and port: is the ssh server up, is the port right?",
    ),
    (
        "kex_exchange_identification",
        "the server closed the connection before the login, as sshd does past its MaxStartups: \
         other clients may be logging in at the same time; lower MAX_STARTUPS_PER_ENDPOINT \
         (--max-startups-per-endpoint) if it goes on",
    ),
];

#[cfg(test)]
mod tests {
    use super::super::test_support::request;
    use super::super::BackendSettings;
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn argv() {
        let s = BackendSettings::default();
        let inv = build(&request(
            &s,
            Some("u@h:/srv"),
            "-C&-d",
            "port=2222,reconnect",
            None,
        ))
        .unwrap();
        assert_eq!(
            inv.args,
            [
                "u@h:/srv",
                "/mnt/volumes/vol",
                "-f",
                "-C",
                "-d",
                "-o",
                "port=2222,reconnect"
            ]
        );
        assert_eq!(
            inv.display(),
            "sshfs u@h:/srv /mnt/volumes/vol -f -C -d -o 'port=2222,reconnect'"
        );
        let bare = build(&request(&s, Some("h:"), "", "", None)).unwrap();
        assert_eq!(bare.args, ["h:", "/mnt/volumes/vol", "-f"]);
    }

    #[test]
    fn password_goes_to_stdin_only() {
        let s = BackendSettings::default();
        let pw = Secret::new("hunter2");
        let inv = build(&request(&s, Some("u@h:/srv"), "", "port=1", Some(&pw))).unwrap();
        assert_eq!(inv.args.last().unwrap(), "port=1,password_stdin");
        assert!(!inv.args.iter().any(|a| a.contains("hunter2")));
        assert_eq!(inv.stdin.unwrap().expose(), "hunter2");
    }

    #[test]
    fn a_refused_login_points_at_the_pacing_setting() {
        let s = BackendSettings::default();
        let inv = build(&request(&s, Some("u@h:/srv"), "", "", None)).unwrap();
        let hint = inv.hint("kex_exchange_identification: Connection closed by remote host");
        assert!(hint.contains("MAX_STARTUPS_PER_ENDPOINT"), "{hint}");
    }

    #[test]
    fn needs_a_source() {
        let s = BackendSettings::default();
        let err = build(&request(&s, None, "", "", None)).unwrap_err();
        assert_eq!(err, BackendError::MissingSource(BackendKind::Sshfs));
    }
}
