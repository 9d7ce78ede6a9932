//! Logging set-up: the tracing subscriber writing to the log file (daily or size
//! rotation, or none) and/or stdout, journald-aware. Owns the log file writers.
//!
//! It must never log key material: it only formats events; the configuration it is
//! given holds paths, never key contents.
//!
//! Level: `log.level`, replaced by `RUST_LOG` when set, replaced by `-v` (debug) /
//! `-vv` (trace). Under systemd (`JOURNAL_STREAM` set) stdout lines carry no timestamp
//! and no colours (journald stamps them) but a `<N>` syslog priority prefix, so
//! `journalctl -p warning` works.
//!
//! Writers are non-blocking and not lossy: a slow disk slows logging callers down
//! rather than dropping lines (job output must not go missing).

mod daily_rotation;
mod size_rotation;

use std::fmt;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::{Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::{LogConfig, Rotation};

pub use daily_rotation::DailyRotatingWriter;
pub use size_rotation::SizeRotatingWriter;

/// Errors from setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("cannot create the log directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the log file {}: {source}", path.display())]
    OpenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("log file {} has no file name", .0.display())]
    NoFileName(PathBuf),
    #[error("invalid log filter {filter:?}: {message}")]
    Filter { filter: String, message: String },
    #[error("a global logger is already installed: {0}")]
    AlreadyInitialized(String),
}

/// Keeps the non-blocking writers alive; dropping it flushes the log.
pub struct LoggingGuard {
    _guards: Vec<tracing_appender::non_blocking::WorkerGuard>,
}

/// What logging reads from the environment, passed in so tests control it.
#[derive(Debug, Clone, Default)]
pub struct LoggingEnv {
    /// `RUST_LOG`, if set and not empty.
    pub rust_log: Option<String>,
    /// `JOURNAL_STREAM` is set: stdout is connected to journald.
    pub journal: bool,
    /// stdout is a terminal (colours allowed).
    pub stdout_is_terminal: bool,
}

impl LoggingEnv {
    pub fn from_process() -> Self {
        LoggingEnv {
            rust_log: std::env::var("RUST_LOG")
                .ok()
                .filter(|s| !s.trim().is_empty()),
            journal: std::env::var_os("JOURNAL_STREAM").is_some(),
            stdout_is_terminal: std::io::stdout().is_terminal(),
        }
    }
}

/// The filter in force: `-vv` > `-v` > `RUST_LOG` > `log.level`.
pub fn filter_directives(level: &str, rust_log: Option<&str>, verbose: u8) -> String {
    match (verbose, rust_log) {
        (2.., _) => "trace".to_string(),
        (1, _) => "debug".to_string(),
        (0, Some(filter)) => filter.to_string(),
        (0, None) => level.to_string(),
    }
}

/// Parses a filter: a level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or
/// `RUST_LOG`-style comma-separated directives, each `level`, `target=level` or
/// `target` (all levels), e.g. `info,iotjobs::mqtt=debug,rumqttc=warn`; the most
/// specific target wins, and targets no directive names are off. A `Targets` filter
/// rather than `EnvFilter`: the latter's span and field filters need a regex engine
/// that the device binary would carry for nothing; they are refused here with a clear
/// error rather than silently matching nothing.
pub fn parse_filter(directives: &str) -> Result<Targets, String> {
    let mut kept = Vec::new();
    for directive in directives.split(',').map(str::trim) {
        if directive.is_empty() {
            continue;
        }
        let target = directive.split('=').next().unwrap_or_default();
        if target.contains(['[', ']', '{', '}', '"']) || target.contains(char::is_whitespace) {
            return Err(format!(
                "{directive:?}: only `level`, `target=level` and `target` directives are supported"
            ));
        }
        kept.push(directive);
    }
    if kept.is_empty() {
        return Ok(Targets::new());
    }
    kept.join(",").parse::<Targets>().map_err(|e| e.to_string())
}

type Base = tracing_subscriber::layer::Layered<Targets, Registry>;
type BoxedLayer = Box<dyn Layer<Base> + Send + Sync>;

/// Installs the global tracing subscriber. `verbose` is the count of `-v` flags.
pub fn init(config: &LogConfig, verbose: u8) -> Result<LoggingGuard, LoggingError> {
    let env = LoggingEnv::from_process();
    let (subscriber, guard) = build(config, verbose, &env, std::io::stdout)?;
    // try_init also routes the `log` crate's records (rumqttc, rustls) into tracing.
    subscriber
        .try_init()
        .map_err(|e| LoggingError::AlreadyInitialized(e.to_string()))?;
    Ok(guard)
}

