//! Import of an AWS IoT Device Client JSON configuration into iotjobsd's TOML.
//!
//! Maps what has an equivalent (connection, logging, jobs, a completed fleet-provisioning
//! runtime section) and returns one warning for every other key, by its path, so
//! nothing is dropped silently. Paths are expanded as the AWS client's `wordexp` does
//! (`~`, `~user`, `$VAR`, `${VAR}`). Pure: the caller supplies the text and environment.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value as Json;

#[derive(Debug, thiserror::Error)]
pub enum AwsImportError {
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the top level is not a JSON object")]
    NotAnObject,
    #[error("cannot render TOML: {0}")]
    Render(#[from] toml::ser::Error),
}

/// The converted configuration and what could not be converted.
#[derive(Debug, Clone)]
pub struct AwsImport {
    /// Sections `mqtt`, `jobs`, `log` with the mapped keys only.
    pub table: toml::Table,
    /// One line per key that was not mapped (`<key path>: <why>`).
    pub warnings: Vec<String>,
}

impl AwsImport {
    /// The TOML document, with a header naming the source file.
    pub fn to_toml(&self, source: &Path) -> Result<String, AwsImportError> {
        // One section at a time: toml::Table sorts keys, and mqtt reads best first.
        let mut sections = Vec::new();
        for name in ["mqtt", "jobs", "log"] {
            if let Some(section) = self.table.get(name) {
                let mut single = toml::Table::new();
                single.insert(name.to_string(), section.clone());
                sections.push(toml::to_string_pretty(&single)?);
            }
        }
        let body = sections.join("\n");
        Ok(format!(
            "# iotjobsd configuration imported from {} by `iotjobsd import-aws-config`.\n\
             # Keys not set here keep their defaults (every key is listed, commented out,\n\
             # in the packaged /etc/iotjobsd/config.toml).\n\n{body}",
            source.display()
        ))
    }
}

/// Why a whole AWS section has no equivalent here.
fn section_reason(section: &str) -> &'static str {
    match section {
        "tunneling" => "Secure Tunneling is not part of iotjobsd",
        "device-defender" => "Device Defender is not part of iotjobsd",
        "fleet-provisioning" => "fleet provisioning is not part of iotjobsd; provision the device first and set mqtt.cert/mqtt.key",
        "samples" => "the pub/sub sample is not part of iotjobsd",
        "config-shadow" | "sample-shadow" => "device shadows are not part of iotjobsd",
        "secure-element" => "PKCS#11 secure elements are not supported; mqtt.key must be a PEM file",
        "sensor-publish" => "sensor publishing is not part of iotjobsd",
        "runtime-config" => "only a completed fleet-provisioning result (completed-fp, cert, key, thing-name) is imported",
        _ => "not an AWS IoT Device Client key iotjobsd knows",
    }
}

struct Importer<'a> {
    env: &'a BTreeMap<String, String>,
    mqtt: toml::Table,
    jobs: toml::Table,
    log: toml::Table,
    warnings: Vec<String>,
}

/// Converts AWS IoT Device Client JSON. `env` supplies `HOME` and `$VAR` values.
pub fn import(json: &str, env: &BTreeMap<String, String>) -> Result<AwsImport, AwsImportError> {
    let root: Json = serde_json::from_str(json)?;
    let Json::Object(root) = root else {
        return Err(AwsImportError::NotAnObject);
    };
    let mut imp = Importer {
        env,
        mqtt: toml::Table::new(),
        jobs: toml::Table::new(),
        log: toml::Table::new(),
        warnings: Vec::new(),
    };
    // runtime-config goes last: its identity overrides the top-level keys, and the JSON
    // map is sorted by key, not kept in file order.
    let ordered = root
        .iter()
        .filter(|(k, _)| *k != "runtime-config")
        .chain(root.iter().filter(|(k, _)| *k == "runtime-config"));
    for (key, value) in ordered {
        match key.as_str() {
            "endpoint" => imp.string("endpoint", value, |i, s| {
                i.mqtt.insert("endpoint".into(), s.into());
            }),
            "thing-name" => imp.string("thing-name", value, |i, s| {
                i.mqtt.insert("thing_name".into(), s.into());
            }),
            "cert" => imp.path("cert", value, "cert"),
            "key" => imp.path("key", value, "key"),
            "root-ca" => imp.path("root-ca", value, "root_ca"),
            "logging" => imp.logging(value),
            "jobs" => imp.jobs(value),
            "runtime-config" => imp.runtime_config(value),
            other => imp.unmapped(other, value, section_reason(other)),
        }
    }
    let mut table = toml::Table::new();
    for (name, section) in [("mqtt", imp.mqtt), ("jobs", imp.jobs), ("log", imp.log)] {
        if !section.is_empty() {
            table.insert(name.into(), toml::Value::Table(section));
        }
    }
    Ok(AwsImport {
        table,
        warnings: imp.warnings,
    })
}

