//! The embedded MQTT broker of iotjobs-local: rmqtt 0.24 running on the caller's tokio
//! runtime, with
//! - a mutual-TLS listener (client certificates from the local CA, identity = certificate CN),
//!   and optionally a plain-TCP listener for tests (identity = client id, no authentication:
//!   never expose it),
//! - an AWS-IoT-like policy (`acl`): a device may only use `$aws/things/<its thing>/...`,
//!   the service identity may use everything; refusals are logged and reported as events,
//! - the `$next` routing fix (`router`),
//! - in-memory persistent sessions whose queued messages do not expire after rmqtt's
//!   default 5 minutes,
//! - a deep queue for the service's sessions (`fitter`), which every request goes to.
//!
//! This module owns the broker's sockets and sessions. It does not speak the Jobs protocol:
//! the Jobs service connects to it as an MQTT client with the service identity.
//!
//! rmqtt logs through the `log` facade under the targets `rmqtt`, `rmqtt_net` and
//! `rmqtt_codec`; add [`QUIET_LOG_DIRECTIVES`] to the tracing filter to keep its per-connection
//! chatter out of the service's log (our own refusals are logged at warn under this module).

pub mod acl;
mod fitter;
mod hooks;
pub mod router;

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rmqtt::context::ServerContext;
use rmqtt::hook::Type;
use rmqtt::net::Builder;
use rmqtt::router::DefaultRouter;
use rmqtt::server::MqttServer;
use rmqtt::types::ListenerId;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::local::pki::{IssuedCert, Pki, PkiError};

/// tracing `EnvFilter` directives that keep rmqtt's own logging to warnings and errors.
pub const QUIET_LOG_DIRECTIVES: &str = "rmqtt=warn,rmqtt_net=warn,rmqtt_codec=warn";

/// The default mutual-TLS address (AWS IoT's MQTT port, loopback only).
pub const DEFAULT_TLS_ADDR: &str = "127.0.0.1:8883";

const TLS_LISTENER: ListenerId = 1;
const TCP_LISTENER: ListenerId = 2;

/// How long a persistent session, and the messages queued for it, outlive a disconnect.
/// AWS IoT Core keeps persistent sessions for 1 hour by default, configurable up to 7 days;
/// a local service has no reason to be stingier than the maximum.
pub const DEFAULT_SESSION_EXPIRY: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Configuration of the embedded broker.
#[derive(Clone)]
pub struct BrokerConfig {
    /// Mutual-TLS listener (port 0 picks a free port). Default `127.0.0.1:8883`.
    pub tls_addr: Option<SocketAddr>,
    /// Plain-TCP listener for tests; off by default.
    pub tcp_addr: Option<SocketAddr>,
    /// The broker's server certificate (PEM; SANs must cover the names clients dial).
    pub server_cert_pem: String,
    /// Its private key (PEM).
    pub server_key_pem: String,
    /// CA(s) whose client certificates are accepted (PEM).
    pub client_ca_pem: String,
    /// Persistent session lifetime after disconnect; messages queued for an offline session
    /// are kept as long as the session.
    pub session_expiry: Duration,
    /// Messages queued per offline persistent session before the oldest are dropped.
    pub max_queued_messages: usize,
    /// The Jobs service's certificate records (which thing each may connect as); `None`:
    /// devices are identified by their certificate's CN only.
    pub principals: Option<acl::Principals>,
}

impl std::fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("tls_addr", &self.tls_addr)
            .field("tcp_addr", &self.tcp_addr)
            .field("session_expiry", &self.session_expiry)
            .field("max_queued_messages", &self.max_queued_messages)
            .finish_non_exhaustive()
    }
}

impl BrokerConfig {
    /// Mutual TLS on [`DEFAULT_TLS_ADDR`] with `server` as the broker's certificate, accepting
    /// client certificates issued by `client_ca_pem`.
    pub fn new(server: &IssuedCert, client_ca_pem: &str) -> Self {
        BrokerConfig {
            tls_addr: Some(DEFAULT_TLS_ADDR.parse().expect("constant address parses")),
            tcp_addr: None,
            server_cert_pem: server.certificate_pem.clone(),
            server_key_pem: server.key_pair.private_key.clone(),
            client_ca_pem: client_ca_pem.to_string(),
            session_expiry: DEFAULT_SESSION_EXPIRY,
            max_queued_messages: 1000,
            principals: None,
        }
    }

    /// [`Self::new`] with a fresh loopback server certificate (localhost, 127.0.0.1, ::1)
    /// from `pki`, accepting `pki`'s device and service certificates.
    pub fn from_pki(pki: &Pki) -> Result<Self, PkiError> {
        Ok(Self::new(
            &pki.issue_loopback_server_cert()?,
            pki.ca_cert_pem(),
        ))
    }

