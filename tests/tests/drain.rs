//! SIGTERM drains: a job stopped mid-stream (a product on screen) finishes its frames in
//! flight, flushes and commits, closes its viewers with 1001 (going away) and exits 0; the
//! restarted job rebuilds its debounce state by replaying frames whose results were already
//! sent, without sending them again. In the end Kafka holds every product event and every
//! frame's detections exactly once (no duplicate), as an uninterrupted run, the Parquet
//! tables hold every row once, and a viewer that reconnected with its last event id saw
//! every event of its stream once, across the restart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use vitrine_tests::kafka_runs::{
    check_tables, create_topics, group_sinks, kafka_spec, sample_streams, tables, topic_values, wait_caught_up,
    Pipeline,
};
use vitrine_tests::{duckdb, free_port, temp_dir, Broker};

/// On partitions 1 and 0 of the 2-partition frames topic (librdkafka: CRC32 of the key).
const STREAMS: [&str; 2] = ["shop1", "kitchen"];

fn spec(dir: &Path, brokers: &str, group: &str) -> PathBuf {
    let rest = format!("{}server:\n  viewer: false\nworkers: 2\n", group_sinks(dir, brokers, group));
    let path = kafka_spec(dir, &format!("drain-{group}"), brokers, group, &STREAMS, &rest);
    create_topics(&path, 2);
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

/// What a viewer of `shop1` saw: the ids of the events, in order, the ids of the products
/// its snapshots showed on screen, and the close code.
struct Watched {
    events: Vec<String>,
    snapshots: Vec<String>,
    close: Option<u16>,
}

/// Watches `shop1` (resuming after `last_event_id`) until the server closes; with `pipeline`,
/// sends it SIGTERM once a product appeared.
async fn watch(port: u16, last_event_id: Option<&str>, pipeline: Option<&Pipeline>, log: &Path) -> Watched {
    let query = last_event_id.map(|id| format!("?last_event_id={id}")).unwrap_or_default();
    let url = format!("ws://127.0.0.1:{port}/v1/streams/shop1/ws{query}");
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
    let (mut events, mut snapshots, mut signalled) = (Vec::new(), Vec::new(), false);
    loop {
        let message = tokio::time::timeout(Duration::from_secs(120), socket.next()).await.expect("the viewer hears");
        match message {
            Some(Ok(Message::Text(text))) => {
                let m: Value = serde_json::from_str(text.as_str()).unwrap();
                if m["type"] == "snapshot" {
                    snapshots.extend(m["products"].as_array().unwrap().iter().map(event_id));
                }
                if m["type"] == "event" {
                    events.push(event_id(&m));
                    if let Some(pipeline) = pipeline.filter(|_| !signalled && m["kind"] == "appeared") {
                        pipeline.signal("TERM");
                        signalled = true;
                    }
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return Watched { events, snapshots, close: frame.map(|f| u16::from(f.code)) }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Watched { events, snapshots, close: None },
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
    sample_streams(&brokers, &STREAMS);

    let log = dir.join("clean.log");
    let mut pipeline = start(&clean, &log, free_port());
    wait_caught_up(&mut [&mut pipeline], &[&log], &brokers, "clean");
    stop_and_wait(pipeline, "INT", &log);

    // SIGTERM once a product is on screen: the viewer is told the server is going away.
    let (port, log) = (free_port(), dir.join("drained-0.log"));
    let pipeline = start(&drained, &log, port);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let before = rt.block_on(watch(port, None, Some(&pipeline), &log));
    assert_eq!(before.close, Some(1001), "{}", std::fs::read_to_string(&log).unwrap());
    wait_exit(pipeline, &log);
    let sent_before_restart = by_key(&brokers, "drained.events", event_id);
    assert!(
        !sent_before_restart.is_empty() && sent_before_restart.len() < 12,
        "the stop came mid-stream: {} events before it",
        sent_before_restart.len()
    );

    // The viewer reconnects at once with its last event id, while the restart replays.
    let (port, log) = (free_port(), dir.join("drained-1.log"));
    let mut pipeline = start(&drained, &log, port);
    let last = before.events.last().cloned();
    let viewer = {
        let log = log.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(watch(port, last.as_deref(), None, &log))
        })
    };
    wait_caught_up(&mut [&mut pipeline], &[&log], &brokers, "drained");
    stop_and_wait(pipeline, "TERM", &log);
    let after = viewer.join().unwrap();
    assert_eq!(after.close, Some(1001));
    // A product still on screen when the job stopped (appeared, not yet gone, as far as the
    // events sent say) holds the commit before its first sighting: the restart replays from
    // there to rebuild its state. (Frames are read ahead of the events, so the stop may also
    // land between two products: then there is nothing to rebuild.)
    let mut on_screen = BTreeSet::new();
    for (_, e) in sent_before_restart.values() {
        let product = (e["stream_id"].to_string(), e["sku"].to_string());
        if e["kind"] == "appeared" {
            on_screen.insert(product);
        }
    }
    for (_, e) in sent_before_restart.values() {
        if e["kind"] == "disappeared" {
            on_screen.remove(&(e["stream_id"].to_string(), e["sku"].to_string()));
        }
    }
    let replayed = std::fs::read_to_string(&log).unwrap();
    if !on_screen.is_empty() {
        assert!(replayed.contains("replaying frames to rebuild tracking state"), "{on_screen:?}\n{replayed}");
    }

    // The viewer, across the restart: no event twice, and none missed. (It resumes after its
    // last event when the restarted hub has it again, else it gets a snapshot: the products
    // on screen, each as its last event.)
    let shop1: Vec<String> = topic_values(&brokers, "clean.events", Duration::from_secs(3))
        .iter()
        .filter(|e| e["stream_id"] == "shop1")
        .map(event_id)
        .collect();
    let events: Vec<&String> = before.events.iter().chain(&after.events).collect();
    let twice: Vec<_> = events.iter().filter(|id| events.iter().filter(|other| other == id).count() > 1).collect();
    let what = format!("events {:?} then {:?}, snapshot {:?}", before.events, after.events, after.snapshots);
    assert!(twice.is_empty(), "the viewer got events twice: {twice:?} ({what})");
    let missed: Vec<_> = shop1.iter().filter(|id| !events.contains(id) && !after.snapshots.contains(id)).collect();
    assert!(missed.is_empty(), "the viewer missed {missed:?} of {shop1:?} ({what})");

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
