//! Configuration and logging, as an operator sees them: layered loading, validation
//! messages, `check-config` / `import-aws-config` through the real binary, log rotation.
//! Everything lives in temp dirs; nothing touches /etc or the process environment.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use iotjobs::cli::GlobalArgs;
use iotjobs::config::{self, Config, Loader, LogConfig, Rotation};
use iotjobs::logging::{self, LoggingEnv};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/config");

/// Device identity on disk: CA, client cert, its key and an unrelated key.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    other_key: PathBuf,
}

fn write_mode(path: &Path, contents: &str, mode: u32) {
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A directory with mode 0755 whatever the umask (group-writable handler dirs are refused).
fn make_dir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn make_pki(dir: &Path) -> Pki {
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, &ca_key);
    let device_key = KeyPair::generate().unwrap();
    let device_cert = CertificateParams::new(vec!["gw-01".to_string()])
        .unwrap()
        .signed_by(&device_key, &issuer)
        .unwrap();
    let other = KeyPair::generate().unwrap();

    let pki = Pki {
        ca: dir.join("AmazonRootCA1.pem"),
        cert: dir.join("device.pem.crt"),
        key: dir.join("private.pem.key"),
        other_key: dir.join("other.pem.key"),
    };
    write_mode(&pki.ca, &ca_cert.pem(), 0o644);
    write_mode(&pki.cert, &device_cert.pem(), 0o644);
    write_mode(&pki.key, &device_key.serialize_pem(), 0o600);
    write_mode(&pki.other_key, &other.serialize_pem(), 0o600);
    pki
}

/// A complete, valid configuration file for `pki`, with a handler dir under `dir`.
fn valid_toml(dir: &Path, pki: &Pki) -> String {
    let handlers = dir.join("handlers");
    make_dir(&handlers);
    format!(
        "[mqtt]\nendpoint = \"abc123-ats.iot.eu-west-1.amazonaws.com\"\nthing_name = \"gw-01\"\n\
         cert = \"{}\"\nkey = \"{}\"\nroot_ca = \"{}\"\n\n[jobs]\nhandler_dir = \"{}\"\n\n\
         [log]\nfile = \"{}\"\n",
        pki.cert.display(),
        pki.key.display(),
        pki.ca.display(),
        handlers.display(),
        dir.join("log/iotjobsd.log").display()
    )
}

fn valid_config(dir: &Path) -> (Config, Pki) {
    let pki = make_pki(&dir.join("certs"));
    let path = dir.join("config.toml");
    std::fs::write(&path, valid_toml(dir, &pki)).unwrap();
    let loaded = Loader::new(dir, BTreeMap::new())
        .with_cwd(dir)
        .load(&GlobalArgs::default())
        .unwrap();
    (loaded.config, pki)
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The real binary, with a controlled environment (no inherited IOTJOBSD_* or RUST_LOG).
fn iotjobsd(config_dir: &Path, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_iotjobsd"));
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("IOTJOBSD_CONFIG_DIR", config_dir)
        .current_dir(config_dir);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------- layers

#[test]
fn each_layer_overrides_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("config.toml"),
        "[mqtt]\nendpoint = \"file\"\nport = 1111\nthing_name = \"file\"\nclient_id = \"file\"\n\
         [log]\nlevel = \"file\"\nkeep_files = 3\n",
    )
    .unwrap();
    std::fs::create_dir(d.join("config.d")).unwrap();
    // Written in reverse so directory order cannot pass for lexical order.
    std::fs::write(
        d.join("config.d/20-second.toml"),
        "[mqtt]\nthing_name = \"dropin-20\"\nclient_id = \"dropin-20\"\n[log]\nlevel = \"dropin-20\"\n",
    )
    .unwrap();
    std::fs::write(
        d.join("config.d/10-first.toml"),
        "[mqtt]\nport = 2222\nthing_name = \"dropin-10\"\nclient_id = \"dropin-10\"\n",
    )
    .unwrap();
    std::fs::write(d.join("config.d/30-ignored.toml.dpkg-old"), "garbage = [").unwrap();

    let flags = GlobalArgs {
        client_id: Some("flag".into()),
        ..GlobalArgs::default()
    };
    let loaded = Loader::new(
        d,
        env(&[
            ("IOTJOBSD_LOG__LEVEL", "env"),
            ("IOTJOBSD_MQTT__CLIENT_ID", "env"),
        ]),
    )
    .with_cwd(d)
    .load(&flags)
    .unwrap();
    let c = &loaded.config;
    assert_eq!(c.mqtt.reconnect_max_secs, 120, "default");
    assert_eq!(c.log.keep_files, 3, "main file over default");
    assert_eq!(c.mqtt.endpoint.as_deref(), Some("file"), "main file");
    assert_eq!(c.mqtt.port, 2222, "first drop-in over main file");
    assert_eq!(
        c.mqtt.thing_name.as_deref(),
        Some("dropin-20"),
        "later drop-in wins"
    );
    assert_eq!(c.log.level, "env", "environment over drop-ins");
    assert_eq!(
        c.mqtt.client_id.as_deref(),
        Some("flag"),
        "flag over environment"
    );
    let sources: Vec<&str> = loaded.sources.iter().map(String::as_str).collect();
    assert_eq!(
        sources,
        vec![
            d.join("config.toml").to_str().unwrap(),
            d.join("config.d/10-first.toml").to_str().unwrap(),
            d.join("config.d/20-second.toml").to_str().unwrap(),
            "environment variable IOTJOBSD_LOG__LEVEL",
            "environment variable IOTJOBSD_MQTT__CLIENT_ID",
            "command-line flag --client-id",
        ]
    );
}

