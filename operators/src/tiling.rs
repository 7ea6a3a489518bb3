//! tiling: small objects, found on tiles of the picture besides the whole of it. How a frame
//! is tiled ([`Tiling`]); with `infer.tile_every`, what changed in a stream's picture since its
//! last tiled frame, which decides when to tile again (a cut, or enough frames since) and where
//! what the tiles found went on the untiled frames after it: moved with the picture (a pan), or
//! gone (the product left); and how the tiles' detections merge with the whole picture's.

use std::collections::HashMap;

use vitrine_models::{merge_detections, Crop, Prepared};
use vitrine_schemas::spec::TileGrid;
use vitrine_schemas::{BBox, Detection};

/// Cells a side of the coarse grid that sees a cut or a product coming in.
const GRID: usize = 16;
/// Cells a side of the fine grid that follows what the tiles found (4 x 4 to a coarse cell).
const FINE: usize = 64;
/// How far (fine cells) a find may have moved since the tiled frame and still be followed:
/// a 16th of the picture. A larger pan moves enough of the picture to tile again.
const REACH: isize = 4;
/// At most this many of a find's cells are compared per move (see [`SinceTiled::follow`]).
const MOST_CELLS: usize = 256;

/// Small objects: besides the whole picture, `grid`'s tiles overlapping by `overlap`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tiling {
    pub grid: TileGrid,
    pub overlap: f32,
    /// 0: tile every frame. Else tile a frame only when its picture changed since the
    /// stream's last tiled frame (more than `change` of a 16x16 grid's cells moved by more
    /// than `level` in brightness), or `every` frames after it (`infer.tile_every`).
    pub every: u32,
    pub change: f32,
    pub level: u8,
}

/// Whether a tile's detection is a piece of an object the whole picture sees as something
/// else: most of its box lies in a whole-picture box of another label no more than five
/// times its size. A tile cuts through what it holds (a ball where tiles meet comes out as
/// quarters, which the model reads as apples); the whole picture has the object's context.
pub(crate) fn piece_of_another(tile: &Detection, whole: &[Detection]) -> bool {
    let area = tile.bbox.area();
    whole.iter().any(|w| {
        w.class_id != tile.class_id && tile.bbox.intersection(&w.bbox) >= 0.5 * area && area * 5.0 >= w.bbox.area()
    })
}

/// The whole picture's detections and more found elsewhere (tiles), merged per object.
pub(crate) fn merge_with(mut whole: Vec<Detection>, more: Vec<Detection>, iou: f32) -> Vec<Detection> {
    if more.is_empty() {
        return whole;
    }
    whole.extend(more);
    merge_detections(whole, iou)
}

/// What a tiled frame's tiles alone found.
#[derive(Clone, Debug)]
struct TileFind {
    detection: Detection,
    /// Missed by this frame's tiles but kept from the last tiled frame's (see [`TileFinds::merge`]).
    kept_once: bool,
}

/// A frame as [`TileFinds::merge`] sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TiledOrNot<'a> {
    pub stream_id: &'a str,
    /// Whether the frame was cut into tiles.
    pub tiled: bool,
    /// How its picture changed since the stream's last tiled frame.
    pub since_tiled: Option<&'a SinceTiled>,
}

/// When only some frames are tiled: per stream, what its last tiled frame's tiles alone found.
#[derive(Debug, Default)]
pub(crate) struct TileFinds {
    by_stream: HashMap<String, Vec<TileFind>>,
}

