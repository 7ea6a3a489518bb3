//! track: per-stream multi-object IoU tracking (after ByteTrack), so each object keeps one
//! track id from frame to frame and through short occlusions.
//!
//! Per frame, in two passes: detections from `high_score` are matched to the stream's tracks
//! (live or lost) of the same label by box overlap; then the tracks still unmatched that were
//! live are matched to the weaker detections (from `low_score`), which continue a track but
//! never start one. High detections left over start new tracks. A track that is not matched
//! is lost; it can be found again until `lost_ms` of media time passed, and then it ends.
//!
//! Track ids come from the frame that started the track (`seq * 1000 + rank of the detection
//! in that frame`), not from a counter, so replaying a stream from any frame before a track
//! started gives it the same id.

use std::collections::{BTreeMap, HashMap};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;
use vitrine_schemas::{BBox, Detection, FrameDetections};

use crate::{stream_route, ReplayPoints, Stage, StageTimer, Time};

#[derive(Clone, Debug, PartialEq)]
pub struct TrackerConfig {
    /// First pass: a detection from this score continues the track it overlaps, or starts one.
    pub high_score: f32,
    /// Second pass: a detection from this score continues a live track it overlaps.
    pub low_score: f32,
    /// Least box overlap (IoU) for the first pass.
    pub match_iou: f32,
    /// Least box overlap (IoU) for the second pass (stricter: weak detections are often noise).
    pub low_match_iou: f32,
    /// A track not matched for this long (media time) ends.
    pub lost_ms: i64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig { high_score: 0.5, low_score: 0.1, match_iou: 0.3, low_match_iou: 0.5, lost_ms: 1500 }
    }
}

/// The frame `seq` a track id was started in.
pub fn track_origin(track_id: u64) -> u64 {
    track_id / 1000
}

#[derive(Clone, Debug)]
struct Track {
    id: u64,
    label: String,
    bbox: BBox,
    last_seen_pts: i64,
    /// Matched in the last frame (a lost track only takes part in the first pass).
    live: bool,
}

/// Tracks of every stream a worker owns. Feed frames of a stream in `seq` order.
#[derive(Debug, Default)]
pub struct Tracker {
    config: TrackerConfig,
    streams: HashMap<String, Vec<Track>>,
    /// Per stream, the detections of the last frame the model saw (for frames it skipped).
    last_seen: HashMap<String, Vec<Detection>>,
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Tracker {
        Tracker { config, streams: HashMap::new(), last_seen: HashMap::new() }
    }

    /// Sets `track_id` on the detections of `frame` that belong to a track. A frame the model
    /// skipped (`carried`) gets the detections of the stream's last frame it saw.
    pub fn track(&mut self, frame: &mut FrameDetections) {
        if frame.carried {
            frame.detections = self.last_seen.get(&frame.stream_id).cloned().unwrap_or_default();
        } else {
            self.last_seen.insert(frame.stream_id.clone(), frame.detections.clone());
        }
        let config = &self.config;
        let tracks = self.streams.entry(frame.stream_id.clone()).or_default();
        let pts = frame.pts_ms;
        for d in frame.detections.iter_mut() {
            d.track_id = None;
        }
        // Detections by rank: score, then position, so ids do not depend on the model's output order.
        let mut order: Vec<usize> = (0..frame.detections.len()).collect();
        order.sort_by(|&a, &b| rank(&frame.detections[a], &frame.detections[b]));
        let (high, low): (Vec<usize>, Vec<usize>) = order
            .iter()
            .copied()
            .filter(|&i| frame.detections[i].score >= config.low_score)
            .partition(|&i| frame.detections[i].score >= config.high_score);

        let mut matched = vec![false; tracks.len()];
        let all: Vec<usize> = (0..tracks.len()).collect();
        let first = greedy_match(tracks, &all, &frame.detections, &high, config.match_iou);
        let live: Vec<usize> =
            all.iter().copied().filter(|&t| tracks[t].live && !first.iter().any(|m| m.0 == t)).collect();
        let second = greedy_match(tracks, &live, &frame.detections, &low, config.low_match_iou);
        for (t, d) in first.iter().chain(&second) {
            let track = &mut tracks[*t];
            let detection = &mut frame.detections[*d];
            track.bbox = detection.bbox;
            track.last_seen_pts = pts;
            detection.track_id = Some(track.id);
            matched[*t] = true;
        }
        for (t, track) in tracks.iter_mut().enumerate() {
            track.live = matched[t];
        }
        tracks.retain(|t| t.live || pts - t.last_seen_pts < config.lost_ms);
        for (rank, &d) in high.iter().enumerate() {
            let detection = &mut frame.detections[d];
            if detection.track_id.is_none() {
                let id = frame.seq * 1000 + rank.min(999) as u64;
                detection.track_id = Some(id);
                tracks.push(Track {
                    id,
                    label: detection.label.clone(),
                    bbox: detection.bbox,
                    last_seen_pts: pts,
                    live: true,
                });
            }
        }
    }

