//! debounce: per-frame detections -> products entering and leaving the screen, in media time.
//!
//! A product (a detector label) *enters* once one object of it (one track, see [`crate::track`])
//! was sighted in `enter_hits` of the last `enter_window` frames, and *leaves* once it was not
//! sighted for `hold` of media time. While on screen, any detection on the product's track
//! counts as a sighting, however weak (ByteTrack's second pass decided it is the same object).
//! Enter carries the media time of the first sighting in the window (so a viewer's card
//! shows when the product does); leave carries the first frame it was missing from.

use std::collections::{BTreeMap, HashMap, VecDeque};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;
use vitrine_schemas::{BBox, Cause, Detection, FrameDetections};

use crate::look_alikes::look_alikes;
use crate::{stream_route, Diff, ReplayPoints, Stage, StageTimer, Time};

#[derive(Clone, Debug, PartialEq)]
pub struct DebounceConfig {
    pub min_score: f32,
    /// Per-label thresholds that replace `min_score` for those labels.
    pub label_min_score: BTreeMap<String, f32>,
    /// Hysteresis: once on screen, a detection from this (lower) score keeps it there.
    pub stay_min_score: Option<f32>,
    /// After a product leaves, it cannot appear again until this much media time passed.
    pub cooldown_ms: i64,
    /// At most this many products on screen per stream (the highest scores enter first).
    pub max_on_screen: Option<usize>,
    /// A detection with more look-alikes than this in its frame is part of a pattern, not a
    /// sighting ([`look_alikes`]). None: no limit.
    pub max_look_alikes: Option<usize>,
    pub enter_hits: usize,
    pub enter_window: usize,
    pub hold_ms: i64,
    /// Whether the end of the input ends the streams (files, folders: products still on
    /// screen disappear) or only pauses them (Kafka: a restart carries on where it stopped).
    pub input_end_closes_streams: bool,
}

impl DebounceConfig {
    /// The plain k-of-n + hold rule, with no per-label thresholds, cooldown or cap.
    pub fn simple(min_score: f32, enter_hits: usize, enter_window: usize, hold_ms: i64) -> DebounceConfig {
        DebounceConfig {
            min_score,
            label_min_score: BTreeMap::new(),
            stay_min_score: None,
            cooldown_ms: 0,
            max_on_screen: None,
            max_look_alikes: None,
            enter_hits,
            enter_window,
            hold_ms,
            input_end_closes_streams: true,
        }
    }

    pub fn min_score_of(&self, label: &str) -> f32 {
        self.label_min_score.get(label).copied().unwrap_or(self.min_score)
    }

    /// Whether `d` may count as a sighting: not one of a pattern of look-alikes in `frame`.
    fn stands_out(&self, d: &Detection, frame: &[Detection]) -> bool {
        self.max_look_alikes.is_none_or(|most| look_alikes(&d.bbox, frame, most.saturating_add(1)) <= most)
    }

    /// The score that keeps a product of `label` on screen once it is there.
    pub fn stay_score_of(&self, label: &str) -> f32 {
        let enter = self.min_score_of(label);
        self.stay_min_score.map_or(enter, |stay| stay.min(enter))
    }
}

/// A product on screen in one stream, as debounce confirmed it. It is the record that enters
/// the catalog join (+1 when it enters, -1 when it leaves), so it is plain, ordered data.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct OnScreen {
    pub stream_id: String,
    pub label: String,
    /// The product its object was recognised as by its picture (matching); none: seen by its
    /// label alone, which only products without a picture match.
    pub sku: Option<String>,
    /// How closely its object's running mean embedding matched the picture, in thousandths.
    pub match_milli: Option<u32>,
    /// Media time of the first sighting of the run that confirmed it.
    pub since_pts: i64,
    /// Best score of the confirming frames, in thousandths.
    pub score_milli: u32,
    /// Box of the best confirming frame, in ten-thousandths of the frame (x0, y0, x1, y1).
    pub bbox: [u16; 4],
    /// The Kafka partition the stream is read from (none in-process): routes the join's
    /// changes back to the stream's worker.
    pub partition: Option<i32>,
}

impl OnScreen {
    pub fn score(&self) -> f32 {
        self.score_milli as f32 / 1000.0
    }

    pub fn bbox(&self) -> BBox {
        let v = |i: usize| self.bbox[i] as f32 / 10_000.0;
        BBox { x0: v(0), y0: v(1), x1: v(2), y1: v(3) }
    }

    pub fn match_score(&self) -> Option<f32> {
        self.match_milli.map(|m| m as f32 / 1000.0)
    }
}

/// What debounce follows on a stream: a label, or a product recognised by its picture
/// (`label` + [`KEY_SEPARATOR`] + SKU), so that two mugs of one label enter and leave apart.
fn shown_key(d: &Detection) -> String {
    match &d.product {
        Some(p) => format!("{}{KEY_SEPARATOR}{}", d.label, p.sku),
        None => d.label.clone(),
    }
}

/// Between a label and a SKU in a key of [`shown_key`] (no label holds it).
const KEY_SEPARATOR: char = '\u{1f}';

/// The label and the SKU (if recognised) of a key of [`shown_key`].
fn split_key(key: &str) -> (&str, Option<&str>) {
    match key.split_once(KEY_SEPARATOR) {
        Some((label, sku)) => (label, Some(sku)),
        None => (key, None),
    }
}