#[test]
fn env_override_is_typed_and_reaches_every_section() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[mqtt]\nport = 8883\nthing_name = \"file\"\n",
    )
    .unwrap();
    let c = Loader::new(
        dir.path(),
        env(&[
            ("IOTJOBSD_MQTT__PORT", "443"),
            ("IOTJOBSD_MQTT__THING_NAME", "42"),
            ("IOTJOBSD_JOBS__ENABLED", "false"),
            ("IOTJOBSD_LOG__ROTATION", "size"),
            ("IOTJOBSD_PATHS__STATE_DIR", "state"),
            ("IOTJOBSD_CONFIG_DIR", "/not/a/key"),
            ("UNRELATED", "x"),
        ]),
    )
    .with_cwd("/work")
    .load(&GlobalArgs::default())
    .unwrap()
    .config;
    assert_eq!(c.mqtt.port, 443);
    assert_eq!(c.mqtt.thing_name.as_deref(), Some("42"));
    assert!(!c.jobs.enabled);
    assert_eq!(c.log.rotation, Rotation::Size);
    assert_eq!(c.paths.state_dir, PathBuf::from("/work/state"));
}

#[test]
fn relative_paths_in_a_file_are_relative_to_that_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config.d")).unwrap();
    std::fs::write(
        dir.path().join("config.d/certs.toml"),
        "[mqtt]\ncert = \"certs/device.pem\"\n",
    )
    .unwrap();
    let c = Loader::new(dir.path(), BTreeMap::new())
        .load(&GlobalArgs::default())
        .unwrap()
        .config;
    assert_eq!(
        c.mqtt.cert,
        Some(dir.path().join("config.d/certs/device.pem"))
    );
}

#[test]
fn unknown_keys_name_the_key_and_the_file_or_variable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[mqtt]\nthing_name = \"a\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("config.d")).unwrap();
    let dropin = dir.path().join("config.d/50-site.toml");
    std::fs::write(
        &dropin,
        "[mqtt]\nthingname = \"typo\"\n[jobs]\nhandler_directory = \"/x\"\n",
    )
    .unwrap();
    let err = Loader::new(dir.path(), env(&[("IOTJOBSD_MQTT__PROT", "1")]))
        .load(&GlobalArgs::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "unknown key `mqtt.thingname` in {}",
            dropin.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "unknown key `jobs.handler_directory` in {}",
            dropin.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("unknown key `mqtt.prot` in environment variable IOTJOBSD_MQTT__PROT"),
        "{err}"
    );
}

