//! The viewers' hub: per stream, the products on screen and a broadcast of every change.
//!
//! Each message is encoded once and shared by every connection. A viewer subscribes under
//! the same lock that publishing takes, so its snapshot and the events after it neither
//! overlap nor leave a gap. A viewer that falls more than `queue` messages behind is not
//! buffered further: it gets a fresh snapshot (latest state wins), and the drop is counted.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::broadcast;
use vitrine_schemas::protocol::{ServerMessage, PROTOCOL_VERSION};
use vitrine_schemas::{now_ms, EventKind, ProductEvent};

#[derive(Debug, Default)]
struct StreamState {
    /// sku -> its latest appeared/updated event.
    on_screen: BTreeMap<String, ProductEvent>,
    media_time_ms: Option<i64>,
    /// The last [`RECENT_EVENTS`] events, encoded, by id: what a resuming viewer may have missed.
    recent: VecDeque<(String, Utf8Bytes)>,
}

/// Events kept per stream for viewers that reconnect (`?last_event_id=`).
pub const RECENT_EVENTS: usize = 256;

/// What a viewer gets first on a connection.
#[derive(Debug)]
pub struct Subscription {
    pub hello: Utf8Bytes,
    /// A snapshot, or (resuming) the events after the viewer's last one.
    pub catch_up: Vec<Utf8Bytes>,
    /// Whether `catch_up` is the missed events rather than a snapshot.
    pub resumed: bool,
    pub events: broadcast::Receiver<Utf8Bytes>,
}

#[derive(Debug)]
struct StreamHub {
    state: Mutex<StreamState>,
    tx: broadcast::Sender<Utf8Bytes>,
}

/// Counters for `/metrics` and the logs.
#[derive(Debug, Default)]
pub struct HubStats {
    pub connected: AtomicU64,
    pub events_published: AtomicU64,
    /// Event messages handed to viewer connections (each event once per viewer of its stream).
    pub sends: AtomicU64,
    pub lagged_resnapshots: AtomicU64,
    /// Reconnects served from the recent events, and those that needed a snapshot instead.
    pub resumed: AtomicU64,
    pub resume_snapshots: AtomicU64,
}

/// Most streams an open hub tracks (a bound on what unknown stream ids can cost).
pub const MAX_OPEN_STREAMS: usize = 10_000;

#[derive(Debug)]
pub struct Hub {
    streams: RwLock<HashMap<String, Arc<StreamHub>>>,
    /// Whether streams not named up front are accepted (Kafka sources carry any stream).
    open: bool,
    queue: usize,
    pub stats: HubStats,
    closing: tokio::sync::watch::Sender<bool>,
    /// When this run started: in every `hello`, so viewers notice a restart.
    started_at_ms: i64,
    /// Open (true) unless this process is replaying frames whose events viewers already had
    /// (a restart): viewers wait for it, so one that reconnects with its last event id
    /// resumes right after it instead of getting a snapshot of a half-rebuilt state.
    replayed: tokio::sync::watch::Sender<bool>,
    /// How long a reconnecting viewer's last event id is waited for when this hub has not seen
    /// it yet (a viewer moving between `vitrine serve` instances may be a few events ahead of
    /// this one); zero: a snapshot at once.
    resume_wait: std::time::Duration,
}

fn encode(message: &ServerMessage) -> Utf8Bytes {
    Utf8Bytes::from(serde_json::to_string(message).expect("protocol messages always encode"))
}

impl StreamHub {
    fn new(queue: usize) -> StreamHub {
        let (tx, _) = broadcast::channel(queue);
        StreamHub { state: Mutex::default(), tx }
    }
}

impl StreamState {
    fn snapshot(&self) -> ServerMessage {
        ServerMessage::Snapshot {
            media_time_ms: self.media_time_ms,
            products: self.on_screen.values().cloned().collect(),
            last_event_id: self.recent.back().map(|(id, _)| id.clone()),
        }
    }
}

impl Hub {
    /// A hub for a fixed set of streams (the spec's sources); others are refused.
    pub fn new(stream_ids: impl IntoIterator<Item = String>, queue: usize) -> Hub {
        Hub::with_streams(stream_ids, queue, false)
    }

    /// A hub that also accepts streams it was not told about (up to [`MAX_OPEN_STREAMS`]).
    pub fn open(stream_ids: impl IntoIterator<Item = String>, queue: usize) -> Hub {
        Hub::with_streams(stream_ids, queue, true)
    }

