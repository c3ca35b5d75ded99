//! The dense layers' product `x · Wᵀ + b` on packed rows: calmline's own GEMM.
//!
//! Each weight is re-laid once, at load, into column panels (`PackedWeights`); an AVX-512 kernel
//! streams a panel through registers while up to eight rows of `x` are broadcast into it, and
//! larger products split their panels over rayon's threads. On this model's shapes it runs at
//! 144–221 GFLOP/s on the 2-core development machine, where candle's GEMM gives 50–176 and
//! Debian's OpenBLAS 76–196 (BENCHMARKS.md, `cargo bench --bench stages -- gemm`). CPUs without
//! AVX-512 but with AVX2 and FMA run the same tiling 8 wide; others a plain-Rust loop over the
//! same panels. All compute in f32 from the same
//! weights; the tests hold them to candle's product within 1e-4.
//!
//! `dense_candle` and, with the cargo feature `openblas`, `dense_openblas` stay as the yardsticks
//! of the benches and tests.

use candle_core::{Module, Storage, Tensor};
use candle_nn::Linear;

/// candle's own product: the reference the other products are compared with.
pub fn dense_candle(x: &Tensor, layer: &Linear) -> candle_core::Result<Tensor> {
    layer.forward(x)
}

/// OpenBLAS's `cblas_sgemm` (Debian's `libopenblas-dev`), measured against calmline's GEMM.
#[cfg(feature = "openblas")]
pub use openblas::dense as dense_openblas;

#[cfg(feature = "openblas")]
mod openblas {
    use candle_core::Tensor;
    use candle_nn::Linear;

    use super::with_values;

    // cblas.h: enum CBLAS_ORDER { CblasRowMajor = 101 }, enum CBLAS_TRANSPOSE { CblasNoTrans =
    // 111, CblasTrans = 112 }; blasint is a 32-bit int in Debian's build.
    const ROW_MAJOR: i32 = 101;
    const NO_TRANS: i32 = 111;
    const TRANS: i32 = 112;

    #[link(name = "openblas")]
    unsafe extern "C" {
        #[allow(clippy::too_many_arguments)]
        fn cblas_sgemm(
            order: i32,
            trans_a: i32,
            trans_b: i32,
            m: i32,
            n: i32,
            k: i32,
            alpha: f32,
            a: *const f32,
            lda: i32,
            b: *const f32,
            ldb: i32,
            beta: f32,
            c: *mut f32,
            ldc: i32,
        );
        fn openblas_set_num_threads(threads: i32);
        fn openblas_get_num_procs() -> i32;
    }

    /// Products smaller than this many multiply-adds run on one thread: waking OpenBLAS's
    /// second thread costs more than it saves on one short text (measured: BENCHMARKS.md).
    const PARALLEL_FROM_MACS: usize = 64 * 384 * 384;

    /// The thread count last set, so OpenBLAS is told only when it changes.
    static THREADS: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

    fn use_threads(macs: usize) {
        // SAFETY: plain getter and setter of OpenBLAS's global thread count. Callers on other
        // threads (tests, training) can only race on that count, never on memory.
        let wanted = if macs < PARALLEL_FROM_MACS { 1 } else { unsafe { openblas_get_num_procs() }.max(1) };
        if THREADS.swap(wanted, std::sync::atomic::Ordering::Relaxed) != wanted {
            unsafe { openblas_set_num_threads(wanted) };
        }
    }

