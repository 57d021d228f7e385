//! Building needs nothing but docker on the host: scripts/base-image.sh,
//! which makes the Debian image the Dockerfile starts FROM, runs
//! debootstrap in a container when the host has none (forced here with
//! IN_CONTAINER=1), into a cache and an image name of the test's own. The
//! whole build on a host with nothing but Docker is a fleet test
//! (`fleet::build`), on a Docker 28 node.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::cmd;
use crate::support::docker::{docker, require_docker};

/// debian:trixie-slim, which both tests start from, made by the script
/// that every build runs first (idempotent, and locked against a build
/// beside it): neither test counts on another having made it.
fn ensure_base_image() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/base-image.sh");
    let out = cmd::run(
        Command::new(&script).arg("trixie"),
        Duration::from_secs(900),
    );
    assert!(
        out.status.success(),
        "{}",
        cmd::show("base-image.sh trixie", &out)
    );
}

#[test]
fn the_base_image_is_bootstrapped_in_a_container_when_the_host_has_no_debootstrap() {
    require_docker();
    ensure_base_image();
    let cache = tempfile::Builder::new()
        .prefix("netfs-ops-base-")
        .tempdir()
        .expect("temp dir");
    let repo = format!("netfs-ops-base-{}", std::process::id());
    let image = format!("{repo}:trixie-slim");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/base-image.sh");
    let started = Instant::now();
    let out = cmd::run(
        Command::new(&script)
            .arg("trixie")
            .env("NETFS_CACHE", cache.path())
            .env("BASE_REPO", &repo)
            .env("IN_CONTAINER", "1")
            .env("BOOTSTRAP_IMAGE", "debian:trixie-slim"),
        Duration::from_secs(900),
    );
    let took = started.elapsed();
    let version = docker(&["run", "--rm", &image, "cat", "/etc/debian_version"]);
    let apt = docker(&["run", "--rm", &image, "cat", "/etc/apt/sources.list"]);
    let _ = docker(&["rmi", "-f", &image]);
    // The tree is root's, written by the container; tempdir removes it.
    assert!(out.status.success(), "{}", cmd::show("base-image.sh", &out));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("running it in a container of debian:trixie-slim"),
        "{log}"
    );
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    assert!(
        version.starts_with("13"),
        "trixie is Debian 13: {version:?}"
    );
    assert!(
        String::from_utf8_lossy(&apt.stdout).contains("trixie-security"),
        "the slim image's sources"
    );
    eprintln!(
        "netfs-suite base image in a container: debootstrap + import in {:.0} s",
        took.as_secs_f64()
    );
}

/// The ELF machine of a binary: 0xB7 is aarch64, 0x3E x86-64.
fn elf_machine(path: &Path) -> u16 {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..4], b"\x7fELF", "{} is no ELF file", path.display());
    u16::from_le_bytes([bytes[18], bytes[19]])
}

/// The arm64 plugin from the same Dockerfile (PLUGIN_ARCH=arm64): netfs
/// cross-compiled with Debian's cross toolchain, Debian's arm64 sshfs,
/// rclone's aarch64 wheel, on an arm64 root file system that debootstrap
/// made under QEMU's emulator. Its netfs, sshfs and rclone run (under the
/// emulator), and netfs's unit tests pass on arm64.
#[test]
fn the_arm64_plugin_is_built_from_the_same_dockerfile_and_runs_under_emulation() {
    require_docker();
    ensure_base_image();
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    let build = tempfile::Builder::new()
        .prefix("netfs-ops-arm64-")
        .tempdir()
        .expect("temp dir");
    let started = Instant::now();
    let out = cmd::run(
        Command::new(top.join("scripts/plugin.sh"))
            .env("PLUGIN_ARCH", "arm64")
            .env("PLUGIN_NAME", "netfs-ops-arm64")
            .env("PLUGIN_DIR_ONLY", "1")
            .env("PLUGIN_BUILD_DIR", build.path()),
        Duration::from_secs(3600),
    );
    assert!(
        out.status.success(),
        "{}",
        cmd::show("PLUGIN_ARCH=arm64 plugin.sh", &out)
    );
    let built = started.elapsed();
    let rootfs = build.path().join("plugin/rootfs");
    for bin in [
        "usr/bin/netfs",
        "usr/bin/sshfs",
        "usr/bin/rclone",
        "usr/bin/ssh",
    ] {
        assert_eq!(elf_machine(&rootfs.join(bin)), 0xB7, "{bin} is not aarch64");
    }
    let run = |argv: &[&str]| {
        let out = cmd::run(
            Command::new("chroot").arg(&rootfs).args(argv),
            Duration::from_secs(120),
        );
        assert!(out.status.success(), "{}", cmd::show(argv[0], &out));
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let info = run(&["/usr/bin/netfs", "--build-info=json"]);
    assert!(info.contains("aarch64-unknown-linux-gnu"), "{info}");
    let sshfs = run(&["/usr/bin/sshfs", "--version"]);
    assert!(sshfs.contains("SSHFS version"), "{sshfs}");
    let rclone = run(&["/usr/bin/rclone", "version"]);
    assert!(
        rclone.starts_with(&format!("rclone v{}", crate::support::rclone::version())),
        "{rclone}"
    );
    let recorded = std::fs::read_to_string(rootfs.join("usr/share/netfs/build-info.json"))
        .expect("the image's build-info.json");
    assert!(recorded.contains("aarch64-unknown-linux-gnu"), "{recorded}");
    // The config is the same file for both architectures.
    let config = std::fs::read(build.path().join("plugin/config.json")).unwrap();
    assert_eq!(config, std::fs::read(top.join("config.json")).unwrap());

    let started = Instant::now();
    let out = cmd::run(
        &mut Command::new(top.join("scripts/arm64-test.sh")),
        Duration::from_secs(3600),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok."),
        "{}",
        cmd::show("arm64-test.sh", &out)
    );
    let passed = stdout
        .lines()
        .find(|l| l.starts_with("test result: ok."))
        .unwrap_or_default()
        .to_owned();
    eprintln!(
        "netfs-suite arm64: plugin rootfs built in {:.0} s; netfs, sshfs {}, rclone run under \
         emulation; unit tests on arm64 in {:.0} s: {passed}",
        built.as_secs_f64(),
        sshfs
            .lines()
            .find(|l| l.contains("SSHFS version"))
            .unwrap_or_default(),
        started.elapsed().as_secs_f64(),
    );
}