/// How a product was seen while it was on screen: what its `exposures` row reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScreenStats {
    /// Wall clock of its first sighting (the frame of `since_pts`).
    pub since_captured_at_ms: i64,
    /// Frames it was sighted in, from its first sighting on.
    pub frames_seen: u64,
    pub score_sum: f64,
    pub score_max: f32,
}

impl ScreenStats {
    fn sighted(&mut self, score: f32) {
        self.frames_seen += 1;
        self.score_sum += f64::from(score);
        self.score_max = self.score_max.max(score);
    }

    pub fn mean_score(&self) -> f32 {
        if self.frames_seen == 0 {
            0.0
        } else {
            (self.score_sum / self.frames_seen as f64) as f32
        }
    }
}

impl ScreenNote {
    /// The stream the note is about.
    pub fn stream_id(&self) -> &str {
        match self {
            ScreenNote::Position { stream_id, .. } => stream_id,
            ScreenNote::Enter { on_screen, .. } | ScreenNote::Exit { on_screen, .. } => &on_screen.stream_id,
        }
    }
}

/// What debounce tells the event emitter beside the on-screen collection.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ScreenNote {
    /// The stream's media time reached `pts_ms`.
    Position { stream_id: String, pts_ms: i64 },
    /// This product just entered; `stats` so far are those of its confirming sightings.
    Enter { on_screen: OnScreen, stats: ScreenStats },
    /// This product left; it was first missing at `exit_pts` (a frame captured at `exit_captured_at_ms`).
    Exit { on_screen: OnScreen, exit_pts: i64, exit_captured_at_ms: i64, stats: ScreenStats },
}

/// A sighting of a product in one frame: pts, score, box, track, match score.
type Sighting = (i64, f32, BBox, Option<u64>, Option<f32>);
/// One frame in a product's window: its seq, and the sighting if any.
type WindowEntry = (u64, Option<Sighting>);

#[derive(Debug, Default)]
struct Track {
    /// The last `enter_window` frames.
    window: VecDeque<WindowEntry>,
    on_screen: Option<OnScreen>,
    /// Seq of the first sighting of the run that put it on screen.
    since_seq: u64,
    /// When it last left the screen (media time), for the cooldown.
    last_exit_pts: Option<i64>,
    /// While cooling down: the first sighting of the run that left, where a replay must
    /// start to know about the cooldown.
    cooldown_origin_seq: u64,
    last_seen_pts: i64,
    /// The object track of the last sighting while on screen: its detections always count.
    track_id: Option<u64>,
    /// Media time and wall clock of the first frame it was missing from, while missing.
    first_missing: Option<(i64, i64)>,
    /// Sightings while on screen.
    stats: ScreenStats,
}

#[derive(Debug, Default)]
struct StreamState {
    tracks: BTreeMap<String, Track>,
    last_pts: Option<i64>,
    last_seq: Option<u64>,
    last_captured_at_ms: i64,
    frame_gap_ms: i64,
    /// Media time -> wall clock of the last frames, to date a product's first sighting.
    recent_captures: VecDeque<(i64, i64)>,
}

/// Debounce state of every stream a worker owns. Feed frames of a stream in `seq` order.
#[derive(Debug)]
pub struct Debouncer {
    config: DebounceConfig,
    streams: HashMap<String, StreamState>,
}

/// The sightings of the one object (track) seen in at least `k` frames of the window, in
/// frame order, or none. Sightings without a track (untracked input) count as one object.
fn entering_hits(window: &VecDeque<WindowEntry>, k: usize) -> Vec<Sighting> {
    let hits = window.iter().filter_map(|(_, hit)| *hit);
    let mut by_track: BTreeMap<Option<u64>, Vec<Sighting>> = BTreeMap::new();
    for hit in hits {
        by_track.entry(hit.3).or_default().push(hit);
    }
    // The object with the most sightings; ties go to the older track.
    let best =
        by_track.into_values().filter(|h| h.len() >= k).max_by(|a, b| a.len().cmp(&b.len()).then(b[0].3.cmp(&a[0].3)));
    best.unwrap_or_default()
}

fn quantize(b: BBox) -> [u16; 4] {
    let q = |v: f32| (v.clamp(0.0, 1.0) * 10_000.0).round() as u16;
    [q(b.x0), q(b.y0), q(b.x1), q(b.y1)]
}

impl Debouncer {
    pub fn new(config: DebounceConfig) -> Debouncer {
        Debouncer { config, streams: HashMap::new() }
    }

