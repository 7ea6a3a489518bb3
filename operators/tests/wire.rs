//! Records that cross timely processes in a cluster travel as bincode (timely's wire format).
//! bincode cannot skip a field, so every record the dataflow exchanges must come back whole:
//! a `skip_serializing_if` or `skip` would corrupt or drop data only once the job is a cluster.

use serde::de::DeserializeOwned;
use serde::Serialize;
use vitrine_operators::{Emitted, OnScreen, ScreenNote, ScreenStats};
use vitrine_schemas::{
    BBox, CatalogItem, Cause, Detection, EventKind, Exposure, Frame, FrameDetections, Money, ProductEvent,
    SourcePosition,
};

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: T) {
    let bytes = bincode::serialize(&value).expect("encodes");
    let back: T = bincode::deserialize(&bytes).unwrap_or_else(|e| panic!("{value:?} does not decode: {e}"));
    assert_eq!(back, value);
}

fn detection(track_id: Option<u64>) -> Detection {
    Detection {
        label: "cup".into(),
        class_id: 41,
        score: 0.9,
        bbox: BBox { x0: 0.1, y0: 0.2, x1: 0.5, y1: 0.6 },
        track_id,
        embedding: None,
        product: None,
    }
}

fn on_screen(partition: Option<i32>) -> OnScreen {
    OnScreen {
        stream_id: "show-1".into(),
        label: "cup".into(),
        sku: Some("MUG-ESP-01".into()),
        match_milli: Some(812),
        since_pts: 3000,
        score_milli: 934,
        bbox: [100, 200, 5000, 6000],
        partition,
    }
}

fn item(streams: Vec<String>) -> CatalogItem {
    CatalogItem {
        sku: "MUG-ESP-01".into(),
        label: "cup".into(),
        title: "Stoneware espresso cup".into(),
        price: Money(1490),
        currency: "EUR".into(),
        image: None,
        url: Some("https://shop.example/p/MUG-ESP-01".into()),
        in_stock: true,
        streams,
    }
}

#[test]
fn every_record_the_dataflow_exchanges_survives_the_wire() {
    let position = SourcePosition { partition: Some(3), offset: 1234 };
    round_trip(Frame {
        stream_id: "show-1".into(),
        seq: 7,
        pts_ms: 1400,
        captured_at_ms: 1_796_000_000_000,
        origin: None,
        position,
        jpeg: vec![0xff, 0xd8, 0xff, 0xd9],
        change: vitrine_schemas::Change::Unchanged,
    });
    round_trip(FrameDetections {
        stream_id: "show-1".into(),
        seq: 7,
        pts_ms: 1400,
        captured_at_ms: 1_796_000_000_000,
        width: 640,
        height: 360,
        model: "ssd".into(),
        detections: vec![detection(None), detection(Some(9)), detection(None)],
        position,
        carried: true,
    });
    round_trip((("cup".to_string(), (on_screen(Some(3)), item(Vec::new()))), 20u64, 1isize));
    round_trip((("cup".to_string(), (on_screen(None), item(vec!["show-1".into()]))), 20u64, -1isize));
    let cause = Cause { position, captured_at_ms: 1_796_000_000_000, by_frame: true };
    let stats = ScreenStats { since_captured_at_ms: 1, frames_seen: 4, score_sum: 3.5, score_max: 0.95 };
    round_trip((ScreenNote::Enter { on_screen: on_screen(Some(3)), stats }, cause));
    round_trip((ScreenNote::Position { stream_id: "show-1".into(), pts_ms: 1400 }, cause));
    let event = ProductEvent {
        event_id: "e1".into(),
        kind: EventKind::Appeared,
        stream_id: "show-1".into(),
        sku: "MUG-ESP-01".into(),
        label: "cup".into(),
        title: "Stoneware espresso cup".into(),
        price: Money(1490),
        currency: "EUR".into(),
        in_stock: true,
        image_url: None,
        product_url: None,
        bbox: None,
        score: 0.934,
        match_score: Some(0.81),
        pts_ms: 3000,
        emitted_at_ms: 1_796_000_000_000,
    };
    round_trip(Emitted::Event(event, cause));
    round_trip(Emitted::Exposure(
        Exposure {
            stream_id: "show-1".into(),
            sku: "MUG-ESP-01".into(),
            label: "cup".into(),
            title: "Stoneware espresso cup".into(),
            start_pts_ms: 3000,
            end_pts_ms: 11000,
            start_at_ms: 1,
            end_at_ms: 2,
            frames_seen: 40,
            max_score: 0.95,
            mean_score: 0.9,
            appeared_event_id: "e1".into(),
        },
        cause,
    ));
}
