//! netfs-bench: netfs against the plugin users would pick instead (`rclone
//! serve docker`) and against the tool it wraps (bare `sshfs`), on the same
//! work in the same run, over one loopback sshd (and parts 6 and 7 over a
//! second one with Debian's stock `sshd_config`). Prints a table and, with
//! `--out`, writes it into the results section of docs/benchmarks.md.

mod chart;
mod client;
mod control;
mod data;
mod machine;
mod mounts;
mod plugin;
mod procs;
mod ready;
mod reattach;
mod recovery;
mod report;
mod restore;
mod shared;
mod sshd;
mod stats;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::control::Contender;
use crate::data::Side;
use crate::plugin::Daemon;
use crate::report::{Figure, Goal, Report, Unit};
use crate::restore::Restored;
use crate::sshd::{Flavour, Sshd};

const USAGE: &str = "usage: netfs-bench [--netfs PATH] [--runs N] [--peer-runs N] \
[--volumes N] [--rclone-volumes N] [--restore-volumes N] [--data-mib N] [--data-detail] \
[--parts 1,2,3,4,5,6,7,8] [--work DIR] [--out FILE] [--charts DIR] [--server-cpus 1,...]";

const BEGIN: &str =
    "<!-- results:begin (written by `make bench`; edits inside are overwritten) -->";
const END: &str = "<!-- results:end -->";

struct Args {
    netfs: PathBuf,
    runs: usize,
    peer_runs: usize,
    volumes: usize,
    rclone_volumes: usize,
    restore_volumes: usize,
    data_mib: u64,
    data_detail: bool,
    parts: BTreeSet<u8>,
    work: PathBuf,
    out: Option<PathBuf>,
    /// Where part 7 writes its SVG charts.
    charts: Option<PathBuf>,
    /// CPUs for the sshd servers alone; the benchmark, netfs, the tools
    /// and the peers get the others, as if the server were another machine.
    server_cpus: Vec<usize>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        netfs: "target/release/netfs".into(),
        runs: 3,
        peer_runs: 1,
        volumes: 1000,
        rclone_volumes: 0,
        restore_volumes: 100,
        data_mib: 256,
        data_detail: false,
        parts: (1..=8).collect(),
        work: std::env::temp_dir().join(format!("netfs-bench.{}", std::process::id())),
        out: None,
        charts: None,
        server_cpus: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--netfs" => a.netfs = value()?.into(),
            "--runs" => a.runs = value()?.parse()?,
            "--peer-runs" => a.peer_runs = value()?.parse()?,
            "--volumes" => a.volumes = value()?.parse()?,
            "--rclone-volumes" => a.rclone_volumes = value()?.parse()?,
            "--restore-volumes" => a.restore_volumes = value()?.parse()?,
            "--data-mib" => a.data_mib = value()?.parse()?,
            "--data-detail" => a.data_detail = true,
            "--parts" => {
                a.parts = value()?
                    .split(',')
                    .map(|p| p.trim().parse::<u8>())
                    .collect::<Result<_, _>>()?
            }
            "--work" => a.work = value()?.into(),
            "--out" => a.out = Some(value()?.into()),
            "--charts" => a.charts = Some(value()?.into()),
            "--server-cpus" => {
                a.server_cpus = value()?
                    .split(',')
                    .map(|c| c.trim().parse::<usize>())
                    .collect::<Result<_, _>>()?
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    if a.rclone_volumes == 0 {
        a.rclone_volumes = a.volumes;
    }
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    a.netfs = std::fs::canonicalize(&a.netfs)
        .with_context(|| format!("no netfs binary at {}; run make build", a.netfs.display()))?;
    Ok(a)
}

// One thread: a request and its reply never hop between threads in the
// client, whose own latency is part of every figure of part 1.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = parse_args()?;
    std::fs::create_dir_all(&args.work)?;
    let started = Instant::now();
    let load_before = machine::loadavg();
    let sampler = machine::LoadSampler::start();
    // On a signal the run is dropped, and with it every daemon, mount and
    // process it started.
    let outcome = tokio::select! {
        outcome = run_all(&args) => outcome,
        _ = interrupted() => Err(anyhow::anyhow!("interrupted")),
    };
    let others = sampler.finish();
    let load_after = machine::loadavg();
    let (report, notes) = match outcome {
        Ok(done) => done,
        Err(e) => {
            clean_up(&args.work);
            return Err(e);
        }
    };

    let table = report.table(args.runs > 1);
    println!("\n{table}");
    let misses = report.misses();
    if misses.is_empty() {
        println!("every target met");
    } else {
        println!("targets missed: {}", misses.join("; "));
    }
    if let Some(out) = &args.out {
        let section = results_section(
            &args,
            &table,
            &notes,
            &others,
            &load_before,
            &load_after,
            started,
        );
        write_doc(out, &section)?;
        println!("wrote {}", out.display());
    }
    clean_up(&args.work);
    Ok(())
}

async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Removes the work directory, unless something is still mounted in it.
fn clean_up(work: &Path) {
    mounts::unmount_all_under(work);
    if mounts::mounted_under(work).is_empty() {
        let _ = std::fs::remove_dir_all(work);
    }
}

