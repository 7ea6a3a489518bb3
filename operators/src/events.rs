//! Events: the catalog join's changes -> appeared / updated / disappeared product events.
//!
//! At each complete time, the join's changes of one (product on screen, sku) pair say what
//! happened: an addition alone is `appeared`, an addition with a retraction is `updated` (the
//! catalog entry changed while the product was on screen), a retraction alone is
//! `disappeared`. Debounce's notes give the media times: an entering product appears at its
//! first sighting, a leaving one disappears at the first frame it was missing from, and a
//! catalog change takes effect at the stream's current media time.

use std::collections::{BTreeMap, HashMap, HashSet};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;
use vitrine_schemas::{now_ms, CatalogItem, EventKind, ProductEvent};

use crate::{stable_hash, Diff, OnScreen, ScreenNote, Time};

/// A change of the joined collection: `(label, (product on screen, catalog item))`.
pub type JoinedUpdate = ((String, (OnScreen, CatalogItem)), Time, Diff);

/// A join change without its key and time: `((product on screen, catalog item), diff)`.
pub type JoinedChange = ((OnScreen, CatalogItem), Diff);

/// Turns one complete time's notes and join changes into product events.
#[derive(Debug, Default)]
pub struct EventEmitter {
    positions: HashMap<String, i64>,
}

impl EventEmitter {
    pub fn new() -> EventEmitter {
        EventEmitter::default()
    }

    /// All notes and join changes of one complete time, in any order.
    pub fn apply(
        &mut self,
        notes: Vec<ScreenNote>,
        changes: Vec<((OnScreen, CatalogItem), Diff)>,
    ) -> Vec<ProductEvent> {
        let mut entered = HashSet::new();
        let mut exits = HashMap::new();
        for note in notes {
            match note {
                ScreenNote::Position { stream_id, pts_ms } => {
                    let p = self.positions.entry(stream_id).or_insert(pts_ms);
                    *p = (*p).max(pts_ms);
                }
                ScreenNote::Enter(on) => {
                    entered.insert(on);
                }
                ScreenNote::Exit { on_screen, exit_pts } => {
                    exits.insert(on_screen, exit_pts);
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
        let mut events = Vec::new();
        for ((on, _sku), (added, retracted)) in groups {
            let now = self.positions.get(&on.stream_id).copied().unwrap_or(on.since_pts).max(on.since_pts);
            let (kind, item, pts) = match (added, retracted) {
                (Some(item), Some(_)) => (EventKind::Updated, item, now),
                (Some(item), None) if entered.contains(&on) => (EventKind::Appeared, item, on.since_pts),
                (Some(item), None) => (EventKind::Appeared, item, now),
                (None, Some(item)) => {
                    let pts = exits.get(&on).copied().unwrap_or(now);
                    (EventKind::Disappeared, item, pts)
                }
                (None, None) => continue,
            };
            events.push(event(kind, &on, item, pts));
        }
        events.sort_by(|a, b| (&a.stream_id, a.pts_ms, a.kind, &a.sku).cmp(&(&b.stream_id, b.pts_ms, b.kind, &b.sku)));
        events
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
        pts_ms,
        emitted_at_ms: now_ms(),
    }
}

/// The event stage as a timely operator over the join's changes and debounce's notes,
/// both routed by stream and taken once their time is complete.
pub trait EmitEvents<'scope> {
    fn emit_events(self, notes: Stream<'scope, Time, Vec<ScreenNote>>) -> Stream<'scope, Time, Vec<ProductEvent>>;
}

fn note_stream(note: &ScreenNote) -> &str {
    match note {
        ScreenNote::Position { stream_id, .. } => stream_id,
        ScreenNote::Enter(on) => &on.stream_id,
        ScreenNote::Exit { on_screen, .. } => &on_screen.stream_id,
    }
}

impl<'scope> EmitEvents<'scope> for Stream<'scope, Time, Vec<JoinedUpdate>> {
    fn emit_events(self, notes: Stream<'scope, Time, Vec<ScreenNote>>) -> Stream<'scope, Time, Vec<ProductEvent>> {
        let by_change = Exchange::new(|u: &JoinedUpdate| stable_hash(&[(u.0).1 .0.stream_id.as_bytes()]));
        let by_note = Exchange::new(|n: &ScreenNote| stable_hash(&[note_stream(n).as_bytes()]));
        self.binary_frontier::<_, CapacityContainerBuilder<Vec<ProductEvent>>, _, _, _, _>(
            notes,
            by_change,
            by_note,
            "EmitEvents",
            |_, _| {
                let mut pending: BTreeMap<Time, (Vec<ScreenNote>, Vec<JoinedChange>)> = BTreeMap::new();
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
                        let events = emitter.apply(notes, changes);
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
            since_pts: since,
            score_milli: 900,
            bbox: [0, 0, 5000, 5000],
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

    fn pos(pts: i64) -> ScreenNote {
        ScreenNote::Position { stream_id: "s".into(), pts_ms: pts }
    }

    #[test]
    fn enter_appears_at_first_sighting_and_exit_at_first_miss() {
        let mut e = EventEmitter::new();
        let ev = e.apply(vec![ScreenNote::Enter(on(1000)), pos(1400)], vec![((on(1000), mug(999)), 1)]);
        assert_eq!((ev[0].kind, ev[0].pts_ms), (EventKind::Appeared, 1000));
        let ev = e.apply(
            vec![ScreenNote::Exit { on_screen: on(1000), exit_pts: 5000 }, pos(6600)],
            vec![((on(1000), mug(999)), -1)],
        );
        assert_eq!((ev[0].kind, ev[0].pts_ms, ev[0].bbox), (EventKind::Disappeared, 5000, None));
    }

    #[test]
    fn a_price_change_on_screen_is_an_update_at_the_current_media_time() {
        let mut e = EventEmitter::new();
        e.apply(vec![ScreenNote::Enter(on(1000)), pos(1400)], vec![((on(1000), mug(999)), 1)]);
        let ev = e.apply(vec![pos(3000)], vec![((on(1000), mug(999)), -1), ((on(1000), mug(1299)), 1)]);
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
        let a = EventEmitter::new().apply(vec![ScreenNote::Enter(on(1000))], vec![((on(1000), mug(999)), 1)]);
        let b = EventEmitter::new().apply(vec![ScreenNote::Enter(on(1000))], vec![((on(1000), mug(999)), 1)]);
        assert_eq!(a[0].event_id, b[0].event_id);
    }
}
