//! Validation of a loaded [`Config`]: every problem at once, each with its fix.
//!
//! It reads the files the configuration names (certificate, key, root CA, directories)
//! but never prints their contents: a [`Problem`] names paths and modes only.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::pki;
use super::{Config, Rotation};

/// One thing wrong with the configuration and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The configuration key concerned, e.g. `mqtt.key`.
    pub key: String,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}\n    fix: {}", self.key, self.message, self.fix)
    }
}

fn problem(key: &str, message: impl Into<String>, fix: impl Into<String>) -> Problem {
    Problem {
        key: key.to_string(),
        message: message.into(),
        fix: fix.into(),
    }
}

/// How to set a key, in every form the user may choose.
fn set_hint(key: &str, flag: Option<&str>, example: &str) -> String {
    let (section, name) = key.split_once('.').unwrap_or(("", key));
    let env = format!("IOTJOBSD_{}__{}", section, name).to_ascii_uppercase();
    match flag {
        Some(flag) => {
            format!("set `{name} = {example}` in [{section}] of config.toml, or {env}, or --{flag}")
        }
        None => format!("set `{name} = {example}` in [{section}] of config.toml, or {env}"),
    }
}

/// AWS IoT thing names: 1 to 128 of `[a-zA-Z0-9:_-]`.
pub fn is_valid_thing_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'-')
}

/// Checks everything that can be checked without the network and returns every problem.
pub fn validate(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    check_mqtt(config, &mut problems);
    check_jobs(config, &mut problems);
    check_log(config, &mut problems);
    problems
}

