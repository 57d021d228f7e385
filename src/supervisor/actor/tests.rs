//! The supervisor's restart logic against a scripted tool, on tokio's
//! paused clock: backoff, the crash budget, giving up and starting afresh,
//! and the sliding minute, without a minute of waiting.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::super::budget::{FIRST_BACKOFF, MAX_BACKOFF};
use super::super::scripted::{Scripted, MOUNTING};
use super::super::{Order, ProcState, ProcessError, ProcessSpec, ProcessStatus, Supervision};
use super::run;
use crate::backend::Invocation;
use crate::config::RecoveryMode;
use crate::name::VolumeName;
use crate::pacing::Gate;
use crate::reattach::recorded::Recorded as Host;
use crate::reattach::Reattacher;

/// Far longer than anything the supervisor waits for.
const NEVER: Duration = Duration::from_secs(3600);

struct Harness {
    tool: Scripted,
    tx: mpsc::Sender<Order>,
    status: watch::Receiver<ProcessStatus>,
}

impl Harness {
    fn new(max_restarts_per_min: u32) -> Harness {
        Self::with(max_restarts_per_min, None, Vec::new())
    }

    fn with(
        max_restarts_per_min: u32,
        reattach: Option<Arc<Reattacher>>,
        devices: Vec<String>,
    ) -> Harness {
        let tool = Scripted::default();
        let spec = ProcessSpec {
            name: VolumeName::parse("v").expect("a name"),
            mount_point: "/nonexistent/v".into(),
            invocation: Invocation {
                program: "tool".into(),
                args: Vec::new(),
                stdin: None,
                env: Vec::new(),
                hints: &[],
                login: None,
                rc_socket: None,
            },
            endpoint: None,
            shared: None,
            devices: devices.clone(),
        };
        let supervision = Supervision {
            mount_timeout: Duration::from_secs(20),
            stop_timeout: Duration::from_secs(5),
            recovery: RecoveryMode::Restart,
            max_restarts_per_min,
            health_interval: Duration::from_secs(2),
            pacing: Arc::new(Gate::new(5)),
            reattach,
        };
        let (tx, rx) = mpsc::channel(8);
        let mut initial = ProcessStatus::new();
        initial.devices = devices;
        let (status_tx, status) = watch::channel(initial);
        tokio::spawn(run(tool.clone(), spec, supervision, rx, status_tx));
        Harness { tool, tx, status }
    }

    async fn send(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<(), ProcessError>>) -> Order,
    ) -> Result<(), ProcessError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(request(reply)).await.expect("supervisor runs");
        rx.await.expect("a reply")
    }

    async fn start(&self) -> Result<(), ProcessError> {
        self.send(Order::Start).await
    }

    fn spawns(&self) -> u32 {
        self.tool.script().spawns
    }

    fn now(&self) -> ProcessStatus {
        self.status.borrow().clone()
    }

    async fn wait(
        &mut self,
        what: &str,
        cond: impl FnMut(&ProcessStatus) -> bool,
    ) -> ProcessStatus {
        let seen = tokio::time::timeout(NEVER, self.status.wait_for(cond))
            .await
            .map(|r| r.map(|s| s.clone()));
        match seen {
            Ok(Ok(status)) => status,
            _ => panic!("never {what}: {:?}", self.now().state),
        }
    }

    /// Kills the mounted tool; returns how long until the next one mounted.
    async fn crash_and_remount(&mut self) -> Duration {
        let pid = self.now().pid;
        let at = Instant::now();
        self.tool.kill();
        self.wait("mounted again", |s| {
            s.state == ProcState::Mounted && s.pid != pid
        })
        .await;
        at.elapsed()
    }

    async fn crash_and_fail(&mut self) -> ProcessStatus {
        self.tool.kill();
        self.wait("failed", |s| s.state == ProcState::Failed).await
    }
}

