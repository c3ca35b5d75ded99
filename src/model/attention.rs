//! Self-attention on packed rows: each text attends only over its own rows of the batch's
//! projections (`[total tokens, hidden]` each, or column blocks of one stacked product), one
//! (text, head) pair at a time, spread over rayon's threads. No padding, no mask, no gathering into a `[batch, heads, seq, head]` view — with
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

/// `softmax(q·kᵀ/√d)·v` per text and head. The result is `[total, hidden]`, row-major, heads
/// side by side in each row (BERT's layout); `q`, `k` and `v` are laid out the same but with
/// rows `stride` apart, so they can be three column blocks of one `[total, 3·hidden]` product
/// (`stride` = 3·hidden, `k` and `v` starting `hidden` and `2·hidden` in) or three separate
/// `[total, hidden]` ones (`stride` = hidden).
pub fn attend(q: &[f32], k: &[f32], v: &[f32], stride: usize, spans: &[Span], heads: usize, hidden: usize) -> Vec<f32> {
    let total = spans.iter().map(|s| s.len).sum::<usize>();
    let needed = if total == 0 { 0 } else { (total - 1) * stride + hidden };
    assert!(stride >= hidden && [q, k, v].iter().all(|x| x.len() >= needed), "q, k, v do not hold [total, hidden] rows {stride} apart");
    assert!(hidden.is_multiple_of(heads), "hidden is not a multiple of heads");
    // The pairs' disjoint writes (below) need the spans to tile the rows: one after another from 0.
    let tiled = spans.iter().try_fold(0, |at, s| (s.start == at).then_some(at + s.len));
    assert_eq!(tiled, Some(total), "the spans do not tile the rows one after another");
    let mut out = vec![0f32; total * hidden];
    let shared = OutPtr(out.as_mut_ptr());
    let pairs: Vec<(Span, usize)> = spans.iter().flat_map(|&s| (0..heads).map(move |h| (s, h))).collect();
    let projections = Projections { q, k, v, stride, hidden, dim: hidden / heads };
    // A few pairs per task (one short turn's head is a few microseconds of work, about what
    // rayon spends handing it out), and scratch buffers reused across a task's pairs.
    pairs.par_iter().with_min_len(4).for_each_init(Scratch::default, |scratch, &(span, head)| {
        // SAFETY: each (text, head) pair writes only its own rows' columns of its head, and
        // the pairs are distinct; `out` outlives the parallel loop.
        unsafe { attend_one(&projections, span, head, shared, scratch) }
    });
    out
}

/// One layer's projections of the batch, rows `stride` apart, heads `dim` wide.
struct Projections<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    stride: usize,
    hidden: usize,
    dim: usize,
}

/// One task's working memory: the keys transposed, the scores of the rows being attended (one,
/// or `avx512::ROWS`), a row's context (the generic loop's).
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
    if span.len == 0 {
        return;
    }
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
    // SAFETY (both): the caller's contract. The model's heads are 32 wide: two registers.
    if p.dim == avx512::DIM { unsafe { avx512::attend_one(p, span, head, out, scratch) } } else { unsafe { attend_one_body::<0>(p, span, head, out, scratch) } }
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
    let (q, k, v, stride, hidden) = (p.q, p.k, p.v, p.stride, p.hidden);
    let dim = if WIDTH == 0 { p.dim } else { WIDTH };
    let len = span.len;
    let scale = 1.0 / (dim as f32).sqrt();
    // Row j of this head starts at first + j·stride in q, k and v, at written + j·hidden in out.
    let (first, written) = (span.start * stride + head * dim, span.start * hidden + head * dim);
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
            keys_t[d * padded + j] = k[first + j * stride + d];
        }
    }
    for i in 0..len {
        let qi = &q[first + i * stride..first + i * stride + dim];
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
            let (p, vj) = (scores[j], &v[first + j * stride..first + j * stride + dim]);
            for c in 0..dim {
                context[c] += p * vj[c];
            }
        }
        // SAFETY: row i of this span, this head's `dim` columns: inside `out`, ours alone.
        unsafe { std::ptr::copy_nonoverlapping(context.as_ptr(), out.0.add(written + i * hidden), dim) };
    }
}

