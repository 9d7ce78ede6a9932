//! The MQTT module's error type: configuration and TLS set-up problems found before
//! connecting, and failures reported to callers of [`super::MqttHandle`].
//!
//! Per-attempt connection failures are not errors of this type: the connection task
//! logs them (see [`super::describe`]) and retries.

use std::path::PathBuf;

/// Everything that can go wrong in the MQTT module, as seen by its callers.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// A required `[mqtt]` setting is missing.
    #[error("mqtt.{key} is not set")]
    MissingSetting {
        /// The key under `[mqtt]`.
        key: &'static str,
    },
    /// A `[mqtt]` setting has a value we cannot use.
    #[error("mqtt.{key} is invalid: {reason}")]
    InvalidSetting {
        /// The key under `[mqtt]`.
        key: &'static str,
        /// Why, and what would be accepted.
        reason: String,
    },
    /// A certificate, key or CA file could not be read.
    #[error("cannot read {key} file {}: {source}", path.display())]
    ReadFile {
        /// The configuration key naming the file (`mqtt.cert`, ...).
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file could not be parsed, or holds nothing usable.
    #[error("{key} file {} is not usable: {reason}", path.display())]
    BadPem {
        /// The configuration key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it (never its contents).
        reason: String,
    },
    /// The operating system's trust store holds no usable root certificate.
    #[error("no system root certificates found; set mqtt.root_ca to the broker's CA bundle")]
    NoSystemRoots,
    /// rustls refused the certificate/key pair or the protocol set-up.
    #[error("TLS set-up failed: {0} (check that mqtt.key is the private key of mqtt.cert)")]
    Tls(#[source] rustls::Error),
    /// A topic or filter is not valid MQTT.
    #[error("invalid MQTT {what} {value:?}: {reason}")]
    InvalidTopic {
        /// `topic` or `filter`.
        what: &'static str,
        /// The offending string.
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The broker refused a subscription (SUBACK failure code), e.g. by policy.
    #[error("the broker refused the subscription to {filters:?}")]
    SubscribeRefused {
        /// The filters of the refused SUBSCRIBE.
        filters: Vec<String>,
    },
    /// rumqttc's request queue refused a request (should not happen: the connection
    /// task bounds what it hands over).
    #[error("the MQTT client queue refused the request: {0}")]
    Client(#[source] rumqttc::ClientError),
    /// The connection task has stopped (shutdown or `disconnect()`), so the request
    /// will never complete.
    #[error("the MQTT connection is shut down")]
    Shutdown,
}

impl MqttError {
    /// A stable snake_case tag for logs and status reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            MqttError::MissingSetting { .. } => "missing_setting",
            MqttError::InvalidSetting { .. } => "invalid_setting",
            MqttError::ReadFile { .. } => "read_file",
            MqttError::BadPem { .. } => "bad_pem",
            MqttError::NoSystemRoots => "no_system_roots",
            MqttError::Tls(_) => "tls",
            MqttError::InvalidTopic { .. } => "invalid_topic",
            MqttError::SubscribeRefused { .. } => "subscribe_refused",
            MqttError::Client(_) => "client",
            MqttError::Shutdown => "shutdown",
        }
    }
}