impl TileFinds {
    /// Frame `f`'s detections: its `whole` picture's, merged with what its tiles found
    /// (`from_tiles`) or, untiled, with what the last tiled frame's tiles found where its
    /// picture still is.
    pub(crate) fn merge(
        &mut self,
        frame: TiledOrNot<'_>,
        whole: Vec<Detection>,
        from_tiles: Vec<Detection>,
        iou: f32,
    ) -> Vec<Detection> {
        let last_found = self.by_stream.get(frame.stream_id).map_or(&[][..], Vec::as_slice);
        // Moved with the picture under it, and only while that picture is there: a
        // product that left is not carried on.
        let followed = last_found.iter().filter_map(|found| {
            let followed = match frame.since_tiled {
                Some(since) => since.follow(&found.detection.bbox),
                None => Followed { bbox: found.detection.bbox, changed: 0.0 },
            };
            let detection = Detection { bbox: followed.bbox, ..found.detection.clone() };
            followed.still_there().then(|| (TileFind { detection, ..found.clone() }, followed))
        });
        if !frame.tiled {
            let kept = followed.map(|(found, _)| found.detection).collect();
            return merge_with(whole, kept, iou);
        }
        let merged = merge_with(whole.clone(), from_tiles, iou);
        let same = |a: &Detection, b: &Detection| a.class_id == b.class_id && a.bbox.iou(&b.bbox) > iou;
        // What these tiles missed of what the last ones found, where its picture is still
        // there (a re-tile for a pan, or for a change elsewhere): kept once more, so one
        // miss of a weak find does not drop it, and a second one does.
        let missed: Vec<Detection> = followed
            .filter(|(found, followed)| {
                followed.unchanged() && !found.kept_once && !merged.iter().any(|d| same(d, &found.detection))
            })
            .map(|(found, _)| found.detection)
            .collect();
        // What the tiles saw better than the whole picture (or alone): the frames up to
        // the next tiled one keep it, since their whole picture sees it less or not at all.
        let only_tiles = merged.iter().filter(|d| !whole.contains(d)).cloned();
        let found = only_tiles
            .map(|detection| TileFind { detection, kept_once: false })
            .chain(missed.iter().map(|d| TileFind { detection: d.clone(), kept_once: true }))
            .collect();
        self.by_stream.insert(frame.stream_id.to_string(), found);
        merge_with(merged, missed, iou)
    }
}

/// A picture's brightness on the fine grid, and on the coarse one summed from it.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Brightness {
    coarse: Vec<u8>,
    fine: Vec<u8>,
}

/// The brightness of `p` (every other pixel of every other row): enough to see a cut, a
/// product coming in or the picture moving, for about a 20th of a resize.
pub(crate) fn brightness(p: &Prepared) -> Brightness {
    let (w, h) = (p.width as usize, p.height as usize);
    if w < GRID || h < GRID || p.pixels.len() < w * h * 3 {
        return Brightness::default();
    }
    let (mut sums, mut counts) = (vec![0u32; FINE * FINE], vec![0u32; FINE * FINE]);
    for y in (0..h).step_by(2) {
        let row = y * FINE / h * FINE;
        for x in (0..w).step_by(2) {
            let i = (y * w + x) * 3;
            let luma = (2 * u32::from(p.pixels[i]) + 5 * u32::from(p.pixels[i + 1]) + u32::from(p.pixels[i + 2])) / 8;
            sums[row + x * FINE / w] += luma;
            counts[row + x * FINE / w] += 1;
        }
    }
    let mean = |s: &[u32], c: &[u32]| s.iter().zip(c).map(|(s, c)| (s / (*c).max(1)) as u8).collect();
    // A coarse cell is the 4 x 4 fine cells in it (the same pixels: x * 16 / w is x * 64 / w / 4).
    let (mut coarse_sums, mut coarse_counts) = (vec![0u32; GRID * GRID], vec![0u32; GRID * GRID]);
    for i in 0..FINE * FINE {
        let coarse = (i / FINE) / (FINE / GRID) * GRID + (i % FINE) / (FINE / GRID);
        coarse_sums[coarse] += sums[i];
        coarse_counts[coarse] += counts[i];
    }
    Brightness { coarse: mean(&coarse_sums, &coarse_counts), fine: mean(&sums, &counts) }
}

/// A stream's last tiled frame: its brightness, and the frames since.
#[derive(Debug)]
pub(crate) struct LastTiled {
    seen: Brightness,
    since: u32,
}