/// The 32-wide heads in AVX-512 intrinsics. The plain loops of `attend_one_body` compiled to
/// scalar multiplies here: the scores and the transposed keys are two buffers of one scratch
/// struct, and the compiler could not rule out that they overlap (a third of the CPU time at 32
/// callers went to attention, measured with `perf`).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::super::gemm::avx512::exp_nonpositive;
    use super::{OutPtr, Projections, Scratch, Span};

    /// The head width these kernels are written for.
    pub const DIM: usize = 32;
    /// Query rows scored together: they share each load of the keys and values, and their
    /// sums are independent chains of multiply-adds.
    const ROWS: usize = 4;

    /// As `super::attend_one_body` for heads `DIM` wide.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `p.dim == DIM`; otherwise as `super::attend_one`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn attend_one(p: &Projections, span: Span, head: usize, out: OutPtr, scratch: &mut Scratch) {
        if span.len == 0 {
            return;
        }
        let (len, stride, hidden) = (span.len, p.stride, p.hidden);
        assert!(p.dim == DIM && (span.start + len - 1) * stride + hidden <= p.q.len().min(p.k.len()).min(p.v.len()), "the span lies outside the projections");
        let (first, written) = (span.start * stride + head * DIM, span.start * hidden + head * DIM);
        let chunks = len.div_ceil(16);
        let padded = chunks * 16;
        // keysᵀ, `DIM` rows of `padded` (zero past `len`), and `ROWS` rows of scores.
        scratch.keys_t.clear();
        scratch.keys_t.resize(DIM * padded, 0.0);
        scratch.scores.resize(ROWS * padded, 0.0);
        let keys_t = scratch.keys_t.as_mut_ptr();
        let scores = scratch.scores.as_mut_ptr();
        // SAFETY (the whole body): rows `first + j·stride .. + DIM` for j < len lie inside q, k
        // and v (asserted above), rows `written + j·hidden .. + DIM` inside out (`attend`'s); `keys_t` holds DIM × padded floats and `scores` ROWS ×
        // padded; this span's rows in this head's columns of `out` are ours alone.
        unsafe {
            for j in 0..len {
                let key = p.k.as_ptr().add(first + j * stride);
                for d in 0..DIM {
                    *keys_t.add(d * padded + j) = *key.add(d);
                }
            }
            let tail = match len % 16 {
                0 => 0xFFFF,
                n => (1u16 << n) - 1,
            };
            let rows = Rows { q: p.q.as_ptr(), v: p.v.as_ptr(), out: out.0, first, written, stride, hidden, len, chunks, padded, tail, keys_t, scores };
            let mut i = 0;
            while i + ROWS <= len {
                rows.attend::<ROWS>(i);
                i += ROWS;
            }
            while i < len {
                rows.attend::<1>(i);
                i += 1;
            }
        }
    }

    /// One (text, head) pair's operands, as raw pointers into the checked buffers.
    struct Rows {
        q: *const f32,
        v: *const f32,
        out: *mut f32,
        /// Where this pair's first row starts in q and v (rows `stride` apart) and in out
        /// (rows `hidden` apart).
        first: usize,
        written: usize,
        stride: usize,
        hidden: usize,
        len: usize,
        chunks: usize,
        padded: usize,
        /// The valid lanes of the last chunk of 16 keys.
        tail: u16,
        keys_t: *const f32,
        scores: *mut f32,
    }

    impl Rows {
        /// Query rows `i .. i + R`: scores, softmax, context.
        ///
        /// # Safety
        /// As `attend_one`'s body; `i + R ≤ len`, `R ≤ ROWS`.
        #[target_feature(enable = "avx512f")]
        unsafe fn attend<const R: usize>(&self, i: usize) {
            let scale = _mm512_set1_ps(1.0 / (DIM as f32).sqrt());
            let row = |r: usize| self.first + (i + r) * self.stride;
            // SAFETY: as this function's contract.
            unsafe {
                let mut max = [_mm512_set1_ps(f32::NEG_INFINITY); R];
                for c in 0..self.chunks {
                    let lanes = if c + 1 == self.chunks { self.tail } else { 0xFFFF };
                    let mut acc = [_mm512_setzero_ps(); R];
                    for d in 0..DIM {
                        let keys = _mm512_loadu_ps(self.keys_t.add(d * self.padded + c * 16));
                        for (r, acc) in acc.iter_mut().enumerate() {
                            *acc = _mm512_fmadd_ps(_mm512_set1_ps(*self.q.add(row(r) + d)), keys, *acc);
                        }
                    }
                    for r in 0..R {
                        let s = _mm512_mul_ps(acc[r], scale);
                        max[r] = _mm512_mask_max_ps(max[r], lanes, max[r], s);
                        _mm512_storeu_ps(self.scores.add(r * self.padded + c * 16), s);
                    }
                }
                let mut inverse = [0f32; R];
                for r in 0..R {
                    let top = _mm512_set1_ps(_mm512_reduce_max_ps(max[r]));
                    let mut sum = _mm512_setzero_ps();
                    for c in 0..self.chunks {
                        let lanes = if c + 1 == self.chunks { self.tail } else { 0xFFFF };
                        let at = self.scores.add(r * self.padded + c * 16);
                        // Padding lanes (past `len`) may hold anything, even scores above `top`; the
                        // mask drops whatever their exp gives.
                        let e = _mm512_maskz_mov_ps(lanes, exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(at), top)));
                        sum = _mm512_add_ps(sum, e);
                        _mm512_storeu_ps(at, e);
                    }
                    inverse[r] = 1.0 / _mm512_reduce_add_ps(sum);
                }
                let mut context = [[_mm512_setzero_ps(); 2]; R];
                for j in 0..self.len {
                    let value = self.v.add(self.first + j * self.stride);
                    let (low, high) = (_mm512_loadu_ps(value), _mm512_loadu_ps(value.add(16)));
                    for (r, [low_sum, high_sum]) in context.iter_mut().enumerate() {
                        let weight = _mm512_set1_ps(*self.scores.add(r * self.padded + j));
                        *low_sum = _mm512_fmadd_ps(weight, low, *low_sum);
                        *high_sum = _mm512_fmadd_ps(weight, high, *high_sum);
                    }
                }
                for r in 0..R {
                    let (to, inverse) = (self.out.add(self.written + (i + r) * self.hidden), _mm512_set1_ps(inverse[r]));
                    _mm512_storeu_ps(to, _mm512_mul_ps(context[r][0], inverse));
                    _mm512_storeu_ps(to.add(16), _mm512_mul_ps(context[r][1], inverse));
                }
            }
        }
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
            // Lengths that fill whole chunks of 16 keys (16, 32) and that leave one partly
            // full, and row counts around the kernel's four rows at a time.
            let lens = [5usize, 1, 17, 3, 40, 16, 32, 4];
            let total: usize = lens.iter().sum();
            let random = || Tensor::randn(0f32, 1.5, total * hidden, &Device::Cpu).unwrap().to_vec1::<f32>().unwrap();
            let (q, k, v) = (random(), random(), random());
            let mut spans = Vec::new();
            let mut start = 0;
            for &len in &lens {
                spans.push(Span { start, len });
                start += len;
            }
            let ours = attend(&q, &k, &v, hidden, &spans, heads, hidden);
            // The same projections as column blocks of one product, rows 3·hidden apart.
            let stacked: Vec<f32> = (0..total).flat_map(|r| [&q, &k, &v].map(|x| &x[r * hidden..(r + 1) * hidden]).concat()).collect();
            let strided = attend(&stacked, &stacked[hidden..], &stacked[2 * hidden..], 3 * hidden, &spans, heads, hidden);
            assert_eq!(ours, strided, "rows {} apart", 3 * hidden);
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
