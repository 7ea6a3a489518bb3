//! decode: JPEG bytes -> the model's input picture, or a dead letter.

use std::collections::HashMap;

use vitrine_models::{frame_size, Crop, DecodeLimits, InputSpec, Prepared, Preparer};
use vitrine_schemas::spec::TileGrid;
use vitrine_schemas::{now_ms, BBox, Change, DeadLetter, Frame};

use crate::StageTimer;

/// A decoded frame: its metadata (the JPEG bytes are dropped) and its model-ready pixels.
#[derive(Clone, Debug)]
pub struct PreparedFrame {
    pub frame: Frame,
    /// The whole picture (no pixels when the frame is `Unchanged`: it is not decoded).
    pub prepared: Prepared,
    /// Tiles of the picture (when tiling), each at the model's input size.
    pub tiles: Vec<Prepared>,
    /// On an untiled frame of a stream tiled only at times (`infer.tile_every`): where its
    /// picture moved since the stream's last tiled frame.
    pub moved: Option<MovedCells>,
}

impl PreparedFrame {
    /// Whether the model skips this frame and the tracker carries the last detections over.
    pub fn carried(&self) -> bool {
        self.frame.carries_detections()
    }
}

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

/// Which cells of the brightness grid (over the picture, bars cut) moved since a stream's last
/// tiled frame. What the tiles found there is kept on the frames after it only where the
/// picture stayed: a product that left, or that something now covers, is not carried on.
#[derive(Clone, Debug, PartialEq)]
pub struct MovedCells {
    /// The picture the grid covers, in frame pixels, and the frame's size.
    crop: Crop,
    frame: (u32, u32),
    moved: Vec<bool>,
}

impl MovedCells {
    /// Whether at least half of the grid's cells under `bbox` (normalised to the frame) moved.
    pub fn most_moved_under(&self, bbox: &BBox) -> bool {
        if self.moved.len() != GRID * GRID || self.crop.width == 0 || self.crop.height == 0 {
            return false;
        }
        // The box in cells of the grid: those it overlaps.
        let span = |from: f32, to: f32, size: u32, offset: u32, crop: u32| {
            let cell = |v: f32| (v * size as f32 - offset as f32) / crop as f32 * GRID as f32;
            let first = cell(from).floor().clamp(0.0, (GRID - 1) as f32) as usize;
            let last = (cell(to).ceil() as isize - 1).clamp(first as isize, GRID as isize - 1) as usize;
            first..=last
        };
        let columns = span(bbox.x0, bbox.x1, self.frame.0, self.crop.x, self.crop.width);
        let rows = span(bbox.y0, bbox.y1, self.frame.1, self.crop.y, self.crop.height);
        let (under, moved) = rows
            .flat_map(|r| columns.clone().map(move |c| r * GRID + c))
            .fold((0, 0), |(under, moved), i| (under + 1, moved + usize::from(self.moved[i])));
        2 * moved >= under
    }
}

/// Per cell, whether its brightness moved by more than `level` (none when the grids differ).
fn moved_cells(before: &[u8], now: &[u8], level: u8) -> Vec<bool> {
    if before.len() != now.len() {
        return Vec::new();
    }
    before.iter().zip(now).map(|(a, b)| a.abs_diff(*b) > level).collect()
}

/// A stream's last tiled frame: its picture on a coarse grid, and the frames since.
#[derive(Debug)]
struct LastTiled {
    cells: Vec<u8>,
    since: u32,
}

/// Cells a side of the grid that [`brightness_grid`] measures a picture on.
const GRID: usize = 16;

/// The picture's brightness on a 16x16 grid (every other pixel of every other row): enough
/// to see a cut or a product coming in, for about a 20th of a resize.
fn brightness_grid(p: &Prepared) -> Vec<u8> {
    let (w, h) = (p.width as usize, p.height as usize);
    if w < GRID || h < GRID || p.pixels.len() < w * h * 3 {
        return Vec::new();
    }
    let (mut sums, mut counts) = (vec![0u32; GRID * GRID], vec![0u32; GRID * GRID]);
    for y in (0..h).step_by(2) {
        let row = y * GRID / h * GRID;
        for x in (0..w).step_by(2) {
            let i = (y * w + x) * 3;
            let luma = (2 * u32::from(p.pixels[i]) + 5 * u32::from(p.pixels[i + 1]) + u32::from(p.pixels[i + 2])) / 8;
            sums[row + x * GRID / w] += luma;
            counts[row + x * GRID / w] += 1;
        }
    }
    sums.iter().zip(&counts).map(|(s, c)| (s / (*c).max(1)) as u8).collect()
}

