//! decode: JPEG bytes -> the model's input picture, or a dead letter.

use timely::dataflow::Stream;
use vitrine_models::{DecodeLimits, InputSpec, Prepared, Preparer};
use vitrine_schemas::{now_ms, DeadLetter, Frame};

use crate::{MapFallible, Stage, StageTimer, Time};

/// A decoded frame: its metadata (the JPEG bytes are dropped) and its model-ready pixels.
#[derive(Clone, Debug)]
pub struct PreparedFrame {
    pub frame: Frame,
    /// The whole picture.
    pub prepared: Prepared,
    /// Tiles of the picture (when tiling), each at the model's input size.
    pub tiles: Vec<Prepared>,
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
        let pictures = match self.tiling {
            None => self.preparer.prepare(&frame.jpeg, self.input).map(|p| vec![p]),
            Some(t) => self.preparer.prepare_tiled(&frame.jpeg, self.input, t.grid, t.overlap),
        };
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
