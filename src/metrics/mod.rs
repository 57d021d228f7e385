//! The optional Prometheus endpoint (`--metrics-address`): `GET /metrics`
//! over HTTP/1 on a loopback TCP address or a unix socket. It reads what
//! the driver shows through a [`Source`] and never changes anything; the
//! format is `render`'s.

mod render;

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

pub use render::{render, ConnectionSample, ProcessSample, Scrape, VolumeSample, CONTENT_TYPE};

use crate::listener::{self, SocketError};

const FLAG: &str = "--metrics-address (METRICS_ADDRESS)";

/// Where metrics are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("{FLAG} must be 127.0.0.1:PORT, [::1]:PORT, localhost:PORT or the absolute path of a unix socket, got {0:?}")]
    Invalid(String),
    #[error("{FLAG} {0} is not a loopback address: the metrics name every volume and ssh server, so netfs serves them on 127.0.0.1 or ::1 unless --metrics-allow-remote (METRICS_ALLOW_REMOTE=true) is set")]
    Remote(SocketAddr),
    #[error("cannot serve metrics on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: io::Error,
    },
    #[error(transparent)]
    Socket(#[from] SocketError),
}

impl Address {
    /// `127.0.0.1:9105`, `[::1]:9105`, `localhost:9105`, `/run/netfs/metrics.sock`
    /// or `unix:///run/netfs/metrics.sock`. A TCP address that is not
    /// loopback is refused unless `allow_remote`.
    pub fn parse(value: &str, allow_remote: bool) -> Result<Self, MetricsError> {
        let invalid = || MetricsError::Invalid(value.to_owned());
        let path = value.strip_prefix("unix://").unwrap_or(value);
        if path.starts_with('/') {
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if value.starts_with("unix:") {
            return Err(invalid());
        }
        let address = match value.strip_prefix("localhost:") {
            Some(port) => {
                let port = port.parse().map_err(|_| invalid())?;
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
            }
            None => value.parse().map_err(|_| invalid())?,
        };
        if !address.ip().is_loopback() && !allow_remote {
            return Err(MetricsError::Remote(address));
        }
        Ok(Self::Tcp(address))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(address) => write!(f, "{address}"),
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

/// What a scrape shows, taken afresh for each request.
pub type Source = Arc<dyn Fn() -> Scrape + Send + Sync>;

/// A bound metrics endpoint.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Where it listens (for TCP port 0: the port it got).
    pub fn address(&self) -> Option<Address> {
        match self {
            Self::Tcp(l) => l.local_addr().ok().map(Address::Tcp),
            Self::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| Address::Unix(p.to_owned()))),
        }
    }
}

/// Binds `address`: a unix socket as the plugin's own (mode 0660, a stale
/// file replaced, a live one an error).
pub async fn bind(address: &Address) -> Result<Listener, MetricsError> {
    Ok(match address {
        Address::Tcp(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| MetricsError::Bind {
                    address: *addr,
                    source,
                })?;
            Listener::Tcp(listener)
        }
        Address::Unix(path) => Listener::Unix(listener::bind_as(path, FLAG).await?.listener),
    })
}

/// Serves scrapes until the task is dropped; a failed accept is logged
/// and serving goes on.
pub async fn serve(listener: Listener, source: Source) {
    loop {
        let accepted = match &listener {
            Listener::Tcp(l) => l.accept().await.map(|(s, _)| spawn_conn(s, source.clone())),
            Listener::Unix(l) => l.accept().await.map(|(s, _)| spawn_conn(s, source.clone())),
        };
        if let Err(e) = accepted {
            tracing::warn!(error = %e, "metrics: accept failed");
            // A full fd table fails every accept at once: give it a moment.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

fn spawn_conn<S>(stream: S, source: Source)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let source = source.clone();
        async move { Ok::<_, Infallible>(answer(&req, &source)) }
    });
    tokio::spawn(async move {
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service);
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "metrics connection ended with an error");
        }
    });
}

fn answer(req: &Request<Incoming>, source: &Source) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let text = render(&source());
            (StatusCode::OK, CONTENT_TYPE, text)
        }
        (&Method::GET | &Method::HEAD, _) => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "netfs serves its metrics at /metrics\n".to_owned(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "use GET /metrics\n".to_owned(),
        ),
    };
    Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// netfs's own memory and file descriptors, read now.
pub fn own_process() -> ProcessSample {
    let pid = std::process::id() as i32;
    ProcessSample {
        resident_bytes: crate::procfs::status_kib(pid, "VmRSS").map(|kib| kib * 1024),
        open_fds: crate::procfs::open_fds().ok(),
        max_fds: crate::procfs::max_open_files(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_and_socket_paths_are_taken() {
        let tcp = |s: &str| Address::Tcp(s.parse().unwrap());
        assert_eq!(
            Address::parse("127.0.0.1:9105", false).unwrap(),
            tcp("127.0.0.1:9105")
        );
        assert_eq!(
            Address::parse("[::1]:9105", false).unwrap(),
            tcp("[::1]:9105")
        );
        assert_eq!(
            Address::parse("localhost:9105", false).unwrap(),
            tcp("127.0.0.1:9105")
        );
        assert_eq!(
            Address::parse("/run/netfs/metrics.sock", false).unwrap(),
            Address::Unix("/run/netfs/metrics.sock".into())
        );
        assert_eq!(
            Address::parse("unix:///run/m.sock", false).unwrap(),
            Address::Unix("/run/m.sock".into())
        );
    }

    #[test]
    fn other_addresses_are_refused_unless_allowed() {
        for remote in ["0.0.0.0:9105", "10.0.0.5:9105", "[::]:9105"] {
            let err = Address::parse(remote, false).unwrap_err();
            assert!(matches!(err, MetricsError::Remote(_)), "{remote}: {err}");
            assert!(err.to_string().contains("METRICS_ALLOW_REMOTE=true"));
            assert!(Address::parse(remote, true).is_ok(), "{remote}");
        }
    }

    #[test]
    fn malformed_addresses_are_refused_with_the_accepted_forms() {
        for bad in [
            "9105",
            "metrics.sock",
            "unix:relative",
            "host.example:9105",
            "localhost:x",
            "",
        ] {
            let err = Address::parse(bad, true).unwrap_err();
            assert!(matches!(err, MetricsError::Invalid(_)), "{bad}: {err}");
            assert!(err.to_string().contains("127.0.0.1:PORT"), "{err}");
        }
    }
}