    /// Takes the next frame of a stream; returns what entered or left with it.
    pub fn observe(&mut self, frame: &FrameDetections) -> Vec<ScreenNote> {
        let config = &self.config;
        let state = self.streams.entry(frame.stream_id.clone()).or_default();
        let pts = frame.pts_ms;
        if let Some(last) = state.last_pts {
            if pts > last {
                state.frame_gap_ms = pts - last;
            }
        }
        state.last_pts = Some(pts);
        state.last_captured_at_ms = frame.captured_at_ms;
        state.recent_captures.push_back((pts, frame.captured_at_ms));
        while state.recent_captures.len() > config.enter_window {
            state.recent_captures.pop_front();
        }

        // The best detection of each label in this frame that could count (at the lower,
        // staying threshold); whether it counts depends on the label being on screen.
        let mut sightings: BTreeMap<String, (f32, BBox, Option<u64>, Option<f32>)> = BTreeMap::new();
        let detections = &frame.detections;
        let counts = |d: &&Detection| d.score >= config.stay_score_of(&d.label) && config.stands_out(d, detections);
        for d in detections.iter().filter(counts) {
            let seen = (d.score, d.bbox, d.track_id, d.product.as_ref().map(|p| p.score));
            let entry = sightings.entry(shown_key(d)).or_insert(seen);
            if d.score > entry.0 {
                *entry = seen;
            }
        }
        for (key, (score, ..)) in &sightings {
            if !state.tracks.contains_key(key) && *score >= config.min_score_of(split_key(key).0) {
                state.tracks.insert(key.clone(), Track::default());
            }
        }

        // First the window of every label, and who leaves; then who may enter.
        let mut notes = Vec::new();
        let mut candidates: Vec<(f32, String)> = Vec::new();
        for (key, track) in state.tracks.iter_mut() {
            let label = split_key(key).0;
            let threshold =
                if track.on_screen.is_some() { config.stay_score_of(label) } else { config.min_score_of(label) };
            let mut seen = sightings
                .get(key.as_str())
                .filter(|s| s.0 >= threshold)
                .map(|&(score, bbox, track_id, matched)| (pts, score, bbox, track_id, matched));
            if let (None, Some(_), Some(product_track)) = (seen, &track.on_screen, track.track_id) {
                // The tracker matched a weak detection to the product's object: it is still there,
                // unless matching no longer recognises that object as this product (its picture
                // changed, or its running mean moved to another product).
                let sku = split_key(key).1;
                let still_it = |d: &Detection| sku.is_none() || d.product.as_ref().map(|p| p.sku.as_str()) == sku;
                seen = detections
                    .iter()
                    .find(|d| d.track_id == Some(product_track) && still_it(d) && config.stands_out(d, detections))
                    .map(|d| (pts, d.score, d.bbox, d.track_id, d.product.as_ref().map(|p| p.score)));
            }
            track.window.push_back((frame.seq, seen));
            while track.window.len() > config.enter_window {
                track.window.pop_front();
            }
            match &track.on_screen {
                None => {
                    let hits = entering_hits(&track.window, config.enter_hits);
                    let first = hits.first().map(|h| h.0);
                    let cooling =
                        track.last_exit_pts.zip(first).is_some_and(|(exit, first)| first < exit + config.cooldown_ms);
                    if !hits.is_empty() && !cooling {
                        let best = hits.iter().map(|h| h.1).fold(f32::MIN, f32::max);
                        candidates.push((best, key.clone()));
                    }
                }
                Some(on) => {
                    if let Some((_, score, _, track_id, _)) = seen {
                        track.last_seen_pts = pts;
                        track.track_id = track_id.or(track.track_id);
                        track.first_missing = None;
                        track.stats.sighted(score);
                    } else {
                        let (first_missing, exit_captured_at_ms) =
                            *track.first_missing.get_or_insert((pts, frame.captured_at_ms));
                        if pts - track.last_seen_pts >= config.hold_ms {
                            notes.push(ScreenNote::Exit {
                                on_screen: on.clone(),
                                exit_pts: first_missing,
                                exit_captured_at_ms,
                                stats: track.stats,
                            });
                            track.on_screen = None;
                            track.track_id = None;
                            track.window.clear();
                            track.last_exit_pts = Some(first_missing);
                            track.cooldown_origin_seq = track.since_seq;
                        }
                    }
                }
            }
        }
        // Highest score first; at the cap, the others wait (nothing on screen is pushed off).
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let showing = state.tracks.values().filter(|t| t.on_screen.is_some()).count();
        let room = config.max_on_screen.map_or(usize::MAX, |cap| cap.saturating_sub(showing));
        for (_, key) in candidates.into_iter().take(room) {
            let track = state.tracks.get_mut(&key).expect("a candidate has a track");
            let (label, sku) = split_key(&key);
            let hits = entering_hits(&track.window, config.enter_hits);
            let first = hits[0].0;
            let best = hits.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
            let on = OnScreen {
                stream_id: frame.stream_id.clone(),
                label: label.to_string(),
                sku: sku.map(str::to_string),
                match_milli: hits.iter().rev().find_map(|h| h.4).map(|m| (m.clamp(0.0, 1.0) * 1000.0).round() as u32),
                since_pts: first,
                score_milli: (best.1 * 1000.0).round() as u32,
                bbox: quantize(best.2),
                partition: frame.position.partition,
            };
            track.since_seq = track.window.iter().find(|(_, hit)| hit.is_some()).map_or(frame.seq, |w| w.0);
            track.on_screen = Some(on.clone());
            track.last_seen_pts = pts;
            track.track_id = hits.last().and_then(|h| h.3);
            track.first_missing = None;
            let since_captured_at_ms =
                state.recent_captures.iter().find(|(p, _)| *p == first).map_or(frame.captured_at_ms, |c| c.1);
            track.stats = ScreenStats { since_captured_at_ms, ..ScreenStats::default() };
            hits.iter().for_each(|h| track.stats.sighted(h.1));
            notes.push(ScreenNote::Enter { on_screen: on, stats: track.stats });
        }
        // Forget labels that are neither on screen, recently sighted, nor cooling down.
        let cooldown = config.cooldown_ms;
        state.tracks.retain(|_, t| {
            t.on_screen.is_some()
                || t.window.iter().any(|(_, hit)| hit.is_some())
                || t.last_exit_pts.is_some_and(|exit| pts < exit + cooldown)
        });
        state.last_seq = Some(frame.seq);
        notes
    }

