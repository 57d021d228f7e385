//! Why a volume's process could not be had, in words a `docker run` user can
//! act on: each error names the tool and ends with what it wrote on stderr.

use crate::connections::NotUp;
pub use crate::output::Tail;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {program}: {reason}")]
    Spawn { program: String, reason: String },
    #[error("cannot prepare mountpoint {path}: {reason}")]
    Mountpoint { path: String, reason: String },
    #[error("{program} exited ({status}) before the volume was mounted{detail}")]
    Exited {
        program: String,
        status: String,
        /// What it wrote on stderr (`": line; line"`), then maybe a hint.
        detail: String,
    },
    #[error("{program} did not mount the volume within {timeout}{detail}")]
    Timeout {
        program: String,
        timeout: String,
        /// What the mountpoint said last, what the tool wrote, a hint.
        detail: String,
    },
    #[error(
        "waited {timeout} for a turn to start: the {limit} start-ups to {server} allowed at \
         once (--max-startups-per-endpoint) did not finish in that time; is the server slow \
         or unreachable?"
    )]
    NoTurn {
        server: String,
        limit: usize,
        timeout: String,
    },
    /// The server refused the tool's ssh a session on the shared
    /// connection it was started on: classified from the tool's stderr as
    /// soon as it says so (see `connections::refused_session`).
    #[error("the server refused {program} a session on its shared ssh connection{detail}")]
    SessionRefused { program: String, detail: String },
    #[error(transparent)]
    Connection(#[from] NotUp),
    #[error("the volume was stopped while it was being mounted")]
    Stopped,
    #[error("the volume's supervisor is gone (netfs is shutting down)")]
    Gone,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_end_with_the_tools_own_words() {
        let e = ProcessError::Exited {
            program: "sshfs".into(),
            status: "exit status 1".into(),
            detail: Tail(vec!["read: Connection reset by peer".into()]).to_string(),
        };
        assert_eq!(
            e.to_string(),
            "sshfs exited (exit status 1) before the volume was mounted: read: Connection reset by peer"
        );
        let e = ProcessError::Timeout {
            program: "sshfs".into(),
            timeout: "5s".into(),
            detail: Tail::default().to_string(),
        };
        assert_eq!(e.to_string(), "sshfs did not mount the volume within 5s");
    }
}
