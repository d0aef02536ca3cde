//! `textparse`: runs one of dropscope's text parsers (engine::ingest) over a file, lines in,
//! records out, and nothing else (no pipeline, no file written): the reading speed of the
//! parser alone, for scripts/bench-text-replay.sh. Prints `records skipped seconds`.
//!
//! usage: textparse FILE monitor|hubble

use std::io::{BufRead, BufReader};
use std::process::exit;
use std::time::Instant;

use engine::cilium::tables::CiliumRelease;
use engine::ingest::{clean_line, hubble::HubbleParser, monitor_text::MonitorTextParser};
use engine::ingest::{Item, LineParser, Skips};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(kind)) = (args.first(), args.get(1)) else {
        eprintln!("usage: textparse FILE monitor|hubble");
        exit(2)
    };
    let mut parser: Box<dyn LineParser> = match kind.as_str() {
        "monitor" => Box::new(MonitorTextParser::new(CiliumRelease::default())),
        "hubble" => Box::new(HubbleParser::new(CiliumRelease::default())),
        _ => {
            eprintln!("usage: textparse FILE monitor|hubble");
            exit(2)
        }
    };
    let file = std::fs::File::open(path).unwrap_or_else(|e| {
        eprintln!("textparse: {path}: {e}");
        exit(1)
    });
    let start = Instant::now();
    let mut r = BufReader::with_capacity(1 << 16, file);
    let mut line = Vec::with_capacity(4096);
    let mut items: Vec<Item> = Vec::new();
    let mut skips = Skips::default();
    let mut records = 0u64;
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line).expect("read");
        if n == 0 {
            parser.finish(&mut items, &mut skips);
        } else {
            while line.last() == Some(&b'\n') {
                line.pop();
            }
            // As the replay source does: UTF-8 checked, lossy only when it is not.
            let text = match std::str::from_utf8(&line) {
                Ok(t) => std::borrow::Cow::Borrowed(t),
                Err(_) => String::from_utf8_lossy(&line),
            };
            parser.line(&clean_line(&text), &mut items, &mut skips);
        }
        records += items
            .iter()
            .filter(|i| matches!(i, Item::Record(_)))
            .count() as u64;
        items.clear();
        if n == 0 {
            break;
        }
    }
    println!(
        "{records} {} {:.4}",
        skips.total(),
        start.elapsed().as_secs_f64()
    );
}
