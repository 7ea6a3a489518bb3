//! Tiling finds small products the whole-frame pass misses: a 1280x720 table with ten small
//! product photos on it (five cups, three apples, two oranges, about 200 pixels each; see
//! fixtures/README.md), through the default SSD, whole frame against whole frame + 3x3 tiles,
//! and 3x2 tiles (near-square, as the SSD's input) against 3x3.

mod common;

use common::{detector, root};
use vitrine_models::{merge_detections, DecodeLimits, Preparer};
use vitrine_schemas::spec::{DecoderKind, TileGrid};
use vitrine_schemas::Detection;

fn products(found: &[Detection]) -> usize {
    found.iter().filter(|d| ["cup", "apple", "orange"].contains(&d.label.as_str()) && d.score >= 0.5).count()
}

#[test]
fn tiles_find_more_of_the_small_products_than_the_whole_frame() {
    let mut d = detector("models/zoo/ssd-mobilenet-v2-coco-quant/model.onnx", DecoderKind::SsdPostprocessed, 0.3);
    let jpeg = std::fs::read(root().join("models/tests/fixtures/shelf.jpg")).unwrap();
    let mut preparer = Preparer::new(DecodeLimits::default());
    let whole = d.detect(&preparer.prepare(&jpeg, d.input()).unwrap()).unwrap();
    let pictures = preparer.prepare_tiled(&jpeg, d.input(), TileGrid { columns: 3, rows: 3 }, 0.2).unwrap();
    assert_eq!(pictures.len(), 10, "the whole frame and 3x3 tiles");
    let all: Vec<Detection> = pictures.iter().flat_map(|p| d.detect(p).unwrap()).collect();
    let tiled = merge_detections(all, 0.45);
    let (plain, more) = (products(&whole), products(&tiled));
    eprintln!("whole frame: {plain} products, tiled: {more}");
    // Ten products on the table: the whole frame finds one or two, the tiles most of them,
    // and merging leaves no product counted twice.
    assert!(plain <= 3 && more >= plain + 5 && more <= 10, "whole frame {plain}, tiled {more}: {tiled:?}");
    // Merged: no two boxes of one class overlap the same product.
    for (i, a) in tiled.iter().enumerate() {
        for b in &tiled[i + 1..] {
            assert!(a.class_id != b.class_id || a.bbox.iou(&b.bbox) <= 0.45, "{a:?} and {b:?}");
        }
    }
}

/// 3x2 tiles of a 16:9 frame are near-square, as the SSD's 300x300 input: they find as many
/// of the small products as 3x3 tiles (squeezed to 0.56 of their width), at 6 model runs
/// instead of 9.
#[test]
fn near_square_tiles_find_as_many_as_more_squeezed_ones() {
    let mut d = detector("models/zoo/ssd-mobilenet-v2-coco-quant/model.onnx", DecoderKind::SsdPostprocessed, 0.3);
    let jpeg = std::fs::read(root().join("models/tests/fixtures/shelf.jpg")).unwrap();
    let mut preparer = Preparer::new(DecodeLimits::default());
    let mut found = |grid: TileGrid| {
        let pictures = preparer.prepare_tiled(&jpeg, d.input(), grid, 0.2).unwrap();
        assert_eq!(pictures.len() as u32, 1 + grid.count());
        let all: Vec<Detection> = pictures.iter().flat_map(|p| d.detect(p).unwrap()).collect();
        products(&merge_detections(all, 0.45))
    };
    let (three_by_three, three_by_two) =
        (found(TileGrid { columns: 3, rows: 3 }), found(TileGrid { columns: 3, rows: 2 }));
    eprintln!("3x3 tiles: {three_by_three} products, 3x2: {three_by_two}");
    assert!(three_by_two >= three_by_three && three_by_two >= 7, "3x3 {three_by_three}, 3x2 {three_by_two}");
}
