//! Tokenisation for the e5 encoder: the `"query: "` prefix, special tokens, and windowing of
//! texts longer than the model's 512 positions (never silently cut).
//!
//! The normaliser (sentencepiece's precompiled character map) and the pre-tokeniser (Metaspace)
//! are the `tokenizers` crate's, read from tokenizer.json; the Unigram model is ours. The
//! crate's Unigram keeps a character trie of the 250,002 pieces that costs about 280 MB of
//! memory — two thirds of the server's — where a hash of the pieces costs about 20 MB. The
//! search is the same Viterbi as the crate's (`encode_optimized`: pieces tried shortest first,
//! strictly better scores win, an unknown character scores the lowest piece minus 10, unknown
//! runs fused into one `<unk>`), and `tests/it/tokenizer.rs` checks the ids against the crate's on
//! thousands of texts in many scripts. One deliberate difference: special-token strings typed
//! in a customer's text ("<s>", "<mask>") are read as text, never as control tokens (the crate
//! turns them into the control tokens themselves).

use std::path::Path;

pub use super::error::TokenizeError;

/// e5 was trained with a task prefix; "query: " is the one for classification-like use.
pub const PREFIX: &str = "query: ";

/// Each token's byte range in the text, `None` for the specials and the prefix.
pub type TokenOffsets = Vec<Option<(usize, usize)>>;

pub struct TextTokenizer {
    normalizer: tokenizers::normalizers::NormalizerWrapper,
    pre_tokenizer: tokenizers::pre_tokenizers::PreTokenizerWrapper,
    pieces: UnigramPieces,
    /// Tokens of the prefix, without specials.
    prefix: Vec<u32>,
    bos: u32,
    eos: u32,
    max_len: usize,
}

/// The Unigram model's pieces: id and log-probability by UTF-8 bytes.
struct UnigramPieces {
    ids: std::collections::HashMap<Box<[u8]>, u32>,
    scores: Vec<f64>,
    /// The longest piece, in bytes: no match is looked for beyond it.
    longest: usize,
    unk_id: u32,
    /// The score of an unknown character: the lowest piece's, minus 10 (as sentencepiece).
    unk_score: f64,
}

#[derive(serde::Deserialize)]
struct TokenizerJson {
    added_tokens: Vec<AddedToken>,
    normalizer: tokenizers::normalizers::NormalizerWrapper,
    pre_tokenizer: tokenizers::pre_tokenizers::PreTokenizerWrapper,
    model: UnigramJson,
}

#[derive(serde::Deserialize)]
struct AddedToken {
    id: u32,
    content: String,
    special: bool,
}

#[derive(serde::Deserialize)]
struct UnigramJson {
    r#type: String,
    unk_id: Option<u32>,
    vocab: Vec<(String, f64)>,
}