/// Whether a stream's frame, seen as `now`, must be tiled; updates the stream's last tiled frame.
pub(crate) fn wants_tiles(
    tiling: Tiling,
    last: &mut HashMap<String, LastTiled>,
    stream_id: &str,
    now: &Brightness,
) -> bool {
    if tiling.every == 0 {
        return true;
    }
    let quiet = last.get(stream_id).is_some_and(|l| {
        let (before, after) = (&l.seen.coarse, &now.coarse);
        let moved = before.iter().zip(after).filter(|(a, b)| a.abs_diff(**b) > tiling.level).count();
        l.since + 1 < tiling.every
            && before.len() == after.len()
            && (moved as f32) <= tiling.change * after.len() as f32
    });
    match last.get_mut(stream_id) {
        Some(l) if quiet => {
            l.since += 1;
            false
        }
        _ => {
            last.insert(stream_id.to_string(), LastTiled { seen: now.clone(), since: 0 });
            true
        }
    }
}

/// An untiled frame against its stream's last tiled frame: where what the tiles found there is
/// now. A find is carried on, moved with the picture under it, only while that picture is
/// still there: a product that left, or that something now covers, is not.
#[derive(Clone, Debug, PartialEq)]
pub struct SinceTiled {
    /// The picture the grids cover, in frame pixels, and the frame's size.
    crop: Crop,
    frame: (u32, u32),
    before: Vec<u8>,
    now: Vec<u8>,
    /// A cell moved when its brightness changed by more than this.
    level: u8,
}

impl SinceTiled {
    pub(crate) fn new(last: &LastTiled, now: &Brightness, picture: &Prepared, level: u8) -> SinceTiled {
        SinceTiled {
            crop: picture.crop,
            frame: (picture.frame_width, picture.frame_height),
            before: last.seen.fine.clone(),
            now: now.fine.clone(),
            level,
        }
    }

