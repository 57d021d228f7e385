//! Where a volume's tool connects, read from its backend, source and
//! options as the tool itself would: the server its start-up is paced
//! against (see `crate::pacing`). Only what can be known without running
//! anything: an ssh alias from `~/.ssh/config` counts as a host of its own,
//! a named rclone remote whose settings are in a config file as a server
//! of its own, and a `command` tool as none at all.

use std::fmt;

use super::{BackendKind, CommandInputs};
use crate::options::MountOptions;

/// The server a tool opens its connection to. Pacing counts start-ups per
/// server, not per login: a server's limit on unauthenticated connections
/// (`MaxStartups`) counts every user's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Server {
    /// A TCP server; `host` lower-cased, without IPv6 brackets.
    Tcp { host: String, port: u16 },
    /// A named rclone remote whose server netfs cannot see.
    RcloneRemote(String),
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Self::Tcp { host, port } => write!(f, "{host}:{port}"),
            Self::RcloneRemote(name) => write!(f, "rclone remote {name}:"),
        }
    }
}

/// A volume's remote endpoint: who logs in where.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The login name, when the volume names one.
    pub user: Option<String>,
    pub server: Server,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user {
            Some(user) => write!(f, "{user}@{}", self.server),
            None => self.server.fmt(f),
        }
    }
}

const SSH_PORT: u16 = 22;
const FTP_PORT: u16 = 21;
const NFS_PORT: u16 = 2049;

/// The endpoint of a volume, if its tool connects to a server netfs can
/// name. `None` for `command` and for rclone backends that are not a
/// login to a server (`:local:`, object stores).
pub fn endpoint(kind: BackendKind, req: &CommandInputs<'_>) -> Option<Endpoint> {
    let source = req.source?;
    match kind {
        BackendKind::Sshfs => sshfs(source, &req.process_args(), &req.mount_options),
        BackendKind::Rclone => rclone(source, &req.mount_options, &|name| std::env::var(name).ok()),
        BackendKind::Nfs => nfs(source, &req.mount_options),
        BackendKind::Command => None,
    }
}

/// `[user@]host:[path]` (`[v6addr]:path` too) with `-p PORT`, `port=`,
/// `Port=`, `HostName=`, `User=` and `directport=` from the process and
/// mount options. ssh keeps the first value it is given and the process
/// options come first in sshfs's argv, so the first one found wins.
fn sshfs(source: &str, args: &[String], options: &MountOptions) -> Option<Endpoint> {
    let (user, host) = split_login(source)?;
    let mut found: Vec<(String, String)> = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "-p" || arg == "-o" {
            let Some(value) = args.next() else { break };
            if arg == "-p" {
                found.push(("port".into(), value.clone()));
            } else {
                found.extend(mtab_items(value));
            }
        } else if let Some(port) = arg.strip_prefix("-p") {
            found.push(("port".into(), port.to_owned()));
        } else if let Some(list) = arg.strip_prefix("-o") {
            found.extend(mtab_items(list));
        }
    }
    found.extend(
        options
            .iter()
            .filter_map(|o| Some((o.key.clone(), o.value.clone()?))),
    );
    let first = |key: &str| {
        found
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    };
    let port = first("directport")
        .or_else(|| first("port"))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(SSH_PORT);
    let host = first("hostname").unwrap_or(host);
    let user = first("user").or(user);
    Some(Endpoint {
        user: user.map(str::to_owned),
        server: tcp(host, port)?,
    })
}

/// `server:/export` with the server's `port=`; NFS's own default otherwise.
fn nfs(source: &str, options: &MountOptions) -> Option<Endpoint> {
    let (_, host) = split_login(source)?;
    let port = options
        .get("port")
        .and_then(|o| o.value.as_deref()?.parse().ok())
        .filter(|p| *p != 0)
        .unwrap_or(NFS_PORT);
    Some(Endpoint {
        user: None,
        server: tcp(host, port)?,
    })
}