    fn with_streams(stream_ids: impl IntoIterator<Item = String>, queue: usize, open: bool) -> Hub {
        let queue = queue.max(1);
        let streams = stream_ids.into_iter().map(|id| (id, Arc::new(StreamHub::new(queue)))).collect();
        Hub {
            streams: RwLock::new(streams),
            open,
            queue,
            stats: HubStats::default(),
            closing: tokio::sync::watch::Sender::new(false),
            replayed: tokio::sync::watch::Sender::new(true),
            started_at_ms: now_ms(),
            resume_wait: std::time::Duration::ZERO,
        }
    }

    /// Waits up to `wait` for a reconnecting viewer's last event id this hub has not seen yet.
    pub fn with_resume_wait(mut self, wait: std::time::Duration) -> Hub {
        self.resume_wait = wait;
        self
    }

    /// The time viewers see as this run's start (`hello.run_started_ms`; a change tells the
    /// viewer page to start over). Instances of a viewer tier share one: 0.
    pub fn with_run_started(mut self, ms: i64) -> Hub {
        self.started_at_ms = ms;
        self
    }

    /// The stream's hub; in an open hub, created on first use.
    fn stream(&self, stream_id: &str) -> Option<Arc<StreamHub>> {
        if let Some(s) = self.streams.read().expect("hub lock").get(stream_id) {
            return Some(s.clone());
        }
        if !self.open || !vitrine_schemas::spec::valid_stream_id(stream_id) {
            return None;
        }
        let mut streams = self.streams.write().expect("hub lock");
        if streams.len() >= MAX_OPEN_STREAMS && !streams.contains_key(stream_id) {
            return None;
        }
        Some(streams.entry(stream_id.to_string()).or_insert_with(|| Arc::new(StreamHub::new(self.queue))).clone())
    }

    /// Viewers wait from now until [`Hub::replay_done`] (or `timeout` in [`Hub::wait_replayed`]).
    pub fn hold_viewers_for_replay(&self) {
        self.replayed.send_replace(false);
    }

    /// The replay after a restart has rebuilt the state: viewers are served.
    pub fn replay_done(&self) {
        if !self.replayed.send_replace(true) {
            tracing::info!("replay done: serving viewers");
        }
    }

    /// Waits while a replay rebuilds the state, at most `timeout`.
    pub async fn wait_replayed(&self, timeout: std::time::Duration) {
        let mut open = self.replayed.subscribe();
        let _ = tokio::time::timeout(timeout, open.wait_for(|open| *open)).await;
    }

    /// Tells every viewer connection to close (the server is shutting down).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`Hub::close`] was called.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Whether viewers may connect to this stream.
    pub fn has_stream(&self, stream_id: &str) -> bool {
        self.streams.read().expect("hub lock").contains_key(stream_id)
            || (self.open && vitrine_schemas::spec::valid_stream_id(stream_id))
    }

    pub fn stream_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.streams.read().expect("hub lock").keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Applies an event to its stream's state and sends it to every viewer of the stream.
    pub fn publish(&self, event: &ProductEvent) {
        let Some(stream) = self.stream(&event.stream_id) else { return };
        let mut state = stream.state.lock().expect("hub lock");
        match event.kind {
            EventKind::Appeared | EventKind::Updated => {
                state.on_screen.insert(event.sku.clone(), event.clone());
            }
            EventKind::Disappeared => {
                state.on_screen.remove(&event.sku);
            }
        }
        self.stats.events_published.fetch_add(1, Ordering::Relaxed);
        let message = encode(&ServerMessage::Event(event.clone()));
        state.recent.push_back((event.event_id.clone(), message.clone()));
        if state.recent.len() > RECENT_EVENTS {
            state.recent.pop_front();
        }
        // No receivers is fine: nobody is watching.
        if let Ok(viewers) = stream.tx.send(message) {
            self.stats.sends.fetch_add(viewers as u64, Ordering::Relaxed);
        }
    }

    /// Records how far the pipeline got in a stream's media time.
    pub fn set_media_time(&self, stream_id: &str, pts_ms: i64) {
        if let Some(stream) = self.stream(stream_id) {
            let mut state = stream.state.lock().expect("hub lock");
            state.media_time_ms = Some(state.media_time_ms.map_or(pts_ms, |t| t.max(pts_ms)));
        }
    }

