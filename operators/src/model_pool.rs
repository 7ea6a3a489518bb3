//! The model threads of a process: one per worker, each with its own decoder and ONNX session.
//! Workers hand them JPEG frames and take back detections, so that while a run takes its
//! 10-50 ms a worker keeps feeding frames, moving time on and sending results downstream.
//!
//! Why not decode and run the model on the worker: time could not move on during a run (every
//! result of an epoch waited for the slowest worker's run to end) and worker 0 could not feed
//! frames. Why one queue for the process: a frame goes to whichever model is free, instead of
//! waiting behind another frame on a busy worker while the other model sits idle (frames routed
//! by hash queued up on one worker now and then, and frames the model skips cost nothing).
//! Why the decode too: the workers are left with little to do, so there are as many busy
//! threads as models (decoding on the workers cost 2-3% of the throughput, 2 cores, SSD).

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use timely::scheduling::SyncActivator;
use vitrine_models::ModelError;
use vitrine_schemas::{DeadLetter, Frame, FrameDetections};

use crate::decode::FrameDecoder;
use crate::infer::{BatchConfig, Inferencer};
use crate::{stream_route, Stage};
use crate::{FrameEmbedder, Turn};

/// Frames a model queue holds per model thread. The pipeline's in-flight bound keeps far fewer
/// than this with the models, so a worker never has to hold frames back.
const QUEUE_FRAMES_PER_THREAD: usize = 128;

/// A frame's detections, or its dead letter.
pub type Inferred = Result<FrameDetections, DeadLetter>;

/// What a model thread answers for a frame: its result, or why the thread failed.
type Answer = (u64, Result<Inferred, String>);

/// Where a worker's answers go, and how it is woken for them.
struct Reply {
    answers: SyncSender<Answer>,
    wake: SyncActivator,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

/// A frame for the model, with its ticket and where its answer goes.
#[derive(Debug)]
struct Job {
    ticket: u64,
    frame: Frame,
    reply: Arc<Reply>,
}

/// What a model thread owns: the decoder that prepares a frame for its model, and the model.
#[derive(Debug)]
pub struct FrameModel {
    pub decoder: FrameDecoder,
    pub inferencer: Inferencer,
    /// With matching: embeds the crops of some detections of each frame the model ran on.
    pub embedder: Option<FrameEmbedder>,
}

impl FrameModel {
    /// Each frame's detections, or its dead letter (from the decode or the model), in order.
    /// With matching, the crops of the objects due for one are embedded too: the frames are
    /// the queue's from turn `first` on, and each takes its turn at the crop schedule.
    fn run(&mut self, frames: Vec<Frame>, first: Turn) -> Vec<Inferred> {
        if self.embedder.is_none() {
            return self.run_batch(frames);
        }
        // A crop is cut from its frame's decoded picture, and the decoder keeps the last one:
        // a frame of a batch before the last is decoded again when one of its objects is due
        // (rarely: an object is embedded when it shows, then once a few seconds).
        let jpegs: Vec<Vec<u8>> =
            if frames.len() > 1 { frames.iter().map(|f| f.jpeg.clone()).collect() } else { Vec::new() };
        let (mut results, tiled) = self.run_batch_noting_tiles(frames);
        let decoded = |r: &Inferred| matches!(r, Ok(found) if !found.carried);
        let mut holding = results.iter().rposition(decoded);
        let timer = self.inferencer.timer.clone();
        let (Some(embedder), decoder) = (&mut self.embedder, &mut self.decoder) else { return results };
        for (i, result) in results.iter_mut().enumerate() {
            let turn = Turn { n: first.n + i as u64, ..first };
            // Not decoded (the tracker carries the last detections over), or a dead letter.
            let Some(found) = result.as_mut().ok().filter(|found| !found.carried) else {
                embedder.schedule.pass(turn);
                continue;
            };
            let due = embedder.due(turn, found);
            if due.is_empty() {
                continue;
            }
            let embedded = timer.time(Stage::Embed, 1, || {
                if holding != Some(i) {
                    if !decoder.decode_again(&jpegs[i], tiled[i]) {
                        return Err(ModelError::Inference("the frame did not decode again".into()));
                    }
                    holding = Some(i);
                }
                embedder.embed(decoder, found, due)
            });
            if let Err(e) = embedded {
                tracing::warn!(stream = %found.stream_id, seq = found.seq, error = %e, "could not embed this frame's objects; they match on their label");
            }
        }
        results
    }

    fn run_batch(&mut self, frames: Vec<Frame>) -> Vec<Inferred> {
        self.run_batch_noting_tiles(frames).0
    }

