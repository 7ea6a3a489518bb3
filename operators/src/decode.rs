//! decode: JPEG bytes -> the model's input picture, or a dead letter.

use timely::dataflow::Stream;
use vitrine_models::{frame_size, Crop, DecodeLimits, InputSpec, Prepared, Preparer};
use vitrine_schemas::{now_ms, Change, DeadLetter, Frame};

use crate::{MapFallible, Stage, StageTimer, Time};

/// A decoded frame: its metadata (the JPEG bytes are dropped) and its model-ready pixels.
#[derive(Clone, Debug)]
pub struct PreparedFrame {
    pub frame: Frame,
    /// The whole picture (no pixels when the frame is `Unchanged`: it is not decoded).
    pub prepared: Prepared,
    /// Tiles of the picture (when tiling), each at the model's input size.
    pub tiles: Vec<Prepared>,
}

impl PreparedFrame {
    /// Whether the model skips this frame and the tracker carries the last detections over.
    pub fn carried(&self) -> bool {
        self.frame.carries_detections()
    }
}

/// Small objects: besides the whole picture, `grid` x `grid` tiles overlapping by `overlap`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tiling {
    pub grid: u32,
    pub overlap: f32,
}

/// Decodes frames for one model input size; keeps its resize buffers between frames.
#[derive(Debug)]
pub struct FrameDecoder {
    preparer: Preparer,
    input: InputSpec,
    tiling: Option<Tiling>,
    timer: StageTimer,
}

impl FrameDecoder {
    pub fn new(limits: DecodeLimits, input: InputSpec) -> FrameDecoder {
        FrameDecoder { preparer: Preparer::new(limits), input, tiling: None, timer: StageTimer::default() }
    }

    /// Reports each frame's decode time to `timer`.
    pub fn timed(self, timer: StageTimer) -> FrameDecoder {
        FrameDecoder { timer, ..self }
    }

    /// Also cut each frame into tiles (`grid` 2 or more).
    pub fn with_tiling(self, tiling: Option<Tiling>) -> FrameDecoder {
        FrameDecoder { tiling: tiling.filter(|t| t.grid >= 2), ..self }
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
                return Ok(PreparedFrame { frame, prepared, tiles: Vec::new() });
            }
            frame.change = Change::Unchecked;
        }
        let tiles_of = self.tiling.map(|t| (t.grid, t.overlap));
        let checked = frame.change == Change::New;
        let pictures = self.preparer.prepare_pictures(&frame.jpeg, self.input, tiles_of, checked);
        match pictures {
            Ok(mut pictures) => {
                frame.jpeg = Vec::new();
                let prepared = pictures.remove(0);
                Ok(PreparedFrame { frame, prepared, tiles: pictures })
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

/// The decode stage as a timely operator: decoded frames, and frames that failed.
pub trait DecodeFrames<'scope> {
    fn decode_frames(
        self,
        decoder: FrameDecoder,
    ) -> (Stream<'scope, Time, Vec<PreparedFrame>>, Stream<'scope, Time, Vec<DeadLetter>>);
}

impl<'scope> DecodeFrames<'scope> for Stream<'scope, Time, Vec<Frame>> {
    fn decode_frames(
        self,
        mut decoder: FrameDecoder,
    ) -> (Stream<'scope, Time, Vec<PreparedFrame>>, Stream<'scope, Time, Vec<DeadLetter>>) {
        let timer = decoder.timer.clone();
        self.map_fallible("Decode", move |frame| timer.time(Stage::Decode, 1, || decoder.decode(frame)))
    }
}
