//! Serves a stream's source video with HTTP byte ranges, so the viewer page's player can seek.

use std::io::{Read, Seek, SeekFrom};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::ServerState;

/// Largest body one response carries; players ask for the rest with further ranges.
const MAX_CHUNK: u64 = 4 << 20;

/// Parses `bytes=START-[END]` against a file of `len` bytes.
fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let spec = value.strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            (len.saturating_sub(n), len.checked_sub(1)?)
        }
        (s, "") => (s.parse().ok()?, len.checked_sub(1)?),
        (s, e) => (s.parse().ok()?, e.parse::<u64>().ok()?.min(len.checked_sub(1)?)),
    };
    (start <= end && start < len).then_some((start, end))
}

pub async fn serve(State(state): State<ServerState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let Some(path) = state.videos.get(&id).cloned() else {
        return (StatusCode::NOT_FOUND, format!("stream `{id}` has no video file to play")).into_response();
    };
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let result = tokio::task::spawn_blocking(move || -> std::io::Result<Response> {
        let mut file = std::fs::File::open(&path)?;
        let len = file.metadata()?.len();
        let content_type = if path.extension().is_some_and(|e| e == "webm") { "video/webm" } else { "video/mp4" };
        let (start, end, status) = match range.as_deref().map(|r| parse_range(r, len)) {
            None => (0, len.saturating_sub(1), StatusCode::OK),
            Some(Some((s, e))) => (s, e.min(s + MAX_CHUNK - 1), StatusCode::PARTIAL_CONTENT),
            Some(None) => {
                return Ok((StatusCode::RANGE_NOT_SATISFIABLE, [(header::CONTENT_RANGE, format!("bytes */{len}"))])
                    .into_response())
            }
        };
        file.seek(SeekFrom::Start(start))?;
        let mut body = vec![0u8; (end + 1 - start) as usize];
        file.read_exact(&mut body)?;
        Ok((
            status,
            [
                (header::CONTENT_TYPE, content_type.to_string()),
                (header::ACCEPT_RANGES, "bytes".to_string()),
                (header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}")),
                (header::CACHE_CONTROL, "no-cache".to_string()),
            ],
            body,
        )
            .into_response())
    })
    .await;
    match result {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read the video: {e}")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-", 10), Some((0, 9)));
        assert_eq!(parse_range("bytes=2-4", 10), Some((2, 4)));
        assert_eq!(parse_range("bytes=-3", 10), Some((7, 9)));
        assert_eq!(parse_range("bytes=5-100", 10), Some((5, 9)));
        assert_eq!(parse_range("bytes=10-", 10), None);
        assert_eq!(parse_range("items=0-1", 10), None);
    }
}