/// Builds the subscriber without installing it (tests use it with
/// `tracing::subscriber::with_default`). `stdout` makes the stdout writer.
pub fn build<W>(
    config: &LogConfig,
    verbose: u8,
    env: &LoggingEnv,
    stdout: impl FnOnce() -> W,
) -> Result<(impl Subscriber + Send + Sync, LoggingGuard), LoggingError>
where
    W: Write + Send + 'static,
{
    let directives = filter_directives(&config.level, env.rust_log.as_deref(), verbose);
    let filter = parse_filter(&directives).map_err(|message| LoggingError::Filter {
        filter: directives.clone(),
        message,
    })?;

    let mut guards = Vec::new();
    let mut layers: Vec<BoxedLayer> = Vec::new();
    if let Some(path) = config.file.as_deref().filter(|p| !p.as_os_str().is_empty()) {
        let writer = file_writer(path, config)?;
        let (writer, guard) = non_blocking(writer);
        guards.push(guard);
        layers.push(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(writer)
                .boxed(),
        );
    }
    if config.stdout {
        let (writer, guard) = non_blocking(stdout());
        guards.push(guard);
        layers.push(stdout_layer(writer, env));
    }
    let subscriber = Registry::default().with(filter).with(layers);
    Ok((subscriber, LoggingGuard { _guards: guards }))
}

/// Lines queued for the writer thread before logging callers wait. tracing-appender's
/// default (128,000) preallocates a 4 MB queue per writer and lets a handler printing
/// fast hold ~10 MB of lines in it; 1,024 lines keep both small (benchmarks: idle RssAnon,
/// handler flood) while still absorbing bursts.
const LOG_QUEUE_LINES: usize = 1024;

fn non_blocking<W: Write + Send + 'static>(
    writer: W,
) -> (
    tracing_appender::non_blocking::NonBlocking,
    tracing_appender::non_blocking::WorkerGuard,
) {
    tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("iotjobsd-log")
        .finish(writer)
}

fn stdout_layer<M>(writer: M, env: &LoggingEnv) -> BoxedLayer
where
    M: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    if env.journal {
        tracing_subscriber::fmt::layer()
            .event_format(JournalFormat::default())
            .with_writer(writer)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(env.stdout_is_terminal)
            .with_writer(writer)
            .boxed()
    }
}

/// The log file's writer for the configured rotation; creates the directory.
fn file_writer(path: &Path, config: &LogConfig) -> Result<Box<dyn Write + Send>, LoggingError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|source| LoggingError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    let open_err = |source| LoggingError::OpenFile {
        path: path.to_path_buf(),
        source,
    };
    match config.rotation {
        Rotation::Never => Ok(Box::new(
            size_rotation::open_append(path).map_err(open_err)?,
        )),
        Rotation::Size => {
            let max = config.max_size_mb.saturating_mul(1024 * 1024);
            Ok(Box::new(
                SizeRotatingWriter::open(path, max, config.keep_files).map_err(open_err)?,
            ))
        }
        Rotation::Daily => {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| LoggingError::NoFileName(path.to_path_buf()))?;
            // The live name becomes a symlink, so an `iotjobsd.log` left by size or no
            // rotation is kept aside rather than replaced.
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
                let mut old = path.as_os_str().to_owned();
                old.push(".old");
                std::fs::rename(path, &old).map_err(open_err)?;
            }
            Ok(Box::new(
                DailyRotatingWriter::open(dir, name, config.keep_files).map_err(open_err)?,
            ))
        }
    }
}

/// journald's stdout format: `<N>` syslog priority, then the usual line without time.
struct JournalFormat {
    inner: Format<Full, ()>,
}

