//! Stage, publish, unpublish and unstage with a real sshfs and a password
//! from the secrets; every call twice; a stage cut short by the caller's
//! deadline converges on the retry with one tool, or is undone by an
//! unstage that waits for it.

use std::time::Duration;

use netfs::csi::proto::*;
use tonic::Code;

use super::{map, mount_capability, InProcess};
use crate::support::mounts::{is_mounted, processes_with_arg};
use crate::support::sshd::{Sshd, TEST_PASSWORD};

fn stage_request(plugin: &InProcess, id: &str, sshd: &Sshd) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: "shared".into(),
        publish_context: Default::default(),
        staging_target_path: plugin.staged(id).display().to_string(),
        volume_capability: Some(mount_capability()),
        secrets: map(&[("password", TEST_PASSWORD)]),
        volume_context: map(&[
            ("source", &sshd.password_source("")),
            ("o", &sshd.password_sshfs_options()),
        ]),
    }
}

fn publish_request(plugin: &InProcess, id: &str, target: &str) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: "shared".into(),
        publish_context: Default::default(),
        staging_target_path: plugin.staged(id).display().to_string(),
        target_path: plugin.published(target).display().to_string(),
        volume_capability: Some(mount_capability()),
        readonly: false,
        secrets: map(&[("password", TEST_PASSWORD)]),
        volume_context: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_publish_and_back_with_a_password_from_the_secrets() {
    let sshd = Sshd::with_password();
    let plugin = InProcess::start();
    let mut node = node_client::NodeClient::new(plugin.channel().await);
    let staged = plugin.staged("swarmid1");

    for _ in 0..2 {
        node.node_stage_volume(stage_request(&plugin, "swarmid1", &sshd))
            .await
            .expect("NodeStageVolume, also when already staged");
    }
    assert!(is_mounted(&staged), "the tool mounts at the staging path");
    let staged_arg = staged.display().to_string();
    assert_eq!(processes_with_arg(&staged_arg).len(), 1, "one tool");
    assert!(
        processes_with_arg(TEST_PASSWORD).is_empty(),
        "the password is in no process's argv"
    );

    let target = plugin.published("task1");
    for _ in 0..2 {
        node.node_publish_volume(publish_request(&plugin, "swarmid1", "task1"))
            .await
            .expect("NodePublishVolume, also when already published");
    }
    assert!(is_mounted(&target), "a bind mount at the target");
    std::fs::write(target.join("from-task1"), "hello").expect("write through the target");
    assert_eq!(
        std::fs::read_to_string(sshd.remote_dir().join("from-task1")).expect("on the remote"),
        "hello"
    );
    let readonly = plugin.published("task2");
    node.node_publish_volume(NodePublishVolumeRequest {
        readonly: true,
        ..publish_request(&plugin, "swarmid1", "task2")
    })
    .await
    .expect("a read-only publish");
    assert_eq!(
        std::fs::read_to_string(readonly.join("from-task1")).expect("read"),
        "hello"
    );
    let err = std::fs::write(readonly.join("x"), "no").expect_err("read-only");
    assert_eq!(err.raw_os_error(), Some(nix::libc::EROFS));

    let published = node
        .node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: "shared".into(),
            staging_target_path: staged_arg.clone(),
        })
        .await
        .expect_err("unstaging a volume still published");
    assert_eq!(published.code(), Code::FailedPrecondition, "{published:?}");
    assert!(
        published.message().contains("unpublish it first"),
        "{published:?}"
    );
    assert!(is_mounted(&target), "a refused unstage changes nothing");

    for (target, last) in [("task1", false), ("task2", true)] {
        for _ in 0..2 {
            node.node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: "shared".into(),
                target_path: plugin.published(target).display().to_string(),
            })
            .await
            .expect("NodeUnpublishVolume, also when already unpublished");
        }
        assert!(!plugin.published(target).exists(), "the target is removed");
        // Swarm sends no NodeUnstageVolume for what its agent staged: the
        // last unpublish takes the stage down.
        assert_eq!(
            is_mounted(&staged),
            !last,
            "staged while published, after {target}"
        );
        assert_eq!(processes_with_arg(&staged_arg).len(), usize::from(!last));
    }
    for _ in 0..2 {
        node.node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: "shared".into(),
            staging_target_path: staged_arg.clone(),
        })
        .await
        .expect("NodeUnstageVolume, also when already unstaged");
    }
    assert!(!is_mounted(&staged));
    assert!(!staged.exists(), "the staging directory is removed");
    assert!(processes_with_arg(&staged_arg).is_empty(), "no tool left");
    assert_eq!(
        std::fs::read_to_string(sshd.remote_dir().join("from-task1")).expect("kept"),
        "hello"
    );
}

