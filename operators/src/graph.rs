//! The product half of the graph, shared by the pipeline and the tests:
//! detections -> debounce -> join with the catalog -> product events.

use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::operators::core::Map;
use timely::dataflow::Stream;
use vitrine_schemas::{CatalogItem, FrameDetections, ProductEvent};

use crate::{Debounce, DebounceConfig, Diff, EmitEvents, Emitted, ReplayPoints, StageTimer, Time};

/// The catalog as a differential collection keyed by detector label.
pub type Catalog<'scope> = VecCollection<'scope, Time, (String, CatalogItem), Diff>;

/// Product events and exposures for `detections`, priced from `catalog`: a product on screen
/// matches the catalog entries of its label that are on its stream's rundown. A change in the
/// catalog re-emits an `updated` for products on screen (or `appeared`/`disappeared` when an
/// entry comes or goes).
pub fn product_outputs<'scope>(
    detections: Stream<'scope, Time, Vec<FrameDetections>>,
    catalog: Catalog<'scope>,
    config: DebounceConfig,
    replay: ReplayPoints,
    timer: StageTimer,
) -> Stream<'scope, Time, Vec<Emitted>> {
    let (on_screen, notes) = detections.debounce(config, replay, timer.clone());
    on_screen
        .as_collection()
        .join(catalog)
        .filter(|(_, (on, item))| item.on_rundown_of(&on.stream_id))
        .inner
        .emit_events(notes, timer)
}

/// The product events of [`product_outputs`] alone.
pub fn product_events<'scope>(
    detections: Stream<'scope, Time, Vec<FrameDetections>>,
    catalog: Catalog<'scope>,
    config: DebounceConfig,
    replay: ReplayPoints,
) -> Stream<'scope, Time, Vec<ProductEvent>> {
    product_outputs(detections, catalog, config, replay, StageTimer::default()).flat_map(Emitted::into_event)
}
