//! An inference thread (`--inference-threads` of them share the queue): gathers tokenized texts into packed batches (limits from the
//! pipeline's config), runs the encoder and the heads, and answers each caller; long texts are
//! scored a piece at a time, taking turns with the others.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

use super::{PipelineConfig, Tokenized};
use crate::domain::conversation::{Scored, StageTimings};
use crate::domain::labels::LabelScores;
use crate::error::Error;
use crate::metrics as m;
use crate::model::encoder::l2_normalize;
use crate::model::spans::SPAN_WINDOWS;
use crate::model::{Classifier, features_of};

/// Windows of a long text scored per batch. A text of more windows is scored a piece at a time,
/// the pieces taking turns with the other callers' texts: while new texts arrive, every other
/// batch holds a piece, so a short turn waits for at most one window (~0.1-0.6 s of both cores
/// here), not for the whole text, and a long text stops at its next piece when its caller goes.
const WINDOWS_PER_PIECE: usize = 1;

/// How long a batch waits for company before it looks again whether any is still on its way.
const GATHER_POLL: Duration = Duration::from_millis(1);

/// One window's result: label scores, the stable embedding, the span head's token scores.
type WindowResult = (LabelScores, Vec<f32>, Vec<f32>);

/// A text on an inference thread, with its windows scored so far.
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

pub(super) fn inference_loop(classifier: &Classifier, config: &PipelineConfig, queue: Receiver<Tokenized>, tokenizing: &AtomicUsize) {
    let piece_tokens = |t: &Tokenized| t.windows.iter().take(WINDOWS_PER_PIECE).map(Vec::len).sum::<usize>();
    let span_head = classifier.spans.as_ref().filter(|_| config.evidence_spans);
    let token_probe = span_head.map(|head| head.token_probe());
    let probe = token_probe.as_ref().map(|p| move |features: &[f32], rows: usize| p.probabilities(features, rows));
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
                // Nothing more will come: stop only once the texts already taken are answered.
                Err(TryRecvError::Disconnected) if continuing.is_empty() && fresh.is_empty() => return,
                Err(TryRecvError::Disconnected) => break,
                // Nothing waiting and nothing being tokenized (or a piece is due): run now.
                Err(TryRecvError::Empty) if tokenizing.load(Ordering::SeqCst) == 0 || !continuing.is_empty() => break,
                // Wait briefly, then look again: the texts on their way may go to another
                // inference thread, and this one must not sleep out `max_wait` once none are left.
                Err(TryRecvError::Empty) => match queue.recv_deadline(gather_until.min(Instant::now() + GATHER_POLL)) {
                    Ok(t) => t,
                    Err(RecvTimeoutError::Timeout) if Instant::now() < gather_until => continue,
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
