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
    /// The encoded image (JPEG).
    #[serde(skip)]
    pub jpeg: Vec<u8>,
}