/// Binds the servers to `server` and this process (whatever it starts
/// next: netfs, the tools, the peers) to the other CPUs.
fn split_cpus<'a>(
    server: &[usize],
    sshds: impl IntoIterator<Item = Option<&'a Sshd>>,
) -> Result<()> {
    let all = std::thread::available_parallelism()?.get();
    let client: Vec<usize> = (0..all).filter(|c| !server.contains(c)).collect();
    if client.is_empty() || server.iter().any(|&c| c >= all) {
        bail!("--server-cpus {server:?} must leave some of CPUs 0..{all} to the client");
    }
    for sshd in sshds.into_iter().flatten() {
        sshd.pin(server)?;
    }
    procs::pin_threads(std::process::id() as i32, &client)?;
    println!("servers on CPUs {server:?}, netfs and its clients on CPUs {client:?}");
    Ok(())
}

/// Everything worth saying under the table: how the figures were taken.
#[derive(Default)]
struct Notes {
    netfs_command: String,
    data_skipped: Option<String>,
    /// Part 7's figures of the last run, for the charts.
    shared: Option<shared::SharedResult>,
}

async fn run_all(args: &Args) -> Result<(Report, Notes)> {
    let sshd = Sshd::start(&args.work.join("sshd"), Flavour::OpenSsh)?;
    println!(
        "sshd on 127.0.0.1:{}; work dir {}",
        sshd.port(),
        args.work.display()
    );
    // Parts 6 and 7 run against the sshd_config a distribution ships too.
    let debian = if args.parts.contains(&6) || args.parts.contains(&7) {
        let d = Sshd::start(&args.work.join("sshd-debian"), Flavour::Debian)?;
        println!(
            "sshd with {} on 127.0.0.1:{}",
            Flavour::Debian.describe(),
            d.port()
        );
        Some(d)
    } else {
        None
    };
    if !args.server_cpus.is_empty() {
        split_cpus(&args.server_cpus, [Some(&sshd), debian.as_ref()])?;
    }
    let mut report = Report::default();
    let mut notes = Notes::default();
    if args.parts.contains(&4) {
        notes.data_skipped = data::unavailable();
        if let Some(why) = &notes.data_skipped {
            println!("part 4 skipped: {why}");
        }
    }
    // rclone keeps its thousand volumes from run to run: creating them takes
    // minutes. Its Create, Remove and memory come from the first and last
    // runs, its Get, Path and List from every run.
    let mut control_rclone =
        if args.peer_runs > 0 && (args.parts.contains(&1) || args.parts.contains(&2)) {
            let d = args.work.join("control-rclone");
            Some(Daemon::rclone(&d, &d.join("rclone.sock"))?)
        } else {
            None
        };
    for run in 0..args.runs {
        let peer = run < args.peer_runs;
        let dir = args.work.join(format!("run{run}"));
        println!("== run {} of {}", run + 1, args.runs);
        let mut this = Report::default();
        let round = Round {
            dir,
            index: run,
            peer,
        };
        one_run(
            args,
            &sshd,
            debian.as_ref(),
            &round,
            control_rclone.as_mut(),
            &mut [&mut report, &mut this],
            &mut notes,
        )
        .await?;
        println!("{}", this.table(false));
    }
    if let (Some(dir), Some(last)) = (&args.charts, &notes.shared) {
        write_charts(dir, last)?;
        println!("wrote the charts of part 7 into {}", dir.display());
    }
    Ok((report, notes))
}

/// The charts of part 7, from the last run's figures.
fn write_charts(dir: &Path, r: &shared::SharedResult) -> Result<()> {
    use chart::Bar;
    let bar = |label: &str, value: f64, netfs: bool| Bar {
        label: label.to_owned(),
        value,
        netfs,
    };
    chart::write(
        &dir.join("bench-shared-ready.svg"),
        "Time to ready and recovery, shared ssh connections (lower is better)",
        "ms",
        &[
            bar("Create → read, master up", r.ready_live_ms, true),
            bar("bare sshfs, spawn → read", r.ready_bare_ms, false),
            bar("kill -9 sshfs → reads again", r.recover_sshfs_ms, true),
            bar(
                "kill -9 master → all its volumes read",
                r.recover_master_ms,
                true,
            ),
        ],
    )?;
    let mut data = Vec::new();
    for (side, w, _) in &r.data {
        data.push(bar(
            &format!("write: {side}"),
            *w,
            side.starts_with("netfs"),
        ));
    }
    for (side, _, rd) in &r.data {
        data.push(bar(
            &format!("read: {side}"),
            *rd,
            side.starts_with("netfs"),
        ));
    }
    data.push(bar(
        &format!("{} writers at once: one master", shared::WRITERS),
        r.writers_shared,
        true,
    ));
    data.push(bar(
        &format!("{} writers at once: separate logins", shared::WRITERS),
        r.writers_separate,
        true,
    ));
    chart::write(
        &dir.join("bench-shared-data.svg"),
        "Data path on the host, shared ssh connections (higher is better)",
        "MiB/s",
        &data,
    )
}

