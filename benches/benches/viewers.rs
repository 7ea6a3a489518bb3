//! Viewers: N WebSocket viewers on loopback against the real server, measuring the server's
//! memory per connection and event-to-viewer delivery (from an event's `emitted_at_ms` to its
//! arrival at each viewer). The baseline, measured in the same run first, is one viewer alone.
//!
//! - `TARGET=run` (default): `vitrine run` serving its own viewers while the demo pipeline runs
//!   (the sample stream in real time, looping).
//! - `TARGET=serve`: the viewer tier, `vitrine serve`, following the state topic of a real
//!   broker (Tansu) into which this bench writes a product event every 500 ms, as a dataflow
//!   would (so delivery includes the Kafka hop).
//!
//! ```sh
//! cargo build --release -p vitrine-pipeline --bin vitrine
//! cargo bench -p vitrine-benches --bench viewers                          # VIEWERS=10000
//! TARGET=serve VIEWERS=50000 cargo bench -p vitrine-benches --bench viewers
//! ```
//!
//! Goals: issue 6, 10,000 viewers under 16 KB of server memory each, p99 delivery under 1 s;
//! issue 12, 50,000 viewers of one `vitrine serve` under 8 KB each, p99 under 1 s. Each side
//! needs about VIEWERS + 100 file descriptors: the bench raises its own and the server's limit
//! with `prlimit` (root, or a hard limit that high). Viewers connect to 127.0.0.1..4 (the
//! server listens on all loopback addresses) to stay under the ~28k ephemeral ports of one
//! source and destination address pair.

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use tokio_tungstenite::tungstenite::Message;
use vitrine_tests::{demo_spec, free_port, temp_dir, vitrine_bin, Broker};

/// Destination addresses the viewers are spread over.
const LOOPBACKS: [&str; 4] = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"];

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// This process's file-descriptor limits (soft, hard), from /proc.
fn fd_limits() -> (usize, usize) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let mut numbers = line.split_whitespace().filter_map(|w| w.parse().ok());
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0))
}

