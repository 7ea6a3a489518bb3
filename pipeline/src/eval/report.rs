//! What `vitrine eval` prints: a row per labelled segment, then the summary.

use std::fmt::Write;

use serde::Serialize;
use vitrine_schemas::truth::Truth;

use super::score::{entrance_in, Announced, Entrance, StreamScore};
use crate::run::RunSummary;

/// The whole evaluation, as `--json` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub summary: Summary,
    pub segments: Vec<SegmentRow>,
    pub streams: Vec<StreamScore>,
}

/// The figures a retailer tunes for.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub tolerance_ms: i64,
    /// Product entrances the truth requires.
    pub entrances: usize,
    pub on_time: usize,
    pub late: usize,
    pub missed: usize,
    /// Entrances announced within the tolerance, of all.
    pub recall: f64,
    pub false_cards: usize,
    /// Media time scored, in minutes.
    pub media_minutes: f64,
    pub false_cards_per_10_min: f64,
    /// Cards that stayed longer than the tolerance after their product left.
    pub exits_lingering: usize,
    /// Cards that went while their product was still on screen.
    pub cards_dropped_early: usize,
    /// Entrances of products that share their label with another catalog product, and those
    /// of them that got the right card alone (`score::judge_skus`); the rate is none without any.
    pub shared_label_entrances: usize,
    pub right_sku: usize,
    pub right_sku_rate: Option<f64>,
    /// Largest and mean error of the entrances and exits known to the frame, in ms and in
    /// frames of the source (`frame_ms`).
    pub entrance_error_max_ms: i64,
    pub entrance_error_mean_ms: f64,
    pub exit_error_max_ms: i64,
    pub exit_error_mean_ms: f64,
    pub frame_ms: f64,
    pub entrance_error_max_frames: f64,
    pub exit_error_max_frames: f64,
    pub frames: u64,
    pub model_runs: u64,
    pub model_runs_per_frame: f64,
    pub seconds: f64,
}

