//! Emotion, sentiment and politeness sets: their anger, annoyance or impoliteness labels map to
//! frustration or rudeness, the rest of calmline's labels are masked.

use std::path::Path;

use anyhow::Result;

use super::*;

pub(super) fn goemotions(dir: &Path) -> Result<Vec<Example>> {
    // Ids (emotions.txt): 2 anger, 3 annoyance, 9 disappointment, 10 disapproval.
    let mut out = Vec::new();
    for (file, split) in [("train.tsv", Split::Train), ("dev.tsv", Split::Dev), ("test.tsv", Split::Test)] {
        for row in csv_rows(&dir.join(file), b'\t', false)? {
            let ids: Vec<&str> = row.get(1).unwrap_or("").split(',').collect();
            let frustrated = ids.iter().any(|i| matches!(*i, "2" | "3" | "9"));
            let disapproval_only = !frustrated && ids.contains(&"10");
            let t = if disapproval_only { [None; LABEL_COUNT] } else { targets(&[(Label::Frustration, frustrated)]) };
            out.push(Example { source: "goemotions_en", lang: "en", split, text: row[0].to_string(), targets: t });
        }
    }
    Ok(out)
}

pub(super) fn tydip(dir: &Path) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for (file, official_test) in [("en_train_binary.csv", false), ("en_test_binary.csv", true)] {
        for row in csv_rows(&dir.join("binary").join(file), b',', true)? {
            let Ok(score) = row.get(1).unwrap_or("").parse::<f32>() else { continue };
            let text = row[0].to_string();
            let split = official_split(&text, official_test);
            out.push(Example { source: "tydip_en", lang: "en", split, text, targets: targets(&[(Label::Rudeness, score < 0.0)]) });
        }
    }
    Ok(out)
}

pub(super) fn xed(dir: &Path) -> Result<Vec<Example>> {
    // XED label 1 is anger: the closest signal of frustration in hu, he, de, es, fr.
    let mut out = Vec::new();
    let files: [(&str, &'static str); 6] = [
        ("en-annotated.tsv", "en"),
        ("projections/hu-projections.tsv", "hu"),
        ("projections/he-projections.tsv", "he"),
        ("projections/de-projections.tsv", "de"),
        ("projections/es-projections.tsv", "es"),
        ("projections/fr-projections.tsv", "fr"),
    ];
    for (file, lang) in files {
        for row in csv_rows(&dir.join(file), b'\t', false)? {
            let text = row[0].to_string();
            let anger = row.get(1).unwrap_or("").split(',').any(|l| l.trim() == "1");
            let split = hash_split(&text);
            out.push(Example { source: "xed", lang, split, text, targets: targets(&[(Label::Frustration, anger)]) });
        }
    }
    Ok(out)
}

pub(super) fn hebemo(dir: &Path) -> Result<Vec<Example>> {
    use Label::*;
    let mut out = Vec::new();
    for (file, test) in [("hebemo_main_covid.csv", false), ("hebemo_test_insample_covid.csv", true)] {
        let path = dir.join(file);
        let head = headers(&path, b',')?;
        let (text_col, anger_col, disgust_col) = (column(&head, "text")?, column(&head, "anger_agreed")?, column(&head, "disgust_agreed")?);
        for row in csv_rows(&path, b',', true)? {
            let agreed = |c: usize| row.get(c).and_then(|v| v.trim().parse::<f32>().ok());
            let text = row.get(text_col).unwrap_or("").to_string();
            let mut pairs = Vec::new();
            match agreed(anger_col) {
                Some(v) if v >= 1.0 => pairs.push((Frustration, true)),
                Some(_) => pairs.push((Frustration, false)),
                None => {}
            }
            // Comments agreed to carry neither anger nor disgust serve as Hebrew negatives for
            // abuse: without them OLaH-450 teaches that Hebrew itself is abusive.
            if matches!(agreed(anger_col), Some(v) if v < 1.0) && matches!(agreed(disgust_col), Some(v) if v < 1.0) {
                pairs.extend([(Insult, false), (IdentityAttack, false), (Threat, false), (Rudeness, false)]);
            }
            if pairs.is_empty() {
                continue;
            }
            let split = official_split(&text, test);
            out.push(Example { source: "hebemo_he", lang: "he", split, text, targets: targets(&pairs) });
        }
    }
    Ok(out)
}

pub(super) fn stanford_politeness(dir: &Path) -> Result<Vec<Example>> {
    // The usual binarisation: bottom quartile of the normalised score impolite, top quartile polite.
    let mut out = Vec::new();
    for file in ["wikipedia.annotated.csv", "stack-exchange.annotated.csv"] {
        let rows = csv_rows(&dir.join(file), b',', true)?;
        let mut scored: Vec<(String, f32)> = rows.iter().filter_map(|r| Some((r.get(2)?.to_string(), r.get(13)?.parse().ok()?))).collect();
        let mut scores: Vec<f32> = scored.iter().map(|s| s.1).collect();
        scores.sort_by(f32::total_cmp);
        if scores.is_empty() {
            continue;
        }
        let (low, high) = (scores[scores.len() / 4], scores[scores.len() * 3 / 4]);
        for (text, score) in scored.drain(..) {
            let rude = if score <= low {
                true
            } else if score >= high {
                false
            } else {
                continue;
            };
            out.push(Example { source: "en_stanford_politeness", lang: "en", split: hash_split(&text), text, targets: targets(&[(Label::Rudeness, rude)]) });
        }
    }
    Ok(out)
}
