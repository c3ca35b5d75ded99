//! The model: the e5 encoder read from its blob, the tokenizer, and the label head, combined
//! into a `Classifier` that turns texts into per-label scores.

pub mod adapters;
pub mod attention;
pub mod blob;
pub mod dense;
pub mod encoder;
pub mod error;
pub mod gemm;
pub mod gemm_int8;
pub mod head;
pub mod spans;
pub mod tokenizer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use blob::Blob;
use encoder::{Encoder, EncoderError, Pooled, l2_normalize};
pub use error::ModelError;
use head::{Head, HeadError};
use sha2::{Digest, Sha256};
use tokenizer::TextTokenizer;

use crate::domain::labels::LabelScores;

/// The feature layout the head reads: the L2-normalised mean-pooled last layer (the e5
/// embedding) followed by the L2-normalised mean-pooled average of layers 9–11.
pub const FEATURES: &str = "e5-last-mean-l2 + mean(layers 9..11)-mean-l2";

/// Languages of the encoder's pretraining corpus (XLM-R, Conneau et al. 2020, table 6).
pub const ENCODER_LANGUAGES: &[&str] = &[
    "af", "am", "ar", "as", "az", "be", "bg", "bn", "br", "bs", "ca", "cs", "cy", "da", "de", "el", "en", "eo", "es", "et", "eu", "fa", "fi", "fr", "fy", "ga",
    "gd", "gl", "gu", "ha", "he", "hi", "hr", "hu", "hy", "id", "is", "it", "ja", "jv", "ka", "kk", "km", "kn", "ko", "ku", "ky", "la", "lo", "lt", "lv", "mg",
    "mk", "ml", "mn", "mr", "ms", "my", "ne", "nl", "no", "om", "or", "pa", "pl", "ps", "pt", "ro", "ru", "sa", "sd", "si", "sk", "sl", "so", "sq", "sr", "su",
    "sv", "sw", "ta", "te", "th", "tl", "tr", "ug", "uk", "ur", "uz", "vi", "xh", "yi", "zh",
];

/// File names inside the base model folder (`models/base/`, filled by `models/fetch.sh`).
pub const BLOB_FILE: &str = "e5-small-q4.bin";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Limits on one encoder batch: sequences are sorted by length and packed until either is hit.
/// The encoder runs packed sequences (no padding), so tokens are the sum of the lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_sequences: usize,
    /// Tokens per batch, summed over its sequences.
    pub max_tokens: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits { max_sequences: 32, max_tokens: 8192 }
    }
}

impl BatchLimits {
    /// Splits sequences of these lengths into batches within the limits: the indices of each
    /// batch, shortest sequences first. A sequence longer than `max_tokens` runs alone.
    pub fn plan(&self, lengths: &[usize]) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        order.sort_by_key(|&i| lengths[i]);
        let mut batches: Vec<Vec<usize>> = Vec::new();
        let mut tokens = 0;
        for i in order {
            match batches.last_mut() {
                Some(batch) if batch.len() < self.max_sequences && tokens + lengths[i] <= self.max_tokens => {
                    batch.push(i);
                    tokens += lengths[i];
                }
                _ => {
                    batches.push(vec![i]);
                    tokens = lengths[i];
                }
            }
        }
        batches
    }
}

/// The arithmetic of the encoder's dense layers (99% of its work).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// calmline's f32 GEMM: the reference, and what the heads are trained on.
    F32,
    /// 8-bit weights and activations on AVX-512 VNNI (`gemm_int8`).
    Int8,
}

impl Precision {
    /// int8 where this CPU has its kernel, f32 elsewhere.
    pub fn best_available() -> Precision {
        if gemm_int8::available() { Precision::Int8 } else { Precision::F32 }
    }

    /// The dense kernel this precision runs on this CPU, for `GetInfo` and the start-up log.
    pub fn kernel(self) -> &'static str {
        match self {
            Precision::Int8 => "int8-avx512vnni",
            Precision::F32 => gemm::kernel_name(),
        }
    }
}

/// Encoder + tokenizer: texts to feature vectors.
pub struct FeatureExtractor {
    pub tokenizer: TextTokenizer,
    pub encoder: Encoder,
    pub limits: BatchLimits,
    /// What the features depend on besides the text: "base", or the adapters merged in (their
    /// SHA-256 prefix). Keys the training feature cache.
    pub fingerprint: String,
    pub precision: Precision,
}

