//! A restart of netfs-csi while a stage is published and held by another
//! mount namespace, as a task's container holds it: the stage comes back
//! from the state file, the holder reads and writes the volume again
//! through the new mount, and Swarm's next calls find the stage as before.
//! A stage nothing holds goes at the restart.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use netfs::csi::proto::*;

use super::{map, mount_capability, InProcess};
use crate::support::mounts::{is_mounted, poll_until, processes_with_arg};
use crate::support::sshd::{Sshd, TEST_PASSWORD};

/// The holder of one test is a private mount namespace, a copy of this
/// process's mounts when it began: the other test's stage, had it one then,
/// would be held there too. The two take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn stage_and_publish(plugin: &InProcess, id: &str, sshd: &Sshd) {
    let mut node = node_client::NodeClient::new(plugin.channel().await);
    node.node_stage_volume(NodeStageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: plugin.staged(id).display().to_string(),
        volume_capability: Some(mount_capability()),
        secrets: map(&[("password", TEST_PASSWORD)]),
        volume_context: map(&[
            ("source", &sshd.password_source("")),
            ("o", &sshd.password_sshfs_options()),
        ]),
        ..Default::default()
    })
    .await
    .expect("stage");
    node.node_publish_volume(NodePublishVolumeRequest {
        volume_id: id.into(),
        staging_target_path: plugin.staged(id).display().to_string(),
        target_path: plugin.published(id).display().to_string(),
        volume_capability: Some(mount_capability()),
        ..Default::default()
    })
    .await
    .expect("publish");
}

/// A process in a mount namespace of its own that binds a published
/// target at a place of its own, as Docker binds it into a container;
/// killed when dropped.
struct Holder(Child);

impl Holder {
    fn start(target: &Path, at: &Path) -> Holder {
        std::fs::create_dir_all(at).expect("the holder's place");
        let script = format!(
            "mount --bind {} {} && exec sleep 600",
            target.display(),
            at.display()
        );
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .spawn()
            .expect("unshare");
        let ns = |pid: String| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
        let pid = child.id().to_string();
        let holder = Holder(child);
        assert!(
            poll_until(Duration::from_secs(10), || ns(pid.clone())
                != ns("self".into())),
            "the holder has a mount namespace of its own"
        );
        holder
    }

    /// Runs `script` inside the holder's mount namespace.
    fn sh(&self, script: &str) -> (bool, String) {
        let out = Command::new("nsenter")
            .args([
                "-t",
                &self.0.id().to_string(),
                "-m",
                "--",
                "sh",
                "-c",
                script,
            ])
            .output()
            .expect("nsenter");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text.trim().to_owned())
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_stage_comes_back_into_its_holder_after_a_restart() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let sshd = Sshd::with_password();
    let mut plugin = InProcess::start();
    let (staged, target) = (plugin.staged("swarmid5"), plugin.published("swarmid5"));
    stage_and_publish(&plugin, "swarmid5", &sshd).await;
    std::fs::write(target.join("before"), "one").expect("write through the target");
    let task = plugin.0.dir().join("task");
    let holder = Holder::start(&target, &task);
    let read = format!("cat {}/before", task.display());
    // The holder binds in the background: its namespace may exist first.
    let bound = poll_until(Duration::from_secs(10), || {
        holder.sh(&read) == (true, "one".to_owned())
    });
    assert!(
        bound,
        "the holder reads through its bind: {:?}",
        holder.sh(&read)
    );

    let restarting = Instant::now();
    plugin.restart();
    let mut last = String::new();
    let back = poll_until(Duration::from_secs(30), || {
        let (ok, text) = holder.sh(&read);
        last = text;
        ok && last == "one"
    });
    assert!(back, "the holder reads its volume again: {last}");
    crate::support::report(
        "csi",
        &format!(
            "restart: a holder of a published stage read it again {:.2} s after the restart began",
            restarting.elapsed().as_secs_f64()
        ),
    );
    let write = format!("echo two > {}/after", task.display());
    let (wrote, text) = holder.sh(&write);
    assert!(wrote, "the holder writes: {text}");
    assert_eq!(
        std::fs::read_to_string(sshd.remote_dir().join("after")).expect("on the remote"),
        "two\n"
    );
    // Mounted and published again here, with one tool.
    assert!(is_mounted(&staged) && is_mounted(&target));
    let staged_arg = staged.display().to_string();
    assert_eq!(processes_with_arg(&staged_arg).len(), 1, "one tool");
    assert!(processes_with_arg(TEST_PASSWORD).is_empty());

    // Swarm's calls find the stage as before: a publish is done already,
    // the last unpublish takes the stage down.
    stage_and_publish(&plugin, "swarmid5", &sshd).await;
    assert_eq!(processes_with_arg(&staged_arg).len(), 1, "still one tool");
    let mut node = node_client::NodeClient::new(plugin.channel().await);
    node.node_unpublish_volume(NodeUnpublishVolumeRequest {
        volume_id: "swarmid5".into(),
        target_path: target.display().to_string(),
    })
    .await
    .expect("unpublish");
    assert!(!is_mounted(&staged) && !is_mounted(&target));
    assert!(processes_with_arg(&staged_arg).is_empty(), "no tool left");
    drop(holder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_nothing_holds_goes_at_the_restart() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let sshd = Sshd::with_password();
    let mut plugin = InProcess::start();
    let (staged, target) = (plugin.staged("swarmid6"), plugin.published("swarmid6"));
    stage_and_publish(&plugin, "swarmid6", &sshd).await;
    plugin.restart();
    let staged_arg = staged.display().to_string();
    let state = plugin.0.dir().join("state.json");
    let gone = poll_until(Duration::from_secs(30), || {
        !staged.exists() && std::fs::read_to_string(&state).is_ok_and(|t| !t.contains("swarmid6"))
    });
    assert!(gone, "the stage is taken down and forgotten");
    assert!(!is_mounted(&target) && !target.exists());
    assert!(processes_with_arg(&staged_arg).is_empty(), "no tool left");
}
