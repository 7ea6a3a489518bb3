//! Kafka in and out against a real Kafka-protocol broker (Tansu) that the test starts:
//! `vitrine sample` publishes the sample stream, the pipeline reads it from the frames
//! topic with two workers, and a plain Kafka consumer reads the product events (CloudEvents
//! headers) while a WebSocket viewer receives the same events.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use vitrine_tests::{free_port, http_get, http_get_bytes, root, temp_dir, vitrine_bin, Broker};

/// A Kafka record as the test sees it: key, value, headers.
struct Record {
    key: String,
    value: Vec<u8>,
    headers: HashMap<String, String>,
}

/// Reads `topic` from the beginning until `want` records arrived or `timeout` passed.
fn consume(brokers: &str, topic: &str, want: usize, timeout: Duration) -> Vec<Record> {
    // Assigned, not subscribed: no group join to wait for (Tansu takes seconds for one).
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len()) as i32;
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, rdkafka::Offset::Beginning).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    while records.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                        .collect()
                })
                .unwrap_or_default();
            records.push(Record {
                key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                value: m.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
    }
    records
}

fn spec(dir: &std::path::Path, brokers: &str, group: &str, server: bool) -> std::path::PathBuf {
    let catalog = format!("  path: {}/examples/demo-catalog.jsonl\n  watch: false", root().display());
    spec_with_catalog(dir, brokers, group, server, &catalog)
}

