//! Golden test: calmline's encoder reproduces an independent reference embedding.
//!
//! The reference in `tests/golden/embeddings.json` was made by `tools/reference_embeddings.py`:
//! its own parser of the E5S1 blob, every tensor dequantised to float64 with numpy, BERT run in
//! float64, token ids from the Python `tokenizers` package on the same tokenizer.json. Nothing
//! is shared with the Rust code, so agreement checks the blob reader, the Q4_0 dequantisation,
//! the tokenizer wiring (prefix and specials) and the forward pass at once.

use std::path::Path;

use calmline::model::FeatureExtractor;

#[test]
fn embeddings_match_the_float64_reference_in_en_hu_he_de() {
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("golden/embeddings.json")).expect("golden file parses");
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
