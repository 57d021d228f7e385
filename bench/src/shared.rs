//! Part 7: shared ssh connections (`--share-ssh-connections=true`). Time to
//! ready of a volume whose master is up, against bare sshfs; a restore of
//! many volumes and the logins the server saw; recovery after `kill -9` of
//! a volume's sshfs (master alive) and of a master; the data path with
//! sharing on and off against bare sshfs and raw `ssh ... cat`; several
//! volumes writing at once through one master or separate connections.
//! The data path is measured on the host (no container), every side alike.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::client::Client;
use crate::mounts;
use crate::plugin::{create_mount, Daemon};
use crate::procs;
use crate::ready;
use crate::recovery::volume_pid;
use crate::restore::{self, Restored};
use crate::sshd::{Sshd, HELLO};
use crate::stats::{median, ms};

const WITHIN: Duration = Duration::from_secs(30);
/// Volumes writing at once in the last measurement.
pub const WRITERS: usize = 4;

#[derive(Debug, Clone, Default)]
pub struct SharedResult {
    pub ready_live_ms: f64,
    pub ready_bare_ms: f64,
    pub restore_secs: Option<f64>,
    pub restore_logins: usize,
    pub restore_restarts: u64,
    pub recover_sshfs_ms: f64,
    pub recover_sshfs_logins: usize,
    pub recover_master_ms: f64,
    /// (side, write MiB/s, read MiB/s)
    pub data: Vec<(&'static str, f64, f64)>,
    pub writers_shared: f64,
    pub writers_separate: f64,
}

pub const ON: &str = "netfs, sharing on";
pub const OFF: &str = "netfs, sharing off";
pub const BARE: &str = "bare sshfs";
pub const RAW: &str = "raw ssh … cat";

/// A netfs daemon with sharing on or off.
pub type MakeDaemon<'a> = &'a dyn Fn(&str, bool) -> Result<Daemon>;

pub async fn run(
    sshd: &Sshd,
    dir: &Path,
    daemon: MakeDaemon<'_>,
    restore_volumes: usize,
    data_mib: u64,
) -> Result<SharedResult> {
    let mut res = SharedResult::default();
    {
        let mut d = daemon("shared-ready", true)?;
        d.start().await?;
        let client = d.client().clone();
        let opts = sshd.netfs_options("shared", "")?;
        // The first volume logs the master in; the others find it up.
        let mut names = Vec::new();
        for i in 0..4 {
            let name = format!("anchor{i}");
            create_mount(&client, &name, &opts).await?;
            names.push(name);
        }
        let (mut live, mut bare) = (Vec::new(), Vec::new());
        for round in 0..=5 {
            let b = ready::bare_sshfs(sshd, &dir.join(format!("bare{round}"))).await?;
            let (n, _) = ready::plugin(&mut d, &format!("live{round}"), &opts).await?;
            if round > 0 {
                live.push(n);
                bare.push(b);
            }
        }
        res.ready_live_ms = median(&live);
        res.ready_bare_ms = median(&bare);
        println!(
            "shared: ready with a live master {:.1} ms, bare sshfs {:.1} ms",
            res.ready_live_ms, res.ready_bare_ms
        );
        let logins = sshd.logins();
        let mut samples = Vec::new();
        for name in &names[1..] {
            samples.push(kill_sshfs(&client, &d, name).await?);
        }
        res.recover_sshfs_ms = median(&samples);
        res.recover_sshfs_logins = sshd.logins() - logins;
        res.recover_master_ms = kill_master(&client, &d, &names).await?;
        println!(
            "shared: recovery, kill -9 of sshfs {:.1} ms ({} logins), of the master {:.0} ms",
            res.recover_sshfs_ms, res.recover_sshfs_logins, res.recover_master_ms
        );
        d.terminate(Duration::from_secs(10));
    }
    {
        let mut d = daemon("shared-restore", true)?;
        let mut at_spawn = sshd.logins();
        let opts = sshd.netfs_options("restore", "")?;
        let restored = restore::run_marked(&mut d, restore_volumes, &opts, &mut || {
            at_spawn = sshd.logins();
        })
        .await?;
        res.restore_logins = sshd.logins() - at_spawn;
        res.restore_secs = match restored {
            Restored::All { secs, restarts } => {
                res.restore_restarts = restarts;
                Some(secs)
            }
            Restored::Stuck { mounted, .. } => {
                println!("shared: restore stuck at {mounted} of {restore_volumes}");
                None
            }
        };
        println!(
            "shared: restore of {restore_volumes}: {:?} s, {} logins, {} restarts",
            res.restore_secs, res.restore_logins, res.restore_restarts
        );
    }
    data_path(sshd, dir, daemon, data_mib, &mut res).await?;
    Ok(res)
}

async fn status(client: &Client, name: &str) -> Result<Value> {
    client
        .call("VolumeDriver.Get", &json!({ "Name": name }))
        .await
}

/// `kill -9` of a volume's sshfs, milliseconds until it reads again.
async fn kill_sshfs(client: &Client, d: &Daemon, name: &str) -> Result<f64> {
    let hello = d.mount_root.join(name).join("hello");
    let pid = volume_pid(&status(client, name).await?)?;
    if !mounts::reads(&hello, HELLO, Duration::from_secs(5)).await {
        bail!("{name} does not read before the kill");
    }
    let start = Instant::now();
    kill(Pid::from_raw(pid), Signal::SIGKILL)?;
    while procs::alive(pid) && start.elapsed() < WITHIN {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    until_reads(&[hello], start, d).await?;
    Ok(ms(start.elapsed()))
}

/// `kill -9` of the master of `names`, milliseconds until all of them read.
async fn kill_master(client: &Client, d: &Daemon, names: &[String]) -> Result<f64> {
    let s = status(client, &names[0]).await?;
    let Some(pid) = s["Volume"]["Status"]["connection"]["pid"].as_i64() else {
        bail!("no master pid in {s}");
    };
    let pids = futures_pids(client, names).await?;
    let start = Instant::now();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL)?;
    // Until every volume runs a new sshfs: a read served by the old one
    // before it noticed is not a recovery.
    loop {
        let now = futures_pids(client, names).await.unwrap_or_default();
        if now.len() == pids.len() && now.iter().zip(&pids).all(|(a, b)| a != b) {
            break;
        }
        if start.elapsed() > WITHIN {
            bail!(
                "volumes not restarted after kill -9 of their master\n{}",
                d.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let hellos: Vec<PathBuf> = names
        .iter()
        .map(|n| d.mount_root.join(n).join("hello"))
        .collect();
    until_reads(&hellos, start, d).await?;
    Ok(ms(start.elapsed()))
}

async fn futures_pids(client: &Client, names: &[String]) -> Result<Vec<i32>> {
    let mut pids = Vec::new();
    for n in names {
        pids.push(volume_pid(&status(client, n).await?)?);
    }
    Ok(pids)
}

async fn until_reads(paths: &[PathBuf], start: Instant, d: &Daemon) -> Result<()> {
    for p in paths {
        while !mounts::reads(p, HELLO, Duration::from_secs(2)).await {
            if start.elapsed() > WITHIN {
                bail!(
                    "{} unreadable after {WITHIN:?}\n{}",
                    p.display(),
                    d.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    Ok(())
}

/// Writes `mib` MiB to `path` (fsync'd), then reads them back: MiB/s each.
fn write_read(path: &Path, mib: u64) -> Result<(f64, f64)> {
    let chunk = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let mut f = std::fs::File::create(path).with_context(|| path.display().to_string())?;
    for _ in 0..mib {
        f.write_all(&chunk)?;
    }
    f.sync_all()?;
    drop(f);
    let write = mib as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    if total != mib << 20 {
        bail!("read {total} bytes of {}", mib << 20);
    }
    let read = mib as f64 / start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(path);
    Ok((write, read))
}

/// The physical limit: the same bytes through one ssh session, `cat` on
/// the server; timed from after the login (the server says "go" first).
async fn raw_ssh(sshd: &Sshd, remote: &Path, mib: u64) -> Result<(f64, f64)> {
    let file = remote.join("raw.bin");
    let ssh = |script: String| {
        let mut c = tokio::process::Command::new("ssh");
        c.args(["-p", &sshd.port().to_string(), "-i"])
            .arg(sshd.key())
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
                "root@127.0.0.1",
                &script,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        c
    };
    let mut w = ssh(format!("echo go; exec cat > '{}'", file.display())).spawn()?;
    let mut out = BufReader::new(w.stdout.take().context("stdout")?);
    let mut line = String::new();
    out.read_line(&mut line).await?;
    let chunk = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let mut stdin = w.stdin.take().context("stdin")?;
    for _ in 0..mib {
        stdin.write_all(&chunk).await?;
    }
    drop(stdin);
    w.wait().await?;
    let write = mib as f64 / start.elapsed().as_secs_f64();
    let mut r = ssh(format!("echo go; exec cat '{}'", file.display())).spawn()?;
    drop(r.stdin.take());
    let mut out = BufReader::new(r.stdout.take().context("stdout")?);
    let mut line = String::new();
    out.read_line(&mut line).await?;
    let start = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = out.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    r.wait().await?;
    let read = mib as f64 / start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&file);
    if total != mib << 20 {
        bail!("raw ssh read {total} bytes of {}", mib << 20);
    }
    Ok((write, read))
}

async fn data_path(
    sshd: &Sshd,
    dir: &Path,
    daemon: MakeDaemon<'_>,
    mib: u64,
    res: &mut SharedResult,
) -> Result<()> {
    let opts = sshd.netfs_options("data", "")?;
    let mut on = daemon("shared-data-on", true)?;
    let mut off = daemon("shared-data-off", false)?;
    on.start().await?;
    off.start().await?;
    let (con, coff) = (on.client().clone(), off.client().clone());
    let mut on_points = Vec::new();
    let mut off_points = Vec::new();
    for i in 0..WRITERS {
        on_points.push(create_mount(&con, &format!("w{i}"), &opts).await?);
        off_points.push(create_mount(&coff, &format!("w{i}"), &opts).await?);
    }
    let bare_point = dir.join("data-bare");
    mounts::ensure_dir(&bare_point)?;
    let bare = ready::spawn_sshfs(sshd, "data", &bare_point, "")?;
    let ok = procs::poll_until(WITHIN, Duration::from_millis(5), || {
        mounts::is_mounted(&bare_point)
    });
    if !ok {
        ready::stop_sshfs(bare, &bare_point);
        bail!("bare sshfs did not mount");
    }
    let remote = sshd.remote_dir("data")?;
    let mut samples: Vec<(&'static str, Vec<f64>, Vec<f64>)> = [ON, OFF, BARE, RAW]
        .into_iter()
        .map(|s| (s, Vec::new(), Vec::new()))
        .collect();
    let result: Result<()> = async {
        for round in 0..3 {
            for k in 0..4 {
                let i = (k + round) % 4;
                let side = samples[i].0;
                let (w, r) = match side {
                    ON => blocking(on_points[0].join(format!("f{round}")), mib).await?,
                    OFF => blocking(off_points[0].join(format!("f{round}")), mib).await?,
                    BARE => blocking(bare_point.join(format!("f{round}")), mib).await?,
                    _ => raw_ssh(sshd, &remote, mib).await?,
                };
                samples[i].1.push(w);
                samples[i].2.push(r);
            }
        }
        let each = (mib / WRITERS as u64).max(1);
        let (mut shared, mut separate) = (Vec::new(), Vec::new());
        for round in 0..3 {
            shared.push(writers(&on_points, each, round).await?);
            separate.push(writers(&off_points, each, round).await?);
        }
        res.writers_shared = median(&shared);
        res.writers_separate = median(&separate);
        Ok(())
    }
    .await;
    ready::stop_sshfs(bare, &bare_point);
    on.terminate(Duration::from_secs(10));
    off.terminate(Duration::from_secs(10));
    result?;
    for (side, w, r) in samples {
        println!(
            "shared data path, {side}: write {:.0} read {:.0} MiB/s",
            median(&w),
            median(&r)
        );
        res.data.push((side, median(&w), median(&r)));
    }
    println!(
        "shared: {WRITERS} writers at once, one master {:.0} MiB/s, separate connections {:.0} MiB/s",
        res.writers_shared, res.writers_separate
    );
    Ok(())
}

async fn blocking(path: PathBuf, mib: u64) -> Result<(f64, f64)> {
    tokio::task::spawn_blocking(move || write_read(&path, mib)).await?
}

/// Every point writes `each` MiB at once: total MiB/s over the wall time.
async fn writers(points: &[PathBuf], each: u64, round: usize) -> Result<f64> {
    let start = Instant::now();
    let tasks: Vec<_> = points
        .iter()
        .map(|p| {
            let path = p.join(format!("par{round}"));
            tokio::task::spawn_blocking(move || -> Result<PathBuf> {
                let chunk = vec![0x5au8; 1 << 20];
                let mut f = std::fs::File::create(&path)?;
                for _ in 0..each {
                    f.write_all(&chunk)?;
                }
                f.sync_all()?;
                Ok(path)
            })
        })
        .collect();
    let mut written = Vec::new();
    for t in tasks {
        written.push(t.await??);
    }
    let rate = (each * points.len() as u64) as f64 / start.elapsed().as_secs_f64();
    for path in written {
        let _ = std::fs::remove_file(path);
    }
    Ok(rate)
}
