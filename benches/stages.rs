//! Per-stage benchmarks (criterion): tokenizing; the encoder by batch size and sequence
//! length; padded against packed batches; the dense GEMM (candle vs OpenBLAS); head and policy; one text and a batch end to end. Speed work compares these.
//!
//!     cargo bench --bench stages
//!
//! The machine is shared and noisy: compare ratios from one run (BENCHMARKS.md).

use std::path::Path;

use calmline::domain::policy::{ConversationState, Policy};
use calmline::model::Classifier;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Customer turns of typical length (about 12–30 tokens) in several languages.
const TURNS: &[&str] = calmline::cli::bench::BUILT_IN_TURNS;

fn batch_of(n: usize) -> Vec<&'static str> {
    TURNS.iter().cycle().take(n).copied().collect()
}

fn stages(c: &mut Criterion) {
    let classifier = Classifier::load(Path::new("models")).expect("run `make setup` first");
    let extractor = &classifier.extractor;
    let policy = Policy::embedded();

    let mut g = c.benchmark_group("tokenize");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one turn", |b| b.iter(|| extractor.tokenizer.windows(TURNS[0]).unwrap()));
    // The `tokenizers` crate's whole pipeline on the same file, which calmline's Unigram replaced
    // (for memory: src/model/tokenizer.rs).
    let crate_tokenizer = tokenizers::Tokenizer::from_file("models/base/tokenizer.json").unwrap();
    let prefixed = format!("{}{}", calmline::model::tokenizer::PREFIX, TURNS[0]);
    g.bench_function("one turn, tokenizers crate", |b| b.iter(|| crate_tokenizer.encode(prefixed.as_str(), true).unwrap()));
    g.finish();

    // The encoder on token ids of a given length (a repeated real turn, so embeddings are real).
    let ids = extractor.tokenizer.encode(&TURNS[0].repeat(20)).unwrap();
    let mut g = c.benchmark_group("encoder");
    g.sample_size(10);
    for &len in &[16usize, 32, 64, 128] {
        for &batch in &[1usize, 8, 32] {
            let seqs: Vec<Vec<u32>> = (0..batch).map(|_| ids[..len].to_vec()).collect();
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_with_input(BenchmarkId::new(format!("len {len}"), format!("batch {batch}")), &seqs, |b, seqs| {
                b.iter(|| extractor.encoder.forward(seqs).unwrap())
            });
        }
    }
    g.finish();

    // Padded against packed (issue 7): 32 sequences of mixed lengths (median 19 tokens, longest
    // 96, like live customer turns), and 32 of one length, where packing can only cost.
    const MIXED: [usize; 32] = [6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 18, 19, 20, 21, 22, 24, 26, 28, 30, 33, 36, 40, 45, 50, 56, 64, 72, 80, 90, 96];
    let long = extractor.tokenizer.encode(&TURNS[0].repeat(40)).unwrap();
    let mixed: Vec<Vec<u32>> = MIXED.iter().map(|&n| long[..n].to_vec()).collect();
    let uniform: Vec<Vec<u32>> = (0..32).map(|_| long[..24].to_vec()).collect();
    let mut g = c.benchmark_group("padding");
    g.sample_size(10);
    g.throughput(Throughput::Elements(32));
    for (name, seqs) in [("mixed 6-96", &mixed), ("uniform 24", &uniform)] {
        g.bench_with_input(BenchmarkId::new("padded", name), seqs, |b, seqs| b.iter(|| extractor.encoder.forward_padded(seqs).unwrap()));
        g.bench_with_input(BenchmarkId::new("packed", name), seqs, |b, seqs| b.iter(|| extractor.encoder.forward(seqs).unwrap()));
    }
    g.finish();

    // The dense layers' product on this model's exact shapes, for one short text (24 rows) and a
    // batch (768 rows): calmline's GEMM against candle's, and OpenBLAS's with `--features openblas`.
    let layer = &extractor.encoder.layers()[0];
    let mut g = c.benchmark_group("gemm");
    for rows in [24usize, 768] {
        for (name, dense, inner) in [("384x384", &layer.query, 384usize), ("384x1536", &layer.ffn_in, 384), ("1536x384", &layer.ffn_out, 1536)] {
            let linear = dense.linear().unwrap();
            let x = candle_core::Tensor::randn(0f32, 1.0, (rows, inner), &candle_core::Device::Cpu).unwrap();
            let flops = 2 * rows * inner * dense.outer();
            g.throughput(Throughput::Elements(flops as u64));
            g.bench_with_input(BenchmarkId::new(format!("calmline {name}"), rows), &x, |b, x| b.iter(|| dense.forward(x).unwrap()));
            // The int8 kernel on the same product (rows quantized inside, as in serving).
            if calmline::model::gemm_int8::available() {
                let int8 = calmline::model::gemm_int8::Int8Weights::quantize(dense.packed().unwrap());
                let values = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                g.bench_with_input(BenchmarkId::new(format!("calmline int8 {name}"), rows), &values, |b, x| {
                    b.iter(|| int8.apply(x, rows, calmline::model::gemm::Activation::None))
                });
            }
            g.bench_with_input(BenchmarkId::new(format!("candle {name}"), rows), &x, |b, x| b.iter(|| calmline::model::gemm::dense_candle(x, linear).unwrap()));
            #[cfg(feature = "openblas")]
            g.bench_with_input(BenchmarkId::new(format!("openblas {name}"), rows), &x, |b, x| {
                b.iter(|| calmline::model::gemm::dense_openblas(x, linear).unwrap())
            });
        }
    }
    g.finish();

    let features = extractor.features(&[TURNS[4]]).unwrap().remove(0).remove(0);
    let mut g = c.benchmark_group("head and policy");
    g.throughput(Throughput::Elements(1));
    g.bench_function("head", |b| b.iter(|| classifier.head.scores(&features)));
    let scores = classifier.head.scores(&features);
    let flags = classifier.head.flags(&scores, "en");
    g.bench_function("severity and ladder", |b| {
        b.iter(|| {
            let mut state = ConversationState::default();
            let severity = policy.severity_of(&flags, &scores);
            policy.customer_turn(&mut state, &flags, severity, "hu")
        })
    });
    g.finish();

    let mut g = c.benchmark_group("end to end");
    g.sample_size(10);
    for &n in &[1usize, 32] {
        let texts = batch_of(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("texts", n), &texts, |b, texts| b.iter(|| classifier.scores(texts).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
