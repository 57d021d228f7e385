//! The plugin's HTTP side: a unix socket, hyper's HTTP/1, and a router that
//! only decodes the request, calls the driver and encodes the answer.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::{UnixListener, UnixStream};

use crate::driver::{Driver, DriverError, VolumeInfo};
use crate::protocol::*;

pub const MAX_BODY: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another process is already serving on {path}; stop it or choose another {flag}")]
    InUse { path: PathBuf, flag: &'static str },
    #[error("{path} exists and is not a socket; netfs does not replace it: remove it or choose another {flag}")]
    NotASocket { path: PathBuf, flag: &'static str },
    #[error("cannot listen on {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
}

/// Binds the plugin's socket (see [`bind_as`]).
pub async fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    bind_as(path, "--socket").await
}

/// Binds a unix socket with mode 0660, replacing a stale socket file but
/// never one that a live process still answers on, nor anything but a
/// socket. `flag` is the setting that named it, for the error.
pub async fn bind_as(path: &Path, flag: &'static str) -> Result<UnixListener, SocketError> {
    let err = |source| SocketError::Bind {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        let path = path.to_owned();
        if !meta.file_type().is_socket() {
            return Err(SocketError::NotASocket { path, flag });
        }
        if UnixStream::connect(&path).await.is_ok() {
            return Err(SocketError::InUse { path, flag });
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(err)?;
    Ok(listener)
}

/// Serves connections until `shutdown` completes, then lets requests in
/// flight finish.
pub async fn serve(
    listener: UnixListener,
    driver: Arc<Driver>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let driver = driver.clone();
                let service = hyper::service::service_fn(move |req| {
                    let driver = driver.clone();
                    async move { Ok::<_, Infallible>(route(req, &driver).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), graceful.shutdown()).await;
}

/// The protocol's shape of a volume the driver shows.
fn volume(v: VolumeInfo) -> Volume {
    Volume {
        name: v.name,
        mountpoint: v.mount_point.to_string_lossy().into_owned(),
        created_at: v.created_at,
        status: v.status,
    }
}

fn mountpoint(path: PathBuf) -> MountpointResponse {
    MountpointResponse {
        mountpoint: path.to_string_lossy().into_owned(),
    }
}

fn reply(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    let bytes =
        serde_json::to_vec(body).unwrap_or_else(|_| b"{\"Err\":\"cannot encode reply\"}".to_vec());
    Response::builder()
        .status(status)
        .header("Content-Type", CONTENT_TYPE)
        .body(Full::new(Bytes::from(bytes)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Full<Bytes>> {
    reply(
        status,
        &ErrorResponse {
            err: message.into(),
        },
    )
}

/// The one place a driver error becomes Docker's `{"Err": ...}`.
fn driver_error(endpoint: &str, e: &DriverError) -> Response<Full<Bytes>> {
    tracing::warn!(endpoint, error = %e, "request failed");
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn ok<T: Serialize>(endpoint: &str, result: Result<T, DriverError>) -> Response<Full<Bytes>> {
    match result {
        Ok(body) => reply(StatusCode::OK, &body),
        Err(e) => driver_error(endpoint, &e),
    }
}

#[derive(Serialize)]
struct Empty {}

type Reply = Response<Full<Bytes>>;

fn decode<T: DeserializeOwned>(endpoint: &str, body: &Bytes) -> Result<T, Box<Reply>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!(
                "{endpoint}: empty request body; send a JSON object such as {{\"Name\": \"...\"}}"
            ),
        )));
    }
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("{endpoint}: malformed request body: {e}"),
        ))
    })
}

fn too_large(path: &str) -> Reply {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("{path}: request body exceeds {MAX_BODY} bytes"),
    )
}

async fn route(req: Request<Incoming>, driver: &Driver) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if req.method() != Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, format!("{path}: use POST"));
    }
    // A declared length over the limit is refused before reading any of it.
    if req.body().size_hint().lower() > MAX_BODY as u64 {
        return too_large(&path);
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(&path),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{path}: cannot read request body: {e}"),
            )
        }
    };
    let endpoint = path.strip_prefix('/').unwrap_or(&path);
    tracing::debug!(endpoint, "request");
    match dispatch(endpoint, &body, driver).await {
        Ok(response) => response,
        Err(response) => *response,
    }
}

async fn dispatch(endpoint: &str, body: &Bytes, driver: &Driver) -> Result<Reply, Box<Reply>> {
    Ok(match endpoint {
        "Plugin.Activate" => reply(
            StatusCode::OK,
            &ActivateResponse {
                implements: vec!["VolumeDriver"],
            },
        ),
        "VolumeDriver.Capabilities" => reply(
            StatusCode::OK,
            &CapabilitiesResponse {
                capabilities: Capabilities { scope: "local" },
            },
        ),
        "VolumeDriver.Create" => {
            let r: CreateRequest = decode(endpoint, body)?;
            ok(endpoint, driver.create(&r.name, r.opts.unwrap_or_default()).await.map(|()| Empty {}))
        }
        "VolumeDriver.Remove" => {
            let r: NameRequest = decode(endpoint, body)?;
            ok(endpoint, driver.remove(&r.name).await.map(|()| Empty {}))
        }
        "VolumeDriver.Mount" => {
            let r: MountRequest = decode(endpoint, body)?;
            ok(endpoint, driver.mount(&r.name, &r.id).await.map(mountpoint))
        }
        "VolumeDriver.Unmount" => {
            let r: MountRequest = decode(endpoint, body)?;
            ok(endpoint, driver.unmount(&r.name, &r.id).await.map(|()| Empty {}))
        }
        "VolumeDriver.Path" => {
            let r: NameRequest = decode(endpoint, body)?;
            ok(endpoint, driver.path(&r.name).map(mountpoint))
        }
        "VolumeDriver.Get" => {
            let r: NameRequest = decode(endpoint, body)?;
            ok(endpoint, driver.get(&r.name).map(|v| GetResponse { volume: volume(v) }))
        }
        "VolumeDriver.List" => reply(StatusCode::OK, &ListResponse { volumes: driver.list().into_iter().map(volume).collect() }),
        _ => error(StatusCode::NOT_FOUND, format!("unknown endpoint /{endpoint}; this plugin implements Plugin.Activate and VolumeDriver.*")),
    })
}
