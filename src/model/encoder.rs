//! The multilingual-e5-small encoder (BERT) in candle, read straight from the E5S1 blob.
//!
//! The dense weights are dequantised to f32 once at load (about 85 MB); the 250k × 384 word
//! embedding table stays in its `Q4_0` blocks (54 MB instead of 384 MB in f32) and only the rows a
//! batch looks up are expanded. Run in f32: with f16, BERT's masked attention yields NaN.

use std::sync::{Arc, OnceLock};

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{LayerNorm, Linear};

use super::attention::{Span, attend};
use super::blob::{Blob, Encoding, Q4_BLOCK, Q4_BLOCK_BYTES, dequantize_q4_0};
use super::dense::Dense;
pub use super::error::EncoderError;
use super::gemm::{Activation, with_values};

/// Layers whose mean-pooled outputs, averaged, form the "upper" half of the classifier features.
/// Deeper pooled features were measured to help a head by about 0.02 F1 (MODEL-NOTES.md).
pub const UPPER_LAYERS: std::ops::Range<usize> = 8..11;
/// The agent-conduct judge compares the mean of this layer's output (1-based; see `conduct`). It
/// was chosen when adapters started at layer 7 (`--first-layer` ≥ 6) and could not move it; the
/// default's adapters since judgement-18 adapt every layer, so the conduct thresholds are tuned
/// for each set of adapters (`calmline eval-conduct --tune`, `models/conduct.toml`).
pub const STABLE_LAYERS: usize = 6;

/// One transformer layer's weights (public for the fine-tuning code, which runs the same
/// computation with differentiable operations and adapters).
pub struct Layer {
    pub query: Dense,
    pub key: Dense,
    pub value: Dense,
    pub attention_out: Dense,
    pub attention_norm: Norm,
    pub ffn_in: Dense,
    pub ffn_out: Dense,
    pub output_norm: Norm,
    /// `query`, `key` and `value` stacked into one product for the packed pass, made on first
    /// use — the service's warm-up batch, before it reports SERVING — after adapters are merged
    /// and the layers quantized (either empties it).
    qkv: OnceLock<Option<Dense>>,
}

impl Layer {
    fn projection_mut(&mut self, name: &str) -> Option<&mut Dense> {
        Some(match name {
            "q" => &mut self.query,
            "k" => &mut self.key,
            "v" => &mut self.value,
            "ao" => &mut self.attention_out,
            "fi" => &mut self.ffn_in,
            "fo" => &mut self.ffn_out,
            _ => return None,
        })
    }
}

/// A padded batch after the embedding layer.
pub struct Embedded {
    /// [batch × seq, hidden]
    pub x: Tensor,
    /// [batch, seq], 1.0 on tokens, 0.0 on padding.
    pub mask: Tensor,
    pub batch: usize,
    pub seq_len: usize,
}

/// Mean-pooled encoder outputs of one sequence (not normalised).
#[derive(Debug, Clone)]
pub struct Pooled {
    /// Mean over tokens of the last layer: the e5 sentence embedding before L2 normalisation.
    pub last: Vec<f32>,
    /// Mean over tokens of the average of the layers in `UPPER_LAYERS`.
    pub upper: Vec<f32>,
    /// Mean over tokens of the output of layer `STABLE_LAYERS` (1-based).
    pub stable: Vec<f32>,
}

pub struct Encoder {
    blob: Arc<Blob>,
    hidden: usize,
    heads: usize,
    vocab: usize,
    max_positions: usize,
    /// Byte offset of each word-embedding row inside `emb.word`'s Q4_0 data.
    word_row_bytes: usize,
    positions: Tensor,
    token_type0: Tensor,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    device: Device,
}

