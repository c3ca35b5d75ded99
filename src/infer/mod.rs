//! The serving path: bounded admission (`admission`) → tokenizer workers (`tokenize`) → a
//! batching queue → one inference thread (`batcher`: candle, then the heads). Shared by the gRPC
//! service, the HTTP API and the batch scorer; `turns` reads a turn's evidence spans.
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

mod admission;
mod batcher;
mod tokenize;
mod turns;

pub use admission::Admitted;
use batcher::inference_loop;
use tokenize::tokenize_loop;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError, bounded};
use tokio::sync::{Semaphore, oneshot};

use crate::domain::conduct::ConductModel;
use crate::domain::conversation::Scored;
use crate::error::Error;
use crate::metrics as m;
use crate::model::Classifier;

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
    /// Inference threads, each gathering and running its own batches from the one queue.
    pub inference_threads: usize,
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
            inference_threads: 2,
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

impl Pipeline {
    /// Starts the tokenizer workers and the inference threads. They stop when every handle is
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
        for i in 0..config.inference_threads.max(1) {
            let (worker_classifier, worker_config) = (Arc::clone(&classifier), config.clone());
            let (queue, on_the_way) = (batch_rx.clone(), Arc::clone(&tokenizing));
            std::thread::Builder::new()
                .name(format!("calmline-infer-{i}"))
                .spawn(move || inference_loop(&worker_classifier, &worker_config, queue, &on_the_way))
                .expect("spawning an inference thread");
        }
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
