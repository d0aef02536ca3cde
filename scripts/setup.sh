#!/usr/bin/env bash
# Installs everything dropscope needs on a fresh machine of this kind (Debian 12, root).
# Idempotent: each step is skipped when its result is already there.
#   - Debian packages: tshark, tcpdump, nftables, iptables, iproute2, bpftrace, bpftool,
#     golang-go, hyperfine, prometheus (with promtool; cli/tests/it/serve.rs starts its own
#     server on loopback; the package's own service is not used), chromium (renders
#     `dropscope report`'s HTML headless in its test), tmux (drives `dropscope top`'s full
#     screen in cli/tests/it/top.rs)
#   - nightly rust-src (for -Z build-std=core, used to build the eBPF object)
#   - bpf-linker 0.13.0, linked against the nightly toolchain's own LLVM
#     (Debian's LLVM is too old for it; see docs/engineering.md)
#   - cargo-fuzz (libFuzzer targets of every decoder, scripts/fuzz.sh)
#   - kubernetes-validate (PyPI, pinned), in its own venv: cli/tests/it/deploy.rs validates
#     deploy/kubernetes/ against the Kubernetes schemas the package carries (no network)
#   - tracefs mounted at /sys/kernel/tracing (the tracepoint fallback reads its format files)
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

need_pkgs=()
for p in tshark tcpdump nft iptables ip bpftrace bpftool go hyperfine prometheus promtool chromium tmux; do
  command -v "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
# libpcap's filter compiler (pcap_compile), linked by the engine for capture expressions.
[ -e /usr/include/pcap/pcap.h ] || need_pkgs+=(libpcap-dev)
# A Python 3 that can make a venv (for kubernetes-validate below).
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_pkgs+=(python3-venv)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "installing Debian packages (missing: ${need_pkgs[*]})"
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends \
    tshark tcpdump nftables iptables iproute2 bpftrace bpftool golang-go hyperfine libpcap-dev \
    chromium python3-venv prometheus tmux >/dev/null
fi

if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
  log "adding rust-src to the nightly toolchain"
  rustup component add rust-src --toolchain nightly
fi
# scripts/test.sh lints the host crates (the default toolchain) and the kernel program
# (nightly) with clippy.
if ! rustup component list --installed 2>/dev/null | grep -q '^clippy'; then
  log "adding clippy to the default toolchain"
  rustup component add clippy
fi
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^clippy'; then
  log "adding clippy to the nightly toolchain"
  rustup component add clippy --toolchain nightly
fi

if ! bpf-linker --version >/dev/null 2>&1; then
  log "building bpf-linker 0.13.0 against the nightly toolchain's LLVM (about a minute)"
  L="$(rustc +nightly --print sysroot)/lib"
  LLVM_SO="$(basename "$(ls "$L"/libLLVM-*-rust-*.so | head -n1)")"
  LLVM_MAJOR="$(echo "$LLVM_SO" | sed -E 's/libLLVM-([0-9]+)-.*/\1/')"
  RUSTFLAGS="-L $L -C link-arg=-l:$LLVM_SO -C link-arg=-Wl,-rpath,$L" \
    cargo +nightly install bpf-linker --version 0.13.0 --locked --force \
      --no-default-features --features "llvm-$LLVM_MAJOR,no-llvm-linking"
fi
bpf-linker --version >&2

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz (for scripts/fuzz.sh)"
  cargo install cargo-fuzz --locked
fi

# kubernetes-validate: a venv of its own (neither Debian's Python, which refuses pip
# installs, nor pyenv's is changed), linked into /usr/local/bin. Its schemas are inside the
# package, so the deploy test needs no network once this is installed.
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBERNETES_VALIDATE_VENV=/opt/dropscope-tools/kubernetes-validate
if [ "$(kubernetes-validate --version 2>/dev/null)" != "$KUBERNETES_VALIDATE_VERSION" ]; then
  log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $KUBERNETES_VALIDATE_VENV"
  rm -rf "$KUBERNETES_VALIDATE_VENV"
  python3 -m venv "$KUBERNETES_VALIDATE_VENV"
  "$KUBERNETES_VALIDATE_VENV/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  ln -sf "$KUBERNETES_VALIDATE_VENV/bin/kubernetes-validate" /usr/local/bin/kubernetes-validate
fi
log "kubernetes-validate $(kubernetes-validate --version)"

if ! mountpoint -q /sys/kernel/tracing 2>/dev/null; then
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || log "could not mount tracefs (tracepoint fallback unavailable)"
fi
log "done"
