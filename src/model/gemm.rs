//! The dense layers' product `x · Wᵀ + b` on packed rows: candle's own GEMM, or — with the
//! cargo feature `openblas` — OpenBLAS's `cblas_sgemm` (Debian's `libopenblas-dev`), which runs
//! this model's shapes about twice as fast on AVX-512 machines (BENCHMARKS.md, `gemm` group).
//! Both compute in f32 from the same weights; `tests/golden.rs` holds either to the float64
//! reference.

use candle_core::{Module, Tensor};
use candle_nn::Linear;

/// Which GEMM this build uses, for `GetInfo`-style reporting and the benches.
pub const BACKEND: &str = if cfg!(feature = "openblas") { "openblas" } else { "candle" };

/// `x · Wᵀ + b` for `x` of shape [rows, in] and a linear layer with weight [out, in].
pub fn dense(x: &Tensor, layer: &Linear) -> candle_core::Result<Tensor> {
    #[cfg(feature = "openblas")]
    {
        openblas::dense(x, layer)
    }
    #[cfg(not(feature = "openblas"))]
    {
        layer.forward(x)
    }
}

/// candle's own product, whatever the build: the reference the OpenBLAS path is compared with.
pub fn dense_candle(x: &Tensor, layer: &Linear) -> candle_core::Result<Tensor> {
    layer.forward(x)
}

#[cfg(feature = "openblas")]
mod openblas {
    use candle_core::{Storage, Tensor};
    use candle_nn::Linear;

    // cblas.h: enum CBLAS_ORDER { CblasRowMajor = 101 }, enum CBLAS_TRANSPOSE { CblasNoTrans =
    // 111, CblasTrans = 112 }; blasint is a 32-bit int in Debian's build.
    const ROW_MAJOR: i32 = 101;
    const NO_TRANS: i32 = 111;
    const TRANS: i32 = 112;

    #[link(name = "openblas")]
    unsafe extern "C" {
        #[allow(clippy::too_many_arguments)]
        fn cblas_sgemm(order: i32, trans_a: i32, trans_b: i32, m: i32, n: i32, k: i32, alpha: f32, a: *const f32, lda: i32, b: *const f32, ldb: i32, beta: f32, c: *mut f32, ldc: i32);
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

    /// The f32 values of a contiguous CPU tensor, with a closure so the storage lock is held
    /// only while they are read.
    fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
        let (storage, layout) = t.storage_and_layout();
        let Storage::Cpu(cpu) = &*storage else { candle_core::bail!("the OpenBLAS path runs on the CPU only") };
        let Some((start, end)) = layout.contiguous_offsets() else { candle_core::bail!("the OpenBLAS path needs contiguous tensors") };
        Ok(f(&cpu.as_slice::<f32>()?[start..end]))
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
                    cblas_sgemm(ROW_MAJOR, NO_TRANS, TRANS, rows as i32, out as i32, inner as i32, 1.0, a.as_ptr(), inner as i32, w.as_ptr(), inner as i32, beta, c.as_mut_ptr(), out as i32)
                }
            })
        })??;
        Tensor::from_vec(c, (rows, out), x.device())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn dense_matches_candle_on_the_models_shapes() {
        let device = Device::Cpu;
        for (rows, inner, out) in [(1, 384, 384), (23, 384, 1536), (57, 1536, 384)] {
            let x = Tensor::randn(0f32, 1.0, (rows, inner), &device).unwrap();
            let w = Tensor::randn(0f32, 0.05, (out, inner), &device).unwrap();
            let b = Tensor::randn(0f32, 0.1, out, &device).unwrap();
            let layer = Linear::new(w, Some(b));
            let ours = dense(&x, &layer).unwrap();
            let reference = dense_candle(&x, &layer).unwrap();
            let gap = (ours - reference).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(gap < 1e-4, "{BACKEND} differs from candle by {gap} on {rows}×{inner}·{inner}×{out}");
        }
    }
}
