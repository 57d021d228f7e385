//! Any binary the operator names: `--volume-process-binary` followed by the
//! process options (default `{mountPoint}`), then the flag named by
//! `--mount-options-volume-process-option` and the merged mount options.

use super::{BackendError, CommandInputs, Invocation};
use crate::options::ProcessOptions;

pub fn build(req: &CommandInputs<'_>) -> Result<Invocation, BackendError> {
    let binary = req
        .settings
        .command_binary
        .as_ref()
        .ok_or(BackendError::NoCommandBinary)?;
    let mut args = if req.process_options.is_empty() {
        let default = CommandInputs {
            process_options: ProcessOptions::from_items(vec!["{mountPoint}".to_owned()]),
            mount_options: req.mount_options.clone(),
            ..*req
        };
        default.process_args()
    } else {
        req.process_args()
    };
    if !req.mount_options.is_empty() {
        if let Some(flag) = &req.settings.command_mount_option_flag {
            args.push(flag.clone());
        }
        args.push(req.mount_options.to_arg());
    }
    Ok(Invocation {
        program: binary.to_string_lossy().into_owned(),
        args,
        env: Vec::new(),
        stdin: req.password.cloned(),
        hints: &[],
        login: None,
        rc_socket: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::request;
    use super::super::BackendSettings;
    use super::*;

    #[test]
    fn default_process_options_are_the_mountpoint() {
        let s = BackendSettings {
            command_binary: Some("/usr/bin/mytool".into()),
            command_mount_option_flag: Some("-o".into()),
            rclone_rc_dir: None,
        };
        let inv = build(&request(&s, None, "", "a=1,b", None)).unwrap();
        assert_eq!(inv.program, "/usr/bin/mytool");
        assert_eq!(inv.args, ["/mnt/volumes/vol", "-o", "a=1,b"]);
        let inv = build(&request(
            &s,
            Some("h:/x"),
            "{source}&{mountPoint}",
            "",
            None,
        ))
        .unwrap();
        assert_eq!(inv.args, ["h:/x", "/mnt/volumes/vol"]);
    }

    #[test]
    fn needs_a_binary() {
        let s = BackendSettings::default();
        assert_eq!(
            build(&request(&s, None, "", "", None)).unwrap_err(),
            BackendError::NoCommandBinary
        );
    }
}
