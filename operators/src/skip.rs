//! skip: no model run for a frame that shows nothing new (`infer.max_skip`).
//!
//! Live-shopping video is mostly a host talking with the same product in view. Where a
//! stream's frames are read in order (its source's thread), each frame's compressed data is
//! walked once: that checks it is whole (the check decode would do) and gives each 8x8 block's
//! brightness, a picture at 1/8 scale, for the cost of the walk. A frame is `New` when more
//! than `changed_share` of its blocks changed by more than `changed_level` since the stream's
//! last frame the model saw (a product coming in, a cut), or when `max_skip` frames in a row
//! were skipped; else it is `Unchanged`: it is not decoded, the model does not run, and the
//! tracker carries the last detections over.
//!
//! Comparing with the last frame the model saw, not the one before, means slow changes add up
//! until they count.

use std::collections::HashMap;

use vitrine_models::block_brightness;
use vitrine_schemas::{Change, Frame};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SkipConfig {
    /// Frames in a row that may carry detections over; 0: the model sees every frame.
    pub max_skip: u32,
    /// Share of blocks (0-1) that must change for a frame to be new.
    pub changed_share: f32,
    /// Brightness change (0-255) for a block to count as changed.
    pub changed_level: u8,
}

/// The last frame the model saw of a stream, and the frames skipped since.
#[derive(Debug)]
struct LastSeen {
    blocks: Vec<i16>,
    skipped: u32,
}

/// Marks each frame `New` or `Unchanged`. One per reader of streams: feed a stream's frames in
/// order.
#[derive(Debug)]
pub struct ChangeGate {
    config: SkipConfig,
    streams: HashMap<String, LastSeen>,
}

impl ChangeGate {
    /// None when skipping is off (`max_skip` 0).
    pub fn new(config: SkipConfig) -> Option<ChangeGate> {
        (config.max_skip > 0).then(|| ChangeGate { config, streams: HashMap::new() })
    }

    /// Sets `frame.change`. A frame whose data cannot be walked (damaged, progressive) stays
    /// `Unchecked`: decode refuses it with the reason, or decodes it, and the model sees it.
    pub fn mark(&mut self, frame: &mut Frame) {
        let Ok(Some(blocks)) = block_brightness(&frame.jpeg) else {
            frame.change = Change::Unchecked;
            return;
        };
        let unchanged = match self.streams.get_mut(&frame.stream_id) {
            Some(last) if last.skipped < self.config.max_skip && last.blocks.len() == blocks.len() => {
                !changed(&last.blocks, &blocks, self.config)
            }
            _ => false,
        };
        if unchanged {
            self.streams.get_mut(&frame.stream_id).expect("seen").skipped += 1;
            frame.change = Change::Unchanged;
        } else {
            self.streams.insert(frame.stream_id.clone(), LastSeen { blocks, skipped: 0 });
            frame.change = Change::New;
        }
    }
}

/// Whether more than `changed_share` of the blocks changed by more than `changed_level`.
fn changed(before: &[i16], now: &[i16], config: SkipConfig) -> bool {
    let level = i16::from(config.changed_level);
    let moved = before.iter().zip(now).filter(|(a, b)| (**a - **b).abs() > level).count();
    moved as f32 > config.changed_share * now.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitrine_schemas::SourcePosition;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/../models/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn frame(seq: u64, jpeg: &[u8]) -> Frame {
        Frame {
            stream_id: "s".into(),
            seq,
            pts_ms: seq as i64 * 200,
            captured_at_ms: 0,
            origin: None,
            position: SourcePosition::in_stream(seq),
            jpeg: jpeg.to_vec(),
            change: Change::Unchecked,
        }
    }

    fn config(max_skip: u32) -> SkipConfig {
        SkipConfig { max_skip, changed_share: 0.05, changed_level: 16 }
    }

    fn marks(gate: &mut ChangeGate, jpegs: &[&[u8]]) -> Vec<Change> {
        jpegs
            .iter()
            .enumerate()
            .map(|(seq, jpeg)| {
                let mut f = frame(seq as u64, jpeg);
                gate.mark(&mut f);
                f.change
            })
            .collect()
    }

    #[test]
    fn the_same_picture_is_skipped_up_to_max_skip_and_another_one_is_new() {
        let (shelf, fruits) = (fixture("shelf.jpg"), fixture("fruits.jpg"));
        let mut gate = ChangeGate::new(config(2)).unwrap();
        let seen = marks(&mut gate, &[&shelf, &shelf, &shelf, &shelf, &fruits, &fruits]);
        use Change::*;
        assert_eq!(seen, [New, Unchanged, Unchanged, New, New, Unchanged]);
    }

    #[test]
    fn damaged_data_is_left_for_decode_to_refuse() {
        let mut shelf = fixture("shelf.jpg");
        let mut gate = ChangeGate::new(config(5)).unwrap();
        assert_eq!(marks(&mut gate, &[&shelf]), [Change::New]);
        let n = shelf.len();
        shelf.truncate(n / 2);
        shelf.extend([0xFF, 0xD9]);
        let mut f = frame(1, &shelf);
        gate.mark(&mut f);
        assert_eq!(f.change, Change::Unchecked);
    }

    #[test]
    fn no_skipping_without_max_skip() {
        assert!(ChangeGate::new(config(0)).is_none());
    }

    #[test]
    fn a_change_counts_by_the_share_of_blocks_that_changed() {
        let before = vec![0i16; 100];
        let mut now = before.clone();
        now[..5].iter_mut().for_each(|b| *b = 40);
        assert!(!changed(&before, &now, config(1)), "5% of the blocks is not more than 5%");
        now[5] = 40;
        assert!(changed(&before, &now, config(1)));
        let dim: Vec<i16> = before.iter().map(|b| b + 10).collect();
        assert!(!changed(&before, &dim, config(1)), "a change under the level counts for nothing");
    }
}