fn spec_with_catalog(
    dir: &std::path::Path,
    brokers: &str,
    group: &str,
    server: bool,
    catalog: &str,
) -> std::path::PathBuf {
    let root = root();
    let server = if server { "server:\n  viewer: false\n" } else { "" };
    let text = format!(
        r#"
name: kafka-test
sources:
  - kind: kafka
    brokers: {brokers}
    group_id: {group}
    streams: [shop1]
model:
  path: {root}/models/zoo/ssd-mobilenet-v2-coco-quant/model.onnx
catalog:
{catalog}
debounce:
  hold: 1500ms
sinks:
  kafka:
    brokers: {brokers}
    partitions: 2
workers: 2
{server}"#,
        root = root.display()
    );
    let path = dir.join(format!("{group}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn run_ok(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(out.status.success(), "{command:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// A running `vitrine run`; killed when dropped, so a failing test leaves none behind.
struct Pipeline {
    child: Child,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn start_pipeline(spec: &std::path::Path, log: &std::path::Path, port: u16) -> Pipeline {
    let child = Command::new(vitrine_bin())
        .args(["run"])
        .arg(spec)
        .env("VITRINE_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Pipeline { child }
}

type Viewer = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket viewer of stream `shop1`, retrying while the pipeline starts.
async fn connect_viewer(port: u16, dir: &std::path::Path) -> Viewer {
    let url = format!("ws://127.0.0.1:{port}/v1/streams/shop1/ws");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((socket, _)) => return socket,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => {
                panic!("cannot connect: {e}\n{}", std::fs::read_to_string(dir.join("vitrine.log")).unwrap_or_default())
            }
        }
    }
}

/// SIGINT, then wait: the pipeline drains, flushes and commits before it exits.
fn stop(mut pipeline: Pipeline) {
    let _ = Command::new("kill").args(["-INT", &pipeline.child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pipeline.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the pipeline did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampled_stream_flows_through_kafka_to_the_events_topic_and_viewers() {
    let broker = Broker::start();
    let dir = temp_dir("kafka-flow");
    let spec = spec(&dir, &broker.address, "flow", true);
    run_ok(Command::new(vitrine_bin()).args(["topics", "create", "--partitions", "2"]).arg(&spec));
    let port = free_port();
    let pipeline = start_pipeline(&spec, &dir.join("vitrine.log"), port);

    // A viewer connects before the first frame.
    let mut viewer = connect_viewer(port, &dir).await;

    run_ok(
        Command::new(vitrine_bin())
            .args(["sample", "--stream-id", "shop1", "--fps", "5", "--fast", "--brokers", &broker.address, "--url"])
            .arg(root().join("examples/sample/shopping.mp4")),
    );

    let events = consume(&broker.address, "vitrine.product-events", 6, Duration::from_secs(90));
    let log = std::fs::read_to_string(dir.join("vitrine.log")).unwrap();
    assert_eq!(events.len(), 6, "expected 6 product events on the topic; vitrine's log:\n{log}");
    let mut from_topic = Vec::new();
    for record in &events {
        let value: Value = serde_json::from_slice(&record.value).unwrap();
        assert_eq!(record.key, "shop1");
        assert_eq!(value["schema_version"], 1);
        let h = &record.headers;
        assert_eq!(h["ce_specversion"], "1.0");
        assert_eq!(h["ce_id"], value["event_id"].as_str().unwrap());
        assert_eq!(h["ce_type"], format!("vitrine.product.{}", value["kind"].as_str().unwrap()));
        assert!(h["ce_source"].ends_with("/streams/shop1"), "{}", h["ce_source"]);
        assert!(h["ce_time"].ends_with('Z'), "{}", h["ce_time"]);
        assert_eq!(h["content-type"], "application/json");
        from_topic.push((
            value["kind"].as_str().unwrap().to_string(),
            value["sku"].as_str().unwrap().to_string(),
            value["pts_ms"].as_i64().unwrap(),
            value["event_id"].as_str().unwrap().to_string(),
        ));
    }
    from_topic.sort_by_key(|e| e.2);
    let kinds: Vec<(&str, &str)> = from_topic.iter().map(|(k, s, _, _)| (k.as_str(), s.as_str())).collect();
    assert_eq!(
        kinds,
        vec![
            ("appeared", "MUG-ESP-01"),
            ("disappeared", "MUG-ESP-01"),
            ("appeared", "APL-GALA-1KG"),
            ("disappeared", "APL-GALA-1KG"),
            ("appeared", "ORG-VAL-2KG"),
            ("disappeared", "ORG-VAL-2KG")
        ]
    );
    // One detections message per frame.
    let detections = consume(&broker.address, "vitrine.detections", 180, Duration::from_secs(30));
    assert_eq!(detections.len(), 180);

    // The viewer got the same events.
    let mut from_socket = Vec::new();
    while from_socket.len() < 6 {
        let message =
            tokio::time::timeout(Duration::from_secs(30), viewer.next()).await.expect("events reach the viewer");
        let Some(Ok(WsMessage::Text(text))) = message else { panic!("viewer connection ended: {message:?}") };
        let v: Value = serde_json::from_str(text.as_str()).unwrap();
        if v["type"] == "event" {
            from_socket.push(v["event_id"].as_str().unwrap().to_string());
        }
    }
    let mut ids: Vec<String> = from_topic.iter().map(|e| e.3.clone()).collect();
    ids.sort();
    from_socket.sort();
    assert_eq!(from_socket, ids);
    stop(pipeline);
}

#[test]
fn frames_with_missing_headers_or_corrupt_jpegs_go_to_the_dead_letter_topic() {
    let broker = Broker::start();
    let dir = temp_dir("kafka-dead-letters");
    let spec = spec(&dir, &broker.address, "dead", false);
    run_ok(Command::new(vitrine_bin()).args(["topics", "create", "--partitions", "2"]).arg(&spec));
    // Four real frames of the sample stream.
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    run_ok(
        Command::new("ffmpeg")
            .args(["-loglevel", "error", "-i"])
            .arg(root().join("examples/sample/shopping.mp4"))
            .args(["-vf", "fps=1", "-frames:v", "4", "-q:v", "3"])
            .arg(frames.join("f%d.jpg")),
    );
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &broker.address).create().unwrap();
    let headers_at = |seq: u64, pts: u64| {
        [
            ("vitrine-stream-id", "shop1".to_string()),
            ("vitrine-seq", seq.to_string()),
            ("vitrine-pts-ms", pts.to_string()),
        ]
        .iter()
        .fold(OwnedHeaders::new(), |hs, (k, v)| hs.insert(Header { key: k, value: Some(v.as_bytes()) }))
    };
    let send = |payload: &[u8], headers: Option<OwnedHeaders>| {
        let mut record = BaseRecord::to("vitrine.frames").key("shop1").payload(payload);
        if let Some(h) = headers {
            record = record.headers(h);
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
    };
    let headers = |seq: u64| headers_at(seq, seq * 1000);
    let jpeg = |seq: u64| std::fs::read(frames.join(format!("f{}.jpg", seq + 1))).unwrap();
    for seq in 0..4u64 {
        send(&jpeg(seq), Some(headers(seq)));
    }
    send(b"a frame without headers", None);
    send(b"\xff\xd8 not really a jpeg", Some(headers(4)));
    // A producer gone wrong: a frame again, an older one, and media time going back.
    send(&jpeg(2), Some(headers(4)));
    send(&jpeg(2), Some(headers(2)));
    send(&jpeg(3), Some(headers_at(5, 100)));
    producer.flush(Duration::from_secs(10)).unwrap();

    let pipeline = start_pipeline(&spec, &dir.join("vitrine.log"), free_port());
    let letters = consume(&broker.address, "vitrine.dead-letter", 5, Duration::from_secs(60));
    let detections = consume(&broker.address, "vitrine.detections", 4, Duration::from_secs(30));
    stop(pipeline);
    let log = std::fs::read_to_string(dir.join("vitrine.log")).unwrap();
    assert_eq!(letters.len(), 5, "{log}");
    let reasons: Vec<(&str, &str)> =
        letters.iter().map(|r| (r.headers["vitrine-stage"].as_str(), r.headers["vitrine-reason"].as_str())).collect();
    let source: Vec<&str> = reasons.iter().filter(|(stage, _)| *stage == "source").map(|(_, r)| *r).collect();
    assert_eq!(source.len(), 4, "{reasons:?}");
    assert!(source[0].contains("missing header"), "{source:?}");
    assert_eq!(letters[0].value, b"a frame without headers");
    assert!(source[1].contains("a duplicate of frame 4"), "{source:?}");
    assert!(source[2].contains("older than frame 4"), "{source:?}");
    assert!(source[3].contains("media time went back"), "{source:?}");
    let by_stage: HashMap<&str, &Record> = letters.iter().map(|r| (r.headers["vitrine-stage"].as_str(), r)).collect();
    let decode = by_stage.get("decode").expect("the corrupt JPEG is refused by decode");
    assert_eq!(decode.value, b"\xff\xd8 not really a jpeg");
    assert!(!decode.headers["vitrine-reason"].is_empty());
    assert_eq!(decode.headers["vitrine-seq"], "4");
    // Every good frame was processed.
    assert_eq!(detections.len(), 4, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_change_and_a_delete_in_the_catalog_topic_reach_viewers() {
    let broker = Broker::start();
    let dir = temp_dir("kafka-catalog");
    let catalog = format!("  kafka:\n    brokers: {}\n    topic: shop.catalog", broker.address);
    let spec = spec_with_catalog(&dir, &broker.address, "catalog", true, &catalog);
    run_ok(Command::new(vitrine_bin()).args(["topics", "create", "--partitions", "2"]).arg(&spec));
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &broker.address).create().unwrap();
    let examples = root().join("examples");
    let lines = std::fs::read_to_string(examples.join("demo-catalog.jsonl")).unwrap();
    let put = |sku: &str, value: Option<&str>| {
        let mut record = BaseRecord::<str, str>::to("shop.catalog").key(sku);
        if let Some(v) = value {
            record = record.payload(v);
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
    };
    let mut mug = String::new();
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let mut item: Value = serde_json::from_str(line).unwrap();
        let image = format!("{}/{}", examples.display(), item["image"].as_str().unwrap());
        item["image"] = image.into();
        let sku = item["sku"].as_str().unwrap().to_string();
        if sku == "MUG-ESP-01" {
            mug = item.to_string();
        }
        put(&sku, Some(&item.to_string()));
    }

    let port = free_port();
    let pipeline = start_pipeline(&spec, &dir.join("vitrine.log"), port);
    let mut viewer = connect_viewer(port, &dir).await;
    // The stream at its own speed, so the mug stays on screen (3-11 s) while the catalog changes.
    let mut sampler = Command::new(vitrine_bin())
        .args(["sample", "--stream-id", "shop1", "--fps", "5", "--brokers", &broker.address, "--url"])
        .arg(examples.join("sample/shopping.mp4"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let mut seen = Vec::new();
    let mut step = 0;
    while step < 3 {
        let message = tokio::time::timeout(Duration::from_secs(30), viewer.next()).await;
        let Ok(Some(Ok(WsMessage::Text(text)))) = message else {
            panic!("viewer: {message:?}; seen {seen:#?}\n{}", std::fs::read_to_string(dir.join("vitrine.log")).unwrap())
        };
        let v: Value = serde_json::from_str(text.as_str()).unwrap();
        if v["type"] != "event" || v["sku"] != "MUG-ESP-01" {
            continue;
        }
        seen.push(v.clone());
        match (step, v["kind"].as_str().unwrap()) {
            (0, "appeared") => {
                let mut changed: Value = serde_json::from_str(&mug).unwrap();
                changed["price"] = 9.99.into();
                put("MUG-ESP-01", Some(&changed.to_string()));
                step = 1;
            }
            (1, "updated") => {
                assert_eq!(v["price"], 9.99);
                put("MUG-ESP-01", None); // tombstone: the product is deleted
                step = 2;
            }
            (2, "disappeared") => {
                let pts = v["pts_ms"].as_i64().unwrap();
                assert!(pts < 11_000, "deleted while on screen, so it leaves before the mug does: {pts}");
                step = 3;
            }
            (_, kind) => panic!("unexpected `{kind}` at step {step}: {seen:#?}"),
        }
    }
    let _ = sampler.kill();
    let _ = sampler.wait();
    stop(pipeline);
}

/// Distinct `ce_id`s of a topic, read until `settle` passes with nothing new (or `timeout`).
fn distinct_ids(brokers: &str, topic: &str, at_least: usize, timeout: Duration) -> std::collections::BTreeSet<String> {
    let records = consume(brokers, topic, usize::MAX, timeout.min(Duration::from_secs(5)));
    let mut ids: std::collections::BTreeSet<String> = records.iter().map(|r| r.headers["ce_id"].clone()).collect();
    let deadline = Instant::now() + timeout;
    while ids.len() < at_least && Instant::now() < deadline {
        let records = consume(brokers, topic, usize::MAX, Duration::from_secs(3));
        ids = records.iter().map(|r| r.headers["ce_id"].clone()).collect();
    }
    ids
}

#[test]
fn a_pipeline_killed_mid_stream_resumes_with_exactly_the_events_of_an_uninterrupted_run() {
    let broker = Broker::start();
    let dir = temp_dir("kafka-crash");
    // Two pipelines on the same frames: one runs through, one is killed and restarted.
    let make = |name: &str| {
        let path = spec(&dir, &broker.address, name, false);
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "    partitions: 2\n",
            &format!("    partitions: 2\n    detections_topic: {name}.detections\n    events_topic: {name}.events\n    dead_letter_topic: {name}.dead\n"),
        );
        // Skipping unchanged frames, so that a restart (whose change check starts afresh) is
        // shown to give the same events as well.
        let text = text + "infer:\n  max_skip: 10\n";
        std::fs::write(&path, text).unwrap();
        run_ok(Command::new(vitrine_bin()).args(["topics", "create", "--partitions", "2"]).arg(&path));
        path
    };
    let clean_spec = make("clean");
    let crash_spec = make("crash");
    let clean = start_pipeline(&clean_spec, &dir.join("clean.log"), free_port());
    let crash = start_pipeline(&crash_spec, &dir.join("crash-1.log"), free_port());
    // The stream at its own speed (36 s), so the kill lands in the middle of it.
    let mut sampler = Command::new(vitrine_bin())
        .args(["sample", "--stream-id", "shop1", "--fps", "5", "--brokers", &broker.address, "--url"])
        .arg(root().join("examples/sample/shopping.mp4"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Kill -9 while the apple is on screen (14-22 s of media time: frames 70-110).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = distinct_ids(&broker.address, "crash.detections", 0, Duration::from_secs(1)).len();
        if seen >= 85 {
            break;
        }
        assert!(Instant::now() < deadline, "the crash pipeline processed only {seen} frames");
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut crash = crash;
    crash.child.kill().unwrap(); // SIGKILL: no draining, no flushing, no committing
    crash.child.wait().unwrap();
    let at_kill = distinct_ids(&broker.address, "crash.detections", 0, Duration::from_secs(1)).len();
    assert!(at_kill < 180, "the kill came after the end of the stream ({at_kill} frames)");
    let crash = start_pipeline(&crash_spec, &dir.join("crash-2.log"), free_port());

    assert!(sampler.wait().unwrap().success());
    let clean_frames = distinct_ids(&broker.address, "clean.detections", 180, Duration::from_secs(60));
    let crash_frames = distinct_ids(&broker.address, "crash.detections", 180, Duration::from_secs(60));
    stop(clean);
    stop(crash);
    let logs = || {
        ["clean.log", "crash-1.log", "crash-2.log"]
            .iter()
            .map(|f| format!("== {f}\n{}", std::fs::read_to_string(dir.join(f)).unwrap_or_default()))
            .collect::<String>()
    };
    assert_eq!(clean_frames.len(), 180, "{}", logs());
    assert_eq!(crash_frames.len(), 180, "every frame is processed despite the kill\n{}", logs());

    let clean_events = distinct_ids(&broker.address, "clean.events", 6, Duration::from_secs(10));
    let crash_events = distinct_ids(&broker.address, "crash.events", 6, Duration::from_secs(10));
    assert_eq!(clean_events.len(), 6, "{}", logs());
    assert_eq!(crash_events, clean_events, "after de-duplication on the event id, the same events\n{}", logs());
}

#[test]
fn frames_over_the_message_limit_travel_by_reference() {
    let broker = Broker::start();
    let dir = temp_dir("kafka-by-reference");
    let spill = dir.join("spill");
    let hls = dir.join("hls");
    let spec = spec(&dir, &broker.address, "refs", true);
    let text = std::fs::read_to_string(&spec).unwrap().replace(
        "    streams: [shop1]\n",
        &format!("    streams: [shop1]\n    frame_refs_dir: {}\n    hls_dir: {}\n", spill.display(), hls.display()),
    );
    std::fs::write(&spec, text).unwrap();
    run_ok(Command::new(vitrine_bin()).args(["topics", "create", "--partitions", "2"]).arg(&spec));
    // The sample's frames are 40-60 KB: with a 30 KB inline limit, the large ones go by reference.
    run_ok(
        Command::new(vitrine_bin())
            .args(["sample", "--stream-id", "shop1", "--fps", "5", "--fast", "--max-inline-bytes", "30000"])
            .args(["--brokers", &broker.address, "--spill-dir"])
            .arg(&spill)
            .arg("--hls-dir")
            .arg(&hls)
            .arg("--url")
            .arg(root().join("examples/sample/shopping.mp4")),
    );
    let frames = consume(&broker.address, "vitrine.frames", 180, Duration::from_secs(30));
    let by_reference = frames.iter().filter(|r| r.headers.contains_key("vitrine-frame-url")).count();
    assert!(by_reference > 100, "only {by_reference} of {} frames went by reference", frames.len());
    assert!(frames.iter().filter(|r| r.headers.contains_key("vitrine-frame-url")).all(|r| r.value.is_empty()));

    let port = free_port();
    let pipeline = start_pipeline(&spec, &dir.join("vitrine.log"), port);
    let detections = consume(&broker.address, "vitrine.detections", 180, Duration::from_secs(60));
    let events = consume(&broker.address, "vitrine.product-events", 6, Duration::from_secs(30));
    // The sampler's live HLS, served by the pipeline for the viewer page.
    let streams: Value = serde_json::from_str(&http_get(port, "/v1/streams")).unwrap();
    let playback = &streams["streams"][0]["playback"];
    let playlist = http_get(port, "/v1/streams/shop1/hls/live.m3u8");
    assert_eq!(playback["kind"], "hls", "{streams}");
    assert_eq!(playback["media_origin_ms"].as_i64(), vitrine_connectors::hls::origin_of(&playlist), "{playlist}");
    let segment = playlist.lines().rfind(|l| l.ends_with(".ts")).expect(&playlist);
    assert_eq!(http_get_bytes(port, &format!("/v1/streams/shop1/hls/{segment}"))[0], 0x47, "an MPEG-TS segment");
    stop(pipeline);
    let log = std::fs::read_to_string(dir.join("vitrine.log")).unwrap();
    assert_eq!(detections.len(), 180, "{log}");
    assert_eq!(events.len(), 6, "{log}");
}

#[test]
fn the_sampler_says_what_is_wrong_and_reconnects_to_a_stream_that_drops() {
    let broker = Broker::start();
    let dir = temp_dir("sampler");
    let sample = root().join("examples/sample/shopping.mp4");
    let sampler = |extra: &[&str]| {
        let mut c = Command::new(vitrine_bin());
        c.args(["sample", "--stream-id", "live1", "--fps", "5", "--brokers", &broker.address]).args(extra);
        c.output().unwrap()
    };

    let out = sampler(&["--ffmpeg", "/nonexistent/ffmpeg", "--url", sample.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("Install ffmpeg"), "{stderr}");

    let out = sampler(&["--url", "/no/such/video.mp4"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("/no/such/video.mp4"), "{stderr}");

    // A live stream over TCP (MPEG-TS) that drops after 40% of its bytes, then comes back whole.
    let ts = dir.join("live.ts");
    run_ok(
        Command::new("ffmpeg")
            .args(["-loglevel", "error", "-i"])
            .arg(&sample)
            .args(["-t", "10", "-c", "copy", "-f", "mpegts"])
            .arg(&ts),
    );
    let bytes = std::fs::read(&ts).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::Write;
        for cut in [bytes.len() * 2 / 5, bytes.len()] {
            let (mut conn, _) = listener.accept().unwrap();
            let _ = conn.write_all(&bytes[..cut]);
        }
        // Then the stream is gone for good: connections are refused.
    });
    let hls_dir = dir.join("hls");
    let out = sampler(&[
        "--max-retries",
        "1",
        "--hls-dir",
        hls_dir.to_str().unwrap(),
        "--url",
        &format!("tcp://127.0.0.1:{port}"),
    ]);
    server.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("reconnecting"), "{stderr}");
    assert!(stderr.contains("giving up"), "a stream that stays down ends the sampler with a reason: {stderr}");

    let frames = consume(&broker.address, "vitrine.frames", 1000, Duration::from_secs(10));
    let mut seqs: Vec<u64> = frames.iter().map(|r| r.headers["vitrine-seq"].parse().unwrap()).collect();
    seqs.sort();
    assert!(
        seqs.len() > 50,
        "the frames of both connections (10 s at 5 frames/s = 50, plus the first 40%): {}",
        seqs.len()
    );
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>(), "one gapless stream across the reconnect");

    // The live HLS carries on across the reconnect too: after a discontinuity, its segments
    // are stamped from the media time of the first frame of the second connection.
    let mut frames: Vec<(i64, i64)> = frames
        .iter()
        .map(|r| (r.headers["vitrine-pts-ms"].parse().unwrap(), r.headers["vitrine-captured-at-ms"].parse().unwrap()))
        .collect();
    frames.sort();
    let reconnected_at = frames.windows(2).max_by_key(|w| w[1].1 - w[0].1).map(|w| w[1].0).unwrap();
    let playlist = std::fs::read_to_string(hls_dir.join("live1/live.m3u8")).unwrap();
    let origin = vitrine_connectors::hls::origin_of(&playlist).expect("the playlist gives its origin");
    let after =
        playlist.split("#EXT-X-DISCONTINUITY\n").nth(1).unwrap_or_else(|| panic!("no discontinuity:\n{playlist}"));
    let stamp = vitrine_connectors::time_format::rfc3339(origin + reconnected_at);
    assert!(
        after.starts_with(&format!("#EXT-X-PROGRAM-DATE-TIME:{stamp}\n")),
        "second run from {reconnected_at} ms:\n{playlist}"
    );
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
    for segment in playlist.lines().filter(|l| l.ends_with(".ts")) {
        assert!(hls_dir.join("live1").join(segment).exists(), "{segment}");
    }
}
