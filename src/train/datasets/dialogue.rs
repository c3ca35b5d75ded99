//! Dialogue sets: abuse aimed at a conversational agent (ConvAbuse) and unsafe dialogue turns
//! (DiaSafety), the closest public data to a customer talking to an agent.

use std::path::Path;

use anyhow::{Context, Result};

use super::*;

pub(super) fn convabuse(dir: &Path) -> Result<Vec<Example>> {
    use Label::*;
    let mut out = Vec::new();
    for (file, split) in [("ConvAbuseEMNLPtrain.csv", Split::Train), ("ConvAbuseEMNLPvalid.csv", Split::Dev), ("ConvAbuseEMNLPtest.csv", Split::Test)] {
        let path = dir.join(file);
        let head = headers(&path, b',')?;
        let user = column(&head, "user")?;
        let col = |name: &str| head.iter().position(|h| h == name);
        for row in csv_rows(&path, b',', true)? {
            let ticked = |name: &str| col(name).and_then(|i| row.get(i)).map(|v| v.trim() == "1").unwrap_or(false);
            let (mut ratings, mut sexual, mut identity) = (Vec::new(), 0, 0);
            for a in 1..=8 {
                let rating = [1, 0, -1, -2, -3].into_iter().find(|r| ticked(&format!("Annotator{a}_is_abuse.{r}")));
                let Some(rating) = rating else { continue };
                ratings.push(rating as f32);
                sexual += ticked(&format!("Annotator{a}_sex_harassment")) as usize;
                identity += ["sexist", "homophobic", "racist", "transphobic", "ableist"].iter().any(|k| ticked(&format!("Annotator{a}_{k}"))) as usize;
            }
            if ratings.is_empty() {
                continue;
            }
            // Mean rating: 1 not abusive, 0 ambiguous, -1 mildly … -3 strongly abusive.
            let m = ratings.iter().sum::<f32>() / ratings.len() as f32;
            let half = ratings.len().div_ceil(2);
            let abusive = m <= -1.0;
            let mut pairs = vec![];
            if m < 0.0 {
                pairs.push((Rudeness, true));
            } else if m >= 0.5 {
                pairs.extend([(Rudeness, false), (Insult, false), (Threat, false)]);
            }
            if abusive {
                pairs.push((Insult, true));
            }
            if abusive || m >= 0.5 {
                pairs.push((SexualHarassment, abusive && sexual >= half));
                pairs.push((IdentityAttack, abusive && identity >= half));
            }
            let text = row.get(user).unwrap_or("").to_string();
            out.push(Example { source: "convabuse_en", lang: "en", split, text, targets: targets(&pairs) });
        }
    }
    Ok(out)
}

pub(super) fn diasafety(dir: &Path) -> Result<Vec<Example>> {
    // Sun et al. 2022 label a chatbot's *response* given a context. Only the "Offending User"
    // category is about abuse of the person addressed — the agent's side of a conversation:
    // unsafe → rudeness, safe → not. The other categories (risk ignorance, unauthorised
    // expertise, toxicity agreement, biased opinion) are not abuse and are left out.
    #[derive(serde::Deserialize)]
    struct Row {
        response: String,
        category: String,
        label: String,
    }
    let mut out = Vec::new();
    for (file, split) in
        [("DiaSafety_dataset_train.json", Split::Train), ("DiaSafety_dataset_val.json", Split::Dev), ("DiaSafety_dataset_test.json", Split::Test)]
    {
        let path = dir.join(file);
        let content = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let rows: Vec<Row> = serde_json::from_str(&content).with_context(|| format!("parsing {}", path.display()))?;
        for row in rows.into_iter().filter(|r| r.category == "Offending User") {
            let rude = match row.label.as_str() {
                "Unsafe" => true,
                "Safe" => false,
                _ => continue,
            };
            out.push(Example { source: "en_diasafety", lang: "en", split, text: row.response, targets: targets(&[(Label::Rudeness, rude)]) });
        }
    }
    Ok(out)
}
