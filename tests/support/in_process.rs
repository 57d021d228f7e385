//! netfs served by the test process itself, on a private temporary
//! directory, until dropped: `netfs::run` or `netfs::csi::run` as the flags'
//! `--mode` says, the way `main` picks. Tests of a front end wrap it with
//! their own paths and client.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use clap::Parser;
use netfs::config::Mode;
use tokio::sync::Notify;

pub struct InProcess {
    dir: tempfile::TempDir,
    argv: Vec<String>,
    stop: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

impl InProcess {
    /// Serves netfs with the flags `args` gives for a fresh directory
    /// (without the program name). Returns at once: the caller waits for
    /// the socket in the way its protocol answers.
    pub fn start(args: impl FnOnce(&Path) -> Vec<String>) -> InProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let argv: Vec<String> = std::iter::once("netfs".to_owned())
            .chain(args(dir.path()))
            .collect();
        let (stop, thread) = serve(&argv);
        InProcess {
            dir,
            argv,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops netfs as SIGTERM would and serves it again with the same
    /// flags on the same directory.
    pub fn restart(&mut self) {
        self.stop_serving();
        let (stop, thread) = serve(&self.argv);
        self.stop = stop;
        self.thread = Some(thread);
    }

    fn stop_serving(&mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// The directory the flags' paths were made in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.stop_serving();
    }
}

/// Serves netfs with `argv` on a thread of its own, until told to stop.
fn serve(argv: &[String]) -> (Arc<Notify>, JoinHandle<()>) {
    let config = netfs::Cli::try_parse_from(argv)
        .expect("flags")
        .into_config()
        .expect("config");
    let stop = Arc::new(Notify::new());
    let stopped = stop.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let shutdown = async move { stopped.notified().await };
        let served = rt.block_on(async move {
            match config.mode() {
                Mode::Plugin => netfs::run(config, shutdown).await,
                Mode::Csi => netfs::csi::run(config, shutdown).await,
            }
        });
        served.expect("netfs serves");
    });
    (stop, thread)
}