fn check_mqtt(config: &Config, out: &mut Vec<Problem>) {
    let mqtt = &config.mqtt;
    if mqtt.endpoint.is_none() {
        out.push(problem(
            "mqtt.endpoint",
            "no broker endpoint is set",
            format!(
                "{}; `aws iot describe-endpoint --endpoint-type iot:Data-ATS` prints yours",
                set_hint(
                    "mqtt.endpoint",
                    Some("endpoint"),
                    "\"<id>-ats.iot.<region>.amazonaws.com\""
                )
            ),
        ));
    }
    if mqtt.port == 0 {
        out.push(problem(
            "mqtt.port",
            "port 0 is not a broker port",
            "use 8883 (MQTT over TLS) or 443 (ALPN x-amzn-mqtt-ca)",
        ));
    }
    match &mqtt.thing_name {
        None => out.push(problem(
            "mqtt.thing_name",
            "no thing name is set",
            set_hint("mqtt.thing_name", Some("thing-name"), "\"my-gateway\""),
        )),
        Some(name) if !is_valid_thing_name(name) => out.push(problem(
            "mqtt.thing_name",
            format!("{name:?} is not a valid AWS IoT thing name"),
            "use 1 to 128 characters from a-z, A-Z, 0-9, ':', '_' and '-'",
        )),
        Some(_) => {}
    }
    if let Some(id) = &mqtt.client_id {
        if id.len() > 128 {
            out.push(problem(
                "mqtt.client_id",
                "the client id is longer than 128 characters (AWS IoT's limit)",
                "shorten it, or remove it to use the thing name",
            ));
        }
    }
    if mqtt.keep_alive_secs > u64::from(u16::MAX) {
        out.push(problem(
            "mqtt.keep_alive_secs",
            format!(
                "{} s does not fit MQTT's 16-bit keep-alive",
                mqtt.keep_alive_secs
            ),
            "use a value between 30 and 1200 (AWS IoT's range); 60 is the default",
        ));
    }
    if mqtt.reconnect_min_secs == 0 || mqtt.reconnect_min_secs > mqtt.reconnect_max_secs {
        out.push(problem(
            "mqtt.reconnect_min_secs",
            format!(
                "the reconnect delay must be at least 1 s and at most reconnect_max_secs ({} s), it is {} s",
                mqtt.reconnect_max_secs, mqtt.reconnect_min_secs
            ),
            "set reconnect_min_secs to 1 and reconnect_max_secs to 120 (the defaults), or other values with min <= max",
        ));
    }

    let cert = match &mqtt.cert {
        None => {
            out.push(problem(
                "mqtt.cert",
                "no device certificate is set",
                set_hint(
                    "mqtt.cert",
                    Some("cert"),
                    "\"/etc/iotjobsd/certs/device.pem.crt\"",
                ),
            ));
            None
        }
        Some(path) => check_cert(path, out),
    };
    let key = match &mqtt.key {
        None => {
            out.push(problem(
                "mqtt.key",
                "no private key is set",
                set_hint(
                    "mqtt.key",
                    Some("key"),
                    "\"/etc/iotjobsd/certs/private.pem.key\"",
                ),
            ));
            None
        }
        Some(path) => check_key(path, out),
    };
    if let (Some(cert), Some(key), Some(cert_path), Some(key_path)) =
        (cert, key, &mqtt.cert, &mqtt.key)
    {
        match pki::key_matches(&cert, &key) {
            Ok(true) => {}
            Ok(false) => out.push(problem(
                "mqtt.key",
                format!(
                    "the private key {} does not match the certificate {}",
                    key_path.display(),
                    cert_path.display()
                ),
                "point mqtt.key at the key the certificate was issued for (AWS downloads them together as *-private.pem.key and *-certificate.pem.crt)",
            )),
            Err(e) => out.push(problem(
                "mqtt.key",
                format!("{}: {e}", key_path.display()),
                "use an RSA (2048+ bits), ECDSA P-256/P-384 or Ed25519 key in PEM form",
            )),
        }
    }
    if let Some(path) = &mqtt.root_ca {
        match pki::read_file(path).and_then(|pem| pki::parse_certs(&pem)) {
            Ok(_) => {}
            Err(e @ pki::PkiError::Read { .. }) => out.push(problem(
                "mqtt.root_ca",
                e.to_string(),
                "fix the path (e.g. AmazonRootCA1.pem from https://www.amazontrust.com/repository/), or remove root_ca to use the system roots",
            )),
            Err(e) => out.push(problem(
                "mqtt.root_ca",
                format!("{} is not a PEM certificate bundle: {e}", path.display()),
                "use the PEM root CA (AmazonRootCA1.pem for AWS IoT), or remove root_ca to use the system roots",
            )),
        }
    }
}

fn check_cert(
    path: &Path,
    out: &mut Vec<Problem>,
) -> Option<rustls_pki_types::CertificateDer<'static>> {
    let pem = match pki::read_file(path) {
        Ok(pem) => pem,
        Err(e) => {
            out.push(unreadable("mqtt.cert", path, &e));
            return None;
        }
    };
    match pki::parse_certs(&pem) {
        Ok(mut certs) => {
            let leaf = certs.swap_remove(0);
            if let Some(why) = pki::validity_problem(&leaf) {
                out.push(problem(
                    "mqtt.cert",
                    format!("the certificate {} {why}", path.display()),
                    "issue a new device certificate and point mqtt.cert at it (and check the system clock)",
                ));
            }
            Some(leaf)
        }
        Err(e) => {
            out.push(problem(
                "mqtt.cert",
                format!("{} is not a usable certificate: {e}", path.display()),
                "point mqtt.cert at the device certificate in PEM form (-----BEGIN CERTIFICATE-----)",
            ));
            None
        }
    }
}