#[test]
fn bad_values_and_bad_toml_name_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("config.toml");
    std::fs::write(&main, "[mqtt]\nport = \"eighty\"\n").unwrap();
    let err = Loader::new(dir.path(), BTreeMap::new())
        .load(&GlobalArgs::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "invalid value for `mqtt.port` in {}",
            main.display()
        )),
        "{err}"
    );

    std::fs::write(&main, "[mqtt\n").unwrap();
    let err = Loader::new(dir.path(), BTreeMap::new())
        .load(&GlobalArgs::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("{}: invalid TOML", main.display())),
        "{err}"
    );
}

#[test]
fn explicit_config_must_exist_but_the_default_may_be_missing() {
    let dir = tempfile::tempdir().unwrap();
    let c = Loader::new(dir.path(), BTreeMap::new())
        .load(&GlobalArgs::default())
        .unwrap();
    assert_eq!(c.config, Config::default());
    assert!(c.sources.is_empty());

    let missing = dir.path().join("nope.toml");
    let flags = GlobalArgs {
        config: Some(missing.clone()),
        ..GlobalArgs::default()
    };
    let err = Loader::new(dir.path(), BTreeMap::new())
        .load(&flags)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "configuration file {} does not exist (given with --config)",
            missing.display()
        )
    );
}

#[test]
fn explicit_config_takes_drop_ins_from_its_own_directory() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("config.d")).unwrap();
    std::fs::write(site.join("main.toml"), "[mqtt]\nport = 1\n").unwrap();
    std::fs::write(site.join("config.d/a.toml"), "[mqtt]\nport = 2\n").unwrap();
    // The default directory's file must not be read when --config is given.
    std::fs::write(dir.path().join("config.toml"), "[mqtt]\nport = 3\n").unwrap();
    let flags = GlobalArgs {
        config: Some(site.join("main.toml")),
        ..GlobalArgs::default()
    };
    let c = Loader::new(dir.path(), BTreeMap::new())
        .load(&flags)
        .unwrap()
        .config;
    assert_eq!(c.mqtt.port, 2);
}

// ---------------------------------------------------------------- validation

#[test]
fn a_valid_configuration_has_no_problems() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = valid_config(dir.path());
    assert_eq!(config::validate(&config), vec![]);
}

#[test]
fn group_readable_key_is_reported_with_the_chmod_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (config, pki) = valid_config(dir.path());
    std::fs::set_permissions(&pki.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let problems = config::validate(&config);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].key, "mqtt.key");
    assert!(problems[0].message.contains(&pki.key.display().to_string()));
    assert!(
        problems[0].message.contains("0644"),
        "{}",
        problems[0].message
    );
    assert_eq!(problems[0].fix, format!("chmod 600 {}", pki.key.display()));

    // Stricter than needed is fine (the AWS client insists on exactly 600).
    std::fs::set_permissions(&pki.key, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert_eq!(config::validate(&config), vec![]);
    // Writable by the group is as bad as readable.
    std::fs::set_permissions(&pki.key, std::fs::Permissions::from_mode(0o620)).unwrap();
    assert_eq!(config::validate(&config).len(), 1);
}

#[test]
fn a_handler_directory_others_can_write_to_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = valid_config(dir.path());
    let handlers = &config.jobs.handler_dir;
    std::fs::set_permissions(handlers, std::fs::Permissions::from_mode(0o777)).unwrap();
    let problems = config::validate(&config);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(
        problems[0].fix,
        format!("chmod go-w {}", handlers.display())
    );
}

#[test]
fn a_relative_config_flag_is_resolved_against_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc/config.d")).unwrap();
    std::fs::write(
        dir.path().join("etc/main.toml"),
        "[mqtt]\ncert = \"c.pem\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("etc/config.d/a.toml"),
        "[mqtt]\nport = 443\n",
    )
    .unwrap();
    let flags = GlobalArgs {
        config: Some(PathBuf::from("etc/main.toml")),
        ..GlobalArgs::default()
    };
    let c = Loader::new("/nonexistent", BTreeMap::new())
        .with_cwd(dir.path())
        .load(&flags)
        .unwrap()
        .config;
    assert_eq!(c.mqtt.cert, Some(dir.path().join("etc/c.pem")));
    assert_eq!(c.mqtt.port, 443);
}

