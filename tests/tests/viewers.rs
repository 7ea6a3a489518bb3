//! The viewer WebSocket against the real binary on the sample stream (real time): a viewer
//! that loses its connection resumes with nothing lost; refused tokens and origins get their
//! close codes; oversize and flooding clients are cut off with theirs, and the others go on.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use vitrine_tests::{demo_spec, free_port, replace, temp_dir, vitrine_bin};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const SECRET: &str = "test-secret-of-viewer-tokens";
const ORIGIN: &str = "https://shop.example";

struct Server {
    child: Child,
    port: u16,
    spec: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// The demo spec, not looping, with tokens and an origin allow-list.
fn start() -> Server {
    start_with("")
}

/// Like [`start`], with more `server` settings (indented lines).
fn start_with(server_settings: &str) -> Server {
    let dir = temp_dir("viewers");
    let mut spec = replace(&demo_spec(&dir.join("out")), "loop: true", "loop: false");
    spec += &format!("  allowed_origins: [\"{ORIGIN}\"]\n  token_secret_env: VITRINE_TEST_SECRET\n{server_settings}");
    let spec_path = dir.join("viewers.yaml");
    std::fs::write(&spec_path, spec).unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.join("vitrine.log")).unwrap();
    let child = Command::new(vitrine_bin())
        .args(["run", "--exit-when-done"])
        .arg(&spec_path)
        .env("VITRINE_LISTEN", format!("127.0.0.1:{port}"))
        .env("VITRINE_TEST_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Server { child, port, spec: spec_path }
}

impl Server {
    fn token(&self, stream: &str, ttl: &str) -> String {
        let out = Command::new(vitrine_bin())
            .args(["token", "--stream", stream, "--ttl", ttl])
            .arg(&self.spec)
            .env("VITRINE_TEST_SECRET", SECRET)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Connects (retrying while the server starts) with these query parameters and Origin.
    async fn connect(&self, query: &str, origin: Option<&str>) -> Socket {
        self.connect_with(query, origin, &[]).await
    }

    async fn connect_with(&self, query: &str, origin: Option<&str>, headers: &[(&'static str, &str)]) -> Socket {
        let url = format!("ws://127.0.0.1:{}/v1/streams/demo/ws?{query}", self.port);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut request = url.as_str().into_client_request().unwrap();
            if let Some(origin) = origin {
                request.headers_mut().insert("Origin", origin.parse().unwrap());
            }
            for (name, value) in headers {
                request.headers_mut().insert(*name, value.parse().unwrap());
            }
            match tokio_tungstenite::connect_async(request).await {
                Ok((socket, _)) => return socket,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot connect to {url}: {e}"),
            }
        }
    }
}

enum Received {
    Json(Value),
    Closed(Option<(u16, String)>),
}

async fn next(socket: &mut Socket) -> Received {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), socket.next()).await.expect("a message within 30 s") {
            Some(Ok(Message::Text(text))) => return Received::Json(serde_json::from_str(text.as_str()).unwrap()),
            Some(Ok(Message::Close(frame))) => {
                return Received::Closed(frame.map(|f| (u16::from(f.code), f.reason.to_string())))
            }
            None | Some(Err(_)) => return Received::Closed(None),
            Some(Ok(_)) => {}
        }
    }
}

async fn json(socket: &mut Socket) -> Value {
    match next(socket).await {
        Received::Json(v) => v,
        Received::Closed(c) => panic!("closed: {c:?}"),
    }
}

async fn closed_with(socket: &mut Socket) -> (u16, String) {
    loop {
        match next(socket).await {
            Received::Closed(Some(close)) => return close,
            Received::Closed(None) => panic!("closed without a close frame"),
            Received::Json(_) => {}
        }
    }
}

