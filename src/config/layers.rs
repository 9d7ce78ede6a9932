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
use std::path::{Path, PathBuf};

use figment::error::Kind;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::Config;
use crate::cli::GlobalArgs;

/// Where the main file and `config.d/` live unless `IOTJOBSD_CONFIG_DIR` says otherwise.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/iotjobsd";
/// Overrides [`DEFAULT_CONFIG_DIR`] (packaging tests and unprivileged runs use it).
pub const CONFIG_DIR_ENV: &str = "IOTJOBSD_CONFIG_DIR";
/// Prefix of the per-key environment variables.
pub const ENV_PREFIX: &str = "IOTJOBSD_";

/// Keys holding one path: relative values are resolved against the file's directory
/// (or the current directory for environment variables and flags).
const PATH_KEYS: &[&str] = &[
    "mqtt.cert",
    "mqtt.key",
    "mqtt.root_ca",
    "jobs.handler_dir",
    "log.file",
    "paths.state_dir",
    "paths.runtime_dir",
    "paths.boot_id_file",
];
/// Keys holding a list of paths.
const PATH_LIST_KEYS: &[&str] = &["jobs.allowed_handler_dirs"];

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

/// One configuration layer: a key tree and where it came from.
#[derive(Debug, Clone)]
struct Layer {
    origin: String,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.origin.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut map = Map::new();
        map.insert(Profile::Default, self.dict.clone());
        Ok(map)
    }
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
                push_checked(layer, &mut layers, &mut errors);
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

