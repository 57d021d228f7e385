//! Which sshfs volumes may share one ssh connection: those whose every
//! setting that shapes the connection is the same. Pure logic over the
//! volume's endpoint and options; nothing here starts a process.
//!
//! sshfs hands `CamelCase` options (`IdentityFile=`, `Ciphers=`, ...) to
//! ssh and keeps lower-case ones for itself, so the `CamelCase` ones and
//! every process argument make up the key, and go to the master too.

use std::fmt;

use crate::backend::{Endpoint, Server};
use crate::options::MountOptions;

/// Everything that makes two connections different.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub user: Option<String>,
    pub host: String,
    pub port: u16,
    /// ssh options (`Key=Value`) in the order ssh would read them.
    pub ssh_options: Vec<String>,
    /// sshfs's `-C`: compression on the connection.
    pub compression: bool,
    /// Process arguments that are not ssh options (`-d`, `-s`): they do not
    /// change the connection, but are kept apart to stay on the safe side.
    pub other_args: Vec<String>,
}

impl ConnKey {
    pub fn server(&self) -> Server {
        Server::Tcp {
            host: self.host.clone(),
            port: self.port,
        }
    }

    /// The master's argv, without the control options.
    pub fn ssh_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for option in &self.ssh_options {
            args.push("-o".to_owned());
            args.push(option.clone());
        }
        if self.compression {
            args.push("-C".to_owned());
        }
        args.push("-p".to_owned());
        args.push(self.port.to_string());
        if let Some(user) = &self.user {
            args.push("-l".to_owned());
            args.push(user.clone());
        }
        args
    }
}

impl fmt::Display for ConnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        write!(f, "{}", self.server())
    }
}

/// Why a volume keeps a connection of its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unshared {
    #[error("it logs in with a password")]
    Password,
    #[error("its option {0} cannot be shared")]
    Option(String),
    #[error("its server is not a TCP host")]
    NotTcp,
}

/// Options that make sshfs start ssh differently or several times, or
/// that would fight with netfs's own control options: a volume with one of
/// them keeps its own connection. Matched without regard to case.
pub const UNSHAREABLE: &[&str] = &[
    // sshfs talks to the server some other way than one ssh session.
    "ssh_command",
    "ssh_protocol",
    "directport",
    "slave",
    "passive",
    "max_conns",
    "password_stdin",
    // Multiplexing is netfs's to set up.
    "ControlMaster",
    "ControlPath",
    "ControlPersist",
    // Its own connection path, which the master would then own.
    "ProxyCommand",
    "ProxyJump",
    "ProxyUseFdpass",
    // Interactive or per-session behaviour of a login.
    "PasswordAuthentication",
    "KbdInteractiveAuthentication",
    "NumberOfPasswordPrompts",
];

/// Process arguments that keep a volume on its own connection: another
/// ssh config file, the old protocol.
const UNSHAREABLE_ARGS: &[&str] = &["-F", "-1"];

