//! The kernel's `/proc` files, parsed in one place for netfs, its tests and
//! its benchmark: mountinfo lines, a process's `stat`, `cmdline`, `environ`
//! and `status`, the list of pids. Plain reads: nothing here caches or acts.

use std::fs;
use std::io;
use std::path::PathBuf;

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    /// `fuse.sshfs`, `tmpfs`, ... (empty if the line has no ` - ` part).
    pub fs_type: String,
    pub source: String,
    /// The file system's device number, `major:minor` as the kernel
    /// writes it: a dead FUSE mount keeps its number while it is held.
    pub device: String,
    /// The directory of the file system this mount shows (`/` for all of
    /// it, `/sub` for a bind of a subdirectory).
    pub root: PathBuf,
    /// Per-mount options: `rw` or `ro`, `nosuid`, `nodev`, `noexec`, ...
    pub mount_options: String,
}

impl MountEntry {
    /// True if `option` is among the per-mount options.
    pub fn has_option(&self, option: &str) -> bool {
        self.mount_options.split(',').any(|o| o == option)
    }
}

/// Every line of a mountinfo text, in its order (the last mount at a path
/// is the topmost).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    // Fields are separated by single spaces; spaces inside a field are
    // escaped, so ` - ` only ever ends the optional fields.
    let (left, right) = line.split_once(" - ").unwrap_or((line, ""));
    let mut left = left.split(' ').skip(2);
    let device = left.next()?;
    let root = left.next()?;
    let mount_point = left.next()?;
    let mount_options = left.next().unwrap_or("");
    let mut right = right.split(' ');
    Some(MountEntry {
        mount_point: PathBuf::from(unescape(mount_point)),
        fs_type: right.next().unwrap_or("").to_owned(),
        source: unescape(right.next().unwrap_or("")),
        device: device.to_owned(),
        root: PathBuf::from(unescape(root)),
        mount_options: mount_options.to_owned(),
    })
}

/// This process's mount table, read now.
pub fn mountinfo() -> io::Result<Vec<MountEntry>> {
    Ok(parse_mountinfo(&fs::read_to_string(MOUNTINFO)?))
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`,
/// `\134` for a backslash); anything else stays as written.
pub fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .and_then(|d| {
                let value = u32::from(d[0] - b'0') * 64
                    + u32::from(d[1] - b'0') * 8
                    + u32::from(d[2] - b'0');
                u8::try_from(value).ok()
            });
        match octal {
            Some(byte) if bytes[i] == b'\\' => {
                out.push(byte);
                i += 4;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What `/proc/<pid>/stat` says of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// The command name, as the kernel keeps it (at most 15 bytes).
    pub comm: String,
    /// `R`, `S`, ..., `Z` for a zombie.
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    /// CPU time in user and in kernel mode, in clock ticks.
    pub utime: u64,
    pub stime: u64,
    /// The same for the children it has waited for (and theirs, as far as
    /// each waited for its own).
    pub cutime: u64,
    pub cstime: u64,
}

impl ProcStat {
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }

    /// Parses the text of a stat file.
    pub fn parse(text: &str) -> Option<Self> {
        // The command name may hold spaces and parentheses: it runs from
        // the first '(' to the last ')'.
        let open = text.find('(')?;
        let close = text.rfind(')')?;
        let comm = text.get(open + 1..close)?.to_owned();
        let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
        // Counted from the state (field 3 in proc(5)).
        let field = |i: usize| fields.get(i).copied();
        Some(Self {
            comm,
            state: field(0)?.chars().next()?,
            ppid: field(1)?.parse().ok()?,
            pgrp: field(2)?.parse().ok()?,
            utime: field(11)?.parse().ok()?,
            stime: field(12)?.parse().ok()?,
            cutime: field(13)?.parse().ok()?,
            cstime: field(14)?.parse().ok()?,
        })
    }
}

/// Clock ticks per second, the unit of [`ProcStat`]'s CPU times.
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) };
    hz.max(1) as f64
}

/// `/proc/<pid>/stat`, if the process exists.
pub fn stat(pid: i32) -> Option<ProcStat> {
    ProcStat::parse(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// True if `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|s| !s.is_zombie())
}

/// Every pid in this pid namespace's `/proc` (empty if it cannot be read).
pub fn pids() -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The children of every thread of this process, from
/// `/proc/self/task/*/children`; `None` where the kernel has no such file
/// (built without `CONFIG_PROC_CHILDREN`). A snapshot that may miss a
/// child that changes parent while it is read.
pub fn own_children() -> Option<Vec<i32>> {
    let tasks = fs::read_dir("/proc/self/task").ok()?;
    let mut children = Vec::new();
    for task in tasks.flatten() {
        match fs::read_to_string(task.path().join("children")) {
            Ok(list) => children.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            ),
            // A thread that ended while the list was read.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && task.path().exists() => {
                return None
            }
            Err(_) => {}
        }
    }
    Some(children)
}

