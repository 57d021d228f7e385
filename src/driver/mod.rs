//! The volume driver: what each protocol call does to the volume table, the
//! state file and the volumes' supervisors. It never sees HTTP.

mod csi;
mod leftovers;
mod status;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::OwnedMutexGuard;

use crate::backend::{self, BackendError, BackendSettings, Request, Server};
use crate::config::{Config, Lifecycle};
use crate::connections::{self, Connections};
use crate::mounts;
use crate::name::{NameError, VolumeName};
use crate::options::{BackendKind, OptionError, Placeholders, VolumeOptions};
use crate::pacing::Gate;
use crate::protocol::Volume;
use crate::state::{self, Setup, StateError, StateStore, VolumeRecord, Volumes};
use crate::supervisor::{Policy, ProcessError, ProcessSpec, Shared, SupervisorHandle};

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("volume {name}: {source}")]
    Options { name: String, source: OptionError },
    #[error("volume {name}: {source}")]
    Backend { name: String, source: BackendError },
    #[error("no such volume: {0}")]
    NotFound(String),
    #[error("volume {name} is in use by {count} container(s); stop them before removing it")]
    InUse { name: String, count: usize },
    #[error("volume {name}: {source}")]
    Process { name: String, source: ProcessError },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("volume {name} cannot be used: {reason}; remove it, or change the plugin's settings and restart netfs")]
    Refused { name: String, reason: String },
}

/// One volume in memory: its stored record plus what runs for it.
struct Entry {
    record: VolumeRecord,
    mount_point: PathBuf,
    command: String,
    handle: SupervisorHandle,
    /// Supervisor generation at which each mount ID was taken.
    mounted_at: HashMap<String, u64>,
    /// Serialises Create/Remove/Mount/Unmount of this volume.
    busy: Arc<tokio::sync::Mutex<()>>,
    /// False until Create has finished; such an entry only reserves the name.
    ready: bool,
    /// Why a stored volume may not run under the plugin's current settings
    /// (an option now denied, a backend setting now missing). It stays
    /// listed and stored, refuses Mount, and can be removed.
    refused: Option<String>,
}

#[derive(Default)]
struct Table {
    entries: BTreeMap<VolumeName, Entry>,
    generation: u64,
}

pub struct Driver {
    config: Arc<Config>,
    store: StateStore,
    table: Mutex<Table>,
    /// Start-ups take turns per server, across all volumes.
    pacing: Arc<Gate<Server>>,
    /// Shared ssh connections, when sharing is on.
    connections: Option<Arc<Connections>>,
}

