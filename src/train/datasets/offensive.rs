//! Offensive, abusive and hate-speech sets: each set's own labels mapped to what they mean in
//! calmline's terms (a generic "offensive" trains no label aimed at the agent).

use std::path::Path;

use anyhow::{Context, Result};

use super::*;

pub(super) fn germeval(dir: &Path) -> Result<Vec<Example>> {
    use Label::*;
    let mut out = Vec::new();
    for (file, official_test) in [("germeval2018.training.txt", false), ("germeval2018.test.txt", true)] {
        for row in csv_rows(&dir.join(file), b'\t', false)? {
            let (text, coarse, fine) = (row[0].to_string(), row.get(1).unwrap_or(""), row.get(2).unwrap_or(""));
            // Tweets about third parties, not turns to an agent: offensive is not rudeness at
            // the agent, so rudeness is left unannotated (judgement issue, item 4).
            let t = match (coarse, fine) {
                ("OTHER", _) => clean(&[]),
                ("OFFENSE", "INSULT") => targets(&[(Insult, true)]),
                ("OFFENSE", "ABUSE") => targets(&[(Insult, true)]),
                ("OFFENSE", "PROFANITY") => targets(&[(Profanity, true), (Insult, false), (IdentityAttack, false)]),
                _ => continue,
            };
            // The official release has no dev split: a tenth of train, by text hash, serves.
            let split = official_split(&text, official_test);
            out.push(Example { source: "germeval2018_de", lang: "de", split, text, targets: t });
        }
    }
    Ok(out)
}

pub(super) fn told_br(dir: &Path) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for (file, split) in
        [("ptbr_train_2annotator.csv", Split::Train), ("ptbr_validation_2annotator.csv", Split::Dev), ("ptbr_test_2annotator.csv", Split::Test)]
    {
        for row in csv_rows(&dir.join("splits_2annotator").join(file), b',', true)? {
            // "Toxic" mixes insults, obscenity and hate without saying which: its positives
            // teach none of calmline's labels (rudeness means aimed at the agent); its
            // negatives are clean.
            let t = match row.get(1) {
                Some("1") => continue,
                Some("0") => clean(&[]),
                _ => continue,
            };
            out.push(Example { source: "told_br_pt", lang: "pt", split, text: row[0].to_string(), targets: t });
        }
    }
    Ok(out)
}

pub(super) fn olah(dir: &Path) -> Result<Vec<Example>> {
    use Label::*;
    let path = dir.join("olah450_final_annotations_merged.csv");
    let head = headers(&path, b',')?;
    let (text, offensive, threat, kind) =
        (column(&head, "text")?, column(&head, "t00_offensive")?, column(&head, "t04B_threat")?, column(&head, "t04_insult_or_hate")?);
    let mut out = Vec::new();
    for row in csv_rows(&path, b',', true)? {
        if row.get(offensive) != Some("yes") {
            continue;
        }
        let hate = row.get(kind) == Some("Hate speech");
        // Insults among commenters: an insult, but not rudeness at an agent.
        let t = targets(&[(Insult, true), (IdentityAttack, hate), (Threat, row.get(threat).is_some_and(|v| v.eq_ignore_ascii_case("yes")))]);
        let text = row.get(text).unwrap_or("").to_string();
        out.push(Example { source: "olah450_taxonomy_he", lang: "he", split: hash_split(&text), text, targets: t });
    }
    Ok(out)
}

pub(super) fn mlma(dir: &Path) -> Result<Vec<Example>> {
    use Label::*;
    let mut out = Vec::new();
    for (file, lang) in [("en_dataset_with_stop_words.csv", "en"), ("fr_dataset.csv", "fr"), ("ar_dataset.csv", "ar")] {
        let path = dir.join(file);
        let head = headers(&path, b',')?;
        let (text, sentiment) = (column(&head, "tweet")?, column(&head, "sentiment")?);
        for row in csv_rows(&path, b',', true)? {
            let kinds: Vec<&str> = row.get(sentiment).unwrap_or("").split('_').collect();
            let t = if kinds == ["normal"] {
                clean(&[])
            } else {
                // Offensive or disrespectful tweets are not rudeness at an agent: unannotated.
                let mut pairs = vec![];
                if kinds.contains(&"hateful") {
                    pairs.push((IdentityAttack, true));
                }
                if kinds.contains(&"abusive") {
                    pairs.push((Insult, true));
                }
                targets(&pairs)
            };
            let text = row.get(text).unwrap_or("").to_string();
            out.push(Example { source: "mlma_en_fr_ar", lang, split: hash_split(&text), text, targets: t });
        }
    }
    Ok(out)
}

