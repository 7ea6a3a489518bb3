//! The products on screen, from the state topic (`sinks.kafka.state_topic`): every product
//! event the dataflow emits, keyed `{stream}/{sku}` on one compacted partition, in emission
//! order, and each stream's media time (keyed by the stream, about once a second). A viewer tier (`vitrine serve`) reads it from the beginning into its hub, which
//! rebuilds each stream's snapshot (compaction keeps the latest event of every product), then
//! follows it, publishing each new event to its viewers. Every instance reads the same
//! partition in the same order, so their viewers get the same events in the same order, and
//! an event id from one instance resumes on another.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use vitrine_schemas::ProductEvent;

use super::{client_config, describe, describe_for, ClientLog};
use crate::hub::Hub;
use crate::metrics::Metrics;

/// A record of the state topic: a product event (key `{stream}/{sku}`), or how far the
/// dataflow got in a stream's media time (key: the stream id; about once a second).
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum StateRecord {
    Event(Box<ProductEvent>),
    MediaTime { stream_id: String, media_time_ms: i64 },
}

/// Reads the state topic of `brokers` into `hub` until `stop`: `caught_up` is called once
/// everything the topic held at the start is in the hub (the snapshots are right); from then
/// on each event's time from emission to the hub goes to `metrics`. A message that is not a
/// product event is logged and skipped.
pub fn follow(
    brokers: &str,
    topic: &str,
    hub: &Hub,
    metrics: &Metrics,
    stop: &Arc<AtomicBool>,
    caught_up: &mut dyn FnMut(),
) -> Result<(), String> {
    // Assigned, never committed: every instance reads the whole partition.
    let consumer: BaseConsumer<ClientLog> = client_config(brokers)
        .set("group.id", "vitrine-serve")
        .set("enable.auto.commit", "false")
        .create_with_context(ClientLog)
        .map_err(|e| describe(&e, brokers))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| describe_for(&consumer, &e, brokers))?;
    if metadata.topics().first().is_none_or(|t| t.partitions().is_empty()) {
        return Err(format!(
            "the state topic `{topic}` does not exist on {brokers}: create it with `vitrine topics create SPEC`"
        ));
    }
    let (_, end) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).map_err(|e| describe(&e, brokers))?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning).map_err(|e| e.to_string())?;
    consumer.assign(&assignment).map_err(|e| describe(&e, brokers))?;
    tracing::info!(topic, events = end, "rebuilding the products on screen from the state topic");
    let mut reported = end <= 0;
    if reported {
        caught_up();
    }
    let mut read = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
        let m = match message {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(topic, error = %describe(&e, brokers), "state topic poll failed; retrying");
                continue;
            }
        };
        match m.payload().map(serde_json::from_slice::<StateRecord>) {
            Some(Ok(StateRecord::MediaTime { stream_id, media_time_ms })) => {
                hub.set_media_time(&stream_id, media_time_ms);
            }
            Some(Ok(StateRecord::Event(event))) => {
                hub.set_media_time(&event.stream_id, event.pts_ms);
                hub.publish(&event);
                read += 1;
                if reported {
                    let took_ms = (vitrine_schemas::now_ms() - event.emitted_at_ms).max(0);
                    metrics.event_to_viewers_seconds.observe(took_ms as f64 / 1000.0);
                }
            }
            // A null value (a tombstone) removes nothing more than compaction did.
            None => {}
            Some(Err(e)) => {
                tracing::warn!(topic, offset = m.offset(), error = %e, "neither a product event nor a media time; skipped")
            }
        }
        if !reported && m.offset() + 1 >= end {
            reported = true;
            tracing::info!(topic, events = read, streams = hub.stream_ids().len(), "products on screen rebuilt");
            caught_up();
        }
    }
    Ok(())
}
