//! `dropscope report`: a known stats document drawn as HTML and SVGs (every series holds the
//! document's exact counts; the SVGs parse; nothing external), a capture file replayed into
//! the same report, bad inputs as one line with nothing written, and the page rendered by
//! headless Chromium (Debian's package, installed by scripts/setup.sh) to a screenshot that
//! is not blank.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::*;
use serde_json::{json, Value};

const REASONS: [&str; 3] = ["NO_SOCKET", "NETFILTER_DROP", "TCP_CSUM"];

/// A stats document with every member the report draws: 3 reasons over 6 seconds, 45 flow
/// rows on 3 interfaces (some with pods), a kernel table with 5 drop locations.
fn known_doc() -> Value {
    let t0: u64 = 1_795_000_000_000_000_000;
    let mut flows = Vec::new();
    let mut per_reason: BTreeMap<&str, u64> = BTreeMap::new();
    for i in 0..45u64 {
        let reason = REASONS[(i % 3) as usize];
        let packets = 1000 - i * 13;
        *per_reason.entry(reason).or_default() += packets;
        let mut row = json!({
            "family": "ipv4", "src": format!("10.1.{}.{}", i / 10, i % 10 + 1),
            "dst": "10.2.0.9", "proto": 17, "proto_name": "udp",
            "sport": 40000 + i, "dport": 9, "ifindex": 2 + i % 3,
            "ifname": format!("veth{}@netns40265322{}", i % 3, 80 + i % 3),
            "netns": 4026532280u64 + i % 3, "origin": "kernel",
            "reason": (i % 3) + 2, "reason_name": reason,
            "packets": packets, "bytes": packets * 60,
            "first": "2026-11-17T10:13:20.000000000Z", "last": "2026-11-17T10:13:25.000000000Z",
            "first_ns": t0, "last_ns": t0 + 5_000_000_000u64,
        });
        if i % 5 == 0 {
            row["pod"] = json!(format!("shop/web-{}", i % 2));
        }
        flows.push(row);
    }
    // The timeline: each reason's packets spread over 6 seconds, exactly.
    let mut points = Vec::new();
    for s in 0..6u64 {
        let mut counts = serde_json::Map::new();
        for (r, total) in &per_reason {
            let share = if s < 5 {
                total / 6
            } else {
                total - 5 * (total / 6)
            };
            if !(s == 2 && *r == "TCP_CSUM") {
                counts.insert(r.to_string(), json!(share));
            }
        }
        points.push(json!({"t_ns": t0 + s * 1_000_000_000, "counts": counts}));
    }
    // TCP_CSUM's second 2 moves to second 3 (a gap in its series).
    let moved = points[2]["counts"].as_object().unwrap().len();
    assert_eq!(moved, 2);
    let csum = per_reason["TCP_CSUM"] / 6;
    let c3 = points[3]["counts"]["TCP_CSUM"].as_u64().unwrap();
    points[3]["counts"]["TCP_CSUM"] = json!(c3 + csum);
    let pct: Vec<Value> = REASONS
        .iter()
        .enumerate()
        .map(|(i, r)| {
            json!({"origin": "kernel", "reason": i + 2, "name": r, "p50": 100 + i,
                   "p90": 200 + i, "p99": 300 + i, "max": 400 + i, "mean": 150.5})
        })
        .collect();
    let locs = [
        ("NO_SOCKET", "__udp4_lib_rcv+0x9a1", 5000u64),
        ("NO_SOCKET", "__udp6_lib_rcv+0x1f0", 7u64),
        ("NETFILTER_DROP", "nf_hook_slow+0xef", 4000),
        ("TCP_CSUM", "tcp_v4_rcv+0x123", 300),
        ("TCP_CSUM", "__udp4_lib_rcv+0x9a1", 11),
    ];
    let storm_flows: Vec<Value> = locs
        .iter()
        .map(|(r, sym, n)| {
            json!({"family": "ipv4", "src": "10.1.0.1", "dst": "10.2.0.9", "proto": 17,
                   "proto_name": "udp", "sport": 1, "dport": 9, "ifindex": 2, "ifname": "veth0",
                   "netns": 1, "reason": 2, "reason_name": r, "location": "0xffffffff81000000",
                   "symbol": sym, "packets": n, "bytes": n * 60, "copied": 0,
                   "first_ns": t0, "last_ns": t0})
        })
        .collect();
    let per_second: Vec<Value> = (0..3u64)
        .map(|s| {
            json!({"t_ns": t0 + (s + 1) * 1_000_000_000, "dt_ns": 1_000_000_000u64,
                   "drops": {"NO_SOCKET": 1000 + s, "NETFILTER_DROP": 2000 + s}})
        })
        .collect();
    let ledger: Vec<Value> = per_reason
        .iter()
        .map(|(r, n)| {
            json!({"origin": "kernel", "reason": 2, "name": r, "observed": n, "filtered": 0,
                   "filtered_user": 0, "in_table": n, "table_full": 0, "not_copied": 0,
                   "lost_ring": 0, "delivered": n, "received": n, "skipped": 0, "processed": n})
        })
        .collect();
    json!({
        "schema": "dropscope.stats/1",
        "source": "tp_btf/kfree_skb",
        "started": "2026-11-17T10:13:20.000000000Z",
        "elapsed_s": 6.0,
        "stopped_by": "duration elapsed",
        "accounting": {"reasons": ledger, "totals": {"observed": 1, "lost_ring": 3, "table_full": 0,
                       "not_copied": 0}, "stage_losses": [{"stage": "source", "kind": "malformed", "count": 2}],
                       "mismatches": [], "reconciled": true},
        "flows": flows,
        "flow_table": {"entries": 45, "rows_written": 45, "rows_omitted": 0},
        "timeline": {"bucket_ns": 1_000_000_000u64, "points": points, "rate_percentiles": pct},
        "storm": {"flows": storm_flows, "per_second": per_second, "rate_percentiles": [],
                  "recursion_misses": 0},
        "run": {"command": "capture", "input": "kernel", "expression": "udp port 9",
                "selectors": ["--reason NO_SOCKET"], "kernel": "6.1.0-test", "hostname": "node-a"},
        "notes": ["a <note> & more"],
    })
}

