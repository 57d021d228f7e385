//! The default option policy as data: every rule, with why it exists, and
//! the rclone backends whose name may stand before a backend option.

/// Why a rule exists, as an error message says it.
const COMMAND: &str = "runs a local command";
const LIBRARY: &str = "loads a library into ssh";
const CONFIG: &str = "makes the tool read another configuration file";
const CREDENTIALS: &str = "uses the host's agent, credentials or connections";
const TUNNEL: &str = "opens a tunnel between the server and the plugin's host";
const ENVIRONMENT: &str = "sends the plugin's environment to the server";
const HOST_FILE: &str = "reads or writes a file of the plugin's host";
const RC: &str = "starts rclone's remote control server, which reaches the plugin's files";
const DUMP: &str = "writes credentials into the log";
const OTHER_REMOTE: &str =
    "points the volume at another remote, which may be a path of the plugin's own filesystem";
const LOCAL_BACKEND: &str = "serves a directory of the plugin's own filesystem";
const WRAPPING_BACKEND: &str =
    "wraps another remote, which may be a path of the plugin's own filesystem";

/// What a rule does to a key it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The key is refused; the text says why.
    Deny(&'static str),
    /// The key names files, which must lie in the key directory.
    InKeyDir,
}

/// One rule of the default policy. `key` is what `--allow-options` names
/// to lift it: an option key (`ProxyCommand`), a key family (`rc*`: `rc`
/// and every `rc-...`), or an rclone backend in a source (`:local`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub key: &'static str,
    pub effect: Effect,
}

const fn deny(key: &'static str, why: &'static str) -> Rule {
    Rule {
        key,
        effect: Effect::Deny(why),
    }
}

const fn in_key_dir(key: &'static str) -> Rule {
    Rule {
        key,
        effect: Effect::InKeyDir,
    }
}

/// The default policy. Keys match as ssh and rclone read them: without
/// regard to case, `-` the same as `_`, and an rclone key also in its
/// flag form with the backend in front (`key_file` is `--sftp-key-file`).
pub const RULES: &[Rule] = &[
    // ssh (ssh_config(5)), reached through sshfs's -o
    deny("ProxyCommand", COMMAND),
    deny("ProxyJump", COMMAND),
    deny("ProxyUseFdpass", COMMAND),
    deny("LocalCommand", COMMAND),
    deny("PermitLocalCommand", COMMAND),
    deny("KnownHostsCommand", COMMAND),
    deny("XAuthLocation", COMMAND),
    deny("PKCS11Provider", LIBRARY),
    deny("SmartcardDevice", LIBRARY),
    deny("SecurityKeyProvider", LIBRARY),
    deny("F", CONFIG),
    deny("IdentityAgent", CREDENTIALS),
    deny("ForwardAgent", CREDENTIALS),
    deny("AddKeysToAgent", CREDENTIALS),
    deny("ControlPath", CREDENTIALS),
    deny("ControlMaster", CREDENTIALS),
    deny("ControlPersist", CREDENTIALS),
    deny("GSSAPIDelegateCredentials", CREDENTIALS),
    deny("EnableSSHKeysign", CREDENTIALS),
    deny("LocalForward", TUNNEL),
    deny("RemoteForward", TUNNEL),
    deny("DynamicForward", TUNNEL),
    deny("GatewayPorts", TUNNEL),
    deny("PermitRemoteOpen", TUNNEL),
    deny("Tunnel", TUNNEL),
    deny("TunnelDevice", TUNNEL),
    deny("ForwardX11", TUNNEL),
    deny("ForwardX11Trusted", TUNNEL),
    deny("SendEnv", ENVIRONMENT),
    in_key_dir("IdentityFile"),
    in_key_dir("CertificateFile"),
    in_key_dir("UserKnownHostsFile"),
    in_key_dir("GlobalKnownHostsFile"),
    in_key_dir("RevokedHostKeys"),
    // sshfs (sshfs(1))
    deny("ssh_command", COMMAND),
    deny("ssh_protocol", COMMAND),
    deny("sftp_server", COMMAND),
    in_key_dir("uidfile"),
    in_key_dir("gidfile"),
    // rclone global flags (rclone help flags)
    deny("password_command", COMMAND),
    deny("config", CONFIG),
    deny("cache_dir", HOST_FILE),
    deny("temp_dir", HOST_FILE),
    deny("log_file", HOST_FILE),
    deny("files_from", HOST_FILE),
    deny("files_from_raw", HOST_FILE),
    deny("include_from", HOST_FILE),
    deny("exclude_from", HOST_FILE),
    deny("filter_from", HOST_FILE),
    deny("cpuprofile", HOST_FILE),
    deny("memprofile", HOST_FILE),
    deny("rc*", RC),
    deny("dump*", DUMP),
    in_key_dir("ca_cert"),
    in_key_dir("client_cert"),
    in_key_dir("client_key"),
    // rclone backend options (rclone help backend NAME), in a source's
    // `:backend,key=value:` or as `--backend-key`
    deny("ssh", COMMAND),
    deny("bearer_token_command", COMMAND),
    deny("key_use_agent", CREDENTIALS),
    deny("env_auth", CREDENTIALS),
    deny("use_msi", CREDENTIALS),
    deny("remote", OTHER_REMOTE),
    deny("upstreams", OTHER_REMOTE),
    deny("chunk_path", HOST_FILE),
    deny("db_path", HOST_FILE),
    deny("tmp_upload_path", HOST_FILE),
    in_key_dir("key_file"),
    in_key_dir("pubkey_file"),
    in_key_dir("known_hosts_file"),
    in_key_dir("service_account_file"),
    in_key_dir("service_principal_file"),
    in_key_dir("box_config_file"),
    in_key_dir("shared_credentials_file"),
    // rclone sources (`:local:/etc`, `/etc`, `:alias,remote=/etc:`)
    deny(":local", LOCAL_BACKEND),
    deny(":alias", WRAPPING_BACKEND),
    deny(":union", WRAPPING_BACKEND),
    deny(":combine", WRAPPING_BACKEND),
    deny(":crypt", WRAPPING_BACKEND),
    deny(":chunker", WRAPPING_BACKEND),
    deny(":hasher", WRAPPING_BACKEND),
    deny(":compress", WRAPPING_BACKEND),
    deny(":cache", WRAPPING_BACKEND),
];

/// rclone's backends (rclone help backends): a flag `--sftp-key-file` is
/// the backend option `key_file`.
pub(super) const RCLONE_BACKENDS: &[&str] = &[
    "acd",
    "alias",
    "azureblob",
    "b2",
    "box",
    "cache",
    "chunker",
    "combine",
    "compress",
    "crypt",
    "drive",
    "dropbox",
    "fichier",
    "filefabric",
    "ftp",
    "gcs",
    "gphotos",
    "hasher",
    "hdfs",
    "hidrive",
    "http",
    "internetarchive",
    "jottacloud",
    "koofr",
    "local",
    "mailru",
    "memory",
    "mega",
    "netstorage",
    "onedrive",
    "opendrive",
    "oracleobjectstorage",
    "pcloud",
    "premiumizeme",
    "putio",
    "qingstor",
    "s3",
    "seafile",
    "sftp",
    "sharefile",
    "sia",
    "smb",
    "storj",
    "sugarsync",
    "swift",
    "union",
    "uptobox",
    "webdav",
    "yandex",
    "zoho",
];
