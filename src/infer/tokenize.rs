//! The tokenizer workers: plain threads sharing the one tokenizer, fed by a bounded channel,
//! passing each text's encoder windows on to the batcher.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use super::{Job, Tokenized};
use crate::error::Error;
use crate::metrics as m;

pub(super) fn tokenize_loop(
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
