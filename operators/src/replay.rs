//! Replay points: where each stream can be replayed from to rebuild its tracking and debounce
//! state exactly.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::Time;

/// What a stream's state depends on as of one dataflow time: the frame after the last one
/// taken, and per detector label the oldest frame that label's state (tracks, debounce
/// windows, products on screen) goes back to.
#[derive(Clone, Debug, Default, PartialEq)]
struct Point {
    next: Option<u64>,
    origins: BTreeMap<String, u64>,
}

/// Per stream, the replay point as of each completed dataflow time. Shared by the workers of
/// a process: the tracker and debounce record, the Kafka readers look up the point as of the
/// last durable time when they commit offsets.
///
/// Only labels with a catalog entry hold the point back: a person in view for an hour must
/// not keep an hour of frames uncommitted. (Labels are all kept while no catalog was seen.
/// A label that gets its first catalog entry while its object is on screen may, after a
/// restart, appear from the replay point rather than from its first sighting.)
#[derive(Clone, Debug, Default)]
pub struct ReplayPoints {
    points: Arc<Mutex<HashMap<String, BTreeMap<Time, Point>>>>,
    catalog_labels: Arc<Mutex<Option<HashMap<String, isize>>>>,
    /// Nothing looks the points up (no Kafka source commits offsets): none are kept.
    not_kept: bool,
}

impl ReplayPoints {
    /// Points that are never looked up, so never kept: memory stays flat however long the run.
    pub fn not_kept() -> ReplayPoints {
        ReplayPoints { not_kept: true, ..ReplayPoints::default() }
    }

    /// Debounce took every frame of `stream_id` at `time`, up to `next` (exclusive).
    pub fn record(&self, stream_id: &str, time: Time, next: u64, origins: impl IntoIterator<Item = (String, u64)>) {
        if self.not_kept {
            return;
        }
        let mut points = self.points.lock().expect("replay points");
        let point = points.entry(stream_id.to_string()).or_default().entry(time).or_default();
        point.next = Some(next);
        merge(&mut point.origins, origins);
    }

    /// Another stage's per-label origins at `time` (the tracker's live tracks).
    pub fn record_origins(&self, stream_id: &str, time: Time, origins: impl IntoIterator<Item = (String, u64)>) {
        if self.not_kept {
            return;
        }
        let mut points = self.points.lock().expect("replay points");
        merge(&mut points.entry(stream_id.to_string()).or_default().entry(time).or_default().origins, origins);
    }

    /// A catalog entry of `label` came (`diff` 1) or went (-1).
    pub fn catalog_changed(&self, label: &str, diff: isize) {
        let mut labels = self.catalog_labels.lock().expect("catalog labels");
        *labels.get_or_insert_with(HashMap::new).entry(label.to_string()).or_default() += diff;
    }

    /// The replay point of `stream_id` as of the latest time before `before`, if any; older
    /// entries are forgotten (later commits only move forward).
    pub fn before(&self, stream_id: &str, before: Time) -> Option<u64> {
        let labels = self.catalog_labels.lock().expect("catalog labels").clone();
        let relevant = |label: &str| labels.as_ref().is_none_or(|l| l.get(label).is_some_and(|n| *n > 0));
        let mut points = self.points.lock().expect("replay points");
        let history = points.get_mut(stream_id)?;
        let (&time, point) = history.range(..before).rfind(|(_, p)| p.next.is_some())?;
        let origin = point.origins.iter().filter(|(label, _)| relevant(label)).map(|(_, seq)| *seq).min();
        let seq = origin.into_iter().chain(point.next).min();
        *history = history.split_off(&time);
        seq
    }
}

fn merge(into: &mut BTreeMap<String, u64>, origins: impl IntoIterator<Item = (String, u64)>) {
    for (label, seq) in origins {
        let entry = into.entry(label).or_insert(seq);
        *entry = (*entry).min(seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_point_as_of_a_durable_time() {
        let r = ReplayPoints::default();
        r.record("s", 100, 3, []);
        r.record("s", 200, 7, []);
        r.record("s", 300, 9, []);
        assert_eq!(r.before("s", 100), None);
        assert_eq!(r.before("s", 250), Some(7));
        assert_eq!(r.before("s", 1000), Some(9));
        assert_eq!(r.before("other", 1000), None);
    }

    #[test]
    fn points_not_kept_take_no_memory() {
        let r = ReplayPoints::not_kept();
        for time in 0..10_000 {
            r.record("s", time, time + 1, [("cup".to_string(), 0)]);
            r.record_origins("s", time, [("cup".to_string(), 0)]);
        }
        assert!(r.points.lock().unwrap().is_empty());
        assert_eq!(r.before("s", 20_000), None);
    }

    #[test]
    fn only_catalogued_labels_hold_the_point_back() {
        let r = ReplayPoints::default();
        r.record("s", 100, 50, [("person".to_string(), 2)]);
        r.record_origins("s", 100, [("cup".to_string(), 30), ("person".to_string(), 1)]);
        assert_eq!(r.before("s", 200), Some(1), "no catalog yet: every label counts");
        r.catalog_changed("cup", 1);
        assert_eq!(r.before("s", 200), Some(30));
        r.catalog_changed("cup", -1);
        assert_eq!(r.before("s", 200), Some(50));
    }
}