/// Adds a figure to the overall report and to this run's.
fn add(reports: &mut [&mut Report], f: impl Fn() -> Figure<'static>) {
    for r in reports.iter_mut() {
        r.add(f());
    }
}

/// Which run this is.
struct Round {
    dir: PathBuf,
    index: usize,
    /// Measures rclone's slow parts too.
    peer: bool,
}

async fn one_run(
    args: &Args,
    sshd: &Sshd,
    debian: Option<&Sshd>,
    round: &Round,
    control_rclone: Option<&mut Daemon>,
    reports: &mut [&mut Report],
    notes: &mut Notes,
) -> Result<()> {
    let (dir, run, peer) = (round.dir.as_path(), round.index, round.peer);
    let netfs = |part: &str, lifecycle: &str| {
        let d = dir.join(part);
        Daemon::netfs(
            &args.netfs,
            &d,
            &d.join("netfs.sock"),
            lifecycle,
            &args.work.join("sshd"),
        )
    };
    let rclone = |part: &str| {
        let d = dir.join(part);
        Daemon::rclone(&d, &d.join("rclone.sock"))
    };

    if args.parts.contains(&1) || args.parts.contains(&2) {
        let t = Instant::now();
        let mut n_daemon = netfs("control-netfs", "mount")?;
        let mut contenders = vec![Contender {
            daemon: &mut n_daemon,
            opts: sshd.netfs_options("cp", "")?,
            volumes: args.volumes,
            create: true,
            remove: true,
        }];
        let with_rclone = control_rclone.is_some();
        if let Some(daemon) = control_rclone {
            contenders.push(Contender {
                daemon,
                opts: sshd.rclone_options("cp")?,
                volumes: args.rclone_volumes,
                create: run == 0,
                remove: run + 1 == args.runs,
            });
        }
        let mut results = control::run(&mut contenders, 200).await?.into_iter();
        let (Some(n), r) = (results.next(), results.next()) else {
            bail!("control plane: no result for netfs");
        };
        println!(
            "control plane, {}: {:.1} s",
            if with_rclone {
                "netfs and rclone taking turns"
            } else {
                "netfs"
            },
            t.elapsed().as_secs_f64()
        );
        let on = if args.rclone_volumes == args.volumes {
            format!("{} volumes", args.volumes)
        } else {
            format!(
                "netfs {} / rclone {} volumes",
                args.volumes, args.rclone_volumes
            )
        };
        for (i, op) in control::OPS.iter().enumerate() {
            let Some(s) = &n.ops[i] else { continue };
            let peer_op = r.as_ref().and_then(|r| r.ops[i].clone());
            let p50_goal = (*op == "Create").then_some((Goal::RatioAtMost(0.01), "≥ 100× faster"));
            let mut rows = vec![
                (
                    "p50",
                    s.p50,
                    peer_op.as_ref().map(|p| p.p50),
                    Unit::Ms,
                    p50_goal,
                ),
                (
                    "p99",
                    s.p99,
                    peer_op.as_ref().map(|p| p.p99),
                    Unit::Ms,
                    (*op != "Activate").then_some((Goal::RatioAtMost(0.5), "≤ 0.5×")),
                ),
            ];
            if *op != "Activate" {
                rows.push((
                    "requests",
                    s.per_sec,
                    peer_op.as_ref().map(|p| p.per_sec),
                    Unit::PerSec,
                    None,
                ));
            }
            if args.parts.contains(&1) {
                for (stat, v, pv, unit, goal) in rows {
                    let what = match *op {
                        "Activate" => format!("Activate {stat} (the round trip alone)"),
                        _ => format!("{op} {stat}, {on}"),
                    };
                    add(reports, || Figure {
                        part: 1,
                        what: what.clone(),
                        unit,
                        netfs: Some(v),
                        peer: "rclone serve docker",
                        peer_value: pv,
                        peer_note: None,
                        goal,
                    });
                }
            }
        }
        if args.parts.contains(&2) {
            for (i, (count, mib)) in n.rss.iter().enumerate() {
                let pv = r.as_ref().and_then(|r| r.rss.get(i)).map(|(c, m)| {
                    debug_assert_eq!(c, count);
                    *m
                });
                let goal = (*count == args.volumes && *count > 0)
                    .then_some((Goal::AtMost(10.0), "≤ 10 MiB"));
                let what = format!("daemon resident size, {count} volumes");
                add(reports, || Figure {
                    part: 2,
                    what: what.clone(),
                    unit: Unit::Mib,
                    netfs: Some(*mib),
                    peer: "rclone serve docker",
                    peer_value: pv,
                    peer_note: None,
                    goal,
                });
            }
        }
    }

    if args.parts.contains(&3) {
        let mut n = netfs("ready-netfs", "volume")?;
        let mut r = rclone("ready-rclone")?;
        let res = ready::run(sshd, &dir.join("ready-bare"), &mut n, Some(&mut r), 5).await?;
        println!(
            "time to ready: netfs {:.1} ms, sshfs {:.1} ms, rclone {:?} ms",
            res.netfs_ms, res.bare_ms, res.rclone_ms
        );
        notes.netfs_command = res.netfs_command.clone();
        add(reports, || Figure {
            part: 3,
            what: "Create → mounted and read".into(),
            unit: Unit::Ms,
            netfs: Some(res.netfs_ms),
            peer: "bare sshfs",
            peer_value: Some(res.bare_ms),
            peer_note: None,
            goal: Some((Goal::RatioAtMost(1.1), "≤ 1.1×")),
        });
        add(reports, || Figure {
            part: 3,
            what: "Create + Mount → read".into(),
            unit: Unit::Ms,
            netfs: Some(res.netfs_ms),
            peer: "rclone serve docker",
            peer_value: res.rclone_ms,
            peer_note: None,
            goal: None,
        });
    }

    if args.parts.contains(&4) && notes.data_skipped.is_none() {
        let driver = format!("netfs-bench-{}-r{run}", std::process::id());
        let socket = PathBuf::from("/run/docker/plugins").join(format!("{driver}.sock"));
        let d = dir.join("data-netfs");
        let mut n = Daemon::netfs(&args.netfs, &d, &socket, "volume", &args.work.join("sshd"))?;
        // The same container work on a volume of netfs sharing ssh
        // connections and on one of rclone serve docker, in the same rounds.
        let plugin_socket =
            |driver: &str| PathBuf::from("/run/docker/plugins").join(format!("{driver}.sock"));
        let shared_driver = format!("{driver}-shared");
        let d = dir.join("data-netfs-shared");
        let mut shared = Daemon::netfs(
            &args.netfs,
            &d,
            &plugin_socket(&shared_driver),
            "volume",
            &args.work.join("sshd"),
        )?
        .with_arg("--share-ssh-connections=true");
        let rclone_driver = format!("{driver}-rclone");
        let mut r = Daemon::rclone(&dir.join("data-rclone"), &plugin_socket(&rclone_driver))?;
        let mut peers = [
            data::Peer {
                side: Side::NetfsSharedContainer,
                daemon: &mut shared,
                driver: shared_driver,
            },
            data::Peer {
                side: Side::RcloneContainer,
                daemon: &mut r,
                driver: rclone_driver,
            },
        ];
        let res = data::run(
            sshd,
            &dir.join("data"),
            &mut n,
            &driver,
            &mut peers,
            args.data_mib,
            5,
            args.data_detail,
        )
        .await?;
        for (side, w, r) in &res.rates {
            println!(
                "data path, {}: write {w:.0} read {r:.0} MiB/s",
                side.describe()
            );
        }
        let (Some(netfs), Some(bare)) = (res.of(Side::NetfsContainer), res.of(Side::BareHost))
        else {
            bail!("data path: a side is missing");
        };
        let mut rows = vec![
            (
                "write",
                "netfs: in a container",
                netfs.0,
                "bare sshfs on the host",
                bare.0,
            ),
            (
                "read",
                "netfs: in a container",
                netfs.1,
                "bare sshfs on the host",
                bare.1,
            ),
        ];
        if let (Some(nh), Some(bc)) = (res.of(Side::NetfsHost), res.of(Side::BareContainer)) {
            rows.extend([
                (
                    "write",
                    "netfs: on the host",
                    nh.0,
                    "bare sshfs on the host",
                    bare.0,
                ),
                (
                    "read",
                    "netfs: on the host",
                    nh.1,
                    "bare sshfs on the host",
                    bare.1,
                ),
                (
                    "write",
                    "netfs: in a container",
                    netfs.0,
                    "bare sshfs in a container",
                    bc.0,
                ),
                (
                    "read",
                    "netfs: in a container",
                    netfs.1,
                    "bare sshfs in a container",
                    bc.1,
                ),
            ]);
        }
        let (Some(on), Some(rc)) = (
            res.of(Side::NetfsSharedContainer),
            res.of(Side::RcloneContainer),
        ) else {
            bail!("data path: sharing on or rclone is missing");
        };
        const RCLONE: &str = "rclone serve docker in a container";
        const ON: &str = "netfs: sharing on, in a container";
        rows.extend([
            ("write", ON, on.0, "bare sshfs on the host", bare.0),
            ("read", ON, on.1, "bare sshfs on the host", bare.1),
            ("write", "netfs: in a container", netfs.0, RCLONE, rc.0),
            ("read", "netfs: in a container", netfs.1, RCLONE, rc.1),
            ("write", ON, on.0, RCLONE, rc.0),
            ("read", ON, on.1, RCLONE, rc.1),
        ]);
        for (op, how, v, peer, pv) in rows {
            let what = format!("{op} {} MiB ({how})", args.data_mib);
            let goal = (how != "netfs: on the host" && peer == "bare sshfs on the host")
                .then_some((Goal::RatioAtLeast(0.95), "≥ 0.95×"));
            add(reports, || Figure {
                part: 4,
                what: what.clone(),
                unit: Unit::MibPerSec,
                netfs: Some(v),
                peer,
                peer_value: Some(pv),
                peer_note: None,
                goal,
            });
        }
    }

    if args.parts.contains(&5) {
        let res = recovery::run(sshd, &mut netfs("recovery-netfs", "volume")?, 5).await?;
        println!(
            "recovery: median {:.0} ms, max {:.0} ms",
            res.median_ms, res.max_ms
        );
        add(reports, || Figure {
            part: 5,
            what: "kill -9 of sshfs → mount reads again".into(),
            unit: Unit::Ms,
            netfs: Some(res.median_ms),
            peer: "none (nothing restarts it)",
            peer_value: None,
            peer_note: None,
            goal: Some((Goal::AtMost(2000.0), "≤ 2 s")),
        });
    }

    // Parts 7 and 6 against each stock server, side by side in the table.
    for server in std::iter::once(sshd).chain(debian) {
        let label = match server.flavour() {
            Flavour::OpenSsh if debian.is_some() => Some(Flavour::OpenSsh.describe()),
            Flavour::OpenSsh => None,
            Flavour::Debian => Some(Flavour::Debian.describe()),
        };
        for r in reports.iter_mut() {
            r.against(label);
        }
        let dir = dir.join(server.flavour().name());
        let outcome = restores(args, server, &dir, run, peer, reports, notes).await;
        for r in reports.iter_mut() {
            r.against(None);
        }
        outcome?;
    }
    Ok(())
}

