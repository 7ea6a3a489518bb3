//! The product half of the graph (debounce -> differential join -> events) against a naive
//! join recomputed from scratch at every time, over random frames and random catalog
//! upserts and deletes (proptest).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use vitrine_operators::{DebounceConfig, Debouncer, ScreenNote};
use vitrine_schemas::{BBox, CatalogItem, Detection, EventKind, FrameDetections, Money};

const LABELS: [&str; 2] = ["cup", "apple"];
const SKUS: [&str; 3] = ["A", "B", "C"];

fn frame(seq: u64, present: &[bool; 2]) -> FrameDetections {
    FrameDetections {
        stream_id: "live".into(),
        seq,
        pts_ms: seq as i64 * 200,
        captured_at_ms: 0,
        width: 10,
        height: 10,
        model: "m".into(),
        position: Default::default(),
        carried: false,
        detections: LABELS
            .iter()
            .zip(present)
            .filter(|(_, p)| **p)
            .map(|(l, _)| Detection {
                label: l.to_string(),
                class_id: 0,
                score: 0.9,
                bbox: BBox::default(),
                track_id: None,
                embedding: None,
                product: None,
            })
            .collect(),
    }
}

fn item(sku: &str, label: &str, cents: i64) -> CatalogItem {
    CatalogItem {
        sku: sku.into(),
        label: label.into(),
        title: sku.into(),
        price: Money(cents),
        currency: "EUR".into(),
        image: None,
        url: None,
        in_stock: true,
        streams: vec![],
    }
}

/// Per step (1-based; step t holds the catalog changes at t and frame t-1), the events as
/// (label, sku, kind), naively: join the labels on screen with the catalog at every step,
/// and compare each step with the one before.
fn reference(
    present: &[[bool; 2]],
    catalog_at: &BTreeMap<u64, BTreeMap<String, CatalogItem>>,
    steps: u64,
) -> Vec<BTreeSet<(String, String, EventKind)>> {
    let mut debouncer = Debouncer::new(DebounceConfig::simple(0.5, 2, 3, 600));
    let mut on_screen: BTreeSet<String> = BTreeSet::new();
    let mut previous: BTreeMap<(String, String), CatalogItem> = BTreeMap::new();
    let mut out = Vec::new();
    for step in 1..=steps + 1 {
        if let Some(p) = present.get(step as usize - 1) {
            for note in debouncer.observe(&frame(step - 1, p)) {
                match note {
                    ScreenNote::Enter { on_screen: on, .. } => {
                        on_screen.insert(on.label);
                    }
                    ScreenNote::Exit { on_screen: on, .. } => {
                        on_screen.remove(&on.label);
                    }
                    ScreenNote::Position { .. } => {}
                }
            }
        }
        if step == steps + 1 {
            on_screen.clear(); // the input ended: everything leaves
        }
        let catalog = catalog_at.range(..=step).next_back().map(|(_, c)| c.clone()).unwrap_or_default();
        let joined: BTreeMap<(String, String), CatalogItem> = catalog
            .values()
            .filter(|i| on_screen.contains(&i.label))
            .map(|i| ((i.label.clone(), i.sku.clone()), i.clone()))
            .collect();
        let keys: BTreeSet<_> = previous.keys().chain(joined.keys()).cloned().collect();
        let mut events = BTreeSet::new();
        for key in keys {
            let kind = match (previous.get(&key), joined.get(&key)) {
                (None, Some(_)) => EventKind::Appeared,
                (Some(_), None) => EventKind::Disappeared,
                (Some(a), Some(b)) if a != b => EventKind::Updated,
                _ => continue,
            };
            events.insert((key.0.clone(), key.1.clone(), kind));
        }
        out.push(events);
        previous = joined;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn the_graph_agrees_with_a_naive_join(
        present in proptest::collection::vec(proptest::array::uniform2(any::<bool>()), 1..25),
        ops in proptest::collection::vec((1u64..28, 0usize..3, proptest::option::of((0usize..2, 1i64..3))), 0..12),
    ) {
        let steps = present.len() as u64 + 2;
        // Catalog ops become upserts/deletes against the state so far, then +1/-1 changes.
        let mut ops = ops;
        ops.sort_by_key(|op| op.0);
        let mut current: BTreeMap<String, CatalogItem> = BTreeMap::new();
        let mut catalog_at = BTreeMap::new();
        let mut changes = Vec::new();
        for (at, sku, value) in ops {
            let at = at.min(steps);
            let sku = SKUS[sku].to_string();
            if let Some(old) = current.remove(&sku) {
                changes.push((at, old, -1));
            }
            if let Some((label, price)) = value {
                let new = item(&sku, LABELS[label], price * 100);
                current.insert(sku, new.clone());
                changes.push((at, new, 1));
            }
            catalog_at.insert(at, current.clone());
        }
        let want = reference(&present, &catalog_at, steps);
        let frames: Vec<_> = present.iter().enumerate().map(|(i, p)| frame(i as u64, p)).collect();
        let got = common::run_timed(frames, changes);
        // The harness runs step t at dataflow time t (step 1 at time 0), and the end after the last.
        let mut by_step = vec![BTreeSet::new(); want.len()];
        for (time, e) in got {
            let step = if time == 0 { 1 } else { time.min(steps + 1) } as usize;
            prop_assert!(by_step[step - 1].insert((e.label.clone(), e.sku.clone(), e.kind)), "two events for one product at step {}", step);
        }
        prop_assert_eq!(by_step, want);
    }
}
