//! Readers for the neutral and everyday-language sets in `../shared/data` (MANIFEST.md, third
//! collection): text that is not abusive, in many languages, which the public abuse sets lack
//! (Hebrew abuse data is all positives; short support replies were almost absent). Each is a
//! negative for every abuse label, except that unscreened social and debate text rules out only
//! the severe harms (`ud_targets`); for frustration only where the text cannot be a complaint
//! (commands, greetings, confirmations, grammar-book sentences, news). They train the head as
//! negatives and measure the false-alarm budget: the flag rate on their test splits per language.

use std::path::Path;

use anyhow::{Context, Result};

use super::datasets::{Caps, Example, Split, Targets, clean_targets, csv_rows, stable_hash};
use crate::domain::labels::Label;

/// Neutral sets are many and long; a few hundred per language and split are enough as
/// negatives and as a flag-rate measurement. Dev is capped as test is: thresholds are held to the
/// 3% bar on dev, and with 120 texts a set one text was 0.8 points of it (Russian neutral text,
/// 240 dev texts, was within the 2% budget on dev and measured 3.8% on test; model card,
/// experiment 73).
pub const NEUTRAL_CAPS: Caps = Caps { train: 300, dev: 250, test: 250 };

type Reader = fn(&Path) -> Result<Vec<Example>>;

/// Every neutral source, by folder name in `../shared/data`.
pub const NEUTRAL_SOURCES: &[(&str, Reader)] = &[
    ("ud_sentences_multi", ud_sentences),
    ("xsid_multi", xsid),
    ("ntrex128_multi", ntrex),
    ("en_multidogo_customer_turns", multidogo),
    ("en_dstc11_intent_utterances", dstc11),
    ("en_polyai_banking77_nlupp", banking77),
    ("hu_hucola", hucola),
    ("hu_hucopa", hucopa),
    ("hu_husst", husst),
    ("he_sentiment_omilab", he_sentiment),
];

/// Not abusive, and not a complaint either.
fn calm() -> Targets {
    clean_targets(&[(Label::Frustration, false)])
}

/// Not abusive; may or may not be upset (a problem report, a review), so frustration is left out.
fn not_abusive() -> Targets {
    clean_targets(&[])
}

fn hash_split(key: &str) -> Split {
    match stable_hash(key) % 10 {
        0..=2 => Split::Test,
        3 => Split::Dev,
        _ => Split::Train,
    }
}

fn example(source: &'static str, lang: &'static str, key: &str, text: String, targets: Targets) -> Example {
    Example { source, lang, split: hash_split(key), text, targets }
}

/// A language code the rest of calmline knows, from the short codes these sets use.
fn lang_code(code: &str) -> Option<&'static str> {
    Some(match code {
        "en" | "eng" => "en",
        "hu" | "hun" => "hu",
        "he" | "heb" => "he",
        "de" | "deu" => "de",
        "pt" | "por" => "pt",
        "es" | "spa" => "es",
        "fr" | "fra" => "fr",
        "tr" | "tur" => "tr",
        "ru" | "rus" => "ru",
        "it" | "ita" => "it",
        "pl" | "pol" => "pl",
        "ar" | "arb" => "ar",
        "nl" | "nld" => "nl",
        "da" => "da",
        "zh" => "zh",
        "ja" => "ja",
        "id" => "id",
        "lt" => "lt",
        "kk" => "kk",
        "sr" => "sr",
        _ => return None,
    })
}

fn ud_sentences(dir: &Path) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "tsv") {
            continue;
        }
        for row in csv_rows(&path, b'\t', true)? {
            let (Some(lang), Some(treebank), Some(text)) = (row.get(0).and_then(lang_code), row.get(1), row.get(5)) else { continue };
            out.push(example("ud_sentences_multi", lang, text, text.to_string(), ud_targets(treebank)));
        }
    }
    Ok(out)
}

