use serde::{Deserialize, Serialize};

use crate::{BBox, Money};

/// What happened to a product on screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The product came on screen at `pts_ms`.
    Appeared,
    /// The product is still on screen but its catalog entry (price, stock, title...) changed.
    Updated,
    /// The product left the screen at `pts_ms`.
    Disappeared,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Appeared => "appeared",
            EventKind::Updated => "updated",
            EventKind::Disappeared => "disappeared",
        }
    }
}

/// A change in the products on screen of a stream: what viewers, Kafka consumers and the
/// analytics tables receive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProductEvent {
    /// Deterministic id: the same frames and catalog give the same id (consumers de-duplicate on it).
    pub event_id: String,
    pub kind: EventKind,
    pub stream_id: String,
    pub sku: String,
    /// The detector label that matched the product.
    pub label: String,
    pub title: String,
    pub price: Money,
    pub currency: String,
    pub in_stock: bool,
    pub image_url: Option<String>,
    pub product_url: Option<String>,
    /// Where the product is on screen (best detection of the confirming frames); none on `disappeared`.
    pub bbox: Option<BBox>,
    /// Best detector score of the confirming frames.
    pub score: f32,
    /// How closely the object looked like the product's picture (cosine similarity of its
    /// track's running mean embedding, 0..1), when it was recognised by its picture; none when
    /// it matched on its label alone (the product has no picture, or matching is off).
    #[serde(default)]
    pub match_score: Option<f32>,
    /// Media time the event belongs to: `appeared` carries the first frame of the run that
    /// confirmed the product, `disappeared` the first frame it was missing from.
    pub pts_ms: i64,
    /// Wall-clock time at which vitrine emitted the event, ms since the Unix epoch.
    pub emitted_at_ms: i64,
}

/// A frame that could not be processed, with the stage that refused it and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub stream_id: String,
    pub seq: u64,
    pub pts_ms: i64,
    /// Pipeline stage that failed: `source`, `decode`, `infer`.
    pub stage: String,
    /// What went wrong, in words.
    pub reason: String,
    /// Where the original bytes came from (a file path), when known.
    pub origin: Option<String>,
    /// Size of the original bytes.
    pub bytes: u64,
    pub at_ms: i64,
    /// The original bytes (for the dead-letter topic; not written to the JSONL file).
    #[serde(skip)]
    pub payload: Vec<u8>,
}

/// One interval a product was on screen in a stream: a row of the `exposures` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    pub stream_id: String,
    pub sku: String,
    pub label: String,
    pub title: String,
    /// Media time of its first sighting (its `appeared` event's `pts_ms`).
    pub start_pts_ms: i64,
    /// Media time of the first frame it was missing from (its `disappeared` event's `pts_ms`).
    pub end_pts_ms: i64,
    /// Wall clock (capture time) of those two frames, ms since the Unix epoch.
    pub start_at_ms: i64,
    pub end_at_ms: i64,
    /// Frames it was sighted in while on screen.
    pub frames_seen: i64,
    pub max_score: f32,
    pub mean_score: f32,
    /// The `appeared` event that opened the interval.
    pub appeared_event_id: String,
}

impl Exposure {
    pub fn duration_ms(&self) -> i64 {
        self.end_pts_ms - self.start_pts_ms
    }
}
