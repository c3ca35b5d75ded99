//! Self-attention on packed rows: each text attends only over its own rows of the batch's
//! `[total tokens, hidden]` projections, one (text, head) pair at a time, spread over rayon's
//! threads. No padding, no mask, no gathering into a `[batch, heads, seq, head]` view — with
//! candle's batched matmuls and softmax that view cost more than all the dense layers of a
//! batch of 128-token texts (BENCHMARKS.md).

use rayon::prelude::*;

use super::gemm::exp_nonpositive;

/// Where one text's rows lie in the packed batch.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub start: usize,
    pub len: usize,
}

/// `softmax(q·kᵀ/√d)·v` per text and head. `q`, `k`, `v` and the result are `[total, hidden]`,
/// row-major, heads side by side in each row (BERT's layout).
pub fn attend(q: &[f32], k: &[f32], v: &[f32], spans: &[Span], heads: usize, hidden: usize) -> Vec<f32> {
    let total = spans.iter().map(|s| s.len).sum::<usize>();
    assert!(q.len() == total * hidden && k.len() == q.len() && v.len() == q.len(), "q, k, v are not [total, hidden]");
    assert!(hidden.is_multiple_of(heads), "hidden is not a multiple of heads");
    let mut out = vec![0f32; total * hidden];
    let shared = OutPtr(out.as_mut_ptr());
    let pairs: Vec<(Span, usize)> = spans.iter().flat_map(|&s| (0..heads).map(move |h| (s, h))).collect();
    let projections = Projections { q, k, v, hidden, dim: hidden / heads };
    // A few pairs per task (one short turn's head is a few microseconds of work, about what
    // rayon spends handing it out), and scratch buffers reused across a task's pairs.
    pairs.par_iter().with_min_len(4).for_each_init(Scratch::default, |scratch, &(span, head)| {
        // SAFETY: each (text, head) pair writes only its own rows' columns of its head, and
        // the pairs are distinct; `out` outlives the parallel loop.
        unsafe { attend_one(&projections, span, head, shared, scratch) }
    });
    out
}

/// One layer's projections of the batch, `[total, hidden]` each, heads `dim` wide.
struct Projections<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    hidden: usize,
    dim: usize,
}

