//! The dense layers' product in 8-bit integers, for CPUs with AVX-512 VNNI.
//!
//! Each weight is quantized once, at load, per output channel and symmetrically (scale =
//! max |w| / 127). Each product quantizes the rows of `x` as they come, per row and
//! asymmetrically (scale and zero point from the row's minimum and maximum, so GELU's mostly
//! positive outputs use all 256 levels). VNNI's `vpdpbusd` multiplies 64 unsigned bytes of `x` by
//! 64 signed bytes of weights and adds them in groups of four into 16 i32 lanes — four times the
//! multiply-adds of one f32 FMA — without the intermediate saturation of `vpmaddubsw`, so the
//! integer sums are exact. Then
//!
//! ```text
//! y[r][o] = s_x[r] · s_w[o] · (Σ_k q_x[r][k] · q_w[o][k] − z[r] · Σ_k q_w[o][k]) + b[o]
//! ```
//!
//! This is the scheme of ONNX Runtime's dynamic quantization with unsigned activations, signed
//! per-channel weights (`quantize_dynamic(…, per_channel=True)`, "U8S8"), except that `x` is
//! quantized per row rather than per tensor: one long text's outliers cannot blur another's.
//! The f32 GEMM (`gemm`) stays the reference and the path of CPUs without VNNI. The panels
//! mirror its layout: 48 outputs each, the kernel broadcasting four bytes of up to eight rows
//! against three registers of weights.

// The f32 GEMM's panels (48 outputs: three registers of 16 i32 lanes here) and row chunks, so
// both products share `split_panels`.
use super::gemm::{Activation, PANEL, PackedWeights, ROW_CHUNK, split_panels};

/// Inner values one i32 lane sums (`vpdpbusd`'s groups of four bytes).
const GROUP: usize = 4;

/// A dense layer's weight quantized for the int8 kernel. Panel `p` holds
/// `q_w[p·PANEL + c][g·GROUP + j]` at `[p][g][c][j]`; padding (outputs past `outer`, inner
/// values past `inner`) is zero, so it adds nothing to the sums.
pub struct Int8Weights {
    inner: usize,
    outer: usize,
    /// `inner` in whole groups.
    groups: usize,
    panels: Vec<i8>,
    /// Per output, padded with zeros to whole panels: the weight's scale, the sum of its
    /// quantized values (to take the rows' zero points back out), and the bias.
    scales: Vec<f32>,
    sums: Vec<i32>,
    bias: Vec<f32>,
}

/// Rows of `x` quantized: `q = round(x / scale) + zero`, clamped to 0..=255, each row padded
/// with zeros to whole groups.
pub struct QuantizedRows {
    rows: usize,
    inner: usize,
    /// Bytes per row (`inner` in whole groups).
    stride: usize,
    bytes: Vec<u8>,
    scales: Vec<f32>,
    zeros: Vec<i32>,
}

impl Int8Weights {
    pub fn quantize(weights: &PackedWeights) -> Int8Weights {
        let (inner, outer) = (weights.inner(), weights.outer());
        // The i32 sums hold at most 255 · 127 · inner.
        assert!(inner <= i32::MAX as usize / (255 * 127), "{inner} inputs would overflow the int8 kernel's sums");
        let groups = inner.div_ceil(GROUP);
        let padded = outer.div_ceil(PANEL) * PANEL;
        let panel_len = groups * GROUP * PANEL;
        let mut panels = vec![0i8; padded / PANEL * panel_len];
        let (mut scales, mut sums, mut bias) = (vec![0f32; padded], vec![0i32; padded], vec![0f32; padded]);
        bias[..outer].copy_from_slice(weights.bias());
        for (o, row) in weights.weight_rows().chunks_exact(inner).enumerate() {
            let largest = row.iter().fold(0f32, |m, w| m.max(w.abs()));
            let scale = if largest > 0.0 { largest / 127.0 } else { 1.0 };
            scales[o] = scale;
            let panel = &mut panels[o / PANEL * panel_len..];
            for (k, &w) in row.iter().enumerate() {
                let q = (w / scale).round_ties_even().clamp(-127.0, 127.0) as i8;
                panel[k / GROUP * GROUP * PANEL + o % PANEL * GROUP + k % GROUP] = q;
                sums[o] += i32::from(q);
            }
        }
        Int8Weights { inner, outer, groups, panels, scales, sums, bias }
    }

