//! [`MqttSettings`]: the validated, ready-to-use form of `[mqtt]`, and the rumqttc
//! options derived from it. Built once at start; bad values are errors, never panics
//! (rumqttc asserts on some of them).

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, NetworkOptions, TlsConfiguration, Transport};

use super::backoff::{Backoff, DEFAULT_STABLE_AFTER};
use super::tls::{client_config, TlsFiles};
use super::MqttError;
use crate::config::MqttConfig;

/// Largest packet we accept or send. AWS IoT's limit is 128 KiB per message; job
/// documents alone may be 32 KiB, so rumqttc's 10 KiB default is far too small.
pub const MAX_PACKET_SIZE: usize = 256 * 1024;

/// How long a TCP connect + TLS handshake + CONNACK may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection's settings, validated.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// Broker host name or IP address (also the TLS server name).
    pub host: String,
    /// Broker port (443 adds ALPN `x-amzn-mqtt-ca`).
    pub port: u16,
    /// The thing this device is.
    pub thing_name: String,
    /// MQTT client id (the thing name unless configured).
    pub client_id: String,
    /// MQTT keep-alive; zero disables it.
    pub keep_alive: Duration,
    /// First reconnect delay ceiling.
    pub reconnect_min: Duration,
    /// Cap of the reconnect delay ceiling.
    pub reconnect_max: Duration,
    /// A connection this old counts as stable (the backoff starts over).
    pub stable_after: Duration,
    /// The rustls client configuration (mutual TLS).
    pub tls: Arc<rustls::ClientConfig>,
}

impl MqttSettings {
    /// Validates `[mqtt]` and loads the TLS material it names.
    pub fn from_config(config: &MqttConfig) -> Result<Self, MqttError> {
        let host = required("endpoint", config.endpoint.as_deref())?;
        let thing_name = required("thing_name", config.thing_name.as_deref())?;
        let client_id = match config.client_id.as_deref() {
            Some(id) if !id.trim().is_empty() => id.to_string(),
            _ => thing_name.clone(),
        };
        if config.port == 0 {
            return Err(MqttError::InvalidSetting {
                key: "port",
                reason: "0 is not a port; use 8883 or 443".into(),
            });
        }
        if config.keep_alive_secs > u64::from(u16::MAX) {
            return Err(MqttError::InvalidSetting {
                key: "keep_alive_secs",
                reason: format!(
                    "{} is above MQTT's maximum of 65535",
                    config.keep_alive_secs
                ),
            });
        }
        if config.reconnect_min_secs == 0 {
            return Err(MqttError::InvalidSetting {
                key: "reconnect_min_secs",
                reason: "must be at least 1".into(),
            });
        }
        let cert = config
            .cert
            .as_deref()
            .ok_or(MqttError::MissingSetting { key: "cert" })?;
        let key = config
            .key
            .as_deref()
            .ok_or(MqttError::MissingSetting { key: "key" })?;
        let tls = client_config(
            TlsFiles {
                cert,
                key,
                root_ca: config.root_ca.as_deref(),
            },
            config.port,
        )?;
        Ok(MqttSettings {
            host,
            port: config.port,
            thing_name,
            client_id,
            keep_alive: Duration::from_secs(config.keep_alive_secs),
            reconnect_min: Duration::from_secs(config.reconnect_min_secs),
            reconnect_max: Duration::from_secs(config.reconnect_max_secs),
            stable_after: DEFAULT_STABLE_AFTER,
            tls: Arc::new(tls),
        })
    }

    /// The reconnect backoff these settings describe.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.reconnect_min, self.reconnect_max, self.stable_after)
    }

    /// rumqttc's options: persistent session, our TLS config, generous packet sizes.
    pub(crate) fn mqtt_options(&self) -> MqttOptions {
        let mut options = MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
        // Persistent session: the broker keeps our subscriptions and QoS 1 messages
        // while we are offline. (Client id is never empty here, so this cannot assert.)
        options.set_clean_session(false);
        // Validated in from_config: zero or whole seconds up to 65535.
        options.set_keep_alive(self.keep_alive);
        options.set_max_packet_size(MAX_PACKET_SIZE, MAX_PACKET_SIZE);
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            self.tls.clone(),
        )));
        options
    }

    /// Socket options: TCP_NODELAY (rumqttc leaves Nagle on, which costs ~40 ms per
    /// QoS 1 exchange) and a connect timeout.
    pub(crate) fn network_options(&self) -> NetworkOptions {
        let mut network = NetworkOptions::new();
        network.set_tcp_nodelay(true);
        network.set_connection_timeout(CONNECT_TIMEOUT.as_secs());
        network
    }
}

fn required(key: &'static str, value: Option<&str>) -> Result<String, MqttError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v.to_string()),
        _ => Err(MqttError::MissingSetting { key }),
    }
}
