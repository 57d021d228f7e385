//! netfs's own view of the kernel's mount table (`netfs::mounts`) against
//! real mounts: mounting a tmpfs and unmounting need root, so these live
//! here and not beside the code, whose unit tests run as any user.

use std::path::Path;

use netfs::mounts::{is_mounted, lazy_unmount, mounted_under};

/// The cache must never answer from before a change: mount and unmount a
/// tmpfs and ask straight after each.
#[test]
fn the_cached_mount_table_sees_every_change_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join("t");
    std::fs::create_dir(&target).expect("mount point");
    assert!(!is_mounted(&target).expect("mountinfo"));
    for _ in 0..20 {
        nix::mount::mount(
            Some("netfs-test"),
            &target,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .expect("mount tmpfs (root needed)");
        assert!(
            is_mounted(&target).expect("mountinfo"),
            "a new mount is seen"
        );
        assert_eq!(
            mounted_under(dir.path()).expect("mountinfo"),
            std::slice::from_ref(&target)
        );
        lazy_unmount(&target).expect("unmount");
        assert!(
            !is_mounted(&target).expect("mountinfo"),
            "an unmount is seen"
        );
    }
}

/// Stopping is idempotent: nothing mounted, or no such path, is success.
#[test]
fn unmounting_a_plain_directory_or_a_missing_path_is_success() {
    let dir = tempfile::tempdir().expect("temp dir");
    lazy_unmount(dir.path()).expect("a plain directory");
    lazy_unmount(&dir.path().join("missing")).expect("a missing path");
    assert!(!is_mounted(Path::new(dir.path())).expect("mountinfo"));
}
