//! A client for the Docker volume plugin protocol over a unix socket, as
//! dockerd speaks it: `POST /<Endpoint>` with a JSON body. The blocking
//! functions run their own runtime on a thread of their own, so they also
//! work from inside a tokio test.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;
use serde_json::Value;

/// What dockerd sends as `Accept`.
pub const ACCEPT: &str = "application/vnd.docker.plugins.v1.2+json";

/// Longer than dockerd's own 2 minutes for Create and Mount, so the plugin's
/// timeouts, not ours, decide; a hung plugin still fails the test.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(150);

/// A reply as received.
#[derive(Clone, Debug)]
pub struct RawReply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl RawReply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics showing the body if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "reply (status {}) is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }
}

/// Sends one request; `Err` says why no reply came (no socket, refused,
/// reset, timeout). `path` is sent as is, e.g. `/VolumeDriver.Create`.
pub async fn try_request_async(
    socket: &Path,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<RawReply, String> {
    let client: Client<UnixConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(UnixConnector);
    let request = hyper::Request::builder()
        .method(method)
        .uri(hyperlocal::Uri::new(socket, path))
        .header("Accept", ACCEPT)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("cannot build request {method} {path}: {e}"))?;
    let call = async {
        let reply = client
            .request(request)
            .await
            .map_err(|e| format!("{method} {path} on {}: {e:?}", socket.display()))?;
        let status = reply.status().as_u16();
        let content_type = reply
            .headers()
            .get("content-type")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = reply
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the reply to {method} {path}: {e}"))?
            .to_bytes()
            .to_vec();
        Ok(RawReply {
            status,
            content_type,
            body,
        })
    };
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| format!("{method} {path}: no reply within {CALL_TIMEOUT:?}"))?
}

/// Blocking [`try_request_async`].
pub fn try_request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<RawReply, String> {
    let socket: PathBuf = socket.to_path_buf();
    let (method, path) = (method.to_owned(), path.to_owned());
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build a tokio runtime for the client");
            rt.block_on(try_request_async(&socket, &method, &path, body))
        })
        .join()
        .expect("client thread panicked")
    })
}

/// Sends arbitrary method, path and body bytes; panics if no reply comes.
pub fn request(socket: &Path, method: &str, path: &str, body: impl Into<Vec<u8>>) -> RawReply {
    try_request(socket, method, path, body.into()).unwrap_or_else(|e| panic!("{e}"))
}

/// `POST endpoint` with a JSON body: (status, reply JSON).
pub fn post(socket: &Path, endpoint: &str, body: Value) -> (u16, Value) {
    let reply = request(socket, "POST", endpoint, body.to_string());
    (reply.status, reply.json())
}

/// Async [`post`].
pub async fn post_async(socket: &Path, endpoint: &str, body: Value) -> (u16, Value) {
    let reply = try_request_async(socket, "POST", endpoint, body.to_string().into_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (reply.status, reply.json())
}

/// The `Err` string of a reply, `""` when absent.
pub fn err_of(reply: &Value) -> &str {
    reply.get("Err").and_then(Value::as_str).unwrap_or("")
}

/// Writes `bytes` to the socket exactly as given (malformed HTTP welcome)
/// and returns everything read until the server closes or 10 s pass. Ask
/// for `Connection: close` in a well-formed request, or this waits 10 s.
pub fn raw_bytes(socket: &Path, bytes: &[u8]) -> Vec<u8> {
    let mut stream = UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set read timeout");
    // The server may answer and close before taking all of a large body.
    let _ = stream.write_all(bytes);
    let mut reply = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    reply
}
