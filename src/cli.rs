//! Command-line interface of `iotjobsd` (clap). Owns argument parsing and dispatch to
//! the command implementations; it holds no behaviour of its own.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "iotjobsd", version, about = "AWS IoT Jobs device agent")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options shared by every subcommand: they form the last configuration layer.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Main configuration file (replaces /etc/iotjobsd/config.toml; must exist).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default).
    Run,
    /// Print the effective configuration (secrets redacted) and every problem; exit 0 only when valid.
    CheckConfig,
    /// Convert an AWS IoT Device Client JSON config to iotjobsd TOML on stdout.
    ImportAwsConfig {
        /// The AWS IoT Device Client JSON configuration file.
        path: PathBuf,
    },
    /// Validate a job document and print the plan it yields.
    ValidateJob {
        /// Job document (JSON).
        file: PathBuf,
    },
    /// Run a job document locally through the same engine and sandbox, with no cloud.
    RunJob {
        /// Job document (JSON).
        file: PathBuf,
        /// Substitute `${aws:iot:parameter:NAME}` placeholders (repeatable).
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
    },
}

/// Parses the command line and runs the command; the binary's whole `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => crate::app::run_command(&cli.global),
        Command::CheckConfig => crate::config::commands::check_config(&cli.global),
        Command::ImportAwsConfig { path } => crate::config::commands::import_aws_config(&path),
        Command::ValidateJob { file } => crate::jobs::commands::validate_job(&cli.global, &file),
        Command::RunJob { file, params } => {
            crate::jobs::commands::run_job(&cli.global, &file, &params)
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("iotjobsd: {err:#}");
            ExitCode::FAILURE
        }
    }
}
