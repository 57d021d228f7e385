//! What a restart of netfs brings back from the state file and clears of
//! the earlier run, what a restart of a tool shows, and one tool per
//! volume however many calls race.

use std::fs;

use super::Harness;
use crate::config::Lifecycle;
use crate::driver::DriverError;
use crate::mounts::recorded::Call;
use crate::supervisor::ProcState;

#[tokio::test(start_paused = true)]
async fn restore_keeps_mount_ids_and_lists_a_refused_volume_with_its_reason() {
    let h = Harness::new(Lifecycle::Mount);
    h.create("good").await.unwrap();
    h.driver.mount("good", "c1").await.unwrap();
    h.create("idle").await.unwrap();
    h.driver.shutdown().await;
    // An older netfs stored options this one does not accept; another
    // volume's option is now denied by the policy.
    let mut doc: serde_json::Value =
        serde_json::from_slice(&fs::read(h.state_file()).unwrap()).unwrap();
    let volumes = &mut doc["volumes"];
    volumes["old"] = serde_json::json!({
        "backend": "sshfs", "options": {"source": "u@h:/y", "cache": "yes"},
        "createdAt": "2026-01-02T00:00:00Z", "mountIds": ["c2"]});
    volumes["denied"] = serde_json::json!({
        "backend": "sshfs", "options": {"source": "u@h:/z", "o": "ssh_command=/bin/sh"},
        "createdAt": "2026-01-03T00:00:00Z"});
    fs::write(h.state_file(), serde_json::to_vec(&doc).unwrap()).unwrap();

    let (h, volumes) = h.reopen();
    let starts = h.driver.recover(volumes).await;
    h.driver.restore(starts).await;
    assert_eq!(h.listed(), ["denied", "good", "idle", "old"]);
    assert_eq!(h.tool.running(), 1, "only the volume in use is started");
    let good = h.status("good");
    let process = good.process.expect("a process");
    assert_eq!(process.state, ProcState::Mounted);
    assert_eq!(good.mount_ids, ["c1"]);
    assert_eq!(
        process.mount_ids_before_last_restart,
        ["c1"],
        "taken by the earlier run"
    );
    let old = h.status("old");
    assert_eq!(old.mount_ids, ["c2"]);
    let old = old.process.expect("a process");
    assert_eq!(old.state, ProcState::Failed);
    let reason = old.last_error.unwrap_or_default();
    assert!(
        reason.contains("unknown volume option \"cache\""),
        "{reason}"
    );
    let err = h.driver.mount("old", "c3").await.unwrap_err();
    assert!(matches!(err, DriverError::Refused { .. }), "{err}");
    assert!(err.to_string().contains(&reason), "{err}");
    let err = h.driver.mount("denied", "c4").await.unwrap_err();
    assert!(err.to_string().contains("ssh_command"), "{err}");
    assert_eq!(h.tool.running(), 1, "a refused volume never runs");
    // Stored exactly as it was, then released and removed like any other.
    assert_eq!(h.stored_ids("old"), ["c2"]);
    h.driver.unmount("old", "c2").await.unwrap();
    h.driver.remove("old").await.unwrap();
    h.driver.remove("denied").await.unwrap();
    assert_eq!(h.stored_names(), ["good", "idle"]);
    assert_eq!(h.stored_ids("good"), ["c1"]);
}

#[tokio::test(start_paused = true)]
async fn recover_clears_what_an_earlier_run_left_under_the_mount_root() {
    let h = Harness::new(Lifecycle::Mount);
    h.create("kept").await.unwrap();
    let (h, volumes) = h.restart().await;
    for name in ["kept", "gone"] {
        fs::create_dir_all(h.mount_point(name)).unwrap();
        h.mounts.mount(&h.mount_point(name));
    }
    let not_a_volume = h.dir.path().join("volumes").join(".not a volume");
    fs::create_dir(&not_a_volume).unwrap();
    h.driver.recover(volumes).await;
    let calls = h.mounts.calls();
    for name in ["kept", "gone"] {
        assert!(
            calls.contains(&Call::LazyUnmount(h.mount_point(name))),
            "{calls:?}"
        );
    }
    assert!(
        h.mount_point("kept").exists(),
        "a stored volume's dir stays"
    );
    assert!(!h.mount_point("gone").exists());
    assert!(not_a_volume.exists(), "only volumes' dirs are removed");
}