fn check_key(
    path: &Path,
    out: &mut Vec<Problem>,
) -> Option<rustls_pki_types::PrivateKeyDer<'static>> {
    // The mode check comes first and does not need read access, so a root-owned key is
    // still checked when check-config runs unprivileged.
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            out.push(problem(
                "mqtt.key",
                format!(
                    "the private key {} is readable or writable by group or others (mode {:04o})",
                    path.display(),
                    mode
                ),
                format!("chmod 600 {}", path.display()),
            ));
        }
    }
    let pem = match pki::read_file(path) {
        Ok(pem) => pem,
        Err(e) => {
            out.push(unreadable("mqtt.key", path, &e));
            return None;
        }
    };
    match pki::parse_key(&pem) {
        Ok(key) => Some(key),
        Err(e) => {
            out.push(problem(
                "mqtt.key",
                format!("{}: {e}", path.display()),
                "point mqtt.key at the device's private key in PEM form",
            ));
            None
        }
    }
}

fn unreadable(key: &str, path: &Path, err: &pki::PkiError) -> Problem {
    let fix = match err {
        pki::PkiError::Read { source, .. }
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            "run iotjobsd (and check-config) as the user that owns the file, usually root, or fix its ownership".to_string()
        }
        _ => format!("create {} or point {key} at the right file", path.display()),
    };
    problem(key, err.to_string(), fix)
}

fn check_jobs(config: &Config, out: &mut Vec<Problem>) {
    let dir = &config.jobs.handler_dir;
    if !dir.is_dir() {
        let what = if dir.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        out.push(problem(
            "jobs.handler_dir",
            format!("the handler directory {} {what}", dir.display()),
            format!(
                "create it (install -d -m 755 {}) or set jobs.handler_dir / IOTJOBSD_JOBS__HANDLER_DIR / --handler-dir",
                dir.display()
            ),
        ));
    }
    check_not_shared_writable("jobs.handler_dir", dir, out);
    for (i, extra) in config.jobs.allowed_handler_dirs.iter().enumerate() {
        check_not_shared_writable(&format!("jobs.allowed_handler_dirs[{i}]"), extra, out);
    }
    for (i, extra) in config.jobs.allowed_handler_dirs.iter().enumerate() {
        if extra.is_relative() {
            out.push(problem(
                &format!("jobs.allowed_handler_dirs[{i}]"),
                format!("{} is not an absolute path", extra.display()),
                "use absolute paths",
            ));
        }
    }
    check_handler_path(&config.jobs.handler_path, out);
    if config.jobs.default_step_timeout_secs == 0 {
        out.push(problem(
            "jobs.default_step_timeout_secs",
            "a step timeout of 0 s would fail every step at once",
            "set a timeout in seconds (3600 is the default)",
        ));
    }
}

/// An empty entry or a relative one would make steps (and runCommand's lookup) depend on
/// the step's working directory.
fn check_handler_path(path: &str, out: &mut Vec<Problem>) {
    let fix = "use colon-separated absolute directories, e.g. \"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\" (the default)";
    if path.is_empty() {
        out.push(problem("jobs.handler_path", "the step PATH is empty", fix));
        return;
    }
    for entry in path.split(':') {
        if !Path::new(entry).is_absolute() {
            let what = if entry.is_empty() {
                "has an empty entry (the current directory)".to_string()
            } else {
                format!("has a relative entry {entry:?}")
            };
            out.push(problem(
                "jobs.handler_path",
                format!("the step PATH {path:?} {what}"),
                fix,
            ));
        }
    }
}

/// The sandbox refuses handlers in a directory others can write to (anyone could plant
/// a handler that then runs as root), so catch it before the first job fails.
fn check_not_shared_writable(key: &str, dir: &Path, out: &mut Vec<Problem>) {
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o7777;
    if meta.is_dir() && mode & 0o022 != 0 {
        out.push(problem(
            key,
            format!(
                "the handler directory {} is writable by group or others (mode {mode:04o}); its handlers would be refused",
                dir.display()
            ),
            format!("chmod go-w {}", dir.display()),
        ));
    }
}

