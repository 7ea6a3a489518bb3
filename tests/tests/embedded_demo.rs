//! The whole embedded path on the demo spec: the sample stream sampled in real time through
//! ffmpeg, the real SSD model, matching by the catalog's pictures, debounce, the catalog join (a
//! price change, and a picture swapped for another product's, while on screen), WebSocket
//! viewers, and Parquet read back with DuckDB.
//!
//! The sample stream's timeline (scripts/make-sample-stream.sh): cup 3-11 s, apple 14-22 s,
//! orange 25-33 s of media time. Tolerance: events must carry media times within 1 s of
//! those (frames are 200 ms apart at 5 frames/s; the detector may miss a frame at the edges).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use vitrine_tests::{demo_spec, duckdb, free_port, http_get, replace, root, temp_dir, vitrine_bin};

const TOLERANCE_MS: i64 = 1000;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Socket {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio_tungstenite::connect_async(url).await {
            Ok((socket, _)) => return socket,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot connect to {url}: {e}"),
        }
    }
}

/// The next JSON message, or None when the connection closed.
async fn next_json(socket: &mut Socket) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(60), socket.next()).await.expect("a message within 60 s")? {
            Ok(Message::Text(text)) => return Some(serde_json::from_str(text.as_str()).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

fn near(events: &[Value], kind: &str, sku: &str, want_ms: i64) {
    let found: Vec<i64> =
        events.iter().filter(|e| e["kind"] == kind && e["sku"] == sku).map(|e| e["pts_ms"].as_i64().unwrap()).collect();
    assert_eq!(found.len(), 1, "expected one `{kind}` of {sku}, got {found:?} in {events:#?}");
    assert!(
        (found[0] - want_ms).abs() <= TOLERANCE_MS,
        "{kind} {sku} at {} ms, expected {want_ms} ms ± {TOLERANCE_MS}",
        found[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_products_in_sync_and_writes_the_same_events_to_parquet() {
    let root = root();
    let dir = temp_dir("demo");
    let out = dir.join("out");
    // The demo spec, with its outputs in a temp folder, a finite stream and a catalog copy the
    // test can edit while the job runs.
    let examples = root.join("examples");
    let catalog = dir.join("catalog.jsonl");
    let catalog_text = std::fs::read_to_string(examples.join("demo-catalog.jsonl")).unwrap();
    let catalog_text = replace(&catalog_text, "\"sample/", &format!("\"{}/sample/", examples.display()));
    std::fs::write(&catalog, &catalog_text).unwrap();
    let mut spec = replace(&demo_spec(&out), "loop: true", "loop: false");
    let demo_catalog = format!("path: {}/demo-catalog.jsonl", examples.display());
    spec = replace(&spec, &demo_catalog, &format!("path: {}\n  poll: 200ms", catalog.display()));
    let spec_path = dir.join("demo.yaml");
    std::fs::write(&spec_path, spec).unwrap();

    let port = free_port();
    let log = std::fs::File::create(dir.join("vitrine.log")).unwrap();
    let mut child = Command::new(vitrine_bin())
        .args(["run", "--exit-when-done"])
        .arg(&spec_path)
        .env("VITRINE_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let url = format!("ws://127.0.0.1:{port}/v1/streams/demo/ws");

    let mut viewer = connect(&url).await;
    let hello = next_json(&mut viewer).await.unwrap();
    assert_eq!(
        (hello["type"].as_str(), hello["protocol"].as_u64(), hello["stream_id"].as_str()),
        (Some("hello"), Some(1), Some("demo"))
    );
    let snapshot = next_json(&mut viewer).await.unwrap();
    assert_eq!(snapshot["type"], "snapshot");

    let mut events = Vec::new();
    let mut late_snapshot = None;
    while let Some(message) = next_json(&mut viewer).await {
        if message["type"] != "event" {
            continue;
        }
        if message["kind"] == "appeared" && message["sku"] == "MUG-ESP-01" {
            // A viewer joining now must get the mug in its snapshot...
            let mut late = connect(&url).await;
            assert_eq!(next_json(&mut late).await.unwrap()["type"], "hello");
            late_snapshot = next_json(&mut late).await;
            // The server's counters say the same, in Prometheus text format.
            let metrics = http_get(port, "/metrics");
            let value = |name: &str| -> f64 {
                let line =
                    metrics.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {metrics}"));
                line.rsplit(' ').next().unwrap().parse().unwrap()
            };
            assert!(value("vitrine_frames_processed_total{stream=\"demo\"}") >= 15.0, "{metrics}");
            assert!(value("vitrine_product_events_total") >= 1.0, "{metrics}");
            assert_eq!(value("vitrine_viewers"), 2.0, "{metrics}");
            assert!(value("vitrine_media_time_ms{stream=\"demo\"}") >= 3000.0, "{metrics}");
            // ...and a price change while it is on screen reaches viewers as `updated`.
            std::fs::write(&catalog, catalog_text.replace("\"price\": 14.90", "\"price\": 12.90")).unwrap();
        }
        if message["kind"] == "appeared" && message["sku"] == "APL-GALA-1KG" {
            // The shop swaps the apple's picture for another product's while the apple is on
            // screen: the apple no longer looks like its product, and its card goes.
            let changed = catalog_text.replace("\"price\": 14.90", "\"price\": 12.90").replace(
                &format!("{}/sample/images/apple.jpg", examples.display()),
                &format!("{}/market-show/pictures/MOTO-RED-125.jpg", examples.display()),
            );
            assert_ne!(changed, catalog_text.replace("\"price\": 14.90", "\"price\": 12.90"));
            std::fs::write(&catalog, changed).unwrap();
        }
        events.push(message);
    }
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(dir.join("vitrine.log")).unwrap();
    assert!(status.success(), "vitrine failed:\n{log}");

    let late_snapshot = late_snapshot.expect("the mug appeared");
    assert_eq!(late_snapshot["type"], "snapshot");
    let skus: Vec<&str> =
        late_snapshot["products"].as_array().unwrap().iter().map(|p| p["sku"].as_str().unwrap()).collect();
    assert_eq!(skus, vec!["MUG-ESP-01"], "{late_snapshot}");

    near(&events, "appeared", "MUG-ESP-01", 3000);
    near(&events, "disappeared", "MUG-ESP-01", 11000);
    near(&events, "appeared", "APL-GALA-1KG", 14000);
    // Re-matched on its new picture (catalog poll 200 ms, the next crop within `match.every`,
    // then debounce's 1.5 s hold): gone seconds before the apple leaves at 22 s.
    let gone = |sku: &str| {
        events.iter().find(|e| e["kind"] == "disappeared" && e["sku"] == sku).map(|e| e["pts_ms"].as_i64().unwrap())
    };
    let apple_gone = gone("APL-GALA-1KG").expect("the apple's card goes");
    assert!((14000..19000).contains(&apple_gone), "the apple's card went at {apple_gone} ms: {events:#?}");
    near(&events, "appeared", "ORG-VAL-2KG", 25000);
    near(&events, "disappeared", "ORG-VAL-2KG", 33000);
    let updated: Vec<&Value> = events.iter().filter(|e| e["kind"] == "updated" && e["sku"] == "MUG-ESP-01").collect();
    assert_eq!(updated.len(), 1, "{events:#?}");
    assert_eq!((updated[0]["sku"].as_str(), updated[0]["price"].as_f64()), (Some("MUG-ESP-01"), Some(12.90)));
    let pts = updated[0]["pts_ms"].as_i64().unwrap();
    assert!((3000..11000).contains(&pts), "the update belongs to the mug's time on screen, got {pts}");
    let appeared = events.iter().find(|e| e["kind"] == "appeared" && e["sku"] == "MUG-ESP-01").unwrap();
    assert!(appeared["image_url"].as_str().unwrap().starts_with("/v1/images/"), "{appeared}");
    assert_eq!(appeared["title"], "Stoneware espresso cup");

    // Parquet, read back with DuckDB, holds the same events.
    let mut from_socket: Vec<(String, String, String, i64)> = events
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_string();
            (s("event_id"), s("kind"), s("sku"), e["pts_ms"].as_i64().unwrap())
        })
        .collect();
    from_socket.sort();
    let rows = duckdb(&format!(
        "SELECT event_id, kind, sku, pts_ms FROM read_parquet('{}/parquet/product_events/**/*.parquet', hive_partitioning = true) ORDER BY ALL",
        out.display()
    ));
    let from_parquet: Vec<(String, String, String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().into(),
                r[1].as_str().unwrap().into(),
                r[2].as_str().unwrap().into(),
                r[3].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(from_parquet, from_socket);
    // A detections row per box, partitioned by date: the frames with a product in them (24 of
    // the 36 s at 5 frames/s) have boxes, and the seq of each is one of the 180 frames.
    let frames = duckdb(&format!(
        "SELECT count(DISTINCT seq), max(seq), count(DISTINCT dt) FROM read_parquet('{}/parquet/detections/**/*.parquet', hive_partitioning = true)",
        out.display()
    ));
    let with_boxes = frames[0][0].as_u64().unwrap();
    assert!((110..=180).contains(&with_boxes), "{frames:?}");
    assert!(frames[0][1].as_u64().unwrap() < 180, "{frames:?}");
    assert_eq!(frames[0][2], 1);
    // One exposure per product, as long as it was on screen (about 8 s each, 40 frames); the
    // apple's card, cut short by its new picture, was up less than `min_dwell` (2 s): none.
    let exposures = duckdb(&format!(
        "SELECT sku, duration_ms, frames_seen, mean_score <= max_score, epoch_ms(end_at) - epoch_ms(start_at) \
         FROM read_parquet('{}/parquet/exposures/**/*.parquet', hive_partitioning = true) ORDER BY start_pts_ms",
        out.display()
    ));
    let skus: Vec<&str> = exposures.iter().map(|r| r[0].as_str().unwrap()).collect();
    assert_eq!(skus, vec!["MUG-ESP-01", "ORG-VAL-2KG"]);
    for row in &exposures {
        let ms = row[1].as_i64().unwrap();
        let (seen, wall_ms) = (row[2].as_i64().unwrap(), row[4].as_i64().unwrap());
        assert!((8000 - ms).abs() <= 2 * TOLERANCE_MS, "{row:?}");
        assert!((30..=42).contains(&seen), "sighted in about 40 frames: {row:?}");
        assert_eq!(row[3], true, "{row:?}");
        assert!((wall_ms - ms).abs() <= 2000, "wall time follows media time in a real-time run: {row:?}");
    }
}