    pub fn dense(x: &Tensor, layer: &Linear) -> candle_core::Result<Tensor> {
        let x = x.contiguous()?;
        let (rows, inner) = x.dims2()?;
        let (out, inner_w) = layer.weight().dims2()?;
        if inner != inner_w {
            candle_core::bail!("dense: x has {inner} columns, the weight {inner_w}");
        }
        let too_big = |n: usize| i32::try_from(n).is_err();
        if too_big(rows) || too_big(out) || too_big(inner) {
            candle_core::bail!("dense: {rows}×{inner}·{inner}×{out} exceeds BLAS's 32-bit sizes");
        }
        // Start from the bias on every row, then C = 1·X·Wᵀ + 1·C.
        let mut c = vec![0f32; rows * out];
        let beta = match layer.bias() {
            Some(bias) => {
                with_values(bias, |b| c.chunks_exact_mut(out).for_each(|row| row.copy_from_slice(b)))?;
                1.0
            }
            None => 0.0,
        };
        use_threads(rows * inner * out);
        with_values(&x, |a| {
            with_values(layer.weight(), |w| {
                // SAFETY: a is rows×inner, w is out×inner, c is rows×out, all row-major and
                // contiguous with the leading dimensions given; OpenBLAS reads a and w and
                // writes only c, which nothing else borrows.
                unsafe {
                    cblas_sgemm(
                        ROW_MAJOR,
                        NO_TRANS,
                        TRANS,
                        rows as i32,
                        out as i32,
                        inner as i32,
                        1.0,
                        a.as_ptr(),
                        inner as i32,
                        w.as_ptr(),
                        inner as i32,
                        beta,
                        c.as_mut_ptr(),
                        out as i32,
                    )
                }
            })
        })??;
        Tensor::from_vec(c, (rows, out), x.device())
    }
}

/// Runs `f` on the f32 values of a CPU tensor (made contiguous first if need be), holding the
/// storage lock only meanwhile.
pub fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else { candle_core::bail!("calmline's kernels run on the CPU only") };
    let Some((start, end)) = layout.contiguous_offsets() else { candle_core::bail!("a contiguous tensor has no contiguous offsets") };
    Ok(f(&cpu.as_slice::<f32>()?[start..end]))
}

/// What is applied to the product before it is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    /// BERT's exact GELU, `x · Φ(x)` (see `gelu_in_place`).
    Gelu,
}

/// Output columns per panel of [`PackedWeights`] (and of `gemm_int8`'s): three AVX-512 registers.
pub(crate) const PANEL: usize = 48;
/// Rows of `x` kept in cache while every panel passes over them (64 rows × 1536 × 4 B = 384 KB).
pub(crate) const ROW_CHUNK: usize = 64;

/// A dense layer's weight re-laid for calmline's own GEMM: column panels of `PANEL` outputs, each
/// `[inner][PANEL]`, so the kernel streams one panel through registers while the rows of `x` are
/// broadcast into it — no packing at run time (OpenBLAS repacks the whole weight on every call,
/// which is most of its time on one short text: BENCHMARKS.md).
#[derive(Clone)]
pub struct PackedWeights {
    inner: usize,
    outer: usize,
    /// Panel `p` holds `W[p·PANEL + c][k]` at `[p][k][c]`; columns past `outer` are zero.
    panels: Vec<f32>,
    /// The bias padded with zeros to whole panels.
    bias: Vec<f32>,
}

impl PackedWeights {
    /// Packs `weight` ([outer, inner], row-major, as a `Linear` holds it) and an optional bias.
    pub fn pack(weight: &[f32], bias: Option<&[f32]>, outer: usize, inner: usize) -> PackedWeights {
        assert_eq!(weight.len(), outer * inner, "weight is not [outer, inner]");
        let panels_n = outer.div_ceil(PANEL);
        let mut panels = vec![0f32; panels_n * inner * PANEL];
        for (o, row) in weight.chunks_exact(inner).enumerate() {
            let (p, c) = (o / PANEL, o % PANEL);
            let panel = &mut panels[p * inner * PANEL..(p + 1) * inner * PANEL];
            for (k, &w) in row.iter().enumerate() {
                panel[k * PANEL + c] = w;
            }
        }
        let mut padded_bias = vec![0f32; panels_n * PANEL];
        if let Some(bias) = bias {
            assert_eq!(bias.len(), outer, "bias is not [outer]");
            padded_bias[..outer].copy_from_slice(bias);
        }
        PackedWeights { inner, outer, panels, bias: padded_bias }
    }

    pub fn from_linear(layer: &Linear) -> candle_core::Result<PackedWeights> {
        let (outer, inner) = layer.weight().dims2()?;
        let weight = layer.weight().flatten_all()?.to_vec1::<f32>()?;
        let bias = layer.bias().map(|b| b.to_vec1::<f32>()).transpose()?;
        Ok(PackedWeights::pack(&weight, bias.as_deref(), outer, inner))
    }

    /// The weight and bias back in `Linear`'s layout (for the fine-tuning code's differentiable
    /// products).
    pub fn to_linear(&self, device: &candle_core::Device) -> candle_core::Result<Linear> {
        let weight = Tensor::from_vec(self.weight_rows(), (self.outer, self.inner), device)?;
        let bias = Tensor::from_slice(self.bias(), self.outer, device)?;
        Ok(Linear::new(weight, Some(bias)))
    }

