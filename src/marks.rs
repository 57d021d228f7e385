//! The environment variables that mark a process as one this netfs started:
//! the mount root of the netfs that started it, and the volume or shared
//! connection it serves. The next start finds an earlier run's leftovers by
//! them (`driver::leftovers`) and never touches a process without them.

/// The mount root of the netfs that started the process.
pub const MARK_ROOT: &str = "NETFS_MOUNT_ROOT";
/// The volume a tool serves.
pub const MARK_VOLUME: &str = "NETFS_VOLUME";
/// The shared ssh connection (its id) a master is.
pub const MARK_CONNECTION: &str = "NETFS_CONNECTION";
