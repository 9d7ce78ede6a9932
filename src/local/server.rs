//! `iotjobs-local serve` assembled: the local CA, the embedded broker (or, with
//! [`ServeOptions::external_broker`], a connection to an external one), the Jobs service task
//! (sole owner of the SQLite store) and the HTTP control plane, on the caller's tokio
//! runtime. [`LocalService::stop`] undoes all of it; the demo and the tests use the same
//! code as `serve`.
//!
//! Data directory layout: `pki/` (CA, mode 0700), `jobs.sqlite3` (state).
//! This module wires parts together; it holds no Jobs or HTTP logic.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::local::broker::acl::Principals;
use crate::local::broker::{Broker, BrokerConfig, BrokerError, BrokerEvent, BrokerHandle};
use crate::local::clock::{Clock, ManualClock, SystemClock};
use crate::local::control::{ControlContext, ControlError, HttpServer, MqttEndpoint};
use crate::local::external::{ExternalBroker, ExternalBrokerError};
use crate::local::pki::{Pki, PkiError, SERVICE_IDENTITY};
use crate::local::service::task::{self, BrokerConnection, RunningService, ServiceHandle};
use crate::local::service::{JobsService, ServiceConfig};
use crate::local::store::{Store, StoreError};

/// Default address of the control plane (plain HTTP, loopback).
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8088";
/// Default mutual-TLS MQTT address.
pub const DEFAULT_MQTT_ADDR: &str = crate::local::broker::DEFAULT_TLS_ADDR;
const DB_FILE: &str = "jobs.sqlite3";
const PKI_DIR: &str = "pki";

/// Where the local CA lives in a data directory (`serve`, `mosquitto-config`).
pub fn pki_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(PKI_DIR)
}

/// How long the service may take to connect and subscribe to its own broker.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(15);

/// How to run the service.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    /// Mutual-TLS MQTT listener of the embedded broker (port 0: any free port).
    pub mqtt_tls_addr: Option<SocketAddr>,
    /// Plain-TCP MQTT listener (tests only: no authentication).
    pub mqtt_tcp_addr: Option<SocketAddr>,
    pub http_addr: SocketAddr,
    /// An external broker to use instead of the embedded one (the listeners above are
    /// then unused).
    pub external_broker: Option<ExternalBroker>,
    pub service: ServiceConfig,
    /// Run on this clock instead of the system clock (tests: `serve --manual-clock`); it
    /// moves only through `POST /iotjobs-local/clock` or the holder of a clone.
    pub manual_clock: Option<ManualClock>,
}

impl ServeOptions {
    /// Defaults on loopback with `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServeOptions {
            data_dir: data_dir.into(),
            mqtt_tls_addr: DEFAULT_MQTT_ADDR.parse().ok(),
            mqtt_tcp_addr: None,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8088)),
            external_broker: None,
            service: ServiceConfig::default(),
            manual_clock: None,
        }
    }

    /// Every listener on a free loopback port (tests, the demo).
    pub fn on_free_ports(mut self) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        self.mqtt_tls_addr = Some(any);
        self.http_addr = any;
        self
    }
}

/// Errors starting or stopping the service.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate authority: {0}")]
    Pki(#[from] PkiError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("embedded broker: {0}")]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("the jobs service did not subscribe to its broker within {0:?}")]
    NotSubscribed(Duration),
    #[error(transparent)]
    ExternalBroker(#[from] ExternalBrokerError),
    #[error(
        "the jobs service did not subscribe to {url} within {after:?}: check that the broker \
         runs there, that its certificate names that host and is signed by the broker CA \
         (--broker-ca, default: the local CA), that it accepts the service's certificate, \
         and that its ACL lets the service identity read and write $aws/things/+/jobs/# \
         (see `iotjobs-local mosquitto-config`); the log above has the broker's answer"
    )]
    ExternalNotSubscribed { url: String, after: Duration },
    #[error("the jobs service task failed: {0}")]
    Task(String),
}

/// A running local service.
pub struct LocalService {
    pub http_addr: SocketAddr,
    pub mqtt_tls_addr: Option<SocketAddr>,
    pub mqtt_tcp_addr: Option<SocketAddr>,
    /// `mqtts://host:port` of the external broker in that mode.
    pub external_broker: Option<String>,
    pub data_dir: PathBuf,
    pub pki: Arc<Pki>,
    handle: ServiceHandle,
    broker: Option<BrokerHandle>,
    service: RunningService,
    http: HttpServer,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for LocalService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalService")
            .field("http_addr", &self.http_addr)
            .field("mqtt_tls_addr", &self.mqtt_tls_addr)
            .field("mqtt_tcp_addr", &self.mqtt_tcp_addr)
            .field("external_broker", &self.external_broker)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

fn create_private_dir(path: &Path) -> Result<(), ServerError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| ServerError::DataDir {
            path: path.to_path_buf(),
            source,
        })
}

