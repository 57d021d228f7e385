//! The state file's round trip, its refusals, what it keeps of options it
//! no longer accepts, and the `.bak` it leaves.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::backend::BackendKind;
use crate::options::VolumeOptions;

fn record() -> VolumeRecord {
    let opts = [
        ("source".to_string(), "u@h:/x".to_string()),
        ("password".into(), "pw".into()),
    ];
    VolumeRecord {
        setup: Setup::Valid {
            backend: BackendKind::Sshfs,
            options: VolumeOptions::parse(&opts.into_iter().collect()).unwrap(),
        },
        created_at: "2026-01-01T00:00:00Z".into(),
        mount_ids: ["abc".to_string()].into(),
        devices: vec!["0:53".into()],
        stage: None,
    }
}

#[tokio::test]
async fn round_trip_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/state.json");
    assert!(load(&path).unwrap().is_empty());
    let store = StateStore::new(path.clone());
    let mut volumes = Volumes::new();
    volumes.insert(VolumeName::parse("v1").unwrap(), record());
    store
        .save(1, store.encode(&volumes).unwrap())
        .await
        .unwrap();
    assert_eq!(load(&path).unwrap(), volumes);
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // An older snapshot never overwrites a newer one.
    store
        .save(1, store.encode(&Volumes::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(load(&path).unwrap(), volumes);
}

#[test]
fn corrupt_and_foreign_files_are_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    for (text, want) in [
        ("{\"version\":1,\"volumes\":", "is corrupt"),
        ("", "is corrupt"),
        ("{\"version\":9,\"volumes\":{}}", "has version 9"),
        ("{\"version\":1,\"volumes\":{\"../x\":{}}}", "is corrupt"),
    ] {
        fs::write(&path, text).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains(want) && err.contains("state.json"), "{err}");
        assert!(err.contains("left untouched"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
    }
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(err.starts_with("cannot read state file"), "{err}");
    assert!(
        err.contains("no ") && err.contains("state.json.bak"),
        "{err}"
    );
}

#[tokio::test]
async fn options_this_netfs_does_not_accept_are_kept_as_stored_and_refused_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let text = r#"{"version": 1, "volumes": {
        "good": {"backend": "sshfs", "options": {"source": "u@h:/x"}, "createdAt": "2026-01-01T00:00:00Z", "mountIds": ["c1"]},
        "old-key": {"backend": "sshfs", "options": {"source": "u@h:/y", "cache": "yes", "password": "pw"}, "createdAt": "2026-01-02T00:00:00Z", "mountIds": ["c2"]},
        "old-type": {"backend": "smb", "options": {"source": "//h/share"}, "createdAt": "2026-01-03T00:00:00Z"}
    }}"#;
    fs::write(&path, text).unwrap();
    let volumes = load(&path).unwrap();
    let get = |n: &str| &volumes[&VolumeName::parse(n).unwrap()];
    assert!(matches!(get("good").setup, Setup::Valid { .. }));
    let Setup::Unaccepted { reason, .. } = &get("old-key").setup else {
        panic!("{:?}", get("old-key"));
    };
    assert!(
        reason.contains("unknown volume option \"cache\""),
        "{reason}"
    );
    assert_eq!(get("old-key").mount_ids, ["c2".to_owned()].into());
    let Setup::Unaccepted { reason, .. } = &get("old-type").setup else {
        panic!("{:?}", get("old-type"));
    };
    assert!(reason.contains("unknown type \"smb\""), "{reason}");
    assert_eq!(get("old-type").setup.backend_name(), "smb");
    assert_eq!(get("old-type").setup.source(), Some("//h/share"));
    // The password is in none of the Debug output.
    assert!(!format!("{volumes:?}").contains("pw"));
    // Written back exactly as stored.
    let store = StateStore::new(path.clone());
    store
        .save(1, store.encode(&volumes).unwrap())
        .await
        .unwrap();
    let written: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let given: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(written["volumes"]["old-key"], given["volumes"]["old-key"]);
    assert_eq!(
        written["volumes"]["old-type"]["options"],
        given["volumes"]["old-type"]["options"]
    );
    assert_eq!(written["volumes"]["old-type"]["backend"], "smb");
    assert_eq!(load(&path).unwrap(), volumes);
    // A record of the wrong shape is still a damaged file.
    fs::write(
        &path,
        r#"{"version":1,"volumes":{"v":{"backend":"sshfs","options":{"o":1},"createdAt":"x"}}}"#,
    )
    .unwrap();
    assert!(load(&path).unwrap_err().to_string().contains("is corrupt"));
}

#[tokio::test]
async fn the_state_before_the_last_write_is_kept_as_bak() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let bak = backup_path(&path);
    assert_eq!(bak, dir.path().join("state.json.bak"));
    let store = StateStore::new(path.clone());
    let mut one = Volumes::new();
    one.insert(VolumeName::parse("v1").unwrap(), record());
    let mut two = one.clone();
    two.insert(VolumeName::parse("v2").unwrap(), record());
    store.save(1, store.encode(&one).unwrap()).await.unwrap();
    assert!(!bak.exists(), "nothing before the first write");
    store.save(2, store.encode(&two).unwrap()).await.unwrap();
    assert_eq!(load(&bak).unwrap(), one);
    assert_eq!(load(&path).unwrap(), two);
    let mode = fs::metadata(&bak).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    store
        .save(3, store.encode(&Volumes::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(load(&bak).unwrap(), two);
    assert!(load(&path).unwrap().is_empty());
    // no temporary files are left next to the state
    let mut names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["state.json", "state.json.bak"]);

    // A corrupt state file: the error says what the .bak offers.
    fs::write(&path, "{\"version\":1,").unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(
        err.contains("state.json.bak holds the previous good state (2 volume(s))"),
        "{err}"
    );
    fs::write(&bak, "garbage").unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("state.json.bak is not usable either"), "{err}");
}
