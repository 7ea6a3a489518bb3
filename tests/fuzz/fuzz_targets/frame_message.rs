//! A Kafka frame message from any producer: key, payload and headers, as the frames source
//! reads them. Input: parts split at 0x00; the first two are the key and the payload, each
//! further part is a header whose first byte picks its name (one of vitrine's, or another).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdkafka::message::{Header, OwnedHeaders};
use vitrine_connectors::kafka::frames::frame_from_message;
use vitrine_connectors::kafka::headers as h;
use vitrine_schemas::{MAX_SEQ, MAX_TIME_MS};

const NAMES: [&str; 9] =
    [h::STREAM_ID, h::SEQ, h::PTS_MS, h::CAPTURED_AT_MS, h::WIDTH, h::HEIGHT, h::CONTENT_TYPE, h::FRAME_URL, "other"];

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0);
    let key = parts.next().unwrap_or_default();
    let payload = parts.next().unwrap_or_default();
    let mut headers = OwnedHeaders::new();
    for part in parts {
        let Some((pick, value)) = part.split_first() else { continue };
        headers = headers.insert(Header { key: NAMES[*pick as usize % NAMES.len()], value: Some(value) });
    }
    // No folder for frames sent by reference: a reference must be refused, never read.
    match frame_from_message(Some(key), Some(payload), Some(&headers), "fuzz/0@0".into(), None) {
        Ok(frame) => {
            assert!(frame.seq <= MAX_SEQ, "seq {} out of range", frame.seq);
            assert!(frame.pts_ms.unsigned_abs() <= MAX_TIME_MS as u64);
            assert!(frame.captured_at_ms.unsigned_abs() <= MAX_TIME_MS as u64);
            assert!(!frame.stream_id.is_empty());
            assert_eq!(frame.jpeg, payload);
        }
        Err(letter) => {
            assert!(!letter.reason.is_empty());
            assert_eq!(letter.payload, payload, "a dead letter keeps the bytes it was sent");
        }
    }
});