/// Raises this process's file-descriptor limit to `n` (prlimit: needs root, or a hard limit
/// that high); whether the server can be given as many.
fn raise_fd_limit(n: usize) -> bool {
    if fd_limits().0 >= n {
        return true;
    }
    let raised = Command::new("prlimit")
        .args(["--pid", &std::process::id().to_string(), &format!("--nofile={n}:{n}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    raised || fd_limits().0 >= n
}

/// The server on `port` (all loopback addresses), once it listens: `vitrine run` of the demo
/// pipeline, or `vitrine serve` on `spec`.
fn start_server(port: u16, serve: Option<&std::path::Path>) -> Child {
    let dir = temp_dir("bench-viewers");
    let (command, path) = match serve {
        Some(spec) => ("serve", spec.to_path_buf()),
        None => {
            let path = dir.join("viewers.yaml");
            std::fs::write(&path, demo_spec(&dir.join("out"))).unwrap();
            ("run", path)
        }
    };
    let log = dir.join("vitrine.log");
    // The server inherits this process's raised descriptor limit.
    let mut server = Command::new(vitrine_bin())
        .arg(command)
        .arg(&path)
        .env("VITRINE_LISTEN", format!("0.0.0.0:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
        || !vitrine_tests::http_response(port, "/readyz").0.starts_with("http/1.0 200")
    {
        if let Ok(Some(status)) = server.try_wait() {
            let why = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("vitrine exited ({status}); is the release build current (see the command above)?\n{why}");
        }
        assert!(Instant::now() < deadline, "vitrine did not listen within 60 s; see {}", log.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

/// (event id, ms from emission to arrival) of every event every viewer got.
type Deliveries = Arc<Mutex<Vec<(String, i64)>>>;

async fn viewer(url: String, deliveries: Deliveries, connected: Arc<std::sync::atomic::AtomicUsize>) {
    let mut socket = loop {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((socket, _)) => break socket,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    connected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Text(text) = message {
            let arrived = now_ms();
            let v: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
            if v["type"] == "event" {
                let took = arrived - v["emitted_at_ms"].as_i64().unwrap();
                deliveries.lock().unwrap().push((v["event_id"].as_str().unwrap().to_string(), took));
            }
        }
    }
}

fn percentile(sorted: &[i64], q: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Opens `n` viewers, waits for `events` events to reach them all, returns the deliveries.
async fn crowd(urls: &[String], n: usize, events: usize, server_pid: u32) -> (Vec<i64>, u64, f64) {
    let deliveries: Deliveries = Arc::default();
    let connected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let before = rss_kb(server_pid);
    let started = Instant::now();
    for i in 0..n {
        tokio::spawn(viewer(urls[i % urls.len()].clone(), deliveries.clone(), connected.clone()));
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    while connected.load(std::sync::atomic::Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(started.elapsed() < Duration::from_secs(300), "only {connected:?} of {n} viewers connected");
    }
    let connect_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_viewer_bytes = (rss_kb(server_pid).saturating_sub(before) * 1024) / n as u64;
    // Events sent after everyone was connected: count those that reached all n viewers.
    let skip: std::collections::HashSet<String> = deliveries.lock().unwrap().iter().map(|d| d.0.clone()).collect();
    deliveries.lock().unwrap().clear();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let d = deliveries.lock().unwrap();
        let mut per_event: std::collections::HashMap<&str, usize> = Default::default();
        for (id, _) in d.iter().filter(|(id, _)| !skip.contains(id)) {
            *per_event.entry(id.as_str()).or_default() += 1;
        }
        if per_event.values().filter(|c| **c >= n).count() >= events || Instant::now() > deadline {
            break;
        }
    }
    let mut took: Vec<i64> =
        deliveries.lock().unwrap().iter().filter(|(id, _)| !skip.contains(id)).map(|d| d.1).collect();
    took.sort_unstable();
    (took, per_viewer_bytes, connect_s)
}

/// Writes a product event to the state topic every 500 ms, as a dataflow would, until `stop`.
fn publish_events(brokers: &str, topic: &str, stop: Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<()> {
    let producer: ThreadedProducer<DefaultProducerContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).set("linger.ms", "0").create().unwrap();
    let topic = topic.to_string();
    std::thread::spawn(move || {
        let mut i = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let kind = if i.is_multiple_of(2) { "appeared" } else { "disappeared" };
            let event = serde_json::json!({
                "schema_version": 1, "event_id": format!("bench-{i}"), "kind": kind, "stream_id": "demo",
                "sku": "MUG-ESP-01", "label": "cup", "title": "Espresso mug", "price": 14.9, "currency": "EUR",
                "in_stock": true, "image_url": null, "product_url": null,
                "bbox": if kind == "appeared" { serde_json::json!({"x0": 0.4, "y0": 0.3, "x1": 0.6, "y1": 0.6}) } else { serde_json::Value::Null },
                "score": 0.9, "pts_ms": i * 500, "emitted_at_ms": now_ms()
            })
            .to_string();
            let _ = producer.send(BaseRecord::to(&topic).partition(0).key("demo/MUG-ESP-01").payload(&event));
            i += 1;
            std::thread::sleep(Duration::from_millis(500));
        }
        let _ = producer.flush(Duration::from_secs(5));
    })
}

fn main() {
    let n: usize = std::env::var("VIEWERS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let serve = std::env::var("TARGET").is_ok_and(|t| t == "serve");
    let fds = n + 1000;
    if !raise_fd_limit(fds) {
        let (_, hard) = fd_limits();
        println!(
            "viewers: {n} viewers need {fds} file descriptors in this process and in the server, and this \
             machine's hard limit is {hard}, which this user cannot raise (prlimit/ulimit -n): run with \
             VIEWERS={} at most, or raise the limit as root",
            hard.saturating_sub(1000)
        );
        std::process::exit(2);
    }
    let port = free_port();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The viewer tier needs a broker, the state topic and a stream of events.
    let (broker, publisher, mut server) = if serve {
        let broker = Broker::start();
        let dir = temp_dir("bench-viewer-tier");
        let spec = dir.join("serve.yaml");
        std::fs::write(
            &spec,
            format!(
                "name: bench\nsources:\n  - kind: kafka\n    brokers: {b}\n    streams: [demo]\nmodel:\n  path: {root}/models/zoo/ssd-mobilenet-v2-coco-quant/model.onnx\n\
                 catalog:\n  path: {root}/examples/demo-catalog.jsonl\n  watch: false\n\
                 sinks:\n  kafka:\n    brokers: {b}\n    partitions: 1\nserver:\n  viewer: false\n  max_viewers: {max}\n",
                b = broker.address,
                max = n + 100,
                root = vitrine_tests::root().display()
            ),
        )
        .unwrap();
        let created = Command::new(vitrine_bin()).args(["topics", "create", "--partitions", "1"]).arg(&spec).status();
        assert!(created.unwrap().success());
        let server = start_server(port, Some(&spec));
        let publisher = publish_events(&broker.address, "vitrine.on-screen", stop.clone());
        (Some(broker), Some(publisher), server)
    } else {
        (None, None, start_server(port, None))
    };
    let urls: Vec<String> = LOOPBACKS.iter().map(|host| format!("ws://{host}:{port}/v1/streams/demo/ws")).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async {
        let (alone, _, _) = crowd(&urls[..1], 1, 2, server.id()).await;
        let (many, bytes, connect_s) = crowd(&urls, n, 2, server.id()).await;
        let what = if serve { "vitrine serve following the state topic (Tansu)" } else { "the demo pipeline running" };
        println!("viewers: {n} WebSocket viewers on loopback, {what} (release build)");
        println!(
            "  connected in {connect_s:.1} s; server memory {:.1} KB a viewer (RSS growth / viewers)",
            bytes as f64 / 1024.0
        );
        println!(
            "  baseline, one viewer: delivery p50 {} ms, p99 {} ms ({} deliveries)",
            percentile(&alone, 0.5),
            percentile(&alone, 0.99),
            alone.len()
        );
        println!(
            "  {n} viewers: delivery p50 {} ms, p99 {} ms ({} deliveries); p99 {:.1}x the baseline",
            percentile(&many, 0.5),
            percentile(&many, 0.99),
            many.len(),
            percentile(&many, 0.99) as f64 / percentile(&alone, 0.99).max(1) as f64
        );
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(p) = publisher {
        let _ = p.join();
    }
    let _ = server.kill();
    let _ = server.wait();
    drop(broker);
    runtime.shutdown_timeout(Duration::from_secs(1));
}