/// `config.d/*.toml`, sorted by file name; a missing directory has none.
fn dropins(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ConfigError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ConfigError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        // Editors and dpkg leave `*.toml~`, `*.dpkg-old` and the like next to drop-ins.
        if path.extension().is_some_and(|e| e == "toml") && !path.is_dir() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

fn file_layer(path: &Path) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut dict: Dict =
        toml::from_str(&text).map_err(|e: toml::de::Error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
    let base = path.parent().unwrap_or(Path::new("/"));
    resolve_paths(&mut dict, base);
    Ok(Layer {
        origin: path.display().to_string(),
        dict,
    })
}

/// `IOTJOBSD_MQTT__THING_NAME=x` → `mqtt.thing_name = "x"`. Values parse as TOML-like
/// scalars or arrays (`8883`, `true`, `[a, b]`); when the typed reading does not fit the
/// key, the raw string is tried, so a thing named `123` still works.
fn env_layer(name: &str, raw: &str, cwd: &Path) -> Option<Result<Layer, ConfigError>> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    if name == CONFIG_DIR_ENV {
        return None;
    }
    let key = rest
        .split("__")
        .map(|p| p.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(".");
    let origin = format!("environment variable {name}");
    let build = |value: Value| {
        let mut dict = match figment::util::nest(&key, value) {
            Value::Dict(_, dict) => dict,
            _ => Dict::new(),
        };
        resolve_paths(&mut dict, cwd);
        Layer {
            origin: origin.clone(),
            dict,
        }
    };
    let typed: Value = raw.parse().unwrap_or_else(|_| Value::from(raw.to_string()));
    let is_string = matches!(typed, Value::String(..));
    let layer = build(typed);
    if is_string || check_layer(&layer).is_empty() {
        return Some(Ok(layer));
    }
    let as_string = build(Value::from(raw.to_string()));
    if check_layer(&as_string).is_empty() {
        Some(Ok(as_string))
    } else {
        Some(Ok(layer))
    }
}

fn flag_layers(flags: &GlobalArgs, cwd: &Path) -> Vec<Layer> {
    let mut out = Vec::new();
    let mut add = |flag: &str, key: &str, value: Value| {
        let mut dict = match figment::util::nest(key, value) {
            Value::Dict(_, dict) => dict,
            _ => Dict::new(),
        };
        resolve_paths(&mut dict, cwd);
        out.push(Layer {
            origin: format!("command-line flag --{flag}"),
            dict,
        });
    };
    let path = |p: &PathBuf| Value::from(p.to_string_lossy().into_owned());
    if let Some(v) = &flags.endpoint {
        add("endpoint", "mqtt.endpoint", Value::from(v.clone()));
    }
    if let Some(v) = flags.port {
        add("port", "mqtt.port", Value::from(v));
    }
    if let Some(v) = &flags.thing_name {
        add("thing-name", "mqtt.thing_name", Value::from(v.clone()));
    }
    if let Some(v) = &flags.client_id {
        add("client-id", "mqtt.client_id", Value::from(v.clone()));
    }
    if let Some(v) = &flags.cert {
        add("cert", "mqtt.cert", path(v));
    }
    if let Some(v) = &flags.key {
        add("key", "mqtt.key", path(v));
    }
    if let Some(v) = &flags.root_ca {
        add("root-ca", "mqtt.root_ca", path(v));
    }
    if let Some(v) = &flags.handler_dir {
        add("handler-dir", "jobs.handler_dir", path(v));
    }
    if let Some(v) = &flags.state_dir {
        add("state-dir", "paths.state_dir", path(v));
    }
    if let Some(v) = &flags.log_file {
        add("log-file", "log.file", path(v));
    }
    if let Some(v) = &flags.log_level {
        add("log-level", "log.level", Value::from(v.clone()));
    }
    if flags.log_stdout {
        add("log-stdout", "log.stdout", Value::from(true));
    }
    out
}

fn resolve_paths(dict: &mut Dict, base: &Path) {
    let absolute = |s: &str| -> Option<String> {
        let p = Path::new(s);
        (!s.is_empty() && p.is_relative()).then(|| base.join(p).to_string_lossy().into_owned())
    };
    for key in PATH_KEYS {
        if let Some(Value::String(_, s)) = find_mut(dict, key) {
            if let Some(abs) = absolute(s) {
                *s = abs;
            }
        }
    }
    for key in PATH_LIST_KEYS {
        if let Some(Value::Array(_, items)) = find_mut(dict, key) {
            for item in items.iter_mut() {
                if let Value::String(_, s) = item {
                    if let Some(abs) = absolute(s) {
                        *s = abs;
                    }
                }
            }
        }
    }
}

fn find_mut<'a>(dict: &'a mut Dict, dotted: &str) -> Option<&'a mut Value> {
    let mut parts = dotted.split('.');
    let mut current = dict.get_mut(parts.next()?)?;
    for part in parts {
        current = match current {
            Value::Dict(_, d) => d.get_mut(part)?,
            _ => return None,
        };
    }
    Some(current)
}

fn remove_key(dict: &mut Dict, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => dict.remove(last).is_some(),
        [first, rest @ ..] => match dict.get_mut(first) {
            Some(Value::Dict(_, inner)) => remove_key(inner, rest),
            _ => false,
        },
    }
}

