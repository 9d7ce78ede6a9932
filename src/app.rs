//! The daemon supervisor: owns process lifecycle (signals, systemd notify, watchdog,
//! single-instance lock) and wires the long-lived tasks together over channels.
//! It must not speak MQTT or run handlers itself.

use std::process::ExitCode;

use crate::cli::GlobalArgs;

/// `iotjobsd run`: load configuration, start the daemon, return its exit code.
pub fn run_command(_global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the daemon is not built yet")
}
