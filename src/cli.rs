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
    /// More log output (-v debug, -vv trace); overrides `log.level` and RUST_LOG.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Broker host name (`mqtt.endpoint`).
    #[arg(long, global = true, value_name = "HOST")]
    pub endpoint: Option<String>,
    /// Broker port, 8883 or 443 (`mqtt.port`).
    #[arg(long, global = true, value_name = "PORT")]
    pub port: Option<u16>,
    /// The thing this device is (`mqtt.thing_name`).
    #[arg(long, global = true, value_name = "NAME")]
    pub thing_name: Option<String>,
    /// MQTT client id (`mqtt.client_id`; default: the thing name).
    #[arg(long, global = true, value_name = "ID")]
    pub client_id: Option<String>,
    /// Device certificate, PEM (`mqtt.cert`).
    #[arg(long, global = true, value_name = "PATH")]
    pub cert: Option<PathBuf>,
    /// Private key, PEM (`mqtt.key`).
    #[arg(long, global = true, value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// Root CA bundle, PEM (`mqtt.root_ca`).
    #[arg(long, global = true, value_name = "PATH")]
    pub root_ca: Option<PathBuf>,
    /// Handler directory (`jobs.handler_dir`).
    #[arg(long, global = true, value_name = "DIR")]
    pub handler_dir: Option<PathBuf>,
    /// State directory: journal, outbox, job working directories (`paths.state_dir`).
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Log file; an empty value disables the file (`log.file`).
    #[arg(long, global = true, value_name = "PATH", value_parser = path_or_empty())]
    pub log_file: Option<PathBuf>,
    /// Log level or RUST_LOG-style filter (`log.level`).
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Also log to stdout (`log.stdout = true`).
    #[arg(long, global = true)]
    pub log_stdout: bool,
}

/// clap refuses empty paths by default; an empty `--log-file` means "no file".
fn path_or_empty() -> impl clap::builder::TypedValueParser<Value = PathBuf> {
    use clap::builder::TypedValueParser;
    clap::builder::OsStringValueParser::new().map(PathBuf::from)
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
