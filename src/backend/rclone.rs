//! `rclone mount SOURCE MOUNTPOINT [process options] [--key=value ...]`.
//! Mount options become rclone flags: `vfs-cache-mode=full,allow-other` is
//! `--vfs-cache-mode=full --allow-other`. rclone stays in the foreground.

use super::{BackendError, BackendKind, Invocation, Request};

pub fn build(req: &Request<'_>) -> Result<Invocation, BackendError> {
    let source = req.source(BackendKind::Rclone)?;
    if req.password.is_some() {
        return Err(BackendError::PasswordUnsupported(BackendKind::Rclone));
    }
    let mut args = vec!["mount".to_owned(), source.to_owned(), req.mount_point()];
    args.extend(req.process_args());
    for option in req.mount_options.iter() {
        args.push(match &option.value {
            Some(v) => format!("--{}={}", option.key, v),
            None => format!("--{}", option.key),
        });
    }
    Ok(Invocation {
        program: "rclone".to_owned(),
        args,
        stdin: None,
        one_shot: false,
        hints: HINTS,
    })
}

const HINTS: &[(&str, &str)] = &[(
    "didn't find section in config file",
    "no such remote: use an on-the-fly remote such as :sftp,host=...:path, or define it in the rclone config (RCLONE_CONFIG)",
)];

#[cfg(test)]
mod tests {
    use super::super::test_support::request;
    use super::super::BackendSettings;
    use super::*;

    #[test]
    fn argv() {
        let s = BackendSettings::default();
        let src = ":sftp,host=127.0.0.1,pass=x:/srv";
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
        assert_eq!(
            inv.display(),
            "rclone mount ':sftp,host=127.0.0.1,pass=***:/srv' /mnt/volumes/vol -v '--vfs-cache-mode=full' --allow-other"
        );
    }
}