/// Encyclopedia, news, fiction and grammar are calm. Social posts, stock tweets, parliamentary
/// debates and reviews are people talking to and about each other, and nobody read them for
/// rudeness: scored by judgement-104, a sample of 250 Russian Taiga posts holds "Ты то позер самый
/// обычный" and "Мудачьё.", 250 Knesset sentences "רגע, גברת, … ואת כבר מתחילה עם שאלות?" —
/// rudeness and insult by calmline's own definitions. Counted as negatives for them, such texts
/// pushed Russian's and Hebrew's own rudeness cuts up by the neutral hold (model card, experiment
/// 79). There only the severe harms are negative; rudeness, insult, profanity and frustration are
/// left open.
fn ud_targets(treebank: &str) -> Targets {
    let unscreened = ["Taiga", "DANTEStocks", "knesset", "Tourism"].iter().any(|t| treebank.contains(t));
    if !unscreened {
        return calm();
    }
    let mut targets = not_abusive();
    for label in [Label::Rudeness, Label::Insult, Label::Profanity] {
        targets[label.index()] = None;
    }
    targets
}

fn xsid(dir: &Path) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for row in csv_rows(&dir.join("xsid_0.7_valid_test.tsv"), b'\t', true)? {
        let (Some(lang), Some(id), Some(text)) = (row.get(0).and_then(lang_code), row.get(2), row.get(3)) else { continue };
        // Parallel across languages: split by the item id, so a sentence and its translations
        // share a split.
        out.push(Example { source: "xsid_multi", lang, split: hash_split(&format!("xsid-{id}")), text: text.to_string(), targets: calm() });
    }
    Ok(out)
}

fn ntrex(dir: &Path) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for (file, lang) in [
        ("newstest2019-src.eng.txt", "en"),
        ("newstest2019-ref.hun.txt", "hu"),
        ("newstest2019-ref.heb.txt", "he"),
        ("newstest2019-ref.deu.txt", "de"),
        ("newstest2019-ref.por-BR.txt", "pt"),
        ("newstest2019-ref.spa.txt", "es"),
        ("newstest2019-ref.fra.txt", "fr"),
        ("newstest2019-ref.tur.txt", "tr"),
        ("newstest2019-ref.arb.txt", "ar"),
        ("newstest2019-ref.rus.txt", "ru"),
        ("newstest2019-ref.ita.txt", "it"),
        ("newstest2019-ref.pol.txt", "pl"),
        ("newstest2019-ref.nld.txt", "nl"),
    ] {
        let path = dir.join(file);
        let content = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        for (n, line) in content.lines().enumerate() {
            // News may report crime or anger, but is nobody's complaint or abuse.
            out.push(Example { source: "ntrex128_multi", lang, split: hash_split(&format!("ntrex-{n}")), text: line.trim().to_string(), targets: calm() });
        }
    }
    Ok(out)
}

fn multidogo(dir: &Path) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for row in csv_rows(&dir.join("multidogo_turn_level.tsv"), b'\t', true)? {
        let (Some(split), Some(text), Some(intent)) = (row.get(1), row.get(4), row.get(5)) else { continue };
        let split = match split {
            "train" => Split::Train,
            "dev" => Split::Dev,
            "test" => Split::Test,
            _ => continue,
        };
        // Greetings, confirmations and thanks are the short neutral replies of a support chat;
        // a rejection or a request may be annoyed.
        let targets = if matches!(intent, "openinggreeting" | "closinggreeting" | "confirmation" | "thankyou") { calm() } else { not_abusive() };
        out.push(Example { source: "en_multidogo_customer_turns", lang: "en", split, text: text.to_string(), targets });
    }
    Ok(out)
}

fn dstc11(dir: &Path) -> Result<Vec<Example>> {
    #[derive(serde::Deserialize)]
    struct Row {
        utterance: String,
    }
    let mut out = Vec::new();
    for folder in ["development_insurance", "test-banking", "test-finance"] {
        let path = dir.join(folder).join("test-utterances.jsonl");
        let content = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        for line in content.lines().filter(|l| !l.trim().is_empty()) {
            let row: Row = serde_json::from_str(line).with_context(|| format!("parsing {}", path.display()))?;
            out.push(example("en_dstc11_intent_utterances", "en", &row.utterance, row.utterance.clone(), not_abusive()));
        }
    }
    Ok(out)
}

fn banking77(dir: &Path) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for file in ["train.csv", "test.csv"] {
        for row in csv_rows(&dir.join("banking_data").join(file), b',', true)? {
            let Some(text) = row.get(0) else { continue };
            out.push(example("en_polyai_banking77_nlupp", "en", text, text.to_string(), not_abusive()));
        }
    }
    Ok(out)
}

#[derive(serde::Deserialize)]
struct HuluRow {
    #[serde(rename = "Sent")]
    sent: String,
    #[serde(default)]
    label: Option<String>,
}

