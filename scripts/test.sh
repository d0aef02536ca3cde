#!/usr/bin/env bash
# Runs every test: unit, property, fixture, CLI end-to-end, and (as root) the live eBPF tests
# in network namespaces they create themselves. Assumes scripts/setup.sh has run.
set -euo pipefail
cd "$(dirname "$0")/.."
mountpoint -q /sys/kernel/tracing 2>/dev/null || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
export PROPTEST_CASES="${PROPTEST_CASES:-256}"
cargo fmt --all -- --check
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast -- --test-threads=2
