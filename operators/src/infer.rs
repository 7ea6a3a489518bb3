//! infer: model-ready pictures -> detections, through the worker's own ONNX session.

use timely::dataflow::Stream;
use vitrine_models::Detector;
use vitrine_schemas::{DeadLetter, FrameDetections};

use crate::decode::{dead_letter, PreparedFrame};
use crate::{MapFallible, Time};

/// Runs one detector (one ONNX session: a worker owns it, since `run` needs `&mut`).
#[derive(Debug)]
pub struct Inferencer {
    detector: Detector,
}

impl Inferencer {
    pub fn new(detector: Detector) -> Inferencer {
        Inferencer { detector }
    }

    pub fn infer(&mut self, frame: PreparedFrame) -> Result<FrameDetections, DeadLetter> {
        let PreparedFrame { frame, prepared } = frame;
        match self.detector.detect(&prepared) {
            Ok(detections) => Ok(FrameDetections {
                stream_id: frame.stream_id,
                seq: frame.seq,
                pts_ms: frame.pts_ms,
                captured_at_ms: frame.captured_at_ms,
                width: prepared.frame_width,
                height: prepared.frame_height,
                model: self.detector.name().to_string(),
                detections,
            }),
            Err(e) => Err(dead_letter(&frame, "infer", e.to_string())),
        }
    }
}

/// The infer stage as a timely operator: detections per frame, and frames that failed.
pub trait InferDetections<'scope> {
    fn infer_detections(
        self,
        inferencer: Inferencer,
    ) -> (Stream<'scope, Time, Vec<FrameDetections>>, Stream<'scope, Time, Vec<DeadLetter>>);
}

impl<'scope> InferDetections<'scope> for Stream<'scope, Time, Vec<PreparedFrame>> {
    fn infer_detections(
        self,
        mut inferencer: Inferencer,
    ) -> (Stream<'scope, Time, Vec<FrameDetections>>, Stream<'scope, Time, Vec<DeadLetter>>) {
        self.map_fallible("Infer", move |frame| inferencer.infer(frame))
    }
}
