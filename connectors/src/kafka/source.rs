//! The frames topic as a dataflow source: each timely worker reads its own partitions
//! (partition p goes to worker p mod workers), so the assignment is deterministic and needs
//! no group rebalance. Offsets are committed by the pipeline once the results of the frames
//! before them are durable; on restart a worker resumes from the group's committed offsets.

use std::collections::BTreeMap;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;
use rdkafka::{Offset, TopicPartitionList};
use vitrine_schemas::{DeadLetter, Frame, SourcePosition};

use super::admission::{Admission, Limits};
use super::frames::frame_from_message;
use super::{client_config, describe, describe_for, MAX_MESSAGE_BYTES};

/// Where a frame came from: partition and offset.
pub type Position = (i32, i64);

/// Keeps, from librdkafka's statistics, how far each partition is behind its end, and
/// whether an asynchronous commit failed.
#[derive(Debug, Default)]
pub struct LagContext {
    lag: Mutex<BTreeMap<i32, i64>>,
    commits: CommitReports,
}

/// Whether a commit sent without waiting failed since the last look (the callback runs when
/// the consumer is polled).
#[derive(Debug, Default)]
pub struct CommitReports {
    failed: AtomicBool,
}

impl CommitReports {
    fn report(&self, result: rdkafka::error::KafkaResult<()>) {
        if let Err(e) = result {
            tracing::warn!(error = %e, "committing Kafka offsets failed; the next commit sends them again");
            self.failed.store(true, Ordering::Relaxed);
        }
    }
}

impl ClientContext for CommitReports {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        super::client_log(level, facility, message);
    }
}

impl ConsumerContext for CommitReports {
    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _: &TopicPartitionList) {
        self.report(result);
    }
}

impl ClientContext for LagContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        super::client_log(level, facility, message);
    }
    fn stats(&self, statistics: Statistics) {
        let mut lag = self.lag.lock().expect("lag");
        for topic in statistics.topics.values() {
            for (p, s) in topic.partitions.iter().filter(|(p, s)| **p >= 0 && s.desired) {
                // app_offset: the next message the pipeline takes (-1 before the first).
                let next = if s.app_offset >= 0 { s.app_offset } else { s.committed_offset.max(s.lo_offset) };
                if s.hi_offset >= 0 && next >= 0 {
                    lag.insert(*p, (s.hi_offset - next).max(0));
                }
            }
        }
    }
}

impl ConsumerContext for LagContext {
    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _: &TopicPartitionList) {
        self.commits.report(result);
    }
}

/// One worker's share of the frames topic.
pub struct KafkaFrameSource {
    consumer: BaseConsumer<LagContext>,
    refs_dir: Option<std::path::PathBuf>,
    topic: String,
    partitions: Vec<i32>,
    brokers: String,
    /// Commits, as the offsets of group `{group_id}.sent`, how far results were sent. (Commit
    /// metadata could carry it, but not every Kafka-protocol broker keeps metadata: Tansu drops it.)
    sent_group: BaseConsumer<CommitReports>,
    /// Per partition, the offset before which the last run already sent every frame's results.
    sent_before: BTreeMap<i32, i64>,
    /// The partitions this run starts by replaying (read from before their sent mark).
    replaying: BTreeMap<i32, i64>,
    /// Per stream: in order, not too dense, not too many streams.
    admission: Mutex<Admission>,
}

/// The consumer group whose committed offsets say how far `group_id`'s results were sent.
pub fn sent_group(group_id: &str) -> String {
    format!("{group_id}.sent")
}

impl std::fmt::Debug for KafkaFrameSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaFrameSource").field("topic", &self.topic).field("partitions", &self.partitions).finish()
    }
}