/// Whether a stream's frame, seen as `cells`, must be tiled; updates the stream's last tiled frame.
fn wants_tiles(tiling: Tiling, last: &mut HashMap<String, LastTiled>, stream_id: &str, cells: Vec<u8>) -> bool {
    if tiling.every == 0 {
        return true;
    }
    let quiet = last.get(stream_id).is_some_and(|l| {
        let moved = moved_cells(&l.cells, &cells, tiling.level).iter().filter(|m| **m).count();
        l.since + 1 < tiling.every
            && l.cells.len() == cells.len()
            && (moved as f32) <= tiling.change * cells.len() as f32
    });
    match last.get_mut(stream_id) {
        Some(l) if quiet => {
            l.since += 1;
            false
        }
        _ => {
            last.insert(stream_id.to_string(), LastTiled { cells, since: 0 });
            true
        }
    }
}

/// Decodes frames for one model input size; keeps its resize buffers between frames.
#[derive(Debug)]
pub struct FrameDecoder {
    preparer: Preparer,
    input: InputSpec,
    tiling: Option<Tiling>,
    /// Per stream, its last tiled frame (when tiling adapts: `Tiling::every`).
    last_tiled: HashMap<String, LastTiled>,
    pub(crate) timer: StageTimer,
}

impl FrameDecoder {
    pub fn new(limits: DecodeLimits, input: InputSpec) -> FrameDecoder {
        FrameDecoder {
            preparer: Preparer::new(limits),
            input,
            tiling: None,
            last_tiled: HashMap::new(),
            timer: StageTimer::default(),
        }
    }

    /// Reports each frame's decode time to `timer`.
    pub fn timed(self, timer: StageTimer) -> FrameDecoder {
        FrameDecoder { timer, ..self }
    }

    /// Also cut each frame into tiles (none for a 1 x 1 grid).
    pub fn with_tiling(self, tiling: Option<Tiling>) -> FrameDecoder {
        FrameDecoder { tiling: tiling.filter(|t| t.grid.count() > 0), ..self }
    }

    pub fn decode(&mut self, mut frame: Frame) -> Result<PreparedFrame, DeadLetter> {
        if frame.carries_detections() {
            // (Its data was walked whole at the source, so its header has a size.)
            if let Some((frame_width, frame_height)) = frame_size(&frame.jpeg) {
                frame.jpeg = Vec::new();
                let whole = Crop { x: 0, y: 0, width: frame_width, height: frame_height };
                let (width, height) = (self.input.width, self.input.height);
                let content = Crop { x: 0, y: 0, width, height };
                let prepared =
                    Prepared { frame_width, frame_height, crop: whole, width, height, content, pixels: Vec::new() };
                return Ok(PreparedFrame { frame, prepared, tiles: Vec::new(), moved: None });
            }
            frame.change = Change::Unchecked;
        }
        let checked = frame.change == Change::New;
        let (tiling, last_tiled, stream_id) = (self.tiling, &mut self.last_tiled, frame.stream_id.as_str());
        let mut moved = None;
        let tiles_of = |whole: &Prepared| {
            let t = tiling?;
            let cells = if t.every > 0 { brightness_grid(whole) } else { Vec::new() };
            let since_tiled = last_tiled.get(stream_id).map(|l| moved_cells(&l.cells, &cells, t.level));
            if wants_tiles(t, last_tiled, stream_id, cells) {
                return Some((t.grid, t.overlap));
            }
            let frame = (whole.frame_width, whole.frame_height);
            moved = since_tiled.map(|moved| MovedCells { crop: whole.crop, frame, moved });
            None
        };
        let pictures = self.preparer.prepare_pictures(&frame.jpeg, self.input, tiles_of, checked);
        match pictures {
            Ok(mut pictures) => {
                frame.jpeg = Vec::new();
                let prepared = pictures.remove(0);
                Ok(PreparedFrame { frame, prepared, tiles: pictures, moved })
            }
            Err(e) => {
                let mut letter = dead_letter(&frame, "decode", e.to_string());
                letter.payload = frame.jpeg;
                Err(letter)
            }
        }
    }
}