    /// The weight unpacked: `[outer, inner]`, row-major, as a `Linear` holds it.
    pub fn weight_rows(&self) -> Vec<f32> {
        let mut weight = vec![0f32; self.outer * self.inner];
        for (o, row) in weight.chunks_exact_mut(self.inner).enumerate() {
            let panel = &self.panels[o / PANEL * self.inner * PANEL..];
            row.iter_mut().enumerate().for_each(|(k, w)| *w = panel[k * PANEL + o % PANEL]);
        }
        weight
    }

    /// The bias (`outer` values).
    pub fn bias(&self) -> &[f32] {
        &self.bias[..self.outer]
    }

    pub fn inner(&self) -> usize {
        self.inner
    }

    pub fn outer(&self) -> usize {
        self.outer
    }

    /// `out = x · Wᵀ + b` for `x` of `rows` × `inner` and `out` of `rows` × `outer`, row-major.
    pub fn forward_into(&self, x: &[f32], rows: usize, out: &mut [f32], activation: Activation) {
        assert_eq!(x.len(), rows * self.inner, "x is not [rows, inner]");
        assert_eq!(out.len(), rows * self.outer, "out is not [rows, outer]");
        // SAFETY: `out` holds rows × outer floats, borrowed mutably for the call, and
        // `run_kernel` writes exactly the given panels' columns.
        unsafe { split_panels(rows, self.inner, self.outer, out.as_mut_ptr(), activation, |panels, out| self.run_kernel(x, rows, out, panels)) }
    }

    /// Computes the columns of panels `panels` for every row, with the best kernel of this CPU.
    ///
    /// # Safety
    /// `x` is `rows × inner`, `out` points to `rows × outer` floats, and no one else writes
    /// these panels' columns meanwhile.
    unsafe fn run_kernel(&self, x: &[f32], rows: usize, out: *mut f32, panels: std::ops::Range<usize>) {
        #[cfg(target_arch = "x86_64")]
        if avx512::available() {
            // SAFETY: the CPU has AVX-512F; the rest is this function's contract.
            return unsafe { avx512::gemm(self, x, rows, out, panels) };
        } else if avx2::available() {
            // SAFETY: the CPU has AVX2 and FMA; the rest is this function's contract.
            return unsafe { avx2::gemm(self, x, rows, out, panels) };
        }
        // SAFETY: this function's contract.
        unsafe { portable_gemm(self, x, rows, out, panels) }
    }

    /// `x · Wᵀ + b` (then the activation) for `x` of `rows` × `inner`, into a new buffer.
    pub fn apply(&self, x: &[f32], rows: usize, activation: Activation) -> Vec<f32> {
        let mut out = vec![0f32; rows * self.outer];
        self.forward_into(x, rows, &mut out, activation);
        out
    }

    /// `x · Wᵀ + b` (then the activation) on a `[rows, inner]` tensor.
    pub fn forward(&self, x: &Tensor, activation: Activation) -> candle_core::Result<Tensor> {
        let (rows, inner) = x.dims2()?;
        if inner != self.inner {
            candle_core::bail!("dense: x has {inner} columns, the weight {}", self.inner);
        }
        let out = with_values(x, |values| self.apply(values, rows, activation))?;
        Tensor::from_vec(out, (rows, self.outer), x.device())
    }
}

