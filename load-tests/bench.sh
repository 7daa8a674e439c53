#!/usr/bin/env bash
# The benchmark of BENCHMARKS.md: builds the release binaries, then runs, one after the
# other on this machine, pgbench's durable-write reference and the gateway's figures
# (see `loadgen bench --help`). Extra arguments go to `loadgen bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p gateway -p simulator -p load-tests
exec ./target/release/loadgen bench --out load-tests/results "$@"
