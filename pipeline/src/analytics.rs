//! The Parquet tables in the dataflow: each worker writes the files of the inputs it reads
//! (Kafka partition p on worker p mod W, embedded streams on worker 0), so the rows, the
//! offsets read and the offsets committed of one input all live on one worker, whatever the
//! shape of the cluster.
//!
//! Rows are routed to the worker that owns their input, held in its [`FileCutter`], and cut
//! into file sets once the frontier says every frame before the set's end is complete (the
//! [`ReadLog`] says which offsets were read before which time). The sets go to the
//! [`vitrine_connectors::parquet::Publisher`]; the worker's Kafka commits never pass
//! [`FileCutter::durable`].

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Instant;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;
use vitrine_connectors::parquet::{FileCutter, FileSet, InputKey, PublisherHandle};
use vitrine_operators::{Emitted, Time};
use vitrine_schemas::FrameDetections;

/// A row of one of the tables, as the dataflow hands it to the Parquet sink.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum AnalyticsRow {
    Detections(FrameDetections),
    Emitted(Emitted),
}

impl AnalyticsRow {
    fn input(&self, run: i64) -> InputKey {
        let (position, stream_id) = match self {
            AnalyticsRow::Detections(d) => (&d.position, &d.stream_id),
            AnalyticsRow::Emitted(Emitted::Event(e, cause)) => (&cause.position, &e.stream_id),
            AnalyticsRow::Emitted(Emitted::Exposure(x, cause)) => (&cause.position, &x.stream_id),
        };
        InputKey::of(position, stream_id, run)
    }
}

/// The worker that reads (and so writes and commits) `input`.
pub fn owner(input: &InputKey, workers: usize) -> usize {
    match input {
        InputKey::Partition(p) => (*p).max(0) as usize % workers.max(1),
        InputKey::Stream { .. } => 0,
    }
}

/// Per dataflow time, the next offset of each input read at that time (on one worker).
#[derive(Debug, Default)]
pub struct ReadLog {
    read: BTreeMap<Time, BTreeMap<InputKey, i64>>,
    complete: BTreeMap<InputKey, i64>,
}

impl ReadLog {
    /// The message at `offset` of `input` was read at `time`.
    pub fn read(&mut self, time: Time, input: InputKey, offset: i64) {
        let next = self.read.entry(time).or_default().entry(input).or_insert(offset + 1);
        *next = (*next).max(offset + 1);
    }

    /// Per input, the offset before which every message was read before `frontier` (all of
    /// them when it is none): the dataflow completed them.
    pub fn complete_before(&mut self, frontier: Option<Time>) -> &BTreeMap<InputKey, i64> {
        while let Some(entry) = self.read.first_entry() {
            if frontier.is_some_and(|f| *entry.key() >= f) {
                break;
            }
            for (input, next) in entry.remove() {
                let c = self.complete.entry(input).or_insert(next);
                *c = (*c).max(next);
            }
        }
        &self.complete
    }
}

/// What the Parquet sink of one worker shares with the worker's read loop.
#[derive(Debug)]
pub struct ParquetWorker {
    pub cutter: Rc<RefCell<FileCutter>>,
    pub reads: Rc<RefCell<ReadLog>>,
    pub publisher: PublisherHandle,
    /// Sets cut but not yet taken by the publisher (its queue was full), oldest first.
    pub waiting: Rc<RefCell<VecDeque<FileSet>>>,
}

impl ParquetWorker {
    /// Whether the worker may take new frames: not while file sets wait for the publisher.
    pub fn has_room(&self) -> bool {
        self.waiting.borrow().is_empty() && self.publisher.has_room()
    }

    /// Hands waiting sets to the publisher, in order; notes what it published.
    pub fn pump(&self) {
        pump(&self.waiting, &self.publisher);
        let mut cutter = self.cutter.borrow_mut();
        for input in self.reads.borrow().complete.keys() {
            if let Some(end) = self.publisher.published(input) {
                cutter.published(input, end);
            }
        }
    }

    /// How far the Kafka offsets of `partition` may be committed (None: not at all yet).
    pub fn durable(&self, partition: i32) -> Option<i64> {
        self.cutter.borrow().durable(&InputKey::Partition(partition))
    }
}

fn pump(waiting: &RefCell<VecDeque<FileSet>>, publisher: &PublisherHandle) {
    let mut waiting = waiting.borrow_mut();
    while let Some(set) = waiting.pop_front() {
        if let Err(set) = publisher.send(set) {
            waiting.push_front(set);
            break;
        }
    }
}

/// Routes the rows to their input's worker and cuts their file sets as the frontier passes.
/// `min_dwell_ms`: shorter exposures are not written.
pub fn write_parquet<'scope>(
    rows: Stream<'scope, Time, Vec<AnalyticsRow>>,
    worker: &ParquetWorker,
    run: i64,
    min_dwell_ms: i64,
    workers: usize,
) {
    let route = Exchange::new(move |r: &AnalyticsRow| owner(&r.input(run), workers) as u64);
    let (cutter, reads, waiting, publisher) =
        (worker.cutter.clone(), worker.reads.clone(), worker.waiting.clone(), worker.publisher.clone());
    rows.sink(route, "ParquetSink", move |(input, frontier)| {
        let mut cutter = cutter.borrow_mut();
        input.for_each(|_, data| {
            for row in data.drain(..) {
                match row {
                    AnalyticsRow::Detections(d) => cutter.detections(d, run),
                    AnalyticsRow::Emitted(Emitted::Event(e, cause)) => cutter.event(e, cause, run),
                    AnalyticsRow::Emitted(Emitted::Exposure(x, cause)) => {
                        if x.duration_ms() >= min_dwell_ms {
                            cutter.exposure(x, cause, run);
                        }
                    }
                }
            }
        });
        let frontier = frontier.frontier().first().copied();
        let now = Instant::now();
        let mut reads = reads.borrow_mut();
        for (input, complete) in reads.complete_before(frontier) {
            if let Some(set) = cutter.complete(input, *complete, now) {
                waiting.borrow_mut().push_back(set);
            }
        }
        if frontier.is_none() {
            waiting.borrow_mut().extend(cutter.flush(now));
        }
        pump(&waiting, &publisher);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_is_complete_once_the_frontier_passes_every_time_it_was_read_at() {
        let mut log = ReadLog::default();
        let p = InputKey::Partition(1);
        log.read(100, p.clone(), 10);
        log.read(100, p.clone(), 11);
        log.read(200, p.clone(), 12);
        assert!(log.complete_before(Some(100)).is_empty());
        assert_eq!(log.complete_before(Some(150)).get(&p), Some(&12));
        assert_eq!(log.complete_before(None).get(&p), Some(&13));
    }

    #[test]
    fn partitions_belong_to_the_worker_that_reads_them() {
        assert_eq!(owner(&InputKey::Partition(5), 2), 1);
        assert_eq!(owner(&InputKey::Partition(5), 4), 1);
        assert_eq!(owner(&InputKey::Stream { stream_id: "demo".into(), run: 0 }, 4), 0);
    }
}
