#!/usr/bin/env bash
# Runs every cargo-fuzz target (libFuzzer, nightly) for SECS seconds each, seeded from
# fuzz/seeds/<target>/. Installs cargo-fuzz if missing. Exits non-zero on any crash.
#   bash scripts/fuzz.sh [SECS]        (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked >&2
fi
for t in $(cargo +nightly fuzz list); do
  corpus="target/fuzz-corpus/$t"
  mkdir -p "$corpus"
  seeds=()
  [ -d "fuzz/seeds/$t" ] && seeds=("fuzz/seeds/$t")
  echo "fuzz: $t for ${secs}s" >&2
  log="target/fuzz-$t.log"
  rc=0
  cargo +nightly fuzz run "$t" "$corpus" "${seeds[@]}" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1 || rc=$?
  grep -E "^Done|ERROR|panicked|SUMMARY" "$log" >&2 || true
  if [ "$rc" -ne 0 ]; then
    echo "fuzz: $t failed (exit $rc); see $log" >&2
    tail -40 "$log" >&2
    exit 1
  fi
done
