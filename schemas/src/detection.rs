use serde::{Deserialize, Serialize};

use crate::SourcePosition;

/// A box in coordinates normalised to the frame: 0..1 from the left and from the top.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl BBox {
    pub fn area(&self) -> f32 {
        (self.x1 - self.x0).max(0.0) * (self.y1 - self.y0).max(0.0)
    }

    /// Area of the overlap with another box.
    pub fn intersection(&self, other: &BBox) -> f32 {
        let ix = (self.x1.min(other.x1) - self.x0.max(other.x0)).max(0.0);
        let iy = (self.y1.min(other.y1) - self.y0.max(other.y0)).max(0.0);
        ix * iy
    }

    /// Intersection over union with another box.
    pub fn iou(&self, other: &BBox) -> f32 {
        let inter = self.intersection(other);
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
}

/// One object the detector found in a frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// The model's label, e.g. `cup`.
    pub label: String,
    /// The model's class id for the label.
    pub class_id: u32,
    /// Confidence, 0..1.
    pub score: f32,
    /// Where, normalised to the frame.
    pub bbox: BBox,
    /// The object's track in its stream (the same object keeps its id from frame to frame);
    /// none for a weak detection that continues no track. Always written (as `null` when
    /// none): records crossing timely processes are bincode, which cannot skip a field.
    #[serde(default)]
    pub track_id: Option<u64>,
    /// The picture of the object, as the embedder sees it (unit length), on the frames it
    /// was embedded on; the matcher takes it off before any sink sees the detection.
    /// Always written, as `track_id`.
    #[serde(default)]
    pub embedding: Option<Vec<f32>>,
    /// The catalog product whose picture this object's track looks like, and how closely;
    /// none when nothing was matched (products without a picture match on the label alone).
    #[serde(default)]
    pub product: Option<ProductMatch>,
}

/// A detection recognised as a catalog product by its picture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProductMatch {
    pub sku: String,
    /// Cosine similarity of the track's running mean embedding to the product's picture, 0..1.
    pub score: f32,
}

/// Everything the detector found in one frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameDetections {
    pub stream_id: String,
    pub seq: u64,
    pub pts_ms: i64,
    pub captured_at_ms: i64,
    /// Width and height of the decoded frame, in pixels.
    pub width: u32,
    pub height: u32,
    /// Name and version of the model that produced these detections.
    pub model: String,
    pub detections: Vec<Detection>,
    /// Where the frame was read (for the exactly-once sinks; not part of the Kafka message).
    #[serde(default)]
    pub position: SourcePosition,
    /// The model did not see this frame: it showed nothing new (`infer.max_skip`), and these
    /// are the detections of the stream's last frame it saw.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub carried: bool,
}
