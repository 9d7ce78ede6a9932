//! The AWS IoT Jobs service of iotjobs-local.
//!
//! [`JobsService`] is the sans-I/O core: it owns the [`Store`] and turns inputs — a device
//! request `(now, topic, payload)` or a control operation (create job, cancel, delete, ...)
//! — into state changes plus the MQTT messages to publish ([`Outbound`]): the reply to the
//! device (with its `clientToken` and `timestamp`) and the `notify` / `notify-next`
//! notifications of every thing whose pending list changed. Every state change goes
//! through the same path (record → job status → notifications, reference §5.4), so the
//! device API and the control plane notify consistently.
//!
//! [`task`] is the thin I/O shell: one task owns the core, takes [`task::Command`]s over a
//! channel from the control plane, receives device requests from the broker as the
//! privileged service client, and publishes what the core returns.
//!
//! The core must not touch the network, read the clock or sleep: time is always an
//! argument, and its only I/O is its own SQLite store. Scheduling, rollout, abort, timeouts
//! firing and retries are [`JobsService::tick`] (called every second by the task, or at
//! once when a manual clock moves) plus the retry/abort evaluation after every execution
//! end; they go through the same snapshot → change → notifications path.

mod arn;
mod command;
mod control;
mod device;
mod error;
mod executions;
mod lifecycle;
mod notify;
mod principals;
mod registry;
mod render;
pub mod task;
mod validate;

use serde_json::Value;

use crate::local::broker::acl::Principals;
use crate::local::store::Store;

pub use arn::{Account, Target};
pub use control::{JobDetails, JobFilter, NewJob, UpdateJob};
pub use error::ServiceError;
pub use lifecycle::TickReport;
pub use registry::{NewThing, NewThingGroup};

/// Behaviour switches where the reference leaves AWS's behaviour open (marked "infer").
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub account: Account,
    /// Cap on `get` lists and `notify` entries (AWS: 10, or 15 with scheduling).
    pub max_pending_listed: usize,
    /// Also send `notify` when a pending execution goes QUEUED → IN_PROGRESS. AWS's worked
    /// examples send nothing then; off by default.
    pub notify_on_start: bool,
    /// Reply `TerminalStateReached` to a describe of a terminal execution (the default),
    /// instead of returning the terminal record as accepted.
    pub describe_terminal_rejected: bool,
    /// A job that targets a thing group also reaches things in its child groups.
    pub include_child_groups: bool,
    /// Base URL that replaces presigned-S3 placeholders in documents sent to devices
    /// (`<base>/<bucket>/<key>?X-Expires=<epoch>`), e.g. `http://127.0.0.1:8080/s3`. The
    /// control plane serves it; `None` leaves placeholders unresolved.
    pub presigned_url_base: Option<String>,
    /// How far ahead a scheduled job's startTime/endTime must be (AWS: 30 minutes).
    /// Locally 0 by default, with a warning for what AWS would refuse.
    pub min_schedule_lead_minutes: i64,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            account: Account::default(),
            max_pending_listed: crate::jobs::execution::DEFAULT_PENDING_LIMIT,
            notify_on_start: false,
            describe_terminal_rejected: true,
            include_child_groups: true,
            presigned_url_base: None,
            min_schedule_lead_minutes: 0,
        }
    }
}

/// One MQTT message the service must publish (QoS 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    pub topic: String,
    pub payload: Value,
}

impl Outbound {
    pub fn payload_bytes(&self) -> Vec<u8> {
        // A `Value` always serializes.
        serde_json::to_vec(&self.payload).unwrap_or_default()
    }
}

/// Result of a control operation: its value and the notifications to publish.
#[derive(Debug)]
pub struct Changed<T> {
    pub value: T,
    pub messages: Vec<Outbound>,
}

/// The sans-I/O Jobs service.
#[derive(Debug)]
pub struct JobsService {
    store: Store,
    cfg: ServiceConfig,
    /// The broker's view of the recorded certificates; this service is its only writer.
    principals: Principals,
}

impl JobsService {
    pub fn new(store: Store, cfg: ServiceConfig) -> Self {
        let principals = Principals::default();
        if let Err(e) = principals::load_view(&store, &principals) {
            // Fails closed: devices with recorded certificates are refused until a restart.
            tracing::error!(error = %e, "cannot load the certificate records for the broker");
        }
        JobsService {
            store,
            cfg,
            principals,
        }
    }

    /// The store, for queries the control plane answers directly. Writing through it
    /// bypasses the Jobs rules and sends no notifications: tests only.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.cfg
    }

    /// Gives the store back (closing the service), e.g. to reopen it in a restart test.
    pub fn into_store(self) -> Store {
        self.store
    }
}
