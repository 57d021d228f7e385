//! NodeGetVolumeStats's answer: bytes and inodes from `statvfs` on the
//! volume's path while its tool serves the mount, and a VolumeCondition
//! that is abnormal, with the reason, while the tool mounts, restarts or
//! has failed. kubelet shows an abnormal condition as a volume health event.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::statvfs::statvfs;

use super::proto::volume_usage::Unit;
use super::proto::{NodeGetVolumeStatsResponse, VolumeCondition, VolumeUsage};
use crate::supervisor::ProcState;

/// How long a `statvfs` on a mount may take before the mount counts as
/// not answering (a remote that hangs).
const STATVFS_WAIT: Duration = Duration::from_secs(5);

/// The answer for a volume at `path` whose tool is in `state`.
pub async fn answer(
    path: PathBuf,
    state: ProcState,
    last_error: Option<String>,
) -> NodeGetVolumeStatsResponse {
    let why = last_error.map_or_else(String::new, |e| format!(": {e}"));
    let trouble = match state {
        ProcState::Mounted => None,
        ProcState::Mounting => Some(format!("the volume's tool is mounting{why}")),
        ProcState::Restarting => Some(format!(
            "the volume's tool is restarting{why}; files are unavailable until it mounts again"
        )),
        ProcState::Failed => Some(format!(
            "the volume's tool failed and is not restarted{why}; \
             fix the cause, then stage the volume again (restart the pods using it)"
        )),
        ProcState::Stopped => Some("the volume's tool is not running".to_owned()),
    };
    if let Some(message) = trouble {
        return abnormal(message);
    }
    let shown = path.display().to_string();
    let stat = tokio::time::timeout(
        STATVFS_WAIT,
        tokio::task::spawn_blocking(move || statvfs(&path)),
    )
    .await;
    let stat = match stat {
        Ok(Ok(Ok(stat))) => stat,
        Ok(Ok(Err(e))) => return abnormal(format!("the mount at {shown} fails: {e}")),
        Ok(Err(e)) => return abnormal(format!("cannot read the mount at {shown}: {e}")),
        Err(_) => {
            return abnormal(format!(
                "the mount at {shown} does not answer within {}s: the remote may be slow or down",
                STATVFS_WAIT.as_secs()
            ))
        }
    };
    // Counts are u64 (or u32) by platform; CSI's are int64.
    let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    #[allow(clippy::useless_conversion)]
    let (blocks, free, avail, frsize) = (
        u64::from(stat.blocks()),
        u64::from(stat.blocks_free()),
        u64::from(stat.blocks_available()),
        u64::from(stat.fragment_size()),
    );
    #[allow(clippy::useless_conversion)]
    let (files, files_free) = (u64::from(stat.files()), u64::from(stat.files_free()));
    let bytes = VolumeUsage {
        total: int(blocks.saturating_mul(frsize)),
        available: int(avail.saturating_mul(frsize)),
        used: int(blocks.saturating_sub(free).saturating_mul(frsize)),
        unit: Unit::Bytes.into(),
    };
    let inodes = VolumeUsage {
        total: int(files),
        available: int(files_free),
        used: int(files.saturating_sub(files_free)),
        unit: Unit::Inodes.into(),
    };
    NodeGetVolumeStatsResponse {
        usage: vec![bytes, inodes],
        volume_condition: Some(VolumeCondition {
            abnormal: false,
            message: "mounted".to_owned(),
        }),
    }
}

/// An abnormal condition. The usage is there with zeros: kubelet drops a
/// response without usage, and with it the condition.
fn abnormal(message: String) -> NodeGetVolumeStatsResponse {
    let zero = |unit: Unit| VolumeUsage {
        unit: unit.into(),
        ..Default::default()
    };
    NodeGetVolumeStatsResponse {
        usage: vec![zero(Unit::Bytes), zero(Unit::Inodes)],
        volume_condition: Some(VolumeCondition {
            abnormal: true,
            message,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tool_in_trouble_is_abnormal_with_its_reason() {
        let got = answer(
            "/nonexistent".into(),
            ProcState::Restarting,
            Some("sshfs exited with status 1: Connection refused".into()),
        )
        .await;
        let condition = got.volume_condition.unwrap();
        assert!(condition.abnormal);
        assert_eq!(
            condition.message,
            "the volume's tool is restarting: sshfs exited with status 1: Connection refused; \
             files are unavailable until it mounts again"
        );
        assert_eq!(got.usage.len(), 2);
        let failed = answer("/nonexistent".into(), ProcState::Failed, None).await;
        let message = failed.volume_condition.unwrap().message;
        assert!(message.starts_with("the volume's tool failed"), "{message}");
    }

    #[tokio::test]
    async fn a_mounted_volume_reports_bytes_and_inodes() {
        let dir = tempfile::tempdir().unwrap();
        let got = answer(dir.path().into(), ProcState::Mounted, None).await;
        assert!(!got.volume_condition.unwrap().abnormal);
        let units: Vec<Unit> = got.usage.iter().map(VolumeUsage::unit).collect();
        assert_eq!(units, [Unit::Bytes, Unit::Inodes]);
        for usage in &got.usage {
            assert!(usage.total > 0 && usage.used >= 0, "{usage:?}");
            assert!(usage.available <= usage.total, "{usage:?}");
        }
        let gone = answer("/nonexistent/x".into(), ProcState::Mounted, None).await;
        let condition = gone.volume_condition.unwrap();
        assert!(condition.abnormal);
        assert!(
            condition.message.contains("/nonexistent/x"),
            "{condition:?}"
        );
    }
}
