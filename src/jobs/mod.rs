//! The AWS IoT Jobs protocol shared by the daemon and the local service (topics, wire
//! types, execution state machine), the job document model and the AWS managed
//! templates. Pure: no I/O here except in `commands` (the binary's edge) and `task`
//! (the thin tokio task around the engine).
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
