//! Which objects the model thread embeds for matching: an object when it first shows (no object
//! of its label was seen there lately), again after `every`, then after twice as long each time
//! up to four times `every`, never every frame; at most a few a frame, the highest scores first.
//! What decides the card is the track's running mean ([`crate::Matcher`]): it settles after a
//! few crops, so later ones can come more rarely.
//!
//! The schedule decides in the order the model queue handed the frames out ([`Turn`]), not in
//! the order threads finish them: which crops a stream gets, and so its cards, must not depend
//! on which thread was faster (seen in CI: an apple's card 400 ms later on one run of two).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use vitrine_models::{Crop, Embedder, ModelError};
use vitrine_schemas::{BBox, FrameDetections};

use crate::decode::FrameDecoder;
use crate::PictureIndex;

/// How often and how much to embed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CropScheduleConfig {
    /// An object is embedded again once this much media time passed since its first crop, then
    /// after twice as long each time, up to [`LONGEST_WAIT`] times this. An object not seen for
    /// this long is forgotten (embedded at once when it shows again).
    pub every_ms: i64,
    /// At most this many crops a frame.
    pub max_per_frame: usize,
    /// Detections below this score are not embedded (they do not count for debounce either).
    pub min_score: f32,
}

/// Boxes overlapping by this IoU are the same object for the schedule.
const SAME_OBJECT_IOU: f32 = 0.3;

/// The longest wait between two crops of one object, in `every`s.
pub const LONGEST_WAIT: i64 = 4;

/// An object the schedule follows: its label, where it was last seen and when, and its crops.
#[derive(Clone, Debug)]
struct Taken {
    label: String,
    bbox: BBox,
    seen_pts_ms: i64,
    cropped_pts_ms: i64,
    /// Media time from the last crop to the next.
    wait_ms: i64,
}

/// A frame's place in the order its model queue (`queue`) handed frames out: the `n`th. Every
/// frame handed out takes its turn ([`CropSchedule::choose_in_turn`] or
/// [`CropSchedule::pass`]), decoded or not, or the frames after it with something to embed
/// wait. A frame with nothing to embed passes at once: it changes nothing, so it need not wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Turn {
    pub queue: usize,
    pub n: u64,
}

/// How long a frame waits for the frames before it to take their turns. Far longer than a
/// model run; only a frame that never takes its turn (a bug) would make one wait this long,
/// and then the schedule goes on out of order rather than stop.
const LONGEST_TURN_WAIT: Duration = Duration::from_secs(30);

/// The crops taken lately, per stream, and each queue's next turn.
#[derive(Debug, Default)]
struct State {
    streams: HashMap<String, Vec<Taken>>,
    turns: HashMap<usize, Turns>,
}

/// The turns of one queue taken so far: all before `next`, and those in `ahead`.
#[derive(Debug, Default)]
struct Turns {
    next: u64,
    ahead: BTreeSet<u64>,
}

impl Turns {
    fn take(&mut self, n: u64) {
        if n >= self.next {
            self.ahead.insert(n);
        }
        while self.ahead.remove(&self.next) {
            self.next += 1;
        }
    }

    /// Gives up on the turns before `n` (they never came).
    fn skip_to(&mut self, n: u64) {
        self.next = self.next.max(n);
        self.ahead.retain(|&t| t >= n);
    }
}

/// Per stream, the crops taken lately. Clones share them: every model thread holds one, and a
/// stream's frames go to whichever thread is free, so an object is embedded once an `every`,
/// not once a thread (measured: two threads with a schedule each embedded twice as often).
#[derive(Clone, Debug)]
pub struct CropSchedule {
    config: CropScheduleConfig,
    state: Arc<Mutex<State>>,
    turn_taken: Arc<Condvar>,
}

impl CropSchedule {
    pub fn new(config: CropScheduleConfig) -> CropSchedule {
        CropSchedule { config, state: Arc::default(), turn_taken: Arc::default() }
    }