impl Importer<'_> {
    fn warn(&mut self, path: &str, why: impl AsRef<str>) {
        self.warnings.push(format!("{path}: {}", why.as_ref()));
    }

    /// One warning per leaf under `path`.
    fn unmapped(&mut self, path: &str, value: &Json, why: &str) {
        match value {
            Json::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    self.unmapped(&format!("{path}.{k}"), v, why);
                }
            }
            Json::Array(items) if !items.is_empty() => {
                for (i, v) in items.iter().enumerate() {
                    self.unmapped(&format!("{path}[{i}]"), v, why);
                }
            }
            _ => self.warn(path, format!("not mapped: {why}")),
        }
    }

    fn string(&mut self, path: &str, value: &Json, apply: impl FnOnce(&mut Self, String)) {
        match value {
            Json::String(s) if s.trim().is_empty() => {
                self.warn(path, "empty value ignored (as the AWS client does)")
            }
            Json::String(s) => apply(self, s.clone()),
            other => self.warn(
                path,
                format!("expected a string, found {other}; not mapped"),
            ),
        }
    }

    fn path(&mut self, path: &str, value: &Json, ours: &'static str) {
        self.string(path, value, |i, s| {
            let expanded = i.expand(path, &s);
            i.mqtt.insert(ours.into(), expanded.into());
        });
    }

    fn boolean(&mut self, path: &str, value: &Json) -> Option<bool> {
        match value {
            Json::Bool(b) => Some(*b),
            Json::String(s) if s == "true" || s == "false" => {
                self.warn(
                    path,
                    format!("the string \"{s}\" was imported as {s}; the AWS client reads any string as false"),
                );
                Some(s == "true")
            }
            other => {
                self.warn(
                    path,
                    format!("expected true or false, found {other}; not mapped"),
                );
                None
            }
        }
    }

    fn logging(&mut self, value: &Json) {
        let Json::Object(map) = value else {
            return self.warn("logging", "expected an object; not mapped");
        };
        let kind = map
            .get("type")
            .and_then(Json::as_str)
            .map(|t| t.to_ascii_uppercase());
        for (key, v) in map {
            let path = format!("logging.{key}");
            match key.as_str() {
                "level" => match v.as_str().map(str::to_ascii_uppercase).as_deref() {
                    Some(l @ ("DEBUG" | "INFO" | "WARN" | "ERROR")) => {
                        self.log.insert("level".into(), l.to_ascii_lowercase().into());
                    }
                    _ => self.warn(&path, format!("{v} is not DEBUG, INFO, WARN or ERROR; not mapped")),
                },
                "type" => match kind.as_deref() {
                    Some("STDOUT") => {
                        self.log.insert("stdout".into(), true.into());
                        self.log.insert("file".into(), "".into());
                    }
                    Some("FILE") => {
                        self.log.insert("stdout".into(), false.into());
                    }
                    _ => self.warn(&path, format!("{v} is not STDOUT or FILE; not mapped")),
                },
                "file" => {
                    if kind.as_deref() == Some("FILE") {
                        self.string(&path, v, |i, s| {
                            let expanded = i.expand(&path, &s);
                            i.log.insert("file".into(), expanded.into());
                        });
                    } else {
                        self.warn(&path, "not mapped: only used with \"type\": \"FILE\" (as in the AWS client)");
                    }
                }
                "enable-sdk-logging" | "sdk-log-level" | "sdk-log-file" => self.unmapped(
                    &path,
                    v,
                    "there is no separate SDK log; use log.level = \"debug\", -v or RUST_LOG for protocol detail",
                ),
                _ => self.unmapped(&path, v, section_reason("")),
            }
        }
    }

    fn jobs(&mut self, value: &Json) {
        let Json::Object(map) = value else {
            return self.warn("jobs", "expected an object; not mapped");
        };
        for (key, v) in map {
            let path = format!("jobs.{key}");
            match key.as_str() {
                "enabled" => {
                    if let Some(b) = self.boolean(&path, v) {
                        self.jobs.insert("enabled".into(), b.into());
                    }
                }
                "handler-directory" => self.string(&path, v, |i, s| {
                    let expanded = i.expand(&path, &s);
                    i.jobs.insert("handler_dir".into(), expanded.into());
                }),
                _ => self.unmapped(&path, v, section_reason("")),
            }
        }
    }

    /// A completed fleet-provisioning result overrides cert, key and thing name, as in
    /// the AWS client.
    fn runtime_config(&mut self, value: &Json) {
        let Json::Object(map) = value else {
            return self.unmapped("runtime-config", value, section_reason("runtime-config"));
        };
        let text = |k: &str| map.get(k).and_then(Json::as_str).filter(|s| !s.is_empty());
        let completed = map.get("completed-fp").and_then(Json::as_bool) == Some(true);
        let usable = completed
            && text("cert").is_some()
            && text("key").is_some()
            && text("thing-name").is_some();
        for (key, v) in map {
            let path = format!("runtime-config.{key}");
            match key.as_str() {
                "completed-fp" if usable => {}
                "cert" | "key" if usable => {
                    let ours = if key == "cert" { "cert" } else { "key" };
                    self.path(&path, v, ours);
                }
                "thing-name" if usable => self.string(&path, v, |i, s| {
                    i.mqtt.insert("thing_name".into(), s.into());
                }),
                _ => self.unmapped(&path, v, section_reason("runtime-config")),
            }
        }
    }

    /// `~`, `~user`, `$VAR` and `${VAR}` as `wordexp` expands them; an unset variable
    /// becomes empty (with a warning, since that is rarely what was meant).
    fn expand(&mut self, path: &str, raw: &str) -> String {
        let mut s = raw.to_string();
        if let Some(rest) = s.strip_prefix('~') {
            let (user, tail) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let home = if user.is_empty() {
                self.env.get("HOME").cloned()
            } else {
                nix::unistd::User::from_name(user)
                    .ok()
                    .flatten()
                    .map(|u| u.dir.to_string_lossy().into_owned())
            };
            match home {
                Some(home) => s = format!("{}{tail}", home.trim_end_matches('/')),
                None => self.warn(
                    path,
                    format!("cannot expand `~{user}` (no such home directory); kept as is"),
                ),
            }
        }
        let mut out = String::with_capacity(s.len());
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '$' {
                out.push(c);
                continue;
            }
            let braced = chars.peek() == Some(&'{');
            if braced {
                chars.next();
            }
            let mut name = String::new();
            while let Some(&n) = chars.peek() {
                if n.is_ascii_alphanumeric() || n == '_' {
                    name.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            if braced && chars.peek() == Some(&'}') {
                chars.next();
            }
            if name.is_empty() {
                out.push('$');
                continue;
            }
            match self.env.get(&name) {
                Some(v) => out.push_str(v),
                None => self.warn(
                    path,
                    format!("${name} is not set; expanded to an empty string"),
                ),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("HOME".to_string(), "/home/dev".to_string()),
            ("CERTS".to_string(), "/srv/certs".to_string()),
        ])
    }

    #[test]
    fn expands_like_wordexp() {
        let env = env();
        let imp = import(
            r#"{"cert": "~/c.pem", "key": "${CERTS}/k.pem", "root-ca": "$CERTS/ca.pem",
                "jobs": {"handler-directory": "~root/jobs"}}"#,
            &env,
        )
        .unwrap();
        assert_eq!(imp.table["mqtt"]["cert"].as_str(), Some("/home/dev/c.pem"));
        assert_eq!(imp.table["mqtt"]["key"].as_str(), Some("/srv/certs/k.pem"));
        assert_eq!(
            imp.table["mqtt"]["root_ca"].as_str(),
            Some("/srv/certs/ca.pem")
        );
        assert_eq!(
            imp.table["jobs"]["handler_dir"].as_str(),
            Some("/root/jobs")
        );
        assert!(imp.warnings.is_empty(), "{:?}", imp.warnings);
    }

    #[test]
    fn logging_types() {
        let imp = import(
            r#"{"logging": {"type": "stdout", "level": "warn", "file": "/x.log"}}"#,
            &env(),
        )
        .unwrap();
        assert_eq!(imp.table["log"]["stdout"].as_bool(), Some(true));
        assert_eq!(imp.table["log"]["file"].as_str(), Some(""));
        assert_eq!(imp.table["log"]["level"].as_str(), Some("warn"));
        assert_eq!(imp.warnings.len(), 1);
        assert!(imp.warnings[0].starts_with("logging.file:"));

        let imp = import(
            r#"{"logging": {"type": "FILE", "file": "~/dc.log"}}"#,
            &env(),
        )
        .unwrap();
        assert_eq!(imp.table["log"]["file"].as_str(), Some("/home/dev/dc.log"));
        assert_eq!(imp.table["log"]["stdout"].as_bool(), Some(false));
    }

    #[test]
    fn completed_fleet_provisioning_overrides_identity() {
        let imp = import(
            r#"{"thing-name": "old", "cert": "/old.crt", "key": "/old.key",
                "runtime-config": {"completed-fp": true, "cert": "/new.crt", "key": "/new.key",
                                   "thing-name": "new", "device-config": {}}}"#,
            &env(),
        )
        .unwrap();
        assert_eq!(imp.table["mqtt"]["thing_name"].as_str(), Some("new"));
        assert_eq!(imp.table["mqtt"]["cert"].as_str(), Some("/new.crt"));
        assert_eq!(imp.warnings, vec!["runtime-config.device-config: not mapped: only a completed fleet-provisioning result (completed-fp, cert, key, thing-name) is imported".to_string()]);
    }

    #[test]
    fn string_booleans_and_bad_types() {
        let imp = import(r#"{"jobs": {"enabled": "true"}, "endpoint": 5}"#, &env()).unwrap();
        assert_eq!(imp.table["jobs"]["enabled"].as_bool(), Some(true));
        assert!(imp.table.get("mqtt").is_none());
        assert_eq!(imp.warnings.len(), 2, "{:?}", imp.warnings);
    }

    #[test]
    fn rejects_non_objects() {
        assert!(matches!(
            import("[1]", &env()),
            Err(AwsImportError::NotAnObject)
        ));
        assert!(matches!(import("{", &env()), Err(AwsImportError::Json(_))));
    }
}
