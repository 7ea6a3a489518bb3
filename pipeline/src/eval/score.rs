//! Scores one stream's product events against its truth: which product entrances were
//! announced in time, which cards were false, how far entrances and exits were off.

use std::collections::BTreeMap;

use serde::Serialize;
use vitrine_schemas::truth::{Segment, StreamTruth};
use vitrine_schemas::{EventKind, ProductEvent};

/// A product's stay on screen: labelled segments naming it (as required or `maybe`), touching
/// one another, taken as one. A card must appear near its start and go near its end.
#[derive(Clone, Debug)]
struct Stay {
    sku: String,
    start_ms: i64,
    end_ms: i64,
    /// Where the first and the last segment that requires the product start and end.
    required_from_ms: i64,
    required_to_ms: i64,
    /// Index of the segment the product's first required part is in.
    first_required: usize,
}

impl Stay {
    /// Whether the product comes in at a known moment (the stay starts with a required part).
    fn timed_start(&self) -> bool {
        self.required_from_ms == self.start_ms
    }
    fn timed_end(&self) -> bool {
        self.required_to_ms == self.end_ms
    }
}

fn ms(d: std::time::Duration) -> i64 {
    d.as_millis() as i64
}

/// Every product's stays (maybe-only ones too: a card there is not false, nor required).
fn stays(segments: &[Segment]) -> Vec<(Stay, bool)> {
    let mut open: BTreeMap<&str, (Stay, bool)> = BTreeMap::new();
    let mut done = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let (start, end) = (ms(segment.start), ms(segment.end));
        let named = segment.products.iter().map(|p| (p, true)).chain(segment.maybe.iter().map(|p| (p, false)));
        for (sku, required) in named {
            let continues = open.get(sku.as_str()).is_some_and(|(s, _)| s.end_ms == start);
            if !continues {
                if let Some(previous) = open.remove(sku.as_str()) {
                    done.push(previous);
                }
                let stay = Stay {
                    sku: sku.clone(),
                    start_ms: start,
                    end_ms: end,
                    required_from_ms: i64::MAX,
                    required_to_ms: i64::MIN,
                    first_required: i,
                };
                open.insert(sku.as_str(), (stay, false));
            }
            let (stay, any_required) = open.get_mut(sku.as_str()).expect("just opened");
            stay.end_ms = end;
            if required {
                if !*any_required {
                    stay.required_from_ms = start;
                    stay.first_required = i;
                }
                stay.required_to_ms = end;
                *any_required = true;
            }
        }
        // A product no segment names from here has left.
        let gone: Vec<&str> = open
            .keys()
            .copied()
            .filter(|sku| !segment.products.iter().chain(&segment.maybe).any(|p| p == sku))
            .collect();
        for sku in gone {
            done.push(open.remove(sku).expect("open"));
        }
    }
    done.extend(open.into_values());
    done.sort_by(|a, b| (a.0.start_ms, &a.0.sku).cmp(&(b.0.start_ms, &b.0.sku)));
    done
}

/// How a product entrance went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Announced {
    /// A card appeared within the tolerance of the product coming in.
    OnTime,
    /// A card appeared, but later than the tolerance.
    Late,
    /// No card while the product was on screen.
    Missed,
}

/// One product coming on screen, and what vitrine did about it.
#[derive(Clone, Debug, Serialize)]
pub struct Entrance {
    pub sku: String,
    /// Media time it came in and left.
    pub start_ms: i64,
    pub end_ms: i64,
    pub announced: Announced,
    /// The card's `appeared` media time minus the entrance's (when both are known).
    pub entrance_error_ms: Option<i64>,
    /// The card's `disappeared` media time minus the product's leaving (when both are known;
    /// a card still up when the stream ended counts from the stream's last frame).
    pub exit_error_ms: Option<i64>,
    /// The card went while the product was still required on screen (more than the tolerance early).
    pub dropped_early: bool,
    /// The card stayed more than the tolerance after the product left.
    pub lingered: bool,
    /// For a product whose label another catalog product has: whether its own card came on
    /// time and no other product of the label got a false card while it was on screen (none:
    /// its label is its alone). See [`judge_skus`].
    pub right_sku: Option<bool>,
}