    /// As [`CropSchedule::choose`], once every frame handed out before this one took its turn.
    pub fn choose_in_turn(&self, turn: Turn, frame: &FrameDetections, wanted: impl Fn(&str) -> bool) -> Vec<usize> {
        if !frame.detections.iter().any(|d| d.score >= self.config.min_score && wanted(&d.label)) {
            self.pass(turn);
            return Vec::new();
        }
        let mut state = self.wait_for(turn);
        let chosen = self.choose_locked(&mut state, frame, wanted);
        self.taken(state, turn);
        chosen
    }

    /// The turn of a frame with nothing to embed (not decoded, or its decode failed).
    pub fn pass(&self, turn: Turn) {
        let state = self.state.lock().expect("crop schedule");
        self.taken(state, turn);
    }

    fn wait_for(&self, turn: Turn) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().expect("crop schedule");
        let deadline = Instant::now() + LONGEST_TURN_WAIT;
        while state.turns.get(&turn.queue).map_or(0, |t| t.next) < turn.n {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                tracing::warn!(
                    queue = turn.queue,
                    turn = turn.n,
                    "a frame before this one never took its turn at the crop schedule; going on out of order"
                );
                state.turns.entry(turn.queue).or_default().skip_to(turn.n);
                break;
            };
            state = self.turn_taken.wait_timeout(state, left).expect("crop schedule").0;
        }
        state
    }

    fn taken(&self, mut state: MutexGuard<'_, State>, turn: Turn) {
        let turns = state.turns.entry(turn.queue).or_default();
        turns.take(turn.n);
        drop(state);
        self.turn_taken.notify_all();
    }

    /// The detections of `frame` to embed now, among those `wanted` (a label some picture has),
    /// in whatever order frames come (the tests' way in; the model threads take turns).
    #[cfg(test)]
    fn choose(&self, frame: &FrameDetections, wanted: impl Fn(&str) -> bool) -> Vec<usize> {
        let mut state = self.state.lock().expect("crop schedule");
        self.choose_locked(&mut state, frame, wanted)
    }

    fn choose_locked(&self, state: &mut State, frame: &FrameDetections, wanted: impl Fn(&str) -> bool) -> Vec<usize> {
        let config = self.config;
        let pts = frame.pts_ms;
        let taken = state.streams.entry(frame.stream_id.clone()).or_default();
        // Threads finish a stream's frames slightly out of order: an object seen in a frame just
        // after this one counts too. A stream that starts over (a loop) forgets the old ones.
        taken.retain(|t| (pts - t.seen_pts_ms).abs() < config.every_ms);
        let mut order: Vec<usize> = (0..frame.detections.len())
            .filter(|&i| frame.detections[i].score >= config.min_score && wanted(&frame.detections[i].label))
            .collect();
        order.sort_by(|&a, &b| frame.detections[b].score.total_cmp(&frame.detections[a].score).then(a.cmp(&b)));
        let mut chosen = Vec::new();
        for i in order {
            let d = &frame.detections[i];
            let room = chosen.len() < config.max_per_frame;
            let known = taken
                .iter_mut()
                .filter(|t| t.label == d.label)
                .map(|t| (t.bbox.iou(&d.bbox), t))
                .filter(|(iou, _)| *iou >= SAME_OBJECT_IOU)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, t)| t);
            match known {
                Some(t) => {
                    t.bbox = d.bbox;
                    t.seen_pts_ms = t.seen_pts_ms.max(pts);
                    if room && pts - t.cropped_pts_ms >= t.wait_ms {
                        t.cropped_pts_ms = pts;
                        t.wait_ms = (t.wait_ms * 2).min(config.every_ms * LONGEST_WAIT);
                        chosen.push(i);
                    }
                }
                // Over the frame's few, a new object waits for the next frame.
                None if room => {
                    taken.push(Taken {
                        label: d.label.clone(),
                        bbox: d.bbox,
                        seen_pts_ms: pts,
                        cropped_pts_ms: pts,
                        wait_ms: config.every_ms,
                    });
                    chosen.push(i);
                }
                None => {}
            }
        }
        chosen
    }
}

/// The embedder of a model thread, with its schedule and the catalog's pictures.
#[derive(Debug)]
pub struct FrameEmbedder {
    pub embedder: Embedder,
    pub schedule: CropSchedule,
    pub pictures: PictureIndex,
}

