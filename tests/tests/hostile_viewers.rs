//! Viewers from the open internet, against `vitrine serve` fed by the real broker: one that
//! connects and never reads while a burst of 20,000 events goes out, and 1,000 that connect and
//! vanish without a goodbye. The server's memory and connections stay bounded, the other
//! viewers stay current, and afterwards it serves a new viewer as before.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use vitrine_tests::kafka_runs::{create_topics, kafka_spec};
use vitrine_tests::{free_port, http_get, http_response, metric_sample, prometheus_families, temp_dir, Broker};

const STATE_TOPIC: &str = "hostile.on-screen";

/// `vitrine serve` on a fresh state topic; killed when dropped.
struct Serve {
    child: Child,
    port: u16,
}

impl Serve {
    fn start(dir: &Path, brokers: &str) -> Serve {
        let rest = format!(
            "sinks:\n  kafka:\n    brokers: {brokers}\n    state_topic: {STATE_TOPIC}\n    partitions: 1\n\
             server:\n  viewer: false\n"
        );
        let spec = kafka_spec(dir, "hostile", brokers, "hostile", &["shop1"], &rest);
        create_topics(&spec, 1);
        let port = free_port();
        let log = dir.join("serve.log");
        let child = Command::new(vitrine_tests::vitrine_bin())
            .arg("serve")
            .arg(&spec)
            .env("VITRINE_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && http_response(port, "/readyz").0.starts_with("http/1.0 200"))
        {
            assert!(Instant::now() < deadline, "never ready:\n{}", std::fs::read_to_string(&log).unwrap());
            std::thread::sleep(Duration::from_millis(50));
        }
        Serve { child, port }
    }

    /// Resident memory, in MB.
    fn rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kb / 1024.0
    }

    fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).unwrap().count()
    }

    fn viewers(&self) -> f64 {
        metric_sample(&prometheus_families(&http_get(self.port, "/metrics")), "vitrine_viewers", &[]).unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebSocket handshake for `shop1` on a plain socket, which the caller then never reads.
fn connect_and_never_read(port: u16) -> std::net::TcpStream {
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        socket,
        "GET /v1/streams/shop1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    socket.read_exact(&mut head).unwrap();
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    socket
}

/// Product events of `shop1` on the state topic: `count` of them, as fast as the producer goes.
fn publish(brokers: &str, from: u64, count: u64) {
    let producer: ThreadedProducer<DefaultProducerContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).set("linger.ms", "5").create().unwrap();
    for i in from..from + count {
        let kind = if i % 2 == 0 { "appeared" } else { "disappeared" };
        let event = serde_json::json!({
            "schema_version": 1, "event_id": format!("e-{i}"), "kind": kind, "stream_id": "shop1",
            "sku": "MUG-ESP-01", "label": "cup", "title": "Espresso mug", "price": 14.9, "currency": "EUR",
            "in_stock": true, "image_url": null, "product_url": null,
            "bbox": if kind == "appeared" { serde_json::json!({"x0": 0.4, "y0": 0.3, "x1": 0.6, "y1": 0.6}) } else { Value::Null },
            "score": 0.9, "pts_ms": i * 40, "emitted_at_ms": 0
        })
        .to_string();
        let mut record = BaseRecord::to(STATE_TOPIC).partition(0).key("shop1/MUG-ESP-01").payload(&event);
        while let Err((_, r)) = producer.send(record) {
            producer.poll(Duration::from_millis(10));
            record = r;
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Reads `shop1` until it has seen event `e-{last}` (as an event, or the snapshot after it).
async fn current_within(port: u16, last: u64, within: Duration) {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/v1/streams/shop1/ws"))
        .await
        .expect("a new viewer connects");
    let target = format!("e-{last}");
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next()).await;
        let Ok(Some(Ok(Message::Text(text)))) = message else { panic!("no e-{last} within {within:?}: {message:?}") };
        let m: Value = serde_json::from_str(text.as_str()).unwrap();
        let seen = match m["type"].as_str() {
            Some("event") => m["event_id"] == target.as_str(),
            // Odd events take the mug off screen (a snapshot after one is empty), even ones put
            // it on (the snapshot holds the event that did).
            Some("snapshot") => {
                let products = m["products"].as_array().unwrap();
                if last % 2 == 1 {
                    products.is_empty()
                } else {
                    products.iter().any(|p| p["event_id"] == target.as_str())
                }
            }
            _ => false,
        };
        if seen {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_never_reads_holds_up_nobody_and_costs_a_bounded_queue() {
    let broker = Broker::start();
    let dir = temp_dir("hostile-never-reads");
    let serve = Serve::start(&dir, &broker.address);
    let before = serve.rss_mb();
    let idle: Vec<std::net::TcpStream> = (0..5).map(|_| connect_and_never_read(serve.port)).collect();

    // A reader connected all along keeps up with a burst of 20,000 events (about 8 MB).
    let port = serve.port;
    let reader = tokio::spawn(async move { current_within(port, 19_999, Duration::from_secs(90)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let brokers = broker.address.clone();
    tokio::task::spawn_blocking(move || publish(&brokers, 0, 20_000)).await.unwrap();
    reader.await.unwrap();
    // So does one that comes after the burst.
    current_within(serve.port, 19_999, Duration::from_secs(30)).await;

    // What the sockets that never read cost: their kernel buffers and a bounded queue each
    // (a backlog of the burst would be 8 MB a viewer, 40 MB in all).
    let grown = serve.rss_mb() - before;
    let families = prometheus_families(&http_get(serve.port, "/metrics"));
    let resnapshots = metric_sample(&families, "vitrine_viewer_resnapshots_total", &[]).unwrap_or(0.0);
    eprintln!("never-reading viewers: server grew {grown:.1} MB; {resnapshots} snapshots instead of a backlog");
    assert!(grown < 16.0, "the server grew {grown:.1} MB with {} viewers that never read", idle.len());
    assert!(resnapshots >= idle.len() as f64, "each viewer that fell behind is given a snapshot, not a backlog");
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_viewers_that_vanish_leave_nothing_behind() {
    let broker = Broker::start();
    let dir = temp_dir("hostile-vanish");
    let serve = Serve::start(&dir, &broker.address);
    let brokers = broker.address.clone();
    tokio::task::spawn_blocking(move || publish(&brokers, 0, 3)).await.unwrap();
    current_within(serve.port, 2, Duration::from_secs(30)).await;
    let (files, rss) = (serve.open_files(), serve.rss_mb());

    // Five waves of 200 viewers that connect, get their hello, and drop the connection
    // (no close frame), while events keep coming.
    for wave in 0..5u64 {
        let mut sockets = Vec::new();
        for _ in 0..200 {
            let url = format!("ws://127.0.0.1:{}/v1/streams/shop1/ws", serve.port);
            let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("a viewer connects");
            let hello = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.unwrap();
            assert!(matches!(hello, Some(Ok(Message::Text(_)))), "{hello:?}");
            sockets.push(socket);
        }
        let brokers = broker.address.clone();
        tokio::task::spawn_blocking(move || publish(&brokers, 3 + wave * 2, 2)).await.unwrap();
        for socket in sockets {
            // Dropping the stream without a close handshake: the TCP connection just ends.
            drop(socket.into_inner());
        }
    }

    // The server notices every one of them, and goes on serving.
    let deadline = Instant::now() + Duration::from_secs(30);
    while serve.viewers() > 0.0 {
        assert!(Instant::now() < deadline, "{} viewers still counted", serve.viewers());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    current_within(serve.port, 12, Duration::from_secs(30)).await;
    let (files_after, rss_after) = (serve.open_files(), serve.rss_mb());
    assert!(files_after <= files + 5, "open files {files} -> {files_after}");
    assert!(rss_after - rss < 32.0, "memory {rss:.1} -> {rss_after:.1} MB after 1,000 viewers came and went");
}
