//! Inputs kept from fuzzing (`fuzz/`, see docs/RELIABILITY.md): seeds and anything a fuzzer
//! ever found, replayed through the same entry points as the fuzz targets on every test run.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new("fuzz/regressions").join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&bytes));
        assert!(outcome.is_ok(), "{} panicked", path.display());
        count += 1;
    }
    assert!(count > 0, "no inputs in {}", dir.display());
    count
}

#[test]
fn transcripts_jsonl_inputs() {
    replay("transcripts_jsonl", calmline::fuzzing::transcripts_jsonl);
}

#[test]
fn transcripts_csv_inputs() {
    replay("transcripts_csv", calmline::fuzzing::transcripts_csv);
}

#[test]
fn policy_inputs() {
    replay("policy", calmline::fuzzing::policy);
}

#[test]
fn blob_inputs() {
    replay("blob", calmline::fuzzing::blob);
    // The hand-made seed is a valid blob, so the fuzzer starts from inside the format.
    let tiny = std::fs::read("fuzz/regressions/blob/tiny.bin").unwrap();
    let blob = calmline::model::blob::Blob::from_bytes(tiny).expect("tiny.bin parses");
    assert_eq!(blob.tensor_names().count(), 2);
    assert_eq!(blob.f32_prefix("layer.0.q", 32).unwrap().len(), 32);
}