#[tokio::test(start_paused = true)]
async fn crashes_past_the_budget_fail_the_volume_and_the_next_start_tries_afresh_at_once() {
    let mut h = Harness::new(2);
    h.start().await.expect("mounted");
    // Restarted after a backoff that doubles with each crash in the minute.
    assert_eq!(h.crash_and_remount().await, FIRST_BACKOFF + MOUNTING);
    assert_eq!(h.crash_and_remount().await, 2 * FIRST_BACKOFF + MOUNTING);
    let failed = h.crash_and_fail().await;
    let error = failed.last_error.clone().unwrap_or_default();
    assert!(error.contains("died 3 times within a minute"), "{error}");
    assert!(error.contains("the next Mount starts it again"), "{error}");
    assert_eq!((failed.restarts, h.spawns()), (2, 3));

    // Given up: nothing runs, however long.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!((h.now().state, h.spawns()), (ProcState::Failed, 3));

    // The next start tries at once, and Status keeps the history.
    let at = Instant::now();
    h.start().await.expect("mounted afresh");
    assert_eq!(at.elapsed(), MOUNTING);
    let now = h.now();
    assert_eq!(
        (now.state, now.restarts, h.spawns()),
        (ProcState::Mounted, 2, 4)
    );
    assert!(now.last_error.is_some_and(|e| e.contains("died 3 times")));

    // The budget counts again from that start: two restarts, then failed.
    assert_eq!(h.crash_and_remount().await, FIRST_BACKOFF + MOUNTING);
    assert_eq!(h.crash_and_remount().await, 2 * FIRST_BACKOFF + MOUNTING);
    assert_eq!(h.crash_and_fail().await.restarts, 4);
}

#[tokio::test(start_paused = true)]
async fn crashes_a_minute_apart_never_spend_the_budget() {
    let mut h = Harness::new(1);
    h.start().await.expect("mounted");
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(h.crash_and_remount().await, FIRST_BACKOFF + MOUNTING);
    }
    // Two within the minute are one too many.
    assert_eq!(h.crash_and_fail().await.restarts, 5);
}

#[tokio::test(start_paused = true)]
async fn a_remote_that_is_down_is_retried_with_a_capped_backoff_and_never_given_up() {
    let mut h = Harness::new(1);
    h.tool.script().refuse = true;
    let err = h
        .send(Order::Restore)
        .await
        .expect_err("the remote is down");
    assert!(err.to_string().contains("Connection refused"), "{err}");
    tokio::time::sleep(Duration::from_secs(300)).await;
    let status = h.now();
    assert_eq!(status.state, ProcState::Restarting);
    // 0.2 s doubling to the 10 s cap: a handful at first, then one each 10 s.
    let spawns = h.spawns();
    assert!((30..=40).contains(&spawns), "{spawns} starts in 5 minutes");
    h.tool.script().refuse = false;
    let at = Instant::now();
    h.wait("mounted once the remote is back", |s| {
        s.state == ProcState::Mounted
    })
    .await;
    assert!(at.elapsed() <= MAX_BACKOFF + MOUNTING, "{:?}", at.elapsed());
}

/// Not on the paused clock: the pass runs on a blocking thread, which a
/// paused clock does not wait for.
#[tokio::test]
async fn a_mount_goes_into_the_containers_holding_the_earlier_runs_and_status_says_so() {
    let host = Arc::new(Host::default());
    host.own(
        1,
        "90 22 0:77 / /nonexistent/v rw - fuse.sshfs u@h:/srv rw\n",
    );
    host.table(7, "510 500 0:50 / /data rw - fuse.sshfs u@h:/srv rw\n");
    host.process(200, 7, Some("aaaaaaaaaaaa"));
    let changed = Arc::new(tokio::sync::Notify::new());
    let reattacher = Arc::new(Reattacher::new(host.clone(), changed.clone()));
    let h = Harness::with(5, Some(reattacher), vec!["0:50".into()]);
    h.start().await.expect("mounted");
    let status = h.now();
    assert_eq!(status.devices, ["0:77"]);
    assert_eq!(status.reattach.total, 1);
    assert_eq!(status.reattach.last, ["container aaaaaaaaaaaa: /data"]);
    assert_eq!(host.attaches().len(), 1);
    // The driver is told, so the state file keeps the new device.
    tokio::time::timeout(Duration::from_secs(5), changed.notified())
        .await
        .expect("told of the change");
}
