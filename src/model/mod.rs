//! The model: the e5 encoder read from its blob, the tokenizer, and the label head, combined
//! into a `Classifier` that turns texts into per-label scores.

pub mod attention;
pub mod blob;
pub mod encoder;
pub mod gemm;
pub mod head;
pub mod tokenizer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use blob::Blob;
use encoder::{Encoder, EncoderError, Pooled, l2_normalize};
use head::{Head, HeadError};
use tokenizer::{TextTokenizer, TokenizeError};

use crate::labels::LabelScores;

/// The feature layout the head reads: the L2-normalised mean-pooled last layer (the e5
/// embedding) followed by the L2-normalised mean-pooled average of layers 9–11.
pub const FEATURES: &str = "e5-last-mean-l2 + mean(layers 9..11)-mean-l2";

/// File names inside the base model folder (`models/base/`, filled by `models/fetch.sh`).
pub const BLOB_FILE: &str = "e5-small-q4.bin";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path} is missing: run `make setup` (models/fetch.sh) to fetch the model files")]
    Missing { path: String },
    #[error(transparent)]
    Blob(#[from] blob::BlobError),
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    #[error(transparent)]
    Head(#[from] HeadError),
    #[error("adapters: {0}")]
    Adapters(String),
}

/// Limits on one encoder batch: sequences are sorted by length and packed until either is hit.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_sequences: usize,
    /// Padded tokens (sequences × longest) per batch.
    pub max_tokens: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits { max_sequences: 32, max_tokens: 8192 }
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
}

impl FeatureExtractor {
    /// Loads `e5-small-q4.bin` and `tokenizer.json` from `base_dir`.
    pub fn load(base_dir: &Path) -> Result<Self, ModelError> {
        let blob_path = existing(base_dir.join(BLOB_FILE))?;
        let tokenizer_path = existing(base_dir.join(TOKENIZER_FILE))?;
        let blob = Arc::new(Blob::open(&blob_path)?);
        let encoder = Encoder::load(blob)?;
        let tokenizer = TextTokenizer::load(&tokenizer_path, encoder.max_positions())?;
        Ok(FeatureExtractor { tokenizer, encoder, limits: BatchLimits::default(), fingerprint: "base".into() })
    }

    /// Merges the adapters in `dir` (if any) into the encoder; see `train::finetune`.
    pub fn merge_adapters(&mut self, dir: &Path) -> Result<(), ModelError> {
        let merged = crate::train::finetune::merge_adapters(&mut self.encoder, dir).map_err(|e| ModelError::Adapters(format!("{e:#}")))?;
        if merged {
            let bytes = std::fs::read(dir.join("adapters.safetensors")).map_err(|e| ModelError::Adapters(e.to_string()))?;
            let digest = <sha2::Sha256 as sha2::Digest>::digest(&bytes);
            self.fingerprint = format!("adapters-{}", digest.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>());
        }
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

    /// Runs token windows through the encoder in length-sorted batches within `limits`, and
    /// returns their pooled outputs in input order.
    pub fn pooled_windows(&self, windows: &[Vec<u32>]) -> Result<Vec<Pooled>, ModelError> {
        // Sort by length so each batch pads little; keep the original position to scatter back.
        let mut order: Vec<usize> = (0..windows.len()).collect();
        order.sort_by_key(|&w| windows[w].len());
        let mut pooled: Vec<Option<Pooled>> = vec![None; windows.len()];
        let mut start = 0;
        while start < order.len() {
            let mut end = start + 1;
            while end < order.len() {
                let count = end - start + 1;
                let longest = windows[order[end]].len();
                if count > self.limits.max_sequences || count * longest > self.limits.max_tokens {
                    break;
                }
                end += 1;
            }
            let batch: Vec<Vec<u32>> = order[start..end].iter().map(|&w| windows[w].clone()).collect();
            for (&w, p) in order[start..end].iter().zip(self.encoder.forward(&batch)?) {
                pooled[w] = Some(p);
            }
            start = end;
        }
        Ok(pooled.into_iter().map(|p| p.expect("every window belongs to exactly one batch")).collect())
    }

    /// Head features of each window of each text (see `FEATURES`).
    pub fn features(&self, texts: &[&str]) -> Result<Vec<Vec<Vec<f32>>>, ModelError> {
        Ok(self.pooled(texts)?.into_iter().map(|windows| windows.into_iter().map(features_of).collect()).collect())
    }

    /// The sentence embedding the agent-conduct judge compares (first window): the mean of
    /// layer `STABLE_LAYERS`'s output, L2-normalised — the same with or without adapters.
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
}

impl Classifier {
    /// Loads the base model from `models_dir/base` and the head (and adapters, if any) from
    /// `models_dir`.
    pub fn load(models_dir: &Path) -> Result<Self, ModelError> {
        Self::load_from(&models_dir.join("base"), models_dir)
    }

    /// Loads the base model from `base_dir` and the head (and adapters, if any) from `head_dir`.
    pub fn load_from(base_dir: &Path, head_dir: &Path) -> Result<Self, ModelError> {
        let mut extractor = FeatureExtractor::load(base_dir)?;
        extractor.merge_adapters(head_dir)?;
        let head = Head::load(head_dir)?;
        if head.feature_dim() != extractor.feature_dim() {
            return Err(HeadError::Invalid(format!(
                "head expects {} features, the encoder gives {}",
                head.feature_dim(),
                extractor.feature_dim()
            ))
            .into());
        }
        Ok(Classifier { extractor, head })
    }

    pub fn model_version(&self) -> &str {
        &self.head.meta.model_version
    }

    pub fn scores(&self, texts: &[&str]) -> Result<Vec<LabelScores>, ModelError> {
        Ok(self
            .extractor
            .features(texts)?
            .iter()
            .map(|windows| {
                windows.iter().map(|f| self.head.scores(f)).reduce(|a, b| a.max(&b)).unwrap_or_default()
            })
            .collect())
    }
}