    pub fn media_time(&self, stream_id: &str) -> Option<i64> {
        self.streams.read().expect("hub lock").get(stream_id)?.state.lock().expect("hub lock").media_time_ms
    }

    /// `hello`, the current `snapshot`, and a receiver of everything after it.
    pub fn subscribe(&self, stream_id: &str) -> Option<(Utf8Bytes, Utf8Bytes, broadcast::Receiver<Utf8Bytes>)> {
        let stream = self.stream(stream_id)?;
        let state = stream.state.lock().expect("hub lock");
        let hello = ServerMessage::Hello {
            protocol: PROTOCOL_VERSION,
            stream_id: stream_id.to_string(),
            server_time_ms: now_ms(),
            run_started_ms: self.started_at_ms,
            media_time_ms: state.media_time_ms,
        };
        Some((encode(&hello), encode(&state.snapshot()), stream.tx.subscribe()))
    }

    /// Like [`Hub::subscribe`], for a viewer that reconnects after `last_event_id`: the
    /// events it missed if they are still kept, else a snapshot. Taken under the publishing
    /// lock, so nothing is missed or sent twice.
    pub fn resume(&self, stream_id: &str, last_event_id: &str) -> Option<Subscription> {
        let stream = self.stream(stream_id)?;
        let state = stream.state.lock().expect("hub lock");
        let hello = encode(&ServerMessage::Hello {
            protocol: PROTOCOL_VERSION,
            stream_id: stream_id.to_string(),
            server_time_ms: now_ms(),
            run_started_ms: self.started_at_ms,
            media_time_ms: state.media_time_ms,
        });
        let missed = state
            .recent
            .iter()
            .position(|(id, _)| id == last_event_id)
            .map(|at| state.recent.iter().skip(at + 1).map(|(_, m)| m.clone()).collect::<Vec<_>>());
        let resumed = missed.is_some();
        let counter = if resumed { &self.stats.resumed } else { &self.stats.resume_snapshots };
        counter.fetch_add(1, Ordering::Relaxed);
        let catch_up = missed.unwrap_or_else(|| vec![encode(&state.snapshot())]);
        Some(Subscription { hello, catch_up, resumed, events: stream.tx.subscribe() })
    }

    /// [`Hub::resume`], once this hub has seen `last_event_id` or its resume wait is over.
    pub async fn resume_when_seen(&self, stream_id: &str, last_event_id: &str) -> Option<Subscription> {
        let deadline = tokio::time::Instant::now() + self.resume_wait;
        loop {
            let stream = self.stream(stream_id)?;
            // Subscribed before looking, so an event published in between wakes us.
            let mut next = stream.tx.subscribe();
            let seen = stream.state.lock().expect("hub lock").recent.iter().any(|(id, _)| id == last_event_id);
            if seen || tokio::time::Instant::now() >= deadline {
                return self.resume(stream_id, last_event_id);
            }
            let _ = tokio::time::timeout_at(deadline, next.recv()).await;
        }
    }

    /// A fresh snapshot and receiver, for a viewer that fell behind or asked for one.
    pub fn resnapshot(&self, stream_id: &str) -> Option<(Utf8Bytes, broadcast::Receiver<Utf8Bytes>)> {
        let stream = self.stream(stream_id)?;
        let state = stream.state.lock().expect("hub lock");
        Some((encode(&state.snapshot()), stream.tx.subscribe()))
    }

    pub fn heartbeat(&self, stream_id: &str) -> Utf8Bytes {
        encode(&ServerMessage::Heartbeat { server_time_ms: now_ms(), media_time_ms: self.media_time(stream_id) })
    }

    /// Viewers of a stream now (its connections' subscriptions).
    pub fn viewers_of(&self, stream_id: &str) -> usize {
        self.streams.read().expect("hub lock").get(stream_id).map_or(0, |s| s.tx.receiver_count())
    }

