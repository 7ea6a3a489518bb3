//! Where a stream's state lives: one rule for every stage that keeps per-stream state.

use crate::stable_hash;

/// The exchange route of a stream's records to the worker that holds its state (tracker,
/// debounce, events). A stream read from Kafka goes to the worker that reads its partition:
/// partition `p` is read by worker `p mod W` and timely's exchange sends a record to worker
/// `route mod W`, so a stream's state, its results and its partition's offsets all live in
/// one process of a cluster. A stream read in-process goes by a hash of its id.
pub fn stream_route(stream_id: &str, partition: Option<i32>) -> u64 {
    match partition {
        Some(p) => u64::from(p.unsigned_abs()),
        None => stable_hash(&[stream_id.as_bytes()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partitioned_stream_goes_to_its_partitions_reader() {
        for workers in 1..6u64 {
            for p in 0..12 {
                assert_eq!(stream_route("any", Some(p)) % workers, p as u64 % workers);
            }
        }
        assert_eq!(stream_route("demo", None), stream_route("demo", None));
    }
}
