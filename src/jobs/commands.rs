//! `validate-job` and `run-job`: local commands for handler authors (the binary's edge).

use std::path::Path;
use std::process::ExitCode;

use crate::cli::GlobalArgs;

pub fn validate_job(_global: &GlobalArgs, _file: &Path) -> anyhow::Result<ExitCode> {
    anyhow::bail!("validate-job: not built yet")
}

pub fn run_job(_global: &GlobalArgs, _file: &Path, _params: &[String]) -> anyhow::Result<ExitCode> {
    anyhow::bail!("run-job: not built yet")
}
