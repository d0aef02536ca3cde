//! Feeds arbitrary bytes, line by line, to every text-input parser (`cilium monitor` text
//! and `-j` JSON, Hubble flow JSON through sonic-rs, dropscope's own JSON lines): none may
//! panic, and a parser that says it is idle has nothing left to finish. Hubble lines read
//! one after another by one parser (which remembers member names, the last minute, reason
//! and pod names from line to line) read as each line does through a parser of its own.
#![no_main]

use engine::cilium::tables::CiliumRelease;
use engine::ingest::hubble::HubbleParser;
use engine::ingest::monitor_json::MonitorJsonParser;
use engine::ingest::monitor_text::MonitorTextParser;
use engine::ingest::own_json::OwnJsonParser;
use engine::ingest::{clean_line, LineParser, Skips};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let release = CiliumRelease::default();
    let parsers: [Box<dyn LineParser>; 4] = [
        Box::new(MonitorTextParser::new(release)),
        Box::new(MonitorJsonParser::new(release)),
        Box::new(HubbleParser::new(release)),
        Box::new(OwnJsonParser::new()),
    ];
    for mut p in parsers {
        let (mut items, mut skips) = (Vec::new(), Skips::default());
        for line in text.split('\n') {
            p.line(&clean_line(line), &mut items, &mut skips);
        }
        let idle = p.is_idle();
        let before = items.len() as u64 + skips.total();
        p.finish(&mut items, &mut skips);
        if idle {
            assert_eq!(items.len() as u64 + skips.total(), before);
        }
    }
    let (mut one, mut one_skips) = (Vec::new(), Skips::default());
    let (mut alone, mut alone_skips) = (Vec::new(), Skips::default());
    let mut p = HubbleParser::new(release);
    for line in text.split('\n') {
        let line = clean_line(line);
        p.line(&line, &mut one, &mut one_skips);
        HubbleParser::new(release).line(&line, &mut alone, &mut alone_skips);
    }
    assert_eq!(one, alone);
    assert_eq!(one_skips, alone_skips);
});
