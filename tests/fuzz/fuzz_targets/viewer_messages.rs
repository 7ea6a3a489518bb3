//! What a hostile viewer controls: the stream id and last event id of its URL, and the text
//! messages it sends. The hub answers or refuses, never crashes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitrine_connectors::hub::Hub;
use vitrine_schemas::protocol::ClientMessage;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = serde_json::from_str::<ClientMessage>(&text);
    let hub = Hub::open(["shop1".to_string()], 16);
    let (stream, last_event_id) = text.split_once('\n').unwrap_or((&text, ""));
    let _ = hub.has_stream(stream);
    let _ = hub.subscribe(stream);
    let _ = hub.resume("shop1", last_event_id);
    let _ = hub.resume(stream, last_event_id);
});