/// Runs `kernel` over the panels of a `rows × outer` product, then the activation on the columns
/// it wrote, by the same thread. Products of at least `PARALLEL_FROM_MACS` multiply-adds split
/// their panels over rayon's threads, each writing only its panels' columns. Shared by the f32
/// and the int8 (`gemm_int8`) products, whose panels are both `PANEL` wide.
///
/// # Safety
/// `out` points to room for `rows × outer` floats that nothing else touches meanwhile, and
/// `kernel(panels, out)` writes every row's columns of `panels`, and nothing else.
pub(crate) unsafe fn split_panels(
    rows: usize,
    inner: usize,
    outer: usize,
    out: *mut f32,
    activation: Activation,
    kernel: impl Fn(std::ops::Range<usize>, *mut f32) + Sync,
) {
    let panels = outer.div_ceil(PANEL);
    let parts = if rows * inner * outer >= PARALLEL_FROM_MACS { rayon::current_num_threads().min(panels) } else { 1 };
    let out = OutPtr(out);
    let run = |range: std::ops::Range<usize>| {
        let out = out.get();
        kernel(range.clone(), out);
        if activation == Activation::Gelu {
            let columns = range.start * PANEL..(range.end * PANEL).min(outer);
            for r in 0..rows {
                // SAFETY: row r's columns of these panels lie inside `out` and were just
                // written by this thread, the only one touching them (the contract).
                let values = unsafe { std::slice::from_raw_parts_mut(out.add(r * outer + columns.start), columns.len()) };
                gelu_in_place(values);
            }
        }
    };
    if parts <= 1 {
        run(0..panels);
    } else {
        use rayon::prelude::*;
        (0..parts).into_par_iter().for_each(|i| run(i * panels / parts..(i + 1) * panels / parts));
    }
}

/// The output pointer shared by the threads of one product (each writes its own columns).
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: only used by `split_panels`, which gives each thread disjoint columns.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so closures capture the whole `OutPtr`, which is `Sync`).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// BERT's exact GELU in place: `x · Φ(x) = x/2 · (1 + erf(x/√2))`, with erf from Abramowitz &
/// Stegun, *Handbook of Mathematical Functions*, 7.1.26 (absolute error ≤ 1.5e-7) and `exp` by
/// range reduction and a degree-6 polynomial — branch-free, so the loop vectorises (candle's
/// `gelu_erf` calls libm's scalar `erff` per value: ~6% of a short text's time).
pub fn gelu_in_place(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: the CPU has AVX-512F.
        unsafe { avx512::gelu_in_place(values) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU has AVX2 and FMA.
        unsafe { avx2::gelu_in_place(values) };
        return;
    }
    values.iter_mut().for_each(|v| *v = gelu(*v));
}

/// Abramowitz & Stegun 7.1.26: `erf(z) ≈ 1 − t·(A₀ + t·(A₁ + …)) · e^(−z²)` with `t = 1/(1 + P·z)`.
const ERF_P: f32 = 0.327_591_1;
const ERF_A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152, 1.061_405_4];

#[inline(always)]
fn gelu(x: f32) -> f32 {
    let (p, a) = (ERF_P, ERF_A);
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + p * z);
    let poly = t * (a[0] + t * (a[1] + t * (a[2] + t * (a[3] + t * a[4]))));
    let erf_abs = 1.0 - poly * exp_nonpositive(-z * z);
    0.5 * x * (1.0 + erf_abs.copysign(x))
}

/// ln 2 split so n·LN2_HI is exact (Cody & Waite), for `exp_nonpositive`.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// 1.5 · 2^23: adding it rounds to an integer in the low bits.
const ROUND: f32 = 12_582_912.0;

/// `e^y` for `y ≤ 0` (below −87 it returns ~1e-38, as good as 0 here): `y = n·ln2 + r` with
/// `|r| ≤ ln2/2`, `e^r` by its Taylor polynomial to r⁶ (relative error < 2e-7), `2^n` built in
/// the exponent bits. No branches and no libm, so it vectorises.
#[inline(always)]
pub(crate) fn exp_nonpositive(y: f32) -> f32 {
    let y = y.max(-87.0);
    let shifted = y * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (y - n * LN2_HI) - n * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // shifted's bits are ROUND's plus n (|n| ≤ 126), so the biased exponent is n + 127.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    p * f32::from_bits(((n_bits + 127) as u32) << 23)
}

/// Whether this CPU runs calmline's AVX-512 kernels (checked once).
#[cfg(target_arch = "x86_64")]
pub fn has_avx512() -> bool {
    avx512::available()
}

/// Whether this CPU runs calmline's AVX2 + FMA kernels (checked once; used where AVX-512 is absent).
#[cfg(target_arch = "x86_64")]
pub fn has_avx2_fma() -> bool {
    avx2::available()
}

/// The dense kernel this CPU runs, for `GetInfo` and the start-up log.
pub fn kernel_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if avx512::available() {
            return "avx512f";
        }
        if avx2::available() {
            return "avx2+fma";
        }
    }
    "portable"
}

