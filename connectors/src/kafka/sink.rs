//! Results to Kafka: product events and detections as JSON with CloudEvents 1.0 headers
//! (Kafka protocol binding, binary mode), dead letters with their original bytes.
//!
//! Every message is keyed by stream id (one stream stays in order on one partition) and
//! carries a deterministic id (`ce_id`), so consumers de-duplicate what a replay re-sends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use vitrine_schemas::{DeadLetter, FrameDetections, ProductEvent};

use super::headers as h;
use super::{client_config, describe};
use crate::time_format::rfc3339;

/// Version of the JSON value of `detections` and `product-events` messages.
pub const SCHEMA_VERSION: u32 = 1;

/// Topic names of the Kafka sink.
#[derive(Clone, Debug)]
pub struct KafkaSinkTopics {
    pub detections: String,
    pub events: String,
    pub dead_letter: String,
    /// Every product event again, keyed `{stream}/{sku}`, on partition 0 (compacted): the
    /// products on screen, for `vitrine serve`.
    pub state: String,
}

/// Counts deliveries that failed for good (after librdkafka's retries), keeping the first
/// failure's topic and error for the message that stops the run.
#[derive(Debug, Default)]
pub struct DeliveryReports {
    pub failed: AtomicU64,
    first_failure: std::sync::Mutex<Option<String>>,
}

impl ClientContext for DeliveryReports {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        super::client_log(level, facility, message);
    }
}

impl ProducerContext for DeliveryReports {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, message)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let topic = message.topic();
            tracing::error!(topic, error = %e, "a Kafka message could not be delivered");
            self.first_failure.lock().expect("delivery reports").get_or_insert_with(|| format!("to {topic}: {e}"));
        }
    }
}

pub struct KafkaSink {
    producer: ThreadedProducer<DeliveryReports>,
    topics: KafkaSinkTopics,
    brokers: String,
    source: String,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink").field("topics", &self.topics).finish()
    }
}

fn with(headers: OwnedHeaders, key: &str, value: &str) -> OwnedHeaders {
    headers.insert(Header { key, value: Some(value.as_bytes()) })
}

/// CloudEvents binary-mode headers.
fn cloud_event(id: &str, kind: &str, source: &str, time_ms: i64, subject: &str) -> OwnedHeaders {
    let hs = with(OwnedHeaders::new(), "ce_specversion", "1.0");
    let hs = with(hs, "ce_id", id);
    let hs = with(hs, "ce_type", kind);
    let hs = with(hs, "ce_source", source);
    let hs = with(hs, "ce_time", &rfc3339(time_ms));
    let hs = with(hs, "ce_subject", subject);
    with(hs, "content-type", "application/json")
}

impl KafkaSink {
    /// A producer for `brokers`; `pipeline` names the CloudEvents source (`/vitrine/{pipeline}/streams/{id}`).
    pub fn connect(brokers: &str, topics: KafkaSinkTopics, pipeline: &str) -> Result<KafkaSink, String> {
        let producer = client_config(brokers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("compression.type", "zstd")
            .create_with_context(DeliveryReports::default())
            .map_err(|e| describe(&e, brokers))?;
        Ok(KafkaSink { producer, topics, brokers: brokers.into(), source: format!("/vitrine/{pipeline}/streams/") })
    }

    fn send(&self, topic: &str, key: &str, payload: &[u8], headers: OwnedHeaders) -> Result<(), String> {
        self.send_to(topic, None, key, payload, headers)
    }

    fn send_to(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &str,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<(), String> {
        let mut record = BaseRecord::to(topic).key(key).payload(payload).headers(headers);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    // The local queue is full: let deliveries drain, then try again.
                    self.producer.poll(Duration::from_millis(50));
                    record = r;
                }
                Err((e, _)) => return Err(format!("cannot send to {topic}: {}", describe(&e, &self.brokers))),
            }
        }
    }

    pub fn event(&self, event: &ProductEvent) -> Result<(), String> {
        let mut value = serde_json::to_value(event).expect("events encode");
        value["schema_version"] = SCHEMA_VERSION.into();
        let headers = cloud_event(
            &event.event_id,
            &format!("vitrine.product.{}", event.kind.as_str()),
            &format!("{}{}", self.source, event.stream_id),
            event.emitted_at_ms,
            &event.sku,
        );
        let value = value.to_string();
        self.send(&self.topics.events, &event.stream_id, value.as_bytes(), headers.clone())?;
        let state_key = format!("{}/{}", event.stream_id, event.sku);
        self.send_to(&self.topics.state, Some(0), &state_key, value.as_bytes(), headers)
    }

    /// How far the dataflow got in a stream's media time, on the state topic (key: the stream
    /// id, so compaction keeps the latest): `vitrine serve` tells its viewers, as `vitrine run` does.
    pub fn media_time(&self, stream_id: &str, media_time_ms: i64) -> Result<(), String> {
        let value = serde_json::json!({
            "schema_version": SCHEMA_VERSION,
            "type": "media_time",
            "stream_id": stream_id,
            "media_time_ms": media_time_ms,
        });
        let headers = with(OwnedHeaders::new(), "content-type", "application/json");
        self.send_to(&self.topics.state, Some(0), stream_id, value.to_string().as_bytes(), headers)
    }

    pub fn detections(&self, d: &FrameDetections) -> Result<(), String> {
        let mut value = serde_json::to_value(d).expect("detections encode");
        if let Some(fields) = value.as_object_mut() {
            fields.remove("position"); // where vitrine read the frame: not part of the message
        }
        // A crop's embedding is the matcher's input, not part of the message.
        for detection in value["detections"].as_array_mut().into_iter().flatten() {
            if let Some(fields) = detection.as_object_mut() {
                fields.remove("embedding");
            }
        }
        value["schema_version"] = SCHEMA_VERSION.into();
        let id = format!("{}:{}:{}", d.stream_id, d.seq, d.model);
        let headers = cloud_event(
            &id,
            "vitrine.detections",
            &format!("{}{}", self.source, d.stream_id),
            d.captured_at_ms,
            &d.seq.to_string(),
        );
        self.send(&self.topics.detections, &d.stream_id, value.to_string().as_bytes(), headers)
    }

    pub fn dead_letter(&self, d: &DeadLetter) -> Result<(), String> {
        let hs = with(OwnedHeaders::new(), h::STAGE, &d.stage);
        let hs = with(hs, h::REASON, &d.reason);
        let hs = with(hs, h::STREAM_ID, &d.stream_id);
        let hs = with(hs, h::SEQ, &d.seq.to_string());
        let hs = with(hs, h::PTS_MS, &d.pts_ms.to_string());
        let hs = with(hs, "vitrine-origin", d.origin.as_deref().unwrap_or(""));
        self.send(&self.topics.dead_letter, &d.stream_id, &d.payload, hs)
    }

    /// Waits until everything sent so far is acknowledged by the broker.
    pub fn flush(&self, timeout: Duration) -> Result<(), String> {
        self.producer.flush(timeout).map_err(|e| format!("Kafka flush failed: {}", describe(&e, &self.brokers)))?;
        match self.producer.context().failed.swap(0, Ordering::Relaxed) {
            0 => Ok(()),
            n => {
                let first = self.producer.context().first_failure.lock().expect("delivery reports").take();
                Err(format!("{n} Kafka messages could not be delivered ({})", first.unwrap_or_default()))
            }
        }
    }
}
