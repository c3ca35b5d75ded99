//! Low-rank adapters (LoRA) and how they are merged into the encoder at load.
//!
//! `trainer/finetune.py` trains them (PyTorch) and writes `adapters.safetensors` (for every layer
//! from `first_layer` and every projection in `PROJECTIONS`: `l{layer}.{projection}.lora_a`
//! [rank, in] and `.lora_b` [out, rank]) with `adapters.json`. At load they are merged into the
//! dequantised weights, `W += alpha/rank · B·A`, so a fine-tuned model costs no more than the base.

use std::path::Path;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::encoder::Encoder;
pub use super::error::AdapterError;

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
pub fn merge(encoder: &mut Encoder, dir: &Path) -> Result<bool, AdapterError> {
    let config_path = dir.join("adapters.json");
    if !config_path.exists() {
        return Ok(false);
    }
    let text = std::fs::read_to_string(&config_path).map_err(|source| AdapterError::Read { path: config_path.clone(), source })?;
    let config: LoraConfig = serde_json::from_str(&text).map_err(|source| AdapterError::Settings { path: config_path.clone(), source })?;
    if config.rank == 0 {
        return Err(AdapterError::Rank { path: config_path });
    }
    let tensors_path = dir.join("adapters.safetensors");
    let tensors = candle_core::safetensors::load(&tensors_path, &Device::Cpu).map_err(|source| AdapterError::Tensors { path: tensors_path, source })?;
    for layer in config.first_layer..encoder.layers().len() {
        for projection in PROJECTIONS {
            let get = |part: &'static str| tensors.get(&format!("l{layer}.{projection}.{part}")).ok_or(AdapterError::Missing { layer, projection, part });
            let product = |source| AdapterError::Product { layer, projection, source };
            let delta = get("lora_b")?.matmul(get("lora_a")?).and_then(|ba| ba * config.scale()).map_err(product)?;
            encoder.add_to_weight(layer, projection, &delta).map_err(|source| AdapterError::Merge { layer, projection, source })?;
        }
    }
    Ok(true)
}
