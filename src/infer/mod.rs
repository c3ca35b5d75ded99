//! The serving path: bounded admission → tokenizer workers → a batching queue → one inference
//! thread (candle) → head. Shared by the gRPC service and the batch scorer.
//!
//! - Admission is a semaphore taken with `try_acquire`: when it is full the caller is refused at
//!   once (`Error::Overloaded`), never queued without bound.
//! - Tokenizer workers are plain threads sharing the one tokenizer, fed by a bounded channel.
//! - The inference thread takes the first waiting text, then gathers more until the batch holds
//!   `max_batch_texts` texts or `max_batch_tokens` tokens, or `max_wait` has passed — but it
//!   waits only while other texts are on their way (admitted, still being tokenized): a lone
//!   text at low load runs at once. Texts whose caller has gone (cancelled, deadline passed) are
//!   dropped from the batch.
//! - A text longer than one encoder window is scored a window per batch, taking turns with the
//!   other callers' texts (`WINDOWS_PER_PIECE`), and dropped at its next piece when its caller
//!   goes; a text of more than `max_turn_windows` windows is refused after tokenizing.
//! - Evidence spans (which words drove a flag) come from the same pass: with a span head, the
//!   inference thread also scores each token of a text's first `SPAN_WINDOWS` windows, and a
//!   flagged turn's words are read off those scores (`turns::add_spans`).

mod turns;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError, bounded};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::domain::conduct::ConductModel;
use crate::domain::conversation::{Scored, StageTimings};
use crate::domain::labels::LabelScores;
use crate::error::Error;
use crate::metrics as m;
use crate::model::encoder::l2_normalize;
use crate::model::spans::SPAN_WINDOWS;
use crate::model::{Classifier, features_of};

/// The async runtime that drives a pipeline's callers, one recipe for every user of it. The
/// service takes a worker per core; `score`, `bench`, the benches and the Python bindings only
/// feed the encoder's threads or a server, so `workers` keeps them to a few and off the cores
/// that do the work.
pub fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    builder.enable_all().build()
}

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Requests admitted at once; more are refused.
    pub max_in_flight: usize,
    pub tokenizer_workers: usize,
    /// Texts in one encoder batch.
    pub max_batch_texts: usize,
    /// Tokens in one encoder batch (batches are packed: no padding counts).
    pub max_batch_tokens: usize,
    /// How long the first text of a batch waits for company, when company is on its way.
    pub max_wait: Duration,
    /// Whether flagged customer turns get evidence spans (token scores from the scoring pass).
    pub evidence_spans: bool,
    /// Encoder windows one text may take (each up to 512 tokens, a quarter overlapping the
    /// previous one); a longer text is refused as invalid input.
    pub max_turn_windows: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_in_flight: 256,
            tokenizer_workers: 1,
            max_batch_texts: 32,
            max_batch_tokens: 8192,
            max_wait: Duration::from_millis(2),
            evidence_spans: true,
            max_turn_windows: 32,
        }
    }
}

/// Texts one request may have in the queue at once (a transcript is scored in chunks).
const TEXTS_PER_REQUEST_IN_QUEUE: usize = 64;

type Reply = oneshot::Sender<Result<Scored, Error>>;

struct Job {
    text: String,
    reply: Reply,
    enqueued: Instant,
    deadline: Option<Instant>,
}

struct Tokenized {
    windows: Vec<Vec<u32>>,
    reply: Reply,
    enqueued: Instant,
    deadline: Option<Instant>,
    tokenize: Duration,
}

impl Tokenized {
    fn abandoned(&self, now: Instant) -> bool {
        self.reply.is_closed() || self.deadline.is_some_and(|d| now >= d)
    }
}

/// A handle on the running pipeline; cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    admission: Arc<Semaphore>,
    to_tokenizers: Sender<Job>,
    /// Texts queued for or in the tokenizers: the batcher waits for company only while some are.
    tokenizing: Arc<AtomicUsize>,
    classifier: Arc<Classifier>,
    conduct: Arc<ConductModel>,
    config: PipelineConfig,
}

/// Admission for one request: hold it until its work is done.
pub struct Admitted {
    permit: Option<OwnedSemaphorePermit>,
    admission: Arc<Semaphore>,
    max_in_flight: usize,
}

impl Admitted {
    fn new(permit: OwnedSemaphorePermit, pipeline: &Pipeline) -> Admitted {
        let admitted = Admitted { permit: Some(permit), admission: Arc::clone(&pipeline.admission), max_in_flight: pipeline.config.max_in_flight };
        metrics::gauge!(m::IN_FLIGHT).set(pipeline.in_flight() as f64);
        admitted
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        drop(self.permit.take());
        metrics::gauge!(m::IN_FLIGHT).set((self.max_in_flight - self.admission.available_permits()) as f64);
    }
}