#[tokio::test(start_paused = true)]
async fn concurrent_creates_of_one_name_start_one_tool() {
    let h = Harness::new(Lifecycle::Volume);
    let mut creates = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let driver = h.driver.clone();
        let opts = [("source".to_owned(), "u@h:/x".to_owned())];
        creates.spawn(async move {
            driver.create("v", opts.into()).await?;
            // Done means there: a Create answers once the volume exists.
            driver.get("v").map(|_| ())
        });
    }
    while let Some(created) = creates.join_next().await {
        created.expect("no panic").expect("created and found");
    }
    assert_eq!(h.tool.script().spawns, 1);
    assert_eq!(h.listed(), ["v"]);
    // And Mounts racing a Create wait for it.
    h.driver.remove("v").await.unwrap();
    let (created, mounted) = tokio::join!(h.create("v"), h.driver.mount("v", "c1"));
    created.unwrap();
    mounted.unwrap();
    assert_eq!(h.tool.script().spawns, 2);
    assert_eq!(h.stored_ids("v"), ["c1"]);
}

#[tokio::test(start_paused = true)]
async fn ids_taken_before_the_tool_restarted_are_shown_apart() {
    let h = Harness::new(Lifecycle::Mount);
    h.create("v").await.unwrap();
    h.driver.mount("v", "c1").await.unwrap();
    assert!(h.process("v").mount_ids_before_last_restart.is_empty());
    h.tool.kill();
    // Restarted after its backoff, on the paused clock.
    for _ in 0..100 {
        if h.tool.script().spawns == 2 && h.process("v").state == ProcState::Mounted {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let process = h.process("v");
    assert_eq!(process.restarts, 1, "{process:?}");
    assert_eq!(process.state, ProcState::Mounted, "{process:?}");
    assert_eq!(process.mount_ids_before_last_restart, ["c1"]);
    h.driver.mount("v", "c2").await.unwrap();
    let status = h.status("v");
    assert_eq!(status.mount_ids, ["c1", "c2"]);
    assert_eq!(
        status.process.unwrap().mount_ids_before_last_restart,
        ["c1"]
    );
    // What Docker shows: the same names, camelCase.
    let shown = serde_json::to_value(h.status("v")).unwrap();
    assert_eq!(
        shown["mountIdsBeforeLastRestart"],
        serde_json::json!(["c1"])
    );
    assert_eq!(shown["state"], "mounted");
}

#[tokio::test(start_paused = true)]
async fn a_scrape_shows_what_status_shows() {
    let h = Harness::new(Lifecycle::Mount);
    h.create("idle").await.unwrap();
    h.create("used").await.unwrap();
    h.driver.mount("used", "c1").await.unwrap();
    let scrape = h.driver.scrape();
    let names: Vec<&str> = scrape.volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["idle", "used"]);
    let (idle, used) = (&scrape.volumes[0], &scrape.volumes[1]);
    assert_eq!(idle.state, ProcState::Stopped);
    assert_eq!((idle.mount_ids, idle.mount_duration), (0, None));
    assert_eq!(used.state, ProcState::Mounted);
    assert_eq!((used.mount_ids, used.restarts), (1, 0));
    assert!(used.mount_duration.is_some() && used.last_restart.is_none());
    assert!(scrape.connections.is_empty(), "sharing is off");

    h.tool.kill();
    for _ in 0..100 {
        if h.tool.script().spawns == 2 && h.process("used").state == ProcState::Mounted {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let used = h.driver.scrape().volumes.remove(1);
    assert_eq!((used.state, used.restarts), (ProcState::Mounted, 1));
    assert!(used.last_restart.is_some());
    // The scripted tool's remount held by no container: nothing put back.
    assert_eq!(used.reattaches, 0);
}