    /// Per label, the first frame of the oldest track of `stream_id` (live or lost): replaying
    /// from there rebuilds the label's tracks.
    pub fn origins(&self, stream_id: &str) -> BTreeMap<String, u64> {
        let mut origins = BTreeMap::new();
        for t in self.streams.get(stream_id).into_iter().flatten() {
            let origin = origins.entry(t.label.clone()).or_insert(u64::MAX);
            *origin = track_origin(t.id).min(*origin);
        }
        origins
    }
}

fn rank(a: &Detection, b: &Detection) -> std::cmp::Ordering {
    let key = |d: &Detection| [d.bbox.x0, d.bbox.y0, d.bbox.x1, d.bbox.y1];
    b.score
        .total_cmp(&a.score)
        .then_with(|| a.label.cmp(&b.label))
        .then_with(|| key(a).iter().zip(key(b)).fold(std::cmp::Ordering::Equal, |o, (x, y)| o.then(x.total_cmp(&y))))
}

/// Pairs of (track, detection) of the same label, best overlap first, each used once.
fn greedy_match(
    tracks: &[Track],
    candidates: &[usize],
    detections: &[Detection],
    pool: &[usize],
    min_iou: f32,
) -> Vec<(usize, usize)> {
    let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
    for &t in candidates {
        for &d in pool {
            if tracks[t].label == detections[d].label {
                let iou = tracks[t].bbox.iou(&detections[d].bbox);
                if iou >= min_iou {
                    pairs.push((iou, t, d));
                }
            }
        }
    }
    // Best overlap first; ties by the older track and the higher-ranked detection.
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| tracks[a.1].id.cmp(&tracks[b.1].id)).then(a.2.cmp(&b.2)));
    let (mut track_used, mut detection_used) = (vec![false; tracks.len()], vec![false; detections.len()]);
    let mut matches = Vec::new();
    for (_, t, d) in pairs {
        if !track_used[t] && !detection_used[d] {
            track_used[t] = true;
            detection_used[d] = true;
            matches.push((t, d));
        }
    }
    matches
}

/// The tracking stage as a timely operator: frames are routed by stream, held until their
/// time is complete and taken in `(stream, seq)` order (like debounce), and come out with
/// track ids.
pub trait TrackObjects<'scope> {
    fn track_objects(
        self,
        config: TrackerConfig,
        replay: ReplayPoints,
        timer: StageTimer,
    ) -> Stream<'scope, Time, Vec<FrameDetections>>;
}

