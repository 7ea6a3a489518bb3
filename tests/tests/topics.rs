//! What vitrine writes to Kafka is what docs/topics.md says: every detections and
//! product-events message of a run (value and CloudEvents headers), and every record of the
//! state topic, is valid against
//! docs/topics.schema.json, checked by a real JSON Schema validator; and the schema is not so
//! loose that a broken message passes.

use std::time::Duration;

use serde_json::{json, Value};
use vitrine_tests::kafka_runs::{create_topics, kafka_spec, sample_streams, topic_messages, wait_caught_up, Pipeline};
use vitrine_tests::{root, schema_errors, temp_dir, Broker};

const STREAM: &str = "shop1";
const FRAMES: usize = 180;
const EVENTS: usize = 6;

/// Runs `definition` over `instances`; the ones that fail, with why.
fn invalid(definition: &str, instances: &[Value]) -> Vec<(String, Value)> {
    let schema = root().join("docs/topics.schema.json");
    schema_errors(&schema, definition, instances)
        .into_iter()
        .zip(instances)
        .filter_map(|(error, instance)| error.map(|e| (e, instance.clone())))
        .collect()
}

#[test]
fn every_message_vitrine_sends_is_valid_against_the_published_schema() {
    let broker = Broker::start();
    let brokers = broker.address.clone();
    let dir = temp_dir("topics");
    let rest = format!(
        "sinks:\n  kafka:\n    brokers: {brokers}\n    detections_topic: topics.detections\n\
         \x20   events_topic: topics.events\n    dead_letter_topic: topics.dead-letter\n    partitions: 1\n"
    );
    let spec = kafka_spec(&dir, "schema-check", &brokers, "topics", &[STREAM], &rest);
    create_topics(&spec, 1);
    sample_streams(&brokers, &[STREAM]);
    let log = dir.join("vitrine.log");
    let mut pipeline = Pipeline::start(&spec, &[], &[], &log);
    wait_caught_up(&mut [&mut pipeline], &[&log], &brokers, "topics");
    pipeline.signal("INT");
    assert!(pipeline.wait_for_exit(Duration::from_secs(60)).is_some_and(|s| s.success()));

    let detections = topic_messages(&brokers, "topics.detections", Duration::from_secs(3));
    let events = topic_messages(&brokers, "topics.events", Duration::from_secs(2));
    let state = topic_messages(&brokers, "vitrine.on-screen", Duration::from_secs(2));
    assert_eq!(detections.len(), FRAMES, "one detections message a frame");
    assert_eq!(events.len(), EVENTS, "three products appear and leave");
    let (detection_headers, detection_values): (Vec<Value>, Vec<Value>) = detections.into_iter().unzip();
    let (event_headers, event_values): (Vec<Value>, Vec<Value>) = events.into_iter().unzip();
    assert!(
        detection_values.iter().any(|d| d["detections"].as_array().is_some_and(|b| !b.is_empty())),
        "boxes were found, so their schema is exercised"
    );
    assert_eq!(invalid("detections", &detection_values), [], "detections values");
    assert_eq!(invalid("detections_headers", &detection_headers), [], "detections headers");
    assert_eq!(invalid("product_event", &event_values), [], "product-event values");
    assert_eq!(invalid("product_event_headers", &event_headers), [], "product-event headers");
    let state_values: Vec<Value> = state.into_iter().map(|(_, v)| v).collect();
    assert_eq!(invalid("state_record", &state_values), [], "state topic values");
    let marks = state_values.iter().filter(|v| v["type"] == "media_time").count();
    assert_eq!(state_values.len() - marks, EVENTS, "the state topic holds every event again");
    assert!(marks >= 30, "a media time mark about once a second of the 36 s show: {marks}");

    // Not so loose that a broken message passes.
    let with = |value: &Value, edit: &dyn Fn(&mut Value)| {
        let mut v = value.clone();
        edit(&mut v);
        v
    };
    let frame = detection_values.iter().find(|d| d["detections"].as_array().is_some_and(|b| !b.is_empty())).unwrap();
    let broken_frames = [
        with(frame, &|v| v["seq"] = json!(-1)),
        with(frame, &|v| v["detections"][0]["score"] = json!("0.9")),
        with(frame, &|v| v["detections"][0]["bbox"]["x1"] = json!(1.5)),
        with(frame, &|v| drop(v.as_object_mut().unwrap().remove("model"))),
        with(frame, &|v| v["extra"] = json!(1)),
    ];
    assert_eq!(invalid("detections", &broken_frames).len(), broken_frames.len());
    let event = &event_values[0];
    let broken_events = [
        with(event, &|v| v["kind"] = json!("vanished")),
        with(event, &|v| drop(v.as_object_mut().unwrap().remove("sku"))),
        with(event, &|v| v["price"] = json!("14.90")),
        with(event, &|v| v["schema_version"] = json!(2)),
    ];
    assert_eq!(invalid("product_event", &broken_events).len(), broken_events.len());
    let headers = &event_headers[0];
    let broken_headers = [
        with(headers, &|h| drop(h.as_object_mut().unwrap().remove("ce_id"))),
        with(headers, &|h| h["ce_type"] = json!("vitrine.detections")),
        with(headers, &|h| h["ce_time"] = json!("30/11/2026")),
    ];
    assert_eq!(invalid("product_event_headers", &broken_headers).len(), broken_headers.len());
}