impl Encoder {
    pub fn load(blob: Arc<Blob>) -> Result<Self, EncoderError> {
        let h = blob.header.clone();
        let device = Device::Cpu;
        let tensor = |name: &str, shape: &[usize]| -> Result<Tensor, EncoderError> {
            let values = blob.f32_values(name, shape.iter().product())?;
            Ok(Tensor::from_vec(values, shape, &device)?)
        };
        let linear = |prefix: &str, out_dim: usize, in_dim: usize| -> Result<Dense, EncoderError> {
            Ok(Dense::new(&Linear::new(tensor(&format!("{prefix}.w"), &[out_dim, in_dim])?, Some(tensor(&format!("{prefix}.b"), &[out_dim])?)))?)
        };
        let norm = |prefix: &str| -> Result<LayerNorm, EncoderError> {
            Ok(LayerNorm::new(tensor(&format!("{prefix}.w"), &[h.hidden])?, tensor(&format!("{prefix}.b"), &[h.hidden])?, h.layer_norm_eps))
        };
        let layer_norm = |prefix: &str| -> Result<Norm, EncoderError> {
            let values = |name: &str| blob.f32_values(&format!("{prefix}.{name}"), h.hidden);
            Ok(Norm { candle: norm(prefix)?, weight: values("w")?, bias: values("b")?, eps: h.layer_norm_eps as f32 })
        };

        let word = blob.entry("emb.word")?;
        if word.encoding != Encoding::Q4_0 || word.elements != h.vocab * h.hidden || !h.hidden.is_multiple_of(Q4_BLOCK) {
            return Err(EncoderError::Shape(format!(
                "emb.word must be Q4_0 blocks of [{}, {}], found {:?} with {} elements",
                h.vocab, h.hidden, word.encoding, word.elements
            )));
        }
        let positions = tensor("emb.pos", &[h.max_positions, h.hidden])?;
        let token_type0 = Tensor::from_vec(blob.f32_prefix("emb.type", h.hidden)?, h.hidden, &device)?;
        let embedding_norm = layer_norm("emb.ln")?;
        let layers = (0..h.layers)
            .map(|i| {
                Ok(Layer {
                    query: linear(&format!("l{i}.q"), h.hidden, h.hidden)?,
                    key: linear(&format!("l{i}.k"), h.hidden, h.hidden)?,
                    value: linear(&format!("l{i}.v"), h.hidden, h.hidden)?,
                    attention_out: linear(&format!("l{i}.ao"), h.hidden, h.hidden)?,
                    attention_norm: layer_norm(&format!("l{i}.aln"))?,
                    ffn_in: linear(&format!("l{i}.fi"), h.ffn, h.hidden)?,
                    ffn_out: linear(&format!("l{i}.fo"), h.hidden, h.ffn)?,
                    output_norm: layer_norm(&format!("l{i}.oln"))?,
                    qkv: OnceLock::new(),
                })
            })
            .collect::<Result<Vec<_>, EncoderError>>()?;
        if h.layers < UPPER_LAYERS.end || h.layers <= STABLE_LAYERS {
            return Err(EncoderError::Shape(format!("{} layers; the features need {}", h.layers, UPPER_LAYERS.end)));
        }
        Ok(Encoder {
            word_row_bytes: h.hidden / Q4_BLOCK * Q4_BLOCK_BYTES,
            hidden: h.hidden,
            heads: h.heads,
            vocab: h.vocab,
            max_positions: h.max_positions,
            blob,
            positions,
            token_type0,
            embedding_norm,
            layers,
            device,
        })
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Expands the word-embedding rows of `ids` (padded batch, row-major) from their Q4_0 blocks.
    fn word_embeddings(&self, ids: &[u32]) -> Result<Vec<f32>, EncoderError> {
        let table = self.blob.raw("emb.word")?;
        let mut out = vec![0f32; ids.len() * self.hidden];
        for (&id, dst) in ids.iter().zip(out.chunks_exact_mut(self.hidden)) {
            if id as usize >= self.vocab {
                return Err(EncoderError::TokenOutOfRange { id, vocab: self.vocab });
            }
            let start = id as usize * self.word_row_bytes;
            dequantize_q4_0(&table[start..start + self.word_row_bytes], dst);
        }
        Ok(out)
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Runs every dense layer in int8 from now on (`gemm_int8`; the caller checks that the CPU
    /// has its kernel). Attention and layer norms stay in f32.
    pub fn quantize_int8(&mut self) {
        for layer in &mut self.layers {
            for dense in [&mut layer.query, &mut layer.key, &mut layer.value, &mut layer.attention_out, &mut layer.ffn_in, &mut layer.ffn_out] {
                dense.quantize_int8();
            }
            layer.qkv = OnceLock::new();
        }
    }

    /// Adds a low-rank update to one projection's weight: W += delta (an adapter merged in, so
    /// inference with adapters costs nothing extra).
    pub fn add_to_weight(&mut self, layer: usize, projection: &str, delta: &Tensor) -> Result<(), EncoderError> {
        let at = self.layers.get_mut(layer).ok_or_else(|| EncoderError::Shape(format!("no layer {layer}")))?;
        at.qkv = OnceLock::new();
        let dense = at.projection_mut(projection).ok_or_else(|| EncoderError::Shape(format!("no projection l{layer}.{projection}")))?;
        let weight_dims = [dense.outer(), dense.inner()];
        if delta.dims() != weight_dims {
            return Err(EncoderError::Shape(format!("l{layer}.{projection}: update {:?} vs weight {:?}", delta.dims(), weight_dims)));
        }
        Ok(dense.add_to_weight(delta)?)
    }

    /// Pads a batch of token sequences and applies the embedding layer (the fine-tuning code's
    /// layout; inference packs instead, see `forward`).
    pub fn embed(&self, sequences: &[Vec<u32>]) -> Result<Embedded, EncoderError> {
        let batch = sequences.len();
        let seq_len = sequences.iter().map(Vec::len).max().unwrap_or(0).max(1);
        if seq_len > self.max_positions {
            return Err(EncoderError::TooLong { len: seq_len, max: self.max_positions });
        }
        let hidden = self.hidden;
        // Padded ids (pad with 1, XLM-R's <pad>; masked out anyway) and the 0/1 mask.
        let mut ids = vec![1u32; batch * seq_len];
        let mut mask = vec![0f32; batch * seq_len];
        for (b, seq) in sequences.iter().enumerate() {
            ids[b * seq_len..b * seq_len + seq.len()].copy_from_slice(seq);
            mask[b * seq_len..b * seq_len + seq.len()].fill(1.0);
        }
        let mask = Tensor::from_vec(mask, (batch, seq_len), &self.device)?;
        let words = Tensor::from_vec(self.word_embeddings(&ids)?, (batch, seq_len, hidden), &self.device)?;
        let positions = self.positions.narrow(0, 0, seq_len)?.unsqueeze(0)?;
        let x = words.broadcast_add(&positions)?.broadcast_add(&self.token_type0)?;
        let x = self.embedding_norm.forward(&x)?.reshape((batch * seq_len, hidden))?;
        Ok(Embedded { x, mask, batch, seq_len })
    }

    /// Runs layers `layers` over an embedded batch (fused, inference-only operations). Returns
    /// the output and, when the range covers them, the sum of the `UPPER_LAYERS` outputs.
    pub fn run_layers(&self, e: &Embedded, mut x: Tensor, layers: std::ops::Range<usize>) -> Result<(Tensor, Option<Tensor>), EncoderError> {
        let (batch, seq_len, hidden, heads) = (e.batch, e.seq_len, self.hidden, self.heads);
        let head_dim = hidden / heads;
        // Additive attention bias: 0 where attended, a large negative (not −inf, which turns
        // 0 × −inf into NaN) on padding. Shape [batch, 1, 1, seq].
        let bias = ((&e.mask - 1.0)? * 1e9)?.reshape((batch, 1, 1, seq_len))?;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let split_heads = |t: Tensor| -> candle_core::Result<Tensor> { t.reshape((batch, seq_len, heads, head_dim))?.transpose(1, 2)?.contiguous() };
        let mut upper_sum: Option<Tensor> = None;
        for i in layers {
            let layer = &self.layers[i];
            let q = split_heads(layer.query.forward(&x)?)?;
            let k = split_heads(layer.key.forward(&x)?)?;
            let v = split_heads(layer.value.forward(&x)?)?;
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let context = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((batch * seq_len, hidden))?;
            let attended = layer.attention_norm.forward(&(layer.attention_out.forward(&context)? + &x)?)?;
            let ffn = layer.ffn_out.forward(&layer.ffn_in.forward_gelu(&attended)?)?;
            x = layer.output_norm.forward(&(ffn + &attended)?)?;
            if UPPER_LAYERS.contains(&i) {
                upper_sum = Some(match upper_sum {
                    None => x.clone(),
                    Some(sum) => (sum + &x)?,
                });
            }
        }
        Ok((x, upper_sum))
    }

    /// Runs a batch of token sequences (each with its special tokens, at most `max_positions`
    /// long) and returns each sequence's pooled outputs, in input order.
    ///
    /// Packed, not padded: every projection and FFN runs on the `[total tokens, hidden]` rows of
    /// the batch, so a short text next to a long one costs only its own tokens; attention runs
    /// per text over its own span of rows (`attention::attend`).
    pub fn forward(&self, sequences: &[Vec<u32>]) -> Result<Vec<Pooled>, EncoderError> {
        if sequences.is_empty() {
            return Ok(Vec::new());
        }
        let p = self.pack(sequences)?;
        let out = self.run_packed(&p)?;
        self.pool(&p, &out)
    }

    /// `forward`, and from the same pass each token's value of `probe` — the span head's
    /// probability, so evidence spans cost no second pass. `probe` gets the batch's
    /// `token_features` rows side by side and their number, and gives one value per row.
    pub fn forward_probing_tokens(&self, sequences: &[Vec<u32>], probe: &dyn Fn(&[f32], usize) -> Vec<f32>) -> Result<Vec<(Pooled, Vec<f32>)>, EncoderError> {
        if sequences.is_empty() {
            return Ok(Vec::new());
        }
        let p = self.pack(sequences)?;
        let out = self.run_packed(&p)?;
        let values = probe(&self.token_feature_rows(&out), p.total);
        assert_eq!(values.len(), p.total, "the probe gave one value per token");
        let probed = p.spans.iter().map(|s| values[s.start..s.start + s.len].to_vec());
        Ok(self.pool(&p, &out)?.into_iter().zip(probed).collect())
    }

    /// Each sequence's per-token outputs: the last layer and the average of the
    /// `UPPER_LAYERS`, each row L2-normalised and the two joined (`2 × hidden` per token) — the
    /// token-level counterpart of the head's `FEATURES`, which the span head reads.
    pub fn token_features(&self, sequences: &[Vec<u32>]) -> Result<Vec<Vec<Vec<f32>>>, EncoderError> {
        if sequences.is_empty() {
            return Ok(Vec::new());
        }
        let p = self.pack(sequences)?;
        let out = self.run_packed(&p)?;
        let width = 2 * self.hidden;
        let rows = self.token_feature_rows(&out);
        Ok(p.spans.iter().map(|s| rows[s.start * width..(s.start + s.len) * width].chunks_exact(width).map(<[f32]>::to_vec).collect()).collect())
    }

    /// Each sequence's pooled outputs.
    fn pool(&self, p: &Packed, out: &LayerOutputs) -> Result<Vec<Pooled>, EncoderError> {
        let stable = self.span_means(&out.stable, &p.spans, 1.0);
        let upper = self.span_means(&out.upper_sum, &p.spans, 1.0 / UPPER_LAYERS.len() as f32);
        let last = self.span_means(&out.last, &p.spans, 1.0);
        Ok(last.into_iter().zip(upper).zip(stable).map(|((last, upper), stable)| Pooled { last, upper, stable }).collect())
    }

    /// Every token's features (see `token_features`), `[total, 2 × hidden]`.
    fn token_feature_rows(&self, out: &LayerOutputs) -> Vec<f32> {
        let hidden = self.hidden;
        // The mean of the upper layers, not their sum: the scale goes with the normalisation.
        let mut rows = Vec::with_capacity(2 * out.last.len());
        for (last, upper) in out.last.chunks_exact(hidden).zip(out.upper_sum.chunks_exact(hidden)) {
            for part in [last, upper] {
                let at = rows.len();
                rows.extend_from_slice(part);
                l2_normalize(&mut rows[at..]);
            }
        }
        rows
    }

    /// Every layer over the packed rows (pooling and the per-token outputs read the same outputs).
    fn run_packed(&self, p: &Packed) -> Result<LayerOutputs, EncoderError> {
        let (mut last, mut stable, mut upper_sum) = (None::<Vec<f32>>, None::<Vec<f32>>, None::<Vec<f32>>);
        for (i, layer) in self.layers.iter().enumerate() {
            let x = self.packed_layer(layer, p, last.as_deref().unwrap_or(&p.x));
            if i + 1 == STABLE_LAYERS {
                stable = Some(x.clone());
            }
            if UPPER_LAYERS.contains(&i) {
                match &mut upper_sum {
                    None => upper_sum = Some(x.clone()),
                    Some(sum) => sum.iter_mut().zip(&x).for_each(|(s, v)| *s += v),
                }
            }
            last = Some(x);
        }
        let missing = |what: &str| EncoderError::Shape(format!("no {what} was pooled"));
        Ok(LayerOutputs {
            last: last.ok_or_else(|| missing("last layer"))?,
            upper_sum: upper_sum.ok_or_else(|| missing("upper layer"))?,
            stable: stable.ok_or_else(|| missing("stable layer"))?,
        })
    }

    /// Each text's mean over its own rows of `x` ([total, hidden]), times `scale`.
    fn span_means(&self, rows: &[f32], spans: &[Span], scale: f32) -> Vec<Vec<f32>> {
        let hidden = self.hidden;
        spans
            .iter()
            .map(|span| {
                let mut mean = vec![0f32; hidden];
                for row in rows[span.start * hidden..(span.start + span.len) * hidden].chunks_exact(hidden) {
                    mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
                }
                let factor = scale / span.len as f32;
                mean.iter_mut().for_each(|m| *m *= factor);
                mean
            })
            .collect()
    }

    /// The embedding layer over the batch's tokens, one after another, and each text's span of
    /// rows.
    fn pack(&self, sequences: &[Vec<u32>]) -> Result<Packed, EncoderError> {
        let batch = sequences.len();
        let longest = sequences.iter().map(Vec::len).max().unwrap_or(0);
        if longest > self.max_positions {
            return Err(EncoderError::TooLong { len: longest, max: self.max_positions });
        }
        let ids: Vec<u32> = sequences.iter().flatten().copied().collect();
        if ids.is_empty() || sequences.iter().any(Vec::is_empty) {
            return Err(EncoderError::Shape("an empty sequence in a batch".into()));
        }
        let (total, hidden) = (ids.len(), self.hidden);
        let mut spans = Vec::with_capacity(batch);
        let mut x = self.word_embeddings(&ids)?;
        with_values(&self.positions, |positions| {
            with_values(&self.token_type0, |token_type| {
                let mut rows = x.chunks_exact_mut(hidden);
                for seq in sequences {
                    spans.push(Span { start: total - rows.len(), len: seq.len() });
                    for (position, row) in positions.chunks_exact(hidden).zip(rows.by_ref().take(seq.len())) {
                        row.iter_mut().zip(position).zip(token_type).for_each(|((v, p), t)| *v += p + t);
                    }
                }
            })
        })??;
        self.embedding_norm.normalize(&mut x);
        Ok(Packed { x, total, spans })
    }

    /// One transformer layer on packed rows, on plain slices from end to end: candle's
    /// element-wise operations hand every add and norm to its thread pool, whose workers spin
    /// while they wait (a fifth of the CPU time at 32 callers, measured with `perf`).
    fn packed_layer(&self, layer: &Layer, p: &Packed, rows: &[f32]) -> Vec<f32> {
        let total = p.total;
        let (hidden, heads) = (self.hidden, self.heads);
        let project = |dense: &Dense, input: &[f32]| dense.apply(input, total, Activation::None);
        let context = match layer.qkv.get_or_init(|| Dense::stacked(&[&layer.query, &layer.key, &layer.value])) {
            Some(qkv) => {
                let stacked = project(qkv, rows);
                attend(&stacked, &stacked[hidden..], &stacked[2 * hidden..], 3 * hidden, &p.spans, heads, hidden)
            }
            None => attend(&project(&layer.query, rows), &project(&layer.key, rows), &project(&layer.value, rows), hidden, &p.spans, heads, hidden),
        };
        let mut attended = project(&layer.attention_out, &context);
        layer.attention_norm.add_and_normalize(&mut attended, rows);
        let mut out = layer.ffn_out.apply(&layer.ffn_in.apply(&attended, total, Activation::Gelu), total, Activation::None);
        layer.output_norm.add_and_normalize(&mut out, &attended);
        out
    }

    /// The padded forward pass of the fine-tuning code's layout (`embed` + `run_layers`), kept
    /// to check that the packed `forward` computes the same thing.
    pub fn forward_padded(&self, sequences: &[Vec<u32>]) -> Result<Vec<Pooled>, EncoderError> {
        if sequences.is_empty() {
            return Ok(Vec::new());
        }
        let e = self.embed(sequences)?;
        let (x, _) = self.run_layers(&e, e.x.clone(), 0..STABLE_LAYERS)?;
        let shape = (e.batch, e.seq_len, self.hidden);
        let stable = mean_pool(&x.reshape(shape)?, &e.mask)?.to_vec2::<f32>()?;
        let (x, upper_sum) = self.run_layers(&e, x, STABLE_LAYERS..self.layers.len())?;
        let upper = match upper_sum {
            Some(sum) => (sum / UPPER_LAYERS.len() as f64)?,
            None => return Err(EncoderError::Shape("no upper layers were pooled".into())),
        };
        let last = mean_pool(&x.reshape(shape)?, &e.mask)?.to_vec2::<f32>()?;
        let upper = mean_pool(&upper.reshape(shape)?, &e.mask)?.to_vec2::<f32>()?;
        Ok(last.into_iter().zip(upper).zip(stable).map(|((last, upper), stable)| Pooled { last, upper, stable }).collect())
    }
}

/// A layer norm, as candle's `LayerNorm` (for the padded path) and as plain values (for the
/// packed one).
pub struct Norm {
    pub candle: LayerNorm,
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl Norm {
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.candle.forward(x)
    }

    /// `x = norm(x + residual)` row by row, for rows as wide as the norm.
    fn add_and_normalize(&self, x: &mut [f32], residual: &[f32]) {
        assert_eq!(x.len(), residual.len(), "x and the residual differ in size");
        x.iter_mut().zip(residual).for_each(|(v, s)| *v += s);
        self.normalize(x);
    }

    /// `x = norm(x)` row by row, for rows as wide as the norm.
    fn normalize(&self, x: &mut [f32]) {
        let width = self.weight.len();
        for row in x.chunks_exact_mut(width) {
            let mean = lane_sum(row, |v| v) / width as f32;
            let variance = lane_sum(row, |v| (v - mean) * (v - mean)) / width as f32;
            let inverse = 1.0 / (variance + self.eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
                *v = (*v - mean) * inverse * w + b;
            }
        }
    }
}

/// `Σ f(v)` in sixteen independent lanes, so the sum vectorises instead of being one long
/// chain of dependent adds.
#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 16];
    let mut chunks = values.chunks_exact(16);
    for chunk in &mut chunks {
        for l in 0..16 {
            lanes[l] += f(chunk[l]);
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().map(|&v| f(v)).sum::<f32>()
}

/// A batch packed for [`Encoder::forward`].
/// What `run_packed` keeps of a pass, each `[total, hidden]`: the last layer's output, the sum
/// of the `UPPER_LAYERS`' outputs, and the output of layer `STABLE_LAYERS`.
struct LayerOutputs {
    last: Vec<f32>,
    upper_sum: Vec<f32>,
    stable: Vec<f32>,
}

struct Packed {
    /// [total tokens, hidden] after the embedding layer.
    x: Vec<f32>,
    total: usize,
    /// Each text's rows.
    spans: Vec<Span>,
}

/// Mean over the tokens the mask keeps: [batch, seq, hidden] → [batch, hidden].
pub fn mean_pool(x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let counts = mask.sum_keepdim(D::Minus1)?.clamp(1.0, f64::MAX)?; // [batch, 1]
    let summed = x.broadcast_mul(&mask.unsqueeze(D::Minus1)?)?.sum(1)?; // [batch, hidden]
    summed.broadcast_div(&counts)?.to_dtype(DType::F32)
}

/// L2-normalises a vector in place (leaves a zero vector as it is).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}