    /// The weights of `parts` (each over the same inputs) side by side, as one product whose
    /// outputs are theirs in order — `None` unless each fills whole panels, whose quantized
    /// values, scales and sums then carry over as they are.
    pub fn stack(parts: &[&Int8Weights]) -> Option<Int8Weights> {
        let first = parts.first()?;
        if parts.iter().any(|w| w.inner != first.inner || !w.outer.is_multiple_of(PANEL)) {
            return None;
        }
        let join = |field: fn(&Int8Weights) -> &[f32]| parts.iter().flat_map(|w| field(w).iter().copied()).collect::<Vec<f32>>();
        Some(Int8Weights {
            inner: first.inner,
            outer: parts.iter().map(|w| w.outer).sum(),
            groups: first.groups,
            panels: parts.iter().flat_map(|w| w.panels.iter().copied()).collect(),
            scales: join(|w| &w.scales),
            sums: parts.iter().flat_map(|w| w.sums.iter().copied()).collect(),
            bias: join(|w| &w.bias),
        })
    }

    pub fn inner(&self) -> usize {
        self.inner
    }

    pub fn outer(&self) -> usize {
        self.outer
    }

    /// `x · Wᵀ + b` (then the activation) for `x` of `rows` × `inner`, into a new buffer.
    pub fn apply(&self, x: &[f32], rows: usize, activation: Activation) -> Vec<f32> {
        assert_eq!(x.len(), rows * self.inner, "x is not [rows, inner]");
        let x = QuantizedRows::new(x, rows, self.inner);
        // Not zeroed first (that memset was 3–5% of a batch's time): the kernels store every
        // element of every row's `outer` columns.
        let mut out = Vec::with_capacity(rows * self.outer);
        // SAFETY: `out` has room for rows × outer floats, the product writes each of them once,
        // and only then is the length set.
        unsafe {
            self.forward_raw(&x, out.spare_capacity_mut().as_mut_ptr().cast(), activation);
            out.set_len(rows * self.outer);
        }
        out
    }

    /// The product into room for `x.rows × outer` floats; every element is written once, none
    /// is read before it is written.
    ///
    /// # Safety
    /// `out` points to room for `x.rows × outer` floats that nothing else touches meanwhile.
    unsafe fn forward_raw(&self, x: &QuantizedRows, out: *mut f32, activation: Activation) {
        assert_eq!(x.inner, self.inner, "x has {} columns, the weight {}", x.inner, self.inner);
        // SAFETY: this function's contract, and `run_kernel` writes exactly the given panels'
        // columns.
        unsafe { split_panels(x.rows, self.inner, self.outer, out, activation, |panels, out| self.run_kernel(x, out, panels)) }
    }

    /// Computes the columns of panels `panels` for every row: VNNI where the CPU has it.
    ///
    /// # Safety
    /// `out` points to `x.rows × outer` floats, and no one else writes these panels' columns
    /// meanwhile.
    unsafe fn run_kernel(&self, x: &QuantizedRows, out: *mut f32, panels: std::ops::Range<usize>) {
        #[cfg(target_arch = "x86_64")]
        if vnni::available() {
            // SAFETY: the CPU has AVX-512F and VNNI; the rest is this function's contract.
            return unsafe { vnni::gemm(self, x, out, panels) };
        }
        // SAFETY: this function's contract.
        unsafe { portable_gemm(self, x, out, panels) }
    }
}

impl QuantizedRows {
    /// Quantizes `rows` rows of `inner` values each.
    pub fn new(x: &[f32], rows: usize, inner: usize) -> QuantizedRows {
        assert_eq!(x.len(), rows * inner, "x is not [rows, inner]");
        let stride = inner.div_ceil(GROUP) * GROUP;
        let mut q = QuantizedRows { rows, inner, stride, bytes: vec![0u8; rows * stride], scales: vec![0f32; rows], zeros: vec![0i32; rows] };
        for (r, row) in x.chunks_exact(inner.max(1)).take(rows).enumerate() {
            let bytes = &mut q.bytes[r * stride..r * stride + inner];
            #[cfg(target_arch = "x86_64")]
            if vnni::available() {
                // SAFETY: the CPU has AVX-512F.
                (q.scales[r], q.zeros[r]) = unsafe { vnni::quantize_row(row, bytes) };
                continue;
            }
            (q.scales[r], q.zeros[r]) = quantize_row(row, bytes);
        }
        q
    }
}