/// Parts 7 (shared connections) and 6 (restore) against `sshd`.
async fn restores(
    args: &Args,
    sshd: &Sshd,
    dir: &Path,
    run: usize,
    peer: bool,
    reports: &mut [&mut Report],
    notes: &mut Notes,
) -> Result<()> {
    let netfs = |part: &str, lifecycle: &str| {
        let d = dir.join(part);
        Daemon::netfs(
            &args.netfs,
            &d,
            &d.join("netfs.sock"),
            lifecycle,
            sshd.dir(),
        )
    };
    let rclone = |part: &str| {
        let d = dir.join(part);
        Daemon::rclone(&d, &d.join("rclone.sock"))
    };
    if args.parts.contains(&7) {
        let make = |part: &str, on: bool| {
            let d = dir.join(part);
            Daemon::netfs(&args.netfs, &d, &d.join("netfs.sock"), "volume", sshd.dir())
                .map(|d| d.with_arg(&format!("--share-ssh-connections={on}")))
        };
        let res = shared::run(
            sshd,
            &dir.join("shared"),
            &make,
            args.restore_volumes,
            args.data_mib,
        )
        .await?;
        shared_figures(reports, &res, args.restore_volumes, args.data_mib);
        if sshd.flavour() == Flavour::OpenSsh {
            notes.shared = Some(res);
        }
        if data::unavailable().is_none() {
            shared_in_a_container(args, sshd, dir, run, reports).await?;
        }
    }

    if args.parts.contains(&8) && data::unavailable().is_none() {
        reattach_figures(args, sshd, dir, run, reports).await?;
    }

    if args.parts.contains(&6) {
        let count = args.restore_volumes;
        let refused = sshd.throttled();
        let server = ServerCpu::from(sshd).await?;
        let took = netfs_restore(&mut netfs("restore-netfs", "volume")?, count, sshd, "").await?;
        let (netfs_cpu, server) = server.per_login(sshd).await?;
        let floor = restore::bare(sshd, &dir.join("restore-bare"), count, "").await?;
        let (bare_cpu, _) = server.per_login(sshd).await?;
        println!("restore: netfs {took:.2} s, bare sshfs x{count} {floor:.2} s");
        println!("server CPU per login: netfs {netfs_cpu:.1} ms, bare sshfs {bare_cpu:.1} ms");
        let (peer_took, peer_note) = if peer {
            rclone_restore(&mut rclone("restore-rclone")?, count, sshd).await?
        } else {
            (None, None)
        };
        let fast = netfs_restore(
            &mut netfs("restore-netfs-kex", "volume")?,
            count,
            sshd,
            FAST_KEX,
        )
        .await?;
        let fast_floor =
            restore::bare(sshd, &dir.join("restore-bare-kex"), count, FAST_KEX).await?;
        println!(
            "restore with {FAST_KEX}: netfs {fast:.2} s, bare sshfs x{count} {fast_floor:.2} s"
        );
        if sshd.throttled() > refused {
            bail!(
                "the stock sshd refused connections past MaxStartups during the restores ({} log lines)",
                sshd.throttled() - refused
            );
        }
        let what = format!("start → {count} volumes mounted and read");
        let what_fast = format!("the same, both with -o {FAST_KEX}");
        for (what, took, peer, value, note) in [
            (&what, took, BARE_FLOOR, Some(floor), None),
            (&what, took, "rclone serve docker", peer_took, peer_note),
            (&what_fast, fast, BARE_FLOOR, Some(fast_floor), None),
        ] {
            add(reports, || Figure {
                part: 6,
                what: what.clone(),
                unit: Unit::Secs,
                netfs: Some(took),
                peer,
                peer_value: value,
                peer_note: note.clone(),
                goal: Some((Goal::AtMost(5.0), "≤ 5 s")),
            });
        }
        add(reports, || Figure {
            part: 6,
            what: "the server's CPU per login of that restore (sshd and all it started)".into(),
            unit: Unit::Ms,
            netfs: Some(netfs_cpu),
            peer: BARE_FLOOR,
            peer_value: Some(bare_cpu),
            peer_note: None,
            goal: None,
        });
    }
    Ok(())
}

