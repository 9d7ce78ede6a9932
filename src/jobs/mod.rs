//! The AWS IoT Jobs protocol shared by the daemon and the local service (topics, wire
//! types, execution state machine), the job document model, and the daemon's Jobs
//! engine (`engine`, `runner`). All of it is pure (no I/O) except `task`, the engine's
//! thin tokio loop, and `commands`, the CLI edge of `validate-job` and `run-job`.
pub mod commands;
pub mod document;
pub mod engine;
pub mod execution;
pub mod runner;
pub mod status_details;
pub mod task;
pub mod templates;
pub mod topics;
pub mod wire;
