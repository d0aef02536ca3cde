//! `textparse`: reads a file with dropscope's text source (engine::ingest::source: chunks of
//! lines parsed on every CPU, put back in order, records made into events) and nothing else:
//! no decoding, flow table or file written, the events are counted and dropped. The reading
//! speed of a text input, for scripts/bench-text-replay.sh. Prints `records skipped seconds`.
//!
//! usage: textparse FILE monitor|hubble

use std::process::exit;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use engine::cilium::tables::CiliumRelease;
use engine::ingest::source::{text_source, TextFormat};

/// The allocator the `dropscope` binary uses: this measures its reading as shipped.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Huge pages off as the `dropscope` binary has them (see `engine::memory`).
#[used]
#[link_section = ".init_array"]
static NO_HUGE_PAGES: extern "C" fn() = engine::memory::no_huge_pages_unless_asked;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(kind)) = (args.first(), args.get(1)) else {
        eprintln!("usage: textparse FILE monitor|hubble");
        exit(2)
    };
    let format = match kind.as_str() {
        "monitor" => TextFormat::MonitorText,
        "hubble" => TextFormat::Hubble,
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
    let source = text_source(
        Box::new(std::io::BufReader::with_capacity(1 << 16, file)),
        format,
        CiliumRelease::default(),
        path.clone(),
    );
    let (tx, rx) = crossbeam_channel::bounded(4);
    let counter = std::thread::spawn(move || {
        rx.iter()
            .map(|b: engine::event::Batch| b.events.len() as u64)
            .sum::<u64>()
    });
    let stop = AtomicBool::new(false);
    let report = source(&tx, &stop).unwrap_or_else(|e| {
        eprintln!("textparse: {e:#}");
        exit(1)
    });
    drop(tx);
    let records = counter.join().expect("counter thread");
    let skipped: u64 = report.losses.iter().map(|l| l.count).sum();
    println!("{records} {skipped} {:.4}", start.elapsed().as_secs_f64());
}
