//! matching: which catalog product a tracked object is, by its picture.
//!
//! A detector label is not a product: a shop sells two mugs, and a clock is read as a cup. Each
//! product with a picture is embedded once ([`PictureIndex`]); an object is embedded on the model
//! threads when its track starts and every so often after ([`crate::CropSchedule`]). A track
//! of a label that some pictured product has is compared with those products on its stream's
//! rundown by its running mean embedding, so one bad crop does not flip a card. The closest wins
//! if it is close enough and far enough ahead of the runner-up; the detection then carries the
//! product, and debounce counts it for that product alone. A track that matches none counts for
//! its label, which only products without a picture match (as before matching).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;
use vitrine_models::Embedding;
use vitrine_schemas::{BBox, FrameDetections, ProductMatch};

use crate::Time;

/// How close a track must come to a product's picture.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatchThresholds {
    /// Least cosine similarity of the track's mean embedding to the picture.
    pub min_similarity: f32,
    /// Least lead of the best product over the runner-up of the same label.
    pub min_margin: f32,
}

/// The thresholds: by default, per stream, and per product (which wins over its stream's).
#[derive(Clone, Debug, PartialEq)]
pub struct MatchConfig {
    pub default: MatchThresholds,
    pub streams: BTreeMap<String, MatchThresholds>,
    pub products: BTreeMap<String, MatchThresholds>,
    /// A track not sighted for this much media time is forgotten.
    pub forget_after_ms: i64,
}

impl MatchConfig {
    pub fn new(default: MatchThresholds) -> MatchConfig {
        MatchConfig { default, streams: BTreeMap::new(), products: BTreeMap::new(), forget_after_ms: 10_000 }
    }

    pub fn thresholds(&self, stream_id: &str, sku: &str) -> MatchThresholds {
        self.products.get(sku).or_else(|| self.streams.get(stream_id)).copied().unwrap_or(self.default)
    }
}

/// A catalog product's picture, embedded.
#[derive(Clone, Debug)]
pub struct Picture {
    pub sku: String,
    pub label: String,
    /// The product's rundown (empty: every stream), as in its catalog row.
    pub streams: Vec<String>,
    pub embedding: Embedding,
}

impl Picture {
    fn on_rundown_of(&self, stream_id: &str) -> bool {
        self.streams.is_empty() || self.streams.iter().any(|s| s == stream_id)
    }
}

/// The catalog's embedded pictures, by SKU: written by whoever reads the catalog (it embeds a
/// new or changed picture before it hands the row on), read by the matchers and by the model
/// threads (which embed only objects of a label some picture has).
#[derive(Clone, Debug, Default)]
pub struct PictureIndex(Arc<RwLock<BTreeMap<String, Picture>>>);

impl PictureIndex {
    pub fn insert(&self, picture: Picture) {
        self.0.write().expect("picture index").insert(picture.sku.clone(), picture);
    }

    pub fn remove(&self, sku: &str) {
        self.0.write().expect("picture index").remove(sku);
    }

    pub fn len(&self) -> usize {
        self.0.read().expect("picture index").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether some product of `label` on `stream_id`'s rundown has a picture.
    pub fn has_label(&self, label: &str, stream_id: &str) -> bool {
        self.0.read().expect("picture index").values().any(|p| p.label == label && p.on_rundown_of(stream_id))
    }

    /// The best product for `embedding` among those of `label` on `stream_id`'s rundown, its
    /// similarity and the runner-up's (0 when it has none); none when no product of the label
    /// has a picture.
    fn closest(&self, label: &str, stream_id: &str, embedding: &Embedding) -> Option<(String, f32, f32)> {
        let pictures = self.0.read().expect("picture index");
        let mut scored: Vec<(f32, &str)> = pictures
            .values()
            .filter(|p| p.label == label && p.on_rundown_of(stream_id))
            .map(|p| (embedding.similarity(&p.embedding), p.sku.as_str()))
            .collect();
        // Highest first; ties go to the smaller SKU, so the choice never depends on the order.
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let (best, sku) = *scored.first()?;
        let runner_up = scored.get(1).map_or(0.0, |s| s.0);
        Some((sku.to_string(), best, runner_up))
    }
}

/// The embeddings seen of one object: their sum (its direction is the running mean's). An
/// object is its track, or, for detections no track continues (a detector's weak or unsure
/// finds), the look of its label whose last box it overlaps most.
#[derive(Debug)]
struct Look {
    track_id: Option<u64>,
    label: String,
    bbox: BBox,
    sum: Vec<f32>,
    crops: u32,
    last_seen_pts: i64,
}

impl Look {
    fn mean(&self) -> Option<Embedding> {
        (self.crops > 0).then(|| Embedding::normalized(self.sum.clone()))
    }

