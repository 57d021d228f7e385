//! The pool's bookkeeping without a process or a server: which master a
//! volume gets, when a new one is opened, when one is let go.

use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::backend::Endpoint;
use crate::options::MountOptions;

/// A pool whose masters cannot start (no such program): the assignment
/// logic runs without a process or a server.
fn pool(dir: &tempfile::TempDir) -> Arc<Connections> {
    Connections::new(Settings {
        ssh: "/nonexistent/ssh".into(),
        dir: dir.path().join("ssh-control"),
        sessions: DEFAULT_SESSIONS,
        connect_timeout: Duration::from_secs(20),
        stop_timeout: Duration::from_secs(5),
        mark_root: dir.path().into(),
        pacing: Arc::new(Gate::new(5)),
    })
    .unwrap()
}

fn key_for(user: &str, opts: &str) -> ConnKey {
    let endpoint = Endpoint {
        user: Some(user.into()),
        server: Server::Tcp {
            host: "nas".into(),
            port: 22,
        },
    };
    key(&endpoint, &[], &MountOptions::parse(opts).unwrap(), false).unwrap()
}

fn ids(leases: &[Lease]) -> Vec<u64> {
    leases.iter().map(|l| l.master().id).collect()
}

#[tokio::test(start_paused = true)]
async fn max_sessions_volumes_per_master_then_another() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(&dir);
    let k = key_for("u", "IdentityFile=/k/a");
    let mut leases: Vec<Lease> = (0..12).map(|_| pool.join(&k)).collect();
    let ids = ids(&leases);
    assert_eq!(ids[..10], [1; 10]);
    assert_eq!(ids[10..], [2, 2]);
    let masters = pool.masters();
    assert_eq!(masters.len(), 2);
    assert_eq!(masters[0].sessions(), 10);
    assert_eq!(masters[1].sessions(), 2);
    // A volume that leaves frees its place for the next one.
    leases.remove(3);
    assert_eq!(pool.join(&k).master().id, 1);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("ssh-control"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[tokio::test(start_paused = true)]
async fn other_identities_and_users_never_share() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(&dir);
    let a = pool.join(&key_for("u", "IdentityFile=/k/a"));
    let b = pool.join(&key_for("u", "IdentityFile=/k/b"));
    let c = pool.join(&key_for("v", "IdentityFile=/k/a"));
    let d = pool.join(&key_for("u", "IdentityFile=/k/a,reconnect"));
    assert_eq!(ids(&[a, b, c, d]), [1, 2, 3, 1]);
}

#[tokio::test(start_paused = true)]
async fn a_refused_session_closes_the_master_to_newcomers() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(&dir);
    let k = key_for("u", "");
    let mut leases: Vec<Lease> = (0..3).map(|_| pool.join(&k)).collect();
    let refused = leases.pop().unwrap();
    refused.refused("v3");
    drop(refused);
    let status = ConnectionReport::of(&leases[0].master);
    assert_eq!(status.refused_sessions, Some(1), "{status:?}");
    assert_eq!(status.capacity, Some(2), "{status:?}");
    let what = status.last_refusal.as_deref().unwrap_or_default();
    // What Docker shows: the same names, camelCase.
    let shown = serde_json::to_value(&status).unwrap();
    assert_eq!(shown["refusedSessions"], 1, "{shown}");
    assert!(
        what.contains("refused a session to volume v3 with 2 open")
            && what.contains("v3 was placed on another"),
        "{what}"
    );
    assert_eq!(pool.join(&k).master().id, 2, "the server took two there");
    drop(leases);
    assert_eq!(pool.join(&k).master().id, 1, "room again once they left");
}

#[tokio::test(start_paused = true)]
async fn a_login_that_fails_fails_its_waiters_and_is_retried_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(&dir);
    let lease = pool.join(&key_for("u", ""));
    let err = lease.ready().await.unwrap_err().to_string();
    assert!(err.contains("ssh-1 to u@nas:22 is not up"), "{err}");
    assert!(err.contains("cannot start ssh"), "{err}");
    // Again at once, then after 250 ms, 500 ms, ...
    let t0 = Instant::now();
    let mut rx = lease.master().status.subscribe();
    let first = rx.borrow().failures;
    let _ = rx.wait_for(|s| s.failures >= first + 2).await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(1000),
        "{waited:?}"
    );
    assert_eq!(lease.master().status().state, ConnState::Reconnecting);
    // Its last volume leaves: it stops trying.
    let master = lease.master().clone();
    drop(lease);
    let mut rx = master.status.subscribe();
    let _ = tokio::time::timeout(
        Duration::from_secs(60),
        rx.wait_for(|s| s.state == ConnState::Idle),
    )
    .await
    .expect("idle once unused");
    let failures = master.status().failures;
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(master.status().failures, failures, "no login while unused");
}
