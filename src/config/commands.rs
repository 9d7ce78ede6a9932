//! `check-config` and `import-aws-config`: the binary's edge for configuration.
//!
//! check-config exit codes: 0 valid, 1 loaded but invalid, 2 cannot be loaded.
//! The effective configuration goes to stdout (so it can be redirected to a file);
//! problems and the summary go to stderr.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::{aws, redact, validate, Loader};
use crate::cli::GlobalArgs;

pub fn check_config(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let loaded = match Loader::from_process_env().load(global) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("error: the configuration cannot be loaded: {err}");
            return Ok(ExitCode::from(2));
        }
    };
    let sources = if loaded.sources.is_empty() {
        "built-in defaults only".to_string()
    } else {
        format!("defaults < {}", loaded.sources.join(" < "))
    };
    println!("# Effective iotjobsd configuration ({sources})");
    print!("{}", redact::to_redacted_toml(&loaded.config)?);

    let problems = validate(&loaded.config);
    if problems.is_empty() {
        eprintln!("configuration is valid");
        return Ok(ExitCode::SUCCESS);
    }
    for p in &problems {
        eprintln!("problem: {p}");
    }
    eprintln!(
        "configuration is invalid: {} problem{}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::from(1))
}

pub fn import_aws_config(path: &Path) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let imported =
        aws::import(&text, &env).with_context(|| format!("cannot import {}", path.display()))?;
    print!("{}", imported.to_toml(path)?);
    for warning in &imported.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(ExitCode::SUCCESS)
}
