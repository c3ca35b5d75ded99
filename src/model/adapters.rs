//! Low-rank adapters (LoRA) and how they are merged into the encoder at load.
//!
//! `trainer/finetune.py` trains them (PyTorch) and writes `adapters.safetensors` (for every layer
//! from `first_layer` and every projection in `PROJECTIONS`: `l{layer}.{projection}.lora_a`
//! [rank, in] and `.lora_b` [out, rank]) with `adapters.json`. At load they are merged into the
//! dequantised weights, `W += alpha/rank · B·A`, so a fine-tuned model costs no more than the base.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::encoder::Encoder;

/// The projections that get adapters, named as in the blob.
pub const PROJECTIONS: [&str; 6] = ["q", "k", "v", "ao", "fi", "fo"];

/// `adapters.json`: how the adapters in `adapters.safetensors` were made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    /// Adapters on layers `first_layer..layers`.
    pub first_layer: usize,
}

impl LoraConfig {
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// Merges saved adapters into an encoder's weights (`W += α/r · B·A`). Returns false when the
/// folder has no adapters (the base model is used as it ships).
pub fn merge(encoder: &mut Encoder, dir: &Path) -> Result<bool> {
    let config_path = dir.join("adapters.json");
    if !config_path.exists() {
        return Ok(false);
    }
    let config: LoraConfig = serde_json::from_str(&std::fs::read_to_string(&config_path)?).with_context(|| format!("reading {}", config_path.display()))?;
    anyhow::ensure!(config.rank > 0, "{}: rank must be at least 1", config_path.display());
    let tensors = candle_core::safetensors::load(dir.join("adapters.safetensors"), &Device::Cpu).context("reading adapters.safetensors")?;
    for layer in config.first_layer..encoder.layers().len() {
        for p in PROJECTIONS {
            let get = |suffix: &str| tensors.get(&format!("l{layer}.{p}.{suffix}")).with_context(|| format!("adapter l{layer}.{p}.{suffix} is missing"));
            let delta = (get("lora_b")?.matmul(get("lora_a")?)? * config.scale())?;
            encoder.add_to_weight(layer, p, &delta)?;
        }
    }
    Ok(true)
}
