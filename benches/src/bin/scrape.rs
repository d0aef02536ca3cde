//! `scrape`: GETs a URL path from a loopback HTTP server at a fixed interval and reports the
//! latency of each whole answer (connect to last byte) as HdrHistogram percentiles, for
//! scripts/bench-serve.sh (`/metrics` of `dropscope serve` during a flood).
//!
//! Output: one JSON object on stdout: {"n", "errors", "p50_us", "p90_us", "p99_us",
//! "max_us", "bytes"}.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::exit;
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: scrape --port PORT [--path /metrics] [--interval-ms 100] --duration SECS";

fn main() {
    let mut port = None;
    let mut path = "/metrics".to_string();
    let mut interval = Duration::from_millis(100);
    let mut duration = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next();
        match (a.as_str(), v) {
            ("--port", Some(v)) => port = v.parse::<u16>().ok(),
            ("--path", Some(v)) => path = v,
            ("--interval-ms", Some(v)) => {
                interval = Duration::from_millis(v.parse().unwrap_or_else(|_| usage()))
            }
            ("--duration", Some(v)) => {
                duration = v.parse::<f64>().ok().map(Duration::from_secs_f64)
            }
            _ => usage(),
        }
    }
    let (Some(port), Some(duration)) = (port, duration) else {
        usage()
    };
    let mut h =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|e| {
            eprintln!("scrape: {e}");
            exit(2)
        });
    let mut errors = 0u64;
    let mut bytes = 0usize;
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let t = Instant::now();
        match get(port, &path) {
            Ok(n) => {
                bytes = n;
                let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                let _ = h.record(us.max(1));
            }
            Err(_) => errors += 1,
        }
        if let Some(rest) = interval.checked_sub(t.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    println!(
        "{{\"n\": {}, \"errors\": {errors}, \"p50_us\": {}, \"p90_us\": {}, \"p99_us\": {}, \"max_us\": {}, \"bytes\": {bytes}}}",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.max()
    );
}

fn usage() -> ! {
    eprintln!("{USAGE}");
    exit(2)
}

/// One GET (Connection: close); the bytes of the answer, or an error unless it is a 200.
fn get(port: u16, path: &str) -> std::io::Result<usize> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = Vec::with_capacity(1 << 16);
    s.read_to_end(&mut out)?;
    if !out.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other("not 200"));
    }
    Ok(out.len())
}
