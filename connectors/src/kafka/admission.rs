//! What a worker takes from the frames topic, per stream: frames in order, not denser in media
//! time than `max_fps`, and no more streams than `max_streams`. Any producer can write to the
//! topic; a buggy or hostile one must not make the tracker see time run backwards, the model
//! run a thousand times a media second, or per-stream state grow without end.

use std::collections::HashMap;

/// The limits of a Kafka source (`sources[].max_streams`, `sources[].max_fps`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub max_streams: usize,
    pub max_fps: f64,
}

/// The last frame taken of each stream this worker has seen.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    last: HashMap<String, (u64, i64)>,
}

impl Admission {
    pub fn new(limits: Limits) -> Admission {
        Admission { limits, last: HashMap::new() }
    }

    /// Takes frame `seq` at media time `pts_ms` of `stream`, or says why not.
    pub fn admit(&mut self, stream: &str, seq: u64, pts_ms: i64) -> Result<(), String> {
        let Some(&(last_seq, last_pts)) = self.last.get(stream) else {
            if self.last.len() >= self.limits.max_streams {
                return Err(format!(
                    "stream `{stream}` would be stream {} of this worker, over the source's max_streams ({}); \
                     is a producer writing made-up stream ids? Raise max_streams or add workers",
                    self.last.len() + 1,
                    self.limits.max_streams
                ));
            }
            self.last.insert(stream.to_string(), (seq, pts_ms));
            return Ok(());
        };
        if seq <= last_seq {
            let what = if seq == last_seq { "a duplicate of" } else { "older than" };
            return Err(format!(
                "frame {seq} of stream `{stream}` is {what} frame {last_seq}, already taken: frames of a stream \
                 must come in order (one producer per stream, idempotent)"
            ));
        }
        if pts_ms < last_pts {
            return Err(format!(
                "media time went back in stream `{stream}`: frame {seq} is at {pts_ms} ms, frame {last_seq} was at \
                 {last_pts} ms; a restarted sampler must carry its media time on"
            ));
        }
        // Closer than a frame interval allows (with 1% slack for rounding to milliseconds).
        let min_gap_ms = 1000.0 / self.limits.max_fps * 0.99;
        if ((pts_ms - last_pts) as f64) < min_gap_ms {
            return Err(format!(
                "frame {seq} of stream `{stream}` is {} ms after frame {last_seq} in media time, denser than the \
                 source's max_fps ({}): sample fewer frames (vitrine sample --fps) or raise max_fps",
                pts_ms - last_pts,
                self.limits.max_fps
            ));
        }
        self.last.insert(stream.to_string(), (seq, pts_ms));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission() -> Admission {
        Admission::new(Limits { max_streams: 2, max_fps: 10.0 })
    }

    #[test]
    fn frames_in_order_at_the_rate_are_taken() {
        let mut a = admission();
        for seq in 0..50 {
            a.admit("s", seq, seq as i64 * 100).unwrap();
        }
        // Gaps are fine (frames shed or lost upstream), and so is a pause in media time.
        a.admit("s", 60, 9_000).unwrap();
        a.admit("s", 61, 3_600_000).unwrap();
    }

    #[test]
    fn duplicates_and_frames_out_of_order_are_refused() {
        let mut a = admission();
        a.admit("s", 5, 500).unwrap();
        assert!(a.admit("s", 5, 500).unwrap_err().contains("a duplicate of frame 5"));
        assert!(a.admit("s", 4, 400).unwrap_err().contains("older than frame 5"));
        // The refused ones changed nothing: the next frame in order is taken.
        a.admit("s", 6, 600).unwrap();
    }

    #[test]
    fn media_time_going_back_is_refused() {
        let mut a = admission();
        a.admit("s", 1, 10_000).unwrap();
        assert!(a.admit("s", 2, 0).unwrap_err().contains("media time went back"));
    }

    #[test]
    fn frames_denser_than_max_fps_are_refused() {
        let mut a = admission();
        a.admit("s", 1, 1000).unwrap();
        assert!(a.admit("s", 2, 1010).unwrap_err().contains("max_fps (10)"));
        a.admit("s", 3, 1099).unwrap(); // 99 ms: a 10 fps frame rounded down
    }

    #[test]
    fn streams_past_the_limit_are_refused_and_known_ones_go_on() {
        let mut a = admission();
        a.admit("a", 0, 0).unwrap();
        a.admit("b", 0, 0).unwrap();
        assert!(a.admit("c", 0, 0).unwrap_err().contains("max_streams (2)"));
        a.admit("a", 1, 100).unwrap();
    }
}
