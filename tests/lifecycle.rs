//! Job lifecycle (issue 6): scheduling, maintenance windows, rollout, abort, timeouts,
//! retries and cancellation. `core` drives the sans-I/O service with explicit times;
//! `daemon` runs real `iotjobsd` devices against a service on a manual clock.
#![cfg(feature = "local")]

mod common;

#[path = "lifecycle/core.rs"]
mod core;

#[path = "lifecycle/daemon.rs"]
mod daemon;

#[path = "lifecycle/http.rs"]
mod http;
