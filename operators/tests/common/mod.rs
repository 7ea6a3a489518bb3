//! A real timely dataflow around `product_events`, shared by the operator tests.

use differential_dataflow::input::Input;
use timely::dataflow::operators::capture::{Capture, Event};
use timely::dataflow::operators::core::Probe;
use timely::dataflow::{InputHandle, ProbeHandle};
use vitrine_operators::{product_events, DebounceConfig, ReplayPoints};
use vitrine_schemas::{CatalogItem, FrameDetections, ProductEvent};

/// Runs frames (frame i at time i+1) and catalog changes (at given times) through the graph.
#[allow(dead_code)] // not every test file uses both
pub fn run(frames: Vec<FrameDetections>, catalog: Vec<(u64, CatalogItem, isize)>) -> Vec<ProductEvent> {
    run_timed(frames, catalog).into_iter().map(|(_, e)| e).collect()
}

/// Like [`run`], with the dataflow time of each event.
pub fn run_timed(frames: Vec<FrameDetections>, catalog: Vec<(u64, CatalogItem, isize)>) -> Vec<(u64, ProductEvent)> {
    run_paced(frames, catalog, true)
}

/// Like [`run`], but every time is input before the dataflow runs at all, so operators see
/// many times at once (as a loaded pipeline does) instead of one time per step.
#[allow(dead_code)]
pub fn run_all_at_once(frames: Vec<FrameDetections>, catalog: Vec<(u64, CatalogItem, isize)>) -> Vec<ProductEvent> {
    run_paced(frames, catalog, false).into_iter().map(|(_, e)| e).collect()
}

fn run_paced(
    frames: Vec<FrameDetections>,
    catalog: Vec<(u64, CatalogItem, isize)>,
    step_each_time: bool,
) -> Vec<(u64, ProductEvent)> {
    let config = DebounceConfig::simple(0.5, 2, 3, 600);
    let (tx, rx) = std::sync::mpsc::channel();
    timely::execute_directly(move |worker| {
        let mut frames_in = InputHandle::new();
        let probe = ProbeHandle::new();
        let mut catalog_in = worker.dataflow::<u64, _, _>(|scope| {
            let (catalog_in, catalog) = scope.new_collection::<(String, CatalogItem), isize>();
            let events = product_events(frames_in.to_stream(scope), catalog, config, ReplayPoints::default());
            let events = events.probe_with(&probe);
            tx.send(events.capture()).unwrap();
            catalog_in
        });
        let last = frames.len() as u64 + 2;
        let mut frames = frames.into_iter();
        for t in 1..=last {
            for (at, item, diff) in &catalog {
                if *at == t {
                    catalog_in.update((item.label.clone(), item.clone()), *diff);
                }
            }
            if let Some(f) = frames.next() {
                frames_in.send(f);
            }
            frames_in.advance_to(t + 1);
            catalog_in.advance_to(t + 1);
            catalog_in.flush();
            while step_each_time && probe.less_than(frames_in.time()) {
                worker.step();
            }
        }
        while probe.less_than(frames_in.time()) {
            worker.step();
        }
    });
    let captured = rx.recv().unwrap();
    let mut events: Vec<(u64, ProductEvent)> = Vec::new();
    for message in captured.try_iter() {
        if let Event::Messages(time, data) = message {
            let time = *time.least().unwrap();
            events.extend(data.into_iter().map(|e| (time, e)));
        }
    }
    events.sort_by_key(|(time, e)| (*time, e.pts_ms));
    events
}