/// One labelled segment and what happened in it.
#[derive(Clone, Debug, Serialize)]
pub struct SegmentRow {
    pub stream_id: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Per required product: `on time (+200 ms)`, `late`, `missed`, or `on screen` (it came in
    /// earlier); a card that went early or stayed on says so (`, gone 2.8 s early`).
    pub products: Vec<(String, String)>,
    pub false_cards: Vec<String>,
    pub note: Option<String>,
}

/// `, gone 2.8 s early` or `, stayed 1.2 s after` for a card whose exit was off; else nothing.
fn exit_note(e: &Entrance) -> String {
    let seconds = |ms: i64| format!("{:.1} s", ms.abs() as f64 / 1000.0);
    match (e.dropped_early, e.lingered, e.exit_error_ms) {
        (true, _, Some(ms)) => format!(", gone {} early", seconds(ms)),
        (true, _, None) => ", gone early".to_string(),
        (_, true, Some(ms)) => format!(", stayed {} after", seconds(ms)),
        (_, true, None) => ", stayed after".to_string(),
        _ => String::new(),
    }
}

fn mean_and_max(errors: &[i64]) -> (f64, i64) {
    let max = errors.iter().map(|e| e.abs()).max().unwrap_or(0);
    let mean =
        if errors.is_empty() { 0.0 } else { errors.iter().map(|e| e.abs()).sum::<i64>() as f64 / errors.len() as f64 };
    (mean, max)
}

impl EvalReport {
    pub fn new(
        truth: &Truth,
        streams: Vec<StreamScore>,
        frame_ms: &[(String, f64)],
        tolerance_ms: i64,
        run: &RunSummary,
    ) -> EvalReport {
        let mut segments = Vec::new();
        for (stream_truth, score) in truth.streams.iter().zip(&streams) {
            for (i, segment) in stream_truth.segments.iter().enumerate() {
                let (start_ms, end_ms) = (segment.start.as_millis() as i64, segment.end.as_millis() as i64);
                let products = segment
                    .products
                    .iter()
                    .map(|sku| {
                        let status = match entrance_in(score, stream_truth, i, sku) {
                            None => "on screen".to_string(),
                            Some(e) => {
                                let entrance = match (e.announced, e.entrance_error_ms) {
                                    (Announced::OnTime, Some(error)) => format!("on time ({error:+} ms)"),
                                    (Announced::OnTime, None) => "on time".to_string(),
                                    (Announced::Late, _) => "late".to_string(),
                                    (Announced::Missed, _) => "missed".to_string(),
                                };
                                entrance + &exit_note(e)
                            }
                        };
                        (sku.clone(), status)
                    })
                    .collect();
                let false_cards = score
                    .false_cards
                    .iter()
                    .filter(|f| f.pts_ms >= start_ms && f.pts_ms < end_ms)
                    .map(|f| format!("{} at {:.1} s", f.sku, f.pts_ms as f64 / 1000.0))
                    .collect();
                segments.push(SegmentRow {
                    stream_id: stream_truth.stream_id.clone(),
                    start_ms,
                    end_ms,
                    products,
                    false_cards,
                    note: segment.note.clone(),
                });
            }
            // False cards where no segment is: nothing was on screen there.
            let covered = |t: i64| {
                stream_truth.segments.iter().any(|s| t >= s.start.as_millis() as i64 && t < s.end.as_millis() as i64)
            };
            for f in score.false_cards.iter().filter(|f| !covered(f.pts_ms)) {
                segments.push(SegmentRow {
                    stream_id: stream_truth.stream_id.clone(),
                    start_ms: f.pts_ms,
                    end_ms: f.pts_ms,
                    products: Vec::new(),
                    false_cards: vec![format!("{} at {:.1} s", f.sku, f.pts_ms as f64 / 1000.0)],
                    note: Some("(no segment: nothing on screen)".into()),
                });
            }
        }
        segments.sort_by(|a, b| (&a.stream_id, a.start_ms).cmp(&(&b.stream_id, b.start_ms)));

        let entrances: Vec<_> = streams.iter().flat_map(|s| &s.entrances).collect();
        let count = |a: Announced| entrances.iter().filter(|e| e.announced == a).count();
        let (on_time, late, missed) = (count(Announced::OnTime), count(Announced::Late), count(Announced::Missed));
        let entrance_errors: Vec<i64> = entrances.iter().filter_map(|e| e.entrance_error_ms).collect();
        let exit_errors: Vec<i64> = entrances.iter().filter_map(|e| e.exit_error_ms).collect();
        let (entrance_mean, entrance_max) = mean_and_max(&entrance_errors);
        let (exit_mean, exit_max) = mean_and_max(&exit_errors);
        let false_cards: usize = streams.iter().map(|s| s.false_cards.len()).sum();
        let shared_label_entrances = entrances.iter().filter(|e| e.right_sku.is_some()).count();
        let right_sku = entrances.iter().filter(|e| e.right_sku == Some(true)).count();
        let media_minutes = streams.iter().map(|s| s.media_ms as f64 / 60_000.0).sum::<f64>();
        // The coarsest frame step of the scored streams: errors are judged against it.
        let frame_ms = frame_ms
            .iter()
            .filter(|(id, _)| streams.iter().any(|s| &s.stream_id == id))
            .map(|(_, ms)| *ms)
            .fold(0.0, f64::max);
        let per_frame = |ms: i64| if frame_ms > 0.0 { ms as f64 / frame_ms } else { 0.0 };
        let summary = Summary {
            tolerance_ms,
            entrances: entrances.len(),
            on_time,
            late,
            missed,
            recall: if entrances.is_empty() { 1.0 } else { on_time as f64 / entrances.len() as f64 },
            false_cards,
            media_minutes,
            false_cards_per_10_min: if media_minutes > 0.0 { false_cards as f64 * 10.0 / media_minutes } else { 0.0 },
            exits_lingering: entrances.iter().filter(|e| e.lingered).count(),
            cards_dropped_early: entrances.iter().filter(|e| e.dropped_early).count(),
            shared_label_entrances,
            right_sku,
            right_sku_rate: (shared_label_entrances > 0).then(|| right_sku as f64 / shared_label_entrances as f64),
            entrance_error_max_ms: entrance_max,
            entrance_error_mean_ms: entrance_mean,
            exit_error_max_ms: exit_max,
            exit_error_mean_ms: exit_mean,
            frame_ms,
            entrance_error_max_frames: per_frame(entrance_max),
            exit_error_max_frames: per_frame(exit_max),
            frames: run.frames,
            model_runs: run.model_runs,
            model_runs_per_frame: run.model_runs as f64 / run.frames.max(1) as f64,
            seconds: run.seconds,
        };
        EvalReport { summary, segments, streams }
    }