/// Splits a NUL-separated list (`cmdline`, `environ`) into its entries.
pub fn nul_separated(raw: &[u8]) -> Vec<String> {
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The argv of `pid` (empty for a zombie, a kernel thread or a gone pid).
pub fn cmdline(pid: i32) -> Vec<String> {
    nul_separated(&fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
}

/// `/proc/<pid>/environ`, raw (readable only for processes of the same
/// user, or as root).
pub fn environ(pid: i32) -> Option<Vec<u8>> {
    fs::read(format!("/proc/{pid}/environ")).ok()
}

/// The value of `key` in an environment as `environ` holds it
/// (`KEY=value`, NUL-separated); `None` if unset or not UTF-8.
pub fn env_var<'a>(environ: &'a [u8], key: &str) -> Option<&'a str> {
    environ.split(|b| *b == 0).find_map(|var| {
        let value = var.strip_prefix(key.as_bytes())?.strip_prefix(b"=")?;
        std::str::from_utf8(value).ok()
    })
}

/// The value of `key` in a `status` text (`VmRSS`, `NSpid`, ...), trimmed.
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        Some(value.trim())
    })
}

/// `/proc/<pid>/status`, if the process exists.
pub fn status(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/status")).ok()
}

/// A size field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`) in KiB.
pub fn status_kib(pid: i32, key: &str) -> Option<u64> {
    status_field(&status(pid)?, key)?
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// File descriptors this process holds open (the one reading
/// `/proc/self/fd` is not counted).
pub fn open_fds() -> io::Result<u64> {
    let entries = fs::read_dir("/proc/self/fd")?.count() as u64;
    Ok(entries.saturating_sub(1))
}

/// This process's soft limit of open files (`Max open files` in
/// `/proc/self/limits`); `None` if unlimited or unreadable.
pub fn max_open_files() -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    parse_max_open_files(&limits)
}

fn parse_max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_unescapes_mountinfo() {
        let text = "22 1 0:21 / / rw - ext4 /dev/vda rw\n\
                    90 22 0:50 / /mnt/volumes/my\\040vol rw,nosuid shared:1 - fuse.sshfs u@h:/x\\040y rw\n\
                    91 22 0:51 / /a\\134b rw - tmpfs t rw\n\
                    92 22 0:52 / /no-separator rw\n";
        let entries = parse_mountinfo(text);
        let points: Vec<_> = entries.iter().map(|e| e.mount_point.clone()).collect();
        assert_eq!(
            points,
            [
                PathBuf::from("/"),
                PathBuf::from("/mnt/volumes/my vol"),
                PathBuf::from("/a\\b"),
                PathBuf::from("/no-separator"),
            ]
        );
        assert_eq!(entries[1].fs_type, "fuse.sshfs");
        assert_eq!(entries[1].source, "u@h:/x y");
        assert_eq!(entries[1].device, "0:50");
        assert_eq!(entries[1].root, PathBuf::from("/"));
        assert!(entries[1].has_option("nosuid") && !entries[1].has_option("ro"));
        assert_eq!(entries[3].fs_type, "");
    }

    #[test]
    fn only_three_octal_digits_are_an_escape() {
        assert_eq!(unescape(r"/a\040b\011c\134d"), "/a b\tc\\d");
        assert_eq!(unescape(r"/plain\x"), r"/plain\x");
        assert_eq!(unescape(r"/a\+12"), r"/a\+12");
        assert_eq!(unescape(r"/a\400"), r"/a\400");
        assert_eq!(unescape(r"/end\04"), r"/end\04");
    }

    #[test]
    fn this_process_reads_its_own_mount_table() {
        let table = mountinfo().unwrap();
        assert!(table
            .iter()
            .any(|e| e.mount_point == std::path::Path::new("/proc")));
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_is_skipped_whole() {
        let text = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 11 5 20 0 1 0 5 1 1\n";
        let s = ProcStat::parse(text).unwrap();
        assert_eq!(s.comm, "a (b) c");
        assert_eq!((s.state, s.ppid, s.pgrp), ('S', 1, 4242));
        assert_eq!((s.utime, s.stime, s.cutime, s.cstime), (7, 3, 11, 5));
        assert!(!s.is_zombie());
        assert!(
            ProcStat::parse("1 (x) Z 0").is_none(),
            "a cut line is not a stat"
        );
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id() as i32;
        let s = stat(me).unwrap();
        assert_eq!(s.ppid, nix::unistd::getppid().as_raw());
        assert!(alive(me));
        assert!(pids().contains(&me));
        assert!(!cmdline(me).is_empty());
        assert!(environ(me).is_some());
        assert!(status_kib(me, "VmRSS").is_some_and(|kib| kib > 0));
    }

    #[test]
    fn status_fields_by_exact_key() {
        let status = "Name:\tsh\nVmRSS:\t    1234 kB\nNSpid:\t77\t1\n";
        assert_eq!(status_field(status, "VmRSS"), Some("1234 kB"));
        assert_eq!(status_field(status, "NSpid"), Some("77\t1"));
        assert_eq!(status_field(status, "VmRS"), None);
        assert_eq!(nul_separated(b"a\0b c\0\0"), ["a", "b c"]);
        let env = b"PATH=/bin\0XKEY=1\0KEY=a=b\0EMPTY=\0";
        assert_eq!(env_var(env, "KEY"), Some("a=b"));
        assert_eq!(env_var(env, "EMPTY"), Some(""));
        assert_eq!(env_var(env, "PAT"), None);
    }

    #[test]
    fn reads_the_soft_limit_of_open_files() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_open_files(limits), Some(1024));
        assert_eq!(
            parse_max_open_files("Max open files unlimited unlimited files"),
            None
        );
        assert!(open_fds().is_ok_and(|n| n >= 3));
    }
}
