//! The training examples as the fine-tuning trainer (`trainer/finetune.py`) reads them: one JSON
//! line per example, tokenised here by calmline's own tokenizer, so training sees exactly the
//! token ids that serving will.
//!
//! ```json
//! {"source": "convabuse", "lang": "en", "split": "train", "ids": [0, 41, ...],
//!  "targets": [null, true, false, ...], "calmline_semantics": false}
//! {"source": "calmline_training", "lang": "en", "split": "train", "ids": [0, 87, ...],
//!  "targets": [null, false, null, null, true, null, null], "calmline_semantics": true,
//!  "group": "en-t10-g004"}
//! ```
//! `ids` is the text's first window (`<s> query: text </s>`, at most the encoder's 512
//! positions); `targets` follows `labels::Label`'s order, `null` where the source does not
//! annotate that label; `calmline_semantics` is true for the sets whose labels mean exactly
//! calmline's (the project's own turns and the neutral sets), false for public sets mapped onto
//! them (the trainer's `--source-heads` gives those their own heads); `group`, on the project's
//! cases only, is the case's twin group (cases written side by side, the same moment abusive and
//! only angry), which the trainer's `--twin-pairs` ranks against each other. No text is written:
//! the trainer needs none.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::datasets::{Example, Split, Targets};
use super::judgement::{BEHAVIOUR_SOURCE, TRAINING_SOURCE, load_cases};
use crate::model::tokenizer::TextTokenizer;

#[derive(Serialize)]
struct ExportedExample<'a> {
    source: &'a str,
    lang: &'a str,
    split: Split,
    ids: Vec<u32>,
    targets: Targets,
    calmline_semantics: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
}

/// Twin groups of the project's cases, by source, language and text.
pub type TwinGroups = HashMap<(&'static str, String, String), String>;

/// The group of every case of the behaviour suite and of the training turns (the folders given),
/// keyed by the source its examples carry, its language and its text. A text written twice in one
/// language (a bare "ok", an Italian retort in rounds 9 and 27) keeps its first group: the
/// examples carry no case id to tell the two apart, and the trainer pairs only labels that differ.
pub fn twin_groups(behaviour: Option<&Path>, training: Option<&Path>) -> Result<TwinGroups> {
    let mut groups = TwinGroups::new();
    for (source, dir) in [(BEHAVIOUR_SOURCE, behaviour), (TRAINING_SOURCE, training)] {
        if let Some(dir) = dir {
            for case in load_cases(dir)? {
                groups.entry((source, case.lang, case.text)).or_insert(case.group);
            }
        }
    }
    Ok(groups)
}

/// Whether `source`'s labels are calmline's own: the project's turns and the neutral sets.
fn calmline_semantics(source: &str) -> bool {
    source.starts_with("calmline_") || super::neutral::NEUTRAL_SOURCES.iter().any(|(name, _)| *name == source)
}

/// Writes `examples` to `out` as JSON lines; returns how many were written.
pub fn write_examples(tokenizer: &TextTokenizer, examples: &[Example], groups: &TwinGroups, out: &mut impl Write) -> Result<usize> {
    for (n, e) in examples.iter().enumerate() {
        let ids = tokenizer.windows(&e.text).with_context(|| format!("tokenising example {n} of {}", e.source))?.swap_remove(0);
        serde_json::to_writer(&mut *out, &exported(e, ids, groups))?;
        out.write_all(b"\n")?;
    }
    Ok(examples.len())
}

fn exported<'a>(e: &'a Example, ids: Vec<u32>, groups: &'a TwinGroups) -> ExportedExample<'a> {
    ExportedExample {
        source: e.source,
        lang: e.lang,
        split: e.split,
        ids,
        targets: e.targets,
        calmline_semantics: calmline_semantics(e.source),
        group: groups.get(&(e.source, e.lang.to_string(), e.text.clone())).map(String::as_str),
    }
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
    fn project_cases_carry_their_twin_group_and_public_texts_none() {
        let dir = std::env::temp_dir().join(format!("calmline-twins-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let case = |id: &str, text: &str, must: &str, must_not: &str| {
            format!(
                r#"{{"id": "{id}", "lang": "en", "functionality": "threat_violent", "group": "en-t30-g001", "split": "train", "text": "{text}", "must": [{must}], "must_not": [{must_not}], "actions": ["INVOLVE_MANAGER"]}}"#
            )
        };
        let lines = [case("en-t30-0001", "I know where you park.", r#""threat""#, ""), case("en-t30-0002", "I know where to complain.", "", r#""threat""#)];
        std::fs::write(dir.join("en-r30.jsonl"), lines.join("\n")).unwrap();
        let groups = twin_groups(None, Some(&dir)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let example = |source: &'static str, lang: &'static str| Example {
            source,
            lang,
            split: Split::Train,
            text: "I know where to complain.".into(),
            targets: [None; 7],
        };
        let line = serde_json::to_string(&exported(&example(TRAINING_SOURCE, "en"), vec![0, 2], &groups)).unwrap();
        assert!(line.ends_with(r#""calmline_semantics":true,"group":"en-t30-g001"}"#), "{line}");
        // The same text in a public set, or in another language, is no one's twin.
        for other in [example("convabuse", "en"), example(TRAINING_SOURCE, "de")] {
            let line = serde_json::to_string(&exported(&other, vec![0, 2], &groups)).unwrap();
            assert!(!line.contains("group"), "{line}");
        }
    }

    #[test]
    fn splits_are_written_as_the_trainer_reads_them() {
        assert_eq!(serde_json::to_string(&[Split::Train, Split::Dev, Split::Test]).unwrap(), r#"["train","dev","test"]"#);
    }
}