/// Part 7's data path in a container (as part 4), with sharing on.
async fn shared_in_a_container(
    args: &Args,
    sshd: &Sshd,
    dir: &Path,
    run: usize,
    reports: &mut [&mut Report],
) -> Result<()> {
    let driver = format!(
        "netfs-bench-{}-s{run}-{}",
        std::process::id(),
        sshd.flavour().name()
    );
    let socket = PathBuf::from("/run/docker/plugins").join(format!("{driver}.sock"));
    let d = dir.join("shared-data-container");
    let mut n = Daemon::netfs(&args.netfs, &d, &socket, "volume", sshd.dir())?
        .with_arg("--share-ssh-connections=true");
    let res = data::run(
        sshd,
        &dir.join("shared-dc"),
        &mut n,
        &driver,
        &mut [],
        args.data_mib,
        3,
        false,
    )
    .await?;
    let (Some(netfs), Some(bare)) = (res.of(Side::NetfsContainer), res.of(Side::BareHost)) else {
        bail!("shared data path in a container: a side is missing");
    };
    println!(
        "shared data path in a container: write {:.0} read {:.0} MiB/s, bare sshfs on the host {:.0} / {:.0}",
        netfs.0, netfs.1, bare.0, bare.1
    );
    for (op, v, pv) in [("write", netfs.0, bare.0), ("read", netfs.1, bare.1)] {
        let what = format!(
            "{op} {} MiB in a container (netfs, sharing on)",
            args.data_mib
        );
        add(reports, || Figure {
            part: 7,
            what: what.clone(),
            unit: Unit::MibPerSec,
            netfs: Some(v),
            peer: "bare sshfs on the host",
            peer_value: Some(pv),
            peer_note: None,
            goal: Some((Goal::RatioAtLeast(0.95), "≥ 0.95×")),
        });
    }
    Ok(())
}

