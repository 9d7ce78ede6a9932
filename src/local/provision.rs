//! Provisioning a device directory from a running service, over its HTTP API: the thing's
//! certificate and key (CreateKeysAndCertificate), the local CA and a ready `iotjobsd`
//! `config.toml` pointing at the service's broker. Used by `create-thing --out` and the demo.
//!
//! The key file is created with mode 0600 (iotjobsd refuses keys readable by others); the
//! config is serialized from the daemon's own typed [`Config`], so its keys always match.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::config::Config;
use crate::local::control::client::{enc, ApiClient, ClientError};

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Api(#[from] ClientError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the service did not return {0}")]
    Missing(&'static str),
    #[error("cannot write the iotjobsd configuration: {0}")]
    Toml(#[from] toml::ser::Error),
}

/// The files written for one device.
#[derive(Debug, Clone)]
pub struct DeviceFiles {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub root_ca: PathBuf,
    pub config: PathBuf,
    /// `dir/state`, `dir/run`, `dir/iotjobsd.log` as set in the config.
    pub state_dir: PathBuf,
    pub runtime_dir: PathBuf,
    pub log_file: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ProvisionError + '_ {
    move |source| ProvisionError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), ProvisionError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io_err(path))?;
    // An existing file keeps its old mode through `open`; set it explicitly.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io_err(path))?;
    f.write_all(data).map_err(io_err(path))
}

/// Issues a certificate for the existing thing `thing` and writes the device directory.
/// `handler_dir` goes into the config (default: the packaged handler directory).
pub async fn write_device_dir(
    api: &ApiClient,
    thing: &str,
    dir: &Path,
    handler_dir: Option<&Path>,
) -> Result<DeviceFiles, ProvisionError> {
    let info = api.get("/iotjobs-local/info").await?;
    let ca = info["caCertificatePem"]
        .as_str()
        .ok_or(ProvisionError::Missing("its CA certificate"))?;
    let host = info["mqttHost"]
        .as_str()
        .ok_or(ProvisionError::Missing("its MQTT address"))?;
    let port = info["mqttPort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .ok_or(ProvisionError::Missing("its MQTT port"))?;
    let path = format!(
        "/keys-and-certificate?setAsActive=true&thingName={}",
        enc(thing)
    );
    let cert = api.call("POST", &path, Some(&json!({}))).await?;
    let cert_pem = cert["certificatePem"]
        .as_str()
        .ok_or(ProvisionError::Missing("a certificate"))?;
    let key_pem = cert["keyPair"]["PrivateKey"]
        .as_str()
        .ok_or(ProvisionError::Missing("a private key"))?;

    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))?;
    let dir = std::fs::canonicalize(dir).map_err(io_err(dir))?;
    let files = DeviceFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        root_ca: dir.join("root-ca.pem"),
        config: dir.join("config.toml"),
        state_dir: dir.join("state"),
        runtime_dir: dir.join("run"),
        log_file: dir.join("iotjobsd.log"),
        dir,
    };
    write_file(&files.key, key_pem.as_bytes(), 0o600)?;
    write_file(&files.cert, cert_pem.as_bytes(), 0o644)?;
    write_file(&files.root_ca, ca.as_bytes(), 0o644)?;

    let mut cfg = Config::default();
    cfg.mqtt.endpoint = Some(host.to_owned());
    cfg.mqtt.port = port;
    cfg.mqtt.thing_name = Some(thing.to_owned());
    cfg.mqtt.cert = Some(files.cert.clone());
    cfg.mqtt.key = Some(files.key.clone());
    cfg.mqtt.root_ca = Some(files.root_ca.clone());
    if let Some(h) = handler_dir {
        cfg.jobs.handler_dir = h.to_path_buf();
    }
    cfg.paths.state_dir = files.state_dir.clone();
    cfg.paths.runtime_dir = files.runtime_dir.clone();
    cfg.log.file = Some(files.log_file.clone());
    let text = format!(
        "# iotjobsd configuration for thing {thing}, written by `iotjobs-local create-thing`.\n\
         # It points at the local service's broker (mqtts://{host}:{port}).\n\n{}",
        toml::to_string(&cfg)?
    );
    write_file(&files.config, text.as_bytes(), 0o600)?;
    Ok(files)
}
