//! Fine-tuning: low-rank adapters (LoRA) on the attention and FFN projections of the upper
//! layers of the frozen base, trained together with the label head.
//!
//! The base stays as it ships. The layers below `first_layer` get no adapters, so their outputs
//! are computed once per text (fused inference operations) and cached; each training step runs
//! only the upper layers, with differentiable operations, and back-propagates into the adapters
//! and the head. At inference the adapters are merged into the dequantised weights
//! (W + α/r · B·A), so a fine-tuned model costs no more than the base.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{Init, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::labels::LABEL_COUNT;
use crate::model::encoder::{Encoder, UPPER_LAYERS};
use crate::model::head::Head;

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

/// Adapters and head as trainable variables.
pub struct Trainable {
    pub config: LoraConfig,
    pub varmap: VarMap,
    /// (layer, projection) → (A [rank, in], B [out, rank])
    lora: HashMap<(usize, &'static str), (Tensor, Tensor)>,
    /// [features, labels]
    head_w: Tensor,
    head_b: Tensor,
}

impl Trainable {
    /// New adapters (A small random, B zero: training starts exactly at the base model) and a
    /// head initialised from `head`.
    pub fn new(encoder: &Encoder, head: &Head, config: LoraConfig) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, encoder.device());
        let mut lora = HashMap::new();
        for layer in config.first_layer..encoder.layers().len() {
            for p in PROJECTIONS {
                let linear = encoder.layers()[layer].projection(p).context("projection")?.linear()?;
                let (out_dim, in_dim) = linear.weight().dims2()?;
                let a = vb.get_with_hints((config.rank, in_dim), &format!("l{layer}.{p}.lora_a"), Init::Randn { mean: 0.0, stdev: 0.01 })?;
                let b = vb.get_with_hints((out_dim, config.rank), &format!("l{layer}.{p}.lora_b"), Init::Const(0.0))?;
                lora.insert((layer, p), (a, b));
            }
        }
        let (weight, bias) = head.parameters();
        let dim = head.feature_dim();
        let head_w = vb.get_with_hints((dim, LABEL_COUNT), "head.w", Init::Const(0.0))?;
        let head_b = vb.get_with_hints(LABEL_COUNT, "head.b", Init::Const(0.0))?;
        // Start the head from the frozen baseline's weights.
        set_var(&varmap, "head.w", &Tensor::from_slice(weight, (LABEL_COUNT, dim), encoder.device())?.t()?.contiguous()?)?;
        set_var(&varmap, "head.b", &Tensor::from_slice(&bias, LABEL_COUNT, encoder.device())?)?;
        Ok(Trainable { config, varmap, lora, head_w, head_b })
    }

    /// Runs layers `first_layer..` differentiably from cached inputs and returns the head's
    /// logits [batch, labels] (features exactly as at inference: see `model::FEATURES`).
    pub fn logits(&self, encoder: &Encoder, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (batch, seq_len) = mask.dims2()?;
        let hidden = x.dim(1)?;
        let heads = encoder.heads();
        let head_dim = hidden / heads;
        let bias = ((mask - 1.0)? * 1e9)?.reshape((batch, 1, 1, seq_len))?;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let split = |t: Tensor| -> candle_core::Result<Tensor> { t.reshape((batch, seq_len, heads, head_dim))?.transpose(1, 2)?.contiguous() };
        let lora_scale = self.config.scale();
        let mut x = x.clone();
        let mut upper: Option<Tensor> = None;
        for (i, layer) in encoder.layers().iter().enumerate().skip(self.config.first_layer) {
            let proj = |name: &'static str, input: &Tensor| -> Result<Tensor> {
                let linear = layer.projection(name).context("projection")?.linear()?;
                let mut y = input.matmul(&linear.weight().t()?)?;
                if let Some(b) = linear.bias() {
                    y = y.broadcast_add(b)?;
                }
                if let Some((a, bm)) = self.lora.get(&(i, name)) {
                    y = (y + (input.matmul(&a.t()?)?.matmul(&bm.t()?)? * lora_scale)?)?;
                }
                Ok(y)
            };
            let norm = |t: &Tensor, ln: &candle_nn::LayerNorm| -> Result<Tensor> { layer_norm(t, ln.weight(), ln.bias(), 1e-12) };
            let q = split(proj("q", &x)?)?;
            let k = split(proj("k", &x)?)?;
            let v = split(proj("v", &x)?)?;
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&bias)?;
            let probs = softmax(&scores)?;
            let context = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((batch * seq_len, hidden))?;
            let attended = norm(&(proj("ao", &context)? + &x)?, &layer.attention_norm)?;
            let ffn = proj("fo", &proj("fi", &attended)?.gelu_erf()?)?;
            x = norm(&(ffn + &attended)?, &layer.output_norm)?;
            if UPPER_LAYERS.contains(&i) {
                upper = Some(match upper {
                    None => x.clone(),
                    Some(u) => (u + &x)?,
                });
            }
        }
        let upper = upper.context("the adapters must start at or below the first pooled layer")?;
        let upper = (upper / UPPER_LAYERS.len() as f64)?;
        let pool = |t: &Tensor| -> Result<Tensor> {
            let pooled = crate::model::encoder::mean_pool(&t.reshape((batch, seq_len, hidden))?, mask)?;
            let norm = pooled.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
            Ok(pooled.broadcast_div(&norm)?)
        };
        let features = Tensor::cat(&[pool(&x)?, pool(&upper)?], 1)?;
        Ok(features.matmul(&self.head_w)?.broadcast_add(&self.head_b)?)
    }

    /// Saves `adapters.safetensors` + `adapters.json` and returns the new head's parameters.
    pub fn save_adapters(&self, dir: &Path) -> Result<(Vec<f32>, [f32; LABEL_COUNT])> {
        let mut tensors = HashMap::new();
        for ((layer, p), (a, b)) in &self.lora {
            tensors.insert(format!("l{layer}.{p}.lora_a"), a.clone());
            tensors.insert(format!("l{layer}.{p}.lora_b"), b.clone());
        }
        candle_core::safetensors::save(&tensors, dir.join("adapters.safetensors"))?;
        std::fs::write(dir.join("adapters.json"), serde_json::to_string_pretty(&self.config)? + "\n")?;
        let weight = self.head_w.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let bias: [f32; LABEL_COUNT] = self.head_b.to_vec1::<f32>()?.try_into().map_err(|_| anyhow::anyhow!("bias shape"))?;
        Ok((weight, bias))
    }

    pub fn optimizer(&self, learning_rate: f64) -> Result<candle_nn::AdamW> {
        Ok(candle_nn::AdamW::new(self.varmap.all_vars(), ParamsAdamW { lr: learning_rate, weight_decay: 0.0, ..Default::default() })?)
    }
}

