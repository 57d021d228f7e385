//! Running external tools with a bound on their time: a hung tool fails the
//! test with its command line and what it wrote, instead of hanging the run.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long helpers let an ordinary tool run before failing the test.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// `program arg1 arg2 ...` with each part debug-quoted, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = format!("{:?}", cmd.get_program());
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&format!("{arg:?}"));
    }
    s
}

/// Runs `cmd` to completion, capturing stdout and stderr; panics if it
/// cannot be started or runs longer than `timeout` (it is killed then).
/// A non-zero exit is not a panic: look at `status`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    run_input(cmd, None, timeout)
}

/// Like [`run`], writing `input` to the tool's stdin first.
pub fn run_input(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Output {
    try_run_input(cmd, input, timeout).unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`run_input`], but says what went wrong instead of panicking (for
/// clean-up code in `Drop`, where a panic would abort).
pub fn try_run_input(
    cmd: &mut Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output, String> {
    let what = describe(cmd);
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("stdin was piped");
        let input = input.to_vec();
        // A writer thread: a tool that never reads must not block us.
        thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let out = collect(child.stdout.take().expect("stdout was piped"));
    let err = collect(child.stderr.take().expect("stderr was piped"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = String::from_utf8_lossy(&finish(err)).into_owned();
                return Err(format!(
                    "{what} still running after {timeout:?}; killed it. stderr:\n{stderr}"
                ));
            }
            Err(e) => return Err(format!("cannot wait for {what}: {e}")),
        }
    };
    Ok(Output {
        status,
        stdout: finish(out),
        stderr: finish(err),
    })
}

/// What a finished tool did, for a failure message: `what` exited with
/// its status, then its stdout and stderr.
pub fn show(what: &str, out: &Output) -> String {
    format!(
        "{what} exited {}.\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` and panics, with its stderr, unless it exits 0.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd, DEFAULT_TIMEOUT);
    assert!(
        out.status.success(),
        "{} failed ({}).\nstdout:\n{}\nstderr:\n{}",
        describe(cmd),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Reads a pipe to its end on a thread of its own.
fn collect(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// What a pipe gave. A grandchild that inherited the pipe (a daemonizing
/// tool) may hold it open forever, so this waits a bounded time.
fn finish(rx: mpsc::Receiver<Vec<u8>>) -> Vec<u8> {
    rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default()
}
