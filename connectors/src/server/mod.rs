//! The HTTP server: viewers' WebSocket, the viewer page, stream videos and product pictures.
//!
//! - `GET /v1/streams/{id}/ws`: the WebSocket protocol (`vitrine_schemas::protocol`).
//! - `GET /`: the viewer page; `GET /v1/streams`: the streams and what is on screen.
//! - `GET /v1/streams/{id}/video`: the source video of a file-based stream (byte ranges).
//! - `GET /v1/streams/{id}/hls/live.m3u8` and its segments: live HLS of a stream with `hls:`.
//! - `GET /v1/images/{hash}.{ext}`: product pictures, immutable, with ETag.
//! - `GET /metrics` (Prometheus text), `GET /healthz`, `GET /readyz`.

pub mod access;
mod live;
mod video;
mod viewer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use vitrine_schemas::address_range::client_address;
use vitrine_schemas::now_ms;
use vitrine_schemas::protocol::ClientMessage;

use crate::hls::HlsStream;
use crate::hub::{Hub, Subscription};
use crate::images::ImageStore;
use crate::ConnectorError;

/// Largest message a viewer may send; viewers only send tiny control messages.
pub const MAX_CLIENT_MESSAGE: usize = 4096;

/// Bytes a viewer connection reads at a time.
const READ_BUFFER: usize = 512;

/// What the server serves.
#[derive(Clone, Debug)]
pub struct ServerState {
    pub hub: Arc<Hub>,
    pub images: ImageStore,
    /// Stream id -> its video file, for streams read from a file.
    pub videos: Arc<HashMap<String, PathBuf>>,
    /// Stream id -> its live HLS, for video sources with `hls:`.
    pub hls: Arc<HashMap<String, Arc<HlsStream>>>,
    /// Where samplers publish the live HLS of other streams (`{dir}/{stream_id}/live.m3u8`).
    pub hls_dir: Option<PathBuf>,
    pub viewer_page: bool,
    pub heartbeat: Duration,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub health: Arc<crate::metrics::Health>,
    pub access: access::Access,
}

/// Query parameters of the WebSocket URL.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ViewerParams {
    /// The id of the last event the viewer got before it lost its connection.
    pub last_event_id: Option<String>,
    /// A signed viewer token, when the server requires one.
    pub token: Option<String>,
}

/// How long a connecting viewer waits for a restart's replay before it is served anyway.
pub const REPLAY_WAIT: Duration = Duration::from_secs(30);

/// Control messages a viewer may send in [`FLOOD_WINDOW`] before it is disconnected.
pub const FLOOD_MESSAGES: u32 = 20;
pub const FLOOD_WINDOW: Duration = Duration::from_secs(10);

pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/streams", get(streams))
        .route("/v1/streams/{id}/ws", get(websocket))
        .route("/v1/streams/{id}/video", get(video::serve))
        .route("/v1/streams/{id}/hls/{name}", get(live::serve))
        .route(live::HLS_JS_PATH, get(live::hls_js))
        .route("/v1/images/{name}", get(image))
        .with_state(state)
}

/// Binds `addr` and serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    state: ServerState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ConnectorError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ConnectorError::Listen { addr: addr.to_string(), reason: e.to_string() })?;
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(addr = %local, "serving viewers: open http://{local}/");
    // The peer's address, for `server.max_viewers_per_ip`.
    axum::serve(listener, router(state).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| ConnectorError::Listen { addr: addr.to_string(), reason: e.to_string() })
}