    /// Where the picture under `bbox` (normalised to the frame) on the tiled frame is now: the
    /// box moved by up to [`REACH`] fine cells, in half cells, to where the object's cells
    /// differ least (ties go to the smaller move), and how many of them changed there.
    pub fn follow(&self, bbox: &BBox) -> Followed {
        let cells = FINE * FINE;
        if self.before.len() != cells || self.now.len() != cells || self.crop.width == 0 || self.crop.height == 0 {
            return Followed { bbox: *bbox, changed: 0.0 };
        }
        let span = |from: f32, to: f32, size: u32, offset: u32, crop: u32| {
            let cell = |v: f32| (v * size as f32 - offset as f32) / crop as f32 * FINE as f32;
            let first = cell(from).floor().clamp(0.0, (FINE - 1) as f32) as isize;
            let last = (cell(to).ceil() as isize - 1).clamp(first, FINE as isize - 1);
            first..=last
        };
        let columns = span(bbox.x0, bbox.x1, self.frame.0, self.crop.x, self.crop.width);
        let rows = span(bbox.y0, bbox.y1, self.frame.1, self.crop.y, self.crop.height);
        let cell = |c: isize, r: isize| (r as usize) * FINE + c as usize;
        let under: Vec<(isize, isize)> = rows.flat_map(|r| columns.clone().map(move |c| (c, r))).collect();
        // The object's cells: those that stand out from the box's middle brightness (a thin
        // product's box is mostly what lies behind it). A plain box is all object.
        let mut shades: Vec<u8> = under.iter().map(|&(c, r)| self.before[cell(c, r)]).collect();
        shades.sort_unstable();
        let middle = shades[shades.len() / 2];
        let stand_out: Vec<(isize, isize)> =
            under.iter().copied().filter(|&(c, r)| self.before[cell(c, r)].abs_diff(middle) > self.level).collect();
        let object = if stand_out.is_empty() { under } else { stand_out };
        // A large box is judged on an even sample of its cells: the same answer, at a bounded
        // cost per frame (a whole-frame box took 3 ms a frame of the model's thread, 4,096 cells).
        let object: Vec<(isize, isize)> = object.iter().copied().step_by(object.len().div_ceil(MOST_CELLS)).collect();
        // The picture now at half-cell position (c2 / 2, r2 / 2): between cells, their mean.
        let now_at = |c2: isize, r2: isize| {
            let (c0, r0) = (c2.div_euclid(2), r2.div_euclid(2));
            let (c1, r1) = (c0 + c2.rem_euclid(2), r0 + r2.rem_euclid(2));
            let inside = |v: isize| (0..FINE as isize).contains(&v);
            (inside(c0) && inside(c1) && inside(r0) && inside(r1)).then(|| {
                let sum: u32 = [(c0, r0), (c1, r0), (c0, r1), (c1, r1)]
                    .iter()
                    .map(|&(c, r)| u32::from(self.now[cell(c, r)]))
                    .sum();
                ((sum + 2) / 4) as u8
            })
        };
        // Per move (in half cells): the object's summed difference, and its cells that changed
        // (one moved out of the picture is both).
        let differences = |hx: isize, hy: isize| {
            object.iter().fold((0u32, 0usize), |(sum, changed), &(c, r)| {
                match now_at(2 * c + hx, 2 * r + hy).map(|v| self.before[cell(c, r)].abs_diff(v)) {
                    Some(d) => (sum + u32::from(d), changed + usize::from(d > self.level)),
                    None => (sum + 255, changed + 1),
                }
            })
        };
        let reach = 2 * REACH;
        let mut moves: Vec<(isize, isize)> =
            (-reach..=reach).flat_map(|hy| (-reach..=reach).map(move |hx| (hx, hy))).collect();
        moves.sort_by_key(|(hx, hy)| hx.abs() + hy.abs());
        let ((hx, hy), (_, changed)) = moves
            .into_iter()
            .map(|(hx, hy)| ((hx, hy), differences(hx, hy)))
            .reduce(|best, next| if next.1 .0 < best.1 .0 { next } else { best })
            .expect("at least the move by nothing");
        let x = hx as f32 / 2.0 * self.crop.width as f32 / FINE as f32 / self.frame.0 as f32;
        let y = hy as f32 / 2.0 * self.crop.height as f32 / FINE as f32 / self.frame.1 as f32;
        // Within the frame: a box at its edge moved out stays at the edge (a picture moved out
        // of the frame is partly gone, which `changed` counts).
        let within = |v: f32| v.clamp(0.0, 1.0);
        let bbox =
            BBox { x0: within(bbox.x0 + x), y0: within(bbox.y0 + y), x1: within(bbox.x1 + x), y1: within(bbox.y1 + y) };
        Followed { bbox, changed: changed as f32 / object.len() as f32 }
    }
}

/// Where a tiled frame's find is on a later frame ([`SinceTiled::follow`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Followed {
    /// Its box, moved with the picture.
    pub bbox: BBox,
    /// The share of the object's cells that changed, however it is moved (0 to 1).
    pub changed: f32,
}

impl Followed {
    /// Whether the picture of what was found is still there: under half of it changed. What
    /// the tiles found is carried on to untiled frames while it is.
    pub fn still_there(&self) -> bool {
        self.changed < 0.5
    }

