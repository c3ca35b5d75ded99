//! What users will judge calmline by (the judgement issue): the project's contact-center
//! behaviour suite (`data/behaviour/`), its multi-turn conversations with gold actions
//! (`data/conversations/`), and the false-alarm budget on neutral text per language. Loads
//! them, turns the suite's train and dev cases into training examples, and scores all three
//! through the real head and policy.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::datasets::{Example, Split};
use crate::domain::labels::{LABEL_COUNT, Label, LabelScores};
use crate::domain::policy::{Action, ConversationState, Policy};
use crate::model::Classifier;

/// The source name of the behaviour suite's cases when they train or calibrate the head.
pub const BEHAVIOUR_SOURCE: &str = "calmline_behaviour";

/// The source name of the project's training turns (`data/training/`): cases written in the
/// behaviour suite's format for training only, never scored.
pub const TRAINING_SOURCE: &str = "calmline_training";

/// Languages the suite is written in (its README).
pub const SUITE_LANGUAGES: [&str; 12] = ["en", "hu", "he", "de", "es", "fr", "pt", "it", "pl", "tr", "ar", "ru"];

/// The labels aimed at people: an action of LET_IT_PASS or higher is a false alarm on a turn
/// that has none of them.
pub const ABUSE: [Label; 5] = [Label::Rudeness, Label::Insult, Label::Threat, Label::IdentityAttack, Label::SexualHarassment];

/// One functional case (`data/behaviour/<lang>.jsonl`).
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    pub id: String,
    pub lang: String,
    pub functionality: String,
    pub group: String,
    pub split: Split,
    pub text: String,
    pub must: Vec<Label>,
    pub must_not: Vec<Label>,
    pub actions: Vec<Action>,
}

/// A language code as `&'static str` (training examples carry static codes).
fn static_lang(code: &str) -> Option<&'static str> {
    SUITE_LANGUAGES.iter().copied().find(|l| *l == code)
}

/// Every case of the suite, in file name order.
pub fn load_cases(dir: &Path) -> Result<Vec<Case>> {
    let cases: Vec<Case> = read_jsonl_folder(dir)?;
    for case in &cases {
        anyhow::ensure!(static_lang(&case.lang).is_some(), "{}: unexpected language {}", case.id, case.lang);
        anyhow::ensure!(!case.actions.is_empty(), "{}: no action", case.id);
    }
    Ok(cases)
}

/// Every line of every `.jsonl` file in `dir`, in file name order; errors name file and line.
fn read_jsonl_folder<T: serde::de::DeserializeOwned>(dir: &Path) -> Result<Vec<T>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let content = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        for (n, line) in content.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            out.push(serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), n + 1))?);
        }
    }
    Ok(out)
}

/// The suite's cases as training examples: `must` positive, `must_not` negative, the rest
/// unannotated. Test cases are kept as `Split::Test` (never trained on).
pub fn behaviour_examples(dir: &Path) -> Result<Vec<Example>> {
    Ok(load_cases(dir)?.into_iter().map(|c| case_example(BEHAVIOUR_SOURCE, c)).collect())
}

/// The project's training turns (`data/training/`) as examples; every one must be in the train
/// split, so a case copied from the suite with its split cannot leak into training.
pub fn training_examples(dir: &Path) -> Result<Vec<Example>> {
    let cases = load_cases(dir)?;
    if let Some(c) = cases.iter().find(|c| c.split != Split::Train) {
        anyhow::bail!("{}: {} is not a training case (split {:?})", dir.display(), c.id, c.split);
    }
    Ok(cases.into_iter().map(|c| case_example(TRAINING_SOURCE, c)).collect())
}

/// One case as an example of `source`: `must` positive, `must_not` negative, the rest
/// unannotated.
fn case_example(source: &'static str, c: Case) -> Example {
    let mut targets = [None; LABEL_COUNT];
    for l in &c.must {
        targets[l.index()] = Some(true);
    }
    for l in &c.must_not {
        targets[l.index()] = Some(false);
    }
    Example { source, lang: static_lang(&c.lang).expect("checked on load"), split: c.split, text: c.text, targets }
}