/// A card for a product that was not on screen then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FalseCard {
    pub sku: String,
    pub pts_ms: i64,
}

/// One stream's score.
#[derive(Clone, Debug, Serialize)]
pub struct StreamScore {
    pub stream_id: String,
    /// Media time of the last frame the run processed.
    pub media_ms: i64,
    pub entrances: Vec<Entrance>,
    pub false_cards: Vec<FalseCard>,
}

/// Scores `events` (this stream's, in the order sent) against `truth`, with `tolerance_ms`
/// each way; `media_ms` is the stream's last frame.
pub fn score(truth: &StreamTruth, events: &[&ProductEvent], tolerance_ms: i64, media_ms: i64) -> StreamScore {
    let all_stays = stays(&truth.segments);
    let mut appeared: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut disappeared: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for e in events {
        match e.kind {
            EventKind::Appeared => appeared.entry(e.sku.as_str()).or_default().push(e.pts_ms),
            EventKind::Disappeared => disappeared.entry(e.sku.as_str()).or_default().push(e.pts_ms),
            EventKind::Updated => {}
        }
    }
    let mut entrances = Vec::new();
    for (stay, required) in all_stays.iter().filter(|(_, r)| *r) {
        debug_assert!(*required);
        let cards = appeared.get(stay.sku.as_str()).map(Vec::as_slice).unwrap_or_default();
        let in_window = |t: &&i64| **t >= stay.start_ms - tolerance_ms && **t <= stay.required_from_ms + tolerance_ms;
        let on_time = cards.iter().find(in_window).copied();
        let late =
            cards.iter().find(|t| **t > stay.required_from_ms + tolerance_ms && **t < stay.required_to_ms).copied();
        let (announced, card) = match (on_time, late) {
            (Some(t), _) => (Announced::OnTime, Some(t)),
            (None, Some(t)) => (Announced::Late, Some(t)),
            (None, None) => (Announced::Missed, None),
        };
        let entrance_error_ms = on_time.filter(|_| stay.timed_start()).map(|t| t - stay.start_ms);
        // The card goes at the first `disappeared` after it came; none: still up at the end.
        let gone = card.map(|c| {
            let gone = disappeared.get(stay.sku.as_str()).and_then(|d| d.iter().find(|t| **t > c).copied());
            gone.unwrap_or(media_ms)
        });
        let exit_error_ms = gone.filter(|_| stay.timed_end()).map(|g| g - stay.end_ms);
        entrances.push(Entrance {
            sku: stay.sku.clone(),
            start_ms: stay.start_ms,
            end_ms: stay.end_ms,
            announced,
            entrance_error_ms,
            exit_error_ms,
            dropped_early: gone.is_some_and(|g| g < stay.required_to_ms - tolerance_ms),
            lingered: gone.is_some_and(|g| g > stay.end_ms + tolerance_ms),
            right_sku: None,
        });
    }
    // A card is false when its product has no stay around it (a maybe-only stay counts).
    let mut false_cards = Vec::new();
    for (sku, times) in &appeared {
        for t in times {
            let explained = all_stays
                .iter()
                .any(|(s, _)| s.sku == *sku && *t >= s.start_ms - tolerance_ms && *t < s.end_ms + tolerance_ms);
            if !explained {
                false_cards.push(FalseCard { sku: sku.to_string(), pts_ms: *t });
            }
        }
    }
    false_cards.sort_by_key(|f| f.pts_ms);
    StreamScore { stream_id: truth.stream_id.clone(), media_ms, entrances, false_cards }
}