pub(super) fn edos(dir: &Path) -> Result<Vec<Example>> {
    use Label::*;
    let path = dir.join("data_edos_labelled_aggregated.csv");
    let mut out = Vec::new();
    for row in csv_rows(&path, b',', true)? {
        let (text, sexist, category, vector, split) = (&row[1], &row[2], &row[3], &row[4], &row[5]);
        let split = match split {
            "train" => Split::Train,
            "dev" => Split::Dev,
            "test" => Split::Test,
            _ => continue,
        };
        let t = if sexist == "not sexist" {
            targets(&[(IdentityAttack, false), (Threat, false), (SexualHarassment, false)])
        } else {
            let mut pairs = vec![(IdentityAttack, true), (Threat, category.starts_with("1."))];
            if vector.starts_with("2.3") {
                pairs.push((SexualHarassment, true));
            }
            targets(&pairs)
        };
        out.push(Example { source: "en_edos_sexism", lang: "en", split, text: text.to_string(), targets: t });
    }
    Ok(out)
}

pub(super) fn davidson(dir: &Path) -> Result<Vec<Example>> {
    use Label::*;
    let mut out = Vec::new();
    for row in csv_rows(&dir.join("data_labeled_data.csv"), b',', true)? {
        let t = match row.get(5) {
            // Offensive tweets are profane, not rude to an agent: rudeness unannotated.
            Some("0") => targets(&[(IdentityAttack, true)]),
            Some("1") => targets(&[(Profanity, true)]),
            Some("2") => clean(&[]),
            _ => continue,
        };
        let text = row.get(6).unwrap_or("").to_string();
        out.push(Example { source: "en_davidson_hateoffensive", lang: "en", split: hash_split(&text), text, targets: t });
    }
    Ok(out)
}

pub(super) fn gahd(dir: &Path) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for row in csv_rows(&dir.join("gahd.csv"), b',', true)? {
        let split = match row.get(4) {
            Some("train") => Split::Train,
            Some("dev") => Split::Dev,
            Some("test") => Split::Test,
            _ => continue,
        };
        let t = targets(&[(Label::IdentityAttack, row.get(2) == Some("1"))]);
        out.push(Example { source: "de_gahd", lang: "de", split, text: row[1].to_string(), targets: t });
    }
    Ok(out)
}

/// OLID level A (OFF/NOT): not offensive is clean; offensive (insults, swearing, hate, aimed
/// at anyone) says nothing about which of calmline's labels holds, so it is left out.
fn olid(label: &str) -> Option<Targets> {
    match label.trim() {
        "OFF" => None,
        "NOT" => Some(clean(&[])),
        _ => None,
    }
}

pub(super) fn offenseval_tr(dir: &Path) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for row in csv_rows(&dir.join("offenseval-tr-training-v1.tsv"), b'\t', false)? {
        let (Some(text), Some(t)) = (row.get(1), row.get(2).and_then(olid)) else { continue };
        out.push(Example { source: "tr_offenseval2020_coltekin", lang: "tr", split: official_split(text, false), text: text.to_string(), targets: t });
    }
    let gold: std::collections::HashMap<String, String> = csv_rows(&dir.join("offenseval-tr-labela-v1.tsv"), b',', false)?
        .into_iter()
        .filter_map(|r| Some((r.get(0)?.to_string(), r.get(1)?.to_string())))
        .collect();
    for row in csv_rows(&dir.join("offenseval-tr-testset-v1.tsv"), b'\t', true)? {
        let (Some(id), Some(text)) = (row.get(0), row.get(1)) else { continue };
        let Some(t) = gold.get(id).and_then(|l| olid(l)) else { continue };
        out.push(Example { source: "tr_offenseval2020_coltekin", lang: "tr", split: Split::Test, text: text.to_string(), targets: t });
    }
    Ok(out)
}

pub(super) fn dkhate(dir: &Path) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for (file, official_test) in
        [("data_hate-speech_oe20da_data_offenseval-da-training-v1.tsv", false), ("data_hate-speech_oe20da_data_offenseval-da-test-v1.tsv", true)]
    {
        for row in csv_rows(&dir.join(file), b'\t', true)? {
            let (Some(text), Some(t)) = (row.get(1), row.get(2).and_then(olid)) else { continue };
            let split = official_split(text, official_test);
            out.push(Example { source: "da_dkhate", lang: "da", split, text: text.to_string(), targets: t });
        }
    }
    Ok(out)
}

pub(super) fn kocohub(dir: &Path) -> Result<Vec<Example>> {
    use Label::*;
    let mut out = Vec::new();
    // The test labels are not public: dev is the held-out test, a tenth of train the dev.
    for (file, official_test) in [("labeled_train.tsv", false), ("labeled_dev.tsv", true)] {
        for row in csv_rows(&dir.join(file), b'\t', true)? {
            let t = match row.get(3) {
                Some("hate") => targets(&[(IdentityAttack, true)]),
                Some("offensive") => targets(&[(IdentityAttack, false)]),
                Some("none") => clean(&[]),
                _ => continue,
            };
            let text = row[0].to_string();
            let split = official_split(&text, official_test);
            out.push(Example { source: "ko_kocohub_hate", lang: "ko", split, text, targets: t });
        }
    }
    Ok(out)
}