/// Products below this many multiply-adds run on the calling thread alone.
const PARALLEL_FROM_MACS: usize = 4 * 384 * 384;

/// The same product in plain Rust, for CPUs without AVX-512 or AVX2 (and a second reference in tests).
///
/// # Safety
/// As `PackedWeights::run_panels`.
unsafe fn portable_gemm(w: &PackedWeights, x: &[f32], rows: usize, out: *mut f32, panels: std::ops::Range<usize>) {
    let (inner, outer) = (w.inner, w.outer);
    for p in panels {
        let panel = &w.panels[p * inner * PANEL..(p + 1) * inner * PANEL];
        let columns = PANEL.min(outer - p * PANEL);
        for r in 0..rows {
            let mut acc = [0f32; PANEL];
            acc.copy_from_slice(&w.bias[p * PANEL..(p + 1) * PANEL]);
            for (k, weights) in panel.chunks_exact(PANEL).enumerate() {
                let xv = x[r * inner + k];
                acc.iter_mut().zip(weights).for_each(|(a, w)| *a += xv * w);
            }
            // SAFETY: row r's columns p·PANEL.. of this panel lie inside `out` (the contract).
            unsafe { std::ptr::copy_nonoverlapping(acc.as_ptr(), out.add(r * outer + p * PANEL), columns) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    use super::{PANEL, PackedWeights, ROW_CHUNK};

    /// `super::gelu` on 16 values at a time. Written out rather than left to the compiler, which
    /// divided for `t` (`vdivps`, several times the cost of the rest): here it is the reciprocal
    /// estimate refined by one Newton step (relative error below 1e-7).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gelu_in_place(values: &mut [f32]) {
        use super::{ERF_A as A, ERF_P as P};
        let one = _mm512_set1_ps(1.0);
        let sign = _mm512_set1_epi32(i32::MIN);
        let mut chunks = values.chunks_exact_mut(16);
        for chunk in &mut chunks {
            // SAFETY: the chunk holds 16 floats.
            let x = unsafe { _mm512_loadu_ps(chunk.as_ptr()) };
            let z = _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
            let d = _mm512_fmadd_ps(_mm512_set1_ps(P), z, one);
            let estimate = _mm512_rcp14_ps(d);
            let t = _mm512_mul_ps(estimate, _mm512_fnmadd_ps(d, estimate, _mm512_set1_ps(2.0)));
            let mut poly = _mm512_set1_ps(A[4]);
            for a in [A[3], A[2], A[1], A[0]] {
                poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(a));
            }
            poly = _mm512_mul_ps(poly, t);
            let erf_abs = _mm512_fnmadd_ps(poly, exp_nonpositive(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(z, z))), one);
            // copysign: erf_abs's magnitude (it can round to about −6e-8 near 0), x's sign.
            let erf =
                _mm512_castsi512_ps(_mm512_or_epi32(_mm512_andnot_epi32(sign, _mm512_castps_si512(erf_abs)), _mm512_and_epi32(_mm512_castps_si512(x), sign)));
            let gelu = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5), x), _mm512_add_ps(one, erf));
            // SAFETY: as the load.
            unsafe { _mm512_storeu_ps(chunk.as_mut_ptr(), gelu) };
        }
        for v in chunks.into_remainder() {
            *v = super::gelu(*v);
        }
    }

    /// `super::exp_nonpositive` on 16 lanes: the same range reduction, polynomial and exponent
    /// bits.
    #[target_feature(enable = "avx512f")]
    pub(crate) fn exp_nonpositive(y: __m512) -> __m512 {
        use super::{LN2_HI, LN2_LO, ROUND};
        let y = _mm512_max_ps(y, _mm512_set1_ps(-87.0));
        let round = _mm512_set1_ps(ROUND);
        let shifted = _mm512_fmadd_ps(y, _mm512_set1_ps(std::f32::consts::LOG2_E), round);
        let n = _mm512_sub_ps(shifted, round);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), y));
        let mut p = _mm512_set1_ps(1.0 / 720.0);
        for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let n_bits = _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_set1_epi32(ROUND.to_bits() as i32));
        let two_to_n = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(n_bits, _mm512_set1_epi32(127))));
        _mm512_mul_ps(p, two_to_n)
    }

    pub fn available() -> bool {
        static AVX512: OnceLock<bool> = OnceLock::new();
        *AVX512.get_or_init(|| is_x86_feature_detected!("avx512f"))
    }

    /// The whole product, one row chunk at a time so `x`'s rows stay in L2 while every panel
    /// passes over them; each panel meets the chunk's rows eight at a time.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; otherwise as `PackedWeights::run_kernel`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gemm(w: &PackedWeights, x: &[f32], rows: usize, out: *mut f32, panels: std::ops::Range<usize>) {
        let (inner, outer) = (w.inner, w.outer);
        for chunk in (0..rows).step_by(ROW_CHUNK) {
            let chunk_end = (chunk + ROW_CHUNK).min(rows);
            for p in panels.clone() {
                let panel = &w.panels[p * inner * PANEL..(p + 1) * inner * PANEL];
                let columns = PANEL.min(outer - p * PANEL);
                let masks: [u16; 3] = std::array::from_fn(|c| {
                    let valid = columns.saturating_sub(c * 16).min(16);
                    ((1u32 << valid) - 1) as u16
                });
                let bias = &w.bias[p * PANEL..(p + 1) * PANEL];
                let mut r = chunk;
                while r < chunk_end {
                    let n = (chunk_end - r).min(8);
                    let x_rows = &x[r * inner..(r + n) * inner];
                    let out_at = r * outer + p * PANEL;
                    // SAFETY: x_rows holds n rows of `inner`; the panel `inner × PANEL`; the
                    // bias PANEL values; stores write n rows of `outer` from out_at, masked to
                    // the panel's valid columns, all inside `out`.
                    unsafe {
                        let (xp, pp, bp, op) = (x_rows.as_ptr(), panel.as_ptr(), bias.as_ptr(), out.add(out_at));
                        match n {
                            8 => tile::<8>(xp, inner, pp, bp, op, outer, masks),
                            7 => tile::<7>(xp, inner, pp, bp, op, outer, masks),
                            6 => tile::<6>(xp, inner, pp, bp, op, outer, masks),
                            5 => tile::<5>(xp, inner, pp, bp, op, outer, masks),
                            4 => tile::<4>(xp, inner, pp, bp, op, outer, masks),
                            3 => tile::<3>(xp, inner, pp, bp, op, outer, masks),
                            2 => tile::<2>(xp, inner, pp, bp, op, outer, masks),
                            _ => tile::<1>(xp, inner, pp, bp, op, outer, masks),
                        }
                    }
                    r += n;
                }
            }
        }
    }

    /// `R` rows × one panel: 3·R accumulators start at the bias; for each `k` the panel's 48
    /// weights are loaded once and every row's `x[r][k]` is broadcast against them.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const R: usize>(x: *const f32, inner: usize, panel: *const f32, bias: *const f32, out: *mut f32, outer: usize, masks: [u16; 3]) {
        unsafe {
            let b = [_mm512_loadu_ps(bias), _mm512_loadu_ps(bias.add(16)), _mm512_loadu_ps(bias.add(32))];
            let mut acc = [b; R];
            for k in 0..inner {
                let wk = panel.add(k * PANEL);
                let w = [_mm512_loadu_ps(wk), _mm512_loadu_ps(wk.add(16)), _mm512_loadu_ps(wk.add(32))];
                for (r, row) in acc.iter_mut().enumerate() {
                    let xv = _mm512_set1_ps(*x.add(r * inner + k));
                    row[0] = _mm512_fmadd_ps(xv, w[0], row[0]);
                    row[1] = _mm512_fmadd_ps(xv, w[1], row[1]);
                    row[2] = _mm512_fmadd_ps(xv, w[2], row[2]);
                }
            }
            for (r, row) in acc.iter().enumerate() {
                for (c, &v) in row.iter().enumerate() {
                    // A register wholly past the last column is not stored (its address may
                    // lie past the buffer).
                    if masks[c] != 0 {
                        _mm512_mask_storeu_ps(out.add(r * outer + c * 16), masks[c], v);
                    }
                }
            }
        }
    }
}

