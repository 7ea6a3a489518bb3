//! What a sampler (or anything writing to the HLS folder) leaves for vitrine to read: ffmpeg's
//! segment list lines, the playlist's origin tag, segment names asked for in URLs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitrine_connectors::hls::{is_segment_name, origin_of, parse_line};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for line in text.lines() {
        if let Some((name, start, end)) = parse_line(line) {
            assert!(!name.contains('/'), "a segment name never leaves the folder: {name}");
            assert!(start >= 0.0 && end >= start);
        }
        if is_segment_name(line) {
            assert!(!line.contains('/') && !line.contains(".."));
        }
    }
    let _ = origin_of(text);
});
