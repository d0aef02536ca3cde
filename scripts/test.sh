#!/usr/bin/env bash
# Runs every test: unit, property, fixture, CLI end-to-end, Go gob interop, and (as root) the
# live eBPF tests in network namespaces they create themselves. Assumes scripts/setup.sh ran.
# Ends with one line "tests: N passed, M failed" summing every test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
mountpoint -q /sys/kernel/tracing 2>/dev/null || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
# The tests hand their own tc classifier to aya through a pin in bpffs.
mountpoint -q /sys/fs/bpf 2>/dev/null || mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
export PROPTEST_CASES="${PROPTEST_CASES:-256}"
cargo fmt --all -- --check
# Lints that keep the promises (undocumented unsafe, indexing or panics where untrusted bytes
# are read): warnings fail the run, for the host crates and the kernel program alike.
cargo clippy --workspace --all-targets -- -D warnings
(cd capture-ebpf && cargo +nightly clippy --target bpfel-unknown-none -Z build-std=core -- -D warnings)
cargo build --workspace --all-targets
# A short libFuzzer run of every decoder's fuzz target (longer: bash scripts/fuzz.sh 600).
if [ "${DROPSCOPE_SKIP_FUZZ:-0}" != 1 ]; then
  bash scripts/fuzz.sh "${FUZZ_SECS:-15}"
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast -- --test-threads=2 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
passed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^passed/) s += $i } END { print s + 0 }' "$log")
failed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^failed/) s += $i } END { print s + 0 }' "$log")
echo "tests: ${passed:-0} passed, ${failed:-0} failed"
if [ "$rc" -ne 0 ] || [ "${passed:-0}" -eq 0 ]; then
  exit 1
fi
