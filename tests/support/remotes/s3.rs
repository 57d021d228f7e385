//! S3: `rclone serve s3` of the pinned rclone over a directory, whose
//! top-level directories are the buckets. Its access key pair is the
//! secret (the secret key is given plain: S3 keys are not obscured).

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use super::{Daemon, Remote};
use crate::support::rclone;

const ACCESS_KEY: &str = "netfs-access";
/// The secret key (no `,`: the pair is given to the server as `key,secret`).
pub const SECRET_KEY: &str = "netfs-s3-Secret=7&1";
pub const BUCKET: &str = "bucket";

pub struct S3 {
    pub daemon: Daemon,
}

impl S3 {
    pub fn start() -> S3 {
        let daemon = Daemon::start("s3", |dir, data, port| {
            fs::create_dir_all(data.join(BUCKET)).expect("create the bucket");
            let mut cmd = Command::new(rclone::binary());
            cmd.env("RCLONE_CONFIG", dir.join("rclone.conf"))
                .args(["serve", "s3", "--addr"])
                .arg(format!("127.0.0.1:{port}"))
                // The key pair reaches the server in its environment,
                // not in its argv: tests read every process's argv. rclone
                // reads a list flag's variable as CSV: the pair is quoted.
                .env("RCLONE_AUTH_KEY", format!("\"{ACCESS_KEY},{SECRET_KEY}\""))
                .arg(data);
            cmd
        });
        S3 { daemon }
    }
}

impl Remote for S3 {
    fn backend(&self) -> &'static str {
        "s3"
    }

    fn options(&self, secret: &str) -> Vec<(&'static str, String)> {
        vec![
            ("provider", "Other".into()),
            ("endpoint", format!("http://127.0.0.1:{}", self.daemon.port)),
            ("access_key_id", ACCESS_KEY.into()),
            ("secret_access_key", secret.into()),
        ]
    }

    fn path(&self, sub: &str) -> String {
        format!("{BUCKET}/{sub}")
    }

    fn disk(&self, sub: &str) -> PathBuf {
        self.daemon.data.path().join(BUCKET).join(sub)
    }

    fn secret(&self) -> &str {
        SECRET_KEY
    }

    fn refusal(&self) -> &'static str {
        // rclone's HEAD of the path is refused (403), and its listing too.
        "Failed to create file system"
    }
}
