//! The AWS IoT Jobs protocol shared by the daemon and the local service (topics, wire
//! types, execution state machine) and the job document model. Pure: no I/O here.
pub mod commands;
pub mod templates;
