//! `mount.nfs SOURCE MOUNTPOINT [process options] [-o mount options]`.
//! A one-shot tool: it exits once the kernel mount exists, so "running"
//! means the kernel mount is present.

use super::{BackendError, BackendKind, CommandInputs, Invocation};

pub fn build(req: &CommandInputs<'_>) -> Result<Invocation, BackendError> {
    let source = req.source(BackendKind::Nfs)?;
    req.refuse_secrets(BackendKind::Nfs)?;
    if req.password.is_some() {
        return Err(BackendError::PasswordUnsupported(BackendKind::Nfs));
    }
    let mut args = vec![source.to_owned(), req.mount_point()];
    args.extend(req.process_args());
    if !req.mount_options.is_empty() {
        args.push("-o".to_owned());
        args.push(req.mount_options.to_arg());
    }
    Ok(Invocation {
        program: "mount.nfs".to_owned(),
        args,
        env: Vec::new(),
        stdin: None,
        hints: HINTS,
        login: None,
        rc_socket: None,
    })
}

const HINTS: &[(&str, &str)] = &[
    (
        "No such device",
        "the kernel has no NFS client: load the nfs module on the host (modprobe nfs)",
    ),
    (
        "rpc.statd is not running",
        "NFSv3 locking needs rpc.statd: add -o nolock, or use vers=4",
    ),
    (
        "access denied by server",
        "the server does not export this path to this host",
    ),
];

#[cfg(test)]
mod tests {
    use super::super::test_support::request;
    use super::super::BackendSettings;
    use super::*;

    #[test]
    fn argv() {
        let s = BackendSettings::default();
        let inv = build(&request(
            &s,
            Some("server:/export"),
            "-v",
            "vers=4.2,soft",
            None,
        ))
        .unwrap();
        assert_eq!(
            inv.args,
            [
                "server:/export",
                "/mnt/volumes/vol",
                "-v",
                "-o",
                "vers=4.2,soft"
            ]
        );
    }
}