/// A row's scale and zero point: the range it spans, widened to hold 0 (so zero padding and
/// exact zeros stay exact), in 255 steps. A row holding NaN or an infinity gets a NaN scale, so
/// its outputs are NaN, as the f32 product's would be, not finite garbage; a range too small for
/// its inverse to be finite (under ~1e-36) is quantized as zeros.
#[inline(always)]
fn row_scale(lowest: f32, highest: f32, finite: bool) -> (f32, f32) {
    if !finite || !lowest.is_finite() || !highest.is_finite() {
        return (f32::NAN, 0.0);
    }
    let (lowest, highest) = (lowest.min(0.0), highest.max(0.0));
    let scale = (highest - lowest) / 255.0;
    if !(scale > 0.0 && (1.0 / scale).is_finite()) {
        return (1.0, 0.0);
    }
    (scale, (-lowest / scale).round_ties_even().clamp(0.0, 255.0))
}

/// One row in plain Rust, with the same operations (a fused multiply-add, rounding half to
/// even) as the AVX-512 version, so both give the same bytes.
fn quantize_row(row: &[f32], bytes: &mut [u8]) -> (f32, i32) {
    let (lowest, highest) = row.iter().fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let (scale, zero) = row_scale(lowest, highest, !row.iter().any(|v| v.is_nan()));
    let inverse = 1.0 / scale;
    for (q, &v) in bytes.iter_mut().zip(row) {
        *q = v.mul_add(inverse, zero).round_ties_even().clamp(0.0, 255.0) as u8;
    }
    (scale, zero as i32)
}

/// The same product in plain Rust: the reference the VNNI kernel must equal bit for bit (the
/// integer sums are exact, and the scaling is the same operations in the same order).
///
/// # Safety
/// As `Int8Weights::run_kernel`.
unsafe fn portable_gemm(w: &Int8Weights, x: &QuantizedRows, out: *mut f32, panels: std::ops::Range<usize>) {
    let panel_len = w.groups * GROUP * PANEL;
    for p in panels {
        let panel = &w.panels[p * panel_len..(p + 1) * panel_len];
        let columns = PANEL.min(w.outer - p * PANEL);
        for r in 0..x.rows {
            let row = &x.bytes[r * x.stride..(r + 1) * x.stride];
            let mut values = [0f32; PANEL];
            for (c, value) in values.iter_mut().enumerate() {
                let o = p * PANEL + c;
                let mut sum = 0i32;
                for (g, bytes) in row.chunks_exact(GROUP).enumerate() {
                    let weights = &panel[(g * PANEL + c) * GROUP..][..GROUP];
                    sum += bytes.iter().zip(weights).map(|(&a, &b)| i32::from(a) * i32::from(b)).sum::<i32>();
                }
                let centred = (sum - x.zeros[r] * w.sums[o]) as f32;
                *value = centred.mul_add(w.scales[o] * x.scales[r], w.bias[o]);
            }
            // SAFETY: row r's columns p·PANEL.. of this panel lie inside `out` (the contract).
            unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), out.add(r * w.outer + p * PANEL), columns) };
        }
    }
}

