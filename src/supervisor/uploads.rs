//! Before an rclone volume is stopped on request (Remove, the last Unmount,
//! netfs stopping), what rclone still has to upload is let through. With
//! `vfs-cache-mode` `writes` or `full`, rclone uploads a closed file after
//! `--vfs-write-back` (5 s) and leaves on SIGTERM without waiting: a file
//! written just before `docker volume rm` would stay in the VFS cache. So
//! netfs asks rclone, over the remote control socket it gave it (a unix
//! socket of its own, see `backend::rclone`), to upload queued files now
//! (`vfs/queue-set-expiry`), and waits until `vfs/stats` counts no upload
//! queued or in progress, within [`UPLOAD_WAIT`]. A remote that does not
//! take the upload keeps the file in the VFS cache, as before, and the stop
//! goes on.

use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::UnixStream;
use tokio::time::{sleep, timeout, Instant};

/// How long a stop waits for rclone's uploads at most.
pub const UPLOAD_WAIT: Duration = Duration::from_secs(60);
/// How long one call to rclone's remote control may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the queue is asked while uploads run.
const POLL: Duration = Duration::from_millis(100);

/// How waiting for the uploads ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Settled {
    /// Nothing was left to upload (after `waited`).
    Uploaded { waited: Duration },
    /// Uploads were still queued or running when the wait ran out.
    Pending { queued: u64, in_progress: u64 },
    /// rclone's remote control did not answer: nothing is known.
    Unknown(String),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DiskCache {
    #[serde(default)]
    uploads_in_progress: u64,
    #[serde(default)]
    uploads_queued: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stats {
    /// Absent with `vfs-cache-mode=off`: nothing is ever queued.
    disk_cache: Option<DiskCache>,
}

#[derive(Debug, Deserialize)]
struct Queued {
    id: u64,
}

#[derive(Debug, Deserialize)]
struct Queue {
    #[serde(default)]
    queue: Vec<Queued>,
}

/// Lets rclone's queued uploads through, waiting at most `wait`.
pub async fn settle(socket: &Path, wait: Duration) -> Settled {
    let started = Instant::now();
    let deadline = started + wait;
    let mut hurried = false;
    loop {
        let stats: Stats = match call(socket, "vfs/stats", json!({})).await {
            Ok(stats) => stats,
            Err(e) => return Settled::Unknown(e),
        };
        let Some(cache) = stats.disk_cache else {
            return Settled::Uploaded {
                waited: started.elapsed(),
            };
        };
        if cache.uploads_queued == 0 && cache.uploads_in_progress == 0 {
            return Settled::Uploaded {
                waited: started.elapsed(),
            };
        }
        if Instant::now() >= deadline {
            return Settled::Pending {
                queued: cache.uploads_queued,
                in_progress: cache.uploads_in_progress,
            };
        }
        if !hurried && cache.uploads_queued > 0 {
            // Files waiting out --vfs-write-back are uploaded now (an
            // expiry far in the past, as rclone's docs say); without
            // vfs/queue they still go up in their time.
            hurried = true;
            if let Ok(queue) = call::<Queue>(socket, "vfs/queue", json!({})).await {
                for item in queue.queue {
                    let now = json!({ "id": item.id, "expiry": -1e9 });
                    let _ = call::<Value>(socket, "vfs/queue-set-expiry", now).await;
                }
            }
        }
        sleep(POLL).await;
    }
}

/// One call to rclone's remote control on its unix socket.
async fn call<T: serde::de::DeserializeOwned>(
    socket: &Path,
    method: &str,
    params: Value,
) -> Result<T, String> {
    let answer = timeout(CALL_TIMEOUT, post(socket, method, params))
        .await
        .map_err(|_| format!("{method} did not answer within {CALL_TIMEOUT:?}"))??;
    serde_json::from_slice(&answer).map_err(|e| format!("{method}: {e}"))
}

async fn post(socket: &Path, method: &str, params: Value) -> Result<Bytes, String> {
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        format!(
            "cannot reach rclone's remote control at {}: {e}",
            socket.display()
        )
    })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{method}: {e}"))?;
    let connection = tokio::spawn(connection);
    let request = Request::post(format!("/{method}"))
        .header("host", "rclone")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(params.to_string())))
        .map_err(|e| format!("{method}: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{method}: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{method}: {e}"))?
        .to_bytes();
    connection.abort();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        return Err(format!("{method}: {status}: {}", text.trim()));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rclones_stats() {
        let with: Stats = serde_json::from_str(
            r#"{"diskCache":{"bytesUsed":5,"erroredFiles":0,"files":1,"hashType":1,
                "outOfSpace":false,"path":"/c/vfs/x","pathMeta":"/c/vfsMeta/x",
                "uploadsInProgress":1,"uploadsQueued":2},
                "fs":"x:","inUse":1,"metadataCache":{"dirs":1,"files":1},"opt":{}}"#,
        )
        .unwrap();
        let cache = with.disk_cache.unwrap();
        assert_eq!((cache.uploads_queued, cache.uploads_in_progress), (2, 1));
        let without: Stats = serde_json::from_str(r#"{"fs":"x:","inUse":1}"#).unwrap();
        assert!(without.disk_cache.is_none(), "vfs-cache-mode=off");
        let queue: Queue =
            serde_json::from_str(r#"{"queue":[{"id":3,"name":"f","expiry":4.5,"tries":0}]}"#)
                .unwrap();
        assert_eq!(queue.queue.len(), 1);
        assert_eq!(queue.queue[0].id, 3);
    }

    #[tokio::test]
    async fn no_remote_control_is_said_so_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let settled = settle(&dir.path().join("none.sock"), UPLOAD_WAIT).await;
        let Settled::Unknown(why) = settled else {
            panic!("{settled:?}");
        };
        assert!(
            why.contains("cannot reach rclone's remote control"),
            "{why}"
        );
    }
}