impl<'scope> TrackObjects<'scope> for Stream<'scope, Time, Vec<FrameDetections>> {
    fn track_objects(
        self,
        config: TrackerConfig,
        replay: ReplayPoints,
        timer: StageTimer,
    ) -> Stream<'scope, Time, Vec<FrameDetections>> {
        let route = Exchange::new(|d: &FrameDetections| stream_route(&d.stream_id, d.position.partition));
        self.unary_frontier::<CapacityContainerBuilder<Vec<FrameDetections>>, _, _, _>(route, "Track", |_, _| {
            let mut pending: BTreeMap<Time, (timely::dataflow::operators::Capability<Time>, Vec<FrameDetections>)> =
                BTreeMap::new();
            let mut tracker = Tracker::new(config);
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    let time = *cap.least().expect("a totally ordered time");
                    let entry =
                        pending.entry(time).or_insert_with(|| (cap.retain_least(0).expect("a capability"), Vec::new()));
                    entry.1.append(data);
                });
                while let Some(entry) = pending.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let time = *entry.key();
                    let (cap, mut frames) = entry.remove();
                    frames.sort_by(|a, b| (&a.stream_id, a.seq).cmp(&(&b.stream_id, b.seq)));
                    timer.time(Stage::Track, frames.len(), || frames.iter_mut().for_each(|f| tracker.track(f)));
                    let streams: std::collections::BTreeSet<&str> =
                        frames.iter().map(|f| f.stream_id.as_str()).collect();
                    for stream_id in streams {
                        replay.record_origins(stream_id, time, tracker.origins(stream_id));
                    }
                    output.session(&cap).give_iterator(frames.into_iter());
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(label: &str, score: f32, x: f32) -> Detection {
        Detection {
            label: label.into(),
            class_id: 0,
            score,
            bbox: BBox { x0: x, y0: 0.2, x1: x + 0.2, y1: 0.5 },
            track_id: None,
            embedding: None,
            product: None,
        }
    }

    fn frame(seq: u64, detections: Vec<Detection>) -> FrameDetections {
        FrameDetections {
            stream_id: "s".into(),
            seq,
            pts_ms: seq as i64 * 200,
            captured_at_ms: 0,
            width: 10,
            height: 10,
            model: "m".into(),
            position: Default::default(),
            detections,
            carried: false,
        }
    }

    #[test]
    fn a_frame_the_model_skipped_carries_the_last_detections_and_their_tracks() {
        let mut tracker = Tracker::new(TrackerConfig::default());
        let mut seen = frame(1, vec![det("cup", 0.9, 0.1), det("apple", 0.8, 0.5)]);
        tracker.track(&mut seen);
        let mut skipped = FrameDetections { carried: true, ..frame(2, Vec::new()) };
        tracker.track(&mut skipped);
        let labels =
            |f: &FrameDetections| f.detections.iter().map(|d| (d.label.clone(), d.track_id)).collect::<Vec<_>>();
        assert_eq!(labels(&skipped), labels(&seen), "the same objects, on the same tracks");
        // Another stream has nothing to carry.
        let mut other = FrameDetections { carried: true, stream_id: "t".into(), ..frame(2, Vec::new()) };
        tracker.track(&mut other);
        assert!(other.detections.is_empty());
    }

    fn ids(tracker: &mut Tracker, seq: u64, detections: Vec<Detection>) -> Vec<Option<u64>> {
        let mut f = frame(seq, detections);
        tracker.track(&mut f);
        f.detections.iter().map(|d| d.track_id).collect()
    }

    #[test]
    fn two_objects_keep_their_ids_as_they_move() {
        let mut t = Tracker::new(TrackerConfig::default());
        let start = ids(&mut t, 0, vec![det("cup", 0.9, 0.1), det("cup", 0.8, 0.6)]);
        assert_eq!(start, vec![Some(0), Some(1)]);
        // They move a little, and come out of the detector in the other order.
        let next = ids(&mut t, 1, vec![det("cup", 0.7, 0.63), det("cup", 0.9, 0.12)]);
        assert_eq!(next, vec![Some(1), Some(0)]);
    }

    #[test]
    fn an_id_survives_a_short_occlusion_but_not_a_long_one() {
        let mut t = Tracker::new(TrackerConfig::default()); // lost after 1.5 s
        assert_eq!(ids(&mut t, 0, vec![det("cup", 0.9, 0.1)]), vec![Some(0)]);
        for seq in 1..5 {
            assert_eq!(ids(&mut t, seq, vec![]), vec![]); // 0.8 s behind the host's arm
        }
        assert_eq!(ids(&mut t, 5, vec![det("cup", 0.9, 0.1)]), vec![Some(0)]);
        for seq in 6..14 {
            ids(&mut t, seq, vec![]); // 1.6 s
        }
        assert_eq!(ids(&mut t, 14, vec![det("cup", 0.9, 0.1)]), vec![Some(14_000)]);
    }

    #[test]
    fn weak_detections_continue_a_track_but_never_start_one() {
        let mut t = Tracker::new(TrackerConfig::default());
        assert_eq!(ids(&mut t, 0, vec![det("cup", 0.3, 0.1)]), vec![None]);
        assert_eq!(ids(&mut t, 1, vec![det("cup", 0.9, 0.1)]), vec![Some(1000)]);
        assert_eq!(ids(&mut t, 2, vec![det("cup", 0.3, 0.1)]), vec![Some(1000)]);
        // Elsewhere, or of another label, a weak detection is nobody's.
        assert_eq!(ids(&mut t, 3, vec![det("cup", 0.3, 0.7), det("apple", 0.3, 0.1)]), vec![None, None]);
        // Once lost, a track is only found again by a strong detection.
        assert_eq!(ids(&mut t, 4, vec![det("cup", 0.3, 0.1)]), vec![None]);
        assert_eq!(ids(&mut t, 5, vec![det("cup", 0.6, 0.1)]), vec![Some(1000)]);
    }

    #[test]
    fn replaying_from_a_tracks_first_frame_gives_the_same_ids() {
        let frames: Vec<Vec<Detection>> = (0..12)
            .map(|s| match s {
                0..=2 => vec![det("cup", 0.9, 0.1)],
                3..=4 => vec![det("apple", 0.9, 0.5), det("cup", 0.4, 0.1)],
                _ => vec![det("apple", 0.8, 0.52)],
            })
            .collect();
        let mut whole = Tracker::new(TrackerConfig::default());
        let all: Vec<_> = frames.iter().enumerate().map(|(s, d)| ids(&mut whole, s as u64, d.clone())).collect();
        let mut replay = Tracker::new(TrackerConfig::default());
        let from_3: Vec<_> =
            frames.iter().enumerate().skip(3).map(|(s, d)| ids(&mut replay, s as u64, d.clone())).collect();
        // The apple's id is the same; the cup, started before the replay point, is not tracked.
        assert_eq!(all[5..], from_3[2..]);
        assert_eq!(all[3][0], Some(3000));
    }
}