impl Driver {
    /// Loads the state file; refuses to start on a corrupt one.
    pub fn open(config: Arc<Config>) -> Result<(Self, Volumes), StateError> {
        let volumes = state::load(&config.state_file)?;
        let store = StateStore::new(config.state_file.clone());
        let pacing = Arc::new(Gate::new(config.max_startups_per_endpoint));
        let sharing = config.share_ssh_connections;
        let sessions = sharing.then_some(config.ssh_sessions_per_connection);
        let connections = sessions.and_then(|sessions| {
            let settings = connections::Settings {
                ssh: "ssh".into(),
                dir: control_dir(&config.state_file),
                sessions,
                connect_timeout: config.mount_timeout,
                stop_timeout: config.stop_timeout,
                mark_root: config.mount_root.clone(),
                pacing: pacing.clone(),
            };
            let dir = settings.dir.clone();
            Connections::new(settings)
                .inspect_err(|e| {
                    tracing::error!(
                        dir = %dir.display(), error = %e,
                        "cannot make the directory of the ssh control sockets; \
                         every volume gets a connection of its own"
                    )
                })
                .ok()
        });
        let driver = Self {
            connections,
            pacing,
            config,
            store,
            table: Mutex::new(Table::default()),
        };
        Ok((driver, volumes))
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn policy(&self) -> Policy {
        Policy {
            mount_timeout: self.config.mount_timeout,
            stop_timeout: self.config.stop_timeout,
            recovery: self.config.recovery,
            max_restarts_per_min: self.config.recovery_max_per_min,
            health_interval: Duration::from_secs(2),
            pacing: self.pacing.clone(),
        }
    }

    /// Builds the in-memory entry (and its idle supervisor) for a record.
    fn entry(&self, name: &VolumeName, record: VolumeRecord) -> Result<Entry, DriverError> {
        let mount_point = self.config.mount_root.join(name.as_str());
        let (kind, opts) = match &record.setup {
            Setup::Valid { backend, options } => (*backend, options),
            Setup::Unaccepted { reason, .. } => {
                return Err(DriverError::Refused {
                    name: name.to_string(),
                    reason: reason.clone(),
                })
            }
        };
        let settings = BackendSettings {
            command_binary: self.config.command_binary.clone(),
            command_mount_option_flag: self.config.command_mount_option_flag.clone(),
        };
        let request = Request {
            name: name.as_str(),
            source: opts.source.as_deref(),
            mount_point: &mount_point,
            process_options: self.config.process_options.concat(&opts.process_options),
            mount_options: self.config.mount_options.merge(&opts.mount_options),
            password: opts.password.as_ref(),
            settings: &settings,
        };
        let invocation = backend::build(kind, &request).map_err(|source| DriverError::Backend {
            name: name.to_string(),
            source,
        })?;
        let command = invocation.display();
        let endpoint = backend::endpoint(kind, &request);
        let shared = self.shared(name, kind, &request, endpoint.as_ref());
        let spec = ProcessSpec {
            name: name.clone(),
            mount_point: mount_point.clone(),
            invocation,
            endpoint,
            shared,
        };
        Ok(Entry {
            record,
            mount_point,
            command,
            handle: SupervisorHandle::new(spec, self.policy()),
            mounted_at: HashMap::new(),
            busy: Arc::new(tokio::sync::Mutex::new(())),
            ready: true,
            refused: None,
        })
    }

    /// The shared connection a volume runs through, if sharing is on and
    /// it can share.
    fn shared(
        &self,
        name: &VolumeName,
        kind: BackendKind,
        request: &Request<'_>,
        endpoint: Option<&backend::Endpoint>,
    ) -> Option<Shared> {
        let pool = self.connections.as_ref()?;
        if kind != BackendKind::Sshfs {
            return None;
        }
        let args = request.process_args();
        let has_password = request.password.is_some();
        match connections::key(endpoint?, &args, &request.mount_options, has_password) {
            Ok(key) => Some(Shared {
                pool: pool.clone(),
                key,
            }),
            Err(why) => {
                tracing::info!(volume = %name, reason = %why, "volume keeps an ssh connection of its own");
                None
            }
        }
    }

    /// The entry of a stored volume that may not run: it keeps its record
    /// (so the state file keeps it) and a supervisor that is never started.
    fn refused_entry(&self, name: &VolumeName, record: VolumeRecord, reason: String) -> Entry {
        let mount_point = self.config.mount_root.join(name.as_str());
        let invocation = backend::Invocation {
            program: String::new(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            hints: &[],
        };
        let spec = ProcessSpec {
            name: name.clone(),
            mount_point: mount_point.clone(),
            invocation,
            endpoint: None,
            shared: None,
        };
        Entry {
            record,
            mount_point,
            command: String::new(),
            handle: SupervisorHandle::new(spec, self.policy()),
            mounted_at: HashMap::new(),
            busy: Arc::new(tokio::sync::Mutex::new(())),
            ready: true,
            refused: Some(reason),
        }
    }

    /// Checks a volume's options against the plugin's option policy, as
    /// the tool of its type will get them.
    fn check_policy(
        &self,
        name: &VolumeName,
        options: &VolumeOptions,
        kind: BackendKind,
    ) -> Result<(), OptionError> {
        let mount_point = self.config.mount_root.join(name.as_str());
        let places = Placeholders {
            mount_point: &mount_point.to_string_lossy(),
            source: "",
            name: name.as_str(),
        };
        Ok(self.config.policy.check(options, kind, &places)?)
    }

    /// Writes the table as it is now, encoded under the lock straight from
    /// the entries (no copy of them).
    async fn persist(&self) -> Result<(), StateError> {
        let (generation, doc) = {
            let mut table = self.table();
            table.generation += 1;
            let ready = table
                .entries
                .iter()
                .filter(|(_, e)| e.ready)
                .map(|(n, e)| (n, &e.record));
            (table.generation, self.store.encode(ready)?)
        };
        self.store.save(generation, doc).await
    }

    /// After a failed write was undone in memory: another call's write may
    /// have caught the change meanwhile, so the state is written again
    /// (best effort: the disk may still be full; the next change retries).
    async fn persist_after_rollback(&self) {
        if let Err(e) = self.persist().await {
            tracing::warn!(error = %e, "cannot write the state back after undoing a change");
        }
    }

    /// Locks one volume for an operation; fails if it does not exist.
    async fn lock(&self, name: &str) -> Result<(VolumeName, OwnedMutexGuard<()>), DriverError> {
        let name = VolumeName::parse(name)?;
        let busy = {
            let table = self.table();
            let entry = table
                .entries
                .get(&name)
                .ok_or_else(|| DriverError::NotFound(name.to_string()))?;
            entry.busy.clone()
        };
        let guard = busy.lock_owned().await;
        match self.table().entries.get(&name) {
            Some(e) if e.ready => Ok((name, guard)),
            _ => Err(DriverError::NotFound(name.to_string())),
        }
    }

    fn with_entry<T>(
        &self,
        name: &VolumeName,
        f: impl FnOnce(&mut Entry) -> T,
    ) -> Result<T, DriverError> {
        let mut table = self.table();
        let entry = table
            .entries
            .get_mut(name)
            .ok_or_else(|| DriverError::NotFound(name.to_string()))?;
        Ok(f(entry))
    }

    pub async fn create(
        &self,
        name: &str,
        opts: BTreeMap<String, String>,
    ) -> Result<(), DriverError> {
        let name = VolumeName::parse(name)?;
        let bad = |source| DriverError::Options {
            name: name.to_string(),
            source,
        };
        let options = VolumeOptions::parse(&opts).map_err(bad)?;
        let kind = options.kind.unwrap_or(self.config.default_type);
        self.check_policy(&name, &options, kind).map_err(bad)?;
        let record = VolumeRecord {
            setup: Setup::Valid {
                backend: kind,
                options,
            },
            created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            mount_ids: Default::default(),
        };
        loop {
            if self.table().entries.get(&name).is_some_and(|e| e.ready) {
                return Ok(());
            }
            let mut entry = self.entry(&name, record.clone())?;
            let guard = entry
                .busy
                .clone()
                .try_lock_owned()
                .expect("a new lock is free");
            let existing = {
                let mut table = self.table();
                match table.entries.get(&name) {
                    Some(e) => Some(e.busy.clone()),
                    None => {
                        entry.ready = false;
                        table.entries.insert(name.clone(), entry);
                        None
                    }
                }
            };
            if let Some(busy) = existing {
                // Someone else holds or is creating this name: once they are
                // done, an existing volume makes Create a no-op, as for
                // Docker's local driver.
                let _wait = busy.lock_owned().await;
                if self.table().entries.get(&name).is_some_and(|e| e.ready) {
                    return Ok(());
                }
                continue;
            }
            let result = self.finish_create(&name).await;
            drop(guard);
            return result;
        }
    }

    async fn finish_create(&self, name: &VolumeName) -> Result<(), DriverError> {
        let (handle, mount_point) =
            self.with_entry(name, |e| (e.handle.clone(), e.mount_point.clone()))?;
        let started = match self.config.lifecycle {
            Lifecycle::Volume => handle.start().await,
            Lifecycle::Mount => Ok(()),
        };
        let result = match started {
            Ok(()) => {
                self.with_entry(name, |e| e.ready = true)?;
                self.persist().await.map_err(DriverError::from)
            }
            Err(source) => Err(DriverError::Process {
                name: name.to_string(),
                source,
            }),
        };
        if let Err(e) = &result {
            tracing::warn!(volume = %name, error = %e, "create failed; nothing kept");
            handle.stop().await;
            let persisted = self.table().entries.remove(name).is_some_and(|e| e.ready);
            remove_mount_point(&mount_point);
            if persisted {
                self.persist_after_rollback().await;
            }
        } else {
            tracing::info!(volume = %name, "created");
        }
        result
    }

    pub async fn remove(&self, name: &str) -> Result<(), DriverError> {
        let (name, _guard) = self.lock(name).await?;
        let (handle, mount_point, in_use) = self.with_entry(&name, |e| {
            (
                e.handle.clone(),
                e.mount_point.clone(),
                e.record.mount_ids.len(),
            )
        })?;
        if in_use > 0 {
            return Err(DriverError::InUse {
                name: name.to_string(),
                count: in_use,
            });
        }
        // The state forgets the volume first: if that cannot be written the
        // volume is left whole and running. A crash after it leaves a tool
        // that the next start kills (see `leftovers`).
        self.with_entry(&name, |e| e.ready = false)?;
        if let Err(e) = self.persist().await {
            self.with_entry(&name, |e| e.ready = true)?;
            self.persist_after_rollback().await;
            return Err(e.into());
        }
        handle.stop().await;
        remove_mount_point(&mount_point);
        self.table().entries.remove(&name);
        tracing::info!(volume = %name, "removed");
        Ok(())
    }

    pub async fn mount(&self, name: &str, id: &str) -> Result<String, DriverError> {
        let (name, _guard) = self.lock(name).await?;
        let (handle, refused) =
            self.with_entry(&name, |e| (e.handle.clone(), e.refused.clone()))?;
        if let Some(reason) = refused {
            return Err(DriverError::Refused {
                name: name.to_string(),
                reason,
            });
        }
        handle
            .start()
            .await
            .map_err(|source| DriverError::Process {
                name: name.to_string(),
                source,
            })?;
        let generation = handle.status().generation;
        let (mount_point, new) = self.with_entry(&name, |e| {
            let new = e.record.mount_ids.insert(id.to_owned());
            e.mounted_at.insert(id.to_owned(), generation);
            (e.mount_point.clone(), new)
        })?;
        if let Err(e) = self.persist().await {
            // Docker does not Unmount a Mount that failed: an ID kept here
            // would hold the volume "in use" forever.
            if new {
                let left = self.with_entry(&name, |e| {
                    e.record.mount_ids.remove(id);
                    e.mounted_at.remove(id);
                    e.record.mount_ids.len()
                })?;
                if left == 0 && self.config.lifecycle == Lifecycle::Mount {
                    handle.stop().await;
                }
                self.persist_after_rollback().await;
            }
            return Err(e.into());
        }
        Ok(mount_point.to_string_lossy().into_owned())
    }

    pub async fn unmount(&self, name: &str, id: &str) -> Result<(), DriverError> {
        let (name, _guard) = self.lock(name).await?;
        let (handle, taken, left) = self.with_entry(&name, |e| {
            let generation = e.mounted_at.remove(id);
            let known = e.record.mount_ids.remove(id);
            (
                e.handle.clone(),
                known.then_some(generation),
                e.record.mount_ids.len(),
            )
        })?;
        // An unknown ID changes nothing to write (Docker may retry).
        if let Some(generation) = taken {
            if let Err(e) = self.persist().await {
                // Undone like a failed Mount, so memory agrees with the disk:
                // Docker keeps the ID of an Unmount that failed and sends it
                // again at the container's next stop (or Mount, then Unmount).
                self.with_entry(&name, |e| {
                    e.record.mount_ids.insert(id.to_owned());
                    if let Some(g) = generation {
                        e.mounted_at.insert(id.to_owned(), g);
                    }
                })?;
                self.persist_after_rollback().await;
                return Err(e.into());
            }
        }
        // Stopped only once the release is recorded: a refused Unmount
        // leaves the volume as it was, mounted.
        if left == 0 && self.config.lifecycle == Lifecycle::Mount {
            handle.stop().await;
        }
        Ok(())
    }

    pub fn path(&self, name: &str) -> Result<String, DriverError> {
        let name = VolumeName::parse(name)?;
        let table = self.table();
        match table.entries.get(&name) {
            Some(e) if e.ready => Ok(e.mount_point.to_string_lossy().into_owned()),
            _ => Err(DriverError::NotFound(name.to_string())),
        }
    }

    pub fn get(&self, name: &str) -> Result<Volume, DriverError> {
        let name = VolumeName::parse(name)?;
        let table = self.table();
        match table.entries.get(&name) {
            Some(e) if e.ready => Ok(status::volume(&name, e, true)),
            _ => Err(DriverError::NotFound(name.to_string())),
        }
    }

    pub fn list(&self) -> Vec<Volume> {
        let table = self.table();
        table
            .entries
            .iter()
            .filter(|(_, e)| e.ready)
            .map(|(n, e)| status::volume(n, e, false))
            .collect()
    }

    /// Takes over from an earlier run: clears what it left under the mount
    /// root (see [`leftovers::clean_up`]) and puts every stored volume in
    /// the table. Called once the socket is ours and before serving, so no
    /// request finds a stored volume missing or races the clean-up. The
    /// processes are started by [`Driver::restore`].
    pub async fn recover(&self, volumes: Volumes) -> Restore {
        let stored = volumes.keys().cloned().collect();
        leftovers::clean_up(&self.config.mount_root, &stored).await;
        let mut starts = Vec::new();
        for (name, record) in volumes {
            let wanted = self.config.lifecycle == Lifecycle::Volume || !record.mount_ids.is_empty();
            // A volume created before its options were denied does not run
            // them again; one that cannot be built stays listed. Neither is
            // dropped: the state file keeps every stored volume.
            let built = match &record.setup {
                Setup::Unaccepted { reason, .. } => Err(reason.clone()),
                Setup::Valid { backend, options } => {
                    match self.check_policy(&name, options, *backend) {
                        Ok(()) => self.entry(&name, record.clone()).map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                }
            };
            let entry = match built {
                Ok(entry) => entry,
                Err(reason) => {
                    tracing::error!(volume = %name, %reason, "stored volume refused under the current settings");
                    self.refused_entry(&name, record, reason)
                }
            };
            if wanted && entry.refused.is_none() {
                starts.push((name.clone(), entry.handle.clone()));
            }
            self.table().entries.insert(name, entry);
        }
        Restore { starts }
    }

    /// Starts the processes of the volumes [`Driver::recover`] brought back,
    /// in parallel. A volume whose start fails stays listed and is retried
    /// by its supervisor.
    pub async fn restore(&self, restore: Restore) {
        let mut starts = tokio::task::JoinSet::new();
        for (name, handle) in restore.starts {
            starts.spawn(async move {
                if let Err(e) = handle.restore().await {
                    tracing::warn!(volume = %name, error = %e, "restore failed; retrying in the background");
                }
            });
        }
        while starts.join_next().await.is_some() {}
    }

    /// Stops every volume's process (plugin shutdown); the state is kept.
    pub async fn shutdown(&self) {
        let handles: Vec<_> = self
            .table()
            .entries
            .values()
            .map(|e| e.handle.clone())
            .collect();
        let mut stops = tokio::task::JoinSet::new();
        for handle in handles {
            stops.spawn(async move { handle.stop().await });
        }
        while stops.join_next().await.is_some() {}
        if let Err(e) = self.persist().await {
            tracing::error!(error = %e, "cannot save state at shutdown");
        }
    }
}

/// The volumes whose process [`Driver::restore`] starts.
pub struct Restore {
    starts: Vec<(VolumeName, SupervisorHandle)>,
}

/// The directory of the shared connections' control sockets, beside the
/// state file (short, so the socket paths fit a socket address).
fn control_dir(state_file: &std::path::Path) -> std::path::PathBuf {
    state_file
        .parent()
        .unwrap_or(std::path::Path::new("/"))
        .join("ssh-control")
}

/// Removes an empty, unmounted mountpoint; never anything else.
fn remove_mount_point(path: &std::path::Path) {
    if matches!(mounts::is_mounted(path), Ok(false)) {
        if let Err(e) = std::fs::remove_dir(path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "mountpoint left in place");
            }
        }
    }
}
