//! SIGTERM drains: a job stopped mid-stream (a product on screen) finishes its frames in
//! flight, flushes and commits, closes its viewers with 1001 (going away) and exits 0; the
//! restarted job rebuilds its debounce state by replaying frames whose results were already
//! sent, without sending them again. In the end Kafka holds every product event and every
//! frame's detections exactly once (no duplicate), as an uninterrupted run, and the Parquet
//! tables hold every row once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use vitrine_tests::kafka_runs::{check_tables, tables, topic_values, wait_caught_up, Pipeline};
use vitrine_tests::{duckdb, free_port, root, temp_dir, vitrine_bin, Broker};

/// On partitions 1 and 0 of the 2-partition frames topic (librdkafka: CRC32 of the key).
const STREAMS: [&str; 2] = ["shop1", "kitchen"];

fn spec(dir: &Path, brokers: &str, group: &str) -> PathBuf {
    let text = format!(
        r#"
name: drain-{group}
sources:
  - kind: kafka
    brokers: {brokers}
    group_id: {group}
    streams: [shop1, kitchen]
model:
  path: {root}/models/zoo/ssd-mobilenet-v2-coco-quant/model.onnx
catalog:
  path: {root}/examples/demo-catalog.jsonl
  watch: false
debounce:
  hold: 1500ms
sinks:
  kafka:
    brokers: {brokers}
    detections_topic: {group}.detections
    events_topic: {group}.events
    dead_letter_topic: {group}.dead-letter
    partitions: 2
  parquet:
    path: {dir}/{group}
    roll_after: 1s
    min_dwell: 0s
server:
  viewer: false
workers: 2
"#,
        root = root().display(),
        dir = dir.display()
    );
    let path = dir.join(format!("{group}.yaml"));
    std::fs::write(&path, text).unwrap();
    let status = Command::new(vitrine_bin()).args(["topics", "create", "--partitions", "2"]).arg(&path).status();
    assert!(status.unwrap().success());
    path
}

fn start(spec: &Path, log: &Path, port: u16) -> Pipeline {
    Pipeline::start(spec, &[], &[("VITRINE_LISTEN", format!("127.0.0.1:{port}"))], log)
}

fn stop_and_wait(pipeline: Pipeline, signal: &str, log: &Path) {
    pipeline.signal(signal);
    wait_exit(pipeline, log);
}

/// Waits for a stopping pipeline to exit 0 (a second signal would exit at once).
fn wait_exit(mut pipeline: Pipeline, log: &Path) {
    let status = pipeline.wait_for_exit(Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", std::fs::read_to_string(log).unwrap());
}

/// Watches `shop1` until a product appeared, then sends SIGTERM and returns the close code
/// the viewer got.
async fn sigterm_while_watching(port: u16, pipeline: &Pipeline, log: &Path) -> Option<u16> {
    let url = format!("ws://127.0.0.1:{port}/v1/streams/shop1/ws");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut socket = loop {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((socket, _)) => break socket,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot connect: {e}\n{}", std::fs::read_to_string(log).unwrap());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let mut signalled = false;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), socket.next()).await.expect("the viewer hears");
        match message {
            Some(Ok(Message::Text(text))) => {
                let m: Value = serde_json::from_str(text.as_str()).unwrap();
                if !signalled && m["type"] == "event" && m["kind"] == "appeared" {
                    pipeline.signal("TERM");
                    signalled = true;
                }
            }
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

/// Every message of `topic`, keyed by `key`: (how many times each key came, one value of it).
fn by_key(brokers: &str, topic: &str, key: impl Fn(&Value) -> String) -> BTreeMap<String, (usize, Value)> {
    let mut out: BTreeMap<String, (usize, Value)> = BTreeMap::new();
    for mut v in topic_values(brokers, topic, Duration::from_secs(3)) {
        v.as_object_mut().unwrap().remove("emitted_at_ms");
        let entry = out.entry(key(&v)).or_insert((0, v));
        entry.0 += 1;
    }
    out
}

fn event_id(v: &Value) -> String {
    v["event_id"].as_str().unwrap().to_string()
}

fn frame_id(v: &Value) -> String {
    format!("{}/{}", v["stream_id"].as_str().unwrap(), v["seq"])
}

#[test]
fn a_job_stopped_with_sigterm_and_restarted_sends_every_event_once() {
    let broker = Broker::start();
    let brokers = broker.address.clone();
    let dir = temp_dir("drain");
    let clean = spec(&dir, &brokers, "clean");
    let drained = spec(&dir, &brokers, "drained");
    for stream in STREAMS {
        let out = Command::new(vitrine_bin())
            .args(["sample", "--stream-id", stream, "--fps", "5", "--fast", "--brokers", &brokers, "--url"])
            .arg(root().join("examples/sample/shopping.mp4"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    let log = dir.join("clean.log");
    let mut pipeline = start(&clean, &log, free_port());
    wait_caught_up(&mut [&mut pipeline], &[&log], &brokers, "clean");
    stop_and_wait(pipeline, "INT", &log);

    // SIGTERM once a product is on screen: the viewer is told the server is going away.
    let (port, log) = (free_port(), dir.join("drained-0.log"));
    let pipeline = start(&drained, &log, port);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let close = rt.block_on(sigterm_while_watching(port, &pipeline, &log));
    assert_eq!(close, Some(1001), "{}", std::fs::read_to_string(&log).unwrap());
    wait_exit(pipeline, &log);
    let sent_before_restart = by_key(&brokers, "drained.events", event_id);
    assert!(
        !sent_before_restart.is_empty() && sent_before_restart.len() < 12,
        "the stop came mid-stream: {} events before it",
        sent_before_restart.len()
    );

    let log = dir.join("drained-1.log");
    let mut pipeline = start(&drained, &log, free_port());
    wait_caught_up(&mut [&mut pipeline], &[&log], &brokers, "drained");
    stop_and_wait(pipeline, "TERM", &log);
    let replayed = std::fs::read_to_string(&log).unwrap();
    assert!(replayed.contains("replaying frames to rebuild tracking state"), "{replayed}");

    let want = by_key(&brokers, "clean.events", event_id);
    assert_eq!(want.len(), 2 * 6, "each stream: three products appear and leave: {want:?}");
    let got = by_key(&brokers, "drained.events", event_id);
    let repeated: Vec<_> = got.iter().filter(|(_, (n, _))| *n > 1).map(|(id, (n, _))| (id, n)).collect();
    assert!(repeated.is_empty(), "events sent more than once: {repeated:?}");
    let values = |m: &BTreeMap<String, (usize, Value)>| m.iter().map(|(k, (_, v))| (k.clone(), v.clone())).collect();
    let (got_values, want_values): (BTreeMap<String, Value>, BTreeMap<String, Value>) = (values(&got), values(&want));
    assert_eq!(got_values, want_values, "the events of an uninterrupted run");

    let frames = by_key(&brokers, "drained.detections", frame_id);
    let repeated: BTreeSet<_> = frames.iter().filter(|(_, (n, _))| *n > 1).map(|(id, _)| id).collect();
    assert!(repeated.is_empty(), "detections sent more than once: {repeated:?}");
    assert_eq!(frames.len(), 2 * 180, "every frame's detections");

    let want_rows = tables(&dir.join("clean").display().to_string(), duckdb);
    check_tables("drained", &tables(&dir.join("drained").display().to_string(), duckdb), &want_rows);
}
