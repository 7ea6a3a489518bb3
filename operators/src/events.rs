//! Events: the catalog join's changes -> appeared / updated / disappeared product events.
//!
//! At each complete time, the join's changes of one (product on screen, sku) pair say what
//! happened: an addition alone is `appeared`, an addition with a retraction is `updated` (the
//! catalog entry changed while the product was on screen), a retraction alone is
//! `disappeared`. Debounce's notes give the media times: an entering product appears at its
//! first sighting, a leaving one disappears at the first frame it was missing from, and a
//! catalog change takes effect at the stream's current media time.

use std::collections::{BTreeMap, HashMap};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;
use vitrine_schemas::{now_ms, CatalogItem, Cause, EventKind, Exposure, ProductEvent};

use crate::debounce::CausedNote;
use crate::{stable_hash, stream_route, Diff, OnScreen, ScreenNote, ScreenStats, Stage, StageTimer, Time};

/// A change of the joined collection: `(label, (product on screen, catalog item))`.
pub type JoinedUpdate = ((String, (OnScreen, CatalogItem)), Time, Diff);

/// A join change without its key and time: `((product on screen, catalog item), diff)`.
pub type JoinedChange = ((OnScreen, CatalogItem), Diff);

/// What the event stage emits, each with what in the input it follows from: product events
/// and, when a product leaves the screen, its exposure (the interval it was on screen).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Emitted {
    Event(ProductEvent, Cause),
    Exposure(Exposure, Cause),
}

impl Emitted {
    pub fn into_event(self) -> Option<ProductEvent> {
        match self {
            Emitted::Event(e, _) => Some(e),
            Emitted::Exposure(..) => None,
        }
    }
}

/// A product (one catalog entry) on screen, as its exposure will report it.
#[derive(Debug)]
struct Shown {
    appeared_event_id: String,
    title: String,
    start_pts: i64,
    stats: ScreenStats,
}

/// Turns one complete time's notes and join changes into product events and exposures.
#[derive(Debug, Default)]
pub struct EventEmitter {
    /// Per stream: its media time, and its last frame (what a change no frame caused follows from).
    positions: HashMap<String, (i64, Cause)>,
    shown: HashMap<(OnScreen, String), Shown>,
}

impl EventEmitter {
    pub fn new() -> EventEmitter {
        EventEmitter::default()
    }

