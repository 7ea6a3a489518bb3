use serde::{Deserialize, Serialize};

/// One sampled frame of a stream, as the sampler (or any producer) publishes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// The stream this frame belongs to (e.g. a show or channel id).
    pub stream_id: String,
    /// Position of the frame in its stream: gapless, starting at 0, assigned by the sampler.
    pub seq: u64,
    /// Media time of the frame in the stream, in milliseconds (what the viewer's player shows).
    pub pts_ms: i64,
    /// Wall-clock time at which the frame was sampled, in ms since the Unix epoch.
    pub captured_at_ms: i64,
    /// Where the bytes came from (a file path or URL), for dead-letter reports.
    pub origin: Option<String>,
    /// Where the frame was read (Kafka partition and offset, or its place in its stream).
    pub position: SourcePosition,
    /// The encoded image (JPEG).
    pub jpeg: Vec<u8>,
    /// What the source's change check found (`infer.max_skip`).
    #[serde(default)]
    pub change: Change,
}

impl Frame {
    /// Whether the model skips this frame (its detections are carried over).
    pub fn carries_detections(&self) -> bool {
        self.change == Change::Unchanged
    }
}

/// Whether a frame shows anything new to the model (`infer.max_skip`), as the source's check
/// of its compressed data found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Change {
    /// Not checked: decode checks the data, and the model sees the frame.
    #[default]
    Unchecked,
    /// The data is whole and the picture differs from the last one the model saw: the model runs.
    New,
    /// The data is whole and the picture is like the last one the model saw: that frame's
    /// detections are carried over, and the frame is not decoded.
    Unchanged,
}

/// Largest `seq` a frame may have: 2^40, over 580 years of frames at 60 a second. Bounded so
/// that what is computed from it (track ids are `seq * 1000 + rank`) cannot overflow.
pub const MAX_SEQ: u64 = 1 << 40;

/// Largest magnitude of a frame's `pts_ms` and `captured_at_ms`: 2^45 ms, about 1,100 years
/// (a Unix-epoch time in ms today is about 2^40.7). Bounded so that differences of two times
/// (latencies, gaps, clock jumps) cannot overflow.
pub const MAX_TIME_MS: i64 = 1 << 45;

/// Where a frame was read: the Kafka partition and offset of its message, or, for a frame
/// read in-process (a video, a folder), no partition and the frame's `seq` as the offset.
/// Results carry it so that the exactly-once sinks can say which input their files cover.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourcePosition {
    pub partition: Option<i32>,
    pub offset: i64,
}

impl SourcePosition {
    /// The position of frame `seq` of a stream read in-process.
    pub fn in_stream(seq: u64) -> SourcePosition {
        SourcePosition { partition: None, offset: seq as i64 }
    }
}

/// What a result follows from in the input: the frame that caused it (`by_frame`), or, for a
/// result that no frame caused (a catalog change, the end of the input), the last frame of its
/// stream before it. `captured_at_ms` is that frame's, so a row's time partition is fixed by
/// the input and a replay puts it in the same place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cause {
    pub position: SourcePosition,
    pub captured_at_ms: i64,
    pub by_frame: bool,
}
