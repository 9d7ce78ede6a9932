//! Logging set-up: tracing subscriber writing to the log file (with rotation) and/or
//! stdout, journald-aware. It must never log key material.

use crate::config::LogConfig;

/// Errors from setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid log level {0:?}")]
    Level(String),
}

/// Keeps the non-blocking writer alive; dropping it flushes the log.
pub struct LoggingGuard {
    _guards: Vec<tracing_appender::non_blocking::WorkerGuard>,
}

/// Installs the global tracing subscriber. `verbose` is the count of `-v` flags.
/// TEMPORARY (mqtt branch): stderr only, until the logging branch lands.
pub fn init(config: &LogConfig, verbose: u8) -> Result<LoggingGuard, LoggingError> {
    let level = match verbose {
        0 => config.level.clone(),
        1 => "debug".to_string(),
        _ => "trace".to_string(),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .map_err(|_| LoggingError::Level(level.clone()))?;
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    // A second init (tests) keeps the first subscriber; that is fine.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .try_init();
    Ok(LoggingGuard {
        _guards: vec![guard],
    })
}