impl UnigramPieces {
    /// `control`: the special tokens' ids, left out of the search so a text can never produce them.
    fn new(model: UnigramJson, control: &[u32]) -> Result<Self, String> {
        if model.r#type != "Unigram" {
            return Err(format!("a {} model; calmline reads Unigram (sentencepiece) tokenizers", model.r#type));
        }
        let unk_id = model.unk_id.ok_or("the Unigram model has no unk_id")?;
        if unk_id as usize >= model.vocab.len() {
            return Err(format!("unk_id {unk_id} is outside the vocabulary of {}", model.vocab.len()));
        }
        let min_score = model.vocab.iter().map(|(_, score)| *score).fold(f64::INFINITY, f64::min);
        let mut ids = std::collections::HashMap::with_capacity(model.vocab.len());
        let mut scores = Vec::with_capacity(model.vocab.len());
        let mut longest = 0;
        for (id, (piece, score)) in model.vocab.into_iter().enumerate() {
            scores.push(score);
            if control.contains(&(id as u32)) {
                continue;
            }
            longest = longest.max(piece.len());
            // A piece listed twice keeps its first id, as the crate's map does.
            ids.entry(piece.into_bytes().into_boxed_slice()).or_insert(id as u32);
        }
        Ok(UnigramPieces { ids, scores, longest, unk_id, unk_score: min_score - 10.0 })
    }

    /// The best segmentation of one pre-tokenised word, as ids, appended to `out`.
    fn encode_word(&self, word: &str, out: &mut Vec<u32>) {
        self.encode_word_ranges(word, out, None);
    }

    /// `encode_word`, also appending each piece's byte range in `word` to `ranges` when given.
    fn encode_word_ranges(&self, word: &str, out: &mut Vec<u32>, mut ranges: Option<&mut Vec<(usize, usize)>>) {
        #[derive(Clone, Copy)]
        struct Best {
            score: f64,
            /// Where the best piece ending here starts, and its id.
            from: usize,
            id: u32,
            reached: bool,
        }
        let bytes = word.as_bytes();
        let mut best = vec![Best { score: 0.0, from: 0, id: 0, reached: false }; bytes.len() + 1];
        best[0].reached = true;
        let offer = |best: &mut Vec<Best>, from: usize, to: usize, id: u32, score: f64| {
            let candidate = best[from].score + score;
            if !best[to].reached || candidate > best[to].score {
                best[to] = Best { score: candidate, from, id, reached: true };
            }
        };
        for (start, c) in word.char_indices() {
            let char_len = c.len_utf8();
            let mut single = false;
            for end in start + 1..=bytes.len().min(start + self.longest) {
                if let Some(&id) = self.ids.get(&bytes[start..end]) {
                    offer(&mut best, start, end, id, self.scores[id as usize]);
                    single |= end - start == char_len;
                }
            }
            if !single {
                offer(&mut best, start, start + char_len, self.unk_id, self.unk_score);
            }
        }
        // Walk back from the end; consecutive unknown characters become one <unk>.
        let first = out.len();
        let first_range = ranges.as_ref().map_or(0, |r| r.len());
        let mut end = bytes.len();
        while end > 0 {
            let node = best[end];
            let fused = node.id == self.unk_id && out.len() > first && out[out.len() - 1] == self.unk_id;
            if !fused {
                out.push(node.id);
            }
            if let Some(r) = ranges.as_deref_mut() {
                match r.last_mut() {
                    Some(last) if fused => last.0 = node.from,
                    _ => r.push((node.from, end)),
                }
            }
            end = node.from;
        }
        out[first..].reverse();
        if let Some(r) = ranges {
            r[first_range..].reverse();
        }
    }
}

impl TextTokenizer {
    pub fn load(path: &Path, max_len: usize) -> Result<Self, TokenizeError> {
        let load_err = |reason: String| TokenizeError::Load { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| load_err(e.to_string()))?;
        let json: TokenizerJson = serde_json::from_str(&text).map_err(|e| load_err(e.to_string()))?;
        drop(text);
        let control: Vec<u32> = json.added_tokens.iter().filter(|t| t.special).map(|t| t.id).collect();
        let special =
            |name: &str| json.added_tokens.iter().find(|t| t.special && t.content == name).map(|t| t.id).ok_or_else(|| load_err(format!("no {name} token")));
        let (bos, eos) = (special("<s>")?, special("</s>")?);
        let pieces = UnigramPieces::new(json.model, &control).map_err(load_err)?;
        let mut tokenizer = TextTokenizer { normalizer: json.normalizer, pre_tokenizer: json.pre_tokenizer, pieces, prefix: Vec::new(), bos, eos, max_len };
        // Encode "query:" without its space: alone, the trailing space would become a lone "▁"
        // piece that never occurs before real text.
        tokenizer.prefix = tokenizer.pieces_of(PREFIX.trim_end()).map_err(|e| load_err(e.to_string()))?;
        if tokenizer.prefix.len() + 3 > max_len {
            return Err(load_err(format!("max length {max_len} leaves no room for text")));
        }
        Ok(tokenizer)
    }

    /// Normalises, pre-tokenises and segments `text`: its piece ids, without specials.
    fn pieces_of(&self, text: &str) -> Result<Vec<u32>, TokenizeError> {
        use tokenizers::{Normalizer, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};
        let mut normalized = tokenizers::NormalizedString::from(text);
        self.normalizer.normalize(&mut normalized).map_err(|e| TokenizeError::Encode(e.to_string()))?;
        let mut words = PreTokenizedString::from(normalized);
        self.pre_tokenizer.pre_tokenize(&mut words).map_err(|e| TokenizeError::Encode(e.to_string()))?;
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        for (word, _, _) in words.get_splits(OffsetReferential::Original, OffsetType::None) {
            self.pieces.encode_word(word, &mut ids);
        }
        Ok(ids)
    }

