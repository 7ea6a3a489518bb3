//! What is really on screen in a recorded show, as a person labelled it: the truth that
//! `vitrine eval` scores product events against. The format is in docs/eval.md, with a JSON
//! Schema (docs/truth.schema.json).

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A truth file: per stream of the spec, the labelled segments of its media time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Truth {
    /// Format version; 1.
    pub version: u32,
    pub streams: Vec<StreamTruth>,
}

/// One stream's labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamTruth {
    /// The stream id, as the spec's source names it.
    pub stream_id: String,
    /// In media-time order, not overlapping. Media time no segment covers shows no product.
    pub segments: Vec<Segment>,
}

/// A stretch of media time and the products on screen throughout it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// Media time the segment starts at (inclusive), e.g. `12.6s`.
    #[serde(with = "humantime_serde")]
    pub start: Duration,
    /// Media time it ends at (exclusive).
    #[serde(with = "humantime_serde")]
    pub end: Duration,
    /// SKUs of the products on screen throughout: each must be announced.
    #[serde(default)]
    pub products: Vec<String>,
    /// SKUs a card may or may not show for (half in view, hard to tell): neither required nor false.
    #[serde(default)]
    pub maybe: Vec<String>,
    /// What a person sees there, for whoever reads the report.
    #[serde(default)]
    pub note: Option<String>,
}

impl Segment {
    /// A segment from `start_ms` to `end_ms` with these products and maybe-products, no note.
    pub fn new(start_ms: u64, end_ms: u64, products: &[&str], maybe: &[&str]) -> Segment {
        Segment {
            start: Duration::from_millis(start_ms),
            end: Duration::from_millis(end_ms),
            products: products.iter().map(|p| p.to_string()).collect(),
            maybe: maybe.iter().map(|p| p.to_string()).collect(),
            note: None,
        }
    }
}

impl Truth {
    /// Every problem of the file, each naming where it is; empty when it is sound.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.version != 1 {
            problems.push(format!("version: {} is not a version this vitrine reads (1)", self.version));
        }
        let mut seen = BTreeSet::new();
        for (s, stream) in self.streams.iter().enumerate() {
            if !seen.insert(stream.stream_id.as_str()) {
                problems.push(format!("streams[{s}]: stream `{}` is labelled twice", stream.stream_id));
            }
            let mut previous_end = Duration::ZERO;
            for (i, segment) in stream.segments.iter().enumerate() {
                let at = format!("streams[{s}].segments[{i}]");
                if segment.end <= segment.start {
                    problems.push(format!("{at}: ends at {:?}, not after its start {:?}", segment.end, segment.start));
                }
                if segment.start < previous_end {
                    problems.push(format!(
                        "{at}: starts at {:?}, before the previous segment ends ({previous_end:?}); \
                         segments go in media-time order without overlapping",
                        segment.start
                    ));
                }
                previous_end = previous_end.max(segment.end);
                for sku in segment.products.iter().filter(|p| segment.maybe.contains(p)) {
                    problems.push(format!("{at}: `{sku}` is in both products and maybe"));
                }
            }
        }
        problems
    }

    /// Every SKU the truth names.
    pub fn skus(&self) -> BTreeSet<&str> {
        let segments = self.streams.iter().flat_map(|s| &s.segments);
        segments.flat_map(|s| s.products.iter().chain(&s.maybe)).map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_empty_and_doubly_named_segments_are_each_a_problem() {
        let truth = Truth {
            version: 1,
            streams: vec![StreamTruth {
                stream_id: "show".into(),
                segments: vec![
                    Segment::new(0, 2000, &["A"], &[]),
                    Segment::new(1500, 1500, &["B"], &["B"]),
                    Segment::new(3000, 4000, &[], &["C"]),
                ],
            }],
        };
        let problems = truth.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("segments[1]: ends at"), "{problems:?}");
        assert!(problems[1].contains("segments[1]: starts at 1.5s, before"), "{problems:?}");
        assert!(problems[2].contains("`B` is in both"), "{problems:?}");
        assert_eq!(truth.skus().into_iter().collect::<Vec<_>>(), ["A", "B", "C"]);
    }

    #[test]
    fn reads_durations_as_the_spec_writes_them() {
        let truth: Truth = serde_json::from_value(serde_json::json!({
            "version": 1,
            "streams": [{"stream_id": "show", "segments": [{"start": "2s", "end": "10.4s", "products": ["CUP"]}]}]
        }))
        .unwrap();
        assert_eq!(truth.streams[0].segments[0].end, Duration::from_millis(10_400));
        assert!(truth.problems().is_empty());
    }
}