    /// The report as a terminal table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{:<10} {:>15}  {:<44} {:<24} note", "stream", "media time", "products", "false cards");
        for row in &self.segments {
            let time = format!("{:.1}-{:.1} s", row.start_ms as f64 / 1000.0, row.end_ms as f64 / 1000.0);
            let products: Vec<String> = row.products.iter().map(|(sku, status)| format!("{sku} {status}")).collect();
            let products = if products.is_empty() { "-".to_string() } else { products.join(", ") };
            let false_cards = if row.false_cards.is_empty() { "-".to_string() } else { row.false_cards.join(", ") };
            let note = row.note.as_deref().unwrap_or("");
            let _ = writeln!(out, "{:<10} {time:>15}  {products:<44} {false_cards:<24} {note}", row.stream_id);
        }
        let s = &self.summary;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "entrances: {} of {} announced within {} ms (recall {:.2}); {} late, {} missed",
            s.on_time, s.entrances, s.tolerance_ms, s.recall, s.late, s.missed
        );
        let _ = writeln!(
            out,
            "false cards: {} in {:.1} min of media ({:.1} per 10 min)",
            s.false_cards, s.media_minutes, s.false_cards_per_10_min
        );
        let _ = writeln!(
            out,
            "timing: entrances off by {:.0} ms on average, {} ms at most ({:.1} frames); exits {:.0} ms, {} ms at most ({:.1} frames)",
            s.entrance_error_mean_ms,
            s.entrance_error_max_ms,
            s.entrance_error_max_frames,
            s.exit_error_mean_ms,
            s.exit_error_max_ms,
            s.exit_error_max_frames
        );
        let _ = writeln!(
            out,
            "cards: {} lingered after their product left, {} went while it was still there",
            s.exits_lingering, s.cards_dropped_early
        );
        if s.shared_label_entrances > 0 {
            let _ = writeln!(
                out,
                "right SKU: {} of {} entrances of products that share a label got their own card alone",
                s.right_sku, s.shared_label_entrances
            );
        }
        let _ = writeln!(
            out,
            "cost: {} model runs for {} frames ({:.2} a frame), {:.1} s",
            s.model_runs, s.frames, s.model_runs_per_frame, s.seconds
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entrance(exit_error_ms: Option<i64>, dropped_early: bool, lingered: bool) -> Entrance {
        Entrance {
            sku: "APL-GALA-1KG".into(),
            start_ms: 62_600,
            end_ms: 70_600,
            announced: Announced::Late,
            entrance_error_ms: None,
            exit_error_ms,
            dropped_early,
            lingered,
            right_sku: None,
        }
    }

    #[test]
    fn a_card_that_went_early_or_stayed_on_says_by_how_much() {
        assert_eq!(exit_note(&entrance(Some(-2800), true, false)), ", gone 2.8 s early");
        assert_eq!(exit_note(&entrance(Some(1400), false, true)), ", stayed 1.4 s after");
        assert_eq!(exit_note(&entrance(None, true, false)), ", gone early");
        // Within the tolerance: nothing to say.
        assert_eq!(exit_note(&entrance(Some(-200), false, false)), "");
    }
}
