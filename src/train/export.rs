//! The training examples as the fine-tuning trainer (`trainer/finetune.py`) reads them: one JSON
//! line per example, tokenised here by calmline's own tokenizer, so training sees exactly the
//! token ids that serving will.
//!
//! ```json
//! {"source": "convabuse", "lang": "en", "split": "train", "ids": [0, 41, ...],
//!  "targets": [null, true, false, ...], "calmline_semantics": false}
//! ```
//! `ids` is the text's first window (`<s> query: text </s>`, at most the encoder's 512
//! positions); `targets` follows `labels::Label`'s order, `null` where the source does not
//! annotate that label; `calmline_semantics` is true for the sets whose labels mean exactly
//! calmline's (the project's own turns and the neutral sets), false for public sets mapped onto
//! them (the trainer's `--source-heads` gives those their own heads). No text is written: the
//! trainer needs none.

use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;

use super::datasets::{Example, Split, Targets};
use crate::model::tokenizer::TextTokenizer;

#[derive(Serialize)]
struct ExportedExample<'a> {
    source: &'a str,
    lang: &'a str,
    split: Split,
    ids: Vec<u32>,
    targets: Targets,
    calmline_semantics: bool,
}

/// Whether `source`'s labels are calmline's own: the project's turns and the neutral sets.
fn calmline_semantics(source: &str) -> bool {
    source.starts_with("calmline_") || super::neutral::NEUTRAL_SOURCES.iter().any(|(name, _)| *name == source)
}

/// Writes `examples` to `out` as JSON lines; returns how many were written.
pub fn write_examples(tokenizer: &TextTokenizer, examples: &[Example], out: &mut impl Write) -> Result<usize> {
    for (n, e) in examples.iter().enumerate() {
        let ids = tokenizer.windows(&e.text).with_context(|| format!("tokenising example {n} of {}", e.source))?.swap_remove(0);
        let line =
            ExportedExample { source: e.source, lang: e.lang, split: e.split, ids, targets: e.targets, calmline_semantics: calmline_semantics(e.source) };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
    }
    Ok(examples.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_projects_and_the_neutral_sets_carry_calmlines_semantics() {
        assert!(calmline_semantics(super::super::datasets::INDOMAIN_SOURCE));
        assert!(calmline_semantics(super::super::judgement::BEHAVIOUR_SOURCE));
        assert!(calmline_semantics("ntrex128_multi"));
        assert!(!calmline_semantics("germeval2018_de"));
    }

    #[test]
    fn splits_are_written_as_the_trainer_reads_them() {
        assert_eq!(serde_json::to_string(&[Split::Train, Split::Dev, Split::Test]).unwrap(), r#"["train","dev","test"]"#);
    }
}
