//! Kafka consume throughput of vitrine's frame source against a bare rdkafka consumer, on the
//! same 100 KB frame messages from a real broker (Tansu, started here), in the same run.
//!
//!     taskset -c 1 cargo bench -p vitrine-benches --bench kafka_consume
//!
//! The broker runs on core 0 (taskset), the consumer on core 1. Goal: 200 MB/s or more, so
//! Kafka never limits the pipeline (a 720p JPEG is ~50-100 KB; 200 MB/s is 2000+ frames/s).

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use vitrine_connectors::kafka::admin::{create_topics, TopicSpec};
use vitrine_connectors::kafka::frames::frame_headers;
use vitrine_connectors::kafka::source::{consumer_config, KafkaFrameSource};
use vitrine_schemas::Frame;

const MESSAGES: usize = 2000;
const SIZE: usize = 100_000;
const TOPIC: &str = "bench.frames";

fn main() {
    let broker = vitrine_tests::Broker::start_on_cores("0");
    let brokers = broker.address.clone();
    tokio::runtime::Runtime::new().unwrap().block_on(create_topics(&brokers, &[TopicSpec::frames(TOPIC, 1)])).unwrap();

    // Frames of 100 KB (incompressible bytes behind a JPEG start marker), with vitrine's headers.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("message.max.bytes", (8 << 20).to_string())
        .set("linger.ms", "20")
        .create()
        .unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut payload = vec![0u8; SIZE];
    let started = Instant::now();
    for seq in 0..MESSAGES as u64 {
        for b in payload.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        payload[..2].copy_from_slice(&[0xFF, 0xD8]);
        let frame = Frame {
            stream_id: "bench".into(),
            seq,
            pts_ms: seq as i64 * 200,
            captured_at_ms: 0,
            origin: None,
            position: Default::default(),
            jpeg: payload.clone(),
            change: Default::default(),
        };
        let record = BaseRecord::to(TOPIC).key("bench").payload(&frame.jpeg).headers(frame_headers(&frame));
        let mut record = record;
        while let Err((_, r)) = producer.send(record) {
            producer.poll(Duration::from_millis(10));
            record = r;
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    let mb = (MESSAGES * SIZE) as f64 / 1e6;
    println!("produced {MESSAGES} messages, {mb:.0} MB, in {:.2} s", started.elapsed().as_secs_f64());

    // The two readers alternate over three rounds (each with a fresh consumer group, from
    // the beginning); the best round of each counts, so neither gains from going second.
    let (mut baseline, mut vitrine) = (0f64, 0f64);
    for round in 0..3 {
        let (b, v) = if round % 2 == 0 {
            let b = bare_consumer(&brokers, round);
            (b, frame_source(&brokers, round))
        } else {
            let v = frame_source(&brokers, round);
            (bare_consumer(&brokers, round), v)
        };
        println!("round {round}: bare {b:.0} MB/s, vitrine {v:.0} MB/s");
        baseline = baseline.max(b);
        vitrine = vitrine.max(v);
    }

    println!("bare rdkafka consumer : {baseline:7.0} MB/s");
    println!(
        "vitrine frame source  : {vitrine:7.0} MB/s  ({:.2}x the bare consumer; goal 200 MB/s: {})",
        vitrine / baseline,
        if vitrine >= 200.0 { "met" } else { "NOT met" }
    );
}

/// Baseline: a bare consumer that only looks at each payload. Returns MB/s.
fn bare_consumer(brokers: &str, round: usize) -> f64 {
    // The same client settings as vitrine's source, so the ratio is vitrine's own work per frame.
    let consumer: BaseConsumer = consumer_config(brokers, &format!("bench-baseline-{round}")).create().unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(TOPIC, 0, Offset::Beginning).unwrap();
    consumer.assign(&list).unwrap();
    let mut started = None;
    let (mut n, mut bytes) = (0, 0usize);
    // Drain what has arrived without waiting; wait only when nothing is there (a blocking
    // timeout on every call halves the throughput).
    let mut wait = Duration::from_millis(100);
    while n < MESSAGES {
        match consumer.poll(wait) {
            Some(Ok(m)) => {
                // The clock starts at the first message, which is therefore not counted.
                if started.is_none() {
                    started = Some(Instant::now());
                } else {
                    bytes += m.payload().map_or(0, |p| p.len());
                }
                n += 1;
                wait = Duration::ZERO;
            }
            _ => wait = Duration::from_millis(100),
        }
    }
    rate(bytes, started)
}

/// MB/s from the first arrival on: connecting is not throughput. What arrived first is not
/// counted, since its time is not.
fn rate(bytes: usize, started: Option<Instant>) -> f64 {
    bytes as f64 / 1e6 / started.expect("messages arrived").elapsed().as_secs_f64()
}

/// vitrine's frame source, which reads the headers and takes each JPEG into a Frame. Returns MB/s.
fn frame_source(brokers: &str, round: usize) -> f64 {
    let source = KafkaFrameSource::connect(brokers, TOPIC, &format!("bench-vitrine-{round}"), 0, 1).unwrap();
    let mut started = None;
    let (mut n, mut bytes) = (0, 0usize);
    while n < MESSAGES {
        let batch = source.poll(64, Duration::from_millis(100));
        let first = started.is_none() && !batch.is_empty();
        if first {
            started = Some(Instant::now());
        }
        for (frame, _) in batch {
            let len = frame.expect("a valid frame").jpeg.len();
            if !first {
                bytes += len;
            }
            n += 1;
        }
    }
    rate(bytes, started)
}