impl Pipeline {
    /// Starts the tokenizer workers and the inference thread. They stop when every handle is
    /// dropped and the queues are drained.
    pub fn start(classifier: Arc<Classifier>, conduct: Arc<ConductModel>, config: PipelineConfig) -> Pipeline {
        let (to_tokenizers, tokenizer_rx) = bounded::<Job>(config.max_in_flight.max(1) * TEXTS_PER_REQUEST_IN_QUEUE);
        let (to_batcher, batch_rx) = bounded::<Tokenized>(config.max_batch_texts.max(1) * 4);
        let tokenizing = Arc::new(AtomicUsize::new(0));
        for i in 0..config.tokenizer_workers.max(1) {
            let (rx, tx, count) = (tokenizer_rx.clone(), to_batcher.clone(), Arc::clone(&tokenizing));
            let max_windows = config.max_turn_windows;
            // Workers share the one tokenizer (encoding takes &self): a copy of this 250k-piece
            // vocabulary costs about 240 MB of resident memory.
            let shared = Arc::clone(&classifier);
            std::thread::Builder::new()
                .name(format!("calmline-tokenize-{i}"))
                .spawn(move || tokenize_loop(&shared.extractor.tokenizer, max_windows, rx, tx, &count))
                .expect("spawning a tokenizer thread");
        }
        let worker_classifier = Arc::clone(&classifier);
        let worker_config = config.clone();
        let on_the_way = Arc::clone(&tokenizing);
        std::thread::Builder::new()
            .name("calmline-infer".into())
            .spawn(move || inference_loop(&worker_classifier, &worker_config, batch_rx, &on_the_way))
            .expect("spawning the inference thread");
        Pipeline { admission: Arc::new(Semaphore::new(config.max_in_flight)), to_tokenizers, tokenizing, classifier, conduct, config }
    }

    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// The agent-conduct judge, on the same encoder.
    pub fn conduct(&self) -> &ConductModel {
        &self.conduct
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.config.max_in_flight - self.admission.available_permits()
    }

    /// Admits one request or refuses it at once.
    pub fn admit(&self) -> Result<Admitted, Error> {
        let permit = Arc::clone(&self.admission).try_acquire_owned().map_err(|_| Error::Overloaded(self.config.max_in_flight))?;
        Ok(Admitted::new(permit, self))
    }

    /// Waits for admission: for streams already accepted, whose backpressure flows through
    /// their bounded channels instead of a refusal.
    pub async fn admit_wait(&self) -> Result<Admitted, Error> {
        let permit = Arc::clone(&self.admission).acquire_owned().await.map_err(|_| stopped())?;
        Ok(Admitted::new(permit, self))
    }

    /// Scores texts (already validated) of an admitted request; results in input order. Texts
    /// are queued separately so the batcher can pack them with other requests' texts, at most
    /// `TEXTS_PER_REQUEST_IN_QUEUE` at a time, so admitted requests never overfill the queue.
    pub async fn score(&self, admitted: &Admitted, texts: &[&str], deadline: Option<Instant>) -> Result<Vec<Scored>, Error> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(TEXTS_PER_REQUEST_IN_QUEUE) {
            let first = out.len();
            let scored = self.score_chunk(admitted, chunk, deadline).await.map_err(|(i, e)| match texts.len() {
                1 => e,
                _ => e.at(&format!("turn {}", first + i + 1)),
            })?;
            out.extend(scored);
        }
        Ok(out)
    }

    /// Scores one chunk; an error comes with the index of the text it is about.
    async fn score_chunk(&self, _admitted: &Admitted, texts: &[&str], deadline: Option<Instant>) -> Result<Vec<Scored>, (usize, Error)> {
        let mut receivers = Vec::with_capacity(texts.len());
        for text in texts {
            let (reply, rx) = oneshot::channel();
            let job = Job { text: text.to_string(), reply, enqueued: Instant::now(), deadline };
            // Counted before it is queued, so the batcher never misses a text on its way.
            self.tokenizing.fetch_add(1, Ordering::SeqCst);
            match self.to_tokenizers.try_send(job) {
                Ok(()) => receivers.push(rx),
                Err(e) => {
                    self.tokenizing.fetch_sub(1, Ordering::SeqCst);
                    return Err((
                        0,
                        match e {
                            TrySendError::Full(_) => Error::Overloaded(self.config.max_in_flight),
                            TrySendError::Disconnected(_) => stopped(),
                        },
                    ));
                }
            }
        }
        metrics::gauge!(m::QUEUE_DEPTH).set(self.to_tokenizers.len() as f64);
        let answers = async {
            let mut out = Vec::with_capacity(receivers.len());
            for (i, rx) in receivers.into_iter().enumerate() {
                out.push(rx.await.map_err(|_| (i, stopped()))?.map_err(|e| (i, e))?);
            }
            Ok(out)
        };
        match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), answers).await.map_err(|_| (0, Error::DeadlineExceeded))?,
            None => answers.await,
        }
    }
}

