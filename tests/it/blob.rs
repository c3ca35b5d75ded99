//! The E5S1 reader on the real blob, and on damaged copies of it: always a clear error, never a
//! panic.

use std::path::Path;
use std::sync::Arc;

use calmline::model::blob::{Blob, BlobError, Encoding, Header};
use calmline::model::encoder::{Encoder, EncoderError};

fn real_bytes() -> Vec<u8> {
    std::fs::read("models/base/e5-small-q4.bin").expect("run `make setup` first")
}

#[test]
fn the_shipped_blob_has_the_documented_layout() {
    let blob = Blob::open(Path::new("models/base/e5-small-q4.bin")).unwrap();
    let expected = Header {
        version: 1,
        hidden: 384,
        layers: 12,
        heads: 12,
        ffn: 1536,
        vocab: 250_037,
        max_positions: 512,
        token_types: 2,
        layer_norm_eps: blob.header.layer_norm_eps,
        block_size: 32,
    };
    assert_eq!(blob.header, expected);
    assert!((blob.header.layer_norm_eps - 1e-12).abs() < 1e-15);
    assert_eq!(blob.tensor_names().count(), 5 + 12 * 16);
    assert_eq!(blob.entry("emb.word").unwrap().encoding, Encoding::Q4_0);
    assert_eq!(blob.entry("l11.fo.w").unwrap().elements, 384 * 1536);
    assert_eq!(blob.entry("l0.aln.b").unwrap().encoding, Encoding::F32);
}

#[test]
fn a_truncated_blob_is_a_clear_error_at_every_cut() {
    let bytes = real_bytes();
    // Cuts in the header, the tokenizer section, the directory, and the tensor data.
    for cut in [3, 20, 47, 1_000, 4_638_000, 4_638_300, 50_000_000, bytes.len() - 1] {
        let err = Blob::from_bytes(bytes[..cut].to_vec()).unwrap_err();
        assert!(matches!(err, BlobError::Truncated { .. }), "cut at {cut}: {err}");
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}

#[test]
fn corrupt_headers_and_directories_are_errors() {
    let bytes = real_bytes();
    let mut bad_magic = bytes[..64].to_vec();
    bad_magic[0] = b'X';
    assert!(matches!(Blob::from_bytes(bad_magic), Err(BlobError::BadMagic(_))));

    let mut zero_heads = bytes.clone();
    zero_heads[16..20].copy_from_slice(&0i32.to_le_bytes()); // heads
    assert!(matches!(Blob::from_bytes(zero_heads), Err(BlobError::BadHeader(_))));

    // The first directory entry is emb.word (name length 8 at the directory start + 4).
    let at = bytes.windows(8).position(|w| w == b"emb.word").unwrap();
    let mut bad_len = bytes.clone();
    // byte length field: after name (8), dtype (1), elements (4), offset (8)
    bad_len[at + 8 + 1 + 4 + 8..at + 8 + 1 + 4 + 8 + 8].copy_from_slice(&12345u64.to_le_bytes());
    let err = Blob::from_bytes(bad_len).unwrap_err();
    assert!(matches!(err, BlobError::BadTensor { ref name, .. } if name == "emb.word"), "{err}");

    let mut far_offset = bytes.clone();
    far_offset[at + 8 + 1 + 4..at + 8 + 1 + 4 + 8].copy_from_slice(&(u64::MAX - 10).to_le_bytes());
    assert!(matches!(Blob::from_bytes(far_offset), Err(BlobError::Truncated { .. })));
}

#[test]
fn a_blob_missing_a_tensor_fails_to_load_with_its_name() {
    let mut bytes = real_bytes();
    let at = bytes.windows(7).position(|w| w == b"l5.fi.w").unwrap();
    bytes[at..at + 7].copy_from_slice(b"l5.zz.w");
    let blob = Arc::new(Blob::from_bytes(bytes).unwrap());
    match Encoder::load(blob) {
        Err(EncoderError::Blob(BlobError::MissingTensor(name))) => assert_eq!(name, "l5.fi.w"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("loaded a blob without l5.fi.w"),
    }
}
