//! Viewers: N WebSocket viewers on loopback against the real server while the demo pipeline
//! runs (the sample stream in real time, looping), measuring the server's memory per
//! connection and event-to-viewer delivery (from an event's `emitted_at_ms` to its arrival at
//! each viewer). The baseline, measured in the same run first, is one viewer alone.
//!
//!     cargo build --release -p vitrine-pipeline --bin vitrine
//!     cargo bench -p vitrine-benches --bench viewers            # VIEWERS=10000 by default
//!
//! Goals (issue 6): 10,000 viewers under 16 KB of server memory each, p99 delivery under 1 s.
//! Needs about VIEWERS + 100 file descriptors in each process (`ulimit -n`).

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use vitrine_tests::{demo_spec, free_port, temp_dir, vitrine_bin};

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The demo pipeline and its server on `port`, once it listens.
fn start_server(port: u16) -> Child {
    let dir = temp_dir("bench-viewers");
    let spec = demo_spec(&dir.join("out"));
    let path = dir.join("viewers.yaml");
    std::fs::write(&path, spec).unwrap();
    let log = dir.join("vitrine.log");
    let mut server = Command::new(vitrine_bin())
        .arg("run")
        .arg(&path)
        .env("VITRINE_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
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
async fn crowd(url: &str, n: usize, events: usize, server_pid: u32) -> (Vec<i64>, u64, f64) {
    let deliveries: Deliveries = Arc::default();
    let connected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let before = rss_kb(server_pid);
    let started = Instant::now();
    for i in 0..n {
        tokio::spawn(viewer(url.to_string(), deliveries.clone(), connected.clone()));
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    while connected.load(std::sync::atomic::Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(started.elapsed() < Duration::from_secs(120), "only {connected:?} of {n} viewers connected");
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

fn main() {
    let n: usize = std::env::var("VIEWERS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let port = free_port();
    let mut server = start_server(port);
    let url = format!("ws://127.0.0.1:{port}/v1/streams/demo/ws");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async {
        let (alone, _, _) = crowd(&url, 1, 2, server.id()).await;
        let (many, bytes, connect_s) = crowd(&url, n, 2, server.id()).await;
        println!("viewers: {n} WebSocket viewers on loopback, the demo pipeline running (release build)");
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
    let _ = server.kill();
    let _ = server.wait();
    runtime.shutdown_timeout(Duration::from_secs(1));
}