/// The settings of the frames consumer: manual offsets, room for the largest frames.
pub fn consumer_config(brokers: &str, group_id: &str) -> rdkafka::ClientConfig {
    let mut config = client_config(brokers);
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.message.max.bytes", MAX_MESSAGE_BYTES.to_string())
        .set("fetch.max.bytes", (MAX_MESSAGE_BYTES * 4).to_string())
        .set("receive.message.max.bytes", (MAX_MESSAGE_BYTES * 4 + (1 << 20)).to_string());
    config
}

impl KafkaFrameSource {
    /// Connects and takes the partitions of `topic` that belong to `worker` of `workers`.
    pub fn connect(brokers: &str, topic: &str, group_id: &str, worker: usize, workers: usize) -> Result<Self, String> {
        let consumer: BaseConsumer<LagContext> = consumer_config(brokers, group_id)
            .set("statistics.interval.ms", "1000")
            .create_with_context(LagContext::default())
            .map_err(|e| describe(&e, brokers))?;
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| describe_for(&consumer, &e, brokers))?;
        let count = metadata.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
        if count == 0 {
            return Err(format!(
                "topic `{topic}` does not exist on {brokers}: create it with `vitrine topics create SPEC` (or run `vitrine sample`, which creates it)"
            ));
        }
        let partitions: Vec<i32> = (0..count as i32).filter(|p| *p as usize % workers == worker).collect();
        let mut assignment = TopicPartitionList::new();
        for p in &partitions {
            assignment.add_partition_offset(topic, *p, Offset::Stored).map_err(|e| describe(&e, brokers))?;
        }
        consumer.assign(&assignment).map_err(|e| describe(&e, brokers))?;
        let sent_group: BaseConsumer<CommitReports> = consumer_config(brokers, &sent_group(group_id))
            .create_with_context(CommitReports::default())
            .map_err(|e| describe(&e, brokers))?;
        let (mut sent_before, mut replaying) = (BTreeMap::new(), BTreeMap::new());
        if !partitions.is_empty() {
            let timeout = Duration::from_secs(10);
            let from = consumer.committed_offsets(assignment.clone(), timeout).map_err(|e| describe(&e, brokers))?;
            let sent = sent_group.committed_offsets(assignment, timeout).map_err(|e| describe(&e, brokers))?;
            for e in sent.elements() {
                let Offset::Offset(sent) = e.offset() else { continue };
                // (No committed offset: read from the beginning.)
                let from = match from.find_partition(topic, e.partition()).map(|f| f.offset()) {
                    Some(Offset::Offset(from)) => from,
                    _ => 0,
                };
                if from < sent {
                    replaying.insert(e.partition(), sent);
                    tracing::info!(
                        topic,
                        partition = e.partition(),
                        from,
                        sent,
                        "replaying frames to rebuild tracking state; their results were already sent"
                    );
                }
                sent_before.insert(e.partition(), sent);
            }
        }
        tracing::info!(topic, worker, ?partitions, "reading frames from Kafka");
        Ok(KafkaFrameSource {
            consumer,
            refs_dir: None,
            topic: topic.into(),
            partitions,
            brokers: brokers.into(),
            sent_group,
            sent_before,
            replaying,
            admission: Mutex::new(Admission::new(Limits { max_streams: usize::MAX, max_fps: f64::INFINITY })),
        })
    }

    /// Where frames sent by reference may be read from (none: references are refused).
    pub fn with_refs_dir(mut self, dir: Option<std::path::PathBuf>) -> Self {
        self.refs_dir = dir;
        self
    }

    /// The source's limits per stream (`max_streams`, `max_fps`); none until set.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.admission = Mutex::new(Admission::new(limits));
        self
    }

    pub fn partitions(&self) -> &[i32] {
        &self.partitions
    }

    /// Up to `max` messages that are waiting (none if nothing arrives within `wait`).
    pub fn poll(&self, max: usize, wait: Duration) -> Vec<(Result<Frame, DeadLetter>, Position)> {
        let mut out = Vec::new();
        let mut timeout = wait;
        let mut admission = self.admission.lock().expect("admission");
        while out.len() < max {
            match self.consumer.poll(timeout) {
                None => break,
                Some(Err(e)) => {
                    tracing::warn!(topic = %self.topic, error = %describe(&e, &self.brokers), "Kafka poll failed");
                    break;
                }
                Some(Ok(m)) => {
                    let origin = format!("{}/{}@{}", m.topic(), m.partition(), m.offset());
                    let position = SourcePosition { partition: Some(m.partition()), offset: m.offset() };
                    let frame = frame_from_message(m.key(), m.payload(), m.headers(), origin, self.refs_dir.as_deref())
                        .map(|frame| Frame { position, ..frame })
                        .and_then(|frame| match admission.admit(&frame.stream_id, frame.seq, frame.pts_ms) {
                            Ok(()) => Ok(frame),
                            Err(reason) => Err(refused(frame, reason)),
                        });
                    out.push((frame, (m.partition(), m.offset())));
                }
            }
            timeout = Duration::ZERO;
        }
        out
    }

    /// Per partition of this worker, the messages not read yet, as of the consumer's last
    /// statistics (once a second, no round trip of its own).
    pub fn lag(&self) -> Vec<(i32, i64)> {
        self.consumer.context().lag.lock().expect("lag").iter().map(|(p, lag)| (*p, *lag)).collect()
    }

    /// Per partition, the offset before which the last run already sent every frame's results:
    /// frames before it are read again only to rebuild state.
    pub fn sent_before(&self) -> &BTreeMap<i32, i64> {
        &self.sent_before
    }

    /// The partitions this run starts by replaying, each with the offset where the replay ends
    /// (its sent mark).
    pub fn replaying(&self) -> &BTreeMap<i32, i64> {
        &self.replaying
    }

    /// Commits, per partition, where a restart reads from (the next offset to read) and the
    /// offset before which every frame's results were sent. `wait`: for the broker's answer
    /// (at a drain); else the commit is sent and its failure, if any, comes back through
    /// [`KafkaFrameSource::commit_failed`] (the timely worker must not wait on a round trip).
    pub fn commit(&self, next: &BTreeMap<i32, (i64, i64)>, wait: bool) -> Result<(), String> {
        if next.is_empty() {
            return Ok(());
        }
        let (mut list, mut sent_list) = (TopicPartitionList::new(), TopicPartitionList::new());
        for (p, (offset, sent)) in next {
            list.add_partition_offset(&self.topic, *p, Offset::Offset(*offset)).map_err(|e| e.to_string())?;
            sent_list.add_partition_offset(&self.topic, *p, Offset::Offset(*sent)).map_err(|e| e.to_string())?;
        }
        let mode = if wait { CommitMode::Sync } else { CommitMode::Async };
        // Each is true on its own (results sent up to here; state rebuilt from there): no order needed.
        self.sent_group.commit(&sent_list, mode).map_err(|e| describe(&e, &self.brokers))?;
        self.consumer.commit(&list, mode).map_err(|e| describe(&e, &self.brokers))
    }

    /// Whether a commit sent without waiting failed since the last call (then what it carried
    /// must be committed again).
    pub fn commit_failed(&self) -> bool {
        // The sent group is never polled for messages: serve its callbacks and log lines here.
        while self.sent_group.poll(Duration::ZERO).is_some() {}
        let frames = self.consumer.context().commits.failed.swap(false, Ordering::Relaxed);
        self.sent_group.context().failed.swap(false, Ordering::Relaxed) | frames
    }
}

/// A frame the source's limits refuse, as a dead letter with its bytes.
fn refused(frame: Frame, reason: String) -> DeadLetter {
    DeadLetter {
        stream_id: frame.stream_id,
        seq: frame.seq,
        pts_ms: frame.pts_ms,
        stage: "source".into(),
        reason,
        origin: frame.origin,
        bytes: frame.jpeg.len() as u64,
        at_ms: vitrine_schemas::now_ms(),
        payload: frame.jpeg,
    }
}
