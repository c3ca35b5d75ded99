//! A turn's severity, from its flags and scores, by the rules of the policy file.

use serde::{Deserialize, Serialize};

use crate::domain::labels::{Label, LabelScores};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [Severity::None, Severity::Low, Severity::Medium, Severity::High, Severity::Critical];

    pub fn name(self) -> &'static str {
        match self {
            Severity::None => "none",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
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
