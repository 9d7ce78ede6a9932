//! `cargo run --release --example bench -- [--quick]` (or `bench/run.sh`, which builds the
//! release binaries first): runs the benchmark harness and prints the figures as Markdown.
//! See BENCHMARKS.md.

mod harness;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "iotjobs benchmarks: footprint, latency and fleet scale")]
struct Args {
    /// Tiny counts and short waits (seconds): checks that the harness works.
    #[arg(long)]
    quick: bool,
    /// The iotjobsd to measure (default: `iotjobsd` in the directory above this executable).
    #[arg(long)]
    iotjobsd: Option<PathBuf>,
    /// The iotjobs-local binary (default: next to iotjobsd's default).
    #[arg(long)]
    iotjobs_local: Option<PathBuf>,
    /// Simulated things for the scale figure.
    #[arg(long)]
    things: Option<usize>,
    /// Runs of the exec → start-next figure.
    #[arg(long)]
    startup_runs: Option<usize>,
    /// Jobs for the notify-next → SUCCEEDED figure.
    #[arg(long)]
    latency_jobs: Option<usize>,
    /// Skip the scale figure (e.g. when comparing daemon builds).
    #[arg(long)]
    skip_scale: bool,
    /// Skip figures 1–5 (run the scale figure alone).
    #[arg(long)]
    skip_daemon: bool,
    /// Keep the work directory (service data, daemon config and log).
    #[arg(long)]
    keep: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent().map(PathBuf::from))
        .unwrap_or_default();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut opts = harness::Options::full(
        args.iotjobsd.unwrap_or_else(|| bin_dir.join("iotjobsd")),
        args.iotjobs_local
            .unwrap_or_else(|| bin_dir.join("iotjobs-local")),
        repo,
    );
    if args.quick {
        opts = opts.quick();
    }
    opts.things = args.things.unwrap_or(opts.things);
    opts.startup_runs = args.startup_runs.unwrap_or(opts.startup_runs);
    opts.latency_jobs = args.latency_jobs.unwrap_or(opts.latency_jobs);
    opts.skip_scale = args.skip_scale;
    opts.keep = args.keep;
    opts.skip_daemon = args.skip_daemon;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "bench: iotjobsd {}, iotjobs-local {}",
        opts.iotjobsd.display(),
        opts.iotjobs_local.display()
    );
    match runtime.block_on(harness::run(&opts)) {
        Ok(report) => {
            print!("{}", report.render());
            let missing = report.missing(&opts);
            if missing.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!("bench: figures missing: {}", missing.join(", "));
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