/// Part 7's rows.
fn shared_figures(reports: &mut [&mut Report], r: &shared::SharedResult, count: usize, mib: u64) {
    let mut figures: Vec<Figure<'static>> = vec![
        Figure {
            part: 7,
            what: "Create → mounted and read, its master already up".into(),
            unit: Unit::Ms,
            netfs: Some(r.ready_live_ms),
            peer: "bare sshfs",
            peer_value: Some(r.ready_bare_ms),
            peer_note: None,
            goal: Some((Goal::RatioAtMost(0.2), "≤ 0.2×")),
        },
        Figure {
            part: 7,
            what: format!("start → {count} volumes mounted and read, sharing on"),
            unit: Unit::Secs,
            netfs: r.restore_secs,
            peer: "none",
            peer_value: None,
            peer_note: None,
            goal: Some((Goal::AtMost(1.5), "≤ 1.5 s")),
        },
        Figure {
            part: 7,
            what: format!(
                "logins the server saw during that restore (⌈{count} / 10⌉ = {})",
                count.div_ceil(10)
            ),
            unit: Unit::Count,
            netfs: Some(r.restore_logins as f64),
            peer: "none",
            peer_value: None,
            peer_note: None,
            goal: Some((Goal::AtMost(count.div_ceil(10) as f64), "≤ ⌈N / 10⌉")),
        },
        Figure {
            part: 7,
            what: "volume restarts during that restore".into(),
            unit: Unit::Count,
            netfs: Some(r.restore_restarts as f64),
            peer: "none",
            peer_value: None,
            peer_note: None,
            goal: Some((Goal::AtMost(0.0), "0")),
        },
        Figure {
            part: 7,
            what: "kill -9 of sshfs, master alive → reads again".into(),
            unit: Unit::Ms,
            netfs: Some(r.recover_sshfs_ms),
            peer: "none",
            peer_value: None,
            peer_note: None,
            goal: Some((Goal::AtMost(100.0), "≤ 0.1 s")),
        },
        Figure {
            part: 7,
            what: "logins during those sshfs recoveries".into(),
            unit: Unit::Count,
            netfs: Some(r.recover_sshfs_logins as f64),
            peer: "none",
            peer_value: None,
            peer_note: None,
            goal: Some((Goal::AtMost(0.0), "0")),
        },
        Figure {
            part: 7,
            what: "kill -9 of a master → its 4 volumes read again".into(),
            unit: Unit::Ms,
            netfs: Some(r.recover_master_ms),
            peer: "none",
            peer_value: None,
            peer_note: None,
            goal: Some((Goal::AtMost(2000.0), "≤ 2 s")),
        },
    ];
    let side = |name: &str| {
        r.data
            .iter()
            .find(|(s, _, _)| *s == name)
            .map(|(_, w, rd)| (*w, *rd))
    };
    if let (Some(on), Some(off), Some(bare), Some(raw)) = (
        side(shared::ON),
        side(shared::OFF),
        side(shared::BARE),
        side(shared::RAW),
    ) {
        for (op, pick) in [("write", 0), ("read", 1)] {
            let v = |p: (f64, f64)| if pick == 0 { p.0 } else { p.1 };
            for (how, value, peer, pv, goal) in [
                (
                    shared::ON,
                    v(on),
                    "bare sshfs",
                    v(bare),
                    Some((Goal::RatioAtLeast(0.95), "≥ 0.95×")),
                ),
                (
                    shared::OFF,
                    v(off),
                    "bare sshfs",
                    v(bare),
                    Some((Goal::RatioAtLeast(0.95), "≥ 0.95×")),
                ),
                (shared::ON, v(on), "raw ssh … cat", v(raw), None),
            ] {
                figures.push(Figure {
                    part: 7,
                    what: format!("{op} {mib} MiB on the host ({how})"),
                    unit: Unit::MibPerSec,
                    netfs: Some(value),
                    peer,
                    peer_value: Some(pv),
                    peer_note: None,
                    goal,
                });
            }
        }
    }
    figures.push(Figure {
        part: 7,
        what: format!(
            "{} volumes writing {} MiB at once, one master",
            shared::WRITERS,
            mib
        ),
        unit: Unit::MibPerSec,
        netfs: Some(r.writers_shared),
        peer: "the same, a login each",
        peer_value: Some(r.writers_separate),
        peer_note: None,
        goal: None,
    });
    for f in figures {
        add(reports, || f.clone());
    }
}

