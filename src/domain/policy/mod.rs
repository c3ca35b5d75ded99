//! The policy: from label scores to severity, and from the course of a conversation to guidance
//! for the agent (DESIGN.md, "Guidance: the ladder"). The policy is data (`models/policy.toml`,
//! embedded as the default); this module reads it, checks it, and applies it.

pub mod severity;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::labels::{Label, LabelScores};
pub use severity::{Severity, SeverityRules};

/// The policy shipped with calmline.
pub const EMBEDDED_POLICY: &str = include_str!("../../../models/policy.toml");

/// Locales every hint must be written in; others fall back to English.
pub const REQUIRED_LOCALES: [&str; 3] = ["en", "hu", "he"];
pub const FALLBACK_LOCALE: &str = "en";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumCount, strum::VariantArray)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    None,
    Acknowledge,
    LetItPass,
    StayCalm,
    SetBoundary,
    InvolveManager,
    EndContact,
}

impl Action {
    pub const ALL: [Action; <Action as strum::EnumCount>::COUNT] =
        *<Action as strum::VariantArray>::VARIANTS.first_chunk().expect("VARIANTS has COUNT entries");

    /// The enum name without prefix, as in the QA files (`"LET_IT_PASS"`).
    pub fn name(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("policy {origin} is invalid: {message}")]
    Invalid { origin: String, message: String },
}

/// `[ladder]` of the policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LadderRules {
    pub abuse: Vec<Label>,
    pub harm: Vec<Label>,
    pub frustration: Vec<Label>,
    pub stay_calm_at: u32,
    pub set_boundary_at: u32,
    /// Labels of which the turn must carry one for the count to set a boundary (below it the
    /// ladder stays at "stay calm"). Empty (policies written before it): any abuse label.
    #[serde(default)]
    pub boundary_needs: Vec<Label>,
    pub boundary_severity: Severity,
    pub cool_down_after: u32,
}

/// One action's rule: its id, its source, and its hint per locale.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRule {
    pub rule: String,
    pub source: String,
    pub hint: BTreeMap<String, String>,
}

/// A "don't" of seed 003, attached to the guidance of the actions it applies to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dont {
    pub rule: String,
    pub source: String,
    pub applies_to: Vec<Action>,
    pub hint: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: String,
    severity: SeverityRules,
    ladder: LadderRules,
    actions: BTreeMap<Action, ActionRule>,
    #[serde(default)]
    donts: Vec<Dont>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub version: String,
    /// First 16 hex digits of the SHA-256 of the policy text: reported with every result.
    pub hash: String,
    pub severity: SeverityRules,
    pub ladder: LadderRules,
    actions: BTreeMap<Action, ActionRule>,
    donts: Vec<Dont>,
}

/// What a conversation has been through so far. It travels with the caller (unary) or lives in
/// the stream; calmline itself keeps nothing between calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationState {
    /// Turns so far, customer and agent.
    pub turns: u32,
    /// Customer turns so far.
    pub customer_turns: u32,
    /// Abusive turns not yet cooled down.
    pub heated_turns: u32,
    pub boundary_set: bool,
    pub manager_involved: bool,
    /// Consecutive customer turns without abuse.
    pub calm_streak: u32,
}

/// A localized hint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hint {
    pub text: String,
    /// The locale the text is in (the requested one, or the English fallback).
    pub locale: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DontHint {
    pub rule: String,
    pub source: String,
    pub hint: Hint,
}

/// What the agent should do after a customer turn, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Guidance {
    pub action: Action,
    pub rule: String,
    pub source: String,
    pub hint: Hint,
    /// The flagged labels that drove the action.
    pub evidence: Vec<Label>,
    pub donts: Vec<DontHint>,
}

impl Policy {
    /// The policy in `path`, or the embedded one when none is given (`--policy`).
    pub fn load_or_embedded(path: Option<&Path>) -> Result<Policy, PolicyError> {
        match path {
            Some(path) => Policy::load(path),
            None => Ok(Policy::embedded()),
        }
    }

