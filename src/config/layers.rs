//! Loading the configuration layers and merging them with figment.
//!
//! Order, later wins: built-in defaults < main file < `config.d/*.toml` drop-ins (lexical
//! order) < environment `IOTJOBSD_<SECTION>__<KEY>` < command-line flags.
//!
//! Each layer is first checked on its own, so an unknown key or a bad value is reported
//! with the one file, environment variable or flag it came from (a merged figment only
//! knows which provider created a table, not which one added a bad key to it). Every
//! layer's errors are collected, so one run shows them all.
//!
//! This module only reads configuration files; it does not check the files the
//! configuration points to (that is [`super::validate`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use figment::Figment;

use super::sources::{check_layer, dropins, env_layer, file_layer, flag_layers, Layer};
use super::Config;
use crate::cli::GlobalArgs;

/// Where the main file and `config.d/` live unless `IOTJOBSD_CONFIG_DIR` says otherwise.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/iotjobsd";
/// Overrides [`DEFAULT_CONFIG_DIR`] (packaging tests and unprivileged runs use it).
pub const CONFIG_DIR_ENV: &str = "IOTJOBSD_CONFIG_DIR";
/// Prefix of the per-key environment variables.
pub const ENV_PREFIX: &str = "IOTJOBSD_";

/// Errors from loading configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {} does not exist (given with --config)", path.display())]
    MissingFile { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: invalid TOML: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("unknown key `{key}` in {origin}")]
    UnknownKey { key: String, origin: String },
    #[error("invalid value for `{key}` in {origin}: {message}")]
    InvalidValue {
        key: String,
        origin: String,
        message: String,
    },
    #[error("cannot determine the current directory: {0}")]
    CurrentDir(std::io::Error),
    #[error("{}", join_errors(.0))]
    Multiple(Vec<ConfigError>),
}

fn join_errors(errors: &[ConfigError]) -> String {
    let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    format!(
        "{} configuration errors:\n  {}",
        errors.len(),
        lines.join("\n  ")
    )
}

/// The result of loading: the merged configuration and the layers that contributed.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Every file, environment variable and flag that was applied, in order.
    pub sources: Vec<String>,
}

/// Loads configuration with an explicit configuration directory and environment, so
/// tests never depend on `/etc` or the process environment.
#[derive(Debug, Clone)]
pub struct Loader {
    config_dir: PathBuf,
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
}

impl Loader {
    pub fn new(config_dir: impl Into<PathBuf>, env: BTreeMap<String, String>) -> Self {
        Loader {
            config_dir: config_dir.into(),
            env,
            cwd: None,
        }
    }

    /// The configuration directory is `IOTJOBSD_CONFIG_DIR` from `env`, else `/etc/iotjobsd`.
    pub fn from_env(env: BTreeMap<String, String>) -> Self {
        let dir = env
            .get(CONFIG_DIR_ENV)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_DIR));
        Loader::new(dir, env)
    }

    /// Reads the real process environment (non-UTF-8 variables are skipped).
    pub fn from_process_env() -> Self {
        Loader::from_env(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        )
    }

    /// Base for relative paths given in the environment or on the command line.
    pub fn with_cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// The main file: `--config` or `<config dir>/config.toml`.
    pub fn main_file(&self, flags: &GlobalArgs) -> PathBuf {
        flags
            .config
            .clone()
            .unwrap_or_else(|| self.config_dir.join("config.toml"))
    }

    pub fn load(&self, flags: &GlobalArgs) -> Result<Loaded, ConfigError> {
        let mut errors = Vec::new();
        let mut layers = Vec::new();

        let cwd = match &self.cwd {
            Some(cwd) => cwd.clone(),
            None => std::env::current_dir().map_err(ConfigError::CurrentDir)?,
        };
        // Absolute, so the drop-in directory and relative paths inside the file resolve
        // against the file's real location.
        let main = cwd.join(self.main_file(flags));
        match std::fs::metadata(&main) {
            Ok(_) => push_checked(file_layer(&main), &mut layers, &mut errors),
            // Only an explicit --config must exist; the default file is optional.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if flags.config.is_some() {
                    errors.push(ConfigError::MissingFile { path: main.clone() });
                }
            }
            Err(source) => errors.push(ConfigError::Read {
                path: main.clone(),
                source,
            }),
        }
        let dropin_dir = main
            .parent()
            .map(|p| p.join("config.d"))
            .unwrap_or_else(|| PathBuf::from("config.d"));
        match dropins(&dropin_dir) {
            Ok(files) => {
                for file in files {
                    push_checked(file_layer(&file), &mut layers, &mut errors);
                }
            }
            Err(e) => errors.push(e),
        }

        for (name, raw) in &self.env {
            if let Some(layer) = env_layer(name, raw, &cwd) {
                push_checked(Ok(layer), &mut layers, &mut errors);
            }
        }
        for layer in flag_layers(flags, &cwd) {
            push_checked(Ok(layer), &mut layers, &mut errors);
        }

        if !errors.is_empty() {
            return Err(if errors.len() == 1 {
                errors.remove(0)
            } else {
                ConfigError::Multiple(errors)
            });
        }

        let mut figment =
            Figment::from(figment::providers::Serialized::defaults(Config::default()));
        for layer in &layers {
            figment = figment.merge(layer.clone());
        }
        let mut config: Config = figment.extract().map_err(|e| ConfigError::InvalidValue {
            key: e.path.join("."),
            origin: "the merged configuration".to_string(),
            message: e.kind.to_string(),
        })?;
        normalize(&mut config);
        Ok(Loaded {
            config,
            sources: layers.into_iter().map(|l| l.origin).collect(),
        })
    }
}

/// Empty strings mean "unset" for optional values (TOML has no null).
fn normalize(config: &mut Config) {
    fn clear_str(v: &mut Option<String>) {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            *v = None;
        }
    }
    fn clear_path(v: &mut Option<PathBuf>) {
        if v.as_deref().is_some_and(|p| p.as_os_str().is_empty()) {
            *v = None;
        }
    }
    clear_str(&mut config.mqtt.endpoint);
    clear_str(&mut config.mqtt.thing_name);
    clear_str(&mut config.mqtt.client_id);
    clear_path(&mut config.mqtt.cert);
    clear_path(&mut config.mqtt.key);
    clear_path(&mut config.mqtt.root_ca);
    clear_path(&mut config.log.file);
}

fn push_checked(
    layer: Result<Layer, ConfigError>,
    layers: &mut Vec<Layer>,
    errors: &mut Vec<ConfigError>,
) {
    match layer {
        Ok(layer) => {
            let problems = check_layer(&layer);
            if problems.is_empty() {
                layers.push(layer);
            } else {
                errors.extend(problems);
            }
        }
        Err(e) => errors.push(e),
    }
}
