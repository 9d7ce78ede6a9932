//! Command-line interface of `iotjobs-local` (clap): `serve`, the client verbs that mirror
//! the AWS CLI's `aws iot` names and arguments (they talk to the HTTP control plane),
//! `watch`, `demo` and `mosquitto-config`. Parsing and dispatch only; the verbs live in
//! `cli/verbs.rs`.

mod mosquitto;
mod output;
mod schedule_view;
mod verbs;
pub(crate) mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

pub use output::Format;

/// Default endpoint of the client verbs.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8088";

#[derive(Debug, Parser)]
#[command(
    name = "iotjobs-local",
    version,
    about = "A local AWS IoT Jobs service: embedded MQTT broker, Jobs device API, AWS IoT control plane",
    after_help = "Start with `iotjobs-local demo`, or `iotjobs-local serve` and then the client verbs \
                  (or `aws iot ... --endpoint-url http://127.0.0.1:8088`)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Control-plane endpoint of a running `iotjobs-local serve`.
    #[arg(long, global = true, env = "IOTJOBS_LOCAL_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint_url: String,
    /// Output of the client verbs.
    #[arg(long, global = true, value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: local CA, embedded MQTT broker (mutual TLS), Jobs service, HTTP control plane.
    Serve(ServeArgs),
    /// Run the whole system on this machine: the service, three real iotjobsd devices, a job; exit 0 only if every execution SUCCEEDED.
    Demo(crate::local::demo::DemoArgs),
    /// Write a mosquitto configuration (certificates, ACL) from the local CA for `serve --broker`.
    MosquittoConfig(mosquitto::MosquittoConfigArgs),
    /// Live progress of a job's executions by status; exits 0 when every execution SUCCEEDED.
    Watch {
        /// The job to watch.
        job_id: String,
        /// Seconds between polls.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
    /// Show the service's clock, or move the clock of a `serve --manual-clock` service
    /// (the scheduler runs at once: schedules, windows, rollout, timeouts, retries).
    Clock {
        /// Move the clock forward by this many seconds.
        #[arg(long, value_name = "SECONDS", conflicts_with = "set_time")]
        advance: Option<f64>,
        /// Move the clock to this UTC time.
        #[arg(long, value_name = "YYYY-MM-DDTHH:MM")]
        set_time: Option<String>,
    },
    #[command(flatten)]
    Verb(verbs::Verb),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data directory: CA, SQLite state. Default: $XDG_DATA_HOME/iotjobs-local or ~/.local/share/iotjobs-local.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Mutual-TLS MQTT address of the embedded broker.
    #[arg(long, value_name = "ADDR", default_value = crate::local::server::DEFAULT_MQTT_ADDR,
          conflicts_with = "broker")]
    pub mqtt_addr: SocketAddr,
    /// Also listen for plain-TCP MQTT (no authentication: tests only).
    #[arg(long, value_name = "ADDR", conflicts_with = "broker")]
    pub mqtt_tcp_addr: Option<SocketAddr>,
    /// Control-plane (HTTP) address. Requests are not authenticated: keep it on loopback.
    #[arg(long, value_name = "ADDR", default_value = crate::local::server::DEFAULT_HTTP_ADDR)]
    pub http_addr: SocketAddr,
    /// Use an external broker (mqtts://HOST:PORT, mutual TLS) instead of the embedded one;
    /// devices provisioned by `create-thing --out` then connect to it. See `mosquitto-config`.
    #[arg(long, value_name = "URL")]
    pub broker: Option<String>,
    /// CA certificate(s) (PEM) that sign the external broker's certificate. Default: the local CA.
    #[arg(long, value_name = "FILE", requires = "broker")]
    pub broker_ca: Option<PathBuf>,
    /// The service's client certificate (PEM) for the external broker. Default: one issued
    /// by the local CA for the service identity `iotjobs-local/service`.
    #[arg(long, value_name = "FILE", requires_all = ["broker", "broker_key"])]
    pub broker_cert: Option<PathBuf>,
    /// The private key (PEM) of --broker-cert.
    #[arg(long, value_name = "FILE", requires_all = ["broker", "broker_cert"])]
    pub broker_key: Option<PathBuf>,
    /// Minimum minutes a scheduled job's startTime/endTime must be ahead (AWS: 30).
    /// Jobs AWS would refuse are accepted with a warning.
    #[arg(long, value_name = "MINUTES", default_value_t = 0)]
    pub min_schedule_lead_minutes: i64,
    /// Tests only: time stands still (starting now) and moves only through
    /// `POST /iotjobs-local/clock {"advanceSeconds": N}`, which also runs the scheduler.
    #[arg(long)]
    pub manual_clock: bool,
}