async fn metrics(State(state): State<ServerState>) -> Response {
    let body = state.metrics.render(Some(&state.hub));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// 503 once a part of the run died (the process is about to exit 1): restart it.
async fn healthz(State(state): State<ServerState>) -> Response {
    match state.health.failure() {
        None => "ok".into_response(),
        Some(failure) => (StatusCode::SERVICE_UNAVAILABLE, format!("failed: {failure}")).into_response(),
    }
}

/// 200 once the model is loaded, the partitions assigned and the sinks open; 503 before, while
/// draining, and after a failure.
async fn readyz(State(state): State<ServerState>) -> Response {
    if state.health.is_ready() {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: starting, draining or failed").into_response()
    }
}

async fn index(State(state): State<ServerState>) -> Response {
    if state.viewer_page {
        Html(viewer::PAGE).into_response()
    } else {
        (StatusCode::NOT_FOUND, "the viewer page is off (server.viewer: false)").into_response()
    }
}

async fn streams(State(state): State<ServerState>) -> Json<serde_json::Value> {
    let mut streams = Vec::new();
    for id in state.hub.stream_ids() {
        streams.push(serde_json::json!({
            "stream_id": id,
            "media_time_ms": state.hub.media_time(&id),
            "playback": playback(&state, &id).await,
            "on_screen": state.hub.on_screen(&id),
        }));
    }
    Json(serde_json::json!({ "streams": streams }))
}

/// How a player plays stream `id`: its live HLS (whose program date minus `media_origin_ms`
/// is the media time), its source file, or nothing.
async fn playback(state: &ServerState, id: &str) -> serde_json::Value {
    let hls = |origin: Option<i64>| {
        serde_json::json!({
            "kind": "hls",
            "url": format!("/v1/streams/{id}/hls/live.m3u8"),
            "media_origin_ms": origin,
            "player": live::HLS_JS_PATH,
        })
    };
    if let Some(stream) = state.hls.get(id) {
        hls(stream.media_origin_ms())
    } else if let Some(published) = live::published_playlist(state, id).await {
        hls(crate::hls::origin_of(&published))
    } else if state.videos.contains_key(id) {
        serde_json::json!({ "kind": "file", "url": format!("/v1/streams/{id}/video") })
    } else {
        serde_json::Value::Null
    }
}

async fn image(State(state): State<ServerState>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(image) = state.images.get(&name) else {
        return (StatusCode::NOT_FOUND, "no such image").into_response();
    };
    let cache = (header::CACHE_CONTROL, "public, max-age=31536000, immutable");
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(image.etag.as_str()) {
        return (StatusCode::NOT_MODIFIED, [cache, (header::ETAG, image.etag.as_str())]).into_response();
    }
    ([cache, (header::ETAG, image.etag.as_str()), (header::CONTENT_TYPE, image.content_type)], image.bytes.to_vec())
        .into_response()
}

async fn websocket(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    Query(params): Query<ViewerParams>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !state.hub.has_stream(&id) {
        let known = state.hub.stream_ids().join(", ");
        return (StatusCode::NOT_FOUND, format!("unknown stream `{id}`; this server has: {known}")).into_response();
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let mut refusal = state.access.check(&id, origin, params.token.as_deref(), now_ms() / 1000).err();
    let max = state.access.max_viewers;
    if refusal.is_none() && max > 0 && state.hub.stats.connected.load(Ordering::Relaxed) as usize >= max {
        refusal = Some(access::Refusal {
            code: access::CLOSE_SERVER_FULL,
            reason: format!("server full ({max} viewers, server.max_viewers): try again later"),
        });
    }
    let per_stream = state.access.max_viewers_per_stream;
    if refusal.is_none() && per_stream > 0 && state.hub.viewers_of(&id) >= per_stream {
        refusal = Some(access::Refusal {
            code: access::CLOSE_SERVER_FULL,
            reason: format!("stream `{id}` has {per_stream} viewers (server.max_viewers_per_stream): try again later"),
        });
    }
    let mut ip_slot = None;
    if refusal.is_none() {
        let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        let viewer = client_address(peer.ip(), forwarded, &state.access.trusted_proxies);
        match state.access.take_ip_slot(viewer) {
            Ok(slot) => ip_slot = slot,
            Err(refused) => refusal = Some(refused),
        }
    }
    // A small read buffer: client messages are a few bytes, and at 50,000 viewers each KiB a
    // connection is 50 MB (a longer message is read in several chunks, up to the limit).
    let upgrade = upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE);
    match refusal {
        // Refused viewers are told why with a close code (a browser cannot read an HTTP refusal).
        Some(refused) => upgrade.on_upgrade(move |mut socket| async move {
            tracing::debug!(stream = %id, code = refused.code, reason = %refused.reason, "viewer refused");
            let frame = CloseFrame { code: refused.code, reason: refused.reason.into() };
            let _ = socket.send(Message::Close(Some(frame))).await;
        }),
        None => upgrade.on_upgrade(move |socket| async move {
            viewer_connection(socket, state, id, params.last_event_id).await;
            drop(ip_slot); // the address's place is free once the connection is over
        }),
    }
}

/// One viewer: hello, snapshot (or, resuming, the events it missed), then events; a fresh
/// snapshot when it lags or asks.
async fn viewer_connection(socket: WebSocket, state: ServerState, stream_id: String, last_event_id: Option<String>) {
    let hub = state.hub.clone();
    // After a restart, the replay re-publishes the events viewers already had: wait for it.
    hub.wait_replayed(REPLAY_WAIT).await;
    let subscription = match &last_event_id {
        Some(last) => hub.resume_when_seen(&stream_id, last).await,
        None => hub.subscribe(&stream_id).map(|(hello, snapshot, events)| Subscription {
            hello,
            catch_up: vec![snapshot],
            resumed: false,
            events,
        }),
    };
    let Some(Subscription { hello, catch_up, mut events, .. }) = subscription else { return };
    hub.stats.connected.fetch_add(1, Ordering::Relaxed);
    let (mut tx, mut rx) = socket.split();
    let mut closing = hub.closing();
    let mut heartbeat = tokio::time::interval(state.heartbeat);
    heartbeat.reset();
    let (mut window_start, mut messages_in_window) = (tokio::time::Instant::now(), 0u32);
    let close_reason = async {
        if tx.send(Message::Text(hello)).await.is_err() {
            return None;
        }
        for message in catch_up {
            if tx.send(Message::Text(message)).await.is_err() {
                return None;
            }
        }
        loop {
            tokio::select! {
                message = events.recv() => match message {
                    Ok(text) => {
                        if tx.send(Message::Text(text)).await.is_err() { return None; }
                        heartbeat.reset();
                    }
                    Err(RecvError::Lagged(missed)) => {
                        hub.stats.lagged_resnapshots.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(stream = %stream_id, missed, "viewer fell behind; sending a fresh snapshot");
                        let (snapshot, fresh) = hub.resnapshot(&stream_id)?;
                        events = fresh;
                        if tx.send(Message::Text(snapshot)).await.is_err() { return None; }
                    }
                    Err(RecvError::Closed) => return Some((1001, "server shutting down")),
                },
                incoming = rx.next() => match incoming {
                    None | Some(Ok(Message::Close(_))) => return None,
                    Some(Err(e)) => {
                        // Oversize messages end here: say so rather than drop the line.
                        let too_big = e.to_string().contains("too long") || e.to_string().contains("too big");
                        return too_big.then_some((1009, "message too big: viewers send small control messages"));
                    }
                    Some(Ok(Message::Text(text))) => {
                        if window_start.elapsed() >= FLOOD_WINDOW {
                            (window_start, messages_in_window) = (tokio::time::Instant::now(), 0);
                        }
                        messages_in_window += 1;
                        if messages_in_window > FLOOD_MESSAGES {
                            return Some((1008, "too many messages: at most 20 in 10 s"));
                        }
                        match serde_json::from_str::<ClientMessage>(text.as_str()) {
                        Ok(ClientMessage::Snapshot) => {
                            let (snapshot, fresh) = hub.resnapshot(&stream_id)?;
                            events = fresh;
                            if tx.send(Message::Text(snapshot)).await.is_err() { return None; }
                        }
                        Err(_) => return Some((1008, "unknown message; see docs/protocol.md")),
                        }
                    }
                    Some(Ok(Message::Binary(_))) => return Some((1003, "binary messages are not accepted")),
                    Some(Ok(_)) => {}
                },
                _ = async { closing.wait_for(|closing| *closing).await.map(|_| ()) } => return Some((1001, "server shutting down")),
                _ = heartbeat.tick() => {
                    if tx.send(Message::Text(hub.heartbeat(&stream_id))).await.is_err() { return None; }
                }
            }
        }
    }
    .await;
    hub.stats.connected.fetch_sub(1, Ordering::Relaxed);
    if let Some((code, reason)) = close_reason {
        let _ = tx.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
        if code != 1001 {
            // A refused message may still sit unread in the socket; closing it now would reset
            // the connection and lose the close frame that says why. Let the client read it first.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}