/// The floor of the restore: bare sshfs paced as netfs paces by default.
const BARE_FLOOR: &str = "bare sshfs, 5 at a time";
const _: () = assert!(restore::BARE_AT_ONCE == 5, "BARE_FLOOR names the pacing");

/// A key exchange without OpenSSH 9's post-quantum sntrup761, whose key
/// generation costs the ssh client about 0.1 s of CPU per login here.
const FAST_KEX: &str = "KexAlgorithms=curve25519-sha256";

/// netfs's restore, in seconds; not finishing is an error.
async fn netfs_restore(daemon: &mut Daemon, count: usize, sshd: &Sshd, extra: &str) -> Result<f64> {
    match restore::run(daemon, count, &sshd.netfs_options("restore", extra)?).await? {
        Restored::All { secs, .. } => Ok(secs),
        Restored::Stuck { mounted, .. } => bail!(
            "netfs restored only {mounted} of {count} volumes within {:?}",
            restore::WITHIN
        ),
    }
}

/// The server's CPU time and logins at one moment, to charge what follows
/// per login.
struct ServerCpu {
    secs: f64,
    logins: usize,
}

impl ServerCpu {
    async fn from(sshd: &Sshd) -> Result<Self> {
        Ok(Self {
            secs: sshd.cpu_seconds().await?,
            logins: sshd.logins(),
        })
    }

    /// Milliseconds of server CPU per login since `self`, once every
    /// connection has closed; and the moment to count from next.
    async fn per_login(&self, sshd: &Sshd) -> Result<(f64, Self)> {
        let now = Self::from(sshd).await?;
        let logins = now.logins.saturating_sub(self.logins);
        if logins == 0 {
            bail!("the server counted no login");
        }
        Ok(((now.secs - self.secs) * 1000.0 / logins as f64, now))
    }
}

/// rclone's restore: its seconds, or why there are none.
async fn rclone_restore(
    daemon: &mut Daemon,
    count: usize,
    sshd: &Sshd,
) -> Result<(Option<f64>, Option<String>)> {
    Ok(
        match restore::run(daemon, count, &sshd.rclone_options("restore")?).await? {
            Restored::All { secs, .. } => {
                println!("restore: rclone {secs:.2} s");
                (Some(secs), None)
            }
            Restored::Stuck { mounted, answering } => {
                let note = format!(
                    "not done in {} s: {mounted} of {count} mounted, socket {}",
                    restore::WITHIN.as_secs(),
                    if answering {
                        "answering"
                    } else {
                        "not answering"
                    }
                );
                println!("restore: rclone {note}");
                (None, Some(note))
            }
        },
    )
}