fn svg_doc(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// data-count of the marks under each `g.series`, by data-reason: (total attribute, sum).
fn series_sums(text: &str) -> BTreeMap<String, (u64, u64)> {
    let doc = roxmltree::Document::parse(text).expect("SVG parses");
    let mut out = BTreeMap::new();
    for g in doc
        .descendants()
        .filter(|n| n.has_tag_name("g") && n.attribute("class") == Some("series"))
    {
        let reason = g.attribute("data-reason").unwrap().to_string();
        let total: u64 = g
            .attribute("data-total")
            .map(|t| t.parse().unwrap())
            .unwrap_or(0);
        let sum: u64 = g
            .descendants()
            .filter_map(|n| n.attribute("data-count"))
            .map(|c| c.parse::<u64>().unwrap())
            .sum();
        out.insert(reason, (total, sum));
    }
    out
}

#[test]
fn every_plot_holds_the_documents_exact_counts() {
    let dir = TempDir::new("report");
    let input = dir.path("known.json");
    let doc = known_doc();
    std::fs::write(&input, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    let html = dir.path("r.html");
    let svgs = dir.path("svg");
    let out = run_ok(
        dropscope()
            .arg("report")
            .arg(&input)
            .arg("-o")
            .arg(&html)
            .arg("--svg")
            .arg(&svgs),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("45 flow rows read"), "{err}");

    // The timeline: each reason's bars add up to its points, exactly.
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for p in doc["timeline"]["points"].as_array().unwrap() {
        for (r, n) in p["counts"].as_object().unwrap() {
            *want.entry(r.clone()).or_default() += n.as_u64().unwrap();
        }
    }
    let got = series_sums(&svg_doc(&svgs.join("timeline.svg")));
    assert_eq!(got.len(), 3);
    for (r, n) in &want {
        assert_eq!(got[r], (*n, *n), "timeline {r}");
    }
    // The kernel table's series.
    let got = series_sums(&svg_doc(&svgs.join("kernel-timeline.svg")));
    assert_eq!(got["NO_SOCKET"], (3003, 3003));
    assert_eq!(got["NETFILTER_DROP"], (6003, 6003));
    // Heatmap: reason x location cells from storm.flows.
    let heat = svg_doc(&svgs.join("heatmap.svg"));
    let got = series_sums(&heat);
    assert_eq!(got["NO_SOCKET"], (5007, 5007));
    assert_eq!(got["NETFILTER_DROP"], (4000, 4000));
    assert_eq!(got["TCP_CSUM"], (311, 311));
    let hx = roxmltree::Document::parse(&heat).unwrap();
    let cell = |reason: &str, loc: &str| -> Option<u64> {
        hx.descendants()
            .filter(|n| n.attribute("data-reason") == Some(reason))
            .flat_map(|g| g.descendants())
            .find(|n| n.attribute("data-location") == Some(loc))
            .map(|n| n.attribute("data-count").unwrap().parse().unwrap())
    };
    assert_eq!(cell("NO_SOCKET", "__udp4_lib_rcv+0x9a1"), Some(5000));
    assert_eq!(cell("TCP_CSUM", "__udp4_lib_rcv+0x9a1"), Some(11));
    assert_eq!(cell("NETFILTER_DROP", "tcp_v4_rcv+0x123"), None);
    // Top flows: the 20 rows with most packets, in order, exact.
    let top = roxmltree::Document::parse(&svg_doc(&svgs.join("top-flows.svg")))
        .unwrap()
        .descendants()
        .filter(|n| n.attribute("class") == Some("bar"))
        .map(|n| {
            (
                n.attribute("data-reason").unwrap().to_string(),
                n.attribute("data-count").unwrap().parse::<u64>().unwrap(),
            )
        })
        .collect::<Vec<_>>();
    let mut rows: Vec<(String, u64)> = doc["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["reason_name"].as_str().unwrap().to_string(),
                f["packets"].as_u64().unwrap(),
            )
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    assert_eq!(top, rows[..20].to_vec());
    // Interfaces: each interface's total and its reasons.
    let ifs = svg_doc(&svgs.join("interfaces.svg"));
    let ix = roxmltree::Document::parse(&ifs).unwrap();
    let mut want_if: BTreeMap<String, u64> = BTreeMap::new();
    for f in doc["flows"].as_array().unwrap() {
        *want_if
            .entry(f["ifname"].as_str().unwrap().to_string())
            .or_default() += f["packets"].as_u64().unwrap();
    }
    let got_if: BTreeMap<String, u64> = ix
        .descendants()
        .filter(|n| n.attribute("class") == Some("key"))
        .map(|g| {
            let sum: u64 = g
                .descendants()
                .filter_map(|n| n.attribute("data-count"))
                .map(|c| c.parse::<u64>().unwrap())
                .sum();
            assert_eq!(
                g.attribute("data-total").unwrap().parse::<u64>().unwrap(),
                sum
            );
            (g.attribute("data-key").unwrap().to_string(), sum)
        })
        .collect();
    assert_eq!(got_if, want_if);
    // Pods.
    let pods = series_sums(&svg_doc(&svgs.join("pods.svg")));
    assert!(pods.is_empty());
    let px = svg_doc(&svgs.join("pods.svg"));
    assert!(px.contains("data-key=\"shop/web-0\""), "{px}");
    // Percentiles, as in the document.
    let pc = svg_doc(&svgs.join("percentiles.svg"));
    let pd = roxmltree::Document::parse(&pc).unwrap();
    for (i, r) in REASONS.iter().enumerate() {
        let g = pd
            .descendants()
            .find(|n| n.attribute("data-reason") == Some(r))
            .unwrap();
        let q: Vec<u64> = g
            .descendants()
            .filter_map(|n| n.attribute("data-count"))
            .map(|c| c.parse().unwrap())
            .collect();
        let i = i as u64;
        assert_eq!(q, vec![100 + i, 200 + i, 300 + i, 400 + i], "{r}");
    }

    // The page: every plot inline, the facts, the ledger, escaped text, nothing external.
    let page = std::fs::read_to_string(&html).unwrap();
    for stem in [
        "timeline",
        "kernel-timeline",
        "top-flows",
        "heatmap",
        "interfaces",
        "pods",
        "percentiles",
        "kernel-percentiles",
    ] {
        let svg = svg_doc(&svgs.join(format!("{stem}.svg")));
        assert!(page.contains(&svg), "{stem} is not inline in the page");
    }
    for needle in [
        "udp port 9",
        "--reason NO_SOCKET",
        "6.1.0-test",
        "node-a",
        "a &lt;note&gt; &amp; more",
        "reconciled",
        "malformed",
        "<table class=\"ledger\">",
    ] {
        assert!(page.contains(needle), "{needle} not in the page");
    }
    for external in ["<script", "<link", "src=", "url(", "@import", "href="] {
        assert!(
            !page.contains(external),
            "the page refers to something: {external}"
        );
    }
    // Only the SVG namespace is a URL.
    assert_eq!(
        page.matches("http").count(),
        page.matches("http://www.w3.org/2000/svg").count()
    );
    assert!(!dir.path("r.html.tmp").exists());
}

#[test]
fn a_capture_file_is_replayed_into_the_report() {
    let dir = TempDir::new("report-cap");
    let stats = dir.path("s.json");
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/pcap/ours.pcapng");
    run_ok(
        dropscope()
            .arg("replay")
            .arg(&file)
            .arg("-q")
            .arg("--stats-json")
            .arg(&stats),
    );
    let doc = read_json(&stats);
    let html = dir.path("r.html");
    let svgs = dir.path("svg");
    run_ok(
        dropscope()
            .arg("report")
            .arg(&file)
            .arg("-o")
            .arg(&html)
            .arg("--svg")
            .arg(&svgs),
    );
    // The replay's processed events per reason are the timeline's series.
    let got = series_sums(&svg_doc(&svgs.join("timeline.svg")));
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for r in doc["accounting"]["reasons"].as_array().unwrap() {
        let n = r["processed"].as_u64().unwrap();
        if n > 0 {
            *want
                .entry(r["name"].as_str().unwrap().to_string())
                .or_default() += n;
        }
    }
    assert!(!want.is_empty());
    assert_eq!(
        got.iter()
            .map(|(r, (t, _))| (r.clone(), *t))
            .collect::<BTreeMap<_, _>>(),
        want
    );
    assert!(got.values().all(|(t, s)| t == s));
    // The stats document the replay wrote has the same timeline.
    let mut tl: BTreeMap<String, u64> = BTreeMap::new();
    for p in doc["timeline"]["points"].as_array().unwrap() {
        for (r, n) in p["counts"].as_object().unwrap() {
            *tl.entry(r.clone()).or_default() += n.as_u64().unwrap();
        }
    }
    assert_eq!(tl, want);
    assert_eq!(doc["run"]["command"], "replay");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("ours.pcapng"));
}

#[test]
fn bad_inputs_are_one_line_and_write_nothing() {
    let dir = TempDir::new("report-bad");
    let out = dir.path("r.html");
    let o = out.to_str().unwrap();
    let cases: [(&str, &str, &str); 4] = [
        (
            "trunc.json",
            "{\n  \"flows\": [\n    {\"packets\": 1},\n",
            "ends",
        ),
        (
            "other.json",
            "{\n  \"schema\": \"something/2\"\n}\n",
            "not a dropscope stats document",
        ),
        (
            "badrow.json",
            "{\n  \"flows\": [{\"packets\": \"many\"}]\n}\n",
            "row 0 of flows[]",
        ),
        ("junk.bin", "this is not a capture", "junk.bin"),
    ];
    for (name, text, needle) in cases {
        let p = dir.path(name);
        std::fs::write(&p, text).unwrap();
        fails_with(&["report", p.to_str().unwrap(), "-o", o], &[needle]);
        assert!(!out.exists(), "{name}");
        assert!(!dir.path("r.html.tmp").exists(), "{name}");
    }
    fails_with(
        &["report", "/nonexistent/x.json", "-o", o],
        &["/nonexistent/x.json"],
    );
}

/// Distinct colours and the share of pixels that are not white, of an RGB(A) PNG.
fn png_facts(path: &Path) -> (u32, u32, usize, f64) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    let ch = info.color_type.samples();
    assert!(ch >= 3, "colour type {:?}", info.color_type);
    let px = &buf[..info.buffer_size()];
    let mut colours = std::collections::HashSet::new();
    let mut not_white = 0usize;
    let n = px.len() / ch;
    for p in px.chunks(ch) {
        colours.insert((p[0], p[1], p[2]));
        if p[0] < 245 || p[1] < 245 || p[2] < 245 {
            not_white += 1;
        }
    }
    (
        info.width,
        info.height,
        colours.len(),
        not_white as f64 / n as f64,
    )
}