fn set_var(varmap: &VarMap, name: &str, value: &Tensor) -> Result<()> {
    let data = varmap.data().lock().map_err(|_| anyhow::anyhow!("varmap lock"))?;
    let var: &Var = data.get(name).with_context(|| format!("no variable {name}"))?;
    var.set(value)?;
    Ok(())
}

/// Layer norm from differentiable primitives (candle's fused one has no backward pass).
fn layer_norm(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    let hidden = x.dim(D::Minus1)? as f64;
    let mean = (x.sum_keepdim(D::Minus1)? / hidden)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = (centred.sqr()?.sum_keepdim(D::Minus1)? / hidden)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?.broadcast_mul(weight)?;
    Ok(match bias {
        Some(b) => normed.broadcast_add(b)?,
        None => normed,
    })
}

/// Softmax over the last dimension from differentiable primitives; the row maximum is a
/// constant shift (softmax is invariant to it), so it is detached.
fn softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

/// Masked binary cross-entropy on logits, each label averaged over the examples that annotate it.
pub fn masked_bce(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Result<Tensor> {
    // softplus(z) − y·z, computed stably as relu(z) + log(1 + e^−|z|) − y·z.
    let softplus = (logits.relu()? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    let per = (softplus - (targets * logits)?)?;
    let per_label = (per * mask)?.sum(0)?;
    let counts = mask.sum(0)?.clamp(1.0, f64::MAX)?;
    let annotated = mask.sum(0)?.gt(0.0)?.to_dtype(DType::F32)?;
    let labels = annotated.sum_all()?.clamp(1.0, f64::MAX)?;
    Ok((per_label.div(&counts)?.mul(&annotated)?.sum_all()? / labels)?)
}

/// Merges saved adapters into an encoder's weights (`W += α/r · B·A`). Returns false when the
/// folder has no adapters (the base model is used as it ships).
pub fn merge_adapters(encoder: &mut Encoder, dir: &Path) -> Result<bool> {
    let config_path = dir.join("adapters.json");
    if !config_path.exists() {
        return Ok(false);
    }
    let config: LoraConfig = serde_json::from_str(&std::fs::read_to_string(&config_path)?).with_context(|| format!("reading {}", config_path.display()))?;
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

#[derive(Debug, Clone)]
pub struct FinetuneOptions {
    pub lora: LoraConfig,
    pub steps: usize,
    pub batch: usize,
    pub learning_rate: f64,
    /// Training texts are cut to this many tokens (most turns are far shorter); inference
    /// still windows whole texts.
    pub max_tokens: usize,
    pub seed: u64,
    /// Stop early (and save) once training steps have run this long.
    pub time_limit: Option<std::time::Duration>,
    /// How many times each of the project's own turns (`calmline_indomain`) is seen per epoch:
    /// with the public sets uncapped they are under 2% of the texts, and they hold nearly all
    /// threats and sexual harassment aimed at an agent.
    pub indomain_repeat: usize,
}

/// A training text after the frozen lower layers: its hidden states, unpadded.
struct Cached {
    hidden: Vec<f32>,
    len: usize,
    targets: [Option<bool>; LABEL_COUNT],
}

/// Trains adapters and head on the train split of `examples`. Progress goes to stderr.
pub fn train(
    extractor: &crate::model::FeatureExtractor,
    head: &Head,
    examples: &[super::datasets::Example],
    opts: &FinetuneOptions,
) -> Result<Trained> {
    let encoder = &extractor.encoder;
    let hidden = encoder.hidden_size();
    anyhow::ensure!(opts.lora.first_layer <= UPPER_LAYERS.start, "adapters must start at layer {} or below", UPPER_LAYERS.start);
    let train: Vec<&super::datasets::Example> = examples.iter().filter(|e| e.split == super::datasets::Split::Train).collect();
    anyhow::ensure!(!train.is_empty(), "no training examples");

    // 1. Token ids, cut to max_tokens (keeping </s>), sorted by length for cheap caching.
    let mut sequences = Vec::with_capacity(train.len());
    for e in &train {
        let mut ids = extractor.tokenizer.windows(&e.text)?.swap_remove(0);
        if ids.len() > opts.max_tokens {
            let eos = ids[ids.len() - 1];
            ids.truncate(opts.max_tokens - 1);
            ids.push(eos);
        }
        sequences.push(ids);
    }
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.sort_by_key(|&i| sequences[i].len());

    // 2. The frozen layers below the adapters, once per text.
    let started = std::time::Instant::now();
    let mut cache: Vec<Option<Cached>> = (0..train.len()).map(|_| None).collect();
    for chunk in order.chunks(64) {
        let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| sequences[i].clone()).collect();
        let e = encoder.embed(&batch)?;
        let (x, _) = encoder.run_layers(&e, e.x.clone(), 0..opts.lora.first_layer)?;
        let x = x.reshape((e.batch, e.seq_len, hidden))?;
        for (row, &i) in chunk.iter().enumerate() {
            let len = sequences[i].len();
            let h = x.get(row)?.narrow(0, 0, len)?.flatten_all()?.to_vec1::<f32>()?;
            cache[i] = Some(Cached { hidden: h, len, targets: train[i].targets });
        }
        let done = cache.iter().filter(|c| c.is_some()).count();
        eprint!("\rcaching layers 0..{}: {done}/{} texts ({:.0}/s)   ", opts.lora.first_layer, train.len(), done as f64 / started.elapsed().as_secs_f64());
    }
    eprintln!();
    let cache: Vec<Cached> = cache.into_iter().map(|c| c.expect("every text cached")).collect();

    // 3. Steps over length-bucketed batches, with a warm-up and a linear decay of the rate.
    let trainable = Trainable::new(encoder, head, opts.lora.clone())?;
    let mut optimizer = trainable.optimizer(opts.learning_rate)?;
    let lengths: Vec<usize> = cache.iter().map(|c| c.len).collect();
    let repeats: Vec<usize> = train.iter().map(|e| if e.source == super::datasets::INDOMAIN_SOURCE { opts.indomain_repeat.max(1) } else { 1 }).collect();
    // An epoch shows every text as often as it is repeated, so it is longer than the set.
    let epoch_texts: usize = repeats.iter().sum();
    let mut batches = BatchPlan::new(lengths, repeats, opts.batch, opts.seed);
    let deadline = opts.time_limit.map(|limit| std::time::Instant::now() + limit);
    let started = std::time::Instant::now();
    let mut recent = Vec::new();
    let (mut texts_seen, mut steps_done) = (0usize, 0usize);
    for step in 1..=opts.steps {
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            eprintln!("time limit reached after {} of {} steps; saving what was learnt", step - 1, opts.steps);
            break;
        }
        optimizer.set_learning_rate(opts.learning_rate * schedule(step, opts.steps));
        let picks: Vec<&Cached> = batches.next_batch().iter().map(|&i| &cache[i]).collect();
        let seq_len = picks.iter().map(|c| c.len).max().unwrap_or(1);
        let mut x = vec![0f32; picks.len() * seq_len * hidden];
        let mut mask = vec![0f32; picks.len() * seq_len];
        let mut y = vec![0f32; picks.len() * LABEL_COUNT];
        let mut m = vec![0f32; picks.len() * LABEL_COUNT];
        for (b, c) in picks.iter().enumerate() {
            x[b * seq_len * hidden..(b * seq_len + c.len) * hidden].copy_from_slice(&c.hidden);
            mask[b * seq_len..b * seq_len + c.len].fill(1.0);
            for (l, t) in c.targets.iter().enumerate() {
                if let Some(t) = t {
                    y[b * LABEL_COUNT + l] = *t as u8 as f32;
                    m[b * LABEL_COUNT + l] = 1.0;
                }
            }
        }
        let device = encoder.device();
        let x = Tensor::from_vec(x, (picks.len() * seq_len, hidden), device)?;
        let mask = Tensor::from_vec(mask, (picks.len(), seq_len), device)?;
        let y = Tensor::from_vec(y, (picks.len(), LABEL_COUNT), device)?;
        let m = Tensor::from_vec(m, (picks.len(), LABEL_COUNT), device)?;
        let logits = trainable.logits(encoder, &x, &mask)?;
        let loss = masked_bce(&logits, &y, &m)?;
        optimizer.backward_step(&loss)?;
        recent.push(loss.to_scalar::<f32>()?);
        texts_seen += picks.len();
        steps_done = step;
        if step % 20 == 0 || step == opts.steps {
            let mean = recent.iter().sum::<f32>() / recent.len() as f32;
            recent.clear();
            let rate = texts_seen as f64 / started.elapsed().as_secs_f64();
            let epochs = texts_seen as f64 / epoch_texts as f64;
            eprintln!("step {step}/{}: masked BCE {mean:.4} ({rate:.1} texts/s, epoch {epochs:.2}, lr {:.2e})", opts.steps, optimizer.learning_rate());
        }
    }
    eprintln!("{steps_done} steps, {texts_seen} texts ({:.2} epochs of {epoch_texts}) in {:.0} s", texts_seen as f64 / epoch_texts as f64, started.elapsed().as_secs_f64());
    Ok(Trained { trainable, steps_done, texts_seen, epoch_texts })
}

/// What a run learnt and how far it got (a time limit may stop it before its last step).
pub struct Trained {
    pub trainable: Trainable,
    pub steps_done: usize,
    pub texts_seen: usize,
    /// Texts in one epoch: the training set with the in-domain turns counted as often as repeated.
    pub epoch_texts: usize,
}

/// The learning-rate multiplier at `step` (1-based) of `steps`: a linear warm-up over the first
/// 5% (the adapters start at zero and the head at the baseline, so early large steps mostly
/// undo the head), then a linear decay to a tenth.
pub fn schedule(step: usize, steps: usize) -> f64 {
    let warmup = (steps / 20).max(1);
    if step <= warmup {
        return step as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (steps - warmup).max(1) as f64;
    1.0 - 0.9 * progress.min(1.0)
}

/// Batches of texts of similar length, so a step pads little: every epoch shuffles all texts,
/// cuts them into pools of 50 batches, sorts each pool by length, cuts it into batches and
/// shuffles the batches. Each batch still mixes data sets; each text is seen `repeats[i]` times
/// per epoch (once, unless a source is oversampled).
struct BatchPlan {
    lengths: Vec<usize>,
    repeats: Vec<usize>,
    batch: usize,
    rng: u64,
    queue: Vec<Vec<usize>>,
}

impl BatchPlan {
    fn new(lengths: Vec<usize>, repeats: Vec<usize>, batch: usize, seed: u64) -> Self {
        BatchPlan { lengths, repeats, batch: batch.max(1), rng: seed | 1, queue: Vec::new() }
    }

    /// xorshift64*: a fixed, dependency-free sequence for reproducible batches.
    fn random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545F4914F6CDD1D)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.random() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }

    fn next_batch(&mut self) -> Vec<usize> {
        if self.queue.is_empty() {
            let mut order: Vec<usize> = (0..self.lengths.len()).flat_map(|i| std::iter::repeat_n(i, self.repeats[i])).collect();
            self.shuffle(&mut order);
            let mut batches = Vec::new();
            for pool in order.chunks_mut(self.batch * 50) {
                pool.sort_by_key(|&i| self.lengths[i]);
                batches.extend(pool.chunks(self.batch).map(<[usize]>::to_vec));
            }
            self.shuffle(&mut batches);
            self.queue = batches;
        }
        self.queue.pop().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_bce_ignores_unannotated_labels_and_matches_the_formula() {
        let d = Device::Cpu;
        let logits = Tensor::new(&[[0.0f32, 2.0], [1.0, -3.0]], &d).unwrap();
        let y = Tensor::new(&[[1.0f32, 0.0], [0.0, 1.0]], &d).unwrap();
        // Second label of the first row unannotated.
        let m = Tensor::new(&[[1.0f32, 0.0], [1.0, 1.0]], &d).unwrap();
        let got = masked_bce(&logits, &y, &m).unwrap().to_scalar::<f32>().unwrap();
        let bce = |z: f32, t: f32| (1.0 + z.exp()).ln() - t * z;
        let label0 = (bce(0.0, 1.0) + bce(1.0, 0.0)) / 2.0;
        let label1 = bce(-3.0, 1.0);
        assert!((got - (label0 + label1) / 2.0).abs() < 1e-5, "{got}");
    }

    #[test]
    fn every_text_is_seen_once_per_epoch_in_batches_of_similar_length() {
        let lengths: Vec<usize> = (0..1000).map(|i| (i * 37) % 64 + 1).collect();
        let mut plan = BatchPlan::new(lengths.clone(), vec![1; lengths.len()], 10, 7);
        let mut seen = vec![0; lengths.len()];
        let mut spread = 0;
        for _ in 0..100 {
            let batch = plan.next_batch();
            assert_eq!(batch.len(), 10);
            let (lo, hi) = batch.iter().fold((usize::MAX, 0), |(lo, hi), &i| (lo.min(lengths[i]), hi.max(lengths[i])));
            spread += hi - lo;
            for i in batch {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1), "one epoch sees each text once");
        // Random batches of lengths 1..64 would spread ~53 tokens; pools of 500 sorted, ~1.
        assert!(spread / 100 <= 3, "mean spread {}", spread / 100);
        assert_eq!(plan.next_batch().len(), 10, "the next epoch starts");
    }

    #[test]
    fn an_oversampled_text_comes_back_as_often_as_asked() {
        let mut repeats = vec![1; 100];
        repeats[3] = 3;
        let mut plan = BatchPlan::new(vec![5; 100], repeats, 6, 1);
        let epoch: Vec<usize> = (0..17).flat_map(|_| plan.next_batch()).collect();
        assert_eq!(epoch.len(), 102);
        assert_eq!(epoch.iter().filter(|&&i| i == 3).count(), 3);
        assert_eq!(epoch.iter().filter(|&&i| i == 4).count(), 1);
    }

    #[test]
    fn the_rate_warms_up_then_decays_to_a_tenth() {
        assert!((schedule(1, 1000) - 0.02).abs() < 1e-9);
        assert!((schedule(50, 1000) - 1.0).abs() < 1e-9);
        assert!(schedule(500, 1000) < 1.0 && schedule(500, 1000) > 0.5);
        assert!((schedule(1000, 1000) - 0.1).abs() < 1e-9);
        assert!((schedule(1, 1) - 1.0).abs() < 1e-9);
    }
}