/// Passes and totals.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Tally {
    pub passed: usize,
    pub total: usize,
}

impl Tally {
    fn add(&mut self, pass: bool) {
        self.passed += pass as usize;
        self.total += 1;
    }

    pub fn rate(&self) -> f64 {
        if self.total == 0 { 0.0 } else { self.passed as f64 / self.total as f64 }
    }
}

/// One failed case, for the report's list of what is still wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub id: String,
    pub functionality: String,
    pub text: String,
    pub flags: Vec<Label>,
    pub action: Action,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SuiteReport {
    /// (language, functionality) → label and action pass counts; "all" for the totals.
    pub labels: BTreeMap<String, BTreeMap<String, Tally>>,
    pub actions: BTreeMap<String, BTreeMap<String, Tally>>,
    /// Frustration precision and recall per language over the cases that annotate it.
    pub frustration: BTreeMap<String, (f64, f64)>,
    /// Label and action pass counts, all languages, with no language hint: each text judged by
    /// the thresholds of its detected language, as `analyze` without `lang` does.
    pub without_hint: (Tally, Tally),
    pub failures: Vec<Failure>,
}

/// The first-turn action the policy gives a turn with these flags.
pub fn first_turn_action(classifier: &Classifier, policy: &Policy, scores: &LabelScores, lang: &str) -> (Vec<Label>, Action) {
    let flags = classifier.head.flags(scores, lang);
    let severity = policy.severity_of(&flags, scores);
    let action = policy.customer_turn(&mut ConversationState::default(), &flags, severity, lang).action;
    (flags, action)
}

