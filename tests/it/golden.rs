//! Golden test: calmline's encoder reproduces an independent reference embedding.
//!
//! The reference in `tests/golden/embeddings.json` was made by `tools/reference_embeddings.py`:
//! its own parser of the E5S1 blob, every tensor dequantised to float64 with numpy, BERT run in
//! float64, token ids from the Python `tokenizers` package on the same tokenizer.json. Nothing
//! is shared with the Rust code, so agreement checks the blob reader, the Q4_0 dequantisation,
//! the tokenizer wiring (prefix and specials) and the forward pass at once.

use std::path::Path;

use calmline::model::{FeatureExtractor, Precision};

#[test]
fn embeddings_match_the_float64_reference_in_en_hu_he_de() {
    let golden: serde_json::Value = serde_json::from_str(include_str!("../golden/embeddings.json")).expect("golden file parses");
    let extractor = FeatureExtractor::load(Path::new("models/base")).expect("run `make setup` first");
    let sentences = golden["sentences"].as_array().unwrap();
    let texts: Vec<&str> = sentences.iter().map(|s| s["text"].as_str().unwrap()).collect();
    let langs: Vec<&str> = sentences.iter().map(|s| s["lang"].as_str().unwrap()).collect();
    for lang in ["en", "hu", "he", "de"] {
        assert!(langs.contains(&lang), "golden set covers {lang}");
    }

    // Token ids agree exactly.
    for (s, text) in sentences.iter().zip(&texts) {
        let expected: Vec<u32> = s["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(extractor.tokenizer.windows(text).unwrap(), vec![expected], "token ids of {text:?}");
    }

    // Embedded together (one padded batch) and one by one, each within tolerance: f32 against
    // float64 differs by ~1e-6 per component; a wrong layer, mask or nibble order gives > 1e-2.
    let batched = extractor.embed(&texts).unwrap();
    for (i, s) in sentences.iter().enumerate() {
        let expected: Vec<f32> = s["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let alone = extractor.embed(&[texts[i]]).unwrap().remove(0);
        for got in [&batched[i], &alone] {
            assert_eq!(got.len(), expected.len());
            let max_diff = got.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            let cosine: f32 = got.iter().zip(&expected).map(|(a, b)| a * b).sum();
            assert!(max_diff < 1e-4, "{}: max |diff| {max_diff}", langs[i]);
            assert!(cosine > 0.99999, "{}: cosine {cosine}", langs[i]);
        }
    }
}

/// Inference packs the batch (no padding in the dense layers); the padded layout of the
/// fine-tuning code must give the same pooled outputs, for a batch of very different lengths.
#[test]
fn the_packed_forward_pass_matches_the_padded_one() {
    let extractor = FeatureExtractor::load(Path::new("models/base")).expect("run `make setup` first");
    let texts = [
        "Thanks!",
        "This is the third time I'm calling, and the router STILL doesn't work. I have been waiting for two weeks.",
        "Maga egy hülye idióta.",
        "אני מחכה כבר שעה על הקו ואף אחד לא עונה, זה פשוט לא ייאמן",
        "Ok",
    ];
    let sequences: Vec<Vec<u32>> = texts.iter().map(|t| extractor.tokenizer.encode(t).unwrap()).collect();
    let packed = extractor.encoder.forward(&sequences).unwrap();
    let padded = extractor.encoder.forward_padded(&sequences).unwrap();
    let mut worst = 0f32;
    for (a, b) in packed.iter().zip(&padded) {
        for (x, y) in [(&a.last, &b.last), (&a.upper, &b.upper), (&a.stable, &b.stable)] {
            for (u, v) in x.iter().zip(y.iter()) {
                worst = worst.max((u - v).abs());
            }
        }
    }
    assert!(worst < 1e-4, "packed and padded differ by up to {worst}");
    // And one at a time (no padding at all) agrees with the batch.
    let alone = extractor.encoder.forward(&sequences[1..2]).unwrap();
    let gap = alone[0].last.iter().zip(&packed[1].last).map(|(u, v)| (u - v).abs()).fold(0f32, f32::max);
    assert!(gap < 1e-4, "a text alone and in a batch differ by up to {gap}");
}

/// The int8 dense layers (`--precision int8`, the default on CPUs with AVX-512 VNNI) keep the
/// embeddings and the classifier's features of the golden sentences within cosine 0.999 of the
/// float64 reference and of the f32 encoder.
#[test]
fn int8_embeddings_stay_within_cosine_0_999_of_the_reference() {
    if !calmline::model::gemm_int8::available() {
        eprintln!("skipped: this CPU has no AVX-512 VNNI");
        return;
    }
    let golden: serde_json::Value = serde_json::from_str(include_str!("../golden/embeddings.json")).expect("golden file parses");
    let sentences = golden["sentences"].as_array().unwrap();
    let texts: Vec<&str> = sentences.iter().map(|s| s["text"].as_str().unwrap()).collect();
    let f32_extractor = FeatureExtractor::load(Path::new("models/base")).expect("run `make setup` first");
    let mut int8_extractor = FeatureExtractor::load(Path::new("models/base")).unwrap();
    int8_extractor.set_precision(Precision::Int8).unwrap();
    let cosine = |a: &[f32], b: &[f32]| {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt())
    };
    let int8 = int8_extractor.embed(&texts).unwrap();
    let mut worst = 1f32;
    for (s, got) in sentences.iter().zip(&int8) {
        let expected: Vec<f32> = s["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        worst = worst.min(cosine(got, &expected));
    }
    let (f32_features, int8_features) = (f32_extractor.features(&texts).unwrap(), int8_extractor.features(&texts).unwrap());
    for (a, b) in f32_features.iter().flatten().zip(int8_features.iter().flatten()) {
        worst = worst.min(cosine(a, b));
    }
    eprintln!("int8: lowest cosine {worst:.5}");
    assert!(worst >= 0.999, "int8 embeddings or features reach only cosine {worst}");
}

/// The training feature cache keeps f32 and int8 features apart: a head calibrated in one
/// arithmetic, or a report measured in it, never reads the other's features (they did share a
/// cache entry until experiment 18).
#[test]
fn the_feature_cache_keeps_f32_and_int8_apart() {
    if !calmline::model::gemm_int8::available() {
        eprintln!("skipped: this CPU has no AVX-512 VNNI");
        return;
    }
    use calmline::train::datasets::{Example, Split};
    let cache = tempfile::tempdir().unwrap();
    let examples = || {
        ["Where is my parcel?", "You are useless."]
            .map(|text| Example { source: "golden", lang: "en", split: Split::Test, text: text.into(), targets: [None; 7] })
            .to_vec()
    };
    let f32_extractor = FeatureExtractor::load(Path::new("models/base")).expect("run `make setup` first");
    let mut int8_extractor = FeatureExtractor::load(Path::new("models/base")).unwrap();
    int8_extractor.set_precision(Precision::Int8).unwrap();
    let f32_features = calmline::train::featurise_examples(&f32_extractor, cache.path(), examples()).unwrap().features;
    let int8_features = calmline::train::featurise_examples(&int8_extractor, cache.path(), examples()).unwrap().features;
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 2, "one cache file per arithmetic");
    assert_ne!(f32_features, int8_features, "int8 features came from the f32 cache entry");
    let again = calmline::train::featurise_examples(&f32_extractor, cache.path(), examples()).unwrap().features;
    assert_eq!(again, f32_features, "the f32 entry is read back as written");
}
