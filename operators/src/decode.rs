//! decode: JPEG bytes -> the model's input picture, or a dead letter.

use std::collections::HashMap;

use vitrine_models::{frame_size, Crop, DecodeLimits, InputSpec, Prepared, Preparer};
use vitrine_schemas::{now_ms, Change, DeadLetter, Frame};

use crate::tiling::{brightness, wants_tiles, Brightness, LastTiled, SinceTiled, Tiling};
use crate::StageTimer;

/// A decoded frame: its metadata (the JPEG bytes are dropped) and its model-ready pixels.
#[derive(Clone, Debug)]
pub struct PreparedFrame {
    pub frame: Frame,
    /// The whole picture (no pixels when the frame is `Unchanged`: it is not decoded).
    pub prepared: Prepared,
    /// Tiles of the picture (when tiling), each at the model's input size.
    pub tiles: Vec<Prepared>,
    /// On a stream tiled only at times (`infer.tile_every`): how the frame's picture changed
    /// since the stream's last tiled frame before it.
    pub since_tiled: Option<SinceTiled>,
}

impl PreparedFrame {
    /// Whether the model skips this frame and the tracker carries the last detections over.
    pub fn carried(&self) -> bool {
        self.frame.carries_detections()
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

    /// `region` (frame pixels) of the frame decoded last, stretched to `side` x `side` (for the
    /// embedder); none when the last frame was not decoded or the region is outside it.
    pub fn crop_of_last(&mut self, region: Crop, side: u32) -> Option<Prepared> {
        self.preparer.last_region(region, side, side)
    }

    /// Decodes `jpeg` again, as [`FrameDecoder::decode`] did (`tiled`: it was cut into tiles,
    /// so decoded larger), for [`FrameDecoder::crop_of_last`] to cut from, changing no tiling
    /// state: for a frame of a batch that is not the last one decoded.
    pub fn decode_again(&mut self, jpeg: &[u8], tiled: bool) -> bool {
        let tiles = self.tiling.filter(|_| tiled).map(|t| (t.grid, t.overlap));
        self.preparer.prepare_pictures(jpeg, self.input, |_| tiles, true).is_ok()
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
                return Ok(PreparedFrame { frame, prepared, tiles: Vec::new(), since_tiled: None });
            }
            frame.change = Change::Unchecked;
        }
        let checked = frame.change == Change::New;
        let (tiling, last_tiled, stream_id) = (self.tiling, &mut self.last_tiled, frame.stream_id.as_str());
        let mut since_tiled = None;
        let tiles_of = |whole: &Prepared| {
            let t = tiling?;
            let seen = if t.every > 0 { brightness(whole) } else { Brightness::default() };
            since_tiled = last_tiled.get(stream_id).map(|last| SinceTiled::new(last, &seen, whole, t.level));
            wants_tiles(t, last_tiled, stream_id, &seen).then_some((t.grid, t.overlap))
        };
        let pictures = self.preparer.prepare_pictures(&frame.jpeg, self.input, tiles_of, checked);
        match pictures {
            Ok(mut pictures) => {
                frame.jpeg = Vec::new();
                let prepared = pictures.remove(0);
                Ok(PreparedFrame { frame, prepared, tiles: pictures, since_tiled })
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