/// A dead letter for `frame`, failed at `stage` for `reason`.
pub fn dead_letter(frame: &Frame, stage: &str, reason: String) -> DeadLetter {
    DeadLetter {
        stream_id: frame.stream_id.clone(),
        seq: frame.seq,
        pts_ms: frame.pts_ms,
        stage: stage.into(),
        reason,
        origin: frame.origin.clone(),
        bytes: frame.jpeg.len() as u64,
        at_ms: now_ms(),
        payload: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADAPTIVE: Tiling =
        Tiling { grid: TileGrid { columns: 2, rows: 2 }, overlap: 0.2, every: 4, change: 0.1, level: 16 };

    fn picture(shade: impl Fn(usize, usize) -> u8) -> Prepared {
        let (w, h) = (64usize, 64usize);
        let pixels = (0..w * h).flat_map(|i| [shade(i % w, i / w); 3]).collect();
        let whole = Crop { x: 0, y: 0, width: 64, height: 64 };
        Prepared { frame_width: 64, frame_height: 64, crop: whole, width: 64, height: 64, content: whole, pixels }
    }

    #[test]
    fn a_quiet_stream_is_tiled_every_few_frames_and_a_cut_at_once() {
        let mut last = HashMap::new();
        let grey = brightness_grid(&picture(|_, _| 80));
        let tiled: Vec<bool> = (0..9).map(|_| wants_tiles(ADAPTIVE, &mut last, "show", grey.clone())).collect();
        assert_eq!(tiled, [true, false, false, false, true, false, false, false, true]);
        // A cut: half the picture brighter.
        let cut = brightness_grid(&picture(|x, _| if x < 32 { 200 } else { 80 }));
        assert!(wants_tiles(ADAPTIVE, &mut last, "show", cut.clone()));
        assert!(!wants_tiles(ADAPTIVE, &mut last, "show", cut));
        // Another stream has its own last tiled frame; `every` 0 tiles every frame.
        assert!(wants_tiles(ADAPTIVE, &mut last, "other", grey.clone()));
        let always = Tiling { every: 0, ..ADAPTIVE };
        assert!((0..3).all(|_| wants_tiles(always, &mut last, "show", grey.clone())));
    }

    #[test]
    fn what_the_tiles_found_is_carried_only_where_the_picture_stayed() {
        let mut last = HashMap::new();
        let table = picture(|x, _| if x < 32 { 120 } else { 60 });
        assert!(wants_tiles(ADAPTIVE, &mut last, "show", brightness_grid(&table)));
        // The left half goes grey (the product there left); the right half stays.
        let now = brightness_grid(&picture(|_, _| 60));
        let moved = MovedCells {
            crop: table.crop,
            frame: (64, 64),
            moved: moved_cells(&last["show"].cells, &now, ADAPTIVE.level),
        };
        let left = BBox { x0: 0.1, y0: 0.2, x1: 0.4, y1: 0.5 };
        let right = BBox { x0: 0.6, y0: 0.2, x1: 0.9, y1: 0.5 };
        assert!(moved.most_moved_under(&left));
        assert!(!moved.most_moved_under(&right));
        // A box across both halves: half of its cells moved, so it is not carried on.
        assert!(moved.most_moved_under(&BBox { x0: 0.25, y0: 0.2, x1: 0.75, y1: 0.5 }));
        // A box in a picture with bars: cells count from the picture's corner, not the frame's.
        let barred = MovedCells { crop: Crop { x: 64, y: 0, width: 64, height: 64 }, frame: (192, 64), ..moved };
        assert!(barred.most_moved_under(&BBox { x0: 0.35, y0: 0.2, x1: 0.45, y1: 0.5 }));
        assert!(!barred.most_moved_under(&BBox { x0: 0.55, y0: 0.2, x1: 0.65, y1: 0.5 }));
    }

    #[test]
    fn a_small_product_coming_in_is_a_change_only_past_the_share() {
        let mut last = HashMap::new();
        let grey = brightness_grid(&picture(|_, _| 80));
        assert!(wants_tiles(ADAPTIVE, &mut last, "show", grey));
        // One cell of 256 changes: under 10%, so it waits for the next tiled frame.
        let product = brightness_grid(&picture(|x, y| if x < 4 && y < 4 { 220 } else { 80 }));
        assert_eq!(product.iter().filter(|c| **c != 80).count(), 1);
        assert!(!wants_tiles(ADAPTIVE, &mut last, "show", product));
    }
}
