//! The product half of the graph, shared by the pipeline and the tests:
//! detections -> debounce -> join with the catalog -> product events.

use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::operators::core::Map;
use timely::dataflow::Stream;
use vitrine_schemas::{CatalogItem, FrameDetections, ProductEvent};

use crate::{Debounce, DebounceConfig, Diff, EmitEvents, Emitted, OnScreen, ReplayPoints, StageTimer, Time};

/// The catalog as a differential collection keyed by detector label.
pub type Catalog<'scope> = VecCollection<'scope, Time, (String, CatalogItem), Diff>;

/// Product events and exposures for `detections`, priced from `catalog`: a product on screen
/// matches the catalog entries of its label that are on its stream's rundown, and (with
/// `pictures`: matching on) an entry with a picture only where its object was recognised as it
/// ([`shows`]). A change in the catalog re-emits an `updated` for products on screen (or
/// `appeared`/`disappeared` when an entry comes or goes, or gains or loses its picture).
pub fn product_outputs<'scope>(
    detections: Stream<'scope, Time, Vec<FrameDetections>>,
    catalog: Catalog<'scope>,
    config: DebounceConfig,
    pictures: bool,
    replay: ReplayPoints,
    timer: StageTimer,
) -> Stream<'scope, Time, Vec<Emitted>> {
    let (on_screen, notes) = detections.debounce(config, replay, timer.clone());
    on_screen
        .as_collection()
        .join(catalog)
        .filter(move |(_, (on, item))| item.on_rundown_of(&on.stream_id) && shows(on, item, pictures))
        .inner
        .emit_events(notes, timer)
}

/// Whether what is on screen is this catalog entry: with matching on, a product with a picture
/// to match ([`CatalogItem::matched_picture`]) is only the object recognised as it, and an object recognised as a product is only that
/// product; an object seen by its label alone is any product of the label without a picture.
/// With matching off, every product of the label.
pub fn shows(on: &OnScreen, item: &CatalogItem, pictures: bool) -> bool {
    match (&on.sku, pictures) {
        (Some(sku), _) => *sku == item.sku,
        (None, true) => item.matched_picture().is_none(),
        (None, false) => true,
    }
}

/// The product events of [`product_outputs`] alone.
pub fn product_events<'scope>(
    detections: Stream<'scope, Time, Vec<FrameDetections>>,
    catalog: Catalog<'scope>,
    config: DebounceConfig,
    replay: ReplayPoints,
) -> Stream<'scope, Time, Vec<ProductEvent>> {
    product_outputs(detections, catalog, config, false, replay, StageTimer::default()).flat_map(Emitted::into_event)
}

#[cfg(test)]
mod tests {
    use vitrine_schemas::Money;

    use super::*;

    fn on(sku: Option<&str>) -> OnScreen {
        OnScreen {
            stream_id: "s".into(),
            label: "cup".into(),
            sku: sku.map(str::to_string),
            match_milli: sku.map(|_| 800),
            since_pts: 0,
            score_milli: 900,
            bbox: [0, 0, 5000, 5000],
            partition: None,
        }
    }

    fn item(sku: &str, image: Option<&str>) -> CatalogItem {
        CatalogItem {
            sku: sku.into(),
            label: "cup".into(),
            title: sku.into(),
            price: Money(100),
            currency: "EUR".into(),
            image: image.map(str::to_string),
            url: None,
            in_stock: true,
            streams: vec![],
        }
    }

    #[test]
    fn with_pictures_a_pictured_product_is_only_the_object_recognised_as_it() {
        let (red, blue, plain) =
            (item("MUG-RED", Some("/v1/images/a.jpg")), item("MUG-BLUE", Some("/v1/images/b.jpg")), item("CUP", None));
        let recognised = on(Some("MUG-RED"));
        assert!(
            shows(&recognised, &red, true) && !shows(&recognised, &blue, true) && !shows(&recognised, &plain, true)
        );
        let unrecognised = on(None);
        assert!(!shows(&unrecognised, &red, true) && !shows(&unrecognised, &blue, true));
        assert!(shows(&unrecognised, &plain, true), "a product without a picture matches on its label");
        assert!(shows(&unrecognised, &red, false) && shows(&unrecognised, &blue, false), "matching off: the label");
    }
}
