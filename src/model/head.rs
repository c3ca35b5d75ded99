//! The label head: one logistic output per label over the pooled encoder features, and the
//! per-label thresholds chosen on dev splits (per language where that language's dev data is
//! enough, `thresholds_by_language`; the pooled ones elsewhere). Stored as `head.safetensors` (tensors `weight`
//! [labels, features] and `bias` [labels]) beside `head.json` (labels, thresholds, provenance).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::domain::labels::{LABEL_COUNT, Label, LabelScores};
use crate::domain::lang::base_language;

pub use super::error::HeadError;

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
    /// Decision threshold per label, tuned on dev splits: the fallback for languages without
    /// a threshold of their own.
    pub thresholds: BTreeMap<Label, f32>,
    /// Thresholds calibrated on one language's dev data (`train::calibrate`), by language code;
    /// a label missing here falls back to `thresholds`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub thresholds_by_language: BTreeMap<String, BTreeMap<Label, f32>>,
    /// Languages whose quality the model card measures on held-out data; every answer says
    /// whether its language is one of them.
    #[serde(default)]
    pub measured_languages: Vec<String>,
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
    /// What a language without a threshold of its own for a label uses: the pooled one, but
    /// for a severe label the strictest of the pooled and every calibrated language's. A
    /// Hungarian turn got INVOLVE_MANAGER for identity_attack 0.41 against the pooled 0.36, set
    /// mostly on English data; no Hungarian data calibrates that label.
    uncalibrated: [f32; LABEL_COUNT],
    by_language: BTreeMap<String, [f32; LABEL_COUNT]>,
}

impl Head {
    pub fn new(meta: HeadMeta, weight: Vec<f32>, bias: [f32; LABEL_COUNT]) -> Result<Self, HeadError> {
        if meta.labels != Label::ALL {
            return Err(HeadError::Invalid(format!("labels {:?} differ from {:?}", meta.labels, Label::ALL)));
        }
        if weight.len() != LABEL_COUNT * meta.feature_dim {
            return Err(HeadError::Invalid(format!("weight has {} values, expected {LABEL_COUNT} × {}", weight.len(), meta.feature_dim)));
        }
        let mut thresholds = [0f32; LABEL_COUNT];
        for label in Label::ALL {
            let t = *meta.thresholds.get(&label).ok_or_else(|| HeadError::Invalid(format!("no threshold for {label}")))?;
            if !(0.0..=1.0).contains(&t) {
                return Err(HeadError::Invalid(format!("threshold {t} for {label} is outside 0..1")));
            }
            thresholds[label.index()] = t;
        }
        let mut uncalibrated = thresholds;
        for overrides in meta.thresholds_by_language.values() {
            for (&label, &t) in overrides.iter().filter(|(l, _)| l.is_severe()) {
                uncalibrated[label.index()] = uncalibrated[label.index()].max(t);
            }
        }
        let mut by_language = BTreeMap::new();
        for (lang, overrides) in &meta.thresholds_by_language {
            let mut own = uncalibrated;
            for (&label, &t) in overrides {
                if !(0.0..=1.0).contains(&t) {
                    return Err(HeadError::Invalid(format!("threshold {t} for {label} in {lang} is outside 0..1")));
                }
                own[label.index()] = t;
            }
            by_language.insert(base_language(lang), own);
        }
        if weight.iter().chain(&bias).any(|w| !w.is_finite()) {
            return Err(HeadError::Invalid("weights contain NaN or infinity".into()));
        }
        Ok(Head { meta, weight, bias, thresholds, uncalibrated, by_language })
    }