fn stopped() -> Error {
    Error::Unavailable("the inference pipeline has stopped".into())
}

fn tokenize_loop(
    tokenizer: &crate::model::tokenizer::TextTokenizer,
    max_windows: usize,
    jobs: Receiver<Job>,
    to_batcher: Sender<Tokenized>,
    tokenizing: &AtomicUsize,
) {
    for job in jobs {
        // Uncounted just before it reaches the batcher's queue (or is answered here). Not after:
        // the batcher may already hold it and would wait for itself. A text the batcher misses
        // in between joins the next batch.
        let counted = Uncount(tokenizing);
        if job.reply.is_closed() {
            continue;
        }
        if job.deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = job.reply.send(Err(Error::DeadlineExceeded));
            continue;
        }
        let started = Instant::now();
        match tokenizer.windows(&job.text) {
            Ok(windows) if windows.len() > max_windows => {
                let message = format!(
                    "text is {} encoder windows long (about {} tokens); the limit is {max_windows} windows per turn",
                    windows.len(),
                    windows.iter().map(Vec::len).sum::<usize>() * 3 / 4
                );
                let _ = job.reply.send(Err(Error::Validation(message)));
            }
            Ok(windows) => {
                let tokenize = started.elapsed();
                metrics::histogram!(m::STAGE_SECONDS, "stage" => "tokenize").record(tokenize.as_secs_f64());
                let t = Tokenized { windows, reply: job.reply, enqueued: job.enqueued, deadline: job.deadline, tokenize };
                drop(counted);
                if to_batcher.send(t).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = job.reply.send(Err(Error::Model(e.into())));
            }
        }
    }
}

/// Decrements the count of texts on their way to the batcher when dropped.
struct Uncount<'a>(&'a AtomicUsize);

impl Drop for Uncount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Windows of a long text scored per batch. A text of more windows is scored a piece at a time,
/// the pieces taking turns with the other callers' texts: while new texts arrive, every other
/// batch holds a piece, so a short turn waits for at most one window (~0.1-0.6 s of both cores
/// here), not for the whole text, and a long text stops at its next piece when its caller goes.
const WINDOWS_PER_PIECE: usize = 1;

/// One window's result: label scores, the stable embedding, the span head's token scores.
type WindowResult = (LabelScores, Vec<f32>, Vec<f32>);

/// A text on the inference thread, with its windows scored so far.
struct InProgress {
    text: Tokenized,
    scored: Vec<WindowResult>,
    inference: Duration,
}

impl InProgress {
    fn remaining(&self) -> usize {
        self.text.windows.len() - self.scored.len()
    }

    /// Combines its windows (labels: the most of each; embedding: the first window's; token
    /// scores: the first `SPAN_WINDOWS` windows') and answers the caller.
    fn finish(self) {
        let InProgress { text, scored, inference } = self;
        let mut combined: Option<LabelScores> = None;
        let mut embedding = Vec::new();
        let mut token_scores = Vec::new();
        for (w, (scores, stable, window_tokens)) in scored.into_iter().enumerate() {
            if w == 0 {
                embedding = stable;
                l2_normalize(&mut embedding);
            }
            if w < SPAN_WINDOWS {
                token_scores.extend(window_tokens);
            }
            combined = Some(match combined {
                Some(c) => c.max(&scores),
                None => scores,
            });
        }
        let queue = text.enqueued.elapsed().saturating_sub(text.tokenize + inference);
        metrics::histogram!(m::STAGE_SECONDS, "stage" => "queue").record(queue.as_secs_f64());
        let timings = StageTimings { queue, tokenize: text.tokenize, inference };
        let _ = text.reply.send(Ok(Scored { scores: combined.unwrap_or_default(), embedding, token_scores, timings }));
    }
}

