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

/// `GET /v1/streams/{id}/hls/{name}`: `live.m3u8` or one of its segments.
pub async fn serve(State(state): State<ServerState>, Path((id, name)): Path<(String, String)>) -> Response {
    let Some(hls) = state.hls.get(&id).cloned() else {
        let reason = if state.hub.has_stream(&id) {
            format!("stream `{id}` has no HLS: set `hls:` on its video source in the spec")
        } else {
            format!("unknown stream `{id}`")
        };
        return (StatusCode::NOT_FOUND, reason).into_response();
    };
    if name == "live.m3u8" {
        return match hls.playlist() {
            // Players reload a live playlist about once a segment: a CDN may keep it a second.
            Some(text) => (
                [(header::CONTENT_TYPE, "application/vnd.apple.mpegurl"), (header::CACHE_CONTROL, "public, max-age=1")],
                text.to_string(),
            )
                .into_response(),
            None => (StatusCode::NOT_FOUND, format!("stream `{id}` has no HLS segment yet: try again in a second"))
                .into_response(),
        };
    }
    let Some(path) = hls.segment_file(&name) else {
        return (StatusCode::NOT_FOUND, format!("stream `{id}` has no segment `{name}` (any more)")).into_response();
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            ([(header::CONTENT_TYPE, "video/mp2t"), (header::CACHE_CONTROL, IMMUTABLE)], bytes).into_response()
        }
        Err(e) => (StatusCode::NOT_FOUND, format!("segment `{name}` is gone: {e}")).into_response(),
    }
}