/// The next product event, skipping heartbeats.
async fn event(socket: &mut Socket) -> Value {
    loop {
        let message = json(socket).await;
        if message["type"] == "event" {
            return message;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_viewers_get_a_close_code_that_says_why() {
    let server = start();
    let token = server.token("demo", "1h");
    // Let the server come up with a viewer that is let in.
    let mut ok = server.connect(&format!("token={token}"), Some(ORIGIN)).await;
    assert_eq!(json(&mut ok).await["type"], "hello");

    let mut no_token = server.connect("", Some(ORIGIN)).await;
    assert_eq!(closed_with(&mut no_token).await.0, 4401);
    let other_stream = server.token("another-show", "1h");
    let mut wrong = server.connect(&format!("token={other_stream}"), Some(ORIGIN)).await;
    let (code, reason) = closed_with(&mut wrong).await;
    assert_eq!((code, reason.contains("invalid token")), (4401, true), "{reason}");
    let expired = server.token("demo", "0s");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut late = server.connect(&format!("token={expired}"), Some(ORIGIN)).await;
    assert_eq!(closed_with(&mut late).await.0, 4410);
    let mut elsewhere = server.connect(&format!("token={token}"), Some("https://evil.example")).await;
    let (code, reason) = closed_with(&mut elsewhere).await;
    assert_eq!(code, 4403);
    assert!(reason.contains("https://evil.example"), "{reason}");

    // Oversize and flooding clients are cut off; the well-behaved one is not.
    let mut big = server.connect(&format!("token={token}"), Some(ORIGIN)).await;
    big.send(Message::text("x".repeat(64 * 1024))).await.unwrap();
    assert_eq!(closed_with(&mut big).await.0, u16::from(CloseCode::Size));
    let mut flood = server.connect(&format!("token={token}"), Some(ORIGIN)).await;
    for _ in 0..25 {
        if flood.send(Message::text(r#"{"type":"snapshot"}"#)).await.is_err() {
            break;
        }
    }
    let (code, reason) = closed_with(&mut flood).await;
    assert_eq!((code, reason.contains("too many messages")), (1008, true), "{reason}");
    assert_eq!(json(&mut ok).await["type"], "snapshot");
    ok.send(Message::text(r#"{"type":"snapshot"}"#)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_loses_its_connection_resumes_with_nothing_lost() {
    let server = start();
    let token = server.token("demo", "1h");
    let query = format!("token={token}");
    let mut steady = server.connect(&query, Some(ORIGIN)).await;
    let mut flaky = server.connect(&query, Some(ORIGIN)).await;
    for socket in [&mut steady, &mut flaky] {
        assert_eq!(json(socket).await["type"], "hello");
        assert_eq!(json(socket).await["type"], "snapshot");
    }
    // The flaky viewer sees the mug appear (3 s), then its connection drops.
    let first = event(&mut flaky).await;
    assert_eq!((first["kind"].as_str(), first["sku"].as_str()), (Some("appeared"), Some("MUG-ESP-01")));
    drop(flaky);
    // Meanwhile the mug leaves (11 s) and the apple comes (14 s).
    let mut seen = vec![event(&mut steady).await];
    while !(seen.last().unwrap()["kind"] == "appeared" && seen.last().unwrap()["sku"] == "APL-GALA-1KG") {
        seen.push(event(&mut steady).await);
    }
    let ids = |events: &[Value]| events.iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect::<Vec<_>>();

    // Back, with the last event it got: the missed events come, no snapshot.
    let last = first["event_id"].as_str().unwrap();
    let mut back = server.connect(&format!("{query}&last_event_id={last}"), Some(ORIGIN)).await;
    assert_eq!(json(&mut back).await["type"], "hello");
    let mut replayed = Vec::new();
    while replayed.len() < seen.len() - 1 {
        let message = json(&mut back).await;
        assert_eq!(message["type"], "event", "a resumed viewer gets the events it missed, not a snapshot");
        replayed.push(message);
    }
    assert_eq!(ids(&replayed), ids(&seen[1..]), "the missed events, in order, each once");
    // An id the server no longer has: a snapshot (with the apple on screen) instead.
    let mut lost = server.connect(&format!("{query}&last_event_id=unknown"), Some(ORIGIN)).await;
    assert_eq!(json(&mut lost).await["type"], "hello");
    let snapshot = json(&mut lost).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert!(snapshot["products"].as_array().unwrap().iter().any(|p| p["sku"] == "APL-GALA-1KG"), "{snapshot}");
}

/// Connects until a viewer gets its hello (the server may take a moment to count one that left).
async fn next_viewer_gets_in(server: &Server, query: &str, still_refused: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut next_one = server.connect(query, Some(ORIGIN)).await;
        match next(&mut next_one).await {
            Received::Json(hello) => {
                assert_eq!(hello["type"], "hello");
                return;
            }
            Received::Closed(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Received::Closed(close) => panic!("{still_refused}: {close:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_says_so_and_lets_the_next_viewer_in_when_one_leaves() {
    let server = start_with("  max_viewers: 2\n");
    let query = format!("token={}", server.token("demo", "1h"));
    let mut first = server.connect(&query, Some(ORIGIN)).await;
    assert_eq!(json(&mut first).await["type"], "hello");
    let mut second = server.connect(&query, Some(ORIGIN)).await;
    assert_eq!(json(&mut second).await["type"], "hello");
    let mut third = server.connect(&query, Some(ORIGIN)).await;
    let (code, reason) = closed_with(&mut third).await;
    assert_eq!((code, reason.contains("server.max_viewers")), (1013, true), "{reason}");
    drop(first);
    next_viewer_gets_in(&server, &query, "still full after a viewer left").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_or_one_stream_cannot_take_every_place() {
    // Per address: the third viewer from 127.0.0.1 is refused, and let in once one leaves.
    let server = start_with("  max_viewers_per_ip: 2\n");
    let query = format!("token={}", server.token("demo", "1h"));
    let mut first = server.connect(&query, Some(ORIGIN)).await;
    assert_eq!(json(&mut first).await["type"], "hello");
    let mut second = server.connect(&query, Some(ORIGIN)).await;
    assert_eq!(json(&mut second).await["type"], "hello");
    let mut third = server.connect(&query, Some(ORIGIN)).await;
    let (code, reason) = closed_with(&mut third).await;
    assert_eq!((code, reason.contains("server.max_viewers_per_ip")), (1013, true), "{reason}");
    drop(first);
    next_viewer_gets_in(&server, &query, "the address still counted a viewer that left").await;

    // Per stream.
    let server = start_with("  max_viewers_per_stream: 1\n");
    let query = format!("token={}", server.token("demo", "1h"));
    let mut first = server.connect(&query, Some(ORIGIN)).await;
    assert_eq!(json(&mut first).await["type"], "hello");
    let mut second = server.connect(&query, Some(ORIGIN)).await;
    let (code, reason) = closed_with(&mut second).await;
    assert_eq!((code, reason.contains("server.max_viewers_per_stream")), (1013, true), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_viewer_counts_as_its_own_address() {
    // Every viewer comes through the proxy at 127.0.0.1, which names it in X-Forwarded-For.
    let server = start_with("  max_viewers_per_ip: 1\n  trusted_proxies: [127.0.0.1/32]\n");
    let query = format!("token={}", server.token("demo", "1h"));
    let via_proxy = |client: &'static str| [("X-Forwarded-For", client)];
    let mut first = server.connect_with(&query, Some(ORIGIN), &via_proxy("203.0.113.9")).await;
    assert_eq!(json(&mut first).await["type"], "hello");
    let mut second = server.connect_with(&query, Some(ORIGIN), &via_proxy("198.51.100.7")).await;
    assert_eq!(json(&mut second).await["type"], "hello", "another viewer behind the same proxy gets in");
    // A viewer that forges an address in front of its own is still counted as its own.
    let mut again = server.connect_with(&query, Some(ORIGIN), &via_proxy("192.0.2.1, 203.0.113.9")).await;
    let (code, reason) = closed_with(&mut again).await;
    assert_eq!((code, reason.contains("203.0.113.9")), (1013, true), "{reason}");
}
