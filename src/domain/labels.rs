//! The seven labels of DESIGN.md: multi-label, one sigmoid each, never a softmax across them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    Frustration,
    Rudeness,
    Insult,
    Profanity,
    Threat,
    IdentityAttack,
    SexualHarassment,
}

pub const LABEL_COUNT: usize = 7;

impl Label {
    /// Every label, in the order of the head's outputs.
    pub const ALL: [Label; LABEL_COUNT] =
        [Label::Frustration, Label::Rudeness, Label::Insult, Label::Profanity, Label::Threat, Label::IdentityAttack, Label::SexualHarassment];

    /// Labels that call a manager at once, whatever the conversation so far (the policy's
    /// ladder): a false one sends a calm customer to a supervisor. Where a language has no
    /// threshold of its own for one of them, the strictest calibrated one applies (`Head`).
    pub fn is_severe(self) -> bool {
        matches!(self, Label::Threat | Label::IdentityAttack | Label::SexualHarassment)
    }

    pub fn name(self) -> &'static str {
        match self {
            Label::Frustration => "frustration",
            Label::Rudeness => "rudeness",
            Label::Insult => "insult",
            Label::Profanity => "profanity",
            Label::Threat => "threat",
            Label::IdentityAttack => "identity_attack",
            Label::SexualHarassment => "sexual_harassment",
        }
    }

    pub fn from_name(name: &str) -> Option<Label> {
        Label::ALL.into_iter().find(|l| l.name() == name)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One probability per label, indexed by `Label::index`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LabelScores(pub [f32; LABEL_COUNT]);

impl LabelScores {
    pub fn get(&self, label: Label) -> f32 {
        self.0[label.index()]
    }

    pub fn iter(&self) -> impl Iterator<Item = (Label, f32)> + '_ {
        Label::ALL.into_iter().map(|l| (l, self.get(l)))
    }

    /// Every label's score rounded to 4 decimals, in label order: how the JSON outputs show
    /// scores (the QA lines of `calmline score`).
    pub fn rounded(&self) -> impl Iterator<Item = (Label, f64)> + '_ {
        self.iter().map(|(label, score)| (label, (f64::from(score) * 10_000.0).round() / 10_000.0))
    }

    /// Element-wise maximum: how windows of one long text are combined (abuse anywhere in a
    /// text counts for the whole text).
    pub fn max(&self, other: &LabelScores) -> LabelScores {
        let mut out = self.0;
        for (o, x) in out.iter_mut().zip(other.0) {
            *o = o.max(x);
        }
        LabelScores(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_head_order() {
        for (i, label) in Label::ALL.into_iter().enumerate() {
            assert_eq!(label.index(), i);
            assert_eq!(Label::from_name(label.name()), Some(label));
        }
        assert_eq!(Label::from_name("anger"), None);
    }
}
