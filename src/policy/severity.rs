//! A turn's severity from its flags and scores.
//!
//! Interim rule until the policy file of the service issue carries it as data: harm to a person
//! ranks above incivility, incivility above frustration (DESIGN.md "Guidance: the ladder").

use serde::Serialize;

use crate::labels::{Label, LabelScores};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    None,
    Low,
    Medium,
    High,
    Critical,
}

/// Scores at or above this make a flagged harm label count as severe.
const SEVERE_SCORE: f32 = 0.9;

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::None => "none",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// - critical: a threat, or a flagged identity attack or sexual harassment scored severe
    /// - high: identity attack or sexual harassment, or an insult scored severe
    /// - medium: an insult or rudeness
    /// - low: frustration or profanity only
    pub fn of(flags: &[Label], scores: &LabelScores) -> Severity {
        use Label::*;
        let has = |l: Label| flags.contains(&l);
        let severe = |l: Label| has(l) && scores.get(l) >= SEVERE_SCORE;
        if has(Threat) || severe(IdentityAttack) || severe(SexualHarassment) {
            Severity::Critical
        } else if has(IdentityAttack) || has(SexualHarassment) || severe(Insult) {
            Severity::High
        } else if has(Insult) || has(Rudeness) {
            Severity::Medium
        } else if has(Frustration) || has(Profanity) {
            Severity::Low
        } else {
            Severity::None
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
    fn harm_ranks_above_incivility_above_frustration() {
        assert_eq!(Severity::of(&[], &scores(&[])), Severity::None);
        assert_eq!(Severity::of(&[Frustration, Profanity], &scores(&[(Frustration, 0.99)])), Severity::Low);
        assert_eq!(Severity::of(&[Rudeness], &scores(&[(Rudeness, 0.6)])), Severity::Medium);
        assert_eq!(Severity::of(&[Insult], &scores(&[(Insult, 0.7)])), Severity::Medium);
        assert_eq!(Severity::of(&[Insult], &scores(&[(Insult, 0.95)])), Severity::High);
        assert_eq!(Severity::of(&[SexualHarassment], &scores(&[(SexualHarassment, 0.6)])), Severity::High);
        assert_eq!(Severity::of(&[Threat], &scores(&[(Threat, 0.5)])), Severity::Critical);
    }
}
