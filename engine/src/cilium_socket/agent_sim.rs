//! Builds testdata/cilium-agent-sim (a Go program that writes Cilium's monitor stream with
//! Go's own `encoding/gob`) for tests and benchmarks. Offline: no modules, no proxy.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the simulator into `dir`; `Err` says why (e.g. `go` is not installed).
pub fn build(dir: &Path) -> Result<PathBuf, String> {
    if Command::new("go").arg("version").output().is_err() {
        return Err("`go` is not installed (scripts/setup.sh installs golang-go)".into());
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/cilium-agent-sim/main.go");
    let bin = dir.join("cilium-agent-sim");
    let out = Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .output()
        .map_err(|e| format!("running go build: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "go build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(bin)
}
