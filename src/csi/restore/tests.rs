//! Which stored stages a restart takes and which it drops, and what the
//! restore does with each: on the node's test harness (a scripted tool, a
//! recorded mount table and a recorded host for re-attach), without root.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::csi::node::tests::Harness;
use crate::reattach::recorded::Recorded as Host;
use crate::state::{TargetRecord, VolumeRecord};

/// The host as a restarted netfs finds it: its own new mount of the
/// volume at `staging` (device 0:78), and, if `held`, a task's container
/// holding the dead one of the earlier run (0:77).
fn host(staging: &Path, held: bool) -> Arc<Host> {
    let host = Arc::new(Host::default());
    host.own(
        1,
        &format!(
            "22 1 0:21 / / rw - ext4 /dev/vda rw\n\
             90 22 0:78 / {} rw,nosuid,nodev - fuse.sshfs u@h:/srv rw\n",
            staging.display()
        ),
    );
    host.process(100, 1, None);
    if held {
        host.table(
            7,
            "500 400 0:30 / / rw - overlay overlay rw\n\
             510 500 0:77 / /data rw,nosuid,nodev - fuse.sshfs u@h:/srv rw\n",
        );
        host.process(200, 7, Some("0123456789ab"));
    }
    host
}

/// The earlier run: a Swarm stage published at its target, its mount
/// device 0:77 (as the host showed it then).
async fn earlier_run(volume: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let staging = dir.path().join("volumes").join(volume);
    let earlier = Arc::new(Host::default());
    earlier.own(
        1,
        &format!(
            "22 1 0:21 / / rw - ext4 /dev/vda rw\n\
             90 22 0:77 / {} rw - fuse.sshfs u@h:/srv rw\n",
            staging.display()
        ),
    );
    let h = Harness::on(dir, Some(earlier));
    assert_eq!(h.swarm_staging(volume), staging);
    let target = h.swarm_target(volume);
    assert_eq!(h.stage(volume, &staging).await, Ok(()));
    assert_eq!(h.publish(volume, &staging, &target, true).await, Ok(()));
    (h.into_dir(), staging, target)
}

/// The stored record of `volume`, as the state file has it.
fn stored(dir: &Path, volume: &str) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("state.json")).expect("a state file");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    doc["volumes"].get(volume).cloned()
}

/// Runs what `csi::run` runs at start, on a harness.
async fn restart(h: &Harness) -> usize {
    let plan = plan(h.stored.clone(), &h.node.staging, &h.node.targets, true);
    let restored = plan.stages.len();
    let restorer = Restorer {
        driver: h.node.driver.clone(),
        stages: h.node.stages.clone(),
        mounts: h.mounts.clone(),
        targets: h.node.targets.clone(),
    };
    let starts = h.node.driver.recover(plan.volumes).await;
    let held = restorer.hold(plan.stages).await;
    h.node.driver.restore(starts).await;
    restorer.finish(held).await;
    restored
}

#[tokio::test(start_paused = true)]
async fn a_stage_and_its_targets_are_stored_with_the_volume() {
    let (dir, staging, target) = earlier_run("vol-1").await;
    let record = stored(dir.path(), "vol-1").expect("the volume is stored");
    let stage = &record["csiStage"];
    assert_eq!(stage["volumeId"], "vol-1");
    assert_eq!(stage["stagingPath"], staging.display().to_string());
    assert_eq!(stage["withLastPublish"], true);
    let key = target.display().to_string();
    assert_eq!(stage["targets"][&key]["readonly"], true);
    assert_eq!(record["devices"], serde_json::json!(["0:77"]));
    assert_eq!(record["options"]["source"], "u@h:/srv");
    assert_eq!(record["mountIds"], serde_json::json!(["csi-stage"]));
}

#[tokio::test(start_paused = true)]
async fn a_restart_mounts_again_reattaches_the_task_and_publishes_again() {
    let (dir, staging, target) = earlier_run("vol-1").await;
    let host = host(&staging, true);
    let h = Harness::on(dir, Some(host.clone()));
    assert_eq!(restart(&h).await, 1);
    // The task's container got the new mount in place of the dead one.
    let attaches = host.attaches();
    assert_eq!(attaches.len(), 1, "{attaches:?}");
    assert_eq!((attaches[0].pid, attaches[0].ns), (200, 7));
    assert_eq!(attaches[0].live, staging);
    assert_eq!(attaches[0].target.mount_point, PathBuf::from("/data"));
    // Published again, read-only as before.
    assert_eq!(h.binds(), vec![(staging.clone(), target.clone(), true)]);
    assert!(target.is_dir());
    // The stages are rebuilt: the same publish is done already, and
    // Swarm's last unpublish takes it all down.
    assert_eq!(h.publish("vol-1", &staging, &target, true).await, Ok(()));
    assert_eq!(h.binds().len(), 1, "no second bind");
    let record = stored(h.dir.path(), "vol-1").expect("still stored");
    assert_eq!(record["devices"], serde_json::json!(["0:78"]));
    assert!(record["csiStage"]["targets"]
        .get(target.display().to_string())
        .is_some());
    assert_eq!(h.unpublish("vol-1", &target).await, Ok(()));
    assert!(stored(h.dir.path(), "vol-1").is_none());
    assert!(!staging.exists() && !target.exists());
}

