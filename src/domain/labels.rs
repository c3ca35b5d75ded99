//! The seven labels of DESIGN.md: multi-label, one sigmoid each, never a softmax across them.

use serde::{Deserialize, Serialize};
use strum::{EnumCount, VariantArray};

/// The names (`"identity_attack"`) and the list of variants are derived: serde's and strum's
/// spellings are both snake_case, so the JSON, the policy files and `name()` agree.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::Display,
    strum::EnumCount,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Label {
    Frustration,
    Rudeness,
    Insult,
    Profanity,
    Threat,
    IdentityAttack,
    SexualHarassment,
}

pub const LABEL_COUNT: usize = Label::COUNT;

impl Label {
    /// Every label, in the order of the head's outputs.
    pub const ALL: [Label; LABEL_COUNT] = *Label::VARIANTS.first_chunk().expect("VARIANTS has COUNT entries");

    /// Labels that call a manager at once, whatever the conversation so far (the policy's
    /// ladder): a false one sends a calm customer to a supervisor. Where a language has no
    /// threshold of its own for one of them, the strictest calibrated one applies (`Head`).
    pub fn is_severe(self) -> bool {
        matches!(self, Label::Threat | Label::IdentityAttack | Label::SexualHarassment)
    }

    pub fn name(self) -> &'static str {
        self.into()
    }

    pub fn index(self) -> usize {
        self as usize
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
            assert_eq!(label.name().parse::<Label>().ok(), Some(label));
            assert_eq!(serde_json::to_value(label).unwrap(), label.name(), "serde and strum spell {label} alike");
        }
        assert!("anger".parse::<Label>().is_err());
    }
}
