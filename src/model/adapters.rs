//! Low-rank adapters (LoRA) and how they are merged into the encoder at load.
//!
//! `trainer/finetune.py` trains them (PyTorch) and writes `adapters.safetensors` (for every layer
//! from `first_layer` and every projection in `PROJECTIONS`: `l{layer}.{projection}.lora_a`
//! [rank, in] and `.lora_b` [out, rank]) with `adapters.json`. At load they are merged into the
//! dequantised weights, `W += alpha/rank · B·A`, so a fine-tuned model costs no more than the base.

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::encoder::{Encoder, EncoderError};

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

/// Why a folder's adapters could not be merged or read; each keeps its cause, where there is
/// one, as its `source()`.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("adapters: reading {}", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("adapters: {} is not valid adapter settings", .path.display())]
    Settings { path: PathBuf, source: serde_json::Error },
    #[error("adapters: {}: rank must be at least 1", .path.display())]
    Rank { path: PathBuf },
    #[error("adapters: reading the tensors of {}", .path.display())]
    Tensors { path: PathBuf, source: candle_core::Error },
    #[error("adapters: l{layer}.{projection}.{part} is missing")]
    Missing { layer: usize, projection: &'static str, part: &'static str },
    #[error("adapters: l{layer}.{projection}: B·A")]
    Product { layer: usize, projection: &'static str, source: candle_core::Error },
    #[error("adapters: merging into l{layer}.{projection}")]
    Merge { layer: usize, projection: &'static str, source: EncoderError },
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
