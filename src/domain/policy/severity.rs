//! A turn's severity, from its flags and scores, by the rules of the policy file.

use serde::{Deserialize, Serialize};

use crate::domain::labels::{Label, LabelScores};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumCount, strum::VariantArray)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Severity {
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; <Severity as strum::EnumCount>::COUNT] =
        *<Severity as strum::VariantArray>::VARIANTS.first_chunk().expect("VARIANTS has COUNT entries");

    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// `[severity]` of the policy: for each level, the labels whose flag raises a turn to it, and
/// the labels that do so only when scored at least `severe_score`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityRules {
    pub severe_score: f32,
    pub critical: Vec<Label>,
    pub critical_if_severe: Vec<Label>,
    pub high: Vec<Label>,
    pub high_if_severe: Vec<Label>,
    pub medium: Vec<Label>,
    pub low: Vec<Label>,
}

impl SeverityRules {
    /// The highest level whose condition holds (levels are tried from critical down).
    pub fn of(&self, flags: &[Label], scores: &LabelScores) -> Severity {
        let any_flag = |labels: &[Label]| labels.iter().any(|l| flags.contains(l));
        let any_severe = |labels: &[Label]| labels.iter().any(|&l| flags.contains(&l) && scores.get(l) >= self.severe_score);
        if any_flag(&self.critical) || any_severe(&self.critical_if_severe) {
            Severity::Critical
        } else if any_flag(&self.high) || any_severe(&self.high_if_severe) {
            Severity::High
        } else if any_flag(&self.medium) {
            Severity::Medium
        } else if any_flag(&self.low) {
            Severity::Low
        } else {
            Severity::None
        }
    }
}