#[test]
fn every_problem_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(&dir.path().join("certs"));
    let garbage = dir.path().join("garbage.crt");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::set_permissions(&pki.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut config = Config::default();
    config.mqtt.thing_name = Some("gw 01/with spaces".into());
    config.mqtt.cert = Some(garbage.clone());
    config.mqtt.key = Some(pki.key.clone());
    config.mqtt.root_ca = Some(dir.path().join("missing-ca.pem"));
    config.jobs.handler_dir = dir.path().join("no-handlers");

    let problems = config::validate(&config);
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "mqtt.endpoint",
            "mqtt.thing_name",
            "mqtt.cert",
            "mqtt.key",
            "mqtt.root_ca",
            "jobs.handler_dir"
        ],
        "{problems:#?}"
    );
    for p in &problems {
        assert!(!p.fix.is_empty(), "{p}");
    }
    let cert = &problems[2];
    assert!(
        cert.message.contains("garbage.crt") && cert.message.contains("X.509"),
        "{cert}"
    );
    assert!(problems[3].fix.starts_with("chmod 600 "), "{}", problems[3]);
    assert!(problems[5].fix.contains("install -d"), "{}", problems[5]);
}

#[test]
fn missing_settings_are_each_reported() {
    let problems = config::validate(&Config::default());
    for key in ["mqtt.endpoint", "mqtt.thing_name", "mqtt.cert", "mqtt.key"] {
        let p = problems
            .iter()
            .find(|p| p.key == key)
            .unwrap_or_else(|| panic!("{key}"));
        assert!(p.message.contains("no "), "{p}");
    }
}

#[test]
fn a_key_that_does_not_match_the_cert_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, pki) = valid_config(dir.path());
    config.mqtt.key = Some(pki.other_key.clone());
    let problems = config::validate(&config);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].message.contains("does not match"),
        "{}",
        problems[0]
    );
}

#[test]
fn rsa_pkcs1_pkcs8_and_ec_sec1_keys_are_understood() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, _) = valid_config(dir.path());
    let copy = |name: &str| {
        let to = dir.path().join(name);
        std::fs::copy(Path::new(FIXTURES).join(name), &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
        to
    };
    let (rsa_crt, ec_crt) = (copy("rsa.crt"), copy("ec.crt"));
    for (cert, key) in [
        (&rsa_crt, "rsa-pkcs1.key"),
        (&rsa_crt, "rsa-pkcs8.key"),
        (&ec_crt, "ec-sec1.key"),
    ] {
        config.mqtt.cert = Some(cert.clone());
        config.mqtt.key = Some(copy(key));
        assert_eq!(config::validate(&config), vec![], "{key}");
    }
    // Across types: an RSA key with the EC certificate.
    config.mqtt.cert = Some(ec_crt);
    config.mqtt.key = Some(copy("rsa-pkcs1.key"));
    let problems = config::validate(&config);
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].message.contains("does not match"),
        "{}",
        problems[0]
    );
}

#[test]
fn debug_output_holds_key_paths_never_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let (config, pki) = valid_config(dir.path());
    let pem = std::fs::read_to_string(&pki.key).unwrap();
    let body = pem.lines().nth(1).unwrap();
    let debug = format!("{config:?}");
    assert!(debug.contains(&pki.key.display().to_string()));
    assert!(!debug.contains(body) && !debug.contains("PRIVATE KEY"));
}

// ---------------------------------------------------------------- check-config

#[test]
fn check_config_exits_0_when_valid_and_prints_the_effective_config() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(&dir.path().join("certs"));
    std::fs::write(dir.path().join("config.toml"), valid_toml(dir.path(), &pki)).unwrap();
    let out = iotjobsd(
        dir.path(),
        &["check-config", "--thing-name", "from-flag"],
        &[("IOTJOBSD_MQTT__PORT", "443")],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("configuration is valid"), "{stderr}");
    // stdout is the effective configuration as TOML, with every layer applied.
    let printed: Config = toml::from_str(&stdout).unwrap();
    assert_eq!(printed.mqtt.port, 443);
    assert_eq!(printed.mqtt.thing_name.as_deref(), Some("from-flag"));
    assert_eq!(printed.mqtt.key.as_ref(), Some(&pki.key));
    assert!(
        stdout.contains("command-line flag --thing-name"),
        "{stdout}"
    );
    let key_pem = std::fs::read_to_string(&pki.key).unwrap();
    assert!(!stdout.contains(key_pem.lines().nth(1).unwrap()));
}