#[test]
fn chromium_renders_the_page() {
    let Some(chromium) = ["chromium", "chromium-browser"].iter().find(|c| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!(
            "SKIPPED: chromium is not installed (scripts/setup.sh installs Debian's `chromium`)"
        );
        return;
    };
    let dir = TempDir::new("report-chromium");
    let input = dir.path("known.json");
    std::fs::write(&input, serde_json::to_string_pretty(&known_doc()).unwrap()).unwrap();
    let html = dir.path("r.html");
    run_ok(dropscope().arg("report").arg(&input).arg("-o").arg(&html));
    let png_path = dir.path("out.png");
    let profile = dir.path("profile");
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png_path.display()))
        .arg("--window-size=1280,2000")
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(
        png_path.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (w, h, colours, ink) = png_facts(&png_path);
    assert_eq!((w, h), (1280, 2000));
    // Text, bars in several reasons' colours, the heatmap's shades: far from blank.
    assert!(colours > 200, "{colours} distinct colours");
    assert!(ink > 0.05, "{:.3} of the pixels are not white", ink);
    // The reasons' colours are there (palette's first three, as the bars draw them).
    let dec = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png_path).unwrap(),
    ));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    let ch = info.color_type.samples();
    let has = |rgb: (u8, u8, u8)| {
        buf[..info.buffer_size()]
            .chunks(ch)
            .filter(|p| (p[0], p[1], p[2]) == rgb)
            .count()
            > 500
    };
    assert!(
        has((0x4e, 0x79, 0xa7)),
        "the first reason's colour is missing"
    );
    assert!(
        has((0xf2, 0x8e, 0x2b)),
        "the second reason's colour is missing"
    );
}