    /// `encode`'s ids with each token's byte range in `text` (`None` for the specials and the
    /// prefix), mapped back through the normaliser's alignments, without the space before a word.
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<u32>, TokenOffsets), TokenizeError> {
        use tokenizers::{Normalizer, PreTokenizedString, PreTokenizer};
        let full = format!("{PREFIX}{text}");
        let mut normalized = tokenizers::NormalizedString::from(full.as_str());
        self.normalizer.normalize(&mut normalized).map_err(|e| TokenizeError::Encode(e.to_string()))?;
        let mut words = PreTokenizedString::from(normalized);
        self.pre_tokenizer.pre_tokenize(&mut words).map_err(|e| TokenizeError::Encode(e.to_string()))?;
        let pieces = std::cell::RefCell::new((vec![self.bos], vec![None]));
        words
            .tokenize(|word| {
                let (ids, offsets) = &mut *pieces.borrow_mut();
                let mut ranges = Vec::new();
                self.pieces.encode_word_ranges(word.get(), ids, Some(&mut ranges));
                let shift = word.offsets_original().0;
                for (from, to) in ranges {
                    let original = word.convert_offsets(tokenizers::normalizer::Range::Normalized(from..to)).map(|r| (shift + r.start, shift + r.end));
                    offsets.push(original.and_then(|(from, to)| {
                        let from = from + full[from..to].len() - full[from..to].trim_start().len();
                        // Offsets into `text`: the prefix's own pieces (and a lone "▁") have none.
                        (from >= PREFIX.len() && to > from).then(|| (from - PREFIX.len(), to - PREFIX.len()))
                    }));
                }
                Ok(Vec::new())
            })
            .map_err(|e| TokenizeError::Encode(e.to_string()))?;
        let (mut ids, mut offsets) = pieces.into_inner();
        ids.push(self.eos);
        offsets.push(None);
        Ok((ids, offsets))
    }

    /// `<s> query: text </s>` as token ids, however long.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizeError> {
        let pieces = self.pieces_of(&format!("{PREFIX}{text}"))?;
        let mut ids = Vec::with_capacity(pieces.len() + 2);
        ids.push(self.bos);
        ids.extend_from_slice(&pieces);
        ids.push(self.eos);
        Ok(ids)
    }

    /// Token windows for one text: a single sequence when it fits, else overlapping windows of
    /// `<s> query: chunk </s>`, each at most `max_len` long, covering every token.
    pub fn windows(&self, text: &str) -> Result<Vec<Vec<u32>>, TokenizeError> {
        let full = self.encode(text)?;
        Ok(self.window_ranges(full.len()).into_iter().map(|range| self.window(&full, range)).collect())
    }

    /// `windows`, each with its tokens' byte ranges in `text` (see `encode_with_offsets`).
    pub fn windows_with_offsets(&self, text: &str) -> Result<Vec<(Vec<u32>, TokenOffsets)>, TokenizeError> {
        let (ids, offsets) = self.encode_with_offsets(text)?;
        Ok(self.window_ranges(ids.len()).into_iter().map(|range| (self.window(&ids, range.clone()), self.window(&offsets, range))).collect())
    }

    /// Which content tokens (those between `<s> query:` and `</s>`) each window holds, for an
    /// encoded text of `encoded_len` tokens. A quarter of each window overlaps the previous
    /// one, so a phrase cut at a window edge is seen whole in the next window.
    fn window_ranges(&self, encoded_len: usize) -> Vec<std::ops::Range<usize>> {
        let content_start = 1 + self.prefix.len();
        let content_len = encoded_len - content_start - 1;
        if encoded_len <= self.max_len {
            return std::iter::once(0..content_len).collect();
        }
        let chunk = self.max_len - 2 - self.prefix.len();
        let stride = chunk - chunk / 4;
        let mut ranges = Vec::new();
        let mut start = 0;
        loop {
            let end = (start + chunk).min(content_len);
            ranges.push(start..end);
            if end == content_len {
                return ranges;
            }
            start += stride;
        }
    }

    /// One window of an encoded text (ids or their offsets): its first token, the prefix, the
    /// content `range`, its last token.
    fn window<T: Clone>(&self, encoded: &[T], range: std::ops::Range<usize>) -> Vec<T> {
        let content_start = 1 + self.prefix.len();
        let mut w = Vec::with_capacity(range.len() + content_start + 1);
        w.extend_from_slice(&encoded[..content_start]);
        w.extend_from_slice(&encoded[content_start + range.start..content_start + range.end]);
        w.push(encoded[encoded.len() - 1].clone());
        w
    }

    /// Tokens of the `"query: "` prefix (without specials).
    pub fn prefix_len(&self) -> usize {
        self.prefix.len()
    }
}
