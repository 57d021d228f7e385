//! The seam between the supervisor's restart logic and real processes: what
//! the actor does with one run of a volume's tool. [`Processes`] is the real
//! thing (`child`); the actor's unit tests put a scripted tool behind it, so
//! backoff, the crash budget and giving up run under tokio's paused clock
//! instead of a minute of wall-clock time.

use std::future::Future;
use std::time::Duration;

use super::child::{self, Running, Watch};
use super::uploads::{self, Settled};
use super::{ProcessError, ProcessSpec, Supervision, Tail};
use crate::pacing::Permit;

pub trait Tool: Send + Sync + 'static {
    /// One started run of the tool.
    type Run: Send + 'static;

    fn spawn(&self, spec: &ProcessSpec) -> Result<Self::Run, ProcessError>;
    fn pid(run: &Self::Run) -> Option<u32>;
    /// The last lines it wrote on stderr.
    fn tail(run: &Self::Run) -> Tail;
    /// Until it is mounted; on failure it is stopped. `turn` (its turn at
    /// the server) is given up as soon as its login is done.
    fn wait_ready(
        &self,
        run: &mut Self::Run,
        spec: &ProcessSpec,
        supervision: &Supervision,
        turn: &mut Option<Permit>,
    ) -> impl Future<Output = Result<(), ProcessError>> + Send;
    /// Until it exits or its mount fails.
    fn watch(
        &self,
        run: &mut Self::Run,
        spec: &ProcessSpec,
        every: Duration,
    ) -> impl Future<Output = Watch> + Send;
    /// Why a running tool is not usable now, if it is not.
    fn check_now(
        &self,
        run: &mut Self::Run,
        spec: &ProcessSpec,
    ) -> impl Future<Output = Option<String>> + Send;
    fn stop(
        &self,
        run: &mut Self::Run,
        spec: &ProcessSpec,
        supervision: &Supervision,
    ) -> impl Future<Output = ()> + Send;
    /// Before a stop that was asked for: lets what the tool still has to
    /// write to the server through, within a bound. Nothing by default.
    fn settle(&self, _run: &mut Self::Run, _spec: &ProcessSpec) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// Real processes.
pub struct Processes;

impl Tool for Processes {
    type Run = Running;

    fn spawn(&self, spec: &ProcessSpec) -> Result<Running, ProcessError> {
        child::spawn(spec)
    }

    fn pid(run: &Running) -> Option<u32> {
        run.pid()
    }

    fn tail(run: &Running) -> Tail {
        run.tail()
    }

    async fn wait_ready(
        &self,
        run: &mut Running,
        spec: &ProcessSpec,
        supervision: &Supervision,
        turn: &mut Option<Permit>,
    ) -> Result<(), ProcessError> {
        child::wait_ready(run, spec, supervision, turn).await
    }

    async fn watch(&self, run: &mut Running, spec: &ProcessSpec, every: Duration) -> Watch {
        run.watch(spec, every).await
    }

    async fn check_now(&self, run: &mut Running, spec: &ProcessSpec) -> Option<String> {
        run.check_now(spec).await
    }

    async fn stop(&self, run: &mut Running, spec: &ProcessSpec, supervision: &Supervision) {
        child::stop(run, spec, supervision).await
    }

    async fn settle(&self, run: &mut Running, spec: &ProcessSpec) {
        let Some(socket) = &spec.invocation.rc_socket else {
            return;
        };
        if !run.is_running() {
            return;
        }
        match uploads::settle(socket, uploads::UPLOAD_WAIT).await {
            Settled::Uploaded { waited } if waited.is_zero() => {}
            Settled::Uploaded { waited } => {
                tracing::info!(volume = %spec.name, waited_ms = waited.as_millis() as u64,
                    "rclone's queued uploads are done")
            }
            Settled::Pending {
                queued,
                in_progress,
            } => tracing::warn!(
                volume = %spec.name, queued, in_progress,
                "rclone's uploads did not finish within {:?}; they stay in its VFS cache \
                 and go up when the same remote is mounted again", uploads::UPLOAD_WAIT
            ),
            Settled::Unknown(why) => tracing::warn!(volume = %spec.name, %why,
                "cannot ask rclone for its queued uploads; stopping it without waiting"),
        }
    }
}
