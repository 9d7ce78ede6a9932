//! The AWS IoT Jobs protocol shared by the daemon and the local service (topics, wire
//! types, execution state machine), the job document model and the AWS managed
//! templates. Pure: no I/O here except in `commands` (the binary's edge).
pub mod commands;
pub mod document;
pub mod execution;
pub mod status_details;
pub mod templates;
pub mod topics;
pub mod wire;