/// Every unknown key and bad value in one layer, each naming the layer's origin.
fn check_layer(layer: &Layer) -> Vec<ConfigError> {
    let mut dict = layer.dict.clone();
    let mut errors = Vec::new();
    // serde stops at the first error, so drop the offending key and try again; the bound
    // only guards against a key that cannot be removed.
    for _ in 0..256 {
        let probe = Layer {
            origin: layer.origin.clone(),
            dict: dict.clone(),
        };
        let err = match Figment::from(probe).extract::<Config>() {
            Ok(_) => break,
            Err(err) => err,
        };
        let mut removed_any = false;
        for e in err {
            let mut path = e.path.clone();
            let error = match &e.kind {
                Kind::UnknownField(field, _) => {
                    // figment usually includes the field in the path already.
                    if path.last() != Some(field) {
                        path.push(field.clone());
                    }
                    ConfigError::UnknownKey {
                        key: path.join("."),
                        origin: layer.origin.clone(),
                    }
                }
                kind => ConfigError::InvalidValue {
                    key: path.join("."),
                    origin: layer.origin.clone(),
                    message: kind.to_string(),
                },
            };
            errors.push(error);
            removed_any |= remove_key(&mut dict, &path);
        }
        if !removed_any {
            break;
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(toml_text: &str) -> Layer {
        Layer {
            origin: "test.toml".into(),
            dict: toml::from_str(toml_text).unwrap(),
        }
    }

    #[test]
    fn every_unknown_key_in_a_layer_is_reported() {
        let errors = check_layer(&layer(
            "bogus = 1\n[mqtt]\nendpoint = \"x\"\nportt = 1\n[jobs]\nnope = true\n",
        ));
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 3, "{text:?}");
        assert!(
            text.contains(&"unknown key `bogus` in test.toml".to_string()),
            "{text:?}"
        );
        assert!(
            text.contains(&"unknown key `mqtt.portt` in test.toml".to_string()),
            "{text:?}"
        );
        assert!(
            text.contains(&"unknown key `jobs.nope` in test.toml".to_string()),
            "{text:?}"
        );
    }

    #[test]
    fn bad_value_names_the_key() {
        let errors = check_layer(&layer("[mqtt]\nport = \"high\"\n"));
        assert_eq!(errors.len(), 1);
        let text = errors[0].to_string();
        assert!(
            text.starts_with("invalid value for `mqtt.port` in test.toml"),
            "{text}"
        );
    }

    #[test]
    fn env_value_falls_back_to_string() {
        let layer = env_layer("IOTJOBSD_MQTT__THING_NAME", "123", Path::new("/"))
            .unwrap()
            .unwrap();
        assert!(check_layer(&layer).is_empty());
        let cfg: Config = Figment::from(layer).extract().unwrap();
        assert_eq!(cfg.mqtt.thing_name.as_deref(), Some("123"));
    }

    #[test]
    fn env_lists_and_relative_paths() {
        let layer = env_layer(
            "IOTJOBSD_JOBS__ALLOWED_HANDLER_DIRS",
            "[a, /b]",
            Path::new("/base"),
        )
        .unwrap()
        .unwrap();
        let cfg: Config = Figment::from(layer).extract().unwrap();
        assert_eq!(
            cfg.jobs.allowed_handler_dirs,
            vec![PathBuf::from("/base/a"), PathBuf::from("/b")]
        );
    }

    #[test]
    fn env_strings_that_look_structured_stay_strings() {
        for (var, raw) in [
            ("IOTJOBSD_LOG__LEVEL", "info,iotjobs::mqtt=debug"),
            (
                "IOTJOBSD_MQTT__ENDPOINT",
                "abc-ats.iot.eu-west-1.amazonaws.com",
            ),
            ("IOTJOBSD_MQTT__THING_NAME", "1.5"),
            ("IOTJOBSD_MQTT__CERT", "/path/with spaces/c.pem"),
        ] {
            let layer = env_layer(var, raw, Path::new("/")).unwrap().unwrap();
            assert!(check_layer(&layer).is_empty(), "{var}={raw}");
            let cfg: Config = Figment::from(layer).extract().unwrap();
            let got = match var {
                "IOTJOBSD_LOG__LEVEL" => cfg.log.level,
                "IOTJOBSD_MQTT__ENDPOINT" => cfg.mqtt.endpoint.unwrap(),
                "IOTJOBSD_MQTT__THING_NAME" => cfg.mqtt.thing_name.unwrap(),
                _ => cfg.mqtt.cert.unwrap().display().to_string(),
            };
            assert_eq!(got, raw);
        }
    }

    #[test]
    fn config_dir_variable_is_not_a_key() {
        assert!(env_layer(CONFIG_DIR_ENV, "/x", Path::new("/")).is_none());
        assert!(env_layer("PATH", "/bin", Path::new("/")).is_none());
    }
}