/// One task's working memory: the keys transposed, a row's scores, a row's context.
#[derive(Default)]
struct Scratch {
    keys_t: Vec<f32>,
    scores: Vec<f32>,
    context: Vec<f32>,
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: shared only by `attend`, whose pairs write disjoint elements.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// One text, one head, compiled for AVX-512 or else AVX2 + FMA where the CPU has it.
///
/// # Safety
/// `out` points to `[total, hidden]` floats of which no other thread writes this span's rows
/// in this head's columns.
unsafe fn attend_one(p: &Projections, span: Span, head: usize, out: OutPtr, scratch: &mut Scratch) {
    #[cfg(target_arch = "x86_64")]
    if super::gemm::has_avx512() {
        // SAFETY: the CPU has AVX-512F; the rest is this function's contract.
        unsafe { attend_one_avx512(p, span, head, out, scratch) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if super::gemm::has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA; the rest is this function's contract.
        unsafe { attend_one_avx2(p, span, head, out, scratch) };
        return;
    }
    // SAFETY: this function's contract.
    unsafe { attend_one_body::<0>(p, span, head, out, scratch) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn attend_one_avx512(p: &Projections, span: Span, head: usize, out: OutPtr, scratch: &mut Scratch) {
    // SAFETY (both): the caller's contract. The model's heads are 32 wide: a constant width keeps
    // a row's context in registers.
    if p.dim == 32 { unsafe { attend_one_body::<32>(p, span, head, out, scratch) } } else { unsafe { attend_one_body::<0>(p, span, head, out, scratch) } }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_one_avx2(p: &Projections, span: Span, head: usize, out: OutPtr, scratch: &mut Scratch) {
    // SAFETY (both): as `attend_one_avx512`.
    if p.dim == 32 { unsafe { attend_one_body::<32>(p, span, head, out, scratch) } } else { unsafe { attend_one_body::<0>(p, span, head, out, scratch) } }
}

/// Scores by rows of the transposed keys (`s[j] += q[d]·kᵀ[d][j]`) and the context by rows of
/// the values, so both inner loops run along contiguous memory and vectorise. Plain `for`
/// loops, no closures: a closure is compiled without the caller's target features and was
/// called once per element.
///
/// `WIDTH` is the head width when known at compile time, 0 when not.
///
/// # Safety
/// As `attend_one`.
#[inline(always)]
unsafe fn attend_one_body<const WIDTH: usize>(p: &Projections, span: Span, head: usize, out: OutPtr, scratch: &mut Scratch) {
    let (q, k, v, hidden) = (p.q, p.k, p.v, p.hidden);
    let dim = if WIDTH == 0 { p.dim } else { WIDTH };
    let len = span.len;
    let scale = 1.0 / (dim as f32).sqrt();
    let first = span.start * hidden + head * dim; // row j of this head starts at first + j·hidden
    // The keys padded with zero columns to whole registers of 16, so the score loop has no
    // scalar remainder (on support-chat turns of 10–40 tokens it was most of the loop); the
    // padded scores are never used.
    let padded = len.div_ceil(16) * 16;
    let Scratch { keys_t, scores, context } = scratch;
    keys_t.clear();
    keys_t.resize(dim * padded, 0.0);
    scores.resize(padded, 0.0);
    context.resize(dim, 0.0);
    for j in 0..len {
        for d in 0..dim {
            keys_t[d * padded + j] = k[first + j * hidden + d];
        }
    }
    for i in 0..len {
        let qi = &q[first + i * hidden..first + i * hidden + dim];
        scores.fill(0.0);
        for d in 0..dim {
            let qd = qi[d] * scale;
            let keys = &keys_t[d * padded..(d + 1) * padded];
            for (score, key) in scores.chunks_exact_mut(16).zip(keys.chunks_exact(16)) {
                for l in 0..16 {
                    score[l] += qd * key[l];
                }
            }
        }
        let scores = &mut scores[..len];
        softmax_in_place(scores);
        context.fill(0.0);
        for j in 0..len {
            let (p, vj) = (scores[j], &v[first + j * hidden..first + j * hidden + dim]);
            for c in 0..dim {
                context[c] += p * vj[c];
            }
        }
        // SAFETY: row i of this span, this head's `dim` columns: inside `out`, ours alone.
        unsafe { std::ptr::copy_nonoverlapping(context.as_ptr(), out.0.add(first + i * hidden), dim) };
    }
}

#[inline(always)]
fn softmax_in_place(scores: &mut [f32]) {
    // Sixteen lanes for the maximum and the sum, so neither reduction is a sequential chain.
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut chunks = scores.chunks_exact(16);
    for chunk in &mut chunks {
        for l in 0..16 {
            lanes[l] = if chunk[l] > lanes[l] { chunk[l] } else { lanes[l] };
        }
    }
    let mut max = f32::NEG_INFINITY;
    for &s in lanes.iter().chain(chunks.remainder()) {
        max = if s > max { s } else { max };
    }
    for s in scores.iter_mut() {
        *s = exp_nonpositive(*s - max);
    }
    let mut sums = [0f32; 16];
    let mut chunks = scores.chunks_exact(16);
    for chunk in &mut chunks {
        for l in 0..16 {
            sums[l] += chunk[l];
        }
    }
    let mut sum = 0.0;
    for &s in sums.iter().chain(chunks.remainder()) {
        sum += s;
    }
    let inverse = 1.0 / sum;
    for s in scores.iter_mut() {
        *s *= inverse;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// The same attention with candle's operations on one text: the reference.
    fn reference(q: &[f32], k: &[f32], v: &[f32], len: usize, heads: usize, hidden: usize) -> Vec<f32> {
        let dim = hidden / heads;
        let t = |x: &[f32]| Tensor::from_slice(x, (len, heads, dim), &Device::Cpu).unwrap().transpose(0, 1).unwrap().contiguous().unwrap();
        let (q, k, v) = (t(q), t(k), t(v));
        let scores = (q.matmul(&k.t().unwrap()).unwrap() / (dim as f64).sqrt()).unwrap();
        let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        probs.matmul(&v).unwrap().transpose(0, 1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    #[test]
    fn each_text_attends_over_its_own_rows_only() {
        // Heads 8 wide (the generic path) and 32 wide (the model's, a constant in the kernel).
        for (heads, hidden) in [(4, 32), (3, 96)] {
            let lens = [5usize, 1, 17, 3, 40];
            let total: usize = lens.iter().sum();
            let random = || Tensor::randn(0f32, 1.5, total * hidden, &Device::Cpu).unwrap().to_vec1::<f32>().unwrap();
            let (q, k, v) = (random(), random(), random());
            let mut spans = Vec::new();
            let mut start = 0;
            for &len in &lens {
                spans.push(Span { start, len });
                start += len;
            }
            let ours = attend(&q, &k, &v, &spans, heads, hidden);
            for span in spans {
                let rows = span.start * hidden..(span.start + span.len) * hidden;
                let expected = reference(&q[rows.clone()], &k[rows.clone()], &v[rows.clone()], span.len, heads, hidden);
                for (a, b) in ours[rows].iter().zip(&expected) {
                    assert!((a - b).abs() < 1e-5, "attention differs: {a} vs {b} (heads {heads}, hidden {hidden})");
                }
            }
        }
    }
}