    fn add(&mut self, e: &Embedding) {
        if self.sum.len() != e.len() {
            self.sum = vec![0.0; e.len()];
            self.crops = 0;
        }
        self.sum.iter_mut().zip(e.values()).for_each(|(s, v)| *s += v);
        self.crops += 1;
    }
}

/// An untracked detection is the same object as an earlier one of its label it overlaps this much.
const SAME_OBJECT_IOU: f32 = 0.3;

/// The look of `d`'s object among `looks`: by its track, else by its label and box.
fn look_of(looks: &[Look], track_id: Option<u64>, label: &str, bbox: &BBox) -> Option<usize> {
    if let Some(id) = track_id {
        if let Some(i) = looks.iter().position(|l| l.track_id == Some(id)) {
            return Some(i);
        }
    }
    looks
        .iter()
        .enumerate()
        .filter(|(_, l)| l.label == label && (l.track_id.is_none() || track_id.is_none()))
        .map(|(i, l)| (i, l.bbox.iou(bbox)))
        .filter(|&(_, iou)| iou >= SAME_OBJECT_IOU)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// Matching state of every stream a worker owns. Feed frames of a stream in `seq` order.
#[derive(Debug)]
pub struct Matcher {
    config: MatchConfig,
    pictures: PictureIndex,
    streams: HashMap<String, Vec<Look>>,
}

impl Matcher {
    pub fn new(config: MatchConfig, pictures: PictureIndex) -> Matcher {
        Matcher { config, pictures, streams: HashMap::new() }
    }

    /// Takes the frame's crop embeddings into its tracks' running means, and marks each detection
    /// of a pictured label with the product its track looks like, if any.
    pub fn observe(&mut self, frame: &mut FrameDetections) {
        let looks = self.streams.entry(frame.stream_id.clone()).or_default();
        let pts = frame.pts_ms;
        for d in &mut frame.detections {
            let own = d.embedding.take().map(Embedding::normalized);
            let at = match look_of(looks, d.track_id, &d.label, &d.bbox) {
                Some(i) => Some(i),
                None if own.is_some() => {
                    looks.push(Look {
                        track_id: d.track_id,
                        label: d.label.clone(),
                        bbox: d.bbox,
                        sum: Vec::new(),
                        crops: 0,
                        last_seen_pts: pts,
                    });
                    Some(looks.len() - 1)
                }
                None => None,
            };
            let mean = at.and_then(|i| {
                let look = &mut looks[i];
                if let Some(e) = &own {
                    look.add(e);
                }
                look.track_id = look.track_id.or(d.track_id);
                look.bbox = d.bbox;
                look.last_seen_pts = pts;
                look.mean()
            });
            let new_crop = own.is_some();
            d.product = mean.and_then(|mean| {
                let (sku, best, runner_up) = self.pictures.closest(&d.label, &frame.stream_id, &mean)?;
                let t = self.config.thresholds(&frame.stream_id, &sku);
                let matched = best >= t.min_similarity && best - runner_up >= t.min_margin;
                if new_crop {
                    // What a user tunes `match` by (VITRINE_LOG=vitrine_operators::matching=debug).
                    tracing::debug!(stream = %frame.stream_id, pts_ms = pts, track = ?d.track_id, label = %d.label,
                        closest = %sku, similarity = best, runner_up, matched, "match");
                }
                matched.then_some(ProductMatch { sku, score: best })
            });
        }
        let forget = self.config.forget_after_ms;
        looks.retain(|look| (0..forget).contains(&(pts - look.last_seen_pts)));
    }
}

/// The matching stage as a timely operator. It follows tracking on the same worker, which hands
/// it each stream's frames in order.
pub trait MatchProducts<'scope> {
    fn match_products(self, matcher: Matcher) -> Stream<'scope, Time, Vec<FrameDetections>>;
}

impl<'scope> MatchProducts<'scope> for Stream<'scope, Time, Vec<FrameDetections>> {
    fn match_products(self, mut matcher: Matcher) -> Stream<'scope, Time, Vec<FrameDetections>> {
        self.unary(Pipeline, "Match", |_, _| {
            move |input, output| {
                input.for_each(|cap, data| {
                    data.iter_mut().for_each(|frame| matcher.observe(frame));
                    output.session(&cap).give_container(data);
                });
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use vitrine_schemas::Detection;

    use super::*;

    fn unit(v: &[f32]) -> Embedding {
        Embedding::normalized(v.to_vec())
    }

    fn picture(sku: &str, label: &str, v: &[f32]) -> Picture {
        Picture { sku: sku.into(), label: label.into(), streams: Vec::new(), embedding: unit(v) }
    }

    /// A detection: its label, track and crop embedding.
    type Seen<'a> = (&'a str, Option<u64>, Option<&'a [f32]>);

    fn frame(seq: u64, detections: Vec<Seen>) -> FrameDetections {
        FrameDetections {
            stream_id: "s".into(),
            seq,
            pts_ms: seq as i64 * 200,
            captured_at_ms: 0,
            width: 640,
            height: 360,
            model: "m".into(),
            detections: detections
                .into_iter()
                .map(|(label, track_id, embedding)| Detection {
                    label: label.into(),
                    class_id: 0,
                    score: 0.8,
                    bbox: BBox { x0: 0.1, y0: 0.1, x1: 0.3, y1: 0.3 },
                    track_id,
                    embedding: embedding.map(|e| unit(e).values().to_vec()),
                    product: None,
                })
                .collect(),
            position: Default::default(),
            carried: false,
        }
    }

    fn two_mugs() -> PictureIndex {
        let index = PictureIndex::default();
        index.insert(picture("MUG-RED", "cup", &[1.0, 0.1, 0.0]));
        index.insert(picture("MUG-BLUE", "cup", &[0.1, 1.0, 0.0]));
        index
    }

    fn matcher(index: PictureIndex) -> Matcher {
        Matcher::new(MatchConfig::new(MatchThresholds { min_similarity: 0.8, min_margin: 0.05 }), index)
    }

    fn sku(frame: &FrameDetections, i: usize) -> Option<&str> {
        frame.detections[i].product.as_ref().map(|p| p.sku.as_str())
    }

    #[test]
    fn among_products_of_one_label_the_closest_picture_wins() {
        let mut m = matcher(two_mugs());
        let mut f = frame(0, vec![("cup", Some(1), Some(&[0.9, 0.2, 0.1])), ("cup", Some(2), Some(&[0.2, 0.9, 0.0]))]);
        m.observe(&mut f);
        assert_eq!((sku(&f, 0), sku(&f, 1)), (Some("MUG-RED"), Some("MUG-BLUE")));
        assert!(f.detections[0].product.as_ref().unwrap().score > 0.95);
        assert!(f.detections.iter().all(|d| d.embedding.is_none()), "no sink sees the embeddings");
    }

    #[test]
    fn an_object_like_no_picture_or_like_both_is_no_product() {
        let mut m = matcher(two_mugs());
        // A clock read as a cup: far from both mugs.
        let mut f = frame(0, vec![("cup", Some(1), Some(&[0.0, 0.0, 1.0]))]);
        m.observe(&mut f);
        assert_eq!(sku(&f, 0), None);
        // Halfway between the two: close enough to each, but no lead.
        let lenient = MatchThresholds { min_similarity: 0.7, min_margin: 0.05 };
        let mut m = Matcher::new(MatchConfig::new(lenient), two_mugs());
        let mut f = frame(1, vec![("cup", Some(2), Some(&[1.0, 1.0, 0.0]))]);
        m.observe(&mut f);
        assert_eq!(sku(&f, 0), None, "{:?}", f.detections[0]);
    }

    #[test]
    fn a_track_is_judged_on_its_running_mean_so_one_bad_crop_does_not_flip_it() {
        let mut m = matcher(two_mugs());
        let red: &[f32] = &[1.0, 0.1, 0.0];
        for seq in 0..4 {
            let mut f = frame(seq, vec![("cup", Some(7), Some(red))]);
            m.observe(&mut f);
            assert_eq!(sku(&f, 0), Some("MUG-RED"));
        }
        // One crop that looks blue (the host's hand over it), then frames with no crop.
        let mut f = frame(4, vec![("cup", Some(7), Some(&[0.0, 1.0, 0.0]))]);
        m.observe(&mut f);
        assert_eq!(sku(&f, 0), Some("MUG-RED"));
        let mut f = frame(5, vec![("cup", Some(7), None)]);
        m.observe(&mut f);
        assert_eq!(sku(&f, 0), Some("MUG-RED"), "a frame with no crop keeps the track's match");
    }

    #[test]
    fn an_untracked_object_keeps_its_match_where_it_was_seen() {
        let mut m = matcher(two_mugs());
        let mut f = frame(0, vec![("cup", None, Some(&[0.0, 1.0, 0.1]))]);
        m.observe(&mut f);
        assert_eq!(sku(&f, 0), Some("MUG-BLUE"));
        // The next frames have no crop of it: the same place and label is the same object.
        let mut f = frame(1, vec![("cup", None, None)]);
        m.observe(&mut f);
        assert_eq!(sku(&f, 0), Some("MUG-BLUE"));
        let mut elsewhere = frame(2, vec![("cup", None, None)]);
        elsewhere.detections[0].bbox = BBox { x0: 0.6, y0: 0.6, x1: 0.9, y1: 0.9 };
        m.observe(&mut elsewhere);
        assert_eq!(sku(&elsewhere, 0), None, "an object elsewhere has not been seen yet");
    }

    #[test]
    fn labels_without_pictures_and_other_streams_rundowns_are_left_to_the_label() {
        let index = two_mugs();
        index.insert(Picture { streams: vec!["other".into()], ..picture("APPLE-GREEN", "apple", &[0.0, 0.0, 1.0]) });
        let mut m = matcher(index.clone());
        let mut f =
            frame(0, vec![("apple", Some(1), Some(&[0.0, 0.0, 1.0])), ("book", Some(2), Some(&[1.0, 0.0, 0.0]))]);
        m.observe(&mut f);
        assert_eq!((sku(&f, 0), sku(&f, 1)), (None, None));
        assert!(index.has_label("cup", "s") && !index.has_label("apple", "s") && index.has_label("apple", "other"));
    }

    #[test]
    fn thresholds_per_product_win_over_the_streams_and_the_default() {
        let mut config = MatchConfig::new(MatchThresholds { min_similarity: 0.8, min_margin: 0.05 });
        config.streams.insert("s".into(), MatchThresholds { min_similarity: 0.99, min_margin: 0.05 });
        config.products.insert("MUG-RED".into(), MatchThresholds { min_similarity: 0.9, min_margin: 0.0 });
        assert_eq!(config.thresholds("s", "MUG-BLUE").min_similarity, 0.99);
        assert_eq!(config.thresholds("s", "MUG-RED").min_similarity, 0.9);
        assert_eq!(config.thresholds("t", "MUG-BLUE").min_similarity, 0.8);
        let mut m = Matcher::new(config, two_mugs());
        let mut f =
            frame(0, vec![("cup", Some(1), Some(&[0.93, 0.3, 0.2])), ("cup", Some(2), Some(&[0.3, 0.93, 0.2]))]);
        m.observe(&mut f);
        assert_eq!((sku(&f, 0), sku(&f, 1)), (Some("MUG-RED"), None), "{:?}", f.detections);
    }

    #[test]
    fn a_changed_picture_rematches_the_tracks_on_screen_at_their_next_frame() {
        let index = two_mugs();
        let mut m = matcher(index.clone());
        let mut f = frame(0, vec![("cup", Some(1), Some(&[1.0, 0.1, 0.0]))]);
        m.observe(&mut f);
        assert_eq!(sku(&f, 0), Some("MUG-RED"));
        // The shop swaps the pictures of its two mugs.
        index.insert(picture("MUG-RED", "cup", &[0.1, 1.0, 0.0]));
        index.insert(picture("MUG-BLUE", "cup", &[1.0, 0.1, 0.0]));
        let mut f = frame(1, vec![("cup", Some(1), None)]);
        m.observe(&mut f);
        assert_eq!(sku(&f, 0), Some("MUG-BLUE"));
        index.remove("MUG-BLUE");
        index.remove("MUG-RED");
        let mut f = frame(2, vec![("cup", Some(1), None)]);
        m.observe(&mut f);
        assert_eq!(sku(&f, 0), None, "no picture left: the label decides");
    }
}
