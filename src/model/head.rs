//! The label head: one logistic output per label over the pooled encoder features, and the
//! per-label thresholds chosen on dev splits. Stored as `head.safetensors` (tensors `weight`
//! [labels, features] and `bias` [labels]) beside `head.json` (labels, thresholds, provenance).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::labels::{LABEL_COUNT, Label, LabelScores};

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("head file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("head is invalid: {0}")]
    Invalid(String),
}

/// `head.json`: everything about the head that is not a weight.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadMeta {
    /// Reported with every result so a score can be traced to the model that gave it.
    pub model_version: String,
    /// Feature layout the head was trained on (see `model::FEATURES`).
    pub features: String,
    pub feature_dim: usize,
    /// Output order of the head; must be `Label::ALL`.
    pub labels: Vec<Label>,
    /// Decision threshold per label, tuned on dev splits.
    pub thresholds: BTreeMap<Label, f32>,
    /// Free-form provenance: data, splits, training settings.
    #[serde(default)]
    pub trained: serde_json::Value,
}

pub struct Head {
    pub meta: HeadMeta,
    /// Row-major [labels, features].
    weight: Vec<f32>,
    bias: [f32; LABEL_COUNT],
    thresholds: [f32; LABEL_COUNT],
}

impl Head {
    pub fn new(meta: HeadMeta, weight: Vec<f32>, bias: [f32; LABEL_COUNT]) -> Result<Self, HeadError> {
        if meta.labels != Label::ALL {
            return Err(HeadError::Invalid(format!("labels {:?} differ from {:?}", meta.labels, Label::ALL)));
        }
        if weight.len() != LABEL_COUNT * meta.feature_dim {
            return Err(HeadError::Invalid(format!(
                "weight has {} values, expected {LABEL_COUNT} × {}",
                weight.len(),
                meta.feature_dim
            )));
        }
        let mut thresholds = [0f32; LABEL_COUNT];
        for label in Label::ALL {
            let t = *meta
                .thresholds
                .get(&label)
                .ok_or_else(|| HeadError::Invalid(format!("no threshold for {label}")))?;
            if !(0.0..=1.0).contains(&t) {
                return Err(HeadError::Invalid(format!("threshold {t} for {label} is outside 0..1")));
            }
            thresholds[label.index()] = t;
        }
        if weight.iter().chain(&bias).any(|w| !w.is_finite()) {
            return Err(HeadError::Invalid("weights contain NaN or infinity".into()));
        }
        Ok(Head { meta, weight, bias, thresholds })
    }

    pub fn load(dir: &Path) -> Result<Self, HeadError> {
        let meta_path = dir.join("head.json");
        let read_err = |path: &Path, reason: String| HeadError::File { path: path.display().to_string(), reason };
        let meta_text = std::fs::read_to_string(&meta_path).map_err(|e| read_err(&meta_path, e.to_string()))?;
        let meta: HeadMeta = serde_json::from_str(&meta_text).map_err(|e| read_err(&meta_path, e.to_string()))?;
        let weights_path = dir.join("head.safetensors");
        let tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu)
            .map_err(|e| read_err(&weights_path, e.to_string()))?;
        let get = |name: &str| -> Result<Vec<f32>, HeadError> {
            let t = tensors.get(name).ok_or_else(|| HeadError::Invalid(format!("no tensor `{name}`")))?;
            t.flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| HeadError::Invalid(format!("tensor `{name}`: {e}")))
        };
        let bias: [f32; LABEL_COUNT] = get("bias")?
            .try_into()
            .map_err(|_| HeadError::Invalid(format!("bias must have {LABEL_COUNT} values")))?;
        Head::new(meta, get("weight")?, bias)
    }

    pub fn save(&self, dir: &Path) -> Result<(), HeadError> {
        let write_err = |path: &Path, reason: String| HeadError::File { path: path.display().to_string(), reason };
        let weights_path = dir.join("head.safetensors");
        let as_tensor = |v: &[f32], shape: &[usize]| Tensor::from_slice(v, shape, &Device::Cpu);
        let tensors = [
            ("weight", as_tensor(&self.weight, &[LABEL_COUNT, self.meta.feature_dim])),
            ("bias", as_tensor(&self.bias, &[LABEL_COUNT])),
        ];
        let tensors: std::collections::HashMap<String, Tensor> = tensors
            .into_iter()
            .map(|(n, t)| t.map(|t| (n.to_string(), t)))
            .collect::<Result<_, _>>()
            .map_err(|e| write_err(&weights_path, e.to_string()))?;
        candle_core::safetensors::save(&tensors, &weights_path).map_err(|e| write_err(&weights_path, e.to_string()))?;
        let meta_path = dir.join("head.json");
        let text = serde_json::to_string_pretty(&self.meta).map_err(|e| write_err(&meta_path, e.to_string()))?;
        std::fs::write(&meta_path, text + "\n").map_err(|e| write_err(&meta_path, e.to_string()))
    }

    /// The same weights with new thresholds (validated like a loaded head).
    pub fn with_thresholds(self, thresholds: BTreeMap<Label, f32>) -> Result<Self, HeadError> {
        let meta = HeadMeta { thresholds, ..self.meta };
        Head::new(meta, self.weight, self.bias)
    }

    /// Weights ([labels, features], row-major) and biases.
    pub fn parameters(&self) -> (&[f32], [f32; LABEL_COUNT]) {
        (&self.weight, self.bias)
    }

    pub fn feature_dim(&self) -> usize {
        self.meta.feature_dim
    }

    pub fn threshold(&self, label: Label) -> f32 {
        self.thresholds[label.index()]
    }

    /// Sigmoid probability per label for one feature vector.
    pub fn scores(&self, features: &[f32]) -> LabelScores {
        let mut out = [0f32; LABEL_COUNT];
        for (i, row) in self.weight.chunks_exact(self.meta.feature_dim).enumerate() {
            let logit = self.bias[i] + row.iter().zip(features).map(|(w, x)| w * x).sum::<f32>();
            out[i] = 1.0 / (1.0 + (-logit).exp());
        }
        LabelScores(out)
    }

    /// The labels whose score reaches their threshold, in label order.
    pub fn flags(&self, scores: &LabelScores) -> Vec<Label> {
        scores.iter().filter(|&(l, s)| s >= self.threshold(l)).map(|(l, _)| l).collect()
    }
}
