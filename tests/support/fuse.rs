//! A FUSE tool (sshfs, rclone mount) run directly by a test, without the
//! plugin: to check the test remote itself, or to compare the plugin's
//! mounts with a plain one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::mounts::{self, is_mounted, wait_until};

pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(10);

/// A FUSE tool run in the foreground by the test itself, mounting at a
/// fresh mountpoint; unmounted and killed on drop.
pub struct Fuse {
    child: Child,
    pub mountpoint: PathBuf,
    dir: tempfile::TempDir,
}

impl Fuse {
    /// `program SOURCE MOUNTPOINT args...`, with `stdin_line` on its stdin.
    pub fn mount(program: &[&str], source: &str, args: &[&str], stdin_line: Option<&str>) -> Fuse {
        let dir = tempfile::tempdir().expect("create mountpoint parent");
        // A space in the path exercises mountinfo unescaping.
        let mountpoint = dir.path().join("mnt point");
        fs::create_dir(&mountpoint).expect("create mountpoint");
        let log = fs::File::create(dir.path().join("stderr.log")).expect("create stderr.log");
        let mut child = Command::new(program[0])
            .args(&program[1..])
            .arg(source)
            .arg(&mountpoint)
            .args(args)
            .stdin(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("run {program:?}: {e}"));
        let mut stdin = child.stdin.take().expect("piped stdin");
        if let Some(line) = stdin_line {
            writeln!(stdin, "{line}").expect("write to the tool's stdin");
        }
        drop(stdin);
        let mut fuse = Fuse {
            child,
            mountpoint,
            dir,
        };
        let mnt = fuse.mountpoint.clone();
        // With `reconnect` sshfs mounts before it has connected: wait until
        // the mount answers, not just until it is listed.
        wait_until(MOUNT_TIMEOUT, "the tool has mounted and answers", || {
            assert!(
                fuse.alive(),
                "{program:?} exited before mounting:\n{}",
                fuse.stderr()
            );
            is_mounted(&mnt) && fs::read_dir(&mnt).is_ok()
        });
        fuse
    }

    /// `sshfs SOURCE MOUNTPOINT -f -o options`, e.g. with
    /// [`super::sshd::Sshd::sshfs_options`].
    pub fn sshfs(source: &str, options: &str, password: Option<&str>) -> Fuse {
        Fuse::mount(&["sshfs"], source, &["-f", "-o", options], password)
    }

    /// The temporary directory holding the mountpoint.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the tool wrote on stderr so far.
    pub fn stderr(&self) -> String {
        let bytes = fs::read(self.dir.path().join("stderr.log")).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Fuse {
    fn drop(&mut self) {
        let _ = mounts::lazy_unmount(&self.mountpoint);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