impl FrameEmbedder {
    /// The detections of `frame`, handed out at `turn`, due for a crop now (the schedule
    /// counts them as taken).
    pub fn due(&self, turn: Turn, frame: &FrameDetections) -> Vec<usize> {
        let pictures = &self.pictures;
        self.schedule.choose_in_turn(turn, frame, |label| pictures.has_label(label, &frame.stream_id))
    }

    /// Embeds the detections `chosen` (by [`FrameEmbedder::due`]) of `frame`, the frame
    /// `decoder` decoded last, into their `embedding`.
    pub fn embed(
        &mut self,
        decoder: &mut FrameDecoder,
        frame: &mut FrameDetections,
        chosen: Vec<usize>,
    ) -> Result<(), ModelError> {
        if chosen.is_empty() {
            return Ok(());
        }
        let side = self.embedder.side();
        let (fw, fh) = (frame.width as f32, frame.height as f32);
        let mut crops = Vec::new();
        let mut at = Vec::new();
        for i in chosen {
            let b = frame.detections[i].bbox;
            let x = (b.x0.max(0.0) * fw) as u32;
            let y = (b.y0.max(0.0) * fh) as u32;
            let region = Crop {
                x,
                y,
                width: ((b.x1.min(1.0) * fw) as u32).saturating_sub(x).max(1),
                height: ((b.y1.min(1.0) * fh) as u32).saturating_sub(y).max(1),
            };
            if let Some(crop) = decoder.crop_of_last(region, side) {
                crops.push(crop);
                at.push(i);
            }
        }
        let refs: Vec<_> = crops.iter().collect();
        for (i, embedding) in at.into_iter().zip(self.embedder.embed(&refs)?) {
            frame.detections[i].embedding = Some(embedding.values().to_vec());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use vitrine_schemas::Detection;

    use super::*;

    fn frame(pts_ms: i64, boxes: &[(&str, f32, f32)]) -> FrameDetections {
        FrameDetections {
            stream_id: "s".into(),
            seq: pts_ms as u64 / 200,
            pts_ms,
            captured_at_ms: 0,
            width: 1280,
            height: 720,
            model: "m".into(),
            detections: boxes
                .iter()
                .map(|&(label, score, x)| Detection {
                    label: label.into(),
                    class_id: 0,
                    score,
                    bbox: BBox { x0: x, y0: 0.2, x1: x + 0.2, y1: 0.5 },
                    track_id: None,
                    embedding: None,
                    product: None,
                })
                .collect(),
            position: Default::default(),
            carried: false,
        }
    }

    fn schedule() -> CropSchedule {
        CropSchedule::new(CropScheduleConfig { every_ms: 1000, max_per_frame: 2, min_score: 0.3 })
    }

    #[test]
    fn an_object_is_embedded_when_it_shows_and_again_after_the_interval() {
        let s = schedule();
        let cups = |pts| frame(pts, &[("cup", 0.8, 0.1)]);
        assert_eq!(s.choose(&cups(0), |_| true), vec![0]);
        assert!(s.choose(&cups(200), |_| true).is_empty());
        assert!(s.choose(&cups(800), |_| true).is_empty());
        assert_eq!(s.choose(&cups(1000), |_| true), vec![0]);
        // Another cup elsewhere is a new object: embedded at once.
        assert_eq!(s.choose(&frame(1200, &[("cup", 0.8, 0.1), ("cup", 0.7, 0.6)]), |_| true), vec![1]);
    }

    #[test]
    fn only_wanted_labels_above_the_score_and_the_best_few_a_frame() {
        let s = schedule();
        let f =
            frame(0, &[("cup", 0.5, 0.0), ("book", 0.9, 0.2), ("cup", 0.2, 0.4), ("cup", 0.6, 0.6), ("cup", 0.9, 0.8)]);
        assert_eq!(s.choose(&f, |l| l == "cup"), vec![4, 3], "the two best cups; not the book nor the weak one");
        assert_eq!(s.choose(&frame(200, &[("cup", 0.5, 0.0)]), |l| l == "cup"), vec![0], "the rest next frame");
    }

    #[test]
    fn each_stream_has_its_own_schedule_and_a_rewind_starts_it_anew() {
        let s = schedule();
        assert_eq!(s.choose(&frame(5000, &[("cup", 0.8, 0.1)]), |_| true), vec![0]);
        let mut other = frame(5000, &[("cup", 0.8, 0.1)]);
        other.stream_id = "t".into();
        assert_eq!(s.choose(&other, |_| true), vec![0]);
        assert_eq!(s.choose(&frame(0, &[("cup", 0.8, 0.1)]), |_| true), vec![0], "media time went back (a loop)");
    }

    #[test]
    fn model_threads_share_one_schedule_whatever_order_they_finish_a_streams_frames_in() {
        let (first, second) = (schedule(), schedule());
        let shared = first.clone();
        let cups = |pts| frame(pts, &[("cup", 0.8, 0.1)]);
        assert_eq!(first.choose(&cups(400), |_| true), vec![0]);
        // The other thread finishes the frame before it later: the object was just embedded.
        assert!(shared.choose(&cups(200), |_| true).is_empty());
        assert!(shared.choose(&cups(600), |_| true).is_empty());
        // A schedule of its own would embed it again.
        assert_eq!(second.choose(&cups(600), |_| true), vec![0]);
    }

    #[test]
    fn threads_finishing_a_streams_frames_out_of_order_get_the_crops_of_the_frames_in_order() {
        let s = schedule();
        let cups = |pts| frame(pts, &[("cup", 0.8, 0.1)]);
        let turn = |n| Turn { queue: 0, n };
        // Frames 0-6 (200 ms apart), handed out in order; frame 3 was not decoded. A thread
        // finishes them last to first, each as soon as the ones before it took their turns.
        let threads: Vec<_> = (0..7u64)
            .rev()
            .map(|n| {
                let s = s.clone();
                std::thread::spawn(move || {
                    if n == 3 {
                        s.pass(turn(n));
                        return None;
                    }
                    let chosen = s.choose_in_turn(turn(n), &cups(n as i64 * 200), |_| true);
                    (!chosen.is_empty()).then_some(n as i64 * 200)
                })
            })
            .collect();
        let cropped: Vec<i64> = threads.into_iter().filter_map(|t| t.join().unwrap()).rev().collect();
        assert_eq!(cropped, vec![0, 1000], "as in order: when it shows, and again after `every`");
    }

    #[test]
    fn a_frame_with_nothing_to_embed_does_not_wait_for_the_frames_before_it() {
        let s = schedule();
        let turn = |n| Turn { queue: 0, n };
        let started = Instant::now();
        // Frame 0 is still with the model; frame 1 shows only labels no picture has.
        assert!(s.choose_in_turn(turn(1), &frame(200, &[("book", 0.9, 0.1)]), |l| l == "cup").is_empty());
        s.pass(turn(2));
        assert!(started.elapsed() < LONGEST_TURN_WAIT / 2, "they did not wait for frame 0");
        // Frame 0 takes its turn: the next one to embed, 3, goes at once.
        assert_eq!(s.choose_in_turn(turn(0), &frame(0, &[("cup", 0.8, 0.1)]), |l| l == "cup"), vec![0]);
        assert!(s.choose_in_turn(turn(3), &frame(600, &[("cup", 0.8, 0.1)]), |l| l == "cup").is_empty());
    }

    #[test]
    fn an_object_on_screen_is_embedded_less_often_as_its_mean_settles_and_anew_once_forgotten() {
        let s = schedule();
        let cups = |pts| frame(pts, &[("cup", 0.8, 0.1)]);
        let crops: Vec<i64> =
            (0..60).map(|n| n * 200).filter(|&pts| !s.choose(&cups(pts), |_| true).is_empty()).collect();
        // After 1 s, then 2 s, then every 4 s (LONGEST_WAIT x every).
        assert_eq!(crops, vec![0, 1000, 3000, 7000, 11000]);
        // Gone for a second: a new object when it shows again, embedded at once.
        assert_eq!(s.choose(&cups(13000), |_| true), vec![0]);
    }
}
