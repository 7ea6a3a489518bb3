//! The viewer tier apart from the dataflow: `vitrine run` reads a live stream from the real
//! broker and writes its product events; two `vitrine serve` instances follow the state topic
//! and serve viewers. Viewers of the stream on either instance see the same events in the same
//! order; an instance started mid-show serves the right snapshot at once; a viewer that loses
//! its connection and reconnects to the other instance with its last event id resumes with
//! nothing lost and nothing twice; SIGTERM closes the viewers with 1001 (going away).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use vitrine_tests::kafka_runs::{create_topics, kafka_spec, Pipeline};
use vitrine_tests::{
    free_port, http_get, http_response, metric_sample, prometheus_families, root, temp_dir, vitrine_bin, Broker,
};

/// The sample show's products each appear and leave once.
const EVENTS: usize = 6;

/// `vitrine serve SPEC` on `port`, killed when dropped.
struct Serve(Child, u16);

impl Serve {
    fn start(spec: &Path, log: &Path) -> Serve {
        let port = free_port();
        let child = Command::new(vitrine_bin())
            .arg("serve")
            .arg(spec)
            .env("VITRINE_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let serve = Serve(child, port);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && http_response(port, "/readyz").0.starts_with("http/1.0 200"))
        {
            assert!(Instant::now() < deadline, "never ready:\n{}", std::fs::read_to_string(log).unwrap());
            std::thread::sleep(Duration::from_millis(50));
        }
        serve
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A viewer of `shop1`: what it was sent, in order (snapshots as the event ids they hold).
struct Viewer {
    socket: Socket,
    snapshots: Vec<BTreeMap<String, String>>,
    events: Vec<Value>,
    close: Option<u16>,
    /// `hello`'s media time: how far the stream got, as the server knows it.
    hello_media_time: Option<i64>,
}

impl Viewer {
    async fn connect(port: u16, last_event_id: Option<&str>) -> Viewer {
        let query = last_event_id.map(|id| format!("?last_event_id={id}")).unwrap_or_default();
        let url = format!("ws://127.0.0.1:{port}/v1/streams/shop1/ws{query}");
        let (socket, _) = tokio_tungstenite::connect_async(&url).await.expect("the viewer connects");
        Viewer { socket, snapshots: Vec::new(), events: Vec::new(), close: None, hello_media_time: None }
    }

    /// Reads until it holds `events` events (or the connection closes).
    async fn read_until(&mut self, events: usize) {
        while self.events.len() < events && self.close.is_none() {
            let message = tokio::time::timeout(Duration::from_secs(90), self.socket.next()).await;
            match message.expect("the viewer hears from the server") {
                Some(Ok(Message::Text(text))) => {
                    let m: Value = serde_json::from_str(text.as_str()).unwrap();
                    match m["type"].as_str() {
                        Some("snapshot") => self
                            .snapshots
                            .push(m["products"].as_array().unwrap().iter().map(|p| (sku(p), id(p))).collect()),
                        Some("event") => self.events.push(m),
                        Some("hello") => self.hello_media_time = m["media_time_ms"].as_i64(),
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(frame))) => self.close = Some(frame.map_or(1005, |f| u16::from(f.code))),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => self.close = Some(1006),
            }
        }
    }

    fn ids(&self) -> Vec<String> {
        self.events.iter().map(id).collect()
    }
}

fn id(v: &Value) -> String {
    v["event_id"].as_str().unwrap().to_string()
}

fn sku(v: &Value) -> String {
    v["sku"].as_str().unwrap().to_string()
}

/// The products on screen (sku -> event id) after `events`.
fn on_screen(events: &[Value]) -> BTreeMap<String, String> {
    let mut screen = BTreeMap::new();
    for e in events {
        match e["kind"].as_str().unwrap() {
            "disappeared" => drop(screen.remove(&sku(e))),
            _ => drop(screen.insert(sku(e), id(e))),
        }
    }
    screen
}

#[test]
fn two_serve_instances_give_viewers_the_same_events_snapshots_and_resumes() {
    let broker = Broker::start();
    let brokers = broker.address.clone();
    let dir = temp_dir("serve");
    let rest = format!(
        "sinks:\n  kafka:\n    brokers: {brokers}\n    detections_topic: serve.detections\n    events_topic: serve.events\n\
         \x20   dead_letter_topic: serve.dead-letter\n    state_topic: serve.on-screen\n    partitions: 1\n\
         server:\n  viewer: false\n"
    );
    let spec = kafka_spec(&dir, "serve", &brokers, "serve", &["shop1"], &rest);
    create_topics(&spec, 1);

    let mut a = Serve::start(&spec, &dir.join("serve-a.log"));
    let b = Serve::start(&spec, &dir.join("serve-b.log"));
    let dataflow_log = dir.join("dataflow.log");
    let listen = ("VITRINE_LISTEN", format!("127.0.0.1:{}", free_port()));
    let _dataflow = Pipeline::start(&spec, &[], &[listen], &dataflow_log);
    // The show, live: in real time, 5 frames a second of media time (about 35 s).
    let mut sampler = Command::new(vitrine_bin())
        .args(["sample", "--stream-id", "shop1", "--fps", "5", "--brokers", &brokers, "--url"])
        .arg(root().join("examples/sample/shopping.mp4"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let (mut on_a, mut on_b) = (Viewer::connect(a.1, None).await, Viewer::connect(b.1, None).await);
        let mut leaving = Viewer::connect(a.1, None).await;
        let mut watcher = Viewer::connect(a.1, None).await;
        let both = tokio::spawn(async move {
            tokio::join!(on_a.read_until(EVENTS), on_b.read_until(EVENTS));
            (on_a, on_b)
        });
        // A viewer of instance A loses its connection after two events and reconnects to B
        // with the id of the last event it got.
        leaving.read_until(2).await;
        let last = id(leaving.events.last().unwrap());
        let before: Vec<String> = leaving.ids();
        drop(leaving);
        let mut resumed = Viewer::connect(b.1, Some(&last)).await;
        let resuming = tokio::spawn(async move {
            resumed.read_until(EVENTS - 2).await;
            resumed
        });
        // A third instance starts once a product is on screen again (the third event).
        watcher.read_until(3).await;
        let spec = spec.clone();
        let log = dir.join("serve-c.log");
        let c = tokio::task::spawn_blocking(move || Serve::start(&spec, &log)).await.unwrap();
        let mut late = Viewer::connect(c.1, None).await;
        while late.snapshots.is_empty() && late.close.is_none() {
            late.read_until(late.events.len() + 1).await;
        }

        let (on_a, on_b) = both.await.unwrap();
        assert_eq!(on_a.ids().len(), EVENTS, "{}", std::fs::read_to_string(&dataflow_log).unwrap());
        assert_eq!(on_a.ids(), on_b.ids(), "viewers of either instance get the same events in the same order");

        let resumed = resuming.await.unwrap();
        assert!(
            resumed.snapshots.is_empty(),
            "the other instance resumed after {last}, without a snapshot: {:?} {:?} (A: {:?})",
            resumed.snapshots,
            resumed.ids(),
            on_a.ids()
        );
        let seen: Vec<String> = before.into_iter().chain(resumed.ids()).collect();
        assert_eq!(seen, on_a.ids(), "reconnected to the other instance: nothing lost, nothing twice");

        // The fan-out's figures: B delivered every event to its viewers (on_b and the resumed
        // one, both still connected), through the state topic. An event's delivery time is
        // observed once its sends are done, which can be just after a viewer read it.
        let mut families = prometheus_families(&http_get(b.1, "/metrics"));
        for _ in 0..50 {
            if metric_sample(&families, "vitrine_event_to_viewers_seconds_count", &[]) == Some(EVENTS as f64) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            families = prometheus_families(&http_get(b.1, "/metrics"));
        }
        let get = |name: &str, labels: &[(&str, &str)]| metric_sample(&families, name, labels).unwrap_or(-1.0);
        assert_eq!(get("vitrine_event_to_viewers_seconds_count", &[]), EVENTS as f64);
        assert_eq!(get("vitrine_stream_viewers", &[("stream", "shop1")]), 2.0);
        assert!(get("vitrine_viewer_sends_total", &[]) >= (EVENTS + EVENTS - 2) as f64);

        // The late instance's snapshot is the screen after some prefix of the show's events
        // (at least the three out when it started), and its events are the rest.
        let snapshot = late.snapshots[0].clone();
        assert!(!snapshot.is_empty(), "started while a product was on screen: {snapshot:?}");
        // Its hello says how far the stream got (the dataflow's media time marks), at least
        // as far as the third event.
        let third_pts = on_a.events[2]["pts_ms"].as_i64().unwrap();
        assert!(late.hello_media_time.is_some_and(|t| t >= third_pts), "{:?} < {third_pts}", late.hello_media_time);
        let k = (3..=EVENTS)
            .find(|k| on_screen(&on_a.events[..*k]) == snapshot)
            .unwrap_or_else(|| panic!("snapshot {snapshot:?} is no state of the show {:?}", on_a.ids()));
        late.read_until(EVENTS - k).await;
        assert_eq!(late.ids(), on_a.ids()[k..], "after its snapshot, the late instance sends the rest");

        // SIGTERM: viewers are closed with 1001 (going away), and the instance exits 0.
        let mut closing = Viewer::connect(a.1, None).await;
        let _ = Command::new("kill").args(["-TERM", &a.0.id().to_string()]).status();
        closing.read_until(EVENTS + 1).await;
        assert_eq!(closing.close, Some(1001));
        drop(c);
    });
    let status = a.0.wait().unwrap();
    assert!(status.success(), "{status}: {}", std::fs::read_to_string(dir.join("serve-a.log")).unwrap());
    let _ = sampler.kill();
    let _ = sampler.wait();
}