/// Swarm gives up on a node call after about 15 s and calls again. The
/// first stage here is cut off by its deadline while sshfs starts; the
/// mount still completes, and the retry finds it (or waits for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_past_the_deadline_converges_on_the_retry_with_one_tool() {
    let sshd = Sshd::with_password();
    let plugin = InProcess::start();
    let mut node = node_client::NodeClient::new(plugin.channel().await);
    let staged = plugin.staged("swarmid2");

    let mut hurried = tonic::Request::new(stage_request(&plugin, "swarmid2", &sshd));
    hurried.set_timeout(Duration::from_millis(20));
    let cut = node
        .node_stage_volume(hurried)
        .await
        .expect_err("past the deadline");
    assert!(
        matches!(cut.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{cut:?}"
    );
    // Concurrent retries, as after several deadlines in a row.
    let mut second = node.clone();
    let a = stage_request(&plugin, "swarmid2", &sshd);
    let b = a.clone();
    let (ra, rb) = tokio::join!(node.node_stage_volume(a), second.node_stage_volume(b));
    ra.expect("retry");
    rb.expect("concurrent retry");
    assert!(is_mounted(&staged));
    assert_eq!(
        processes_with_arg(&staged.display().to_string()).len(),
        1,
        "one tool for the volume"
    );
    node.node_unstage_volume(NodeUnstageVolumeRequest {
        volume_id: "shared".into(),
        staging_target_path: staged.display().to_string(),
    })
    .await
    .expect("unstage");
    assert!(!staged.exists());
}

/// Swarm may give up on a stage and release the volume while netfs still
/// mounts it: the unstage waits for the stage, then undoes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unstage_during_a_stage_waits_and_undoes_it() {
    let sshd = Sshd::with_password();
    let plugin = InProcess::start();
    let mut node = node_client::NodeClient::new(plugin.channel().await);
    let staged = plugin.staged("swarmid4");
    let staged_arg = staged.display().to_string();

    let mut hurried = tonic::Request::new(stage_request(&plugin, "swarmid4", &sshd));
    hurried.set_timeout(Duration::from_millis(20));
    node.node_stage_volume(hurried)
        .await
        .expect_err("past the deadline");
    // The client gave up before the server may even have read the stage:
    // the unstage goes once the stage is under way (its directory made).
    crate::support::wait_until(Duration::from_secs(10), "the stage began", || {
        staged.exists()
    });
    node.node_unstage_volume(NodeUnstageVolumeRequest {
        volume_id: "shared".into(),
        staging_target_path: staged_arg.clone(),
    })
    .await
    .expect("the unstage waits for the stage, then undoes it");
    assert!(!is_mounted(&staged), "nothing mounted once unstaged");
    assert!(!staged.exists(), "the staging directory is removed");
    assert!(processes_with_arg(&staged_arg).is_empty(), "no tool left");
}

/// A plugin that stops takes its mounts down; the next start brings back
/// nothing: Swarm stages again what it still wants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_leaves_nothing_staged_or_published() {
    let sshd = Sshd::with_password();
    let plugin = InProcess::start();
    let staged = plugin.staged("swarmid3");
    let target = plugin.published("task3");
    {
        let mut node = node_client::NodeClient::new(plugin.channel().await);
        node.node_stage_volume(stage_request(&plugin, "swarmid3", &sshd))
            .await
            .expect("stage");
        node.node_publish_volume(publish_request(&plugin, "swarmid3", "task3"))
            .await
            .expect("publish");
    }
    let dir = plugin.0.dir().to_path_buf();
    drop(plugin);
    assert!(!is_mounted(&staged) && !is_mounted(&target));
    assert!(processes_with_arg(&staged.display().to_string()).is_empty());
    assert!(!target.exists());
    // `drop` removed the temporary directory: nothing below it is mounted.
    assert!(crate::support::mounts::mounts_under(&dir).is_empty());
}