fn results_section(
    args: &Args,
    table: &str,
    notes: &Notes,
    others: &[(String, f64)],
    load_before: &str,
    load_after: &str,
    started: Instant,
) -> String {
    let when = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let argv: Vec<String> = std::env::args().collect();
    let mut s = String::new();
    s.push_str(&format!(
        "Taken {when} by `{}` (what `make bench` runs, through `scripts/bench.sh`), \
         {:.1} minutes in all.\n\n",
        argv.join(" "),
        started.elapsed().as_secs_f64() / 60.0
    ));
    let runs = |n: usize| {
        if n == 1 {
            "1 run".to_owned()
        } else {
            format!("{n} runs")
        }
    };
    s.push_str(&format!(
        "Each figure is the median of {}, except rclone's Create, Remove and memory (parts 1 \
         and 2; its volumes are created once and kept) and its restore (part 6): {}.\n\n",
        runs(args.runs),
        if args.peer_runs >= args.runs {
            "the same".to_owned()
        } else if args.peer_runs == 0 {
            "not measured".to_owned()
        } else {
            format!("from the first {}", runs(args.peer_runs))
        }
    ));
    s.push_str(table);
    s.push_str("\nMachine:\n\n");
    s.push_str(&machine::describe(&args.netfs));
    let others = if others.is_empty() {
        "nothing measurable".to_owned()
    } else {
        others
            .iter()
            .map(|(name, secs)| format!("{name} {secs:.0} s"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    s.push_str(&format!(
        "- other load while it ran: load average (1, 5, 15 min) {load_before} before, \
         {load_after} after; CPU time of processes the benchmark did not start (dockerd and \
         containerd include part 4's containers): {others}\n"
    ));
    if !notes.netfs_command.is_empty() {
        let work = args.work.to_string_lossy();
        s.push_str(&format!(
            "\nnetfs ran, for each sshfs volume (`$WORK` is the benchmark's temporary directory): `{}`\n",
            notes.netfs_command.replace(work.as_ref(), "$WORK")
        ));
    }
    if let Some(why) = &notes.data_skipped {
        s.push_str(&format!("\nPart 4 was skipped: {why}\n"));
    }
    s
}

/// Replaces the results section of `path`, or writes a new file around it.
fn write_doc(path: &Path, section: &str) -> Result<()> {
    let block = format!("{BEGIN}\n{section}{END}");
    let text = match std::fs::read_to_string(path) {
        Ok(old) => match (old.find(BEGIN), old.find(END)) {
            (Some(b), Some(e)) if b < e => format!("{}{block}{}", &old[..b], &old[e + END.len()..]),
            _ => format!("{}\n\n## Results\n\n{block}\n", old.trim_end()),
        },
        Err(_) => format!("# netfs benchmarks\n\n## Results\n\n{block}\n"),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)?;
    Ok(())
}

/// Part 8: how soon a running container reads its volume again.
async fn reattach_figures(
    args: &Args,
    sshd: &Sshd,
    dir: &Path,
    run: usize,
    reports: &mut [&mut Report],
) -> Result<()> {
    let driver = format!("netfs-bench-{}-a{run}", std::process::id());
    let socket = |d: &str| PathBuf::from("/run/docker/plugins").join(format!("{d}.sock"));
    let mut n = Daemon::netfs(
        &args.netfs,
        &dir.join("reattach-netfs"),
        &socket(&driver),
        "volume",
        &args.work.join("sshd"),
    )?;
    let rclone_driver = format!("{driver}-rclone");
    let mut r = Daemon::rclone(&dir.join("reattach-rclone"), &socket(&rclone_driver))?;
    let res = reattach::run(
        sshd,
        &dir.join("reattach"),
        (&mut n, &driver),
        (&mut r, &rclone_driver),
    )
    .await?;
    let shown = |v: Option<f64>| v.map_or("not in 60 s".to_owned(), |v| format!("{v:.0} ms"));
    println!(
        "reattach: kill -9 → read in the container: netfs {}, bare sshfs {}, rclone serve docker {}; \
         netfs restarted → read in the container {} (restore {})",
        shown(res.netfs_kill_ms),
        shown(res.bare_ms),
        shown(res.rclone_ms),
        shown(res.netfs_restart_ms),
        shown(res.netfs_restore_ms),
    );
    let not_in = |v: Option<f64>| v.is_none().then(|| "not in 60 s".to_owned());
    const KILL: &str = "kill -9 of the tool → first read in a running container";
    add(reports, || Figure {
        part: 8,
        what: KILL.into(),
        unit: Unit::Ms,
        netfs: res.netfs_kill_ms,
        peer: "bare sshfs, mounted again by hand",
        peer_value: res.bare_ms,
        peer_note: not_in(res.bare_ms),
        goal: Some((Goal::AtMost(500.0), "≤ 0.5 s")),
    });
    add(reports, || Figure {
        part: 8,
        what: KILL.into(),
        unit: Unit::Ms,
        netfs: res.netfs_kill_ms,
        peer: "rclone serve docker, killed and started again",
        peer_value: res.rclone_ms,
        peer_note: not_in(res.rclone_ms),
        goal: Some((Goal::AtMost(500.0), "≤ 0.5 s")),
    });
    add(reports, || Figure {
        part: 8,
        what: "plugin restarted → first read in a running container".into(),
        unit: Unit::Ms,
        netfs: res.netfs_restart_ms,
        peer: "netfs's restore (first read on the host)",
        peer_value: res.netfs_restore_ms,
        peer_note: None,
        goal: None,
    });
    if let (Some(read), Some(restore)) = (res.netfs_restart_ms, res.netfs_restore_ms) {
        add(reports, || Figure {
            part: 8,
            what: "plugin restarted: the container's first read after the restore's".into(),
            unit: Unit::Ms,
            netfs: Some(read - restore),
            peer: "none (no peer gives it back)",
            peer_value: None,
            peer_note: None,
            goal: Some((Goal::AtMost(50.0), "≤ 50 ms")),
        });
    }
    Ok(())
}