/// The default data directory.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("iotjobs-local");
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => PathBuf::from(h).join(".local/share/iotjobs-local"),
        None => PathBuf::from("iotjobs-local-data"),
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(cli.command, Command::Serve(_)));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("iotjobs-local: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("iotjobs-local: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `serve` at info, the client verbs and the demo at warn so their output
/// stays readable. `RUST_LOG` overrides.
fn init_logging(serve: bool) {
    use tracing_subscriber::EnvFilter;
    let default = format!(
        "{},{}",
        if serve { "info" } else { "warn" },
        crate::local::broker::QUIET_LOG_DIRECTIVES
    );
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Demo(args) => crate::local::demo::run(args).await,
        Command::MosquittoConfig(args) => mosquitto::run(args),
        Command::Watch { job_id, interval } => {
            let api = crate::local::control::client::ApiClient::new(&cli.global.endpoint_url)?;
            let interval = std::time::Duration::from_secs_f64(interval.clamp(0.05, 3600.0));
            let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
            let p = watch::watch(&api, &job_id, interval, &mut std::io::stdout(), tty).await?;
            Ok(if p.all_succeeded() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Clock { advance, set_time } => {
            let api = crate::local::control::client::ApiClient::new(&cli.global.endpoint_url)?;
            let body = match (advance, set_time) {
                (Some(s), _) => Some(serde_json::json!({ "advanceSeconds": s })),
                (None, Some(t)) => Some(serde_json::json!({ "setTime": t })),
                (None, None) => None,
            };
            let v = match body {
                Some(b) => api.call("POST", "/iotjobs-local/clock", Some(&b)).await?,
                None => api.get("/iotjobs-local/clock").await?,
            };
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Verb(v) => verbs::run(v, &cli.global).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    use crate::local::server::{LocalService, ServeOptions};
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let mut opts = ServeOptions::new(&data_dir);
    opts.mqtt_tls_addr = Some(args.mqtt_addr);
    opts.mqtt_tcp_addr = args.mqtt_tcp_addr;
    opts.http_addr = args.http_addr;
    opts.service.min_schedule_lead_minutes = args.min_schedule_lead_minutes.max(0);
    if args.manual_clock {
        use crate::local::clock::{Clock, ManualClock, SystemClock};
        opts.manual_clock = Some(ManualClock::new(SystemClock.now()));
    }
    if let Some(url) = &args.broker {
        let mut ext = crate::local::external::ExternalBroker::parse(url)?;
        ext.ca = args.broker_ca;
        ext.cert = args.broker_cert;
        ext.key = args.broker_key;
        opts.external_broker = Some(ext);
    }
    let svc = LocalService::start(opts).await?;
    println!("iotjobs-local is running");
    println!("  control plane  {}", svc.endpoint_url());
    if let Some(a) = svc.mqtt_tls_addr {
        println!("  MQTT (mTLS)    mqtts://{a}");
    }
    if let Some(a) = svc.mqtt_tcp_addr {
        println!("  MQTT (plain)   mqtt://{a}  (no authentication)");
    }
    if let Some(url) = &svc.external_broker {
        println!("  MQTT (mTLS)    {url}  (external broker)");
    }
    println!("  data           {}", svc.data_dir.display());
    if args.manual_clock {
        println!(
            "  clock          manual: curl -X POST {}/iotjobs-local/clock -d '{{\"advanceSeconds\": 60}}'",
            svc.endpoint_url()
        );
    }
    println!(
        "try: aws iot list-jobs --endpoint-url {} --region us-east-1 --no-sign-request",
        svc.endpoint_url()
    );
    wait_for_signal().await?;
    eprintln!("iotjobs-local: stopping");
    svc.stop().await?;
    Ok(ExitCode::SUCCESS)
}

/// SIGINT (Ctrl-C) or SIGTERM.
pub(crate) async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
