//! iotjobs: a device agent for AWS IoT Jobs (`iotjobsd`) and a local AWS IoT Jobs
//! service (`iotjobs-local`) to run and test it without an AWS account.
//!
//! Module map (each module's own doc says what it owns and what it must not do):
//!
//! - [`config`]: layered configuration (figment), validation, AWS config import.
//! - [`logging`]: tracing subscriber set-up (file with rotation, stdout, journald-aware).
//! - [`mqtt`]: the one task that owns the MQTT connection (rumqttc over rustls).
//! - [`app`]: the daemon's supervisor: signals, systemd notify, watchdog, lock file.
//! - [`jobs`]: the AWS IoT Jobs protocol (topics, wire types, state machine) and job documents.
//! - [`sandbox`]: the only module that spawns processes (handlers), with limits and timeouts.
//! - `local` (feature `local`): the local Jobs service: embedded broker, PKI, store, control plane.

pub mod app;
pub mod cli;
pub mod config;
pub mod jobs;
pub mod logging;
pub mod mqtt;
pub mod sandbox;

#[cfg(feature = "local")]
pub mod local;