/// The AVX2 + FMA kernel, for x86-64 CPUs without AVX-512 (AMD Zen 1–3, most Intel client
/// CPUs): the same panels, 8 values a register. AVX2 has 16 registers, so a panel is taken in
/// thirds of 16 columns (two registers): six rows × two = 12 accumulators, two weight
/// registers and a broadcast fit without spilling — the classic 6×16 shape of AVX2 SGEMM
/// kernels. Whole-panel tiles of two rows and half-panel tiles of four both spilled
/// accumulators to the stack (a whole analysis took 1.25× and 1.04× as long; BENCHMARKS.md).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    use super::{PANEL, PackedWeights, ROW_CHUNK};

    /// Columns in a third of a panel (two registers of eight).
    const PART: usize = 16;
    /// Rows per tile.
    const ROWS: usize = 6;

    pub fn available() -> bool {
        static AVX2: OnceLock<bool> = OnceLock::new();
        *AVX2.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }

    /// The portable loop compiled for AVX2 + FMA, so it runs 8 values at a time.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gelu_in_place(values: &mut [f32]) {
        for v in values.iter_mut() {
            *v = super::gelu(*v);
        }
    }

    /// As `avx512::gemm`: a row chunk at a time, every panel (in thirds) over the chunk's rows,
    /// six rows per tile.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; otherwise as `PackedWeights::run_kernel`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gemm(w: &PackedWeights, x: &[f32], rows: usize, out: *mut f32, panels: std::ops::Range<usize>) {
        let (inner, outer) = (w.inner, w.outer);
        for chunk in (0..rows).step_by(ROW_CHUNK) {
            let chunk_end = (chunk + ROW_CHUNK).min(rows);
            for p in panels.clone() {
                let panel = &w.panels[p * inner * PANEL..(p + 1) * inner * PANEL];
                let bias = &w.bias[p * PANEL..(p + 1) * PANEL];
                for part in 0..PANEL / PART {
                    let columns = (outer - p * PANEL).saturating_sub(part * PART).min(PART);
                    if columns == 0 {
                        continue;
                    }
                    let mut r = chunk;
                    while r < chunk_end {
                        let n = (chunk_end - r).min(ROWS);
                        let x_rows = &x[r * inner..(r + n) * inner];
                        // SAFETY: x_rows holds n rows of `inner`; the panel `inner × PANEL`, read
                        // at offset part·PART of each row of 48; the bias PANEL values; the tile
                        // writes n rows' first `columns` values from
                        // out[r·outer + p·PANEL + part·PART], all inside `out`.
                        unsafe {
                            let (xp, pp, bp) = (x_rows.as_ptr(), panel.as_ptr().add(part * PART), bias.as_ptr().add(part * PART));
                            let op = out.add(r * outer + p * PANEL + part * PART);
                            match n {
                                6 => tile::<6>(xp, inner, pp, bp, op, outer, columns),
                                5 => tile::<5>(xp, inner, pp, bp, op, outer, columns),
                                4 => tile::<4>(xp, inner, pp, bp, op, outer, columns),
                                3 => tile::<3>(xp, inner, pp, bp, op, outer, columns),
                                2 => tile::<2>(xp, inner, pp, bp, op, outer, columns),
                                _ => tile::<1>(xp, inner, pp, bp, op, outer, columns),
                            }
                        }
                        r += n;
                    }
                }
            }
        }
    }

    /// `R` rows × 16 columns of a panel: 2·R accumulators start at the bias; for each `k` the
    /// 16 weights are loaded once and every row's `x[r][k]` is broadcast against them.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn tile<const R: usize>(x: *const f32, inner: usize, part: *const f32, bias: *const f32, out: *mut f32, outer: usize, columns: usize) {
        unsafe {
            let b = [_mm256_loadu_ps(bias), _mm256_loadu_ps(bias.add(8))];
            let mut acc = [b; R];
            for k in 0..inner {
                let wk = part.add(k * PANEL);
                let (w0, w1) = (_mm256_loadu_ps(wk), _mm256_loadu_ps(wk.add(8)));
                for (r, row) in acc.iter_mut().enumerate() {
                    let xv = _mm256_set1_ps(*x.add(r * inner + k));
                    row[0] = _mm256_fmadd_ps(xv, w0, row[0]);
                    row[1] = _mm256_fmadd_ps(xv, w1, row[1]);
                }
            }
            for (r, row) in acc.iter().enumerate() {
                let dst = out.add(r * outer);
                if columns == PART {
                    _mm256_storeu_ps(dst, row[0]);
                    _mm256_storeu_ps(dst.add(8), row[1]);
                } else {
                    // The last part of a width that is not a multiple of 16: via a buffer.
                    let mut buf = [0f32; PART];
                    _mm256_storeu_ps(buf.as_mut_ptr(), row[0]);
                    _mm256_storeu_ps(buf.as_mut_ptr().add(8), row[1]);
                    std::ptr::copy_nonoverlapping(buf.as_ptr(), dst, columns);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[cfg(feature = "openblas")]
    #[test]
    fn openblas_matches_candle_on_the_models_shapes() {
        let device = Device::Cpu;
        for (rows, inner, out) in [(1, 384, 384), (23, 384, 1536), (57, 1536, 384)] {
            let x = Tensor::randn(0f32, 1.0, (rows, inner), &device).unwrap();
            let w = Tensor::randn(0f32, 0.05, (out, inner), &device).unwrap();
            let b = Tensor::randn(0f32, 0.1, out, &device).unwrap();
            let layer = Linear::new(w, Some(b));
            let ours = dense_openblas(&x, &layer).unwrap();
            let reference = dense_candle(&x, &layer).unwrap();
            let gap = (ours - reference).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(gap < 1e-4, "OpenBLAS differs from candle by {gap} on {rows}×{inner}·{inner}×{out}");
        }
    }

    #[test]
    fn packed_weights_match_candle_on_any_shape() {
        let device = Device::Cpu;
        // The model's shapes, rows across the row chunk, and outputs that leave a panel half full.
        for (rows, inner, out) in [(1, 384, 384), (24, 384, 1536), (130, 1536, 384), (7, 20, 50), (9, 3, 1)] {
            let x = Tensor::randn(0f32, 1.0, (rows, inner), &device).unwrap();
            let w = Tensor::randn(0f32, 0.05, (out, inner), &device).unwrap();
            let b = Tensor::randn(0f32, 0.1, out, &device).unwrap();
            let layer = Linear::new(w, Some(b));
            let packed = PackedWeights::from_linear(&layer).unwrap();
            let reference = dense_candle(&x, &layer).unwrap();
            let ours = packed.forward(&x, Activation::None).unwrap();
            let gap = (ours - &reference).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(gap < 1e-4, "packed GEMM differs from candle by {gap} on {rows}×{inner}·{inner}×{out}");
            let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let panels = out.div_ceil(PANEL);
            // Every kernel this CPU can run, whichever the dispatch picks.
            type Kernel = unsafe fn(&PackedWeights, &[f32], usize, *mut f32, std::ops::Range<usize>);
            let mut kernels: Vec<(&str, Kernel)> = vec![("portable", portable_gemm)];
            #[cfg(target_arch = "x86_64")]
            if avx2::available() {
                kernels.push(("avx2", avx2::gemm));
            }
            for (name, kernel) in kernels {
                let mut result = vec![0f32; rows * out];
                // SAFETY: `result` is rows × out, this thread alone writes it, and the kernel
                // runs on this CPU (checked above).
                unsafe { kernel(&packed, &xs, rows, result.as_mut_ptr(), 0..panels) };
                let result = Tensor::from_vec(result, (rows, out), &device).unwrap();
                let gap = (result - &reference).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(gap < 1e-4, "{name} GEMM differs from candle by {gap} on {rows}×{inner}·{inner}×{out}");
            }
        }
    }

    #[test]
    fn gelu_matches_the_exact_erf_gelu() {
        let xs: Vec<f32> = (-2400..=2400).map(|i| i as f32 / 200.0).chain([0.0, -0.0, 1e-30, -1e-30, 50.0, -50.0, 1e4, -1e4]).collect();
        let reference = Tensor::from_slice(&xs, xs.len(), &Device::Cpu).unwrap().gelu_erf().unwrap().to_vec1::<f32>().unwrap();
        for portable in [false, true] {
            let mut ours = xs.clone();
            if portable {
                ours.iter_mut().for_each(|v| *v = gelu(*v)); // the portable path
            } else {
                gelu_in_place(&mut ours);
            }
            for ((x, a), b) in xs.iter().zip(&ours).zip(&reference) {
                assert!((a - b).abs() <= 1e-6 + 1e-6 * b.abs(), "gelu({x}) = {a}, exact {b}");
            }
        }
    }
}