/// Runs the suite's cases of `split` through the head and the policy (first turn, the case's
/// language as the caller's hint).
pub fn run_suite(classifier: &Classifier, policy: &Policy, cases: &[Case], split: Split) -> Result<SuiteReport> {
    let cases: Vec<&Case> = cases.iter().filter(|c| c.split == split).collect();
    let texts: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
    let mut scores = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(64) {
        scores.extend(classifier.scores(chunk)?);
    }
    let mut report = SuiteReport::default();
    let mut frustration: BTreeMap<String, [usize; 3]> = BTreeMap::new(); // tp, fp, fn
    for (case, s) in cases.iter().zip(&scores) {
        let (flags, action) = first_turn_action(classifier, policy, s, &case.lang);
        let label_pass = case.must.iter().all(|l| flags.contains(l)) && !case.must_not.iter().any(|l| flags.contains(l));
        let action_pass = case.actions.contains(&action);
        let detected = crate::domain::lang::detect(&case.text);
        let unhinted = crate::domain::lang::thresholds_language(detected, "", &case.text, &classifier.head.meta.measured_languages);
        let (unhinted_flags, unhinted_action) = first_turn_action(classifier, policy, s, &unhinted);
        report.without_hint.0.add(case.must.iter().all(|l| unhinted_flags.contains(l)) && !case.must_not.iter().any(|l| unhinted_flags.contains(l)));
        report.without_hint.1.add(case.actions.contains(&unhinted_action));
        for lang in [case.lang.as_str(), "all"] {
            for func in [case.functionality.as_str(), "all"] {
                report.labels.entry(lang.into()).or_default().entry(func.into()).or_default().add(label_pass);
                report.actions.entry(lang.into()).or_default().entry(func.into()).or_default().add(action_pass);
            }
            let f = frustration.entry(lang.into()).or_default();
            let flagged = flags.contains(&Label::Frustration);
            if case.must.contains(&Label::Frustration) {
                if flagged { f[0] += 1 } else { f[2] += 1 }
            } else if case.must_not.contains(&Label::Frustration) && flagged {
                f[1] += 1;
            }
        }
        if !label_pass || !action_pass {
            report.failures.push(Failure { id: case.id.clone(), functionality: case.functionality.clone(), text: case.text.clone(), flags, action });
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    report.frustration = frustration.into_iter().map(|(l, [tp, fp, fn_])| (l, (ratio(tp, tp + fp), ratio(tp, tp + fn_)))).collect();
    Ok(report)
}

/// One conversation of `data/conversations/` with its gold judgement per customer turn.
#[derive(Debug, Clone, Deserialize)]
pub struct GoldConversation {
    pub id: String,
    pub locale: String,
    pub split: Split,
    pub kind: String,
    pub turns: Vec<GoldTurn>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GoldTurn {
    pub speaker: String,
    pub text: String,
    #[serde(default)]
    pub gold: Option<Gold>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Gold {
    pub labels: Vec<Label>,
    pub action: Action,
}

pub fn load_conversations(dir: &Path) -> Result<Vec<GoldConversation>> {
    read_jsonl_folder(dir)
}

/// The agent replies of the gold conversations that answer a customer turn, unlabelled: the
/// conversations' agents are written to be professional, so every conduct flag on one is a
/// false alarm (`calmline eval-conduct`). With the conversation's split.
pub fn professional_replies(dir: &Path) -> Result<Vec<crate::domain::conduct::evaluation::Row>> {
    let mut rows = Vec::new();
    for c in load_conversations(dir)? {
        let split = if c.split == Split::Test { "test" } else { "dev" };
        for (i, pair) in c.turns.windows(2).enumerate() {
            if pair[0].speaker == "customer" && pair[1].speaker == "agent" {
                rows.push(crate::domain::conduct::evaluation::Row {
                    id: format!("{}#{}", c.id, i + 1),
                    lang: c.locale.clone(),
                    split: split.to_string(),
                    customer_before: pair[0].text.clone(),
                    text: pair[1].text.clone(),
                    labels: Vec::new(),
                });
            }
        }
    }
    Ok(rows)
}

/// The source name of the conversations' customer turns.
pub const CONVERSATIONS_SOURCE: &str = "calmline_conversations";

/// The customer turns of the dev conversations as examples: every label annotated (a turn's
/// gold lists all that apply). Only the dev split: they calibrate thresholds on the short,
/// realistic replies (confirmations, IDs, thanks) that the public sets lack, and never train
/// the head (it fits the train split); the test conversations stay for `eval-judgement`.
pub fn conversation_dev_examples(dir: &Path) -> Result<Vec<Example>> {
    let mut examples = Vec::new();
    for c in load_conversations(dir)?.into_iter().filter(|c| c.split == Split::Dev) {
        let base = crate::domain::lang::base_language(&c.locale);
        let lang = static_lang(&base).with_context(|| format!("{}: unexpected locale {}", c.id, c.locale))?;
        for turn in c.turns.into_iter().filter(|t| t.speaker == "customer") {
            let Some(gold) = turn.gold else { continue };
            let targets = std::array::from_fn(|i| Some(gold.labels.iter().any(|l| l.index() == i)));
            examples.push(Example { source: CONVERSATIONS_SOURCE, lang, split: Split::Dev, text: turn.text, targets });
        }
    }
    Ok(examples)
}

/// The source name of the conversations' agent replies.
pub const AGENT_REPLIES_SOURCE: &str = "calmline_agent_replies";

/// The agent replies of the dev conversations as training negatives for the labels aimed at
/// people and profanity: the conversations' agents are written to be professional. Without them
/// an apology ("I'm so sorry, that shouldn't have happened") scored 0.8–0.9 rudeness.
/// Frustration is left open: a reply restates the customer's problem, and as a frustration
/// negative it cost customers' polite but firm complaints 15 points of the suite (experiment 10 in
/// the model card). The test conversations stay for `eval-judgement` and `eval-conduct`.
pub fn agent_reply_examples(dir: &Path) -> Result<Vec<Example>> {
    let mut examples = Vec::new();
    for c in load_conversations(dir)?.into_iter().filter(|c| c.split == Split::Dev) {
        let base = crate::domain::lang::base_language(&c.locale);
        let lang = static_lang(&base).with_context(|| format!("{}: unexpected locale {}", c.id, c.locale))?;
        for turn in c.turns.into_iter().filter(|t| t.speaker == "agent") {
            let mut targets = [Some(false); LABEL_COUNT];
            targets[Label::Frustration.index()] = None;
            examples.push(Example { source: AGENT_REPLIES_SOURCE, lang, split: Split::Train, text: turn.text, targets });
        }
    }
    Ok(examples)
}

/// Per-turn results over customer turns.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TurnTally {
    pub turns: usize,
    pub action_right: usize,
    /// Turns told SET_BOUNDARY or worse, and how many of them the gold agrees are.
    pub boundary_or_worse: usize,
    pub boundary_or_worse_warranted: usize,
    /// Turns whose gold has no abuse label, and how many of them got LET_IT_PASS or worse.
    pub no_abuse: usize,
    pub no_abuse_alarmed: usize,
}

impl TurnTally {
    pub fn accuracy(&self) -> f64 {
        self.action_right as f64 / self.turns.max(1) as f64
    }
    pub fn boundary_precision(&self) -> Option<f64> {
        (self.boundary_or_worse > 0).then(|| self.boundary_or_worse_warranted as f64 / self.boundary_or_worse as f64)
    }
    pub fn false_alarm_rate(&self) -> f64 {
        self.no_abuse_alarmed as f64 / self.no_abuse.max(1) as f64
    }
}

/// One label's flags on the customer turns against their gold labels: what a platform sees in
/// an answer's `labels` (profanity and frustration move no rung of the ladder, so the action
/// figures alone never show their false flags).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LabelTally {
    pub gold: usize,
    pub flagged: usize,
    pub flagged_and_gold: usize,
}

impl LabelTally {
    pub fn precision(&self) -> Option<f64> {
        (self.flagged > 0).then(|| self.flagged_and_gold as f64 / self.flagged as f64)
    }
    pub fn recall(&self) -> Option<f64> {
        (self.gold > 0).then(|| self.flagged_and_gold as f64 / self.gold as f64)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ConversationReport {
    /// By language and "all"; and by kind.
    pub by_language: BTreeMap<String, TurnTally>,
    pub by_kind: BTreeMap<String, TurnTally>,
    /// Per label (its name), over all languages.
    pub labels: BTreeMap<String, LabelTally>,
    /// (gold, predicted) → count, over all languages.
    pub confusion: BTreeMap<String, usize>,
    pub failures: Vec<(String, usize, Action, Action)>,
}

/// Scores the conversations of `split` turn by turn as `calmline score` does: the language is
/// detected per turn, with the conversation's locale where a turn is too short to tell.
pub fn run_conversations(classifier: &Classifier, policy: &Policy, conversations: &[GoldConversation], split: Split) -> Result<ConversationReport> {
    let mut report = ConversationReport::default();
    let chosen: Vec<&GoldConversation> = conversations.iter().filter(|c| c.split == split).collect();
    // Every customer turn of every conversation in batches of 64 (a conversation alone is a
    // batch of a few short turns), then each conversation's ladder in order.
    let texts: Vec<&str> = chosen.iter().flat_map(|c| c.turns.iter().filter(|t| t.speaker == "customer").map(|t| t.text.as_str())).collect();
    let mut all_scores = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(64) {
        all_scores.extend(classifier.scores(chunk)?);
    }
    let mut next = all_scores.into_iter();
    for c in chosen {
        let customer: Vec<&GoldTurn> = c.turns.iter().filter(|t| t.speaker == "customer").collect();
        let scores: Vec<LabelScores> = next.by_ref().take(customer.len()).collect();
        let mut state = ConversationState::default();
        let lang = crate::domain::lang::base_language(&c.locale);
        for (i, (turn, s)) in customer.iter().zip(&scores).enumerate() {
            let flags = classifier.head.flags(
                s,
                &crate::domain::lang::thresholds_language(
                    crate::domain::lang::detect(&turn.text),
                    &c.locale,
                    &turn.text,
                    &classifier.head.meta.measured_languages,
                ),
            );
            let severity = policy.severity_of(&flags, s);
            let action = policy.customer_turn(&mut state, &flags, severity, &c.locale).action;
            let Some(gold) = &turn.gold else { continue };
            let abusive = gold.labels.iter().any(|l| ABUSE.contains(l));
            for label in Label::ALL {
                let t = report.labels.entry(label.name().into()).or_default();
                let (is_gold, is_flagged) = (gold.labels.contains(&label), flags.contains(&label));
                t.gold += is_gold as usize;
                t.flagged += is_flagged as usize;
                t.flagged_and_gold += (is_gold && is_flagged) as usize;
            }
            count(report.by_language.entry(lang.clone()).or_default(), gold, abusive, action);
            count(report.by_language.entry("all".into()).or_default(), gold, abusive, action);
            count(report.by_kind.entry(c.kind.clone()).or_default(), gold, abusive, action);
            *report.confusion.entry(format!("{} → {}", gold.action.name(), action.name())).or_default() += 1;
            if action != gold.action {
                report.failures.push((c.id.clone(), i, gold.action, action));
            }
        }
    }
    Ok(report)
}

fn count(t: &mut TurnTally, gold: &Gold, abusive: bool, action: Action) {
    t.turns += 1;
    t.action_right += (action == gold.action) as usize;
    if action >= Action::SetBoundary {
        t.boundary_or_worse += 1;
        t.boundary_or_worse_warranted += (gold.action >= Action::SetBoundary) as usize;
    }
    if !abusive {
        t.no_abuse += 1;
        t.no_abuse_alarmed += (action >= Action::LetItPass) as usize;
    }
}

/// Flag rate on the neutral sets' test splits, per language: any label flagged, and any abuse
/// label flagged (the text's language as the caller's hint).
pub fn neutral_flag_rates(head: &crate::model::head::Head, examples: &[Example], features: &[Vec<f32>]) -> BTreeMap<String, (usize, f64, f64)> {
    let neutral: Vec<&str> = super::neutral::NEUTRAL_SOURCES.iter().map(|(n, _)| *n).collect();
    let mut counts: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    for (e, f) in examples.iter().zip(features) {
        if e.split != Split::Test || !neutral.contains(&e.source) {
            continue;
        }
        let scores = head.scores(f);
        let flags = head.flags(&scores, e.lang);
        // A label the set leaves open (frustration in a review, say) does not count against it.
        let wrong: Vec<&Label> = flags.iter().filter(|l| e.targets[l.index()] == Some(false)).collect();
        for lang in [e.lang, "all"] {
            let c = counts.entry(lang.into()).or_default();
            c[0] += 1;
            c[1] += !wrong.is_empty() as usize;
            c[2] += wrong.iter().any(|l| ABUSE.contains(l)) as usize;
        }
    }
    counts.into_iter().map(|(l, [n, any, abuse])| (l, (n, any as f64 / n.max(1) as f64, abuse as f64 / n.max(1) as f64))).collect()
}

/// The three reports as Markdown, for the model card.
pub fn markdown(suite: &SuiteReport, conversations: &ConversationReport, neutral: &BTreeMap<String, (usize, f64, f64)>) -> String {
    let mut s = String::new();
    s += "### Behaviour suite: labels / actions passed, per functionality × language\n\n";
    let langs: Vec<&String> = suite.labels.keys().collect();
    s += &format!("| functionality | {} |\n|---|{}\n", langs.iter().map(|l| l.as_str()).collect::<Vec<_>>().join(" | "), "---:|".repeat(langs.len()));
    let funcs: std::collections::BTreeSet<&String> = suite.labels.values().flat_map(|m| m.keys()).collect();
    for func in funcs {
        let cells: Vec<String> = langs
            .iter()
            .map(|l| match (suite.labels[*l].get(func), suite.actions[*l].get(func)) {
                (Some(a), Some(b)) if a.total > 0 => format!("{:.0}% / {:.0}% ({})", 100.0 * a.rate(), 100.0 * b.rate(), a.total),
                _ => "–".into(),
            })
            .collect();
        s += &format!("| {func} | {} |\n", cells.join(" | "));
    }
    let (labels, actions) = &suite.without_hint;
    s += &format!(
        "\nWithout a language hint (each case judged by the thresholds of its detected language, as `analyze` without `lang`): labels {:.0}%, actions {:.0}% ({}).\n",
        100.0 * labels.rate(),
        100.0 * actions.rate(),
        labels.total
    );
    s += "\nFrustration on the suite's test cases that annotate it (precision / recall):\n\n| lang | precision | recall |\n|---|---:|---:|\n";
    for (l, (p, r)) in &suite.frustration {
        s += &format!("| {l} | {p:.2} | {r:.2} |\n");
    }
    s += "\n### Conversations, customer turns\n\n| language | turns | action accuracy | SET_BOUNDARY+ (precision) | abuse actions on non-abusive turns |\n|---|---:|---:|---:|---:|\n";
    for (name, t) in conversations.by_language.iter().chain(&conversations.by_kind) {
        let p = t.boundary_precision().map(|p| format!("{} ({:.0}%)", t.boundary_or_worse, 100.0 * p)).unwrap_or_else(|| "0 (–)".into());
        s += &format!(
            "| {name} | {} | {:.1}% | {p} | {:.1}% ({} of {}) |\n",
            t.turns,
            100.0 * t.accuracy(),
            100.0 * t.false_alarm_rate(),
            t.no_abuse_alarmed,
            t.no_abuse
        );
    }
    s += "\nLabels on the same turns, all languages (flags against the gold labels):\n\n| label | gold turns | flagged | precision | recall |\n|---|---:|---:|---:|---:|\n";
    let ratio = |r: Option<f64>| r.map(|r| format!("{r:.2}")).unwrap_or_else(|| "–".into());
    for label in Label::ALL {
        if let Some(t) = conversations.labels.get(label.name()) {
            s += &format!("| {} | {} | {} | {} | {} |\n", label.name(), t.gold, t.flagged, ratio(t.precision()), ratio(t.recall()));
        }
    }
    s += "\nGold → predicted action (all languages, where they differ):\n\n";
    for (k, n) in &conversations.confusion {
        let mut parts = k.split(" → ");
        if parts.next() != parts.next() {
            s += &format!("- {k}: {n}\n");
        }
    }
    s += "\n### Neutral text (test splits of the neutral sets): flag rate per language\n\n| language | texts | any wrong flag | any abuse flag |\n|---|---:|---:|---:|\n";
    for (l, (n, any, abuse)) in neutral {
        s += &format!("| {l} | {n} | {:.1}% | {:.1}% |\n", 100.0 * any, 100.0 * abuse);
    }
    s
}

/// Labels whose flag counts as "offensive" against a public set's generic label.
pub const OFFENSIVE: [Label; 6] = [Label::Rudeness, Label::Insult, Label::Profanity, Label::Threat, Label::IdentityAttack, Label::SexualHarassment];

/// One public generic-offensive test set against "any offensive label flagged".
#[derive(Debug, Clone, Serialize)]
pub struct OffensiveRow {
    pub source: String,
    pub lang: String,
    pub n: usize,
    pub positives: usize,
    /// Share of the set flagged, and of its offensive and clean texts.
    pub flagged: f64,
    pub recall: f64,
    pub false_positive_rate: f64,
    pub precision: f64,
    /// Of the highest offensive-label score, against the set's label.
    pub auc: Option<f64>,
}

/// How much of what the generic sets call offensive calmline flags (the text's language as
/// the hint, as a platform would send it).
pub fn offensive_rows(head: &crate::model::head::Head, examples: &[(Example, bool)], features: &[Vec<f32>]) -> Vec<OffensiveRow> {
    // Per data set and language: the highest offensive score, the truth, whether it was flagged.
    type Group = (Vec<f32>, Vec<bool>, Vec<bool>);
    let mut groups: BTreeMap<(&str, &str), Group> = BTreeMap::new();
    for ((e, offensive), f) in examples.iter().zip(features) {
        let scores = head.scores(f);
        let flags = head.flags(&scores, e.lang);
        let g = groups.entry((e.source, e.lang)).or_default();
        g.0.push(OFFENSIVE.iter().map(|&l| scores.get(l)).fold(0.0, f32::max));
        g.1.push(*offensive);
        g.2.push(flags.iter().any(|l| OFFENSIVE.contains(l)));
    }
    groups
        .into_iter()
        .map(|((source, lang), (max_scores, truth, flagged))| {
            let n = truth.len();
            let positives = truth.iter().filter(|&&t| t).count();
            let tp = truth.iter().zip(&flagged).filter(|(t, f)| **t && **f).count();
            let fp = truth.iter().zip(&flagged).filter(|(t, f)| !**t && **f).count();
            let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
            OffensiveRow {
                source: source.into(),
                lang: lang.into(),
                n,
                positives,
                flagged: ratio(tp + fp, n),
                recall: ratio(tp, positives),
                false_positive_rate: ratio(fp, n - positives),
                precision: ratio(tp, tp + fp),
                auc: super::metrics::roc_auc(&max_scores, &truth),
            }
        })
        .collect()
}

pub fn offensive_markdown(rows: &[OffensiveRow]) -> String {
    let mut s = String::from("| source | lang | n | offensive | flagged | recall | FPR | precision | AUC |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let auc = r.auc.map(|a| format!("{a:.3}")).unwrap_or_else(|| "–".into());
        s += &format!(
            "| {} | {} | {} | {:.0}% | {:.1}% | {:.3} | {:.3} | {:.3} | {auc} |\n",
            r.source,
            r.lang,
            r.n,
            100.0 * r.positives as f64 / r.n.max(1) as f64,
            100.0 * r.flagged,
            r.recall,
            r.false_positive_rate,
            r.precision
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_case(dir: &Path, split: &str) {
        let line = format!(
            r#"{{"id": "en-t0001", "lang": "en", "functionality": "neutral", "group": "en-t-g001", "split": "{split}", "text": "ok, done", "must": [], "must_not": ["rudeness"], "actions": ["NONE"]}}"#
        );
        std::fs::write(dir.join("en.jsonl"), line + "\n").unwrap();
    }

    #[test]
    fn the_report_shows_each_labels_false_flags_on_the_conversations() {
        let mut conversations = ConversationReport::default();
        // Profanity flagged on five turns, one of them sworn on; frustration never flagged.
        conversations.labels.insert("profanity".into(), LabelTally { gold: 2, flagged: 5, flagged_and_gold: 1 });
        conversations.labels.insert("frustration".into(), LabelTally { gold: 3, flagged: 0, flagged_and_gold: 0 });
        let md = markdown(&SuiteReport::default(), &conversations, &BTreeMap::new());
        assert!(md.contains("| profanity | 2 | 5 | 0.20 | 0.50 |"), "{md}");
        assert!(md.contains("| frustration | 3 | 0 | – | 0.00 |"), "{md}");
        assert!(!md.contains("| insult |"), "{md}");
    }

    #[test]
    fn training_turns_train_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        write_case(dir.path(), "train");
        let examples = training_examples(dir.path()).unwrap();
        assert_eq!(examples.len(), 1);
        assert_eq!((examples[0].source, examples[0].split), (TRAINING_SOURCE, Split::Train));
        assert_eq!(examples[0].targets[Label::Rudeness.index()], Some(false));
        assert_eq!(examples[0].targets[Label::Frustration.index()], None);

        write_case(dir.path(), "test");
        let refused = training_examples(dir.path()).unwrap_err().to_string();
        assert!(refused.contains("en-t0001 is not a training case"), "{refused}");
    }
}
