//! Live HLS for players and CDNs: the playlist (`live.m3u8`, cached a second), its segments
//! (immutable: each name is used once), and the hls.js player the viewer page loads.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::ServerState;

/// hls.js, compiled in (see vendor/README.md): served under a versioned, immutable URL.
pub const HLS_JS_PATH: &str = "/v1/assets/hls-1.7.4.light.min.js";
const HLS_JS: &[u8] = include_bytes!("vendor/hls.light.min.js");

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub async fn hls_js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, IMMUTABLE)], HLS_JS)
        .into_response()
}

/// The playlist a sampler published for stream `id` in the Kafka source's `hls_dir` (read
/// off the runtime's threads: a slow disk must not hold up every viewer).
pub async fn published_playlist(state: &ServerState, id: &str) -> Option<String> {
    if !vitrine_schemas::spec::valid_stream_id(id) {
        return None;
    }
    tokio::fs::read_to_string(state.hls_dir.as_ref()?.join(id).join(crate::hls::PLAYLIST)).await.ok()
}

/// `GET /v1/streams/{id}/hls/{name}`: `live.m3u8` or one of its segments, from the stream's
/// own ffmpeg run (a video source with `hls:`) or from the folder a sampler publishes to.
pub async fn serve(State(state): State<ServerState>, Path((id, name)): Path<(String, String)>) -> Response {
    let embedded = state.hls.get(&id).cloned();
    if embedded.is_none() && (state.hls_dir.is_none() || !vitrine_schemas::spec::valid_stream_id(&id)) {
        let reason = if state.hub.has_stream(&id) {
            format!("stream `{id}` has no HLS: set `hls:` on its video source, or the Kafka source's `hls_dir` and `vitrine sample --hls-dir`")
        } else {
            format!("unknown stream `{id}`")
        };
        return (StatusCode::NOT_FOUND, reason).into_response();
    }
    if name == "live.m3u8" {
        // A sampler's playlist is read from the folder; segments are not (they are named once).
        let text = match &embedded {
            Some(hls) => hls.playlist().map(|text| text.to_string()),
            None => published_playlist(&state, &id).await,
        };
        return match text {
            // Players reload a live playlist about once a segment: a CDN may keep it a second.
            Some(text) => (
                [(header::CONTENT_TYPE, "application/vnd.apple.mpegurl"), (header::CACHE_CONTROL, "public, max-age=1")],
                text,
            )
                .into_response(),
            None => (StatusCode::NOT_FOUND, format!("stream `{id}` has no HLS segment yet: try again in a second"))
                .into_response(),
        };
    }
    let path = match (&embedded, &state.hls_dir) {
        (Some(hls), _) => hls.segment_file(&name),
        (None, Some(dir)) => crate::hls::is_segment_name(&name).then(|| dir.join(&id).join(&name)),
        (None, None) => None, // answered above
    };
    let Some(path) = path else {
        return (StatusCode::NOT_FOUND, format!("stream `{id}` has no segment `{name}` (any more)")).into_response();
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            ([(header::CONTENT_TYPE, "video/mp2t"), (header::CACHE_CONTROL, IMMUTABLE)], bytes).into_response()
        }
        Err(e) => (StatusCode::NOT_FOUND, format!("segment `{name}` is gone: {e}")).into_response(),
    }
}
