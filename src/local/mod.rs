//! iotjobs-local: a local AWS IoT Jobs service (embedded broker, PKI, Jobs device API,
//! control plane, durable store). Built only with the `local` feature.
pub mod broker;
pub mod cli;
pub mod clock;
pub mod control;
pub mod demo;
pub mod external;
pub mod lifecycle;
pub mod mosquitto;
pub mod pki;
pub mod provision;
pub mod server;
pub mod service;
pub mod store;
