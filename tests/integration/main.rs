//! netfs's integration tests, one binary: the real plugin binary or the
//! in-process server on private sockets, a real sshd on 127.0.0.1, real FUSE
//! mounts and a real dockerd. They need root, /dev/fuse and dockerd:
//! `make test` provides all three.

#[path = "../support/mod.rs"]
mod support;

mod activation;
mod backends;
mod bad_input;
mod build_info;
mod concurrency;
mod csi;
mod docker_sshfs;
mod endpoints;
mod faults;
mod fleet;
mod kernel;
mod managed_plugin;
mod metrics;
mod non_root;
mod options;
mod pacing;
mod packaging;
mod processes;
mod rclone_config;
mod reattach;
mod remotes;
mod secrets;
mod shared_ssh;
mod supervision;
