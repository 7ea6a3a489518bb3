//! A folder of JPEG frames, taken in file-name order: frame i has media time i / fps.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vitrine_schemas::spec::{FramesSource, Pace};
use vitrine_schemas::{now_ms, Frame};

use super::{pts_of, FrameSink};
use crate::ConnectorError;

/// The frame files of `dir`, sorted by name.
pub fn list_frames(dir: &Path) -> Result<Vec<PathBuf>, ConnectorError> {
    let read = std::fs::read_dir(dir).map_err(|e| ConnectorError::Read { path: dir.into(), reason: e.to_string() })?;
    let mut files: Vec<PathBuf> = read
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads every frame of the folder into `sink`; returns how many were sent.
/// A file that cannot be read is still sent (empty), so it reaches the dead-letter output.
pub fn run(spec: &FramesSource, dir: &Path, sink: &FrameSink) -> Result<u64, ConnectorError> {
    let files = list_frames(dir)?;
    tracing::info!(stream = %spec.stream_id, dir = %dir.display(), frames = files.len(), "reading frames");
    let started = Instant::now();
    let mut sent = 0;
    for (seq, path) in files.iter().enumerate() {
        let seq = seq as u64;
        let pts_ms = pts_of(seq, spec.fps);
        if spec.pace == Pace::Realtime {
            let due = started + spec.phase + Duration::from_millis(pts_ms as u64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let jpeg = std::fs::read(path).unwrap_or_else(|e| {
            tracing::warn!(file = %path.display(), error = %e, "cannot read frame");
            Vec::new()
        });
        let frame = Frame {
            stream_id: spec.stream_id.clone(),
            seq,
            pts_ms,
            captured_at_ms: now_ms(),
            origin: Some(path.display().to_string()),
            position: vitrine_schemas::SourcePosition::in_stream(seq),
            jpeg,
            change: Default::default(),
        };
        if !sink.send(frame) {
            break;
        }
        sent += 1;
    }
    Ok(sent)
}
