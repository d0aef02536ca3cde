//! `gentext`: writes a deterministic text input for the text-replay benchmark
//! (scripts/bench-text-replay.sh): `cilium-dbg monitor -vv` output of N drop notifications,
//! each with the hex dump of its packet (dropscope's own monitor formatter writes it, as the
//! agent's CLI would), or N Hubble flow lines (`hubble observe -o jsonpb` shape).
//!
//! usage: gentext OUT --kind monitor-vv|hubble [--records N]

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::exit;

use dropscope_benches::textgen::{hubble_line, MonitorVv};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        eprintln!("usage: gentext OUT --kind monitor-vv|hubble [--records N]");
        exit(2)
    };
    let Some(out) = args.first() else { usage() };
    let mut kind = String::new();
    let mut records = 100_000usize;
    let mut i = 1;
    while i < args.len() {
        match (args[i].as_str(), args.get(i + 1)) {
            ("--kind", Some(k)) => kind = k.clone(),
            ("--records", Some(n)) => records = n.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
        i += 2;
    }
    let mut w = BufWriter::new(File::create(out).unwrap_or_else(|e| {
        eprintln!("gentext: {out}: {e}");
        exit(1)
    }));
    let mut s = String::new();
    let monitor = MonitorVv::default();
    let write: &dyn Fn(&mut String, usize) = match kind.as_str() {
        "monitor-vv" => &|s, i| monitor.record(s, i),
        "hubble" => &hubble_line,
        _ => usage(),
    };
    for i in 0..records {
        s.clear();
        write(&mut s, i);
        w.write_all(s.as_bytes()).expect("write");
    }
    w.flush().expect("flush");
}
