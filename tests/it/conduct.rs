//! Agent conduct (seed 003) on the project's labelled agent turns: the committed thresholds keep
//! their precision and recall on the test split (docs/AGENT-CONDUCT.md has the full table).

use std::path::Path;

use calmline::domain::conduct::{ConductKind, ConductModel, evaluation};
use calmline::model::Classifier;

#[test]
fn conduct_flags_hold_up_on_the_held_out_agent_turns() {
    let classifier = Classifier::load(Path::new("models")).expect("run `make setup` first");
    let model = ConductModel::embedded(&classifier.extractor).unwrap();
    let examples = evaluation::load(Path::new("data/agent-conduct/turns.jsonl"), &classifier).unwrap();
    assert!(examples.iter().filter(|e| e.split == "test").count() >= 50);
    let counts = evaluation::count(&examples, &model, "test", model.thresholds());
    let f1 = |kind: ConductKind| counts[&("all".to_string(), kind)].f1();
    // Recognised by example: canned replies are reliable, blaming others less so since the
    // encoder's adapters were trained on all twelve layers (conduct-6 with judgement-104, judgement-93 and
    // judgement-38: 0.80 on 12 test positives, macro F1 0.738 in f32 and int8; conduct-5 with
    // judgement-29 0.75 and 0.705; conduct-4 with judgement-22 0.67 and 0.68, with judgement-19
    // 0.73 and 0.65 / 0.70; conduct-3 with judgement-18 0.67, with judgement-6 0.80;
    // docs/AGENT-CONDUCT.md).
    assert!(f1(ConductKind::BlamesOthers) >= 0.6, "{}", evaluation::markdown(&counts));
    assert!(f1(ConductKind::CannedReply) >= 0.8, "{}", evaluation::markdown(&counts));
    assert!(evaluation::macro_f1(&counts) >= 0.6, "{}", evaluation::markdown(&counts));
}

/// The gold conversations' agents are professional: a QA report must not accuse them. Measured
/// with conduct-6 on `e5-small-q4+soup-38-49w11+judgement-104` (and judgement-93, the same): 11 of the twelve languages' 955
/// test replies (1.2%; int8 12), 3 of them Arabic rude_to_customer; on
/// `e5-small-q4+soup-20-20s2-28-32+judgement-38`: 8 of the six languages' 495 (1.6%;
/// int8 7), 3 of them rude_to_customer (the classifier's rudeness on apologies, all Hebrew);
/// conduct-5 on judgement-29 8 (1.6%); conduct-4 on judgement-22 13 (2.6%), on judgement-19 5
/// (1.0%); conduct-3 on judgement-18 8 (1.6%); conduct-2 on judgement-6 19 (3.8%); conduct-1
/// twice as many.
#[test]
fn professional_replies_are_rarely_flagged() {
    let classifier = Classifier::load(Path::new("models")).unwrap();
    let model = ConductModel::embedded(&classifier.extractor).unwrap();
    // The test split's replies only: they are what is reported, and half the scoring.
    let rows: Vec<_> =
        calmline::train::judgement::professional_replies(Path::new("data/conversations")).unwrap().into_iter().filter(|r| r.split == "test").collect();
    let examples = evaluation::score(rows, &classifier).unwrap();
    let alarms = evaluation::false_alarms(&examples, &model, "test", model.thresholds());
    let all = &alarms["all"];
    assert!(all.replies >= 400, "{} replies", all.replies);
    assert!(all.rate() <= 0.03, "{:.3} of professional replies flagged: {:?}", all.rate(), all.by_kind);
}

#[test]
fn a_stock_phrase_is_canned_only_after_a_complaint() {
    let classifier = Classifier::load(Path::new("models")).unwrap();
    let model = ConductModel::embedded(&classifier.extractor).unwrap();
    let text = "We are sorry for any inconvenience. Your satisfaction matters to us.";
    let embedding = classifier.extractor.stable_embed(&[text]).unwrap().remove(0);
    let scores = classifier.scores(&[text]).unwrap().remove(0);
    let flags = classifier.head.flags(&scores, "en");
    let judge = |after_complaint| {
        model.judge(&calmline::domain::conduct::AgentTurn {
            embedding: &embedding,
            scores: &scores,
            flags: &flags,
            after_complaint,
            repeats_earlier_reply: false,
        })
    };
    assert!(judge(true).contains(&ConductKind::CannedReply));
    assert!(!judge(false).contains(&ConductKind::CannedReply));
}
