#!/bin/sh
# One command for the benchmarks (BENCHMARKS.md): builds the device daemon exactly as the
# packages do (release profile, no default features), the local service and the harness,
# then runs the harness. Arguments go to the harness, e.g. `bench/run.sh --quick`,
# `bench/run.sh --things 2000`, `bench/run.sh --skip-scale`.
set -eu
cd "$(dirname "$0")/.."
# The service and the harness first: they build the library with the `local` feature.
cargo build --release --bin iotjobs-local --example bench
# Last, so target/release/iotjobsd is the device build (no `local` feature).
cargo build --release --no-default-features --bin iotjobsd
exec target/release/examples/bench \
    --iotjobsd target/release/iotjobsd \
    --iotjobs-local target/release/iotjobs-local "$@"
