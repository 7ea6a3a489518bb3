//! Replay points: where each stream can be replayed from to rebuild debounce state exactly.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::Time;

/// Per stream, the replay point (a frame `seq`, see `Debouncer::replay_from`) as of each
/// completed dataflow time. Shared by the workers of a process: debounce records, the Kafka
/// readers look up the point as of the last durable time when they commit offsets.
#[derive(Clone, Debug, Default)]
pub struct ReplayPoints(Arc<Mutex<HashMap<String, BTreeMap<Time, u64>>>>);

impl ReplayPoints {
    pub fn record(&self, stream_id: &str, time: Time, seq: u64) {
        let mut points = self.0.lock().expect("replay points");
        points.entry(stream_id.to_string()).or_default().insert(time, seq);
    }

    /// The replay point of `stream_id` as of the latest time before `before`, if any; older
    /// entries are forgotten (later commits only move forward).
    pub fn before(&self, stream_id: &str, before: Time) -> Option<u64> {
        let mut points = self.0.lock().expect("replay points");
        let history = points.get_mut(stream_id)?;
        let (&time, &seq) = history.range(..before).next_back()?;
        *history = history.split_off(&time);
        Some(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_point_as_of_a_durable_time() {
        let r = ReplayPoints::default();
        r.record("s", 100, 3);
        r.record("s", 200, 7);
        r.record("s", 300, 9);
        assert_eq!(r.before("s", 100), None);
        assert_eq!(r.before("s", 250), Some(7));
        assert_eq!(r.before("s", 1000), Some(9));
        assert_eq!(r.before("other", 1000), None);
    }
}