    /// The batch's results, and for each frame whether it was cut into tiles.
    fn run_batch_noting_tiles(&mut self, frames: Vec<Frame>) -> (Vec<Inferred>, Vec<bool>) {
        let mut tiled = vec![false; frames.len()];
        let mut done: Vec<Option<Inferred>> = (0..frames.len()).map(|_| None).collect();
        let (mut prepared, mut at) = (Vec::new(), Vec::new());
        let (decode_timer, infer_timer) = (self.decoder.timer.clone(), self.inferencer.timer.clone());
        for (i, frame) in frames.into_iter().enumerate() {
            match decode_timer.time(Stage::Decode, 1, || self.decoder.decode(frame)) {
                Ok(frame) => {
                    tiled[i] = !frame.tiles.is_empty();
                    prepared.push(frame);
                    at.push(i);
                }
                Err(letter) => done[i] = Some(Err(letter)),
            }
        }
        if !prepared.is_empty() {
            let inferred = infer_timer.time(Stage::Infer, prepared.len(), || self.inferencer.infer_batch(prepared));
            for (i, result) in at.into_iter().zip(inferred) {
                done[i] = Some(result);
            }
        }
        (done.into_iter().map(|r| r.expect("a result for each frame")).collect(), tiled)
    }
}

/// Which model thread a frame goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelRoute {
    /// Whichever is free first.
    AnyFree,
    /// One per stream (by [`stream_route`], the rule every stage with per-stream state
    /// follows), frames in order: for decoders and inferencers that keep state per stream
    /// (tiling only some frames).
    ByStream,
}

/// The process's model threads.
#[derive(Debug)]
pub struct ModelPool {
    /// One queue every thread takes from, or (`ByStream`) one queue per thread.
    queues: Vec<SyncSender<Job>>,
}

impl ModelPool {
    /// Starts a thread per model.
    pub fn start(models: Vec<FrameModel>, batch: BatchConfig, route: ModelRoute) -> std::io::Result<ModelPool> {
        let threads = models.len().max(1);
        let by_stream = route == ModelRoute::ByStream;
        let mut queues = Vec::new();
        let mut shared = None;
        for (i, model) in models.into_iter().enumerate() {
            let jobs = match &shared {
                Some(jobs) => Arc::clone(jobs),
                None => {
                    let capacity = if by_stream { QUEUE_FRAMES_PER_THREAD } else { QUEUE_FRAMES_PER_THREAD * threads };
                    let (queue, jobs) = mpsc::sync_channel::<Job>(capacity);
                    let jobs = Arc::new(Mutex::new(HandOut { jobs, queue: queues.len(), handed_out: 0 }));
                    queues.push(queue);
                    if !by_stream {
                        shared = Some(jobs.clone());
                    }
                    jobs
                }
            };
            std::thread::Builder::new().name(format!("vitrine-model-{i}")).spawn(move || serve(model, &jobs, batch))?;
        }
        Ok(ModelPool { queues })
    }

    /// Where a worker sends its frames.
    pub fn queues(&self) -> ModelQueues {
        ModelQueues(self.queues.clone())
    }
}

/// Where a worker sends its frames for the models.
#[derive(Clone, Debug)]
pub struct ModelQueues(Vec<SyncSender<Job>>);

impl ModelQueues {
    /// A client for one operator, which `wake` wakes when answers are ready.
    pub fn client(self, wake: SyncActivator) -> ModelClient {
        let (answers, from_models) = mpsc::sync_channel(QUEUE_FRAMES_PER_THREAD);
        ModelClient {
            queues: self.0,
            reply: Arc::new(Reply { answers, wake }),
            from_models,
            overflow: VecDeque::new(),
            next_ticket: 0,
        }
    }
}

/// A worker's end of the model threads.
#[derive(Debug)]
pub struct ModelClient {
    queues: Vec<SyncSender<Job>>,
    reply: Arc<Reply>,
    from_models: Receiver<Answer>,
    /// Frames their queue had no room for yet, oldest first.
    overflow: VecDeque<Job>,
    next_ticket: u64,
}

