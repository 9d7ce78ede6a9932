//! `check-config` and `import-aws-config`: the binary's edge for configuration.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::GlobalArgs;

pub fn check_config(_global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("check-config: not built yet")
}

pub fn import_aws_config(_path: &Path) -> anyhow::Result<ExitCode> {
    anyhow::bail!("import-aws-config: not built yet")
}
