//! Data written through a volume and checked later, on the remote and
//! through the mount: what the fault suites count as "no byte lost".

use std::fs;
use std::path::Path;

/// Deterministic pseudo-random bytes (xorshift), different for each seed.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Files written to a volume, checked later on the remote and through the
/// mount; counts the bytes verified.
#[derive(Default)]
pub struct Ledger {
    files: Vec<(String, Vec<u8>)>,
    pub verified: usize,
}

impl Ledger {
    /// Writes a new file through `mountpoint` and checks it on `remote`.
    pub fn write(&mut self, mountpoint: &Path, remote: &Path, len: usize) {
        let name = format!("file-{}", self.files.len());
        let data = bytes(self.files.len() as u64 + 1, len);
        fs::write(mountpoint.join(&name), &data).expect("write through the mount");
        self.files.push((name, data));
        self.check_remote(remote);
    }

    /// Every file ever written is on the remote, byte for byte.
    pub fn check_remote(&mut self, remote: &Path) {
        for (name, data) in &self.files {
            let got =
                fs::read(remote.join(name)).unwrap_or_else(|e| panic!("{name} on the remote: {e}"));
            assert!(got == *data, "{name} differs on the remote");
            self.verified += data.len();
        }
    }

    /// Bytes written so far.
    pub fn total(&self) -> usize {
        self.files.iter().map(|(_, d)| d.len()).sum()
    }

    /// "N bytes written, M bytes read back and compared on the remote".
    pub fn numbers(&self) -> String {
        format!(
            "{} bytes written, {} bytes read back and compared on the remote",
            self.total(),
            self.verified
        )
    }

    /// ... and reads back the same through the mount.
    pub fn check_mount(&self, mountpoint: &Path) {
        for (name, data) in &self.files {
            let got = fs::read(mountpoint.join(name)).expect("read through the mount");
            assert!(got == *data, "{name} differs through the mount");
        }
    }
}