impl Default for JournalFormat {
    fn default() -> Self {
        JournalFormat {
            inner: Format::default().without_time().with_ansi(false),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let priority = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        write!(writer, "<{priority}>")?;
        self.inner.format_event(ctx, writer, event)
    }
}

/// A cloneable in-memory writer (tests capture stdout with it).
#[derive(Debug, Clone, Default)]
pub struct SharedBuffer(pub Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock() {
            Ok(mut v) => v.extend_from_slice(buf),
            Err(poisoned) => poisoned.into_inner().extend_from_slice(buf),
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuffer {
    pub fn contents(&self) -> String {
        let bytes = match self.0.lock() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stdout_only() -> LogConfig {
        LogConfig {
            file: None,
            stdout: true,
            ..LogConfig::default()
        }
    }

    #[test]
    fn filter_precedence() {
        assert_eq!(filter_directives("warn", None, 0), "warn");
        assert_eq!(
            filter_directives("warn", Some("iotjobs=trace"), 0),
            "iotjobs=trace"
        );
        assert_eq!(filter_directives("warn", Some("iotjobs=trace"), 1), "debug");
        assert_eq!(filter_directives("warn", None, 3), "trace");
    }

    #[test]
    fn filters_accept_levels_and_target_directives() {
        let on = |filter: &str, target: &str, level: Level| {
            parse_filter(filter).unwrap().would_enable(target, &level)
        };
        assert!(on("info", "iotjobs::app", Level::INFO));
        assert!(!on("info", "iotjobs::app", Level::DEBUG));
        assert!(on("WARN", "rumqttc", Level::WARN) && !on("WARN", "rumqttc", Level::INFO));
        assert!(!on("off", "iotjobs", Level::ERROR));
        let documented = "info,iotjobs::mqtt=debug";
        assert!(on(documented, "iotjobs::mqtt::connection", Level::DEBUG));
        assert!(!on(documented, "iotjobs::jobs", Level::DEBUG));
        assert!(on(documented, "rustls", Level::INFO));
        // The most specific directive wins whatever the order.
        assert!(!on(
            "iotjobs::mqtt=warn,iotjobs=trace",
            "iotjobs::mqtt",
            Level::INFO
        ));
        // Blanks and empty directives are ignored, as RUST_LOG users write them.
        assert!(on(" warn , iotjobs=debug ,", "iotjobs::app", Level::DEBUG));
        assert!(!on(" warn , iotjobs=debug ,", "rumqttc", Level::INFO));
        // A bare target enables all its levels; other targets are off.
        assert!(
            on("iotjobs", "iotjobs::app", Level::TRACE) && !on("iotjobs", "rustls", Level::ERROR)
        );
        assert!(!on("", "iotjobs", Level::ERROR));
    }

    #[test]
    fn unsupported_filters_are_errors() {
        for bad in [
            "iotjobs=loud",
            "a=b=c",
            "iotjobs[connect]=debug",
            "[{thing=gw1}]=trace",
            "iot jobs=debug",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad:?} accepted");
        }
        // A bare word is a target name (RUST_LOG semantics), not an error.
        assert!(parse_filter("loud").is_ok());
    }

    #[test]
    fn journal_lines_have_priority_and_no_time_or_colour() {
        let buf = SharedBuffer::default();
        let env = LoggingEnv {
            journal: true,
            stdout_is_terminal: true,
            ..LoggingEnv::default()
        };
        let sink = buf.clone();
        let (subscriber, guard) = build(&stdout_only(), 0, &env, move || sink).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(thing = "gw1", "broker unreachable");
            tracing::debug!("filtered out at info");
        });
        drop(guard);
        let out = buf.contents();
        let line = out.lines().next().unwrap_or_default();
        assert!(line.starts_with("<4> WARN "), "{out:?}");
        assert!(
            line.contains("broker unreachable") && line.contains("thing=\"gw1\""),
            "{out:?}"
        );
        assert!(!out.contains('\u{1b}'), "ANSI escape in {out:?}");
        assert!(!out.contains("filtered out"), "{out:?}");
        assert_eq!(out.lines().count(), 1, "{out:?}");
    }

    #[test]
    fn plain_stdout_lines_are_timestamped() {
        let buf = SharedBuffer::default();
        let sink = buf.clone();
        let (subscriber, guard) =
            build(&stdout_only(), 1, &LoggingEnv::default(), move || sink).unwrap();
        tracing::subscriber::with_default(subscriber, || tracing::debug!("visible with -v"));
        drop(guard);
        let out = buf.contents();
        // RFC 3339 time first, e.g. 2026-11-22T13:00:00.000000Z
        assert!(
            out.starts_with("20") && out.contains("T") && out.contains("visible with -v"),
            "{out:?}"
        );
    }

    #[test]
    fn uncreatable_log_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let config = LogConfig {
            file: Some(blocker.join("sub/iotjobsd.log")),
            ..LogConfig::default()
        };
        let err = build(&config, 0, &LoggingEnv::default(), std::io::sink)
            .err()
            .unwrap();
        assert!(matches!(err, LoggingError::CreateDir { .. }), "{err}");
        assert!(
            err.to_string().contains("cannot create the log directory"),
            "{err}"
        );
    }
}
