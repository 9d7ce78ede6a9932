//! The control plane of iotjobs-local: AWS IoT's REST routes (service `iot`, rest-json)
//! over axum, so `aws iot ... --endpoint-url` and boto3 work against the local service.
//!
//! Owns: HTTP routing, request parsing, the AWS JSON shapes and error shape, resolving job
//! documents (`documentSource` files, custom and AWS managed templates) before a job reaches
//! the service. Must not: open the database or change state itself — every operation is a
//! [`Command`](crate::local::service::task::Command) to the service task, which owns the
//! store and publishes the notifications. SigV4 `Authorization` headers are accepted and not
//! verified: the listener is meant for loopback (see [`HttpServer::bind`]).

mod certs;
pub mod client;
mod clock;
mod document;
mod error;
mod executions;
mod extract;
mod jobs;
mod page;
mod shapes;
mod templates;
mod things;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{StatusCode, Uri};
use axum::routing::{get, post, put};
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use error::{ApiError, ApiResult};

use crate::local::clock::{Clock, ManualClock};
use crate::local::pki::Pki;
use crate::local::service::task::ServiceHandle;
use crate::local::service::Account;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct ControlContext {
    pub service: ServiceHandle,
    pub account: Account,
    pub clock: Arc<dyn Clock>,
    /// Issues certificates for `CreateKeysAndCertificate`; `None` disables that route.
    pub pki: Option<Arc<Pki>>,
    /// Where devices reach the broker (mutual TLS), for `GET /iotjobs-local/info`.
    pub mqtt_endpoint: Option<MqttEndpoint>,
    /// The same clock as `clock` when it is manual (`serve --manual-clock`): the admin
    /// route `POST /iotjobs-local/clock` moves it.
    pub manual_clock: Option<ManualClock>,
}

/// The broker as devices see it: the embedded one or an external one.
#[derive(Debug, Clone)]
pub struct MqttEndpoint {
    /// Host name or address devices connect to (must match the broker's certificate).
    pub host: String,
    pub port: u16,
    /// PEM of the CA that signs the broker's certificate; `None`: the local CA.
    pub root_ca_pem: Option<String>,
}

impl std::fmt::Debug for ControlContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlContext")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// Every route of the control plane.
pub fn router(ctx: ControlContext) -> Router {
    Router::new()
        // things and groups (reference §4.4)
        .route("/things", get(things::list_things))
        .route(
            "/things/{thing_name}",
            post(things::create_thing)
                .get(things::describe_thing)
                .delete(things::delete_thing),
        )
        .route(
            "/things/{thing_name}/thing-groups",
            get(things::list_thing_groups_for_thing),
        )
        .route("/thing-groups", get(things::list_thing_groups))
        .route(
            "/thing-groups/addThingToThingGroup",
            put(things::add_thing_to_thing_group),
        )
        .route(
            "/thing-groups/removeThingFromThingGroup",
            put(things::remove_thing_from_thing_group),
        )
        .route(
            "/thing-groups/{group_name}",
            post(things::create_thing_group)
                .get(things::describe_thing_group)
                .delete(things::delete_thing_group),
        )
        .route(
            "/thing-groups/{group_name}/things",
            get(things::list_things_in_thing_group),
        )
        .route(
            "/keys-and-certificate",
            post(certs::create_keys_and_certificate),
        )
        .route(
            "/certificates/{certificate_id}",
            get(certs::describe_certificate).put(certs::update_certificate),
        )
        .route(
            "/things/{thing_name}/principals",
            get(certs::list_thing_principals)
                .put(certs::attach_thing_principal)
                .delete(certs::detach_thing_principal),
        )
        .route("/principals/things", get(certs::list_principal_things))
        // jobs (reference §4.3)
        .route("/jobs", get(jobs::list_jobs))
        .route(
            "/jobs/{job_id}",
            put(jobs::create_job)
                .get(jobs::describe_job)
                .patch(jobs::update_job)
                .delete(jobs::delete_job),
        )
        .route("/jobs/{job_id}/cancel", put(jobs::cancel_job))
        .route("/jobs/{job_id}/job-document", get(jobs::get_job_document))
        .route(
            "/jobs/{job_id}/targets",
            post(jobs::associate_targets_with_job),
        )
        .route(
            "/jobs/{job_id}/things",
            get(executions::list_job_executions_for_job),
        )
        .route(
            "/things/{thing_name}/jobs",
            get(executions::list_job_executions_for_thing),
        )
        .route(
            "/things/{thing_name}/jobs/{job_id}",
            get(executions::describe_job_execution),
        )
        .route(
            "/things/{thing_name}/jobs/{job_id}/cancel",
            put(executions::cancel_job_execution),
        )
        .route(
            "/things/{thing_name}/jobs/{job_id}/executionNumber/{execution_number}",
            axum::routing::delete(executions::delete_job_execution),
        )
        // job templates
        .route("/job-templates", get(templates::list_job_templates))
        .route(
            "/job-templates/{template_id}",
            put(templates::create_job_template)
                .get(templates::describe_job_template)
                .delete(templates::delete_job_template),
        )
        .route(
            "/managed-job-templates",
            get(templates::list_managed_job_templates),
        )
        .route(
            "/managed-job-templates/{template_name}",
            get(templates::describe_managed_job_template),
        )
        // local extension: what a device needs to connect (CLI `create-thing --out`)
        .route("/iotjobs-local/info", get(service_info))
        .route(
            "/iotjobs-local/clock",
            get(clock::get_clock).post(clock::move_clock),
        )
        .fallback(unknown_operation)
        .method_not_allowed_fallback(unknown_operation)
        .with_state(ctx)
}

/// Local extension (no AWS equivalent): the broker address devices use and the CA they
/// trust for it (the local CA, which also signs the devices' certificates, unless an
/// external broker has its own).
async fn service_info(
    axum::extract::State(ctx): axum::extract::State<ControlContext>,
) -> axum::Json<serde_json::Value> {
    axum::Json(shapes::compact(serde_json::json!({
        "region": ctx.account.region,
        "accountId": ctx.account.account_id,
        "mqttHost": ctx.mqtt_endpoint.as_ref().map(|e| e.host.clone()),
        "mqttPort": ctx.mqtt_endpoint.as_ref().map(|e| e.port),
        "caCertificatePem": ctx
            .mqtt_endpoint
            .as_ref()
            .and_then(|e| e.root_ca_pem.clone())
            .or_else(|| ctx.pki.as_ref().map(|p| p.ca_cert_pem().to_owned())),
    })))
}

async fn unknown_operation(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "UnknownOperationException",
        format!("iotjobs-local does not implement this operation ({uri})"),
    )
}

/// Errors binding the HTTP listener.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot listen on {addr} for the control plane: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The running HTTP server.
#[derive(Debug)]
pub struct HttpServer {
    pub addr: SocketAddr,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl HttpServer {
    /// Binds `addr` (port 0 picks a free port) and serves until `shutdown` is cancelled;
    /// requests in flight then finish. Binding anything but loopback is the caller's
    /// explicit choice: requests are not authenticated.
    pub async fn bind(
        addr: SocketAddr,
        ctx: ControlContext,
        shutdown: CancellationToken,
    ) -> Result<HttpServer, ControlError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ControlError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| ControlError::Bind { addr, source })?;
        if !bound.ip().is_loopback() {
            tracing::warn!(%bound, "the control plane listens beyond loopback; requests are not authenticated");
        }
        let app = router(ctx);
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
        });
        Ok(HttpServer { addr: bound, task })
    }
}
