//! `dropscope doctor` on this machine: as root every capture check passes, including a real
//! load and attach of the program; without privileges (setpriv to nobody) the capabilities
//! and the attach check fail, naming the missing capabilities, and the exit status says so.

use std::process::Command;

use crate::common::*;

#[test]
fn doctor_passes_as_root_and_names_missing_capabilities_otherwise() {
    require_root!();
    let out = run_ok(dropscope().arg("doctor"));
    let text = String::from_utf8_lossy(&out.stdout);
    for name in ["kernel", "btf", "capabilities", "attach"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("OK") && l.contains(&format!(" {name} "))),
            "{name}: {text}"
        );
    }
    assert!(
        text.contains("kernel capture will work: 0 failed"),
        "{text}"
    );
    let json = run_ok(dropscope().args(["doctor", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let attach = v
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "attach")
        .expect("attach check");
    assert_eq!(attach["status"], "ok");

    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("SKIPPED the unprivileged half: no setpriv");
        return;
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_dropscope"))
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL  capabilities") && l.contains("CAP_BPF")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("FAIL  attach")),
        "{text}"
    );
    assert!(text.contains("kernel capture will NOT work"), "{text}");
}