impl FeatureExtractor {
    /// Loads `e5-small-q4.bin` and `tokenizer.json` from `base_dir`.
    pub fn load(base_dir: &Path) -> Result<Self, ModelError> {
        let blob_path = existing(base_dir.join(BLOB_FILE))?;
        let tokenizer_path = existing(base_dir.join(TOKENIZER_FILE))?;
        let blob = Arc::new(Blob::open(&blob_path)?);
        let encoder = Encoder::load(blob)?;
        let tokenizer = TextTokenizer::load(&tokenizer_path, encoder.max_positions())?;
        Ok(FeatureExtractor { tokenizer, encoder, limits: BatchLimits::default(), fingerprint: "base".into(), precision: Precision::F32 })
    }

    /// Merges the adapters in `dir` (if any) into the encoder; see `adapters`.
    pub fn merge_adapters(&mut self, dir: &Path) -> Result<(), ModelError> {
        let merged = adapters::merge(&mut self.encoder, dir)?;
        if merged {
            // The settings (rank, alpha, first layer) change the merged weights as much as the
            // tensors do: a rescaled alpha must not reuse features cached for the original.
            let mut hasher = Sha256::new();
            for file in ["adapters.safetensors", "adapters.json"] {
                let path = dir.join(file);
                let bytes = std::fs::read(&path).map_err(|source| adapters::AdapterError::Read { path, source })?;
                hasher.update(&bytes);
            }
            let digest = hasher.finalize();
            self.fingerprint = format!("adapters-{}", hex::encode(&digest[..8]));
        }
        Ok(())
    }

    /// Runs the dense layers at `precision` from now on (after any adapters are merged).
    pub fn set_precision(&mut self, precision: Precision) -> Result<(), ModelError> {
        match (self.precision, precision) {
            (Precision::F32, Precision::Int8) if !gemm_int8::available() => {
                return Err(ModelError::NoInt8);
            }
            (Precision::F32, Precision::Int8) => self.encoder.quantize_int8(),
            (Precision::Int8, Precision::F32) => return Err(ModelError::NoWayBackToF32),
            _ => {}
        }
        self.precision = precision;
        Ok(())
    }

    pub fn feature_dim(&self) -> usize {
        2 * self.encoder.hidden_size()
    }

    /// Pooled outputs of every window of every text: `result[i]` holds text i's windows.
    pub fn pooled(&self, texts: &[&str]) -> Result<Vec<Vec<Pooled>>, ModelError> {
        let mut owners = Vec::new();
        let mut windows = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            for w in self.tokenizer.windows(text)? {
                owners.push(i);
                windows.push(w);
            }
        }
        let mut out: Vec<Vec<Pooled>> = vec![Vec::new(); texts.len()];
        for (owner, p) in owners.into_iter().zip(self.pooled_windows(&windows)?) {
            out[owner].push(p);
        }
        Ok(out)
    }

    /// Runs token windows through the encoder in length-sorted batches within `self.limits`,
    /// and returns their pooled outputs in input order.
    pub fn pooled_windows(&self, windows: &[Vec<u32>]) -> Result<Vec<Pooled>, ModelError> {
        self.pooled_windows_within(windows, self.limits)
    }

    /// `pooled_windows` within the given limits (the service's `--max-batch-texts` and
    /// `--max-batch-tokens`).
    pub fn pooled_windows_within(&self, windows: &[Vec<u32>], limits: BatchLimits) -> Result<Vec<Pooled>, ModelError> {
        self.in_batches(windows, limits, |sequences| self.encoder.forward(sequences))
    }

    /// `pooled_windows_within`, with each token's value of `probe` from the same pass (see
    /// `Encoder::forward_probing_tokens`).
    pub fn probed_windows_within(
        &self,
        windows: &[Vec<u32>],
        limits: BatchLimits,
        probe: &dyn Fn(&[f32], usize) -> Vec<f32>,
    ) -> Result<Vec<(Pooled, Vec<f32>)>, ModelError> {
        self.in_batches(windows, limits, |sequences| self.encoder.forward_probing_tokens(sequences, probe))
    }

    /// `run` over length-sorted batches of `windows` within `limits`; results in input order.
    fn in_batches<T>(
        &self,
        windows: &[Vec<u32>],
        limits: BatchLimits,
        run: impl Fn(&[Vec<u32>]) -> Result<Vec<T>, EncoderError>,
    ) -> Result<Vec<T>, ModelError> {
        let lengths: Vec<usize> = windows.iter().map(Vec::len).collect();
        let mut out: Vec<Option<T>> = (0..windows.len()).map(|_| None).collect();
        for batch in limits.plan(&lengths) {
            let sequences: Vec<Vec<u32>> = batch.iter().map(|&w| windows[w].clone()).collect();
            for (&w, result) in batch.iter().zip(run(&sequences)?) {
                out[w] = Some(result);
            }
        }
        Ok(out.into_iter().map(|r| r.expect("every window belongs to exactly one batch")).collect())
    }

    /// Head features of each window of each text (see `FEATURES`).
    pub fn features(&self, texts: &[&str]) -> Result<Vec<Vec<Vec<f32>>>, ModelError> {
        Ok(self.pooled(texts)?.into_iter().map(|windows| windows.into_iter().map(features_of).collect()).collect())
    }

    /// The sentence embedding the agent-conduct judge compares (first window): the mean of
    /// layer `STABLE_LAYERS`'s output, L2-normalised (moved by adapters that reach below it).
    pub fn stable_embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        Ok(self.pooled(texts)?.into_iter().map(|mut windows| stable_embedding(windows.swap_remove(0))).collect())
    }

    /// The standard e5 sentence embedding (first window): mean-pooled last layer, L2-normalised.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        Ok(self
            .pooled(texts)?
            .into_iter()
            .map(|mut windows| {
                let mut v = windows.swap_remove(0).last;
                l2_normalize(&mut v);
                v
            })
            .collect())
    }
}