    /// All notes and join changes of one complete time, in any order.
    pub fn apply(&mut self, notes: Vec<CausedNote>, changes: Vec<((OnScreen, CatalogItem), Diff)>) -> Vec<Emitted> {
        let mut entered = HashMap::new();
        let mut exits = HashMap::new();
        for (note, cause) in notes {
            match note {
                ScreenNote::Position { stream_id, pts_ms } => {
                    let p = self.positions.entry(stream_id).or_insert((pts_ms, cause));
                    if pts_ms >= p.0 {
                        *p = (pts_ms, cause);
                    }
                }
                ScreenNote::Enter { on_screen, stats } => {
                    entered.insert(on_screen, (stats, cause));
                }
                ScreenNote::Exit { on_screen, exit_pts, exit_captured_at_ms, stats } => {
                    exits.insert(on_screen, (exit_pts, exit_captured_at_ms, stats, cause));
                }
            }
        }
        // The join may send a retraction and an addition of the same record at one time (a
        // product leaving as its catalog entry arrives): net them out first.
        let mut net: BTreeMap<(OnScreen, CatalogItem), Diff> = BTreeMap::new();
        for (pair, diff) in changes {
            *net.entry(pair).or_insert(0) += diff;
        }
        // (on screen, sku) -> (added item, retracted item)
        let mut groups: BTreeMap<(OnScreen, String), (Option<CatalogItem>, Option<CatalogItem>)> = BTreeMap::new();
        for ((on, item), diff) in net {
            let group = groups.entry((on, item.sku.clone())).or_default();
            if diff > 0 {
                group.0 = Some(item);
            } else if diff < 0 {
                group.1 = Some(item);
            }
        }
        let mut out = Vec::new();
        for ((on, sku), (added, retracted)) in groups {
            // A change no frame caused (the catalog's) follows from the stream's last frame.
            let (now, latest) = match self.positions.get(&on.stream_id) {
                Some(&(pts, cause)) => (pts.max(on.since_pts), cause),
                None => (on.since_pts, Cause::default()),
            };
            let key = (on.clone(), sku);
            match (added, retracted) {
                (Some(item), Some(_)) => {
                    let e = event(EventKind::Updated, &on, item, now);
                    if let Some(shown) = self.shown.get_mut(&key) {
                        shown.title = e.title.clone();
                    }
                    out.push(Emitted::Event(e, latest));
                }
                (Some(item), None) => {
                    let (e, stats, cause) = match entered.get(&on) {
                        Some(&(stats, cause)) => (event(EventKind::Appeared, &on, item, on.since_pts), stats, cause),
                        None => {
                            let stats =
                                ScreenStats { since_captured_at_ms: latest.captured_at_ms, ..Default::default() };
                            (event(EventKind::Appeared, &on, item, now), stats, latest)
                        }
                    };
                    let shown = Shown {
                        appeared_event_id: e.event_id.clone(),
                        title: e.title.clone(),
                        start_pts: e.pts_ms,
                        stats,
                    };
                    self.shown.insert(key, shown);
                    out.push(Emitted::Event(e, cause));
                }
                (None, Some(item)) => {
                    let (pts, end_at, stats, cause) = match exits.get(&on) {
                        Some(&(pts, end_at, stats, cause)) => (pts, end_at, Some(stats), cause),
                        None => (now, latest.captured_at_ms, None, latest),
                    };
                    let e = event(EventKind::Disappeared, &on, item, pts);
                    if let Some(shown) = self.shown.remove(&key) {
                        let stats = stats.unwrap_or(shown.stats);
                        let exposure = Exposure {
                            stream_id: e.stream_id.clone(),
                            sku: e.sku.clone(),
                            label: e.label.clone(),
                            title: shown.title,
                            start_pts_ms: shown.start_pts,
                            end_pts_ms: pts,
                            start_at_ms: stats.since_captured_at_ms,
                            end_at_ms: end_at,
                            frames_seen: stats.frames_seen as i64,
                            max_score: stats.score_max,
                            mean_score: stats.mean_score(),
                            appeared_event_id: shown.appeared_event_id,
                        };
                        out.push(Emitted::Exposure(exposure, cause));
                    }
                    out.push(Emitted::Event(e, cause));
                }
                (None, None) => {}
            }
        }
        let order = |x: &Emitted| match x {
            Emitted::Event(e, _) => (e.stream_id.clone(), e.pts_ms, e.kind as u8, e.sku.clone()),
            Emitted::Exposure(x, _) => (x.stream_id.clone(), x.end_pts_ms, u8::MAX, x.sku.clone()),
        };
        out.sort_by_cached_key(order);
        out
    }
}

fn event(kind: EventKind, on: &OnScreen, item: CatalogItem, pts_ms: i64) -> ProductEvent {
    let id = stable_hash(&[
        on.stream_id.as_bytes(),
        item.sku.as_bytes(),
        kind.as_str().as_bytes(),
        &pts_ms.to_le_bytes(),
        &on.since_pts.to_le_bytes(),
        &item.price.0.to_le_bytes(),
        &[item.in_stock as u8],
        item.title.as_bytes(),
    ]);
    ProductEvent {
        event_id: format!("{id:016x}"),
        kind,
        stream_id: on.stream_id.clone(),
        sku: item.sku,
        label: on.label.clone(),
        title: item.title,
        price: item.price,
        currency: item.currency,
        in_stock: item.in_stock,
        image_url: item.image,
        product_url: item.url,
        bbox: (kind != EventKind::Disappeared).then(|| on.bbox()),
        score: on.score(),
        match_score: on.match_score(),
        pts_ms,
        emitted_at_ms: now_ms(),
    }
}