/// An on-the-fly remote (`:sftp,host=h,user=u,port=p:path`), a named one
/// with overrides (`name,host=h:path`), or a plain named remote whose
/// settings come from `RCLONE_CONFIG_<NAME>_*` variables or, failing that,
/// from a config file netfs does not read: then the name is the server.
/// `--sftp-host=...` style flags (mount options `sftp-host=...`) count too.
fn rclone(
    source: &str,
    options: &MountOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Endpoint> {
    let (remote, params) = split_remote(source)?;
    let (kind, name) = match remote.strip_prefix(':') {
        Some(kind) => (Some(kind.to_ascii_lowercase()), None),
        None => {
            let var = |key: &str| env(&format!("RCLONE_CONFIG_{}_{key}", remote.to_uppercase()));
            (var("TYPE").map(|t| t.to_ascii_lowercase()), Some(var))
        }
    };
    let kind = kind.as_deref();
    // A setting of the remote: connection string first, then the flag
    // (`--sftp-host`) or its variable (`RCLONE_SFTP_HOST`), then a variable
    // of the named remote.
    let setting = |key: &str| -> Option<String> {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
            .or_else(|| {
                let flag = format!("{}-{key}", kind?);
                options.get(&flag).and_then(|o| o.value.clone())
            })
            .or_else(|| env(&format!("RCLONE_{}_{key}", kind?).to_uppercase()))
            .or_else(|| name.as_ref().and_then(|var| var(&key.to_uppercase())))
    };
    let by_name = || Endpoint {
        user: None,
        server: Server::RcloneRemote(remote.to_owned()),
    };
    let default_port = match kind {
        Some("sftp") => SSH_PORT,
        Some("ftp") => FTP_PORT,
        // Not a login to a server that throttles them: local disk, object
        // stores, HTTP.
        Some(_) => return None,
        // A named remote whose type netfs cannot see.
        None => return Some(by_name()),
    };
    let Some(host) = setting("host") else {
        return name.is_some().then(by_name);
    };
    let port = setting("port")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(default_port);
    Some(Endpoint {
        user: setting("user"),
        server: tcp(&host, port)?,
    })
}

fn tcp(host: &str, port: u16) -> Option<Server> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| Server::Tcp {
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// `[user@]host` of `[user@]host:path`, a bracketed IPv6 host kept whole.
fn split_login(source: &str) -> Option<(Option<&str>, &str)> {
    let mut depth = 0;
    let end = source.char_indices().find_map(|(i, c)| {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => return Some(i),
            _ => {}
        }
        None
    })?;
    let dest = &source[..end];
    Some(match dest.rsplit_once('@') {
        Some((user, host)) => ((!user.is_empty()).then_some(user), host),
        None => (None, dest),
    })
}

/// `remote` and its `key=value` parameters from `remote,k=v,k="v:w":path`.
fn split_remote(source: &str) -> Option<(&str, Vec<(String, String)>)> {
    let (head, body) = match source.strip_prefix(':') {
        Some(rest) => (1, rest),
        None => (0, source),
    };
    let name_end = body.find([',', ':'])?;
    let remote = &source[..head + name_end];
    let mut params = Vec::new();
    let mut rest = &body[name_end..];
    while let Some(tail) = rest.strip_prefix(',') {
        let eq = tail.find('=')?;
        let key = tail[..eq].to_owned();
        let after = &tail[eq + 1..];
        let (value, next) = match after.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let close = after[1..].find(q)? + 1;
                (after[1..close].to_owned(), &after[close + 1..])
            }
            _ => {
                let end = after.find([',', ':']).unwrap_or(after.len());
                (after[..end].to_owned(), &after[end..])
            }
        };
        params.push((key, value));
        rest = next;
    }
    rest.starts_with(':').then_some((remote, params))
}

/// `a=1,b=2` as (key, value) pairs; flags have no value and are skipped.
fn mtab_items(list: &str) -> impl Iterator<Item = (String, String)> + '_ {
    list.split(',')
        .filter_map(|item| item.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
}

#[cfg(test)]
mod tests;
