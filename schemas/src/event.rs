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
    pub start_pts_ms: i64,
    pub end_pts_ms: i64,
    pub max_score: f32,
    /// The `appeared` event that opened the interval.
    pub appeared_event_id: String,
    /// Wall clock when the interval closed, ms since the Unix epoch.
    pub ended_at_ms: i64,
}

impl Exposure {
    pub fn duration_ms(&self) -> i64 {
        self.end_pts_ms - self.start_pts_ms
    }
}

/// Turns product events into exposures: an interval opens at `appeared` and closes at
/// `disappeared`; intervals shorter than `min_dwell_ms` do not count as shown.
#[derive(Debug, Default)]
pub struct ExposureTracker {
    open: std::collections::HashMap<(String, String), Exposure>,
    min_dwell_ms: i64,
}

impl ExposureTracker {
    pub fn new(min_dwell_ms: i64) -> ExposureTracker {
        ExposureTracker { open: Default::default(), min_dwell_ms }
    }

    /// The exposure this event closes, if any (and long enough).
    pub fn observe(&mut self, e: &ProductEvent) -> Option<Exposure> {
        let key = (e.stream_id.clone(), e.sku.clone());
        match e.kind {
            EventKind::Appeared => {
                self.open.insert(
                    key,
                    Exposure {
                        stream_id: e.stream_id.clone(),
                        sku: e.sku.clone(),
                        label: e.label.clone(),
                        title: e.title.clone(),
                        start_pts_ms: e.pts_ms,
                        end_pts_ms: e.pts_ms,
                        max_score: e.score,
                        appeared_event_id: e.event_id.clone(),
                        ended_at_ms: 0,
                    },
                );
                None
            }
            EventKind::Updated => {
                if let Some(x) = self.open.get_mut(&key) {
                    x.title = e.title.clone();
                    x.max_score = x.max_score.max(e.score);
                }
                None
            }
            EventKind::Disappeared => {
                let mut x = self.open.remove(&key)?;
                x.end_pts_ms = e.pts_ms;
                x.ended_at_ms = e.emitted_at_ms;
                (x.duration_ms() >= self.min_dwell_ms).then_some(x)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, pts_ms: i64) -> ProductEvent {
        ProductEvent {
            event_id: format!("{kind:?}-{pts_ms}"),
            kind,
            stream_id: "s".into(),
            sku: "A".into(),
            label: "cup".into(),
            title: "Mug".into(),
            price: Money(100),
            currency: "EUR".into(),
            in_stock: true,
            image_url: None,
            product_url: None,
            bbox: None,
            score: 0.8,
            pts_ms,
            emitted_at_ms: 0,
        }
    }

    #[test]
    fn short_intervals_do_not_count_as_shown() {
        let mut t = ExposureTracker::new(2000);
        assert!(t.observe(&event(EventKind::Appeared, 1000)).is_none());
        assert!(t.observe(&event(EventKind::Disappeared, 2500)).is_none(), "1.5 s is under the dwell");
        t.observe(&event(EventKind::Appeared, 4000));
        let x = t.observe(&event(EventKind::Disappeared, 9000)).expect("5 s counts");
        assert_eq!((x.start_pts_ms, x.duration_ms(), x.appeared_event_id.as_str()), (4000, 5000, "Appeared-4000"));
    }
}