#[tokio::test(start_paused = true)]
async fn a_swarm_stage_no_task_holds_is_taken_down() {
    let (dir, staging, target) = earlier_run("vol-2").await;
    let host = host(&staging, false);
    let h = Harness::on(dir, Some(host.clone()));
    assert_eq!(restart(&h).await, 1);
    assert!(host.attaches().is_empty());
    assert!(h.binds().is_empty(), "not published again");
    assert!(stored(h.dir.path(), "vol-2").is_none(), "forgotten");
    assert!(h.mounts.mounted().is_empty(), "unmounted");
    assert!(!staging.exists() && !target.exists());
    // Swarm may stage it again afresh.
    assert_eq!(h.stage("vol-2", &staging).await, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_kubelet_stage_is_kept_and_published_again_without_a_holder() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let h = Harness::on(dir, Some(Arc::new(Host::default())));
    let staging = h.kubelet_staging("abc");
    let pod = h.kubelet_target("pod-a");
    assert_eq!(h.stage("pv-1", &staging).await, Ok(()));
    assert_eq!(h.publish("pv-1", &staging, &pod, false).await, Ok(()));
    let dir = h.into_dir();
    let h = Harness::on(dir, Some(host(&staging, false)));
    assert_eq!(restart(&h).await, 1);
    assert_eq!(h.binds(), vec![(staging.clone(), pod.clone(), false)]);
    // kubelet unpublishes, then unstages.
    assert_eq!(h.unpublish("pv-1", &pod).await, Ok(()));
    assert_eq!(h.unstage("pv-1", &staging).await, Ok(()));
    assert!(stored(h.dir.path(), "pv-1").is_none());
}

/// A record of a finished Swarm stage at `staging`, published at `targets`.
fn record(volume: &str, staging: &Path, targets: &[&Path]) -> VolumeRecord {
    let opts = [("source".to_owned(), "u@h:/srv".to_owned())].into();
    let targets: BTreeMap<PathBuf, TargetRecord> = targets
        .iter()
        .map(|t| {
            let how = TargetRecord {
                readonly: false,
                made: vec![t.to_path_buf()],
            };
            (t.to_path_buf(), how)
        })
        .collect();
    VolumeRecord {
        setup: Setup::Valid {
            backend: crate::backend::BackendKind::Sshfs,
            options: crate::options::VolumeOptions::parse(&opts).expect("options"),
        },
        created_at: "2026-12-03T00:00:00Z".into(),
        mount_ids: ["csi-stage".to_owned()].into(),
        devices: vec!["0:77".into()],
        stage: Some(StageRecord {
            volume_id: volume.into(),
            staging_path: staging.to_owned(),
            made: vec![staging.to_owned()],
            with_last_publish: true,
            targets,
        }),
    }
}

#[test]
fn records_that_do_not_hold_up_are_dropped() {
    let h = Harness::new();
    let root = h.dir.path();
    let staged = |v: &str| h.swarm_staging(v);
    let target = |v: &str| h.swarm_target(v);
    let mut volumes = Volumes::new();
    let mut add = |name: &str, record: VolumeRecord| {
        volumes.insert(VolumeName::parse(name).unwrap(), record);
    };
    add("good", record("good", &staged("good"), &[&target("good")]));
    // Outside the roots, or written to climb out of them.
    add("etc", record("etc", Path::new("/etc/x"), &[]));
    add("climb", record("climb", &staged("a/../../x"), &[]));
    add(
        "tgt",
        record("tgt", &staged("tgt"), &[Path::new("/etc/passwd")]),
    );
    // A directory to remove that is not on the way to the staging path.
    let mut off_path = record("off", &staged("off"), &[]);
    if let Some(stage) = off_path.stage.as_mut() {
        stage.made = vec![root.join("volumes")];
    }
    add("off", off_path);
    // Through a symbolic link below the root.
    std::os::unix::fs::symlink("/etc", root.join("volumes/link")).unwrap();
    add("link", record("link", &staged("link/x"), &[]));
    // The same staging path or target as a stage already taken.
    add("twin", record("twin", &staged("good"), &[]));
    add(
        "twin2",
        record("twin2", &staged("twin2"), &[&target("good")]),
    );
    // No stage record, a stage cut short, an empty volume ID.
    let mut plain = record("plain", &staged("plain"), &[]);
    plain.stage = None;
    add("plain", plain);
    let mut cut = record("cut", &staged("cut"), &[]);
    cut.mount_ids.clear();
    add("cut", cut);
    add("noid", record("", &staged("noid"), &[]));

    let plan = plan(volumes.clone(), &h.node.staging, &h.node.targets, true);
    let kept: Vec<&str> = plan.volumes.keys().map(|n| n.as_str()).collect();
    assert_eq!(kept, ["good"]);
    assert_eq!(plan.stages.len(), 1);
    assert_eq!(plan.stages[0].0, staged("good"));

    let off = plan_off(volumes, &h);
    assert!(off.volumes.is_empty() && off.stages.is_empty());
}

/// With re-attach off, nothing is restored.
fn plan_off(volumes: Volumes, h: &Harness) -> Plan {
    plan(volumes, &h.node.staging, &h.node.targets, false)
}

#[test]
fn a_malformed_stage_record_costs_its_stage_not_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let text = r#"{"version": 1, "volumes": {
        "a": {"backend": "sshfs", "options": {"source": "u@h:/x"}, "createdAt": "2026-12-03T00:00:00Z",
              "mountIds": ["csi-stage"], "csiStage": {"volumeId": 7, "stagingPath": ["no"]}},
        "b": {"backend": "sshfs", "options": {"source": "u@h:/x"}, "createdAt": "2026-12-03T00:00:00Z",
              "mountIds": ["csi-stage"], "csiStage": {"volumeId": "b", "stagingPath": "/x", "extra": 1}}
    }}"#;
    std::fs::write(&path, text).unwrap();
    let volumes = crate::state::load(&path).expect("the file is read");
    assert_eq!(volumes.len(), 2);
    assert!(volumes.values().all(|r| r.stage.is_none()));
}