#[test]
fn check_config_exits_1_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(&dir.path().join("certs"));
    std::fs::write(dir.path().join("config.toml"), valid_toml(dir.path(), &pki)).unwrap();
    std::fs::set_permissions(&pki.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = iotjobsd(
        dir.path(),
        &["check-config"],
        &[("IOTJOBSD_MQTT__ENDPOINT", "")],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("problem: mqtt.endpoint: no broker endpoint is set"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("fix: chmod 600 {}", pki.key.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("configuration is invalid: 2 problems"),
        "{stderr}"
    );
}

#[test]
fn check_config_exits_2_when_the_config_cannot_be_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("config.toml");
    std::fs::write(&main, "[mqtt]\nendpiont = \"x\"\n").unwrap();
    let out = iotjobsd(dir.path(), &["check-config"], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "unknown key `mqtt.endpiont` in {}",
            main.display()
        )),
        "{stderr}"
    );

    let out = iotjobsd(
        dir.path(),
        &["check-config", "--config", "/nonexistent/iotjobsd.toml"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/iotjobsd.toml does not exist"));
}

// ---------------------------------------------------------------- import-aws-config

/// Modelled on the AWS IoT Device Client's config template (reference §6.2), with the
/// paths under `~` as its setup script writes them.
const AWS_CONFIG: &str = r#"{
  "endpoint": "a1b2c3d4e5f6g7-ats.iot.us-west-2.amazonaws.com",
  "cert": "~/.aws-iot-device-client/certs/device.pem.crt",
  "key": "~/.aws-iot-device-client/certs/private.pem.key",
  "root-ca": "~/.aws-iot-device-client/certs/AmazonRootCA1.pem",
  "thing-name": "gateway-0042",
  "logging": {
    "enable-sdk-logging": false,
    "level": "DEBUG",
    "type": "FILE",
    "file": "/var/log/aws-iot-device-client/aws-iot-device-client.log",
    "sdk-log-level": "TRACE",
    "sdk-log-file": "/var/log/aws-iot-device-client/sdk.log"
  },
  "jobs": {
    "enabled": true,
    "handler-directory": "~/.aws-iot-device-client/jobs"
  },
  "tunneling": { "enabled": true },
  "device-defender": { "enabled": true, "interval": 300 },
  "fleet-provisioning": {
    "enabled": false, "template-name": "", "template-parameters": "", "csr-file": "", "device-key": ""
  },
  "samples": {
    "pub-sub": {
      "enabled": false, "publish-topic": "", "publish-file": "", "subscribe-topic": "", "subscribe-file": ""
    }
  },
  "config-shadow": { "enabled": false },
  "sample-shadow": { "enabled": false, "shadow-name": "", "shadow-input-file": "", "shadow-output-file": "" }
}"#;

