//! Commands that need no privileges: `reasons`, `--help`.

use crate::common::*;

#[test]
fn reasons_lists_kernel_names_from_btf_and_every_cilium_code() {
    let out = run_ok(dropscope().args(["reasons", "--json"]));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let find = |origin: &str, code: u64| {
        rows.iter()
            .find(|r| r["origin"] == origin && r["code"] == code)
            .cloned()
    };
    let k = find("kernel", 3).expect("kernel reason 3");
    assert_eq!(k["name"], "NO_SOCKET");
    let c = find("cilium", 133).expect("cilium 133");
    assert_eq!(
        (c["name"].as_str(), c["monitor"].as_str()),
        (Some("DROP_POLICY"), Some("Policy denied"))
    );
    // 159 is emitted by the datapath but has no monitor string.
    assert_eq!(
        find("cilium", 159).expect("159")["monitor"],
        serde_json::Value::Null
    );
    let cilium_rows = rows.iter().filter(|r| r["origin"] == "cilium").count();
    let tsv = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../engine/data/cilium/drop_reasons.tsv"
    ))
    .unwrap();
    let tsv_rows = tsv
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count();
    assert_eq!(cilium_rows, tsv_rows, "every Cilium code of the table");
    let text =
        String::from_utf8(run_ok(dropscope().args(["reasons", "--kernel-only"])).stdout).unwrap();
    assert!(text.contains("NO_SOCKET") && !text.contains("Policy denied"));
}

#[test]
fn help_teaches_with_examples() {
    let out = run_ok(dropscope().args(["capture", "--help"]));
    let h = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Examples:",
        "-w drops.pcapng",
        "frame.comment contains",
        "CAP_BPF",
        "--stats-json",
        "--snaplen",
    ] {
        assert!(h.contains(needle), "capture --help lacks {needle:?}");
    }
}
