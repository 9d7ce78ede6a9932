//! systemd notification (`sd_notify`): READY, STATUS, WATCHDOG, STOPPING. Without
//! `NOTIFY_SOCKET` (not under systemd) every call is a no-op. Failures are logged at
//! debug level only: a missing notification must never stop the daemon.

use std::time::Duration;

use sd_notify::NotifyState;

use crate::mqtt::{ConnectionState, MqttSettings};

/// Sends notifications to the service manager.
#[derive(Debug, Default)]
pub struct Notifier;

impl Notifier {
    fn send(&self, states: &[NotifyState<'_>]) {
        if let Err(err) = sd_notify::notify(states) {
            tracing::debug!("sd_notify failed: {err}");
        }
    }

    /// Start-up is complete (configuration valid, connection task running).
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// A one-line status for `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// The main loop is alive.
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// Shutdown has begun.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// How often to ping the watchdog: half of `WATCHDOG_USEC`, if systemd set it for us.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        watchdog_interval(sd_notify::watchdog_enabled())
    }
}

/// Half the watchdog timeout (systemd's recommendation), or none when it is disabled.
pub fn watchdog_interval(timeout: Option<Duration>) -> Option<Duration> {
    timeout.filter(|t| !t.is_zero()).map(|t| t / 2)
}

/// The `STATUS=` line for a connection state.
pub fn status_line(state: &ConnectionState, settings: &MqttSettings) -> String {
    let target = format!(
        "{}:{} as {}",
        settings.host, settings.port, settings.thing_name
    );
    match state {
        ConnectionState::Connecting { attempt } if *attempt <= 1 => {
            format!("connecting to {target}")
        }
        ConnectionState::Connecting { attempt } => {
            format!("connecting to {target} (attempt {attempt})")
        }
        ConnectionState::Connected => format!("connected to {target}"),
        ConnectionState::Waiting { retry_in, reason } => {
            // Whole seconds read better; sub-second delays show as "1 s".
            let secs = retry_in.as_secs_f64().ceil().max(1.0);
            format!("reconnecting in {secs:.0} s: {reason}")
        }
        ConnectionState::Stopped => "MQTT connection closed".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_pings_at_half_the_timeout() {
        assert_eq!(
            watchdog_interval(Some(Duration::from_secs(30))),
            Some(Duration::from_secs(15))
        );
        assert_eq!(watchdog_interval(Some(Duration::ZERO)), None);
        assert_eq!(watchdog_interval(None), None);
    }
}

#[cfg(test)]
mod status_tests {
    use std::sync::Arc;

    use super::*;

    fn settings() -> MqttSettings {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        MqttSettings {
            host: "iot.example".into(),
            port: 8883,
            thing_name: "gw-1".into(),
            client_id: "gw-1".into(),
            keep_alive: Duration::from_secs(60),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(120),
            stable_after: Duration::from_secs(60),
            tls: Arc::new(tls),
        }
    }

    #[test]
    fn status_lines() {
        let s = settings();
        let line = |state| status_line(&state, &s);
        assert_eq!(
            line(ConnectionState::Connecting { attempt: 1 }),
            "connecting to iot.example:8883 as gw-1"
        );
        assert_eq!(
            line(ConnectionState::Connecting { attempt: 3 }),
            "connecting to iot.example:8883 as gw-1 (attempt 3)"
        );
        assert_eq!(
            line(ConnectionState::Connected),
            "connected to iot.example:8883 as gw-1"
        );
        assert_eq!(
            line(ConnectionState::Waiting {
                retry_in: Duration::from_millis(3_200),
                reason: "connection to iot.example:8883 failed: Connection refused".into(),
            }),
            "reconnecting in 4 s: connection to iot.example:8883 failed: Connection refused"
        );
        assert_eq!(
            line(ConnectionState::Waiting {
                retry_in: Duration::from_millis(100),
                reason: "x".into(),
            }),
            "reconnecting in 1 s: x"
        );
    }
}
