//! One Docker volume plugin client for every plugin measured: `POST
//! /<Endpoint>` with a JSON body over a unix socket, keep-alive, the headers
//! dockerd sends. Both plugins see exactly the same bytes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as Pool;
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;
use serde_json::Value;

/// What dockerd sends as `Accept`.
const ACCEPT: &str = "application/vnd.docker.plugins.v1.2+json";
/// dockerd's own limit for Create and Mount.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone)]
pub struct Client {
    pool: Pool<UnixConnector, Full<Bytes>>,
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: &Path) -> Client {
        Client {
            pool: Pool::builder(TokioExecutor::new()).build(UnixConnector),
            socket: socket.to_owned(),
        }
    }

    /// Sends one call; a non-200 reply is an error carrying the plugin's `Err`.
    pub async fn call(&self, endpoint: &str, body: &Value) -> Result<Value> {
        let request = hyper::Request::builder()
            .method("POST")
            .uri(hyperlocal::Uri::new(&self.socket, &format!("/{endpoint}")))
            .header("Accept", ACCEPT)
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))?;
        let call = async {
            let reply = self.pool.request(request).await?;
            let status = reply.status();
            let bytes = reply.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .with_context(|| format!("{endpoint}: no reply within {CALL_TIMEOUT:?}"))?
            .with_context(|| format!("{endpoint} on {}", self.socket.display()))?;
        let reply: Value = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{endpoint}: reply is not JSON: {:?}",
                String::from_utf8_lossy(&bytes)
            )
        })?;
        if !status.is_success() {
            let err = reply.get("Err").and_then(Value::as_str).unwrap_or("");
            bail!("{endpoint}: {status}: {err}");
        }
        Ok(reply)
    }

    /// [`Client::call`] and how long it took, reply body read included.
    pub async fn timed(&self, endpoint: &str, body: &Value) -> Result<(Duration, Value)> {
        let start = Instant::now();
        let reply = self.call(endpoint, body).await?;
        Ok((start.elapsed(), reply))
    }

    /// Waits until the plugin answers `Plugin.Activate`.
    pub async fn wait_activate(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            match self.call("Plugin.Activate", &serde_json::json!({})).await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(e.context(format!("plugin not answering after {within:?}")))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }
}
