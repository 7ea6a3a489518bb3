//! Which Kafka offsets a worker may commit.
//!
//! Two bounds, the lower wins, per partition:
//! - durability: only offsets after frames whose results are durable (the sink thread says
//!   up to which dataflow time);
//! - debounce state: a restart replays from the committed offset with no state, so the
//!   offset must not pass the oldest frame that a stream's debounce state depends on (its
//!   replay point as of that durable time).
//!
//! Beside the offset, a commit says how far results were sent (`sent`): a restart reads again
//! from the offset to rebuild debounce state, but does not send the results of frames before
//! `sent` again (so a drained and restarted job sends every event once; after a crash, what
//! was sent but not yet committed is sent again, with the same ids).

use std::collections::{BTreeMap, HashMap};

use vitrine_operators::Time;

#[derive(Debug, Default)]
pub struct OffsetTracker {
    /// Per dataflow time, per partition, the offset after the last message read at that time.
    read: BTreeMap<Time, BTreeMap<i32, i64>>,
    /// Per partition, the offset after the last message whose results are durable.
    durable_next: BTreeMap<i32, i64>,
    /// Per stream: its partition and the offsets of its frames not yet behind a replay point.
    frames: HashMap<String, (i32, BTreeMap<u64, i64>)>,
    committed: BTreeMap<i32, Commit>,
    /// Per partition, how far the last run sent results (a floor for `sent`).
    sent_before: BTreeMap<i32, i64>,
    /// The last commit may not have reached the broker: send it again even if nothing moved.
    resend: bool,
}

/// What is committed for a partition: where a restart reads from, and the offset before which
/// every frame's results were sent (kept in the commit's metadata).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commit {
    pub offset: i64,
    pub sent: i64,
}

impl OffsetTracker {
    /// A tracker for a worker whose last run sent results up to `sent_before` (per partition).
    pub fn resuming(sent_before: &BTreeMap<i32, i64>) -> OffsetTracker {
        OffsetTracker { sent_before: sent_before.clone(), ..OffsetTracker::default() }
    }

    /// Records a message read at `time`; `frame` is its stream and seq when it is a frame.
    pub fn read(&mut self, time: Time, partition: i32, offset: i64, frame: Option<(&str, u64)>) {
        let next = self.read.entry(time).or_default().entry(partition).or_insert(offset + 1);
        *next = (*next).max(offset + 1);
        if let Some((stream, seq)) = frame {
            let entry = self.frames.entry(stream.to_string()).or_insert_with(|| (partition, BTreeMap::new()));
            entry.0 = partition;
            entry.1.insert(seq, offset);
        }
    }

    /// The offsets to commit now, given the durable time, each stream's replay point as of it
    /// and, per partition, how far other sinks made its results durable (`cap`, none: not at
    /// all yet); empty when nothing moved.
    ///
    /// The replay points are taken as of the earliest time whose frames are not all durable
    /// (by `durable` or by `cap`): a replay from there must be able to rebuild every result
    /// that is not durable yet.
    pub fn to_commit(
        &mut self,
        durable: Time,
        replay_point: impl Fn(&str, Time) -> Option<u64>,
        cap: impl Fn(i32) -> Option<i64>,
    ) -> BTreeMap<i32, Commit> {
        let mut durable = durable;
        for (time, read) in &self.read {
            if *time >= durable {
                break;
            }
            if read.iter().any(|(p, next)| cap(*p).is_none_or(|cap| *next > cap)) {
                durable = *time;
                break;
            }
        }
        while let Some(entry) = self.read.first_entry() {
            if *entry.key() >= durable {
                break;
            }
            for (p, next) in entry.remove() {
                let d = self.durable_next.entry(p).or_insert(next);
                *d = (*d).max(next);
            }
        }
        let mut want: BTreeMap<i32, Commit> = self
            .durable_next
            .iter()
            .map(|(p, next)| {
                let sent = cap(*p).map_or(*next, |cap| (*next).min(cap));
                (*p, Commit { offset: *next, sent: sent.max(self.sent_before.get(p).copied().unwrap_or(0)) })
            })
            .collect();
        for (stream, (partition, log)) in self.frames.iter_mut() {
            if let Some(point) = replay_point(stream, durable) {
                *log = log.split_off(&point);
            }
            // Without a replay point yet, hold at the stream's first frame read.
            if let (Some((_, &offset)), Some(w)) = (log.iter().next(), want.get_mut(partition)) {
                w.offset = w.offset.min(offset);
            }
        }
        want.retain(|p, next| match cap(*p) {
            Some(cap) => {
                next.offset = next.offset.min(cap);
                true
            }
            None => false,
        });
        // Never back: a commit moves the offset, the sent mark, or both, forward.
        want.retain(|p, next| match self.committed.get(p) {
            Some(c) => {
                next.offset = next.offset.max(c.offset);
                next.sent = next.sent.max(c.sent);
                next.offset > c.offset || next.sent > c.sent || self.resend
            }
            None => true,
        });
        self.resend = false;
        want
    }

    /// A commit failed on its way: the next one carries every partition again.
    pub fn commit_failed(&mut self) {
        self.resend = true;
    }

    /// The offsets were committed.
    pub fn committed(&mut self, commits: &BTreeMap<i32, Commit>) {
        self.committed.extend(commits.iter().map(|(p, c)| (*p, *c)));
    }