/// The key of the connection a volume can share, or why it cannot.
pub fn key(
    endpoint: &Endpoint,
    process_args: &[String],
    mount_options: &MountOptions,
    password: bool,
) -> Result<ConnKey, Unshared> {
    if password {
        return Err(Unshared::Password);
    }
    let Server::Tcp { host, port } = &endpoint.server else {
        return Err(Unshared::NotTcp);
    };
    let mut key = ConnKey {
        user: endpoint.user.clone(),
        host: host.clone(),
        port: *port,
        ssh_options: Vec::new(),
        compression: false,
        other_args: Vec::new(),
    };
    let mut items: Vec<(String, Option<String>)> = Vec::new();
    let mut args = process_args.iter();
    while let Some(arg) = args.next() {
        if let Some(bad) = UNSHAREABLE_ARGS.iter().find(|a| arg.starts_with(**a)) {
            return Err(Unshared::Option(bad.to_string()));
        }
        match arg.as_str() {
            "-o" => {
                if let Some(list) = args.next() {
                    items.extend(split_list(list));
                }
            }
            "-p" => {
                args.next();
            }
            "-C" => key.compression = true,
            _ if arg.starts_with("-o") => items.extend(split_list(&arg[2..])),
            _ if arg.starts_with("-p") => {}
            _ => key.other_args.push(arg.clone()),
        }
    }
    items.extend(
        mount_options
            .iter()
            .map(|o| (o.key.clone(), o.value.clone())),
    );
    for (k, v) in items {
        if let Some(bad) = UNSHAREABLE.iter().find(|u| u.eq_ignore_ascii_case(&k)) {
            return Err(Unshared::Option(bad.to_string()));
        }
        if k == "compression" && v.as_deref() == Some("yes") {
            key.compression = true;
        }
        // Port, HostName and User are in the endpoint already.
        let in_endpoint = ["Port", "HostName", "User"].contains(&k.as_str());
        if k.starts_with(|c: char| c.is_ascii_uppercase()) && !in_endpoint {
            if let Some(v) = v {
                key.ssh_options.push(format!("{k}={v}"));
            }
        }
    }
    Ok(key)
}

fn split_list(list: &str) -> impl Iterator<Item = (String, Option<String>)> + '_ {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|item| match item.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (item.to_owned(), None),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(user: Option<&str>, host: &str, port: u16) -> Endpoint {
        Endpoint {
            user: user.map(str::to_owned),
            server: Server::Tcp {
                host: host.into(),
                port,
            },
        }
    }

    fn key_of(args: &[&str], opts: &str) -> Result<ConnKey, Unshared> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        key(
            &endpoint(Some("u"), "h", 22),
            &args,
            &MountOptions::parse(opts).unwrap(),
            false,
        )
    }

    #[test]
    fn sshfs_options_do_not_split_a_connection_ssh_options_do() {
        let a = key_of(&[], "reconnect,cache=no,IdentityFile=/k/a").unwrap();
        let b = key_of(&[], "uid=1000,IdentityFile=/k/a").unwrap();
        assert_eq!(a, b);
        let c = key_of(&[], "IdentityFile=/k/b").unwrap();
        assert_ne!(a, c, "another identity is another connection");
        let d = key_of(&["-C"], "IdentityFile=/k/a").unwrap();
        assert_ne!(a, d, "compression changes the connection");
        assert_eq!(
            a.ssh_args(),
            ["-o", "IdentityFile=/k/a", "-p", "22", "-l", "u"]
        );
    }

    #[test]
    fn users_and_ports_never_share() {
        let opts = MountOptions::parse("").unwrap();
        let a = key(&endpoint(Some("u"), "h", 22), &[], &opts, false).unwrap();
        let b = key(&endpoint(Some("v"), "h", 22), &[], &opts, false).unwrap();
        let c = key(&endpoint(Some("u"), "h", 2222), &[], &opts, false).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "u@h:22");
    }

    #[test]
    fn what_cannot_be_shared_keeps_its_own_connection() {
        let opts = MountOptions::parse("").unwrap();
        assert_eq!(
            key(&endpoint(None, "h", 22), &[], &opts, true),
            Err(Unshared::Password)
        );
        assert_eq!(
            key_of(&[], "ssh_command=x"),
            Err(Unshared::Option("ssh_command".into()))
        );
        assert_eq!(
            key_of(&[], "controlpath=/x"),
            Err(Unshared::Option("ControlPath".into()))
        );
        assert_eq!(
            key_of(&["-o", "ProxyJump=j"], ""),
            Err(Unshared::Option("ProxyJump".into()))
        );
        assert_eq!(
            key_of(&["-F", "/x"], ""),
            Err(Unshared::Option("-F".into()))
        );
        let rclone = Endpoint {
            user: None,
            server: Server::RcloneRemote("r".into()),
        };
        assert_eq!(key(&rclone, &[], &opts, false), Err(Unshared::NotTcp));
    }
}