    /// Products on screen now, per stream.
    pub fn on_screen(&self, stream_id: &str) -> Vec<ProductEvent> {
        self.streams
            .read()
            .expect("hub lock")
            .get(stream_id)
            .map(|s| s.state.lock().expect("hub lock").on_screen.values().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitrine_schemas::Money;

    fn event(kind: EventKind, sku: &str) -> ProductEvent {
        ProductEvent {
            event_id: format!("{sku}-{kind:?}"),
            kind,
            stream_id: "s".into(),
            sku: sku.into(),
            label: "cup".into(),
            title: "Mug".into(),
            price: Money(100),
            currency: "EUR".into(),
            in_stock: true,
            image_url: None,
            product_url: None,
            bbox: None,
            score: 0.9,
            match_score: None,
            pts_ms: 0,
            emitted_at_ms: 0,
        }
    }

    #[test]
    fn snapshot_holds_what_is_on_screen_and_later_events_follow_it() {
        let hub = Hub::new(["s".to_string()], 8);
        hub.publish(&event(EventKind::Appeared, "A"));
        hub.publish(&event(EventKind::Appeared, "B"));
        hub.publish(&event(EventKind::Disappeared, "A"));
        let (_, snapshot, mut rx) = hub.subscribe("s").unwrap();
        let snapshot: serde_json::Value = serde_json::from_str(snapshot.as_str()).unwrap();
        let skus: Vec<_> =
            snapshot["products"].as_array().unwrap().iter().map(|p| p["sku"].as_str().unwrap()).collect();
        assert_eq!(skus, vec!["B"]);
        hub.publish(&event(EventKind::Disappeared, "B"));
        let next: serde_json::Value = serde_json::from_str(rx.try_recv().unwrap().as_str()).unwrap();
        assert_eq!((next["type"].as_str(), next["kind"].as_str()), (Some("event"), Some("disappeared")));
        assert!(rx.try_recv().is_err(), "nothing from before the snapshot is replayed");
    }

    #[test]
    fn a_viewer_that_joined_by_snapshot_and_dropped_resumes_after_it_with_nothing_lost() {
        let hub = Hub::new(["s".to_string()], 8);
        let (_, empty, _) = hub.subscribe("s").unwrap();
        let empty: serde_json::Value = serde_json::from_str(empty.as_str()).unwrap();
        assert!(empty["last_event_id"].is_null(), "{empty}");
        hub.publish(&event(EventKind::Appeared, "A"));
        hub.publish(&event(EventKind::Appeared, "B"));
        // A page opened now learns of A and B from its snapshot, then its network drops.
        let (_, snapshot, _) = hub.subscribe("s").unwrap();
        let snapshot: serde_json::Value = serde_json::from_str(snapshot.as_str()).unwrap();
        let last = snapshot["last_event_id"].as_str().unwrap().to_string();
        assert_eq!(last, "B-Appeared");
        hub.publish(&event(EventKind::Disappeared, "A"));
        // Back with the snapshot's last event id: A's exit, and nothing it had already.
        let back = hub.resume("s", &last).unwrap();
        assert!(back.resumed);
        let ids: Vec<String> = back
            .catch_up
            .iter()
            .map(|m| {
                serde_json::from_str::<serde_json::Value>(m.as_str()).unwrap()["event_id"].as_str().unwrap().into()
            })
            .collect();
        assert_eq!(ids, vec!["A-Disappeared".to_string()]);
    }

    #[test]
    fn a_lagging_viewer_is_not_queued_without_bound_and_gets_a_fresh_snapshot() {
        let hub = Hub::new(["s".to_string()], 2);
        let (_, _, mut slow) = hub.subscribe("s").unwrap();
        for sku in ["A", "B", "C", "D", "E"] {
            hub.publish(&event(EventKind::Appeared, sku)); // never blocks, whoever is slow
        }
        assert!(matches!(slow.try_recv(), Err(broadcast::error::TryRecvError::Lagged(3))));
        let (snapshot, _fresh) = hub.resnapshot("s").unwrap();
        let snapshot: serde_json::Value = serde_json::from_str(snapshot.as_str()).unwrap();
        assert_eq!(snapshot["products"].as_array().unwrap().len(), 5, "latest state wins");
    }

    #[test]
    fn unknown_streams_are_refused() {
        assert!(Hub::new(["s".to_string()], 8).subscribe("other").is_none());
    }

    #[test]
    fn an_open_hub_takes_new_streams_but_not_bad_ids() {
        let hub = Hub::open([], 8);
        assert!(hub.subscribe("shop-7").is_some());
        assert!(hub.subscribe("../etc").is_none());
        assert_eq!(hub.stream_ids(), vec!["shop-7".to_string()]);
    }
}
