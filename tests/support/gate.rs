//! A slow remote and a request that may outlive the plugin: the fault
//! suites catch Create and Mount half-way with these.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use serde_json::Value;

use super::client;
use super::sshd::Sshd;

/// A TCP relay to sshd that holds every connection until opened: a remote
/// that is slow to answer, so a Create or Mount can be caught half-way.
pub struct Gate {
    port: u16,
    open: Arc<(Mutex<bool>, Condvar)>,
    held: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Gate {
    pub fn new(target: u16) -> Gate {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind gate");
        let port = listener.local_addr().expect("gate address").port();
        let open = Arc::new((Mutex::new(false), Condvar::new()));
        let held = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (o, h, s) = (open.clone(), held.clone(), stop.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let (o, h) = (o.clone(), h.clone());
                thread::spawn(move || {
                    h.fetch_add(1, Ordering::SeqCst);
                    let (lock, cv) = &*o;
                    let mut is_open = lock.lock().unwrap();
                    while !*is_open {
                        is_open = cv.wait(is_open).unwrap();
                    }
                    drop(is_open);
                    h.fetch_sub(1, Ordering::SeqCst);
                    if let Ok(server) = TcpStream::connect((Ipv4Addr::LOCALHOST, target)) {
                        relay(client, server);
                    }
                });
            }
        });
        Gate {
            port,
            open,
            held,
            stop,
        }
    }

    /// Connections waiting for the gate to open.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    pub fn set_open(&self, open: bool) {
        let (lock, cv) = &*self.open;
        *lock.lock().unwrap() = open;
        cv.notify_all();
    }

    /// sshfs options that log in to `sshd` through this gate.
    pub fn sshfs_options(&self, sshd: &Sshd) -> String {
        format!(
            "port={},IdentityFile={},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null",
            self.port,
            sshd.key_path().display()
        )
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.set_open(true);
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
    }
}

fn relay(a: TcpStream, b: TcpStream) {
    let pump = |mut from: TcpStream, mut to: TcpStream| {
        thread::spawn(move || {
            let mut buf = [0u8; 16384];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        })
    };
    let (a2, b2) = (a.try_clone().expect("clone"), b.try_clone().expect("clone"));
    pump(a, b);
    pump(b2, a2);
}

/// A request sent from a thread of its own: the plugin may die under it.
pub fn send_in_background(
    socket: PathBuf,
    endpoint: &'static str,
    body: Value,
) -> thread::JoinHandle<Result<(u16, String), String>> {
    thread::spawn(move || {
        client::try_request(&socket, "POST", endpoint, body.to_string().into_bytes())
            .map(|r| (r.status, r.text()))
    })
}
