//! Layered configuration: built-in defaults < `/etc/iotjobsd/config.toml` <
//! `/etc/iotjobsd/config.d/*.toml` < environment `IOTJOBSD_<SECTION>__<KEY>` < flags,
//! validated once at start (every problem reported together).
//!
//! Owns: the typed [`Config`] every other module reads, its loading ([`Loader`]),
//! validation ([`validate`]), redacted printing ([`redact`]) and the AWS IoT Device
//! Client import ([`aws`]). Must not open network connections or spawn processes; it
//! only reads files to validate them. The main directory is `/etc/iotjobsd`, or
//! `$IOTJOBSD_CONFIG_DIR` when set.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The daemon's effective configuration. Field names are the TOML keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub mqtt: MqttConfig,
    pub jobs: JobsConfig,
    pub log: LogConfig,
    pub paths: PathsConfig,
}

/// `[mqtt]`: the connection to AWS IoT Core or another broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Broker host name, e.g. `abc123-ats.iot.eu-west-1.amazonaws.com`.
    pub endpoint: Option<String>,
    /// 8883 (MQTT over TLS) or 443 (then ALPN `x-amzn-mqtt-ca` is offered).
    pub port: u16,
    /// The thing this device is.
    pub thing_name: Option<String>,
    /// MQTT client id; defaults to the thing name.
    pub client_id: Option<String>,
    /// Device certificate (PEM).
    pub cert: Option<PathBuf>,
    /// Private key (PEM: PKCS#1, SEC1 or PKCS#8). Never logged.
    pub key: Option<PathBuf>,
    /// Root CA bundle (PEM); the system roots are used when unset.
    pub root_ca: Option<PathBuf>,
    pub keep_alive_secs: u64,
    /// Reconnect backoff: first delay and cap, in seconds (full jitter).
    pub reconnect_min_secs: u64,
    pub reconnect_max_secs: u64,
}

/// `[jobs]`: the Jobs feature and its handler sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    pub enabled: bool,
    /// The handler directory (`pathToHandler` "default" or empty resolves here).
    pub handler_dir: PathBuf,
    /// Other directories a job document's `path` may name.
    pub allowed_handler_dirs: Vec<PathBuf>,
    /// The `PATH` every step gets (colon-separated absolute directories); runCommand's
    /// `argv[0]` is looked up in it. Never the daemon's own PATH.
    pub handler_path: String,
    /// Users a step's `runAsUser` may name. Empty: root and the daemon's own user.
    pub allowed_users: Vec<String>,
    /// AWS compatibility: run every handler as the daemon's user and let the handler
    /// switch user itself (the AWS client's behaviour), instead of switching natively.
    pub handlers_switch_user: bool,
    /// Step timeout when the document sets none.
    pub default_step_timeout_secs: u64,
    /// Time between SIGTERM and SIGKILL when a step is stopped.
    pub kill_grace_secs: u64,
    /// `stepTimeoutInMinutes` sent with start-next (device-side step timer); 0 = none.
    pub step_timeout_minutes: u64,
    /// What SIGTERM does to a running step: `finish` (wait up to `stop_timeout_secs`) or `stop`.
    pub on_shutdown: ShutdownPolicy,
    pub stop_timeout_secs: u64,
    /// How long a reboot step (`reboot.sh`) that exited 0 waits for the system to go down
    /// before it fails.
    pub reboot_timeout_secs: u64,
    /// rlimits applied to every step (0 = inherit).
    pub max_open_files: u64,
    pub max_processes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownPolicy {
    Finish,
    Stop,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug`, `trace` or a RUST_LOG-style filter.
    pub level: String,
    /// Log file; empty disables the file.
    pub file: Option<PathBuf>,
    /// Also (or only) log to stdout. Under systemd (`JOURNAL_STREAM`) stdout lines carry no timestamp.
    pub stdout: bool,
    /// `daily`, `size` or `never`.
    pub rotation: Rotation,
    /// For `size` rotation.
    pub max_size_mb: u64,
    /// Rotated files kept.
    pub keep_files: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rotation {
    Daily,
    Size,
    Never,
}

/// `[paths]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathsConfig {
    /// Journal, outbox and per-job working directories.
    pub state_dir: PathBuf,
    /// Lock file and other runtime files.
    pub runtime_dir: PathBuf,
    /// Where the boot id is read (tests point this at a file they control).
    pub boot_id_file: PathBuf,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            endpoint: None,
            port: 8883,
            thing_name: None,
            client_id: None,
            cert: None,
            key: None,
            root_ca: None,
            keep_alive_secs: 60,
            reconnect_min_secs: 1,
            reconnect_max_secs: 120,
        }
    }
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            enabled: true,
            handler_dir: PathBuf::from("/usr/libexec/iotjobsd/handlers"),
            allowed_handler_dirs: Vec::new(),
            handler_path: crate::sandbox::STEP_PATH.to_string(),
            allowed_users: Vec::new(),
            handlers_switch_user: false,
            default_step_timeout_secs: 3600,
            kill_grace_secs: 10,
            step_timeout_minutes: 0,
            on_shutdown: ShutdownPolicy::Stop,
            stop_timeout_secs: 60,
            reboot_timeout_secs: 900,
            max_open_files: 0,
            max_processes: 0,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_string(),
            file: Some(PathBuf::from("/var/log/iotjobsd/iotjobsd.log")),
            stdout: false,
            rotation: Rotation::Daily,
            max_size_mb: 10,
            keep_files: 7,
        }
    }
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig {
            state_dir: PathBuf::from("/var/lib/iotjobsd"),
            runtime_dir: PathBuf::from("/run/iotjobsd"),
            boot_id_file: PathBuf::from("/proc/sys/kernel/random/boot_id"),
        }
    }
}
pub mod aws;
pub mod commands;
mod layers;
mod pki;
pub mod redact;
mod sources;
mod validate;

pub use layers::{ConfigError, Loaded, Loader, CONFIG_DIR_ENV, DEFAULT_CONFIG_DIR, ENV_PREFIX};
pub use validate::{is_valid_thing_name, validate, Problem};

/// Loads the layered configuration (defaults, main file, drop-ins, environment, flags)
/// from the real process environment.
pub fn load(global: &crate::cli::GlobalArgs) -> Result<Config, ConfigError> {
    Loader::from_process_env().load(global).map(|l| l.config)
}
