//! The netfs binary: flags, logging, the reaper, then the library's Docker
//! plugin or CSI server until SIGTERM or SIGINT. Everything else, and
//! everything testable, is in the library.

use std::io::IsTerminal;

use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

// One thread for every task: the protocol is a ping-pong of small requests,
// and with worker threads each one woke a second thread to share work there
// was none of (Get answered in 0.06 ms instead of 0.03, p99 0.14 instead of
// 0.09; see docs/benchmarks.md). Anything that blocks runs on tokio's
// blocking pool: stat probes of mounts and state writes.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    // An empty variable counts as unset (`docker plugin set netfs X=`).
    let cli = netfs::Cli::parse_env();
    if let Some(format) = cli.build_info {
        let info = netfs::build_info::BuildInfo::gather(std::env::var_os("PATH").as_deref()).await;
        print!("{}", info.render(format));
        return Ok(());
    }
    let filter = EnvFilter::try_new(&cli.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    // gRPC's HTTP/2 layers log every frame at debug: not what LOG_LEVEL=debug is for.
    let filter = ["h2=info", "tower=info"]
        .into_iter()
        .filter_map(|d| d.parse().ok())
        .fold(filter, EnvFilter::add_directive);
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        // A log that cannot be written (full disk, closed pipe) must not
        // take requests down: the default reports it with eprintln!, which
        // panics when stderr is what failed.
        .log_internal_errors(false)
        .init();
    let config = cli.into_config()?;
    // Before any tool starts, so that none of their orphans escapes.
    netfs::reaper::start()?;
    // The tools' versions follow once the stored volumes are back.
    netfs::build_info::log_build();
    let mut term = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let served = match config.mode() {
        netfs::config::Mode::Plugin => netfs::run(config, shutdown).await,
        netfs::config::Mode::Csi => netfs::csi::run(config, shutdown).await,
    };
    if let Err(e) = served {
        tracing::error!(error = %e, "netfs cannot start");
        return Err(e.into());
    }
    Ok(())
}
