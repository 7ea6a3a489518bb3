//! The debouncer against a naive reference over random frame sequences (proptest).
//!
//! The reference recomputes everything from the whole history at every frame: the last
//! `n` frames since the product last left, the last sighting, the first frame missing. It is
//! slow and obviously right; the debouncer keeps incremental state and must agree with it.

use proptest::prelude::*;
use vitrine_operators::{DebounceConfig, Debouncer, ScreenNote};
use vitrine_schemas::{BBox, Detection, FrameDetections};

const LABELS: [&str; 3] = ["cup", "apple", "orange"];

fn frames(scores: &[[u8; 3]]) -> Vec<FrameDetections> {
    scores
        .iter()
        .enumerate()
        .map(|(i, s)| FrameDetections {
            stream_id: "s".into(),
            seq: i as u64,
            pts_ms: i as i64 * 200,
            captured_at_ms: 0,
            width: 10,
            height: 10,
            model: "m".into(),
            position: Default::default(),
            carried: false,
            detections: LABELS
                .iter()
                .zip(s)
                .filter(|(_, score)| **score > 0)
                .map(|(l, score)| Detection {
                    label: l.to_string(),
                    class_id: 0,
                    score: *score as f32 / 10.0,
                    bbox: BBox { x0: 0.1, y0: 0.1, x1: 0.2, y1: 0.2 },
                    track_id: None,
                    embedding: None,
                    product: None,
                })
                .collect(),
        })
        .collect()
}

/// (frame index, label, enter or exit, media time), sorted (order within a frame does not matter).
type Events = Vec<(usize, String, &'static str, i64)>;

fn reference(frames: &[FrameDetections], c: &DebounceConfig) -> Events {
    let mut out = Vec::new();
    for label in LABELS {
        let seen = |t: usize| frames[t].detections.iter().any(|d| d.label == label && d.score >= c.min_score);
        let mut on = false;
        let mut since = 0usize; // frames before this do not count (the product left there)
        for t in 0..frames.len() {
            if !on {
                let start = since.max((t + 1).saturating_sub(c.enter_window));
                let hits: Vec<usize> = (start..=t).filter(|&i| seen(i)).collect();
                if hits.len() >= c.enter_hits {
                    on = true;
                    out.push((t, label.to_string(), "enter", frames[hits[0]].pts_ms));
                }
            } else {
                let last = (0..=t).rev().find(|&i| seen(i)).expect("seen while on screen");
                if frames[t].pts_ms - frames[last].pts_ms >= c.hold_ms {
                    on = false;
                    since = t + 1;
                    out.push((t, label.to_string(), "exit", frames[last + 1].pts_ms));
                }
            }
        }
    }
    out.sort();
    out
}

fn debounced(frames: &[FrameDetections], c: &DebounceConfig) -> Events {
    let mut d = Debouncer::new(c.clone());
    let mut out = Vec::new();
    for (t, f) in frames.iter().enumerate() {
        for note in d.observe(f) {
            match note {
                ScreenNote::Enter { on_screen: on, .. } => out.push((t, on.label, "enter", on.since_pts)),
                ScreenNote::Exit { on_screen, exit_pts, .. } => out.push((t, on_screen.label, "exit", exit_pts)),
                ScreenNote::Position { .. } => {}
            }
        }
    }
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn the_debouncer_agrees_with_the_naive_reference(
        scores in proptest::collection::vec(proptest::array::uniform3(0u8..=10), 1..80),
        hits in 1usize..5,
        extra in 0usize..4,
        hold_frames in 1i64..8,
    ) {
        let config = DebounceConfig::simple(0.5, hits, hits + extra, hold_frames * 200);
        let frames = frames(&scores);
        prop_assert_eq!(debounced(&frames, &config), reference(&frames, &config));
    }
}

/// A recorded sequence with detector drop-outs: the product is really on screen three times,
/// and the detector misses it for 1-2 frames now and then. Three entrances, three `enter`s.
#[test]
fn dropped_detections_do_not_make_extra_entrances() {
    let on = [9u8, 0, 0];
    let off = [0u8, 0, 0];
    let mut recorded = Vec::new();
    for pattern in ["11101111011110111", "1111111001111", "1101111110111111"] {
        recorded.extend(pattern.chars().map(|c| if c == '1' { on } else { off }));
        recorded.extend([off; 15]); // the product leaves for 3 s
    }
    let config = DebounceConfig::simple(0.5, 3, 5, 1500);
    let events = debounced(&frames(&recorded), &config);
    let entrances = events.iter().filter(|e| e.2 == "enter").count();
    assert_eq!(entrances, 3, "{events:?}");
}