    /// The oldest frame of `stream_id` that its state depends on: replaying the stream from
    /// this frame, with no state, rebuilds the same state (and re-emits the same events).
    pub fn replay_from(&self, stream_id: &str) -> Option<u64> {
        let (next, origins) = self.replay_point(stream_id)?;
        Some(origins.into_values().fold(next, u64::min))
    }

    /// The frame after the last one taken, and per label the oldest frame its state depends
    /// on: the first sighting of the run on screen, the oldest sighting in a partial window,
    /// the run that a cooldown started from, and the first frame of every object track seen.
    pub fn replay_point(&self, stream_id: &str) -> Option<(u64, BTreeMap<String, u64>)> {
        let state = self.streams.get(stream_id)?;
        let next = state.last_seq.map_or(0, |s| s + 1);
        let mut origins = BTreeMap::new();
        for (key, t) in &state.tracks {
            let tracks = t.window.iter().filter_map(|(_, hit)| hit.and_then(|h| h.3)).chain(t.track_id);
            let track_origins = tracks.map(crate::track::track_origin);
            let own = match &t.on_screen {
                Some(_) => Some(t.since_seq),
                None => {
                    let oldest_hit = t.window.iter().find(|(_, hit)| hit.is_some()).map(|w| w.0);
                    let cooling = t.last_exit_pts.map(|_| t.cooldown_origin_seq);
                    oldest_hit.into_iter().chain(cooling).min()
                }
            };
            if let Some(origin) = own.into_iter().chain(track_origins).min() {
                // Per label: a catalog change of a label replays whatever was seen of it.
                let oldest = origins.entry(split_key(key).0.to_string()).or_insert(origin);
                *oldest = (*oldest).min(origin);
            }
        }
        Some((next, origins))
    }

    /// The input ended: every product still on screen leaves, one frame after the last.
    pub fn finish(&mut self) -> Vec<ScreenNote> {
        let mut notes = Vec::new();
        let mut streams: Vec<_> = self.streams.drain().collect();
        streams.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, state) in streams {
            let end =
                (state.last_pts.unwrap_or(0) + state.frame_gap_ms, state.last_captured_at_ms + state.frame_gap_ms);
            for (_, track) in state.tracks {
                if let Some(on) = track.on_screen {
                    let (exit_pts, exit_captured_at_ms) = track.first_missing.unwrap_or(end);
                    notes.push(ScreenNote::Exit { on_screen: on, exit_pts, exit_captured_at_ms, stats: track.stats });
                }
            }
        }
        notes
    }
}

/// An update of the on-screen collection: `(label, product on screen)`.
pub type OnScreenUpdate = ((String, OnScreen), Time, Diff);

/// A note and what in the input it follows from.
pub type CausedNote = (ScreenNote, Cause);

/// The debounce stage as a timely operator. Frames are routed by stream, held until their
/// time is complete, then taken in `(stream, seq)` order, so the result does not depend on
/// how frames were spread over workers or batched.
pub trait Debounce<'scope> {
    fn debounce(
        self,
        config: DebounceConfig,
        replay: ReplayPoints,
        timer: StageTimer,
    ) -> (Stream<'scope, Time, Vec<OnScreenUpdate>>, Stream<'scope, Time, Vec<CausedNote>>);
}

impl<'scope> Debounce<'scope> for Stream<'scope, Time, Vec<FrameDetections>> {
    fn debounce(
        self,
        config: DebounceConfig,
        replay: ReplayPoints,
        timer: StageTimer,
    ) -> (Stream<'scope, Time, Vec<OnScreenUpdate>>, Stream<'scope, Time, Vec<CausedNote>>) {
        let route = Exchange::new(|d: &FrameDetections| stream_route(&d.stream_id, d.position.partition));
        self.unary_frontier::<CapacityContainerBuilder<Vec<Result<OnScreenUpdate, CausedNote>>>, _, _, _>(
            route,
            "Debounce",
            |capability, _| {
                let mut capability = Some(capability);
                let mut pending: BTreeMap<Time, Vec<FrameDetections>> = BTreeMap::new();
                let closes = config.input_end_closes_streams;
                let mut debouncer = Debouncer::new(config);
                // Per stream, its last frame: what a note no frame caused follows from.
                let mut last_cause: HashMap<String, Cause> = HashMap::new();
                move |(input, frontier), output| {
                    input.for_each(|time, data| {
                        pending.entry(*time.least().expect("a totally ordered time")).or_default().append(data);
                    });
                    let Some(cap) = capability.as_mut() else { return };
                    let ready: Vec<Time> = pending.keys().copied().filter(|t| !frontier.less_equal(t)).collect();
                    for time in ready {
                        let mut frames = pending.remove(&time).unwrap();
                        frames.sort_by(|a, b| (&a.stream_id, a.seq).cmp(&(&b.stream_id, b.seq)));
                        let at = cap.delayed(&time);
                        let mut session = output.session(&at);
                        let mut positions: BTreeMap<String, i64> = BTreeMap::new();
                        timer.time(Stage::Debounce, frames.len(), || {
                            for frame in &frames {
                                let cause = Cause {
                                    position: frame.position,
                                    captured_at_ms: frame.captured_at_ms,
                                    by_frame: true,
                                };
                                for note in debouncer.observe(frame) {
                                    session.give_iterator(outputs(note, cause, time));
                                }
                                positions.insert(frame.stream_id.clone(), frame.pts_ms);
                                last_cause.insert(frame.stream_id.clone(), Cause { by_frame: false, ..cause });
                            }
                        });
                        for (stream_id, pts_ms) in positions {
                            if let Some((next, origins)) = debouncer.replay_point(&stream_id) {
                                replay.record(&stream_id, time, next, origins);
                            }
                            let cause = last_cause[&stream_id];
                            session.give(Err((ScreenNote::Position { stream_id, pts_ms }, cause)));
                        }
                    }
                    match frontier.frontier().first() {
                        Some(min) => cap.downgrade(min),
                        None => {
                            // Input ended: close what is still on screen (if that ends the streams),
                            // then release the capability.
                            let notes = if closes { debouncer.finish() } else { Vec::new() };
                            let time = *cap.time();
                            let mut session = output.session(&*cap);
                            for note in notes {
                                let cause = last_cause.get(note.stream_id()).copied().unwrap_or_default();
                                session.give_iterator(outputs(note, cause, time));
                            }
                            drop(session);
                            capability = None;
                        }
                    }
                }
            },
        )
        .ok_err(|r| r)
    }
}