/// A window's stable embedding (see `FeatureExtractor::stable_embed`).
pub fn stable_embedding(p: Pooled) -> Vec<f32> {
    let mut v = p.stable;
    l2_normalize(&mut v);
    v
}

/// The head's features of one window (see `FEATURES`).
pub fn features_of(p: Pooled) -> Vec<f32> {
    let Pooled { mut last, mut upper, .. } = p;
    l2_normalize(&mut last);
    l2_normalize(&mut upper);
    last.extend_from_slice(&upper);
    last
}

fn existing(path: PathBuf) -> Result<PathBuf, ModelError> {
    if path.is_file() { Ok(path) } else { Err(ModelError::Missing { path: path.display().to_string() }) }
}

/// Texts to label scores: features, then the head; windows of a long text are combined by the
/// per-label maximum.
pub struct Classifier {
    pub extractor: FeatureExtractor,
    pub head: Head,
    /// Evidence spans' head (`spans::SPAN_HEAD_FILE` beside the label head), when there is one.
    pub spans: Option<spans::SpanHead>,
}

impl Classifier {
    /// Loads the base model from `models_dir/base` and the head (and adapters, if any) from
    /// `models_dir`.
    pub fn load(models_dir: &Path) -> Result<Self, ModelError> {
        Self::load_from(&models_dir.join("base"), models_dir, Precision::best_available())
    }

    /// Loads the base model from `base_dir` and the head (and adapters, if any) from `head_dir`.
    pub fn load_from(base_dir: &Path, head_dir: &Path, precision: Precision) -> Result<Self, ModelError> {
        let mut extractor = FeatureExtractor::load(base_dir)?;
        extractor.merge_adapters(head_dir)?;
        extractor.set_precision(precision)?;
        let head = Head::load(head_dir)?;
        if head.feature_dim() != extractor.feature_dim() {
            return Err(HeadError::Invalid(format!("head expects {} features, the encoder gives {}", head.feature_dim(), extractor.feature_dim())).into());
        }
        let spans = spans::SpanHead::load(head_dir)?;
        if let Some(s) = &spans
            && s.input_width() != extractor.feature_dim()
        {
            return Err(spans::SpanHeadError::Width { expects: s.input_width(), gives: extractor.feature_dim() }.into());
        }
        Ok(Classifier { extractor, head, spans })
    }

    pub fn model_version(&self) -> &str {
        &self.head.meta.model_version
    }

    pub fn scores(&self, texts: &[&str]) -> Result<Vec<LabelScores>, ModelError> {
        Ok(self
            .extractor
            .features(texts)?
            .iter()
            .map(|windows| windows.iter().map(|f| self.head.scores(f)).reduce(|a, b| a.max(&b)).unwrap_or_default())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::BatchLimits;

    #[test]
    fn batches_are_packed_by_summed_tokens_and_honour_the_text_limit() {
        // 64 texts of 10 tokens: one batch at 64 texts (they were cut to 32 before).
        let lengths = vec![10; 64];
        assert_eq!(BatchLimits { max_sequences: 64, max_tokens: 8192 }.plan(&lengths).len(), 1);
        assert_eq!(BatchLimits { max_sequences: 32, max_tokens: 8192 }.plan(&lengths).len(), 2);
        // Tokens are summed, not texts × longest: 3 + 3 + 500 fits in 512.
        let plan = BatchLimits { max_sequences: 32, max_tokens: 512 }.plan(&[500, 3, 3, 600]);
        assert_eq!(plan, vec![vec![1, 2, 0], vec![3]], "a sequence over the limit runs alone");
        let every: usize = plan.iter().map(Vec::len).sum();
        assert_eq!(every, 4);
    }
}