impl ModelClient {
    /// Queues `frame` for a model; its result comes back with the ticket returned.
    pub fn send(&mut self, frame: Frame) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.overflow.push_back(Job { ticket, frame, reply: self.reply.clone() });
        self.flush();
        ticket
    }

    /// Moves frames that waited for room into their queue (in order: a stream's frames must
    /// not pass each other).
    fn flush(&mut self) {
        while let Some(job) = self.overflow.pop_front() {
            let queue = match self.queues.as_slice() {
                [shared] => shared,
                by_stream => {
                    let route = stream_route(&job.frame.stream_id, job.frame.position.partition);
                    &by_stream[(route % by_stream.len() as u64) as usize]
                }
            };
            match queue.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(job)) => {
                    self.overflow.push_front(job);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    panic!("every model thread of this process has stopped; see the error logged before this one")
                }
            }
        }
    }

    /// The results ready now, by ticket (in no particular order). Panics with a model thread's
    /// own message if it failed, which fails the run.
    pub fn results(&mut self) -> Vec<(u64, Inferred)> {
        let mut ready = Vec::new();
        while let Ok((ticket, answer)) = self.from_models.try_recv() {
            match answer {
                Ok(result) => ready.push((ticket, result)),
                Err(why) => panic!("a model thread failed: {why}"),
            }
        }
        self.flush();
        ready
    }
}

/// A model queue's receiving end, shared by the threads that take from it, and how many frames
/// it handed out: a frame's [`Turn`].
#[derive(Debug)]
struct HandOut {
    jobs: Receiver<Job>,
    queue: usize,
    handed_out: u64,
}

/// A model thread: runs batches from `jobs` until every queue's sender is gone.
fn serve(mut model: FrameModel, jobs: &Mutex<HandOut>, batch: BatchConfig) {
    loop {
        let (taken, first) = {
            let mut hand_out = jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let taken = next_batch(&hand_out.jobs, batch);
            let first = Turn { queue: hand_out.queue, n: hand_out.handed_out };
            hand_out.handed_out += taken.as_ref().map_or(0, |t| t.len() as u64);
            (taken, first)
        };
        let Some(taken) = taken else { return };
        let (frames, tickets): (Vec<Frame>, Vec<(u64, Arc<Reply>)>) =
            taken.into_iter().map(|j| (j.frame, (j.ticket, j.reply))).unzip();
        let results = catch_unwind(AssertUnwindSafe(|| model.run(frames, first)));
        let failed = results.is_err();
        let answers: Vec<Result<Inferred, String>> = match results {
            Ok(results) => results.into_iter().map(Ok).collect(),
            Err(panic) => {
                let why = panic_message(panic.as_ref());
                tracing::error!(error = %why, "a model thread panicked; stopping the run");
                vec![Err(why); tickets.len()]
            }
        };
        let mut woken: HashMap<*const Reply, &Arc<Reply>> = HashMap::new();
        for ((ticket, reply), answer) in tickets.iter().zip(answers) {
            // A worker that is gone has nothing left to wait for.
            if reply.answers.send((*ticket, answer)).is_ok() {
                woken.insert(Arc::as_ptr(reply), reply);
            }
        }
        for reply in woken.values() {
            let _ = reply.wake.activate();
        }
        if failed {
            return;
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "it panicked".into())
}

/// The next frames to run together: the first to come, then whatever else is queued up to
/// `max_frames`, waiting up to `max_wait` for a batch to fill. None once the queue is closed.
fn next_batch<T>(jobs: &Receiver<T>, batch: BatchConfig) -> Option<Vec<T>> {
    let first = jobs.recv().ok()?;
    let deadline = Instant::now() + batch.max_wait;
    let mut taken = vec![first];
    while taken.len() < batch.max_frames.max(1) {
        let next = match jobs.try_recv() {
            Ok(job) => Some(job),
            Err(TryRecvError::Disconnected) => None,
            Err(TryRecvError::Empty) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => jobs.recv_timeout(left).ok(),
                _ => None,
            },
        };
        let Some(job) = next else { break };
        taken.push(job);
    }
    Some(taken)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_batch_takes_what_is_queued_up_to_its_size_and_waits_only_as_told() {
        let (tx, rx) = mpsc::sync_channel(16);
        (0..5).for_each(|i| tx.send(i).unwrap());
        let no_wait = BatchConfig { max_frames: 3, max_wait: Duration::ZERO };
        assert_eq!(next_batch(&rx, no_wait), Some(vec![0, 1, 2]));
        assert_eq!(next_batch(&rx, no_wait), Some(vec![3, 4]), "a batch that is not full runs at once");
        // With a wait, a frame sent meanwhile joins the batch.
        let waiting = BatchConfig { max_frames: 2, max_wait: Duration::from_secs(5) };
        tx.send(5).unwrap();
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            tx.send(6).unwrap();
        });
        let started = Instant::now();
        assert_eq!(next_batch(&rx, waiting), Some(vec![5, 6]));
        assert!(started.elapsed() < Duration::from_secs(5), "a full batch does not wait longer");
        late.join().unwrap();
        assert_eq!(next_batch(&rx, waiting), None, "the queue closed: the thread ends");
    }
}