/// The event stage as a timely operator over the join's changes and debounce's notes,
/// both routed by stream and taken once their time is complete.
pub trait EmitEvents<'scope> {
    fn emit_events(
        self,
        notes: Stream<'scope, Time, Vec<CausedNote>>,
        timer: StageTimer,
    ) -> Stream<'scope, Time, Vec<Emitted>>;
}

impl<'scope> EmitEvents<'scope> for Stream<'scope, Time, Vec<JoinedUpdate>> {
    fn emit_events(
        self,
        notes: Stream<'scope, Time, Vec<CausedNote>>,
        timer: StageTimer,
    ) -> Stream<'scope, Time, Vec<Emitted>> {
        let by_change = Exchange::new(|u: &JoinedUpdate| {
            let on = &(u.0).1 .0;
            stream_route(&on.stream_id, on.partition)
        });
        let by_note = Exchange::new(|n: &CausedNote| stream_route(n.0.stream_id(), n.1.position.partition));
        self.binary_frontier::<_, CapacityContainerBuilder<Vec<Emitted>>, _, _, _, _>(
            notes,
            by_change,
            by_note,
            "EmitEvents",
            |_, _| {
                let mut pending: BTreeMap<Time, (Vec<CausedNote>, Vec<JoinedChange>)> = BTreeMap::new();
                let mut stash = HashMap::new();
                let mut emitter = EventEmitter::new();
                move |(changes, changes_frontier), (notes, notes_frontier), output| {
                    changes.for_each(|cap, data| {
                        // A join sends the changes of several times under the capability of the
                        // earliest: each change belongs to the time it carries.
                        for ((_, pair), time, diff) in data.drain(..) {
                            stash.entry(time).or_insert_with(|| cap.delayed(&time, 0));
                            pending.entry(time).or_default().1.push((pair, diff));
                        }
                    });
                    notes.for_each(|cap, data| {
                        let time = *cap.least().expect("a totally ordered time");
                        stash.entry(time).or_insert_with(|| cap.retain_least(0).expect("a capability"));
                        pending.entry(time).or_default().0.append(data);
                    });
                    let ready: Vec<Time> = pending
                        .keys()
                        .copied()
                        .filter(|t| !changes_frontier.less_equal(t) && !notes_frontier.less_equal(t))
                        .collect();
                    for time in ready {
                        let (notes, changes) = pending.remove(&time).unwrap();
                        let cap = stash.remove(&time).expect("a capability for every pending time");
                        let items = notes.len() + changes.len();
                        let events = timer.time(Stage::Join, items, || emitter.apply(notes, changes));
                        output.session(&cap).give_iterator(events.into_iter());
                    }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitrine_schemas::Money;

    fn on(since: i64) -> OnScreen {
        OnScreen {
            stream_id: "s".into(),
            label: "cup".into(),
            sku: None,
            match_milli: None,
            since_pts: since,
            score_milli: 900,
            bbox: [0, 0, 5000, 5000],
            partition: None,
        }
    }

    fn mug(price: i64) -> CatalogItem {
        CatalogItem {
            sku: "MUG-1".into(),
            label: "cup".into(),
            title: "Mug".into(),
            price: Money(price),
            currency: "EUR".into(),
            image: None,
            url: None,
            in_stock: true,
            streams: vec![],
        }
    }

    fn pos(pts: i64) -> CausedNote {
        (ScreenNote::Position { stream_id: "s".into(), pts_ms: pts }, Cause::default())
    }

    fn enter(on: OnScreen) -> CausedNote {
        let stats = ScreenStats { since_captured_at_ms: 10_000, frames_seen: 3, score_sum: 2.4, score_max: 0.9 };
        (ScreenNote::Enter { on_screen: on, stats }, Cause::default())
    }

    fn exit(on: OnScreen, exit_pts: i64) -> CausedNote {
        let stats = ScreenStats { since_captured_at_ms: 10_000, frames_seen: 20, score_sum: 16.0, score_max: 0.95 };
        let note = ScreenNote::Exit { on_screen: on, exit_pts, exit_captured_at_ms: 14_000, stats };
        (note, Cause::default())
    }

    fn events(emitted: Vec<Emitted>) -> Vec<ProductEvent> {
        emitted.into_iter().filter_map(Emitted::into_event).collect()
    }

    #[test]
    fn enter_appears_at_first_sighting_and_exit_at_first_miss() {
        let mut e = EventEmitter::new();
        let ev = events(e.apply(vec![enter(on(1000)), pos(1400)], vec![((on(1000), mug(999)), 1)]));
        assert_eq!((ev[0].kind, ev[0].pts_ms), (EventKind::Appeared, 1000));
        let ev = events(e.apply(vec![exit(on(1000), 5000), pos(6600)], vec![((on(1000), mug(999)), -1)]));
        assert_eq!((ev[0].kind, ev[0].pts_ms, ev[0].bbox), (EventKind::Disappeared, 5000, None));
    }

    #[test]
    fn a_price_change_on_screen_is_an_update_at_the_current_media_time() {
        let mut e = EventEmitter::new();
        e.apply(vec![enter(on(1000)), pos(1400)], vec![((on(1000), mug(999)), 1)]);
        let ev = events(e.apply(vec![pos(3000)], vec![((on(1000), mug(999)), -1), ((on(1000), mug(1299)), 1)]));
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].kind, ev[0].pts_ms, ev[0].price), (EventKind::Updated, 3000, Money(1299)));
    }

    #[test]
    fn a_retraction_and_addition_of_the_same_record_is_no_event() {
        // Found by the join property test: a product leaving as its catalog entry arrives.
        let mut e = EventEmitter::new();
        let ev = e.apply(vec![pos(2000)], vec![((on(1000), mug(999)), -1), ((on(1000), mug(999)), 1)]);
        assert!(ev.is_empty(), "{ev:?}");
    }

    #[test]
    fn event_ids_are_deterministic() {
        let a = events(EventEmitter::new().apply(vec![enter(on(1000))], vec![((on(1000), mug(999)), 1)]));
        let b = events(EventEmitter::new().apply(vec![enter(on(1000))], vec![((on(1000), mug(999)), 1)]));
        assert_eq!(a[0].event_id, b[0].event_id);
    }

    #[test]
    fn a_product_leaving_closes_its_exposure_with_how_it_was_seen() {
        let mut e = EventEmitter::new();
        let appeared = events(e.apply(vec![enter(on(1000))], vec![((on(1000), mug(999)), 1)]));
        e.apply(vec![pos(3000)], vec![((on(1000), mug(999)), -1), ((on(1000), mug(1299)), 1)]);
        let left = e.apply(vec![exit(on(1000), 5000)], vec![((on(1000), mug(1299)), -1)]);
        let exposures: Vec<&Exposure> = left
            .iter()
            .filter_map(|x| match x {
                Emitted::Exposure(x, _) => Some(x),
                Emitted::Event(..) => None,
            })
            .collect();
        assert_eq!(exposures.len(), 1, "{left:?}");
        let x = exposures[0];
        assert_eq!((x.start_pts_ms, x.end_pts_ms, x.duration_ms()), (1000, 5000, 4000));
        assert_eq!((x.start_at_ms, x.end_at_ms, x.frames_seen), (10_000, 14_000, 20));
        assert_eq!((x.max_score, x.mean_score), (0.95, 0.8));
        assert_eq!(x.appeared_event_id, appeared[0].event_id);
    }
}