fn inference_loop(classifier: &Classifier, config: &PipelineConfig, queue: Receiver<Tokenized>, tokenizing: &AtomicUsize) {
    let piece_tokens = |t: &Tokenized| t.windows.iter().take(WINDOWS_PER_PIECE).map(Vec::len).sum::<usize>();
    let span_head = classifier.spans.as_ref().filter(|_| config.evidence_spans);
    let probe = span_head.map(|head| move |features: &[f32]| head.probability(features));
    // Long texts with windows left, the longest-waiting first.
    let mut continuing: VecDeque<InProgress> = VecDeque::new();
    let mut last_had_piece = false;
    loop {
        // New texts: wait for one only when no long text is in progress, then gather company
        // while more are on their way.
        let mut fresh = Vec::new();
        if continuing.is_empty() {
            match queue.recv() {
                Ok(t) => fresh.push(t),
                Err(_) => return,
            }
        }
        let gather_until = Instant::now() + config.max_wait;
        let mut batch_tokens: usize = fresh.iter().map(piece_tokens).sum();
        while fresh.len() < config.max_batch_texts && batch_tokens < config.max_batch_tokens {
            let next = match queue.try_recv() {
                Ok(t) => t,
                Err(TryRecvError::Disconnected) if continuing.is_empty() => return,
                Err(TryRecvError::Disconnected) => break,
                // Nothing waiting and nothing being tokenized (or a piece is due): run now.
                Err(TryRecvError::Empty) if tokenizing.load(Ordering::SeqCst) == 0 || !continuing.is_empty() => break,
                Err(TryRecvError::Empty) => match queue.recv_deadline(gather_until) {
                    Ok(t) => t,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                },
            };
            batch_tokens += piece_tokens(&next);
            fresh.push(next);
        }

        // Callers that have gone (cancelled, deadline passed) are dropped, long texts included.
        let now = Instant::now();
        let mut drop_gone = |t: &Tokenized| {
            let gone = t.abandoned(now);
            if gone {
                metrics::counter!(m::DROPPED_TOTAL).increment(1);
            }
            gone
        };
        let (gone, fresh): (Vec<Tokenized>, Vec<Tokenized>) = fresh.into_iter().partition(&mut drop_gone);
        let (gone_long, kept): (Vec<InProgress>, Vec<InProgress>) = continuing.drain(..).partition(|p| drop_gone(&p.text));
        continuing.extend(kept);
        for t in gone.into_iter().chain(gone_long.into_iter().map(|p| p.text)) {
            let _ = t.reply.send(Err(Error::DeadlineExceeded));
        }

        // The batch: the new texts that fit in one piece, whole, and — when no new text came or
        // the last batch had none — one piece of the longest-waiting long text (a new long
        // text's first, if none is in progress). Long texts wait their turn in `continuing`.
        let piece_due = fresh.is_empty() || !last_had_piece;
        let mut work: Vec<(InProgress, usize)> = Vec::new();
        let mut piece = piece_due.then(|| continuing.pop_front()).flatten();
        for t in fresh {
            let item = InProgress { text: t, scored: Vec::new(), inference: Duration::ZERO };
            match item.remaining() {
                n if n <= WINDOWS_PER_PIECE => work.push((item, n)),
                _ if piece_due && piece.is_none() => piece = Some(item),
                _ => continuing.push_back(item),
            }
        }
        last_had_piece = piece.is_some();
        work.extend(piece.map(|item| (item, WINDOWS_PER_PIECE)));
        if work.is_empty() {
            continue;
        }
        let windows: Vec<Vec<u32>> = work.iter().flat_map(|(item, n)| item.text.windows[item.scored.len()..item.scored.len() + n].iter().cloned()).collect();
        let limits = crate::model::BatchLimits { max_sequences: config.max_batch_texts, max_tokens: config.max_batch_tokens };
        // The encoder's own batches: the extractor splits `windows` by this same plan.
        for batch in limits.plan(&windows.iter().map(Vec::len).collect::<Vec<_>>()) {
            metrics::histogram!(m::BATCH_SIZE).record(batch.len() as f64);
        }
        let started = Instant::now();
        let result = match &probe {
            Some(probe) => classifier.extractor.probed_windows_within(&windows, limits, probe),
            None => classifier.extractor.pooled_windows_within(&windows, limits).map(|pooled| pooled.into_iter().map(|p| (p, Vec::new())).collect()),
        };
        let inference = started.elapsed();
        metrics::histogram!(m::STAGE_SECONDS, "stage" => "inference").record(inference.as_secs_f64());
        match result {
            Ok(pooled) => {
                let mut results = pooled.into_iter().map(|(p, token_scores)| {
                    let stable = p.stable.clone();
                    (classifier.head.scores(&features_of(p)), stable, token_scores)
                });
                for (mut item, n) in work {
                    item.scored.extend(results.by_ref().take(n));
                    item.inference += inference;
                    if item.remaining() == 0 {
                        item.finish();
                    } else {
                        continuing.push_back(item);
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "inference failed for a batch");
                for (item, _) in work {
                    let _ = item.text.reply.send(Err(Error::BatchFailed));
                }
            }
        }
    }
}
