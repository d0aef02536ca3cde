//! Builds the eBPF object (capture-ebpf, for bpfel-unknown-none) with aya-build and puts it
//! at `$OUT_DIR/capture-ebpf`, where `engine::kernel::loader::object()` includes it.
//!
//! `AYA_BUILD_SKIP=1` writes an empty placeholder instead, so the crate builds on machines
//! without the nightly toolchain or bpf-linker; loading then fails with a clear error.

use std::{env, fs, path::PathBuf};

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let object = out_dir.join("capture-ebpf");
    let ebpf_dir = manifest_dir.join("../capture-ebpf").canonicalize()?;
    let common_dir = manifest_dir.join("../capture-common").canonicalize()?;

    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    println!("cargo:rerun-if-changed={}", common_dir.display());
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        println!("cargo:warning=AYA_BUILD_SKIP is set: building without the eBPF object");
        fs::write(&object, [])?;
        return Ok(());
    }

    // The workspace release profile is tuned for the host; the eBPF object needs these.
    // They reach only the nested cargo that aya-build runs (its own target dir).
    for (key, value) in [
        ("CARGO_PROFILE_RELEASE_PANIC", "abort"),
        ("CARGO_PROFILE_RELEASE_LTO", "true"),
        ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1"),
        ("CARGO_PROFILE_RELEASE_DEBUG", "2"),
        ("CARGO_PROFILE_RELEASE_OPT_LEVEL", "3"),
        // aya-build turns every stderr line of the nested cargo into a warning: keep it to
        // real diagnostics (compiler messages still arrive through its JSON output).
        ("CARGO_TERM_QUIET", "true"),
    ] {
        // Build scripts are single-threaded here, so changing the environment is sound.
        env::set_var(key, value);
    }
    let root_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "capture-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )?;
    if !object.exists() {
        anyhow::bail!("aya-build did not produce {}", object.display());
    }
    Ok(())
}