pub(super) fn cold(dir: &Path) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for (file, split) in [("COLDataset_train.csv", Split::Train), ("COLDataset_dev.csv", Split::Dev), ("COLDataset_test.csv", Split::Test)] {
        let path = dir.join(file);
        let head = headers(&path, b',')?;
        let (text, label) = (column(&head, "TEXT")?, column(&head, "label")?);
        for row in csv_rows(&path, b',', true)? {
            // Offensive on race, region or gender, aimed at anyone: unannotated, not rudeness.
            let t = match row.get(label) {
                Some("1") => continue,
                Some("0") => clean(&[]),
                _ => continue,
            };
            out.push(Example { source: "zh_cold", lang: "zh", split, text: row.get(text).unwrap_or("").to_string(), targets: t });
        }
    }
    Ok(out)
}

pub(super) fn ruhsold(dir: &Path) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for (file, split) in [("task_1_train.tsv", Split::Train), ("task_1_validation.tsv", Split::Dev), ("task_1_test.tsv", Split::Test)] {
        for row in csv_rows(&dir.join(file), b'\t', false)? {
            // Task 1: 0 abusive/offensive, 1 normal.
            let t = match row.get(1).map(str::trim) {
                Some("0") => continue,
                Some("1") => clean(&[]),
                _ => continue,
            };
            out.push(Example { source: "ur_roman_urdu_ruhsold", lang: "ur", split, text: row[0].to_string(), targets: t });
        }
    }
    Ok(out)
}

pub(super) fn foxnews(dir: &Path) -> Result<Vec<Example>> {
    // Gao & Huang 2017: hateful comments attack groups (435 of 1,528). A non-hateful comment
    // may still be rude, so only identity_attack is negative there. No official split.
    #[derive(serde::Deserialize)]
    struct Row {
        text: String,
        label: u8,
    }
    let path = dir.join("fox-news-comments.json");
    let content = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in content.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let row: Row = serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), n + 1))?;
        let t = match row.label {
            1 => targets(&[(Label::IdentityAttack, true)]),
            0 => targets(&[(Label::IdentityAttack, false)]),
            _ => continue,
        };
        out.push(Example { source: "en_foxnews_comments", lang: "en", split: hash_split(&row.text), text: row.text, targets: t });
    }
    Ok(out)
}

pub(super) fn stormfront(dir: &Path) -> Result<Vec<Example>> {
    // de Gibert et al. 2018: one forum sentence per file, inside a tarball; the labels are in
    // annotations_metadata.csv. hate → identity_attack + rudeness; noHate → identity_attack
    // negative only (rudeness masked, as for the Fox News comments); "relation" (hateful only
    // with the sentences around it) and "idk/skip" are left out. The authors' balanced
    // sampled_test is the test split; every sentence of a comment goes where that comment goes
    // (its sentences share context), and the other comments split 8/1 by a hash of their id.
    let labels_path = dir.join("annotations_metadata.csv");
    let rows = csv_rows(&labels_path, b',', true)?;
    let names = headers(&labels_path, b',')?;
    let (file_col, label_col) = (column(&names, "file_id")?, column(&names, "label")?);
    let labels: std::collections::HashMap<String, String> =
        rows.iter().filter_map(|r| Some((r.get(file_col)?.to_string(), r.get(label_col)?.to_string()))).collect();

    let archive = dir.join("stormfront_sentences_all_files_sampled.tar.gz");
    let file = std::fs::File::open(&archive).with_context(|| format!("reading {}", archive.display()))?;
    let mut sentences = Vec::new();
    let mut test_comments = std::collections::HashSet::new();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in tar.entries().with_context(|| format!("reading {}", archive.display()))? {
        let mut entry = entry.with_context(|| format!("reading {}", archive.display()))?;
        let path = entry.path()?.to_string_lossy().trim_start_matches("./").to_string();
        let Some((folder, name)) = path.split_once('/') else { continue };
        let Some(id) = name.strip_suffix(".txt") else { continue };
        let comment = id.split_once('_').map_or(id, |(c, _)| c).to_string();
        match folder {
            "sampled_test" => {
                test_comments.insert(comment);
            }
            "all_files" => {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut entry, &mut text).with_context(|| format!("{path} in {}", archive.display()))?;
                sentences.push((id.to_string(), comment, text.trim().to_string()));
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (id, comment, text) in sentences {
        let t = match labels.get(&id).map(String::as_str) {
            // Hate at a group, not rudeness at an agent (rudeness unannotated).
            Some("hate") => targets(&[(Label::IdentityAttack, true)]),
            Some("noHate") => targets(&[(Label::IdentityAttack, false)]),
            _ => continue,
        };
        if text.is_empty() {
            continue;
        }
        let split = if test_comments.contains(&comment) {
            Split::Test
        } else if stable_hash(&comment).is_multiple_of(9) {
            Split::Dev
        } else {
            Split::Train
        };
        out.push(Example { source: "en_stormfront_hate", lang: "en", split, text, targets: t });
    }
    Ok(out)
}