    /// For tests: TLS on `127.0.0.1:0` (a free port).
    pub fn on_free_port(mut self) -> Self {
        self.tls_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        self
    }
}

/// Something that happened on the broker, for observers (tests, diagnostics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerEvent {
    /// A client was authenticated and its CONNACK sent.
    Connected { client_id: String },
    /// A connected client went away; `clean` if it sent an MQTT DISCONNECT first (false
    /// for a dropped socket, a keep-alive timeout, a policy disconnect or a kick).
    Disconnected { client_id: String, clean: bool },
    /// CONNECT refused (bad or missing certificate CN, client id not matching it, ...).
    /// Clients refused during the TLS handshake (no certificate, unknown CA) never get here.
    ConnectRefused { client_id: String, reason: String },
    /// A SUBSCRIBE filter refused by policy (the client got SUBACK failure).
    SubscribeDenied {
        client_id: String,
        topic_filter: String,
    },
    /// A PUBLISH refused by policy (the message was dropped and the client disconnected).
    PublishDenied { client_id: String, topic: String },
}

/// Errors starting the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("no listener configured (neither tls_addr nor tcp_addr)")]
    NoListener,
    #[error("cannot stage the TLS files in {path}: {source}")]
    TlsFiles {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the MQTT listener on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The embedded broker. See [`Broker::start`].
pub struct Broker;

impl Broker {
    /// Binds the configured listeners and starts serving on the current tokio runtime.
    /// The returned handle knows the bound addresses (useful with port 0); dropping it stops
    /// accepting connections, [`BrokerHandle::shutdown`] also closes the open ones.
    pub async fn start(cfg: BrokerConfig) -> Result<BrokerHandle, BrokerError> {
        if cfg.tls_addr.is_none() && cfg.tcp_addr.is_none() {
            return Err(BrokerError::NoListener);
        }
        // No rustls process-default provider is installed here: rmqtt-net builds its
        // ServerConfig with an explicit provider (`builder_with_provider`), so nothing in the
        // broker depends on the process default, and our clients pass ring explicitly.

        // No CPU-load monitor: it is a forever task holding the context, which would keep
        // the broker's state alive after shutdown, and "busy" refusals make no sense here.
        let scx = ServerContext::new().busy_check_enable(false).build().await;
        *scx.extends.router_mut().await = Box::new(router::EscapingRouter(DefaultRouter::new(
            Some(scx.clone()),
        )));

        *scx.extends.fitter_mgr_mut().await = Box::new(fitter::Fitters);

        let (events, _) = broadcast::channel(1024);
        let hooks = hooks::AclHooks {
            events: events.clone(),
            tls_listener: TLS_LISTENER,
            tcp_listener: TCP_LISTENER,
            principals: cfg.principals.clone(),
        };
        let register = scx.extends.hook_mgr().register();
        for typ in [
            Type::ClientAuthenticate,
            Type::ClientSubscribeCheckAcl,
            Type::MessagePublishCheckAcl,
            Type::ClientConnected,
            Type::ClientDisconnected,
            Type::MessageDropped,
        ] {
            register.add(typ, Box::new(hooks.clone())).await;
        }
        register.start().await;

        let mut server = MqttServer::new(scx.clone());
        let mut tls_addr = None;
        let mut tcp_addr = None;
        if let Some(addr) = cfg.tls_addr {
            let staged = StagedTlsFiles::write(&cfg)?;
            let listener = listener_builder(&cfg, addr, "iotjobs/tls")
                .tls_cross_certificate(true)
                .tls_cert(Some(path_str(&staged.cert)))
                .tls_key(Some(path_str(&staged.key)))
                .tls_client_ca_certs(Some(path_str(&staged.ca)))
                .cert_cn_as_username(true)
                .collect_cert_info(true)
                .bind()
                .and_then(|l| l.tls())
                .map_err(|e| BrokerError::Listen {
                    addr,
                    source: e.into(),
                })?;
            // rustls has the certificates in memory now; the staged files go away with `staged`.
            tls_addr = Some(local_addr(&listener, addr)?);
            server = server.listener_by_id(listener, TLS_LISTENER);
        }
        if let Some(addr) = cfg.tcp_addr {
            let listener = listener_builder(&cfg, addr, "iotjobs/tcp")
                .bind()
                .and_then(|l| l.tcp())
                .map_err(|e| BrokerError::Listen {
                    addr,
                    source: e.into(),
                })?;
            tcp_addr = Some(local_addr(&listener, addr)?);
            server = server.listener_by_id(listener, TCP_LISTENER);
        }
        let server = server.build();
        // `MqttServer::start` would exit the process on error; run it ourselves instead.
        let task = tokio::spawn(async move {
            if let Err(e) = server.run().await {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        });
        tracing::info!(?tls_addr, ?tcp_addr, "embedded MQTT broker listening");
        Ok(BrokerHandle {
            tls_addr,
            tcp_addr,
            events,
            scx,
            task,
        })
    }
}

fn listener_builder(cfg: &BrokerConfig, addr: SocketAddr, name: &str) -> Builder {
    Builder::new()
        .name(name)
        .laddr(addr)
        .nodelay(true)
        // A restart on the same port must not fail on connections left in TIME_WAIT.
        .reuseaddr(Some(true))
        .allow_anonymous(false)
        .session_expiry_interval(cfg.session_expiry)
        .max_session_expiry_interval(cfg.session_expiry)
        // rmqtt's default (5 min) would silently drop messages queued for an offline device.
        // Zero means "no per-message expiry" (hook.rs, message_expiry_check): queued messages
        // then live as long as the persistent session, as on AWS IoT Core. A publisher can
        // still set an MQTT 5 message expiry of its own.
        .message_expiry_interval(Duration::ZERO)
        .max_mqueue_len(cfg.max_queued_messages)
        .handshake_timeout(Duration::from_secs(10))
}

fn local_addr(
    listener: &rmqtt::net::Listener,
    requested: SocketAddr,
) -> Result<SocketAddr, BrokerError> {
    listener.local_addr().map_err(|e| BrokerError::Listen {
        addr: requested,
        source: e.into(),
    })
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// rmqtt-net reads TLS material only from files. They are written to a private directory
/// (0700, key 0600) just for the bind and removed right after.
struct StagedTlsFiles {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl StagedTlsFiles {
    fn write(cfg: &BrokerConfig) -> Result<Self, BrokerError> {
        let dir = std::env::temp_dir().join(format!(
            "iotjobs-broker-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BrokerError::TlsFiles { path, source }
        };
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(err(&dir))?;
        let staged = StagedTlsFiles {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            ca: dir.join("ca.pem"),
            dir,
        };
        for (path, data) in [
            (&staged.cert, &cfg.server_cert_pem),
            (&staged.key, &cfg.server_key_pem),
            (&staged.ca, &cfg.client_ca_pem),
        ] {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(err(path))?;
            f.write_all(data.as_bytes()).map_err(err(path))?;
        }
        Ok(staged)
    }
}

impl Drop for StagedTlsFiles {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A running broker. Dropping it stops the listeners (connected clients stay connected
/// until they leave); call [`Self::shutdown`] to also close every client connection.
pub struct BrokerHandle {
    tls_addr: Option<SocketAddr>,
    tcp_addr: Option<SocketAddr>,
    events: broadcast::Sender<BrokerEvent>,
    scx: ServerContext,
    task: JoinHandle<()>,
}

impl BrokerHandle {
    /// The bound mutual-TLS address, if that listener is on.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The bound plain-TCP address, if that listener is on.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// A new receiver of [`BrokerEvent`]s from now on (bounded: a receiver that falls more
    /// than 1024 events behind gets `Lagged`).
    pub fn events(&self) -> broadcast::Receiver<BrokerEvent> {
        self.events.subscribe()
    }

    /// Number of sessions the broker holds (connected, and offline persistent ones).
    pub async fn session_count(&self) -> usize {
        self.scx.extends.shared().await.sessions_count()
    }

    /// Stops the broker: closes the listening sockets (the ports are free again when this
    /// returns), then kicks every session, which closes its connection and discards the
    /// in-memory session state. rmqtt has no shutdown API: its `run()` future is an endless
    /// accept loop that owns the listeners, so it is aborted and awaited; connection tasks
    /// are separate tasks, ended through rmqtt's own kick.
    ///
    /// Not reclaimed: rmqtt's `ServerContext` references itself through its shared-state
    /// and router components (and its idle task-queue runners), so a stopped broker's
    /// bookkeeping (some kilobytes) stays allocated until the process exits. That matters
    /// only to something that starts brokers by the thousand.
    pub async fn shutdown(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
        let shared = self.scx.extends.shared().await;
        let entries: Vec<_> = shared.iter().collect();
        for entry in entries {
            if let Ok(mut locked) = entry.try_lock().await {
                if let Err(e) = locked.kick(true, true, true).await {
                    tracing::debug!(error = %e, "kick on broker shutdown failed");
                }
            }
        }
        tracing::info!(tls_addr = ?self.tls_addr, tcp_addr = ?self.tcp_addr, "embedded MQTT broker stopped");
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
