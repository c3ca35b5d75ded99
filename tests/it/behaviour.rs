//! What the default model must get right, in English, Hungarian and Hebrew (issue 8's bars):
//! neutral advice (the seed paragraphs) carries no abuse flag; an insult, a threat and sexual
//! harassment aimed at the agent are flagged; profane frustration about a thing is frustration
//! and profanity but not an insult; polite thanks flags nothing.
//!
//! The sentences here were written for this test and are in no training template.

use std::path::Path;
use std::sync::OnceLock;

use calmline::domain::labels::Label;
use calmline::model::Classifier;

/// The default model, or the candidate in `CALMLINE_BEHAVIOUR_MODELS` (a folder with a head and
/// adapters, e.g. `models/experiments/lora6-3`), so a new model faces the same bar before it is
/// promoted: `CALMLINE_BEHAVIOUR_MODELS=DIR cargo test --release --test it behaviour::`.
fn classifier() -> &'static Classifier {
    static CLASSIFIER: OnceLock<Classifier> = OnceLock::new();
    CLASSIFIER.get_or_init(|| match std::env::var_os("CALMLINE_BEHAVIOUR_MODELS") {
        Some(dir) => {
            Classifier::load_from(Path::new("models/base"), Path::new(&dir), calmline::model::Precision::best_available()).expect("loading the candidate model")
        }
        None => Classifier::load(Path::new("models")).expect("run `make setup` first"),
    })
}

fn flags(texts: &[&str]) -> Vec<Vec<Label>> {
    let c = classifier();
    c.scores(texts).unwrap().iter().zip(texts).map(|(s, t)| c.head.flags(s, calmline::domain::lang::detect(t))).collect()
}

const ABUSE: [Label; 5] = [Label::Rudeness, Label::Insult, Label::Threat, Label::IdentityAttack, Label::SexualHarassment];

#[test]
fn the_seed_paragraphs_carry_no_abuse_flag() {
    let mut paragraphs = Vec::new();
    for entry in std::fs::read_dir("../shared/seeds").expect("../shared/seeds beside the project") {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        paragraphs.extend(text.split("\n\n").map(str::trim).filter(|p| p.len() > 40).map(String::from));
    }
    assert!(paragraphs.len() >= 30);
    let refs: Vec<&str> = paragraphs.iter().map(String::as_str).collect();
    let flagged: Vec<(String, Vec<Label>)> =
        refs.iter().zip(flags(&refs)).filter(|(_, f)| f.iter().any(|l| ABUSE.contains(l))).map(|(p, f)| (p.chars().take(80).collect(), f)).collect();
    // judgement-38 flags four, all Hungarian, all long (520–800 characters; the model card's
    // known weaknesses: text *about* customer service read as abuse), the same four as
    // judgement-29: one about departments ("leave the engineers in their dark pits",
    // "profit-eating evil") gets insult and identity attack; one on how hard work with customers
    // is gets rudeness 0.96 and insult 0.94; one on customer service being everyone's job ("a few
    // talented, enthusiastic young people") gets identity attack 0.89 and now threat 0.76 (the
    // threat cut fell from 0.90 to 0.74); a summary addressed to the reader that quotes what an
    // agent must not say ("we bought this part from a supplier") gets rudeness 0.96 against
    // Hungarian's own 0.82. judgement-22 flagged the first three, judgement-19 a Hebrew paragraph
    // ("never tolerate verbal abuse, you are not a punching bag"), judgement-6 a 6,500-character
    // Hebrew one about customers who belittle staff. One more fails this test.
    assert!(flagged.len() <= 4, "{} of {} seed paragraphs flagged as abuse: {flagged:?}", flagged.len(), refs.len());
}