/// Whether each entrance of a product that shares its label with another (`label_of`: the
/// catalog's label of each SKU) got the right card: its own on time, and no false card of
/// another product of the label while it was on screen. (A label match shows every product of
/// the label at once; a picture match shows the one on screen.)
pub fn judge_skus(score: &mut StreamScore, label_of: &BTreeMap<String, String>, tolerance_ms: i64) {
    let shares_label =
        |sku: &str| label_of.get(sku).is_some_and(|label| label_of.iter().any(|(other, l)| other != sku && l == label));
    for e in &mut score.entrances {
        if !shares_label(&e.sku) {
            continue;
        }
        let label = &label_of[&e.sku];
        let wrong_card = score.false_cards.iter().any(|f| {
            f.sku != e.sku
                && label_of.get(&f.sku) == Some(label)
                && f.pts_ms >= e.start_ms - tolerance_ms
                && f.pts_ms < e.end_ms
        });
        e.right_sku = Some(e.announced == Announced::OnTime && !wrong_card);
    }
}

/// The entrance a segment's required product makes there (None: it was already on screen).
pub fn entrance_in<'a>(score: &'a StreamScore, truth: &StreamTruth, segment: usize, sku: &str) -> Option<&'a Entrance> {
    let stays = stays(&truth.segments);
    let stay = stays.iter().find(|(s, r)| *r && s.sku == sku && s.first_required == segment)?;
    score.entrances.iter().find(|e| e.sku == sku && e.start_ms == stay.0.start_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitrine_schemas::Money;

    fn segment(start: u64, end: u64, products: &[&str], maybe: &[&str]) -> Segment {
        Segment::new(start, end, products, maybe)
    }

    fn event(kind: EventKind, sku: &str, pts_ms: i64) -> ProductEvent {
        ProductEvent {
            event_id: String::new(),
            kind,
            stream_id: "show".into(),
            sku: sku.into(),
            label: String::new(),
            title: String::new(),
            price: Money(0),
            currency: "EUR".into(),
            in_stock: true,
            image_url: None,
            product_url: None,
            bbox: None,
            score: 0.9,
            match_score: None,
            pts_ms,
            emitted_at_ms: 0,
        }
    }

    fn truth(segments: Vec<Segment>) -> StreamTruth {
        StreamTruth { stream_id: "show".into(), segments }
    }

    #[test]
    fn a_card_on_time_late_or_never_and_one_for_nothing() {
        let truth = truth(vec![
            segment(2000, 10_000, &["CUP", "APPLE"], &[]),
            segment(12_000, 20_000, &["ORANGE"], &[]),
            segment(22_000, 30_000, &[], &[]),
        ]);
        let events = [
            event(EventKind::Appeared, "CUP", 2200),
            event(EventKind::Appeared, "APPLE", 5000),
            event(EventKind::Disappeared, "CUP", 10_000),
            event(EventKind::Disappeared, "APPLE", 10_200),
            event(EventKind::Appeared, "APPLE", 25_000),
            event(EventKind::Disappeared, "APPLE", 27_000),
        ];
        let score = score(&truth, &events.iter().collect::<Vec<_>>(), 500, 30_000);
        let got: Vec<_> = score.entrances.iter().map(|e| (e.sku.as_str(), e.announced)).collect();
        assert_eq!(got, [("APPLE", Announced::Late), ("CUP", Announced::OnTime), ("ORANGE", Announced::Missed)]);
        let cup = &score.entrances[1];
        assert_eq!((cup.entrance_error_ms, cup.exit_error_ms, cup.lingered), (Some(200), Some(0), false));
        assert_eq!(score.entrances[0].entrance_error_ms, None, "a late card has no entrance error");
        assert_eq!(score.false_cards, [FalseCard { sku: "APPLE".into(), pts_ms: 25_000 }]);
    }

    #[test]
    fn a_short_cut_marked_maybe_is_one_stay_and_a_card_that_stays_lingers() {
        let truth = truth(vec![
            segment(52_000, 56_000, &["BALL"], &[]),
            segment(56_000, 56_600, &[], &["BALL"]),
            segment(56_600, 60_600, &["BALL"], &[]),
        ]);
        let events = [event(EventKind::Appeared, "BALL", 52_000), event(EventKind::Disappeared, "BALL", 62_000)];
        let score = score(&truth, &events.iter().collect::<Vec<_>>(), 500, 70_000);
        assert_eq!(score.entrances.len(), 1, "{:?}", score.entrances);
        let ball = &score.entrances[0];
        assert_eq!((ball.announced, ball.exit_error_ms, ball.lingered), (Announced::OnTime, Some(1400), true));
        assert!(score.false_cards.is_empty());
        assert!(entrance_in(&score, &truth, 0, "BALL").is_some());
        assert!(entrance_in(&score, &truth, 2, "BALL").is_none(), "no entrance after the cut");
    }

    #[test]
    fn a_card_dropped_in_the_middle_and_one_never_taken_down() {
        let truth = truth(vec![segment(0, 10_000, &["CUP"], &[]), segment(10_000, 12_000, &[], &[])]);
        let events = [
            event(EventKind::Appeared, "CUP", 0),
            event(EventKind::Disappeared, "CUP", 4000),
            event(EventKind::Appeared, "CUP", 6000),
        ];
        let score = score(&truth, &events.iter().collect::<Vec<_>>(), 500, 12_000);
        let cup = &score.entrances[0];
        assert!(cup.dropped_early && !cup.lingered, "{cup:?}");
        assert!(score.false_cards.is_empty(), "a card again while the product is there is not false");

        let events = [event(EventKind::Appeared, "CUP", 0)];
        let score = super::score(&truth, &events.iter().collect::<Vec<_>>(), 500, 12_000);
        assert_eq!((score.entrances[0].exit_error_ms, score.entrances[0].lingered), (Some(2000), true));
    }

    #[test]
    fn a_product_sharing_its_label_has_the_right_sku_only_without_the_other_ones_card() {
        // Two mugs share `cup`; the red is on screen, then the blue; the apple's label is its own.
        let truth = truth(vec![
            segment(0, 4000, &["MUG-RED", "APPLE"], &[]),
            segment(4000, 6000, &[], &[]),
            segment(6000, 10_000, &["MUG-BLUE"], &[]),
        ]);
        let label_of: BTreeMap<String, String> =
            [("MUG-RED", "cup"), ("MUG-BLUE", "cup"), ("APPLE", "apple")].map(|(s, l)| (s.into(), l.into())).into();
        // By label: both mugs' cards each time.
        let by_label = [
            event(EventKind::Appeared, "MUG-RED", 0),
            event(EventKind::Appeared, "MUG-BLUE", 0),
            event(EventKind::Appeared, "APPLE", 0),
            event(EventKind::Disappeared, "MUG-RED", 4000),
            event(EventKind::Disappeared, "MUG-BLUE", 4000),
            event(EventKind::Appeared, "MUG-RED", 6000),
            event(EventKind::Appeared, "MUG-BLUE", 6000),
        ];
        let mut s = score(&truth, &by_label.iter().collect::<Vec<_>>(), 500, 10_000);
        judge_skus(&mut s, &label_of, 500);
        let judged: Vec<_> = s.entrances.iter().map(|e| (e.sku.as_str(), e.right_sku)).collect();
        assert_eq!(judged, [("APPLE", None), ("MUG-RED", Some(false)), ("MUG-BLUE", Some(false))]);
        // By picture: each mug's own card.
        let by_picture = [
            event(EventKind::Appeared, "MUG-RED", 0),
            event(EventKind::Appeared, "APPLE", 0),
            event(EventKind::Disappeared, "MUG-RED", 4000),
            event(EventKind::Appeared, "MUG-BLUE", 6000),
        ];
        let mut s = score(&truth, &by_picture.iter().collect::<Vec<_>>(), 500, 10_000);
        judge_skus(&mut s, &label_of, 500);
        assert!(s.entrances.iter().filter(|e| e.sku != "APPLE").all(|e| e.right_sku == Some(true)), "{s:?}");
    }
}