#[test]
fn imported_aws_config_passes_check_config_and_unmapped_keys_warn() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let aws_dir = home.join(".aws-iot-device-client");
    let pki = make_pki(&aws_dir.join("certs"));
    make_dir(&aws_dir.join("jobs"));
    let json = dir.path().join("aws-iot-device-client.conf");
    std::fs::write(&json, AWS_CONFIG).unwrap();

    let out = iotjobsd(
        dir.path(),
        &["import-aws-config", json.to_str().unwrap()],
        &[("HOME", home.to_str().unwrap())],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    let mut imported: toml::Table = toml::from_str(&stdout).unwrap();
    assert_eq!(
        imported["mqtt"]["endpoint"].as_str(),
        Some("a1b2c3d4e5f6g7-ats.iot.us-west-2.amazonaws.com")
    );
    assert_eq!(
        imported["mqtt"]["thing_name"].as_str(),
        Some("gateway-0042")
    );
    assert_eq!(
        imported["mqtt"]["cert"].as_str(),
        pki.cert.to_str(),
        "~ expanded"
    );
    assert_eq!(imported["mqtt"]["key"].as_str(), pki.key.to_str());
    assert_eq!(imported["mqtt"]["root_ca"].as_str(), pki.ca.to_str());
    assert_eq!(
        imported["jobs"]["handler_dir"].as_str(),
        aws_dir.join("jobs").to_str()
    );
    assert_eq!(imported["jobs"]["enabled"].as_bool(), Some(true));
    assert_eq!(imported["log"]["level"].as_str(), Some("debug"));
    assert_eq!(
        imported["log"]["file"].as_str(),
        Some("/var/log/aws-iot-device-client/aws-iot-device-client.log")
    );

    let warnings: Vec<&str> = stderr.lines().collect();
    for expected in [
        "warning: tunneling.enabled: ",
        "warning: device-defender.enabled: ",
        "warning: device-defender.interval: ",
        "warning: fleet-provisioning.template-name: ",
        "warning: samples.pub-sub.publish-topic: ",
        "warning: config-shadow.enabled: ",
        "warning: sample-shadow.shadow-name: ",
        "warning: logging.enable-sdk-logging: ",
        "warning: logging.sdk-log-level: ",
        "warning: logging.sdk-log-file: ",
    ] {
        assert!(
            warnings.iter().any(|w| w.starts_with(expected)),
            "{expected} not in {stderr}"
        );
    }
    assert!(
        warnings.iter().all(|w| w.starts_with("warning: ")),
        "{stderr}"
    );
    // Mapped keys never warn.
    assert!(
        !stderr.contains("warning: endpoint") && !stderr.contains("warning: jobs."),
        "{stderr}"
    );

    // The test's only rewrite: the log file moves out of /var/log.
    imported["log"].as_table_mut().unwrap().insert(
        "file".into(),
        dir.path().join("log/iotjobsd.log").to_str().unwrap().into(),
    );
    let converted = dir.path().join("imported.toml");
    std::fs::write(&converted, toml::to_string(&imported).unwrap()).unwrap();
    let out = iotjobsd(
        dir.path(),
        &["check-config", "--config", converted.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn import_of_a_broken_file_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bad.json");
    std::fs::write(&json, "{ \"endpoint\": ").unwrap();
    let out = iotjobsd(
        dir.path(),
        &["import-aws-config", json.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not valid JSON"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}

// ---------------------------------------------------------------- logging

fn log_lines(config: &LogConfig, lines: usize) {
    let (subscriber, guard) =
        logging::build(config, 0, &LoggingEnv::default(), std::io::sink).unwrap();
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..lines {
            tracing::info!(line = i, "{}", "x".repeat(200));
        }
    });
    drop(guard); // flushes the non-blocking writer
}

#[test]
fn size_rotation_keeps_n_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("log/iotjobsd.log");
    let config = LogConfig {
        file: Some(file.clone()),
        rotation: Rotation::Size,
        max_size_mb: 1,
        keep_files: 2,
        ..LogConfig::default()
    };
    // ~260 bytes a line: 20,000 lines are about 5 MiB, so five rotations.
    log_lines(&config, 20_000);
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("log"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["iotjobsd.log", "iotjobsd.log.1", "iotjobsd.log.2"]
    );
    for name in &names {
        let len = std::fs::metadata(dir.path().join("log").join(name))
            .unwrap()
            .len();
        assert!(len <= 1024 * 1024, "{name} is {len} bytes");
    }
    // The newest line is in the live file, and rotation never splits a line.
    let live = std::fs::read_to_string(&file).unwrap();
    assert!(live.lines().last().unwrap().contains("line=19999"));
    let rotated = std::fs::read_to_string(dir.path().join("log/iotjobsd.log.1")).unwrap();
    assert!(rotated.ends_with('\n') && rotated.lines().all(|l| l.contains(" INFO ")));
}

#[test]
fn daily_rotation_writes_through_the_live_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("iotjobsd.log");
    let config = LogConfig {
        file: Some(file.clone()),
        rotation: Rotation::Daily,
        ..LogConfig::default()
    };
    log_lines(&config, 3);
    assert!(std::fs::symlink_metadata(&file)
        .unwrap()
        .file_type()
        .is_symlink());
    let live = std::fs::read_to_string(&file).unwrap();
    assert_eq!(live.lines().count(), 3, "{live}");
    assert!(live.contains("line=2"));
    // Job output may be sensitive: today's file is not world-readable (0640).
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o007, 0, "mode {mode:o}");
}

