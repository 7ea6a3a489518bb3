//! The queue between embedded sources and the dataflow, with load shedding for live streams.
//!
//! A live stream does not wait: when the model cannot keep up, its frames pile up and every
//! card the viewers see comes later and later. So a live stream's frame that has waited
//! longer than `max_lag` while a newer frame of the same stream is queued is shed: the newest
//! frame always goes on, the shed ones are counted. Streams read from files (`pace: fast`)
//! are never shed: they wait, and a replay stays exact.

use std::collections::{BTreeMap, HashSet, VecDeque};

use vitrine_schemas::Frame;

/// Frames queued per stream, oldest first.
#[derive(Debug)]
pub struct FeedQueue {
    queues: BTreeMap<String, VecDeque<Frame>>,
    live: HashSet<String>,
    max_lag_ms: Option<i64>,
    /// The next stream to take from (round robin).
    turn: usize,
    len: usize,
}

impl FeedQueue {
    /// `live`: the streams that may be shed; `max_lag_ms`: none for no shedding at all.
    pub fn new(live: HashSet<String>, max_lag_ms: Option<i64>) -> FeedQueue {
        FeedQueue { queues: BTreeMap::new(), live, max_lag_ms, turn: 0, len: 0 }
    }

    /// Queues a frame; returns the frames of its stream shed to make it current (oldest first).
    pub fn push(&mut self, frame: Frame, now_ms: i64) -> Vec<Frame> {
        let stream_id = frame.stream_id.clone();
        let queue = self.queues.entry(stream_id.clone()).or_default();
        queue.push_back(frame);
        self.len += 1;
        let mut shed = Vec::new();
        if let (Some(max_lag), true) = (self.max_lag_ms, self.live.contains(&stream_id)) {
            while queue.len() > 1 && queue.front().is_some_and(|f| now_ms - f.captured_at_ms > max_lag) {
                shed.extend(queue.pop_front());
                self.len -= 1;
            }
        }
        shed
    }

    /// The next frame to feed: the oldest of the next stream in turn.
    pub fn pop(&mut self) -> Option<Frame> {
        if self.len == 0 {
            return None;
        }
        let streams: Vec<&String> = self.queues.iter().filter(|(_, q)| !q.is_empty()).map(|(s, _)| s).collect();
        let stream = streams[self.turn % streams.len()].clone();
        self.turn = self.turn.wrapping_add(1);
        self.len -= 1;
        self.queues.get_mut(&stream).and_then(VecDeque::pop_front)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: &str, seq: u64, captured_at_ms: i64) -> Frame {
        Frame {
            stream_id: stream.into(),
            seq,
            pts_ms: seq as i64 * 200,
            captured_at_ms,
            origin: None,
            position: vitrine_schemas::SourcePosition::in_stream(seq),
            jpeg: Default::default(),
            change: Default::default(),
        }
    }

    #[test]
    fn a_live_stream_keeps_its_newest_frame_and_sheds_the_stale_ones() {
        let mut q = FeedQueue::new(["live".to_string()].into(), Some(1000));
        assert!(q.push(frame("live", 0, 0), 500).is_empty());
        assert!(q.push(frame("live", 1, 200), 900).is_empty(), "nothing waited over a second yet");
        let shed = q.push(frame("live", 2, 1400), 1500);
        assert_eq!(shed.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![0, 1]);
        // However late, the newest frame is never shed.
        assert!(q.push(frame("live", 3, 1600), 9000).iter().map(|f| f.seq).eq([2]));
        assert_eq!(q.pop().map(|f| f.seq), Some(3));
        assert!(q.is_empty());
    }

    #[test]
    fn a_file_is_never_shed_and_streams_take_turns() {
        let mut q = FeedQueue::new(["live".to_string()].into(), Some(1000));
        for seq in 0..3 {
            assert!(q.push(frame("file", seq, 0), 60_000).is_empty());
        }
        q.push(frame("live", 0, 60_000), 60_000);
        let order: Vec<(String, u64)> = std::iter::from_fn(|| q.pop()).map(|f| (f.stream_id, f.seq)).collect();
        let names = |v: &[(&str, u64)]| v.iter().map(|(s, n)| (s.to_string(), *n)).collect::<Vec<_>>();
        assert_eq!(order, names(&[("file", 0), ("live", 0), ("file", 1), ("file", 2)]));
    }
}