fn hulu_rows(path: &Path) -> Result<Vec<HuluRow>> {
    let content = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&content).with_context(|| format!("parsing {}", path.display()))
}

fn hucola(dir: &Path) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for file in ["cola_train.json", "cola_dev.json"] {
        for row in hulu_rows(&dir.join(file))? {
            out.push(example("hu_hucola", "hu", &row.sent, row.sent.clone(), calm()));
        }
    }
    Ok(out)
}

fn hucopa(dir: &Path) -> Result<Vec<Example>> {
    #[derive(serde::Deserialize)]
    struct Row {
        premise: String,
        choice1: String,
        choice2: String,
    }
    let mut out = Vec::new();
    for file in ["train.json", "val.json", "test.json"] {
        let path = dir.join(file);
        let content = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let rows: Vec<Row> = serde_json::from_str(&content).with_context(|| format!("parsing {}", path.display()))?;
        for row in rows {
            // An item's three sentences share a split: they are about one situation.
            let split = hash_split(&row.premise);
            for text in [row.premise, row.choice1, row.choice2] {
                out.push(Example { source: "hu_hucopa", lang: "hu", split, text, targets: not_abusive() });
            }
        }
    }
    Ok(out)
}

fn husst(dir: &Path) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for file in ["sst_train.json", "sst_dev.json"] {
        for row in hulu_rows(&dir.join(file))? {
            // Negative film reviews may insult the film's makers: only neutral and positive.
            if matches!(row.label.as_deref(), Some("neutral" | "positive")) {
                out.push(example("hu_husst", "hu", &row.sent, row.sent.clone(), calm()));
            }
        }
    }
    Ok(out)
}

fn he_sentiment(dir: &Path) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for row in csv_rows(&dir.join("token_dedup_derived.tsv"), b'\t', true)? {
        // Label 0 is positive; 1 (political criticism, some insulting) and 2 (off-topic, with
        // insults and threats at other commenters) are never negatives.
        let (Some("0"), Some(text)) = (row.get(1), row.get(2)) else { continue };
        out.push(example("he_sentiment_omilab", "he", text, text.to_string(), calm()));
    }
    Ok(out)
}

/// Loads every neutral source found under `data_dir`, capped by `NEUTRAL_CAPS`.
pub fn load_neutral(data_dir: &Path) -> Result<Vec<Example>> {
    let mut all = Vec::new();
    for (name, reader) in NEUTRAL_SOURCES {
        let dir = data_dir.join(name);
        if !dir.is_dir() {
            eprintln!("warning: neutral set {name} not found under {}; skipped", data_dir.display());
            continue;
        }
        let examples = reader(&dir).with_context(|| format!("loading neutral set {name}"))?;
        all.extend(super::datasets::cap(examples, NEUTRAL_CAPS));
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::judgement::ABUSE;

    #[test]
    fn social_posts_and_debates_leave_rudeness_open_and_rule_out_the_severe_harms() {
        let taiga = ud_targets("UD_Russian-Taiga");
        for label in [Label::Rudeness, Label::Insult, Label::Profanity, Label::Frustration] {
            assert_eq!(taiga[label.index()], None, "{label:?}");
        }
        for label in [Label::Threat, Label::IdentityAttack, Label::SexualHarassment] {
            assert_eq!(taiga[label.index()], Some(false), "{label:?}");
        }
        assert_eq!(ud_targets("UD_Russian-GSD"), calm());
    }

    #[test]
    fn every_neutral_text_rules_out_the_severe_harms_and_the_languages_are_there() {
        let examples = load_neutral(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")).unwrap();
        let severe = [Label::Threat, Label::IdentityAttack, Label::SexualHarassment];
        assert!(examples.iter().all(|e| severe.iter().all(|l| e.targets[l.index()] == Some(false)) && !e.text.trim().is_empty()));
        let clean = examples.iter().filter(|e| ABUSE.iter().all(|l| e.targets[l.index()] == Some(false))).count();
        assert!(clean * 10 > examples.len() * 9, "{clean} of {} neutral texts clean of every abuse label", examples.len());
        for lang in ["en", "hu", "he", "de", "pt", "es", "fr", "tr", "ar", "ru", "it", "pl"] {
            let test = examples.iter().filter(|e| e.lang == lang && e.split == Split::Test).count();
            assert!(test >= 200, "{lang}: {test} neutral test texts");
        }
    }
}
