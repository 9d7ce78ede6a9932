//! The configuration sources, each turned into one figment layer: the main file and
//! drop-ins (TOML), one layer per `IOTJOBSD_*` environment variable and one per
//! command-line flag, so every error can name exactly where a key came from.
//! Relative paths are made absolute here. Each layer is checked on its own
//! ([`check_layer`]) before [`super::layers`] merges them.

use std::path::{Path, PathBuf};

use figment::error::Kind;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::layers::{ConfigError, CONFIG_DIR_ENV, ENV_PREFIX};
use super::Config;
use crate::cli::GlobalArgs;

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

/// One configuration layer: a key tree and where it came from.
#[derive(Debug, Clone)]
pub(super) struct Layer {
    pub(super) origin: String,
    pub(super) dict: Dict,
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

/// `config.d/*.toml`, sorted by file name; a missing directory has none.
pub(super) fn dropins(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
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

pub(super) fn file_layer(path: &Path) -> Result<Layer, ConfigError> {
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
pub(super) fn env_layer(name: &str, raw: &str, cwd: &Path) -> Option<Layer> {
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
        return Some(layer);
    }
    let as_string = build(Value::from(raw.to_string()));
    if check_layer(&as_string).is_empty() {
        Some(as_string)
    } else {
        Some(layer)
    }
}

pub(super) fn flag_layers(flags: &GlobalArgs, cwd: &Path) -> Vec<Layer> {
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
pub(super) fn check_layer(layer: &Layer) -> Vec<ConfigError> {
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
        let layer = env_layer("IOTJOBSD_MQTT__THING_NAME", "123", Path::new("/")).unwrap();
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
            let layer = env_layer(var, raw, Path::new("/")).unwrap();
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
