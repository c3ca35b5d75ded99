//! Tokenisation for the e5 encoder: the `"query: "` prefix, special tokens, and windowing of
//! texts longer than the model's 512 positions (never silently cut).

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    #[error("cannot load tokenizer {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("tokenizer failed: {0}")]
    Encode(String),
}

/// e5 was trained with a task prefix; "query: " is the one for classification-like use.
pub const PREFIX: &str = "query: ";

pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    /// Tokens of the prefix, without specials.
    prefix: Vec<u32>,
    bos: u32,
    eos: u32,
    max_len: usize,
}

impl TextTokenizer {
    pub fn load(path: &Path, max_len: usize) -> Result<Self, TokenizeError> {
        let load_err = |reason: String| TokenizeError::Load { path: path.display().to_string(), reason };
        let mut inner = tokenizers::Tokenizer::from_file(path).map_err(|e| load_err(e.to_string()))?;
        // tokenizer.json may carry truncation or padding settings; windowing and batching are
        // ours, so neither may cut or pad behind our back.
        inner.with_truncation(None).map_err(|e| load_err(e.to_string()))?;
        inner.with_padding(None);
        let bos = inner.token_to_id("<s>").ok_or_else(|| load_err("no <s> token".into()))?;
        let eos = inner.token_to_id("</s>").ok_or_else(|| load_err("no </s> token".into()))?;
        let mut tokenizer = TextTokenizer { inner, prefix: Vec::new(), bos, eos, max_len };
        // Encode "query:" without its space: alone, the trailing space would become a lone "▁"
        // piece that never occurs before real text.
        let prefix = tokenizer
            .inner
            .encode(PREFIX.trim_end(), false)
            .map_err(|e| load_err(e.to_string()))?;
        tokenizer.prefix = prefix.get_ids().to_vec();
        if tokenizer.prefix.len() + 3 > max_len {
            return Err(load_err(format!("max length {max_len} leaves no room for text")));
        }
        Ok(tokenizer)
    }

    /// `<s> query: text </s>` as token ids, however long.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizeError> {
        let encoding = self
            .inner
            .encode(format!("{PREFIX}{text}"), true)
            .map_err(|e| TokenizeError::Encode(e.to_string()))?;
        let ids = encoding.get_ids();
        if ids.len() < 2 || ids[0] != self.bos || ids[ids.len() - 1] != self.eos {
            return Err(TokenizeError::Encode("unexpected special-token layout".into()));
        }
        Ok(ids.to_vec())
    }

    /// Token windows for one text: a single sequence when it fits, else overlapping windows of
    /// `<s> query: chunk </s>`, each at most `max_len` long, covering every token.
    pub fn windows(&self, text: &str) -> Result<Vec<Vec<u32>>, TokenizeError> {
        let full = self.encode(text)?;
        if full.len() <= self.max_len {
            return Ok(vec![full]);
        }
        let content = &full[1 + self.prefix.len()..full.len() - 1];
        let chunk = self.max_len - 2 - self.prefix.len();
        // A quarter of each window overlaps the previous one, so a phrase cut at a window edge
        // is seen whole in the next window.
        let stride = chunk - chunk / 4;
        let mut windows = Vec::new();
        let mut start = 0;
        loop {
            let end = (start + chunk).min(content.len());
            let mut w = Vec::with_capacity(end - start + 2 + self.prefix.len());
            w.push(self.bos);
            w.extend_from_slice(&self.prefix);
            w.extend_from_slice(&content[start..end]);
            w.push(self.eos);
            windows.push(w);
            if end == content.len() {
                return Ok(windows);
            }
            start += stride;
        }
    }

    /// Tokens of the `"query: "` prefix (without specials).
    pub fn prefix_len(&self) -> usize {
        self.prefix.len()
    }
}
