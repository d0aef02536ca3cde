//! Feeds arbitrary bytes to the capture-file reader (`dropscope replay`) and the comment
//! parser: neither may panic, loop forever or allocate without bound.
#![no_main]

use engine::comment::parse_comment;
use engine::event::Batch;
use engine::pcap::FileSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_comment(text);
    }
    let Ok(mut source) = FileSource::from_reader("fuzz", Box::new(std::io::Cursor::new(data.to_vec()))) else {
        return;
    };
    let mut batch = Batch::default();
    // Every call either consumes input or ends the read: the loop is bounded by the input.
    while let Ok(n) = source.next_batch(&mut batch, 7) {
        if n == 0 {
            break;
        }
        for e in &batch.events {
            assert!(e.data.len() <= data.len());
        }
        batch.events.clear();
    }
    let stats = source.stats();
    assert!(stats.truncated_file <= 1);
});
