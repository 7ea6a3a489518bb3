//! The questions of docs/analytics.md, answered by its SQL files with DuckDB over the Parquet
//! tables, in a folder and on a real S3 server (SeaweedFS), and checked against the events a
//! WebSocket viewer saw: the demo spec on the sample stream in real time, twice at once (one
//! run per store), with the mug's price changed while it is on screen.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use vitrine_tests::{demo_spec, duckdb_tables, free_port, replace, root, temp_dir, vitrine_bin, S3Server};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Socket {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio_tungstenite::connect_async(url).await {
            Ok((socket, _)) => return socket,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("cannot connect to {url}: {e}"),
        }
    }
}

/// Runs the demo (no loop) writing its tables to `parquet`; returns the events a viewer saw.
async fn run_demo(dir: &Path, parquet: &str, env: Vec<(&'static str, String)>) -> Vec<Value> {
    std::fs::create_dir_all(dir).unwrap();
    let examples = root().join("examples");
    let catalog = dir.join("catalog.jsonl");
    let catalog_text = std::fs::read_to_string(examples.join("demo-catalog.jsonl")).unwrap();
    let catalog_text = replace(&catalog_text, "\"sample/", &format!("\"{}/sample/", examples.display()));
    std::fs::write(&catalog, &catalog_text).unwrap();
    let out = dir.join("out");
    let mut spec = replace(&demo_spec(&out), "loop: true", "loop: false");
    let demo_catalog = format!("path: {}/demo-catalog.jsonl", examples.display());
    spec = replace(&spec, &demo_catalog, &format!("path: {}\n  poll: 200ms", catalog.display()));
    spec = replace(&spec, &format!("path: {}/parquet", out.display()), &format!("path: {parquet}"));
    let spec_path = dir.join("demo.yaml");
    std::fs::write(&spec_path, spec).unwrap();

    let port = free_port();
    let mut child = Command::new(vitrine_bin())
        .args(["run", "--exit-when-done"])
        .arg(&spec_path)
        .env("VITRINE_LISTEN", format!("127.0.0.1:{port}"))
        .envs(env)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("vitrine.log")).unwrap())
        .spawn()
        .unwrap();
    let mut viewer = connect(&format!("ws://127.0.0.1:{port}/v1/streams/demo/ws")).await;
    let mut events = Vec::new();
    loop {
        let message =
            tokio::time::timeout(Duration::from_secs(60), viewer.next()).await.expect("a message within 60 s");
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            Some(Ok(_)) => continue,
        };
        let message: Value = serde_json::from_str(text.as_str()).unwrap();
        if message["type"] != "event" {
            continue;
        }
        if message["kind"] == "appeared" && message["sku"] == "MUG-ESP-01" {
            std::fs::write(&catalog, catalog_text.replace("\"price\": 14.90", "\"price\": 12.90")).unwrap();
        }
        events.push(message);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "vitrine failed:\n{}", std::fs::read_to_string(dir.join("vitrine.log")).unwrap());
    events
}

fn sql(name: &str) -> String {
    std::fs::read_to_string(root().join("docs/analytics").join(name)).unwrap()
}

fn text(v: &Value) -> String {
    v.as_str().unwrap().to_string()
}

/// The answers of docs/analytics/*.sql over `location` must say what the viewer saw.
fn check_answers(store: &str, location: &str, s3: Option<&S3Server>, events: &[Value]) {
    // What the viewer saw, per (stream, sku): the intervals on screen and the price changes.
    let mut intervals: BTreeMap<(String, String), Vec<(i64, i64)>> = BTreeMap::new();
    let mut price_changes = Vec::new();
    let mut last_appeared: BTreeMap<(String, String), &Value> = BTreeMap::new();
    for e in events {
        let key = (text(&e["stream_id"]), text(&e["sku"]));
        let pts = e["pts_ms"].as_i64().unwrap();
        match e["kind"].as_str().unwrap() {
            "appeared" => {
                last_appeared.insert(key, e);
            }
            "updated" => {
                let appeared = last_appeared[&key];
                let after = (pts - appeared["pts_ms"].as_i64().unwrap()) as f64 / 1000.0;
                price_changes.push((key, appeared["price"].as_f64().unwrap(), e["price"].as_f64().unwrap(), after));
            }
            _ => {
                let start = last_appeared[&key]["pts_ms"].as_i64().unwrap();
                intervals.entry(key).or_default().push((start, pts));
            }
        }
    }
    assert_eq!(intervals.len(), 3, "{store}: the viewer saw three products come and go: {events:#?}");
    assert_eq!(price_changes.len(), 1, "{store}: and one price change: {events:#?}");

    let top = duckdb_tables(location, s3, &sql("top_products_by_screen_time.sql"));
    let answered: BTreeMap<(String, String), (i64, f64)> =
        top.iter().map(|r| ((text(&r[0]), text(&r[1])), (r[3].as_i64().unwrap(), r[4].as_f64().unwrap()))).collect();
    let seen: BTreeMap<(String, String), (i64, f64)> = intervals
        .iter()
        .map(|(key, spans)| {
            let ms: i64 = spans.iter().map(|(a, b)| b - a).sum();
            (key.clone(), (spans.len() as i64, ms as f64 / 1000.0))
        })
        .collect();
    assert_eq!(answered, seen, "{store}: top products by screen time: {top:?}");
    let order: Vec<f64> = top.iter().map(|r| r[4].as_f64().unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] >= w[1]), "{store}: longest first: {top:?}");

    let changes = duckdb_tables(location, s3, &sql("price_change_after_appearing.sql"));
    let answered: Vec<_> = changes
        .iter()
        .map(|r| {
            let key = (text(&r[0]), text(&r[1]));
            (key, r[2].as_f64().unwrap(), r[3].as_f64().unwrap(), r[4].as_f64().unwrap())
        })
        .collect();
    assert_eq!(answered, price_changes, "{store}: price changes after appearing");

    let labels = duckdb_tables(location, s3, &sql("product_frames_per_label.sql"));
    for label in ["cup", "apple", "orange"] {
        let row = labels.iter().find(|r| r[1] == label).unwrap_or_else(|| panic!("{store}: {label} in {labels:?}"));
        let (frames, tracks) = (row[2].as_i64().unwrap(), row[4].as_i64().unwrap());
        assert!(frames >= 30 && tracks >= 1, "{store}: {label} was on screen about 8 s (40 frames): {row:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_questions_are_answered_from_a_folder_and_from_s3_as_the_viewer_saw_it() {
    let s3 = S3Server::start("shows");
    let dir = temp_dir("analytics");
    let folder = dir.join("local/parquet").display().to_string();
    let s3_location = format!("s3://{}/vitrine", s3.bucket);
    let (local_dir, s3_dir) = (dir.join("local"), dir.join("s3"));
    let (local_events, s3_events) =
        tokio::join!(run_demo(&local_dir, &folder, vec![]), run_demo(&s3_dir, &s3_location, s3.env()));
    check_answers("folder", &folder, None, &local_events);
    check_answers("S3", &s3_location, Some(&s3), &s3_events);
}
