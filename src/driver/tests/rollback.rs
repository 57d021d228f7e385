//! Every call either happens whole or leaves the volume as it was: a tool
//! that fails to start, or a state file that cannot be written, is undone
//! in memory, on disk and in the mount table.

use super::Harness;
use crate::config::Lifecycle;
use crate::driver::DriverError;
use crate::mounts::recorded::Call;
use crate::supervisor::ProcState;

#[tokio::test(start_paused = true)]
async fn create_leaves_nothing_when_the_tool_fails_to_start() {
    let h = Harness::new(Lifecycle::Volume);
    h.tool.script().missing = true;
    let err = h.create("v").await.unwrap_err();
    assert!(matches!(err, DriverError::Process { .. }), "{err}");
    assert!(err.to_string().contains("cannot start tool"), "{err}");
    h.tool.script().missing = false;
    h.tool.script().refuse = true;
    let err = h.create("v").await.unwrap_err();
    assert!(err.to_string().contains("Connection refused"), "{err}");
    assert!(h.listed().is_empty());
    assert!(matches!(h.driver.get("v"), Err(DriverError::NotFound(_))));
    assert!(!h.state_file().exists(), "nothing was written");
    assert_eq!(h.tool.running(), 0);
    assert!(!h.mount_point("v").exists(), "its mount point is gone");
    // The name is free again.
    h.tool.script().refuse = false;
    h.create("v").await.unwrap();
    assert_eq!(h.listed(), ["v"]);
    assert_eq!(h.stored_names(), ["v"]);
}

#[tokio::test(start_paused = true)]
async fn create_stops_the_tool_when_the_state_cannot_be_written() {
    let h = Harness::new(Lifecycle::Volume);
    h.create("kept").await.unwrap();
    h.fail_writes(true);
    let err = h.create("v").await.unwrap_err();
    assert!(matches!(err, DriverError::State(_)), "{err}");
    assert!(err.to_string().contains("no space left"), "{err}");
    assert_eq!(h.listed(), ["kept"]);
    assert_eq!(h.tool.running(), 1, "only the tool of `kept` runs");
    assert!(!h.mount_point("v").exists());
    assert!(h
        .mounts
        .calls()
        .contains(&Call::RemoveMountPoint(h.mount_point("v"))));
    h.fail_writes(false);
    h.create("v").await.unwrap();
    assert_eq!(h.stored_names(), ["kept", "v"]);
}

#[tokio::test(start_paused = true)]
async fn a_mount_id_that_cannot_be_stored_is_not_kept() {
    let h = Harness::new(Lifecycle::Mount);
    h.create("v").await.unwrap();
    assert_eq!(h.tool.running(), 0, "lifecycle mount: nothing runs yet");
    h.fail_writes(true);
    let err = h.driver.mount("v", "c1").await.unwrap_err();
    assert!(matches!(err, DriverError::State(_)), "{err}");
    assert_eq!(h.status("v").mount_ids, Vec::<String>::new());
    assert_eq!(h.tool.running(), 0, "the tool it started is stopped again");
    h.fail_writes(false);
    assert!(h.stored_ids("v").is_empty());
    // Not held "in use" by the ID Docker will never unmount.
    h.driver.remove("v").await.unwrap();
    assert!(h.listed().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_unmount_that_cannot_be_stored_is_undone() {
    let h = Harness::new(Lifecycle::Mount);
    h.create("v").await.unwrap();
    let path = h.driver.mount("v", "c1").await.unwrap();
    assert_eq!(path, h.mount_point("v"));
    assert_eq!(h.stored_ids("v"), ["c1"]);
    assert_eq!(h.process("v").state, ProcState::Mounted);
    h.fail_writes(true);
    let err = h.driver.unmount("v", "c1").await.unwrap_err();
    assert!(matches!(err, DriverError::State(_)), "{err}");
    assert_eq!(h.status("v").mount_ids, ["c1"]);
    assert_eq!(h.process("v").state, ProcState::Mounted, "still mounted");
    assert_eq!(h.tool.running(), 1);
    h.fail_writes(false);
    assert!(matches!(
        h.driver.remove("v").await,
        Err(DriverError::InUse { count: 1, .. })
    ));
    // Docker sends the Unmount again.
    h.driver.unmount("v", "c1").await.unwrap();
    assert_eq!(h.tool.running(), 0, "the last Unmount stops the tool");
    assert!(h.stored_ids("v").is_empty());
    // An unknown ID is no error, and writes nothing.
    h.fail_writes(true);
    h.driver.unmount("v", "c9").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn remove_is_refused_in_use_and_undone_when_the_state_cannot_be_written() {
    let h = Harness::new(Lifecycle::Volume);
    h.create("v").await.unwrap();
    h.driver.mount("v", "c1").await.unwrap();
    let err = h.driver.remove("v").await.unwrap_err();
    assert!(
        err.to_string().contains("in use by 1 container(s)"),
        "{err}"
    );
    h.driver.unmount("v", "c1").await.unwrap();
    assert_eq!(
        h.tool.running(),
        1,
        "lifecycle volume: it runs until Remove"
    );
    h.fail_writes(true);
    let err = h.driver.remove("v").await.unwrap_err();
    assert!(matches!(err, DriverError::State(_)), "{err}");
    assert_eq!(h.listed(), ["v"], "left whole");
    assert_eq!(h.process("v").state, ProcState::Mounted, "and running");
    assert_eq!(h.tool.running(), 1);
    h.fail_writes(false);
    assert_eq!(h.stored_names(), ["v"]);
    h.driver.remove("v").await.unwrap();
    assert!(h.listed().is_empty());
    assert!(h.stored_names().is_empty());
    assert_eq!(h.tool.running(), 0);
    assert!(!h.mount_point("v").exists());
    assert!(matches!(
        h.driver.remove("v").await,
        Err(DriverError::NotFound(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_volume_that_failed_to_mount_is_tried_again_at_the_next_mount() {
    let h = Harness::new(Lifecycle::Mount);
    h.create("v").await.unwrap();
    h.tool.script().refuse = true;
    let err = h.driver.mount("v", "c1").await.unwrap_err();
    assert!(matches!(err, DriverError::Process { .. }), "{err}");
    let status = h.status("v");
    assert!(status.mount_ids.is_empty());
    let process = status.process.expect("a process");
    assert_eq!(process.state, ProcState::Failed);
    assert!(
        process
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("Connection refused")),
        "{process:?}"
    );
    assert!(h.stored_ids("v").is_empty());
    h.tool.script().refuse = false;
    h.driver.mount("v", "c2").await.unwrap();
    assert_eq!(h.process("v").state, ProcState::Mounted);
    assert_eq!(h.stored_ids("v"), ["c2"]);
    assert_eq!(h.tool.running(), 1);
}