    /// Whether messages were read whose results are not durable yet.
    pub fn waiting_for_durability(&self) -> bool {
        !self.read.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(commits: BTreeMap<i32, Commit>) -> BTreeMap<i32, i64> {
        commits.into_iter().map(|(p, c)| (p, c.offset)).collect()
    }

    #[test]
    fn after_a_failed_commit_the_next_one_carries_every_partition_again() {
        let mut t = OffsetTracker::default();
        t.read(1, 0, 10, None);
        t.read(1, 1, 20, None);
        let first = t.to_commit(2, |_, _| None, |_| Some(i64::MAX));
        assert_eq!(offsets(first.clone()), BTreeMap::from([(0, 11), (1, 21)]));
        t.committed(&first);
        assert!(t.to_commit(3, |_, _| None, |_| Some(i64::MAX)).is_empty(), "nothing moved");
        t.commit_failed();
        assert_eq!(offsets(t.to_commit(3, |_, _| None, |_| Some(i64::MAX))), BTreeMap::from([(0, 11), (1, 21)]));
        assert!(t.to_commit(3, |_, _| None, |_| Some(i64::MAX)).is_empty(), "once");
    }

    #[test]
    fn a_commit_says_how_far_results_were_sent_beyond_the_replay_point() {
        let mut t = OffsetTracker::resuming(&BTreeMap::from([(0, 30)]));
        for seq in 0..10u64 {
            t.read(100, 0, 20 + seq as i64, Some(("s", seq)));
        }
        // Durable up to offset 30; debounce needs the stream from seq 4 (offset 24) on. The
        // restart's mark (30) is a floor: a crash now must not send offsets 24..30 again.
        let c = t.to_commit(200, |_, _| Some(4), no_cap);
        assert_eq!(c, BTreeMap::from([(0, Commit { offset: 24, sent: 30 })]));
        t.committed(&c);
        assert!(t.to_commit(200, |_, _| Some(4), no_cap).is_empty(), "nothing moved");
        t.read(300, 0, 30, Some(("s", 10)));
        // Only the sent mark moves (the product is still on screen): that is committed too.
        let c = t.to_commit(400, |_, _| Some(4), no_cap);
        assert_eq!(c, BTreeMap::from([(0, Commit { offset: 24, sent: 31 })]));
    }

    fn no_cap(_: i32) -> Option<i64> {
        Some(i64::MAX)
    }

    #[test]
    fn commits_wait_for_the_parquet_files() {
        let mut t = OffsetTracker::default();
        for offset in 10..20 {
            let time = if offset < 15 { 100 } else { 150 };
            t.read(time, 0, offset, Some(("s", offset as u64)));
        }
        assert!(t.to_commit(200, |_, _| Some(20), |_| None).is_empty(), "no file published yet");
        assert_eq!(offsets(t.to_commit(200, |_, _| Some(20), |_| Some(15))), BTreeMap::from([(0, 15)]));
    }

    #[test]
    fn the_replay_point_is_the_one_before_the_first_result_not_yet_in_a_file() {
        // Found by the Parquet crash test: a product left at offset 62; everything was durable
        // by time, but the file holding its exit was not published. Committing 62 (the replay
        // point after the exit) would lose the exit: the replay must start where the product
        // was first seen.
        let mut t = OffsetTracker::default();
        t.read(100, 0, 15, Some(("s", 15)));
        t.read(200, 0, 62, Some(("s", 62)));
        let point = |_: &str, as_of: Time| Some(if as_of <= 200 { 15 } else { 63 });
        assert_eq!(offsets(t.to_commit(300, point, |_| Some(62))), BTreeMap::from([(0, 15)]));
        assert_eq!(offsets(t.to_commit(300, point, |_| Some(63))), BTreeMap::from([(0, 63)]));
    }

    #[test]
    fn commits_wait_for_durability() {
        let mut t = OffsetTracker::default();
        t.read(100, 0, 10, Some(("s", 0)));
        t.read(200, 0, 11, Some(("s", 1)));
        assert!(t.to_commit(100, |_, _| Some(1), no_cap).is_empty(), "nothing durable yet");
        assert_eq!(offsets(t.to_commit(150, |_, _| Some(1), no_cap)), BTreeMap::from([(0, 11)]));
        t.committed(&BTreeMap::from([(0, Commit { offset: 11, sent: 11 })]));
        assert_eq!(offsets(t.to_commit(300, |_, _| Some(2), no_cap)), BTreeMap::from([(0, 12)]));
    }

    #[test]
    fn commits_stop_at_the_oldest_frame_debounce_still_needs() {
        let mut t = OffsetTracker::default();
        for seq in 0..10u64 {
            t.read(100, 3, 50 + seq as i64, Some(("s", seq)));
        }
        // Everything is durable, but the stream's state depends on frames from seq 4 on.
        assert_eq!(offsets(t.to_commit(200, |_, _| Some(4), no_cap)), BTreeMap::from([(3, 54)]));
        t.committed(&BTreeMap::from([(3, Commit { offset: 54, sent: 54 })]));
        // Later the product left: nothing is needed any more.
        assert_eq!(offsets(t.to_commit(200, |_, _| Some(10), no_cap)), BTreeMap::from([(3, 60)]));
    }

    #[test]
    fn a_stream_without_a_replay_point_holds_at_its_first_frame() {
        let mut t = OffsetTracker::default();
        t.read(100, 0, 7, None); // a dead letter: no stream state
        t.read(100, 0, 8, Some(("s", 0)));
        assert_eq!(offsets(t.to_commit(200, |_, _| None, no_cap)), BTreeMap::from([(0, 8)]));
    }
}