impl LocalService {
    /// Starts everything and returns once the service is subscribed to its broker and the
    /// HTTP listener accepts requests.
    pub async fn start(opts: ServeOptions) -> Result<LocalService, ServerError> {
        create_private_dir(&opts.data_dir)?;
        let pki_dir = pki_dir(&opts.data_dir);
        let pki = Arc::new(
            tokio::task::spawn_blocking(move || Pki::load_or_create(pki_dir))
                .await
                .map_err(|e| ServerError::Task(e.to_string()))??,
        );
        let store = Store::open(&opts.data_dir.join(DB_FILE))?;
        let account = opts.service.account.clone();
        let core = JobsService::new(store, opts.service.clone());

        let (broker, conn, endpoint) = match &opts.external_broker {
            Some(ext) => {
                let (conn, ca_pem) = ext.connection(&pki)?;
                let endpoint = MqttEndpoint {
                    host: ext.host.clone(),
                    port: ext.port,
                    root_ca_pem: Some(ca_pem),
                };
                (None, conn, Some(endpoint))
            }
            None => {
                // The broker reads the service's certificate records; an external broker
                // cannot, and identifies devices by certificate CN only.
                let (broker, conn) = start_embedded(&opts, &pki, core.principals()).await?;
                let endpoint = broker.tls_addr().map(|a| MqttEndpoint {
                    host: a.ip().to_string(),
                    port: a.port(),
                    root_ca_pem: None,
                });
                (Some(broker), conn, endpoint)
            }
        };

        let shutdown = CancellationToken::new();
        let clock: Arc<dyn Clock> = match &opts.manual_clock {
            Some(c) => Arc::new(c.clone()),
            None => Arc::new(SystemClock),
        };
        let service = task::spawn(core, clock.clone(), Some(conn), shutdown.clone());
        let mut subscribed = service.subscribed.clone();
        let ready = tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribed.wait_for(|s| *s)).await;
        if !matches!(ready, Ok(Ok(_))) {
            shutdown.cancel();
            return Err(match broker {
                Some(b) => {
                    b.shutdown().await;
                    ServerError::NotSubscribed(SUBSCRIBE_TIMEOUT)
                }
                None => ServerError::ExternalNotSubscribed {
                    url: opts
                        .external_broker
                        .as_ref()
                        .map(ExternalBroker::url)
                        .unwrap_or_default(),
                    after: SUBSCRIBE_TIMEOUT,
                },
            });
        }

        let ctx = ControlContext {
            service: service.handle.clone(),
            account,
            clock,
            pki: Some(pki.clone()),
            mqtt_endpoint: endpoint,
            manual_clock: opts.manual_clock.clone(),
        };
        let http = match HttpServer::bind(opts.http_addr, ctx, shutdown.clone()).await {
            Ok(h) => h,
            Err(e) => {
                shutdown.cancel();
                if let Some(b) = broker {
                    b.shutdown().await;
                }
                return Err(e.into());
            }
        };
        Ok(LocalService {
            http_addr: http.addr,
            mqtt_tls_addr: broker.as_ref().and_then(BrokerHandle::tls_addr),
            mqtt_tcp_addr: broker.as_ref().and_then(BrokerHandle::tcp_addr),
            external_broker: opts.external_broker.as_ref().map(ExternalBroker::url),
            data_dir: opts.data_dir,
            pki,
            handle: service.handle.clone(),
            broker,
            service,
            http,
            shutdown,
        })
    }

    /// `http://127.0.0.1:PORT`, what `--endpoint-url` takes.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The command channel of the Jobs service task.
    pub fn handle(&self) -> ServiceHandle {
        self.handle.clone()
    }

    /// True while the Jobs service is connected and subscribed to its broker (embedded or
    /// external); it goes false when the connection drops and true again after it resubscribes.
    pub fn broker_subscribed(&self) -> tokio::sync::watch::Receiver<bool> {
        self.service.subscribed.clone()
    }

    /// Broker events (connections, refusals) from now on.
    pub fn broker_events(&self) -> Option<broadcast::Receiver<BrokerEvent>> {
        self.broker.as_ref().map(BrokerHandle::events)
    }

    /// Stops the HTTP server (requests in flight finish), the service task (the store is
    /// closed) and the broker (every client is disconnected, the ports are free again).
    pub async fn stop(mut self) -> Result<(), ServerError> {
        self.shutdown.cancel();
        let http = (&mut self.http.task).await;
        let service = (&mut self.service.task).await;
        if let Some(b) = self.broker.take() {
            b.shutdown().await;
        }
        match http {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ServerError::Task(format!("HTTP server: {e}"))),
            Err(e) => return Err(ServerError::Task(format!("HTTP server: {e}"))),
        }
        match service {
            Ok(Ok(_core)) => Ok(()),
            Ok(Err(e)) => Err(ServerError::Task(e.to_string())),
            Err(e) => Err(ServerError::Task(e.to_string())),
        }
    }
}

/// The embedded broker on `opts`' listeners and the service's connection to it.
async fn start_embedded(
    opts: &ServeOptions,
    pki: &Pki,
    principals: Principals,
) -> Result<(BrokerHandle, BrokerConnection), ServerError> {
    // Issued first: once the broker runs, an error here would leave it running.
    let service_tls = pki.client_tls_config(&pki.issue_service_cert()?)?;
    let mut bcfg = BrokerConfig::from_pki(pki)?;
    bcfg.tls_addr = opts.mqtt_tls_addr;
    bcfg.tcp_addr = opts.mqtt_tcp_addr;
    bcfg.principals = Some(principals);
    let broker = Broker::start(bcfg).await?;
    let conn = match (broker.tls_addr(), broker.tcp_addr()) {
        (Some(a), _) => BrokerConnection {
            host: a.ip().to_string(),
            port: a.port(),
            client_id: SERVICE_IDENTITY.to_owned(),
            tls: Some(service_tls),
        },
        (None, Some(a)) => BrokerConnection {
            host: a.ip().to_string(),
            port: a.port(),
            client_id: SERVICE_IDENTITY.to_owned(),
            tls: None,
        },
        (None, None) => return Err(BrokerError::NoListener.into()),
    };
    Ok((broker, conn))
}

impl Drop for LocalService {
    fn drop(&mut self) {
        // A service dropped without `stop` (an error path) still stops its tasks.
        self.shutdown.cancel();
    }
}