/// Whether this CPU runs the int8 kernel (AVX-512F with VNNI; checked once).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return vnni::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    use super::{GROUP, Int8Weights, PANEL, QuantizedRows, ROW_CHUNK, row_scale};

    pub fn available() -> bool {
        static VNNI: OnceLock<bool> = OnceLock::new();
        *VNNI.get_or_init(|| is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni"))
    }

    /// `super::quantize_row` 16 values at a time: the range by `vminps`/`vmaxps`, then
    /// `x · (1/scale) + zero` rounded half to even by `vcvtps2dq`, clamped and narrowed to bytes.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `bytes` is as long as `row`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn quantize_row(row: &[f32], bytes: &mut [u8]) -> (f32, i32) {
        debug_assert_eq!(row.len(), bytes.len());
        let chunks = row.len().div_ceil(16);
        let mask = |i: usize| -> u16 { ((1u32 << (row.len() - i * 16).min(16)) - 1) as u16 };
        // SAFETY: every load and store is masked to the row's own values.
        unsafe {
            // Masked-off lanes read as 0, which the range holds anyway.
            // `vminps` drops a NaN met earlier, so NaNs are looked for on their own.
            let (mut lowest, mut highest, mut nan) = (_mm512_setzero_ps(), _mm512_setzero_ps(), 0u16);
            for i in 0..chunks {
                let v = _mm512_maskz_loadu_ps(mask(i), row.as_ptr().add(i * 16));
                lowest = _mm512_min_ps(lowest, v);
                highest = _mm512_max_ps(highest, v);
                nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            }
            let (scale, zero) = row_scale(_mm512_reduce_min_ps(lowest), _mm512_reduce_max_ps(highest), nan == 0);
            let (inverse, zero_v) = (_mm512_set1_ps(1.0 / scale), _mm512_set1_ps(zero));
            let (floor, ceiling) = (_mm512_setzero_si512(), _mm512_set1_epi32(255));
            for i in 0..chunks {
                let v = _mm512_maskz_loadu_ps(mask(i), row.as_ptr().add(i * 16));
                let q = _mm512_cvtps_epi32(_mm512_fmadd_ps(v, inverse, zero_v));
                let q = _mm512_min_epi32(_mm512_max_epi32(q, floor), ceiling);
                _mm512_mask_cvtepi32_storeu_epi8(bytes.as_mut_ptr().add(i * 16).cast(), mask(i), q);
            }
            (scale, zero as i32)
        }
    }

    /// As `gemm::avx512::gemm`: a chunk of rows at a time, every panel over the chunk's rows,
    /// eight rows per tile.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and VNNI; otherwise as `Int8Weights::run_kernel`.
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub unsafe fn gemm(w: &Int8Weights, x: &QuantizedRows, out: *mut f32, panels: std::ops::Range<usize>) {
        let panel_len = w.groups * GROUP * PANEL;
        for chunk in (0..x.rows).step_by(ROW_CHUNK) {
            let chunk_end = (chunk + ROW_CHUNK).min(x.rows);
            for p in panels.clone() {
                let columns = PANEL.min(w.outer - p * PANEL);
                let masks: [u16; 3] = std::array::from_fn(|c| {
                    let valid = columns.saturating_sub(c * 16).min(16);
                    ((1u32 << valid) - 1) as u16
                });
                let tile = Tile {
                    panel: w.panels[p * panel_len..].as_ptr(),
                    groups: w.groups,
                    scales: w.scales[p * PANEL..].as_ptr(),
                    sums: w.sums[p * PANEL..].as_ptr(),
                    bias: w.bias[p * PANEL..].as_ptr(),
                    outer: w.outer,
                    masks,
                };
                let mut r = chunk;
                while r < chunk_end {
                    let n = (chunk_end - r).min(8);
                    let rows = Rows { bytes: x.bytes[r * x.stride..].as_ptr(), stride: x.stride, scales: &x.scales[r..r + n], zeros: &x.zeros[r..r + n] };
                    // SAFETY: the rows hold n × stride bytes; the panel groups × 192 bytes; the
                    // scales, sums and bias 48 values each; stores write n rows of `outer` from
                    // out_at, masked to the panel's valid columns, all inside `out`.
                    unsafe {
                        let op = out.add(r * w.outer + p * PANEL);
                        match n {
                            8 => tile.run::<8>(&rows, op),
                            7 => tile.run::<7>(&rows, op),
                            6 => tile.run::<6>(&rows, op),
                            5 => tile.run::<5>(&rows, op),
                            4 => tile.run::<4>(&rows, op),
                            3 => tile.run::<3>(&rows, op),
                            2 => tile.run::<2>(&rows, op),
                            _ => tile.run::<1>(&rows, op),
                        }
                    }
                    r += n;
                }
            }
        }
    }

    /// One panel's weights and per-output values.
    struct Tile {
        panel: *const i8,
        groups: usize,
        scales: *const f32,
        sums: *const i32,
        bias: *const f32,
        outer: usize,
        masks: [u16; 3],
    }

    /// Up to eight quantized rows.
    struct Rows<'a> {
        bytes: *const u8,
        stride: usize,
        scales: &'a [f32],
        zeros: &'a [i32],
    }

    impl Tile {
        /// `R` rows × one panel: 3·R i32 accumulators; for each group of four inner values the
        /// panel's 192 weight bytes are loaded once and every row's four bytes are broadcast
        /// against them. Then the rows' zero points are taken out and the sums scaled to f32.
        #[target_feature(enable = "avx512f,avx512vnni")]
        #[inline]
        unsafe fn run<const R: usize>(&self, rows: &Rows, out: *mut f32) {
            unsafe {
                let mut acc = [[_mm512_setzero_si512(); 3]; R];
                for g in 0..self.groups {
                    let wg = self.panel.add(g * GROUP * PANEL);
                    let w: [__m512i; 3] = std::array::from_fn(|c| _mm512_loadu_si512(wg.add(c * 64).cast()));
                    for (r, row) in acc.iter_mut().enumerate() {
                        let xv = _mm512_set1_epi32(rows.bytes.add(r * rows.stride + g * GROUP).cast::<i32>().read_unaligned());
                        row[0] = _mm512_dpbusd_epi32(row[0], xv, w[0]);
                        row[1] = _mm512_dpbusd_epi32(row[1], xv, w[1]);
                        row[2] = _mm512_dpbusd_epi32(row[2], xv, w[2]);
                    }
                }
                let scales: [__m512; 3] = std::array::from_fn(|c| _mm512_loadu_ps(self.scales.add(c * 16)));
                let sums: [__m512i; 3] = std::array::from_fn(|c| _mm512_loadu_si512(self.sums.add(c * 16).cast()));
                let bias: [__m512; 3] = std::array::from_fn(|c| _mm512_loadu_ps(self.bias.add(c * 16)));
                for (r, row) in acc.iter().enumerate() {
                    let (scale, zero) = (_mm512_set1_ps(rows.scales[r]), _mm512_set1_epi32(rows.zeros[r]));
                    for c in 0..3 {
                        let centred = _mm512_cvtepi32_ps(_mm512_sub_epi32(row[c], _mm512_mullo_epi32(zero, sums[c])));
                        let y = _mm512_fmadd_ps(centred, _mm512_mul_ps(scales[c], scale), bias[c]);
                        // A register wholly past the last column is not stored (its address
                        // may lie past the buffer).
                        if self.masks[c] != 0 {
                            _mm512_mask_storeu_ps(out.add(r * self.outer + c * 16), self.masks[c], y);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};
    use candle_nn::Linear;

    fn layer(rows: usize, inner: usize, out: usize) -> (Vec<f32>, PackedWeights, Vec<f32>) {
        let device = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (rows, inner), &device).unwrap();
        let w = Tensor::randn(0f32, 0.05, (out, inner), &device).unwrap();
        let b = Tensor::randn(0f32, 0.1, out, &device).unwrap();
        let linear = Linear::new(w, Some(b));
        let reference = super::super::gemm::dense_candle(&x, &linear).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        (x.flatten_all().unwrap().to_vec1::<f32>().unwrap(), PackedWeights::from_linear(&linear).unwrap(), reference)
    }

    #[test]
    fn the_vnni_kernel_equals_the_portable_loop_bit_for_bit() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512 VNNI");
            return;
        }
        // The model's shapes, rows across the row chunk, widths that leave a panel or a group
        // half full.
        for (rows, inner, out) in [(1, 384, 384), (24, 384, 1536), (130, 1536, 384), (7, 22, 50), (9, 3, 1)] {
            let (mut x, packed, _) = layer(rows, inner, out);
            // Rows the quantizer must not turn into finite garbage: a NaN after a large negative
            // value, an infinity, a range too small to invert.
            if rows >= 7 && inner >= 20 {
                (x[0], x[17]) = (-5.0, f32::NAN);
                x[inner + 3] = f32::INFINITY;
                x[2 * inner..3 * inner].fill(0.0);
                x[2 * inner] = 1e-37;
            }
            let weights = Int8Weights::quantize(&packed);
            let mut portable_rows = QuantizedRows::new(&x, rows, inner);
            for r in 0..rows {
                let bytes = &mut portable_rows.bytes[r * portable_rows.stride..r * portable_rows.stride + inner];
                (portable_rows.scales[r], portable_rows.zeros[r]) = quantize_row(&x[r * inner..(r + 1) * inner], bytes);
            }
            let vnni_rows = QuantizedRows::new(&x, rows, inner);
            assert_eq!(vnni_rows.bytes, portable_rows.bytes, "quantized rows differ on {rows}×{inner}");
            assert_eq!(vnni_rows.zeros, portable_rows.zeros);
            let panels = out.div_ceil(PANEL);
            let (mut fast, mut slow) = (vec![0f32; rows * out], vec![0f32; rows * out]);
            // SAFETY: both buffers are rows × out, written by this thread alone; the CPU has VNNI.
            unsafe {
                vnni::gemm(&weights, &vnni_rows, fast.as_mut_ptr(), 0..panels);
                portable_gemm(&weights, &portable_rows, slow.as_mut_ptr(), 0..panels);
            }
            let differing = fast.iter().zip(&slow).filter(|(a, b)| a.to_bits() != b.to_bits() && !(a.is_nan() && b.is_nan())).count();
            assert_eq!(differing, 0, "{differing} outputs differ on {rows}×{inner}·{inner}×{out}");
            if rows >= 7 && inner >= 20 {
                assert!(fast[..2 * out].iter().all(|v| v.is_nan()), "rows with NaN or infinity give NaN");
                assert!(fast[2 * out..3 * out].iter().all(|v| v.is_finite()), "a tiny row stays finite");
            }
        }
    }

    #[test]
    fn stacked_weights_give_each_parts_outputs_side_by_side() {
        // Query, key and value of the model's shape over the same 19 rows.
        let (rows, inner, out) = (19, 384, 384);
        let (x, _, _) = layer(rows, inner, out);
        let parts: Vec<Int8Weights> = (0..3).map(|_| Int8Weights::quantize(&layer(rows, inner, out).1)).collect();
        let stacked = Int8Weights::stack(&parts.iter().collect::<Vec<_>>()).expect("whole panels stack");
        let together = stacked.apply(&x, rows, Activation::None);
        let apart: Vec<Vec<f32>> = parts.iter().map(|w| w.apply(&x, rows, Activation::None)).collect();
        for r in 0..rows {
            let expected: Vec<f32> = apart.iter().flat_map(|a| a[r * out..(r + 1) * out].iter().copied()).collect();
            assert_eq!(together[r * 3 * out..(r + 1) * 3 * out], expected[..], "row {r}");
        }
        // A part that leaves a panel half full does not stack.
        let odd = Int8Weights::quantize(&layer(rows, inner, 50).1);
        assert!(Int8Weights::stack(&[&parts[0], &odd]).is_none());
    }

    #[test]
    fn the_int8_product_stays_within_quantization_error_of_f32() {
        for (rows, inner, out) in [(1, 384, 384), (24, 384, 1536), (130, 1536, 384), (7, 22, 50)] {
            let (x, packed, reference) = layer(rows, inner, out);
            let ours = Int8Weights::quantize(&packed).apply(&x, rows, Activation::None);
            // The error's root mean square relative to the outputs': 8 bits on each side give
            // about 1% (measured 0.6–1.2% here), far above the f32 kernels' 1e-6 and far below a
            // wrong sum's ~100%.
            let rms = |values: &mut dyn Iterator<Item = f32>| (values.map(|v| v * v).sum::<f32>() / reference.len() as f32).sqrt();
            let relative = rms(&mut ours.iter().zip(&reference).map(|(a, b)| a - b)) / rms(&mut reference.iter().copied());
            eprintln!("{rows}×{inner}·{inner}×{out}: relative error {relative:.4}");
            assert!(relative < 0.02, "int8 differs from f32 by {relative} of the outputs' size on {rows}×{inner}·{inner}×{out}");
        }
    }

    #[test]
    fn rows_keep_zero_exact_and_use_the_whole_byte_range() {
        let row = [-1.0f32, 0.0, 0.5, 3.0];
        let mut bytes = [0u8; 4];
        let (scale, zero) = quantize_row(&row, &mut bytes);
        assert_eq!(bytes[1] as i32, zero, "0 maps to the zero point");
        assert_eq!((bytes[0], bytes[3]), (0, 255), "the extremes map to the ends of the range");
        assert!((scale - 4.0 / 255.0).abs() < 1e-7);
        // A row of zeros (padding) and a constant row do not divide by zero.
        assert_eq!(quantize_row(&[0.0; 4], &mut bytes), (1.0, 0));
        assert!(quantize_row(&[0.0, f32::NAN, 1.0, 2.0], &mut bytes).0.is_nan());
        let q = QuantizedRows::new(&[2.0; 8], 2, 4);
        assert!(q.scales.iter().all(|s| s.is_finite() && *s > 0.0));
    }
}
