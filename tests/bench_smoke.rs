//! The benchmark harness (examples/bench) in quick mode against the debug binaries, so it
//! cannot rot: it must produce every figure. The figures' values are never asserted (speed
//! and memory are for `bench/run.sh` on a quiet machine, not for tests).

#[path = "../examples/bench/harness/mod.rs"]
mod harness;

use std::path::PathBuf;

#[test]
fn quick_run_produces_every_figure() {
    let opts = harness::Options::full(
        PathBuf::from(env!("CARGO_BIN_EXE_iotjobsd")),
        PathBuf::from(env!("CARGO_BIN_EXE_iotjobs-local")),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    )
    .quick();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(harness::run(&opts)).unwrap();
    assert_eq!(report.missing(&opts), Vec::<&str>::new());
    let text = report.render();
    for figure in [
        "1. exec",
        "2a.",
        "2b.",
        "2c.",
        "3. notify-next",
        "4. queue drain",
        "4b.",
        "5. handler",
        "6a.",
        "6b.",
        "6c.",
        "7a.",
        "7b.",
        "8. journal write",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("| {figure}")))
            .unwrap_or_else(|| panic!("no row {figure} in\n{text}"));
        assert!(!line.contains("n/a"), "figure {figure} missing: {line}");
    }
    assert_eq!(
        report.scale.completed, opts.things,
        "every simulated thing ran its job"
    );
}