fn check_log(config: &Config, out: &mut Vec<Problem>) {
    let log = &config.log;
    if log.file.is_none() && !log.stdout {
        out.push(problem(
            "log.file",
            "no log output: log.file is empty and log.stdout is false",
            "set log.stdout = true (under systemd the journal gets the lines) or set log.file",
        ));
    }
    if let Err(e) = crate::logging::parse_filter(&log.level) {
        out.push(problem(
            "log.level",
            format!("{:?} is not a log level or filter: {e}", log.level),
            "use error, warn, info, debug or trace (or a RUST_LOG-style filter like `info,iotjobs::mqtt=debug`)",
        ));
    }
    if log.file.is_some() && log.rotation == Rotation::Size && log.max_size_mb == 0 {
        out.push(problem(
            "log.max_size_mb",
            "size rotation with a 0 MB limit would rotate on every line",
            "set max_size_mb to 1 or more (10 is the default)",
        ));
    }
    if log.file.is_some() && log.rotation != Rotation::Never && log.keep_files == 0 {
        out.push(problem(
            "log.keep_files",
            "rotation keeps 0 files",
            "set keep_files to 1 or more (7 is the default), or rotation = \"never\"",
        ));
    }
    if let Some(file) = &log.file {
        if file.file_name().is_none() {
            out.push(problem(
                "log.file",
                format!("{} does not name a file", file.display()),
                "use a file path such as /var/log/iotjobsd/iotjobsd.log, or \"\" to disable the file",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thing_name_pattern() {
        assert!(is_valid_thing_name("gw-01:a_b"));
        assert!(is_valid_thing_name(&"a".repeat(128)));
        assert!(!is_valid_thing_name(&"a".repeat(129)));
        assert!(!is_valid_thing_name(""));
        assert!(!is_valid_thing_name("has space"));
        assert!(!is_valid_thing_name("slash/name"));
        assert!(!is_valid_thing_name("dot.name"));
    }

    #[test]
    fn defaults_report_each_missing_setting_with_a_fix() {
        let problems = validate(&Config::default());
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for key in ["mqtt.endpoint", "mqtt.thing_name", "mqtt.cert", "mqtt.key"] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        let endpoint = problems.iter().find(|p| p.key == "mqtt.endpoint").unwrap();
        assert!(
            endpoint.fix.contains("IOTJOBSD_MQTT__ENDPOINT"),
            "{}",
            endpoint.fix
        );
        assert!(endpoint.fix.contains("--endpoint"), "{}", endpoint.fix);
    }

    #[test]
    fn no_log_output_at_all_is_a_problem() {
        let mut config = Config::default();
        config.log.file = None;
        assert!(validate(&config).iter().any(|p| p.key == "log.file"));
        config.log.stdout = true;
        assert!(!validate(&config).iter().any(|p| p.key == "log.file"));
    }

    #[test]
    fn handler_path_must_be_absolute_directories() {
        let problems = |path: &str| {
            let mut config = Config::default();
            config.jobs.handler_path = path.into();
            validate(&config)
                .into_iter()
                .filter(|p| p.key == "jobs.handler_path")
                .map(|p| p.message)
                .collect::<Vec<_>>()
        };
        assert!(problems(crate::sandbox::STEP_PATH).is_empty());
        assert!(problems("/opt/shims:/usr/bin").is_empty());
        assert_eq!(problems(""), ["the step PATH is empty"]);
        assert_eq!(
            problems("/bin::bin"),
            [
                "the step PATH \"/bin::bin\" has an empty entry (the current directory)",
                "the step PATH \"/bin::bin\" has a relative entry \"bin\""
            ]
        );
    }

    #[test]
    fn bad_log_settings() {
        let mut config = Config::default();
        config.log.level = "info,=[".into();
        config.log.rotation = Rotation::Size;
        config.log.max_size_mb = 0;
        config.log.keep_files = 0;
        let keys: Vec<String> = validate(&config).into_iter().map(|p| p.key).collect();
        for key in ["log.level", "log.max_size_mb", "log.keep_files"] {
            assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
        }
    }
}