#[test]
fn never_rotation_appends_to_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("iotjobsd.log");
    std::fs::write(&file, "earlier line\n").unwrap();
    let config = LogConfig {
        file: Some(file.clone()),
        rotation: Rotation::Never,
        ..LogConfig::default()
    };
    log_lines(&config, 2);
    let live = std::fs::read_to_string(&file).unwrap();
    assert!(
        live.starts_with("earlier line\n") && live.lines().count() == 3,
        "{live}"
    );
}

// ---------------------------------------------------------------- packaged config

/// Every key of `Config`, as `section.key`.
fn all_keys() -> Vec<String> {
    let mut full = Config::default();
    // Optional keys are absent from TOML while unset; give them values to list them.
    full.mqtt.endpoint = Some(String::new());
    full.mqtt.thing_name = Some(String::new());
    full.mqtt.client_id = Some(String::new());
    full.mqtt.cert = Some(PathBuf::new());
    full.mqtt.key = Some(PathBuf::new());
    full.mqtt.root_ca = Some(PathBuf::new());
    let value = toml::Value::try_from(&full).unwrap();
    let mut keys = Vec::new();
    for (section, table) in value.as_table().unwrap() {
        for key in table.as_table().unwrap().keys() {
            keys.push(format!("{section}.{key}"));
        }
    }
    keys
}

#[test]
fn packaged_config_lists_every_key_with_its_default() {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/config.toml"
    ))
    .unwrap();
    // As shipped: nothing set.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), &shipped).unwrap();
    let loader = Loader::new(dir.path(), BTreeMap::new());
    assert_eq!(
        loader.load(&GlobalArgs::default()).unwrap().config,
        Config::default()
    );

    // Every commented-out key (`#key = value`), uncommented, gives the defaults again.
    let uncommented: String = shipped
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path().join("config.toml"), &uncommented).unwrap();
    assert_eq!(
        loader.load(&GlobalArgs::default()).unwrap().config,
        Config::default()
    );

    let listed: toml::Table = toml::from_str(&uncommented).unwrap();
    for key in all_keys() {
        let (section, name) = key.split_once('.').unwrap();
        assert!(
            listed.get(section).and_then(|s| s.get(name)).is_some(),
            "packaging/config.toml does not list {key}"
        );
    }
}

#[test]
fn init_installs_the_global_logger_once() {
    // The only test that touches the global subscriber; the others use `with_default`,
    // which takes precedence on their own threads.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("var/log/iotjobsd.log");
    let config = LogConfig {
        file: Some(file.clone()),
        rotation: Rotation::Never,
        level: "warn".into(),
        ..LogConfig::default()
    };
    let guard = logging::init(&config, 0).unwrap();
    std::thread::spawn(|| {
        tracing::warn!(thing = "gw-01", "from another thread");
        tracing::info!("below the configured level");
    })
    .join()
    .unwrap();
    let again = logging::init(&config, 0);
    assert!(matches!(
        again,
        Err(logging::LoggingError::AlreadyInitialized(_))
    ));
    drop(guard);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("WARN")
            && text.contains("from another thread")
            && text.contains("thing=\"gw-01\""),
        "{text}"
    );
    // RUST_LOG in the test's environment would rightly override the configured level.
    if std::env::var_os("RUST_LOG").is_none() {
        assert!(!text.contains("below the configured level"), "{text}");
    }
}

#[test]
fn empty_values_unset_optional_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[mqtt]\nroot_ca = \"/ca.pem\"\n[log]\nfile = \"/x.log\"\n",
    )
    .unwrap();
    let flags = GlobalArgs {
        log_file: Some(PathBuf::new()),
        log_stdout: true,
        ..GlobalArgs::default()
    };
    let c = Loader::new(dir.path(), env(&[("IOTJOBSD_MQTT__ROOT_CA", "")]))
        .load(&flags)
        .unwrap()
        .config;
    assert_eq!(c.log.file, None);
    assert!(c.log.stdout);
    assert_eq!(c.mqtt.root_ca, None);
}
