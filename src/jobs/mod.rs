//! The AWS IoT Jobs protocol shared by the daemon and the local service (topics, wire
//! types, execution state machine) and the job document model. Pure: no I/O here.
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