    /// Whether it is there nearly unchanged (a quarter of it changed at most). What the last
    /// tiles found and the next ones miss is kept once more while it is, so the model's miss
    /// of a weak find on one tiled frame does not take a product off; a product that left
    /// (a third of a thin one's box may still look the same) is not kept.
    pub fn unchanged(&self) -> bool {
        self.changed <= 0.25
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADAPTIVE: Tiling =
        Tiling { grid: TileGrid { columns: 2, rows: 2 }, overlap: 0.2, every: 4, change: 0.1, level: 16 };

    fn picture(shade: impl Fn(usize, usize) -> u8) -> Prepared {
        let (w, h) = (128usize, 128usize);
        let pixels = (0..w * h).flat_map(|i| [shade(i % w, i / w); 3]).collect();
        let whole = Crop { x: 0, y: 0, width: 128, height: 128 };
        Prepared { frame_width: 128, frame_height: 128, crop: whole, width: 128, height: 128, content: whole, pixels }
    }

    #[test]
    fn a_quiet_stream_is_tiled_every_few_frames_and_a_cut_at_once() {
        let mut last = HashMap::new();
        let grey = brightness(&picture(|_, _| 80));
        let tiled: Vec<bool> = (0..9).map(|_| wants_tiles(ADAPTIVE, &mut last, "show", &grey)).collect();
        assert_eq!(tiled, [true, false, false, false, true, false, false, false, true]);
        // A cut: half the picture brighter.
        let cut = brightness(&picture(|x, _| if x < 64 { 200 } else { 80 }));
        assert!(wants_tiles(ADAPTIVE, &mut last, "show", &cut));
        assert!(!wants_tiles(ADAPTIVE, &mut last, "show", &cut));
        // Another stream has its own last tiled frame; `every` 0 tiles every frame.
        assert!(wants_tiles(ADAPTIVE, &mut last, "other", &grey));
        let always = Tiling { every: 0, ..ADAPTIVE };
        assert!((0..3).all(|_| wants_tiles(always, &mut last, "show", &grey)));
    }

    #[test]
    fn a_small_product_coming_in_is_a_change_only_past_the_share() {
        let mut last = HashMap::new();
        assert!(wants_tiles(ADAPTIVE, &mut last, "show", &brightness(&picture(|_, _| 80))));
        // One coarse cell of 256 changes: under 10%, so it waits for the next tiled frame.
        let product = brightness(&picture(|x, y| if x < 8 && y < 8 { 220 } else { 80 }));
        assert_eq!(product.coarse.iter().filter(|c| **c != 80).count(), 1);
        assert!(!wants_tiles(ADAPTIVE, &mut last, "show", &product));
    }

    /// What the tiles found on `before`, seen on `now`.
    fn since(before: &Prepared, now: &Prepared) -> SinceTiled {
        let mut last = HashMap::new();
        assert!(wants_tiles(ADAPTIVE, &mut last, "show", &brightness(before)));
        SinceTiled::new(&last["show"], &brightness(now), now, ADAPTIVE.level)
    }

    #[test]
    fn what_the_tiles_found_is_carried_only_where_the_picture_stayed() {
        // Two products on a table: a bright one on the left, a dark one on the right.
        let table = picture(|x, y| match (x, y) {
            (16..40, 24..56) => 220,
            (80..104, 24..56) => 20,
            _ => 120,
        });
        let left = BBox { x0: 0.125, y0: 0.1875, x1: 0.3125, y1: 0.4375 };
        let right = BBox { x0: 0.625, y0: 0.1875, x1: 0.8125, y1: 0.4375 };
        // The left one leaves; the right one stays.
        let now =
            since(&table, &picture(|x, y| if (80..104).contains(&x) && (24..56).contains(&y) { 20 } else { 120 }));
        assert!(!now.follow(&left).still_there());
        assert_eq!(now.follow(&right), Followed { bbox: right, changed: 0.0 });
        // A cut to grey: neither is carried on.
        let grey = since(&table, &picture(|_, _| 120));
        assert!(!grey.follow(&left).still_there() && !grey.follow(&right).still_there());
    }

    #[test]
    fn a_find_moves_with_the_picture_when_the_camera_pans() {
        let product = |dx: usize| {
            picture(move |x, y| if (16 + dx..40 + dx).contains(&x) && (24..56).contains(&y) { 220 } else { 120 })
        };
        let found = BBox { x0: 0.125, y0: 0.1875, x1: 0.3125, y1: 0.4375 };
        // Three fine cells (6 of 128 pixels) to the right, and two.
        for (pixels, cells) in [(6, 3.0), (4, 2.0)] {
            let panned = since(&product(0), &product(pixels)).follow(&found);
            assert!((panned.bbox.x0 - (found.x0 + cells / 64.0)).abs() < 1e-6, "{panned:?}");
            assert_eq!((panned.bbox.y0, panned.bbox.y1), (found.y0, found.y1));
            assert!(panned.unchanged(), "{panned:?}");
        }
        // A box to the frame's edges moves with what stands out in it, and stays in the frame.
        let edge = BBox { x0: 0.0, y0: 0.0, x1: 1.0, y1: 1.0 };
        let moved_out = since(&product(0), &product(6)).follow(&edge);
        assert_eq!(moved_out.bbox, BBox { x0: 3.0 / 64.0, ..edge }, "{moved_out:?}");
        // Past the reach (a 16th of the picture), it is not followed: the pan tiles again.
        assert!(!since(&product(0), &product(20)).follow(&found).still_there());
        // In a picture with bars, cells count from the picture's corner, not the frame's.
        let mut barred = since(&product(0), &product(6));
        barred.crop = Crop { x: 128, y: 0, width: 128, height: 128 };
        barred.frame = (384, 128);
        let in_frame = BBox { x0: (128.0 + 16.0) / 384.0, x1: (128.0 + 40.0) / 384.0, ..found };
        let moved = barred.follow(&in_frame);
        assert!((moved.bbox.x0 - (in_frame.x0 + 6.0 / 384.0)).abs() < 1e-6, "{moved:?}");
    }

    #[test]
    fn a_thin_product_that_left_may_still_be_there_in_part_but_is_not_unchanged() {
        // Across the box: the product (a bright band) above a coin (dark) that stays.
        let band = |x: usize, y: usize| (16..40).contains(&x) && (24..32).contains(&y);
        let coin = |x: usize, y: usize| (16..40).contains(&x) && (40..52).contains(&y);
        let shade = move |with_band: bool| {
            move |x: usize, y: usize| match (with_band && band(x, y), coin(x, y)) {
                (true, _) => 220,
                (_, true) => 20,
                _ => 120,
            }
        };
        let found = BBox { x0: 0.125, y0: 0.1875, x1: 0.3125, y1: 0.4375 };
        let left = since(&picture(shade(true)), &picture(shade(false))).follow(&found);
        // 48 of the 120 cells that stand out were the band.
        assert!((left.changed - 0.4).abs() < 1e-6, "{left:?}");
        assert!(left.still_there() && !left.unchanged());
    }

    fn detection(label: &str, class_id: u32, (x0, y0, x1, y1): (f32, f32, f32, f32)) -> Detection {
        Detection {
            label: label.into(),
            class_id,
            score: 0.6,
            bbox: BBox { x0, y0, x1, y1 },
            track_id: None,
            embedding: None,
            product: None,
        }
    }

    #[test]
    fn a_tile_quarter_of_a_ball_is_not_an_apple_but_a_small_apple_on_a_table_is() {
        let ball = detection("sports ball", 37, (0.42, 0.36, 0.58, 0.64));
        let table = detection("dining table", 67, (0.0, 0.0, 1.0, 1.0));
        let whole = [ball, table];
        // A tile cut through the ball: most of the "apple" lies in the ball's box.
        let quarter = detection("apple", 53, (0.45, 0.45, 0.596, 0.652));
        assert!(piece_of_another(&quarter, &whole));
        // A small apple on the table: inside the table's box, but far smaller than it.
        let small_apple = detection("apple", 53, (0.7, 0.7, 0.76, 0.78));
        assert!(!piece_of_another(&small_apple, &whole));
        // The ball itself, seen better by a tile: the same label, merged by NMS instead.
        let ball_in_tile = detection("sports ball", 37, (0.43, 0.37, 0.58, 0.63));
        assert!(!piece_of_another(&ball_in_tile, &whole));
    }
}