/// Enter and exit become updates of the on-screen collection as well as notes.
fn outputs(note: ScreenNote, cause: Cause, time: Time) -> impl Iterator<Item = Result<OnScreenUpdate, CausedNote>> {
    let update = match &note {
        ScreenNote::Enter { on_screen, .. } => Some(Ok(((on_screen.label.clone(), on_screen.clone()), time, 1))),
        ScreenNote::Exit { on_screen, .. } => Some(Ok(((on_screen.label.clone(), on_screen.clone()), time, -1))),
        ScreenNote::Position { .. } => None,
    };
    update.into_iter().chain(std::iter::once(Err((note, cause))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitrine_schemas::Detection;

    fn config() -> DebounceConfig {
        DebounceConfig::simple(0.5, 3, 5, 1000)
    }

    fn frame(seq: u64, labels: &[(&str, f32)]) -> FrameDetections {
        FrameDetections {
            stream_id: "s".into(),
            seq,
            pts_ms: seq as i64 * 200,
            captured_at_ms: 0,
            width: 10,
            height: 10,
            model: "m".into(),
            position: Default::default(),
            carried: false,
            detections: labels
                .iter()
                .map(|(l, s)| Detection {
                    label: l.to_string(),
                    class_id: 0,
                    score: *s,
                    bbox: BBox { x0: 0.1, y0: 0.1, x1: 0.5, y1: 0.5 },
                    track_id: None,
                    embedding: None,
                    product: None,
                })
                .collect(),
        }
    }

    fn run(frames: &[&[(&str, f32)]]) -> Vec<(String, &'static str, i64)> {
        run_with(config(), frames)
    }

    fn run_with(config: DebounceConfig, frames: &[&[(&str, f32)]]) -> Vec<(String, &'static str, i64)> {
        let mut d = Debouncer::new(config);
        let mut out = Vec::new();
        let mut notes = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            notes.extend(d.observe(&frame(i as u64, f)));
        }
        notes.extend(d.finish());
        for n in notes {
            match n {
                ScreenNote::Enter { on_screen, .. } => out.push((on_screen.label, "enter", on_screen.since_pts)),
                ScreenNote::Exit { on_screen, exit_pts, .. } => out.push((on_screen.label, "exit", exit_pts)),
                ScreenNote::Position { .. } => {}
            }
        }
        out
    }

    #[test]
    fn two_objects_of_one_label_recognised_as_two_products_enter_and_leave_apart() {
        use vitrine_schemas::ProductMatch;
        // Two mugs (both `cup`): the red one from frame 0 to 7, the blue one from 3 on.
        let mug = |sku: &str, x: f32| Detection {
            product: Some(ProductMatch { sku: sku.into(), score: 0.83 }),
            bbox: BBox { x0: x, y0: 0.1, x1: x + 0.2, y1: 0.4 },
            ..frame(0, &[("cup", 0.8)]).detections.remove(0)
        };
        let mut d = Debouncer::new(config());
        let mut notes = Vec::new();
        for seq in 0..16 {
            let mut f = frame(seq, &[]);
            if seq < 8 {
                f.detections.push(mug("MUG-RED", 0.1));
            }
            if seq >= 3 {
                f.detections.push(mug("MUG-BLUE", 0.6));
            }
            notes.extend(d.observe(&f));
        }
        let seen: Vec<_> = notes
            .iter()
            .filter_map(|n| match n {
                ScreenNote::Enter { on_screen, .. } => Some(("enter", on_screen.clone(), on_screen.since_pts)),
                ScreenNote::Exit { on_screen, exit_pts, .. } => Some(("exit", on_screen.clone(), *exit_pts)),
                ScreenNote::Position { .. } => None,
            })
            .map(|(what, on, pts)| (what, on.label, on.sku.unwrap_or_default(), on.match_milli, pts))
            .collect();
        let red = |what, pts| (what, "cup".to_string(), "MUG-RED".to_string(), Some(830), pts);
        let blue = |what, pts| (what, "cup".to_string(), "MUG-BLUE".to_string(), Some(830), pts);
        assert_eq!(seen, vec![red("enter", 0), blue("enter", 600), red("exit", 1600)]);
        let (_, origins) = d.replay_point("s").unwrap();
        assert_eq!(origins.keys().collect::<Vec<_>>(), vec!["cup"], "replay points stay per label");
    }

    #[test]
    fn a_tracked_product_no_longer_recognised_leaves_though_its_object_stays() {
        use vitrine_schemas::ProductMatch;
        // One apple on track 7 the whole time; recognised as APL-GALA until frame 5 (then its
        // picture changed, say). Its card goes after the hold, as if the apple had left.
        let apple = |recognised: bool| Detection {
            product: recognised.then(|| ProductMatch { sku: "APL-GALA".into(), score: 0.8 }),
            track_id: Some(7),
            ..frame(0, &[("apple", 0.8)]).detections.remove(0)
        };
        let mut d = Debouncer::new(config());
        let mut notes = Vec::new();
        for seq in 0..16 {
            let mut f = frame(seq, &[]);
            f.detections.push(apple(seq < 6));
            notes.extend(d.observe(&f));
        }
        let exits: Vec<_> = notes
            .iter()
            .filter_map(|n| match n {
                ScreenNote::Exit { on_screen, exit_pts, .. } => Some((on_screen.sku.clone(), *exit_pts)),
                _ => None,
            })
            .collect();
        assert_eq!(exits, vec![(Some("APL-GALA".to_string()), 6 * 200)], "{notes:?}");
    }

    #[test]
    fn enters_after_k_of_n_at_the_first_sighting() {
        let cup: &[(&str, f32)] = &[("cup", 0.9)];
        let none: &[(&str, f32)] = &[];
        let out = run(&[none, cup, none, cup, cup, none]);
        assert_eq!(out[0], ("cup".into(), "enter", 200));
    }

    #[test]
    fn an_exit_reports_every_sighting_since_the_first_with_its_capture_times() {
        let high: &[(&str, f32)] = &[("cup", 0.9)];
        let mid: &[(&str, f32)] = &[("cup", 0.6)];
        let none: &[(&str, f32)] = &[];
        let mut d = Debouncer::new(config());
        let mut frames = vec![none, high, high, high, high, mid, high];
        frames.extend([none; 6]);
        let notes: Vec<ScreenNote> = frames
            .iter()
            .enumerate()
            .flat_map(|(i, f)| {
                let frame = FrameDetections { captured_at_ms: 50_000 + i as i64 * 200, ..frame(i as u64, f) };
                d.observe(&frame)
            })
            .collect();
        let Some(ScreenNote::Exit { exit_pts, exit_captured_at_ms, stats, .. }) = notes.last() else {
            panic!("{notes:?}")
        };
        // Sighted in frames 1-6 (three to enter, three more on screen), missing from frame 7.
        assert_eq!((*exit_pts, *exit_captured_at_ms), (7 * 200, 50_000 + 7 * 200));
        assert_eq!((stats.since_captured_at_ms, stats.frames_seen, stats.score_max), (50_200, 6, 0.9));
        assert!((stats.mean_score() - 0.85).abs() < 1e-6, "{stats:?}");
    }

    #[test]
    fn low_scores_do_not_count() {
        let weak: &[(&str, f32)] = &[("cup", 0.4)];
        assert!(run(&[weak; 10]).is_empty());
    }

    #[test]
    fn short_gaps_are_held_and_long_ones_end_it() {
        let cup: &[(&str, f32)] = &[("cup", 0.9)];
        let none: &[(&str, f32)] = &[];
        // seen 0-4, missing 5-7 (600 ms < hold), seen 8-9, missing from 10 on.
        let mut frames = vec![cup; 5];
        frames.extend([none; 3]);
        frames.extend([cup; 2]);
        frames.extend([none; 8]);
        let out = run(&frames);
        assert_eq!(out, vec![("cup".into(), "enter", 0), ("cup".into(), "exit", 2000)]);
    }

    #[test]
    fn a_cooldown_stops_a_product_from_flickering_back() {
        let cup: &[(&str, f32)] = &[("cup", 0.9)];
        let none: &[(&str, f32)] = &[];
        // on 0-4, gone 5-9 (exits at 1000), back at 10 (2000 ms): within a 1.5 s cooldown it
        // may only appear with sightings from 2500 ms on.
        let mut frames = vec![cup; 5];
        frames.extend([none; 5]);
        frames.extend([cup; 10]);
        let plain = run(&frames);
        assert_eq!(plain[2], ("cup".into(), "enter", 2000));
        let cooled = run_with(DebounceConfig { cooldown_ms: 1500, ..config() }, &frames);
        assert_eq!(cooled[2], ("cup".into(), "enter", 2600));
    }

    #[test]
    fn hysteresis_keeps_a_product_on_screen_at_a_lower_score() {
        let strong: &[(&str, f32)] = &[("cup", 0.9)];
        let weak: &[(&str, f32)] = &[("cup", 0.35)];
        // Enters on strong sightings, then the detector only sees it weakly for 2 s.
        let mut frames = vec![strong; 4];
        frames.extend([weak; 10]);
        let plain = run(&frames);
        assert_eq!(plain[1], ("cup".into(), "exit", 800), "without hysteresis the weak sightings do not count");
        let sticky = run_with(DebounceConfig { stay_min_score: Some(0.3), ..config() }, &frames);
        assert_eq!(sticky.len(), 2, "{sticky:?}");
        assert_eq!(sticky[1], ("cup".into(), "exit", 2800), "it stays until the input ends");
        // Weak sightings alone never bring it on screen.
        assert!(run_with(DebounceConfig { stay_min_score: Some(0.3), ..config() }, &[weak; 10]).is_empty());
    }

    #[test]
    fn tracking_keeps_a_product_through_weak_detections_where_it_was() {
        let boxed = |score: f32, x0: f32| Detection {
            label: "cup".into(),
            class_id: 0,
            score,
            bbox: BBox { x0, y0: 0.2, x1: x0 + 0.3, y1: 0.6 },
            track_id: None,
            embedding: None,
            product: None,
        };
        let frame_with = |seq: u64, d: Vec<Detection>| FrameDetections { detections: d, ..frame(seq, &[]) };
        let mut frames: Vec<FrameDetections> = (0..4).map(|s| frame_with(s, vec![boxed(0.9, 0.10)])).collect();
        // Weak detections drifting with the product, then a weak one elsewhere in the frame.
        frames.extend((4..10).map(|s| frame_with(s, vec![boxed(0.2, 0.10 + 0.02 * (s - 3) as f32)])));
        frames.extend((10..20).map(|s| frame_with(s, vec![boxed(0.2, 0.70)])));
        let mut tracker = crate::Tracker::new(crate::TrackerConfig { low_score: 0.15, ..Default::default() });
        let mut d = Debouncer::new(config());
        let notes: Vec<ScreenNote> = frames
            .iter()
            .flat_map(|f| {
                let mut f = f.clone();
                tracker.track(&mut f);
                d.observe(&f)
            })
            .collect();
        let exits: Vec<i64> = notes
            .iter()
            .filter_map(|n| match n {
                ScreenNote::Exit { exit_pts, .. } => Some(*exit_pts),
                _ => None,
            })
            .collect();
        // Held while the tracker puts the weak detections on its track (to frame 9), lost from frame 10.
        assert_eq!(exits, vec![2000]);
        // Untracked, the weak detections do not count: it leaves at frame 4.
        let mut d = Debouncer::new(config());
        let exits: Vec<i64> = frames
            .iter()
            .flat_map(|f| d.observe(f))
            .filter_map(|n| match n {
                ScreenNote::Exit { exit_pts, .. } => Some(exit_pts),
                _ => None,
            })
            .collect();
        assert_eq!(exits, vec![800]);
    }

    fn at(seq: u64, boxes: &[(f32, f32)]) -> FrameDetections {
        let detections = boxes
            .iter()
            .map(|&(score, x0)| Detection {
                label: "cup".into(),
                class_id: 0,
                score,
                bbox: BBox { x0, y0: 0.2, x1: x0 + 0.25, y1: 0.6 },
                track_id: None,
                embedding: None,
                product: None,
            })
            .collect();
        FrameDetections { detections, ..frame(seq, &[]) }
    }

    fn tracked(frames: &[FrameDetections]) -> Vec<FrameDetections> {
        let mut tracker = crate::Tracker::new(crate::TrackerConfig { low_score: 0.15, ..Default::default() });
        frames
            .iter()
            .map(|f| {
                let mut f = f.clone();
                tracker.track(&mut f);
                f
            })
            .collect()
    }

    #[test]
    fn a_product_enters_on_one_object_seen_k_times_not_on_scattered_detections() {
        // A spurious cup flickers between three places: at most 2 of any 5 frames at one place.
        let scattered: Vec<_> = (0..10).map(|s| at(s, &[(0.9, [0.0, 0.35, 0.7][s as usize % 3])])).collect();
        let mut d = Debouncer::new(config());
        assert!(tracked(&scattered).iter().flat_map(|f| d.observe(f)).next().is_none());
        // Untracked, the same frames count as one label seen 5 times out of 5.
        let mut d = Debouncer::new(config());
        assert!(scattered.iter().flat_map(|f| d.observe(f)).next().is_some());
    }

    #[test]
    fn replaying_tracked_frames_from_the_replay_point_rebuilds_the_same_events() {
        // Two cups: one held still and briefly hidden, one moving in and out, weak detections between.
        let frames: Vec<FrameDetections> = (0..40u64)
            .map(|s| {
                let mut boxes = Vec::new();
                if !(12..15).contains(&s) && s < 30 {
                    boxes.push((if s % 4 == 3 { 0.3 } else { 0.85 }, 0.05));
                }
                if (5..25).contains(&s) && s % 7 != 0 {
                    boxes.push((0.7, 0.5 + 0.01 * (s % 5) as f32));
                }
                at(s, &boxes)
            })
            .collect();
        let config = DebounceConfig { cooldown_ms: 800, ..config() };
        let run = |from: usize| {
            let mut tracker = crate::Tracker::new(crate::TrackerConfig { low_score: 0.15, ..Default::default() });
            let mut d = Debouncer::new(config.clone());
            frames[from..]
                .iter()
                .map(|f| {
                    let mut f = f.clone();
                    tracker.track(&mut f);
                    (f.seq, d.observe(&f))
                })
                .collect::<Vec<_>>()
        };
        let full = run(0);
        assert!(full.iter().any(|(_, notes)| !notes.is_empty()));
        let mut tracker = crate::Tracker::new(crate::TrackerConfig { low_score: 0.15, ..Default::default() });
        let mut original = Debouncer::new(config.clone());
        for (cut, frame) in frames.iter().enumerate() {
            let mut frame = frame.clone();
            tracker.track(&mut frame);
            original.observe(&frame);
            let debounce_from = original.replay_from("s").unwrap();
            let from = tracker.origins("s").into_values().fold(debounce_from, u64::min) as usize;
            let after_cut = |events: &[(u64, Vec<ScreenNote>)]| {
                events.iter().filter(|(seq, _)| *seq as usize > cut).cloned().collect::<Vec<_>>()
            };
            assert_eq!(after_cut(&run(from)), after_cut(&full), "cut after frame {cut}, replay from {from}");
        }
    }

    #[test]
    fn per_label_thresholds_replace_the_default() {
        let bottle: &[(&str, f32)] = &[("bottle", 0.4)];
        assert!(run(&[bottle; 6]).is_empty());
        let mut config = config();
        config.label_min_score.insert("bottle".into(), 0.35);
        assert_eq!(run_with(config, &[bottle; 6])[0], ("bottle".into(), "enter", 0));
    }

    #[test]
    fn a_ball_among_many_sweets_of_its_size_is_no_sighting_but_a_ball_among_other_things_is() {
        // Six round sweets in a row, one of them read as a ball, the others as frisbees.
        let sweet = |i: usize| {
            let x0 = 0.1 * i as f32;
            let bbox = BBox { x0, y0: 0.2, x1: x0 + 0.08, y1: 0.34 };
            let label = if i == 2 { "sports ball" } else { "frisbee" };
            Detection {
                label: label.into(),
                class_id: 0,
                score: 0.8,
                bbox,
                track_id: None,
                embedding: None,
                product: None,
            }
        };
        let sweets = FrameDetections { detections: (0..6).map(sweet).collect(), ..frame(0, &[]) };
        // The same ball with two things of other sizes beside it.
        let mut table = sweets.clone();
        table.detections.retain(|d| d.label == "sports ball");
        table.detections.push(Detection { bbox: BBox { x0: 0.5, y0: 0.5, x1: 0.9, y1: 0.9 }, ..sweet(0) });
        table.detections.push(Detection { bbox: BBox { x0: 0.0, y0: 0.6, x1: 0.02, y1: 0.9 }, ..sweet(1) });
        let entered = |config: &DebounceConfig, frame: &FrameDetections| {
            let mut debouncer = Debouncer::new(config.clone());
            let notes: Vec<ScreenNote> = (0..4)
                .flat_map(|seq| debouncer.observe(&FrameDetections { seq, pts_ms: seq as i64 * 200, ..frame.clone() }))
                .collect();
            notes.iter().any(|n| matches!(n, ScreenNote::Enter { on_screen, .. } if on_screen.label == "sports ball"))
        };
        let limited = DebounceConfig { max_look_alikes: Some(4), ..config() };
        assert!(!entered(&limited, &sweets), "five look-alikes: a pattern");
        assert!(entered(&limited, &table));
        assert!(entered(&config(), &sweets), "no limit: the ball counts");
    }

    #[test]
    fn the_cap_lets_the_highest_scores_on_screen_and_the_others_wait() {
        let three: &[(&str, f32)] = &[("cup", 0.7), ("apple", 0.9), ("orange", 0.8)];
        let config = DebounceConfig { max_on_screen: Some(2), ..config() };
        let entered: Vec<String> =
            run_with(config, &[three; 4]).into_iter().filter(|e| e.1 == "enter").map(|e| e.0).collect();
        assert_eq!(entered, vec!["apple".to_string(), "orange".to_string()]);
    }

    #[test]
    fn replaying_from_the_replay_point_rebuilds_the_same_events() {
        // Frames with gaps and flicker; after each prefix, a fresh debouncer fed from the
        // replay point must produce the rest of the events exactly as the original does.
        let pattern = [0, 1, 1, 0, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0];
        let frames: Vec<FrameDetections> = pattern
            .iter()
            .enumerate()
            .map(|(i, on)| {
                // A second product, on and off, competes for the cap.
                let apple = i % 3 != 1 && (4..20).contains(&i);
                let labels: &[(&str, f32)] = match (*on == 1, apple) {
                    (true, true) => &[("cup", 0.9), ("apple", 0.95)],
                    (true, false) => &[("cup", 0.9)],
                    (false, true) => &[("apple", 0.95)],
                    (false, false) => &[],
                };
                frame(i as u64, labels)
            })
            .collect();
        for config in [config(), DebounceConfig { cooldown_ms: 1200, max_on_screen: Some(1), ..config() }] {
            replay_matches(&frames, config);
        }
    }

    fn replay_matches(frames: &[FrameDetections], config: DebounceConfig) {
        let run = |from: usize| {
            let mut d = Debouncer::new(config.clone());
            frames[from..].iter().map(|f| (f.seq, d.observe(f))).collect::<Vec<_>>()
        };
        let full = run(0);
        let mut original = Debouncer::new(config.clone());
        for (cut, frame) in frames.iter().enumerate() {
            original.observe(frame);
            let from = original.replay_from("s").unwrap() as usize;
            let replayed = run(from);
            let after_cut = |events: &[(u64, Vec<ScreenNote>)]| {
                events.iter().filter(|(seq, _)| *seq as usize > cut).cloned().collect::<Vec<_>>()
            };
            assert_eq!(after_cut(&replayed), after_cut(&full), "cut after frame {cut}, replay from {from}");
        }
    }

    #[test]
    fn end_of_input_closes_what_is_on_screen() {
        let cup: &[(&str, f32)] = &[("cup", 0.9)];
        let out = run(&[cup; 4]);
        assert_eq!(out, vec![("cup".into(), "enter", 0), ("cup".into(), "exit", 800)]);
    }
}