fn expect(cases: &[(&str, &[Label], &[Label])]) {
    let texts: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let mut failures = Vec::new();
    for ((text, must, must_not), got) in cases.iter().zip(flags(&texts)) {
        let missing: Vec<_> = must.iter().filter(|l| !got.contains(l)).collect();
        let wrong: Vec<_> = must_not.iter().filter(|l| got.contains(l)).collect();
        if !missing.is_empty() || !wrong.is_empty() {
            failures.push(format!("{text:?}: flags {got:?}, missing {missing:?}, should not have {wrong:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

use Label::*;

#[test]
fn insults_are_flagged() {
    expect(&[
        ("You're a useless idiot, you know that?", &[Insult], &[]),
        ("Maga egy ostoba, tehetetlen barom.", &[Insult], &[]),
        ("אתה טמבל חסר תועלת.", &[Insult], &[]),
    ]);
}

#[test]
fn threats_are_flagged() {
    expect(&[
        ("If you hang up on me again I will find you and hurt you.", &[Threat], &[]),
        ("Ha még egyszer leteszi, megkeresem és megverem.", &[Threat], &[]),
        ("אם תנתק לי שוב אני אמצא אותך ואפגע בך.", &[Threat], &[]),
    ]);
}

#[test]
fn sexual_harassment_is_flagged() {
    expect(&[
        ("Forget the bill, tell me what you're wearing, sexy.", &[SexualHarassment], &[]),
        ("Felejtsük el a számlát, mondja meg, mi van magán, szexi.", &[SexualHarassment], &[]),
        ("עזבי את החשבון, תגידי לי מה את לובשת, סקסית.", &[SexualHarassment], &[]),
    ]);
}

#[test]
fn profane_frustration_about_a_thing_is_not_an_insult() {
    expect(&[
        ("this damn router has dropped five times today", &[Frustration, Profanity], &[Insult]),
        ("ez a rohadt router ma már ötször lehalt", &[Frustration, Profanity], &[Insult]),
        ("הראוטר המחורבן הזה נפל היום חמש פעמים", &[Frustration, Profanity], &[Insult]),
    ]);
}

#[test]
fn polite_thanks_flags_nothing() {
    let all = Label::ALL;
    expect(&[
        ("Thank you so much for your help, have a great day!", &[], &all),
        ("Nagyon köszönöm a segítségét, további szép napot!", &[], &all),
        ("תודה רבה על העזרה, יום נעים!", &[], &all),
    ]);
}

// --- The contact-center behaviour suite and the gold conversations (judgement issue) ---------
//
// `calmline eval-judgement` prints the full tables (models/README.md, "Judgement"). These tests
// hold the default model to what it measured, so a change that makes it worse fails here; the
// issue's bars themselves are higher and tracked in the model card.

use calmline::domain::policy::Policy;
use calmline::train::datasets::Split;
use calmline::train::judgement;

// What the default (`e5-small-q4+soup-38-49w11+judgement-104`, 2026-12-07; judgement-93's encoder,
// the head refitted with profanity annotated on every training turn) measured on the test
// splits, less a small margin (models/eval-judgement.md, f32; int8 in
// models/eval-judgement-int8.md): labels 84.9% (int8 84.9%), actions 86.8% (86.9%) on the suite's
// 1,830 test cases, neutral turns 87% or more in every language (Spanish 7 of 8); on the twelve
// languages' 1,156 conversation turns accuracy 87.2% (87.2%), false alarms 2.2% (21 of 952; int8
// 2.3%), SET_BOUNDARY or worse right 88.8% (79 of 89; int8 the same) of the time, profanity right
// on 40% of the turns it flags (int8 41%; judgement-93: 23%, 45 of 195). The bars
// are 95%, 90%, 2% and 90%. judgement-38 measured 85.5% / 86.5%, 85.7%, 3.6% and 81% (95 calls)
// on the same cases and turns; judgement-29 85.0% / 86.4%; judgement-22 84.5% / 86.1%;
// judgement-19 82.7% / 84.8%; judgement-18 80.3% / 82.5%; judgement-6 76.6% / 79.7%; judgement-2
// 57.4% / 63.1% on the same cases.
const SUITE_LABEL_FLOOR: f64 = 0.84;
const SUITE_ACTION_FLOOR: f64 = 0.86;
const NEUTRAL_FLOOR: f64 = 0.85;
const CONVERSATION_ACCURACY_FLOOR: f64 = 0.86;
const CONVERSATION_FALSE_ALARM_CEILING: f64 = 0.03;
const BOUNDARY_PRECISION_FLOOR: f64 = 0.86;
const PROFANITY_PRECISION_FLOOR: f64 = 0.35;

fn suite() -> judgement::SuiteReport {
    let cases = judgement::load_cases(Path::new("data/behaviour")).expect("data/behaviour");
    judgement::run_suite(classifier(), &Policy::embedded(), &cases, Split::Test).unwrap()
}

#[test]
fn the_behaviour_suite_holds_its_measured_floor() {
    let report = suite();
    let all = |m: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, judgement::Tally>>| m["all"]["all"];
    let (labels, actions) = (all(&report.labels), all(&report.actions));
    assert!(labels.total >= 1000, "the test split has {} cases", labels.total);
    assert!(labels.rate() >= SUITE_LABEL_FLOOR && actions.rate() >= SUITE_ACTION_FLOOR, "labels {:.3}, actions {:.3}", labels.rate(), actions.rate());
    // Calm text must stay calm: neutral turns get no action in every language.
    for (lang, funcs) in &report.actions {
        if let Some(neutral) = funcs.get("neutral") {
            assert!(neutral.rate() >= NEUTRAL_FLOOR, "{lang}: {:.2} of neutral turns get no action", neutral.rate());
        }
    }
}

#[test]
fn conversations_hold_their_measured_floor() {
    let conversations = judgement::load_conversations(Path::new("data/conversations")).expect("data/conversations");
    let report = judgement::run_conversations(classifier(), &Policy::embedded(), &conversations, Split::Test).unwrap();
    let all = report.by_language["all"];
    assert!(all.turns >= 1100, "{} customer turns (twelve languages)", all.turns);
    assert!(all.accuracy() >= CONVERSATION_ACCURACY_FLOOR, "per-turn action accuracy {:.3}", all.accuracy());
    assert!(all.false_alarm_rate() <= CONVERSATION_FALSE_ALARM_CEILING, "abuse actions on {:.3} of non-abusive turns", all.false_alarm_rate());
    // Wrong escalations are what costs an agent's trust most (the judgement issue).
    let precision = all.boundary_precision().expect("some turns warrant SET_BOUNDARY or worse");
    assert!(precision >= BOUNDARY_PRECISION_FLOOR, "SET_BOUNDARY or worse right on {precision:.3} of {} calls", all.boundary_or_worse);
    // A label that moves no rung is still read in every answer: profanity was once right on only
    // about a fifth of the turns it flagged, mostly heated complaints and clean insults
    // (precision 0.20 dev / 0.23 test; data/training/README.md).
    let profanity = report.labels["profanity"];
    let precision = profanity.precision().expect("profanity is flagged on some turns");
    assert!(precision >= PROFANITY_PRECISION_FLOOR, "profanity right on {precision:.3} of {} flags", profanity.flagged);
}