    pub fn load(dir: &Path) -> Result<Self, HeadError> {
        let meta_path = dir.join("head.json");
        let read_err = |path: &Path, reason: String| HeadError::File { path: path.display().to_string(), reason };
        let meta_text = std::fs::read_to_string(&meta_path).map_err(|e| read_err(&meta_path, e.to_string()))?;
        let meta: HeadMeta = serde_json::from_str(&meta_text).map_err(|e| read_err(&meta_path, e.to_string()))?;
        let weights_path = dir.join("head.safetensors");
        let tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu).map_err(|e| read_err(&weights_path, e.to_string()))?;
        let get = |name: &str| -> Result<Vec<f32>, HeadError> {
            let t = tensors.get(name).ok_or_else(|| HeadError::Invalid(format!("no tensor `{name}`")))?;
            t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|e| HeadError::Invalid(format!("tensor `{name}`: {e}")))
        };
        let bias: [f32; LABEL_COUNT] = get("bias")?.try_into().map_err(|_| HeadError::Invalid(format!("bias must have {LABEL_COUNT} values")))?;
        Head::new(meta, get("weight")?, bias)
    }

    pub fn save(&self, dir: &Path) -> Result<(), HeadError> {
        let write_err = |path: &Path, reason: String| HeadError::File { path: path.display().to_string(), reason };
        let weights_path = dir.join("head.safetensors");
        let as_tensor = |v: &[f32], shape: &[usize]| Tensor::from_slice(v, shape, &Device::Cpu);
        let tensors = [("weight", as_tensor(&self.weight, &[LABEL_COUNT, self.meta.feature_dim])), ("bias", as_tensor(&self.bias, &[LABEL_COUNT]))];
        let tensors: std::collections::HashMap<String, Tensor> =
            tensors.into_iter().map(|(n, t)| t.map(|t| (n.to_string(), t))).collect::<Result<_, _>>().map_err(|e| write_err(&weights_path, e.to_string()))?;
        candle_core::safetensors::save(&tensors, &weights_path).map_err(|e| write_err(&weights_path, e.to_string()))?;
        let meta_path = dir.join("head.json");
        let text = serde_json::to_string_pretty(&self.meta).map_err(|e| write_err(&meta_path, e.to_string()))?;
        std::fs::write(&meta_path, text + "\n").map_err(|e| write_err(&meta_path, e.to_string()))
    }

    /// The same weights with new pooled thresholds and no per-language ones (validated like a
    /// loaded head).
    pub fn with_thresholds(self, thresholds: BTreeMap<Label, f32>) -> Result<Self, HeadError> {
        let meta = HeadMeta { thresholds, thresholds_by_language: BTreeMap::new(), ..self.meta };
        Head::new(meta, self.weight, self.bias)
    }

    /// The same weights with pooled and per-language thresholds.
    pub fn with_calibration(self, thresholds: BTreeMap<Label, f32>, by_language: BTreeMap<String, BTreeMap<Label, f32>>) -> Result<Self, HeadError> {
        let meta = HeadMeta { thresholds, thresholds_by_language: by_language, ..self.meta };
        Head::new(meta, self.weight, self.bias)
    }

    /// Weights ([labels, features], row-major) and biases.
    pub fn parameters(&self) -> (&[f32], [f32; LABEL_COUNT]) {
        (&self.weight, self.bias)
    }

    pub fn feature_dim(&self) -> usize {
        self.meta.feature_dim
    }

    /// The pooled threshold of a label (the fallback for languages without their own).
    pub fn threshold(&self, label: Label) -> f32 {
        self.thresholds[label.index()]
    }

    /// The threshold of a label in a language: its own where calibrated, else the pooled one
    /// (the strictest calibrated one for a severe label).
    pub fn threshold_in(&self, label: Label, lang: &str) -> f32 {
        self.thresholds_of(lang)[label.index()]
    }

    fn thresholds_of(&self, lang: &str) -> &[f32; LABEL_COUNT] {
        self.by_language.get(&base_language(lang)).unwrap_or(&self.uncalibrated)
    }

    /// Whether the model card measures this language's quality on held-out data.
    pub fn is_measured(&self, lang: &str) -> bool {
        let base = base_language(lang);
        self.meta.measured_languages.contains(&base)
    }

    /// Sigmoid probability per label for one feature vector.
    pub fn scores(&self, features: &[f32]) -> LabelScores {
        LabelScores(self.logits(features).map(|logit| 1.0 / (1.0 + (-logit).exp())))
    }

    /// The log-odds per label for one feature vector (what `scores` squashes).
    fn logits(&self, features: &[f32]) -> [f32; LABEL_COUNT] {
        let mut out = [0f32; LABEL_COUNT];
        for (i, row) in self.weight.chunks_exact(self.meta.feature_dim).enumerate() {
            out[i] = self.bias[i] + row.iter().zip(features).map(|(w, x)| w * x).sum::<f32>();
        }
        out
    }

    /// The labels whose score reaches their threshold in `lang` (a language code, or "und"), in
    /// label order.
    pub fn flags(&self, scores: &LabelScores, lang: &str) -> Vec<Label> {
        let thresholds = self.thresholds_of(lang);
        scores.iter().filter(|&(l, s)| s >= thresholds[l.index()]).map(|(l, _)| l).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(by_language: BTreeMap<String, BTreeMap<Label, f32>>) -> Result<Head, HeadError> {
        let meta = HeadMeta {
            model_version: "test".into(),
            features: "test".into(),
            feature_dim: 1,
            labels: Label::ALL.to_vec(),
            thresholds: Label::ALL.into_iter().map(|l| (l, 0.5)).collect(),
            thresholds_by_language: by_language,
            measured_languages: vec!["hu".into(), "pt".into()],
            trained: serde_json::Value::Null,
        };
        Head::new(meta, vec![0.0; LABEL_COUNT], [0.0; LABEL_COUNT])
    }

    #[test]
    fn a_language_with_its_own_threshold_uses_it_and_others_fall_back() {
        let own = BTreeMap::from([("pt".to_string(), BTreeMap::from([(Label::Frustration, 0.8)]))]);
        let h = head(own).unwrap();
        let mut scores = LabelScores::default();
        scores.0[Label::Frustration.index()] = 0.7;
        scores.0[Label::Insult.index()] = 0.6;
        assert_eq!(h.flags(&scores, "pt-BR"), vec![Label::Insult], "pt's own frustration threshold, the pooled insult one");
        assert_eq!(h.flags(&scores, "de"), vec![Label::Frustration, Label::Insult]);
        assert_eq!(h.flags(&scores, "und"), vec![Label::Frustration, Label::Insult]);
        assert_eq!(h.threshold_in(Label::Frustration, "PT"), 0.8);
        assert!(h.is_measured("hu-HU") && h.is_measured("pt") && !h.is_measured("fi"));
    }

    #[test]
    fn a_severe_label_without_its_own_threshold_takes_the_strictest_calibrated_one() {
        let own = BTreeMap::from([
            ("he".to_string(), BTreeMap::from([(Label::IdentityAttack, 0.7), (Label::Frustration, 0.9)])),
            ("hu".to_string(), BTreeMap::from([(Label::Frustration, 0.4)])),
            ("en".to_string(), BTreeMap::from([(Label::IdentityAttack, 0.3)])),
        ]);
        let h = head(own).unwrap();
        // Hungarian calibrates frustration only: identity_attack takes Hebrew's 0.7, not the pooled 0.5.
        assert_eq!(h.threshold_in(Label::IdentityAttack, "hu"), 0.7);
        assert_eq!(h.threshold_in(Label::IdentityAttack, "fi"), 0.7);
        assert_eq!(h.threshold_in(Label::IdentityAttack, "en"), 0.3, "a language's own threshold stands");
        // A label that calls no manager keeps the pooled fallback.
        assert_eq!(h.threshold_in(Label::Frustration, "fi"), 0.5);
        assert_eq!(h.threshold(Label::IdentityAttack), 0.5, "the pooled threshold itself is unchanged");
    }

    #[test]
    fn a_per_language_threshold_outside_0_1_is_refused() {
        let bad = BTreeMap::from([("he".to_string(), BTreeMap::from([(Label::Rudeness, 1.5)]))]);
        assert!(head(bad).err().expect("refused").to_string().contains("in he"));
    }
}