    /// The policy embedded in the binary.
    pub fn embedded() -> Policy {
        Policy::parse(EMBEDDED_POLICY, "embedded").expect("the embedded policy is checked by the tests")
    }

    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read { path: path.display().to_string(), source })?;
        Policy::parse(&text, &path.display().to_string())
    }

    /// Parses and checks a policy; errors name the place (line and column, or the rule).
    pub fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        let invalid = |message: String| PolicyError::Invalid { origin: origin.to_string(), message };
        let file: PolicyFile = toml::from_str(text).map_err(|e| invalid(e.to_string().trim_end().to_string()))?;
        for action in Action::ALL {
            let rule = file.actions.get(&action).ok_or_else(|| invalid(format!("[actions.{}] is missing", action.name())))?;
            if action != Action::None {
                for locale in REQUIRED_LOCALES {
                    if rule.hint.get(locale).is_none_or(|h| h.trim().is_empty()) {
                        return Err(invalid(format!("[actions.{}] has no hint.{locale}", action.name())));
                    }
                }
            }
        }
        for dont in &file.donts {
            for locale in REQUIRED_LOCALES {
                if dont.hint.get(locale).is_none_or(|h| h.trim().is_empty()) {
                    return Err(invalid(format!("don't `{}` has no hint.{locale}", dont.rule)));
                }
            }
        }
        let ladder = &file.ladder;
        if ladder.stay_calm_at < 2 || ladder.set_boundary_at <= ladder.stay_calm_at {
            return Err(invalid("[ladder] needs 2 <= stay_calm_at < set_boundary_at".into()));
        }
        if ladder.cool_down_after == 0 {
            return Err(invalid("[ladder] cool_down_after must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&file.severity.severe_score) {
            return Err(invalid("[severity] severe_score must be within 0..1".into()));
        }
        let digest = Sha256::digest(text.as_bytes());
        Ok(Policy {
            version: file.version,
            hash: hex::encode(&digest[..8]),
            severity: file.severity,
            ladder: file.ladder,
            actions: file.actions,
            donts: file.donts,
        })
    }

    pub fn severity_of(&self, flags: &[Label], scores: &LabelScores) -> Severity {
        self.severity.of(flags, scores)
    }

    /// Locales with hints for every action.
    pub fn locales(&self) -> Vec<String> {
        let mut locales: Vec<String> = self.actions[&Action::Acknowledge].hint.keys().cloned().collect();
        locales.retain(|l| self.actions.iter().all(|(a, r)| *a == Action::None || r.hint.contains_key(l)));
        locales
    }

    fn localized(hints: &BTreeMap<String, String>, locale: &str) -> Hint {
        // "hu-HU" → "hu"; unknown → English.
        let base = locale.split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
        match hints.get(&base) {
            Some(text) => Hint { text: text.clone(), locale: base },
            None => Hint { text: hints.get(FALLBACK_LOCALE).cloned().unwrap_or_default(), locale: FALLBACK_LOCALE.into() },
        }
    }

    /// Applies a customer turn to the conversation: updates `state` and returns the guidance.
    pub fn customer_turn(&self, state: &mut ConversationState, flags: &[Label], severity: Severity, locale: &str) -> Guidance {
        let l = &self.ladder;
        let pick = |labels: &[Label]| -> Vec<Label> { flags.iter().copied().filter(|f| labels.contains(f)).collect() };
        let (harm, abuse, frustration) = (pick(&l.harm), pick(&l.abuse), pick(&l.frustration));
        state.customer_turns = state.customer_turns.saturating_add(1);

        // Only rudeness and insult count as heated turns; a turn without them counts towards
        // cooling down (data/conversations/README.md states the same ladder for the gold actions).
        if abuse.is_empty() {
            state.calm_streak = state.calm_streak.saturating_add(1);
            if state.calm_streak >= l.cool_down_after && state.heated_turns > 0 {
                state.heated_turns -= 1;
                state.calm_streak = 0;
            }
        } else {
            state.calm_streak = 0;
            state.heated_turns = state.heated_turns.saturating_add(1);
        }
        let (action, evidence) = if !harm.is_empty() || !abuse.is_empty() {
            let mut evidence = harm.clone();
            evidence.extend(&abuse);
            let may_set_boundary = l.boundary_needs.is_empty() || abuse.iter().any(|a| l.boundary_needs.contains(a));
            let action = if state.manager_involved {
                Action::EndContact
            } else if !harm.is_empty() || state.boundary_set {
                Action::InvolveManager
            } else if severity >= l.boundary_severity || (state.heated_turns >= l.set_boundary_at && may_set_boundary) {
                Action::SetBoundary
            } else if state.heated_turns >= l.stay_calm_at {
                Action::StayCalm
            } else {
                Action::LetItPass
            };
            match action {
                Action::SetBoundary => state.boundary_set = true,
                Action::InvolveManager => state.manager_involved = true,
                _ => {}
            }
            (action, evidence)
        } else if frustration.is_empty() {
            (Action::None, Vec::new())
        } else {
            (Action::Acknowledge, frustration)
        };

        let rule = &self.actions[&action];
        Guidance {
            action,
            rule: rule.rule.clone(),
            source: rule.source.clone(),
            hint: if action == Action::None { Hint { text: String::new(), locale: FALLBACK_LOCALE.into() } } else { Self::localized(&rule.hint, locale) },
            evidence,
            donts: self
                .donts
                .iter()
                .filter(|d| d.applies_to.contains(&action))
                .map(|d| DontHint { rule: d.rule.clone(), source: d.source.clone(), hint: Self::localized(&d.hint, locale) })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Label::*;

    fn scores(pairs: &[(Label, f32)]) -> LabelScores {
        let mut s = LabelScores::default();
        for &(l, v) in pairs {
            s.0[l.index()] = v;
        }
        s
    }

    #[test]
    fn the_embedded_policy_is_valid_and_names_its_sources() {
        let p = Policy::embedded();
        assert_eq!(p.hash.len(), 16);
        assert_eq!(p.locales(), vec!["en", "he", "hu"]);
        for action in Action::ALL.into_iter().filter(|a| *a != Action::None) {
            assert!(p.actions[&action].source.starts_with("seed 00"), "{action:?}");
        }
    }

    #[test]
    fn severity_ranks_harm_above_incivility_above_frustration() {
        let p = Policy::embedded();
        let s = |flags: &[Label], sc: &[(Label, f32)]| p.severity_of(flags, &scores(sc));
        assert_eq!(s(&[], &[]), Severity::None);
        assert_eq!(s(&[Frustration, Profanity], &[(Frustration, 0.99)]), Severity::Low);
        assert_eq!(s(&[Rudeness], &[(Rudeness, 0.6)]), Severity::Medium);
        assert_eq!(s(&[Insult], &[(Insult, 0.7)]), Severity::Medium);
        // A confident insult score is not a severe insult (judgement issue, item 7).
        assert_eq!(s(&[Insult], &[(Insult, 0.95)]), Severity::Medium);
        assert_eq!(s(&[SexualHarassment], &[(SexualHarassment, 0.6)]), Severity::High);
        assert_eq!(s(&[Threat], &[(Threat, 0.5)]), Severity::Critical);
    }

    fn walk(turns: &[(&[Label], Severity)]) -> Vec<Action> {
        let p = Policy::embedded();
        let mut state = ConversationState::default();
        turns.iter().map(|(flags, sev)| p.customer_turn(&mut state, flags, *sev, "en").action).collect()
    }

    #[test]
    fn the_ladder_climbs_one_rung_per_abusive_turn() {
        use Action::*;
        let insult: &[Label] = &[Insult];
        let m = Severity::Medium;
        assert_eq!(
            walk(&[(&[Frustration], Severity::Low), (insult, m), (insult, m), (insult, m), (insult, m), (insult, m)]),
            vec![Acknowledge, LetItPass, StayCalm, SetBoundary, InvolveManager, EndContact]
        );
    }

    #[test]
    fn harm_goes_straight_to_a_manager_and_a_severe_turn_to_a_boundary() {
        use Action::*;
        assert_eq!(walk(&[(&[Threat], Severity::Critical)]), vec![InvolveManager]);
        assert_eq!(walk(&[(&[Insult], Severity::High)]), vec![SetBoundary]);
        assert_eq!(walk(&[(&[Insult], Severity::Medium)]), vec![LetItPass]);
        assert_eq!(walk(&[(&[], Severity::None), (&[SexualHarassment], Severity::High)]), vec![None, InvolveManager]);
    }

    #[test]
    fn rudeness_alone_never_reaches_a_boundary() {
        use Action::*;
        let r: &[Label] = &[Rudeness];
        let m = Severity::Medium;
        assert_eq!(walk(&[(r, m), (r, m), (r, m), (r, m), (&[Rudeness, Insult], m)]), vec![LetItPass, StayCalm, StayCalm, StayCalm, SetBoundary]);
    }

    #[test]
    fn a_policy_without_boundary_needs_lets_any_abuse_set_the_boundary() {
        let old = EMBEDDED_POLICY.replace("boundary_needs = [\"insult\"]", "");
        let p = Policy::parse(&old, "old.toml").unwrap();
        let mut state = ConversationState::default();
        let r: &[Label] = &[Rudeness];
        let actions: Vec<Action> = (0..3).map(|_| p.customer_turn(&mut state, r, Severity::Medium, "en").action).collect();
        assert_eq!(actions, vec![Action::LetItPass, Action::StayCalm, Action::SetBoundary]);
    }

    #[test]
    fn profanity_alone_asks_for_nothing() {
        assert_eq!(walk(&[(&[Profanity], Severity::Low), (&[Frustration, Profanity], Severity::Low)]), vec![Action::None, Action::Acknowledge]);
    }

    #[test]
    fn calm_turns_cool_the_conversation_down() {
        use Action::*;
        let r: &[Label] = &[Rudeness];
        let calm: &[Label] = &[];
        let m = Severity::Medium;
        // Two rude turns, then three calm ones cool one heated turn: the next rude turn is the
        // second rung again, not the third.
        assert_eq!(
            walk(&[(r, m), (r, m), (calm, Severity::None), (calm, Severity::None), (calm, Severity::None), (r, m)]),
            vec![LetItPass, StayCalm, None, None, None, StayCalm]
        );
    }

    #[test]
    fn hints_are_localized_with_english_fallback_and_carry_donts() {
        let p = Policy::embedded();
        let mut state = ConversationState::default();
        let g = p.customer_turn(&mut state, &[Frustration], Severity::Low, "hu-HU");
        assert_eq!(g.hint.locale, "hu");
        assert!(g.hint.text.contains("bocsánatot"));
        assert!(g.donts.iter().any(|d| d.rule == "003-4-no-blaming-others"));
        let g = p.customer_turn(&mut ConversationState::default(), &[Insult], Severity::Medium, "he");
        assert_eq!((g.action, g.hint.locale.as_str()), (Action::LetItPass, "he"));
        let g = p.customer_turn(&mut ConversationState::default(), &[Insult], Severity::Medium, "pt-BR");
        assert_eq!(g.hint.locale, "en");
        assert_eq!(g.rule, "004-m2-s2-let-it-pass");
    }

    #[test]
    fn a_bad_policy_names_the_place() {
        let broken = EMBEDDED_POLICY.replace("stay_calm_at = 2", "stay_calm_at = \"two\"");
        let err = Policy::parse(&broken, "test.toml").unwrap_err().to_string();
        assert!(err.contains("test.toml") && err.contains("line"), "{err}");
        let unknown = EMBEDDED_POLICY.replace("abuse = [\"rudeness\", \"insult\"]", "abuse = [\"rudeness\", \"shouting\"]");
        let err = Policy::parse(&unknown, "test.toml").unwrap_err().to_string();
        assert!(err.contains("shouting"), "{err}");
        let no_hebrew = EMBEDDED_POLICY.replacen("hint.he = \"הלקוח", "hint.xx = \"הלקוח", 1);
        let err = Policy::parse(&no_hebrew, "test.toml").unwrap_err().to_string();
        assert!(err.contains("hint.he"), "{err}");
    }
}
