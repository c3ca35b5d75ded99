//! A dense layer of the encoder: its weights packed for one of calmline's kernels — the f32 GEMM
//! (`gemm`) or the int8 one (`gemm_int8`) — and the products the encoder asks of it.

use std::sync::OnceLock;

use candle_core::Tensor;
use candle_nn::Linear;

use super::gemm::{Activation, PackedWeights, with_values};
use super::gemm_int8::Int8Weights;

/// A dense layer as the encoder holds it: packed for inference, in f32 or (`quantize_int8`) in
/// int8 — one copy of the weights either way (a layer's query, key and value are also kept
/// stacked, `stacked`: 1.8 MB more in int8 for the whole encoder, 21 MB in f32). candle's
/// `Linear` (for code whose products must be differentiable) is unpacked from the f32 panels on
/// first use and kept.
pub struct Dense {
    weights: Weights,
    linear: OnceLock<Linear>,
}

enum Weights {
    F32(PackedWeights),
    Int8(Int8Weights),
}

impl Dense {
    pub fn new(linear: &Linear) -> candle_core::Result<Dense> {
        Ok(Dense { weights: Weights::F32(PackedWeights::from_linear(linear)?), linear: OnceLock::new() })
    }

    /// From now on, products run in int8 (`gemm_int8`); the f32 weights are dropped (a quarter
    /// of the memory), so merge adapters first.
    pub fn quantize_int8(&mut self) {
        if let Weights::F32(packed) = &self.weights {
            self.weights = Weights::Int8(Int8Weights::quantize(packed));
            self.linear = OnceLock::new();
        }
    }

    /// `parts` (each over the same inputs) as one layer whose outputs are theirs side by side:
    /// one product, and in int8 one quantization of the inputs, instead of one each. `None`
    /// where they differ in precision or inputs, or int8 layers do not fill whole panels.
    pub fn stacked(parts: &[&Dense]) -> Option<Dense> {
        let weights = match parts.first()?.weights {
            Weights::F32(_) => {
                let packed: Vec<&PackedWeights> = parts.iter().map(|d| d.packed()).collect::<Option<_>>()?;
                let inner = packed[0].inner();
                if packed.iter().any(|p| p.inner() != inner) {
                    return None;
                }
                let weight: Vec<f32> = packed.iter().flat_map(|p| p.weight_rows()).collect();
                let bias: Vec<f32> = packed.iter().flat_map(|p| p.bias().iter().copied()).collect();
                Weights::F32(PackedWeights::pack(&weight, Some(&bias), bias.len(), inner))
            }
            Weights::Int8(_) => {
                let int8: Vec<&Int8Weights> = parts.iter().map(|d| if let Weights::Int8(w) = &d.weights { Some(w) } else { None }).collect::<Option<_>>()?;
                Weights::Int8(Int8Weights::stack(&int8)?)
            }
        };
        Some(Dense { weights, linear: OnceLock::new() })
    }

    pub fn inner(&self) -> usize {
        match &self.weights {
            Weights::F32(packed) => packed.inner(),
            Weights::Int8(int8) => int8.inner(),
        }
    }

    pub fn outer(&self) -> usize {
        match &self.weights {
            Weights::F32(packed) => packed.outer(),
            Weights::Int8(int8) => int8.outer(),
        }
    }

    /// `x · Wᵀ + b` (then the activation) for `x` of `rows` × `inner`: int8 if quantized, else
    /// calmline's f32 GEMM.
    pub fn apply(&self, x: &[f32], rows: usize, activation: Activation) -> Vec<f32> {
        match &self.weights {
            Weights::F32(packed) => packed.apply(x, rows, activation),
            Weights::Int8(int8) => int8.apply(x, rows, activation),
        }
    }

    /// `x · Wᵀ + b` on a `[rows, inner]` tensor.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_with(x, Activation::None)
    }

    /// `gelu(x · Wᵀ + b)`, the activation applied by the thread that computed those columns,
    /// right after (no second pass over the whole output).
    pub fn forward_gelu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_with(x, Activation::Gelu)
    }

    fn forward_with(&self, x: &Tensor, activation: Activation) -> candle_core::Result<Tensor> {
        let (rows, inner) = x.dims2()?;
        if inner != self.inner() {
            candle_core::bail!("dense: x has {inner} columns, the weight {}", self.inner());
        }
        let out = with_values(x, |values| self.apply(values, rows, activation))?;
        Tensor::from_vec(out, (rows, self.outer()), x.device())
    }

    /// The f32 panels (none once quantized).
    pub fn packed(&self) -> Option<&PackedWeights> {
        match &self.weights {
            Weights::F32(packed) => Some(packed),
            Weights::Int8(_) => None,
        }
    }

    /// The layer as candle's `Linear` (unpacked once, then kept); f32 layers only.
    pub fn linear(&self) -> candle_core::Result<&Linear> {
        if let Some(linear) = self.linear.get() {
            return Ok(linear);
        }
        let Some(packed) = self.packed() else { candle_core::bail!("an int8 layer keeps no f32 weights to unpack") };
        let linear = packed.to_linear(&candle_core::Device::Cpu)?;
        Ok(self.linear.get_or_init(|| linear))
    }

    /// W += delta ([outer, inner]): an adapter merged in (before any quantization).
    pub fn add_to_weight(&mut self, delta: &Tensor) -> candle_core::Result<()> {
        let Some(packed) = self.packed() else { candle_core::bail!("adapters must be merged before the layer is quantized to int8") };
        let linear = packed.to_linear(&candle_core::Device::Cpu)?;
        let merged = Linear::new((linear.weight() + delta)?, linear.bias().cloned());
        *self = Dense::new(&merged)?;
        Ok(())
    }
}
