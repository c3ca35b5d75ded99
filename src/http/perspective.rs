//! A drop-in for Google's Perspective API (`commentanalyzer` v1alpha1), which stops at the end
//! of 2026: `POST /v1alpha1/comments:analyze` with Perspective's request and response, and its
//! discovery document at `/$discovery/rest?version=v1alpha1`, so Google's generated clients
//! work when pointed at calmline. The comment is scored as one customer turn through the same
//! `Analyze` handler gRPC callers reach.
//!
//! Attributes from calmline's labels (README, "Perspective drop-in"): each label's score is
//! first put on one scale across languages — its per-language flag threshold maps to 0.5,
//! linearly on either side — so "≥ 0.5" means "calmline flags it" in every language. Then
//! INSULT, PROFANITY, THREAT and IDENTITY_ATTACK are the label of that name, SEXUALLY_EXPLICIT
//! is sexual_harassment, TOXICITY the highest of every abuse label (rudeness, insult,
//! profanity, threat, identity_attack, sexual_harassment; frustration is not toxicity), and
//! SEVERE_TOXICITY the highest of threat, identity_attack, sexual_harassment and a profane
//! insult (the lower of insult and profanity).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tonic::Code;

use super::error::ApiError;
use super::json::{JsonApi, KeyErrors, Params, grpc_request, json_body, json_response, params};
use crate::domain::conversation::MAX_TURN_BYTES;
use crate::domain::labels::{LABEL_COUNT, Label};
use crate::grpc::convert;
use crate::grpc::pb;
use crate::grpc::pb::triage_server::Triage as TriageRpc;

pub const ANALYZE_PATH: &str = "/v1alpha1/comments:analyze";
pub const DISCOVERY_PATH: &str = "/$discovery/rest";
const VERSION: &str = "v1alpha1";
const PROBABILITY: &str = "PROBABILITY";

/// The Perspective attributes calmline scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, strum::IntoStaticStr, strum::EnumString, strum::EnumCount, strum::VariantArray)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
enum Attribute {
    Toxicity,
    SevereToxicity,
    Insult,
    Profanity,
    Threat,
    IdentityAttack,
    SexuallyExplicit,
}

impl Attribute {
    const ALL: [Attribute; <Attribute as strum::EnumCount>::COUNT] =
        *<Attribute as strum::VariantArray>::VARIANTS.first_chunk().expect("VARIANTS has COUNT entries");

    /// Perspective's spelling (`"SEVERE_TOXICITY"`).
    fn name(self) -> &'static str {
        self.into()
    }

    /// The labels whose evidence spans stand for this attribute.
    fn labels(self) -> &'static [Label] {
        use Label::*;
        match self {
            Attribute::Toxicity => &[Rudeness, Insult, Profanity, Threat, IdentityAttack, SexualHarassment],
            Attribute::SevereToxicity => &[Insult, Threat, IdentityAttack, SexualHarassment],
            Attribute::Insult => &[Insult],
            Attribute::Profanity => &[Profanity],
            Attribute::Threat => &[Threat],
            Attribute::IdentityAttack => &[IdentityAttack],
            Attribute::SexuallyExplicit => &[SexualHarassment],
        }
    }

    /// The attribute's score from the labels' scores on the common scale.
    fn score(self, scaled: &[f32; LABEL_COUNT]) -> f32 {
        let of = |l: Label| scaled[l.index()];
        let highest = |labels: &[Label]| labels.iter().map(|&l| of(l)).fold(0.0, f32::max);
        match self {
            Attribute::SevereToxicity => {
                highest(&[Label::Threat, Label::IdentityAttack, Label::SexualHarassment]).max(of(Label::Insult).min(of(Label::Profanity)))
            }
            other => highest(other.labels()),
        }
    }
}

/// A label's score on the scale shared by every language: its flag threshold `t` maps to 0.5,
/// [0, t] onto [0, 0.5] and [t, 1] onto [0.5, 1].
fn on_common_scale(score: f32, threshold: f32) -> f32 {
    let t = threshold.clamp(1e-3, 1.0 - 1e-3);
    let scaled = if score < t { 0.5 * score / t } else { 0.5 + 0.5 * (score - t) / (1.0 - t) };
    scaled.clamp(0.0, 1.0)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AnalyzeCommentRequest {
    comment: Option<TextEntry>,
    #[serde(default)]
    requested_attributes: BTreeMap<String, Option<AttributeParameters>>,
    #[serde(default)]
    languages: Vec<String>,
    #[serde(default)]
    span_annotations: bool,
    #[serde(default)]
    client_token: Option<String>,
    // Accepted for compatibility; calmline never stores text and has no use for the rest.
    #[serde(default)]
    #[allow(dead_code)]
    do_not_store: bool,
    #[serde(default)]
    #[allow(dead_code)]
    context: Option<serde_json::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    session_id: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    community_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TextEntry {
    #[serde(default)]
    text: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AttributeParameters {
    score_type: Option<String>,
    score_threshold: Option<f32>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AnalyzeCommentResponse {
    attribute_scores: BTreeMap<&'static str, AttributeScores>,
    languages: Vec<String>,
    detected_languages: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_token: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AttributeScores {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    span_scores: Vec<SpanScore>,
    summary_score: Score,
}

#[derive(Debug, Serialize)]
struct SpanScore {
    begin: u32,
    end: u32,
    score: Score,
}

#[derive(Debug, Serialize)]
struct Score {
    value: f32,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl Score {
    fn probability(value: f32) -> Score {
        // Four decimals: the scores carry no more precision than that.
        Score { value: (value * 1e4).round() / 1e4, kind: PROBABILITY }
    }
}

/// A request, checked: what to score and how to answer.
#[derive(Debug)]
struct Plan {
    language: Option<String>,
    /// Requested attributes with their score thresholds.
    attributes: Vec<(Attribute, Option<f32>)>,
    spans: bool,
    client_token: Option<String>,
    languages: Vec<String>,
}

impl Plan {
    /// Checks a request the way Perspective does, with its messages and error types; returns
    /// the comment's text and how to answer.
    fn check(request: AnalyzeCommentRequest) -> Result<(String, Plan), ApiError> {
        let comment = request.comment.ok_or_else(|| ApiError::invalid("Comment must be non-empty.").typed("COMMENT_EMPTY"))?;
        match comment.kind.as_deref() {
            None | Some("PLAIN_TEXT") | Some("TEXT_TYPE_UNSPECIFIED") => {}
            Some("HTML") => return Err(ApiError::invalid("HTML comments are not supported: strip the markup and send PLAIN_TEXT.")),
            Some(other) => return Err(ApiError::invalid(format!("Invalid value at 'comment.type': {other:?}"))),
        }
        if comment.text.trim().is_empty() {
            return Err(ApiError::invalid("Comment must be non-empty.").typed("COMMENT_EMPTY"));
        }
        if comment.text.len() > MAX_TURN_BYTES {
            return Err(
                ApiError::invalid(format!("Comment text too long: {} bytes; the limit is {MAX_TURN_BYTES}.", comment.text.len())).typed("COMMENT_TOO_LONG")
            );
        }
        if request.requested_attributes.is_empty() {
            return Err(ApiError::invalid("Must request at least one attribute.").typed("NO_REQUESTED_ATTRIBUTES"));
        }
        let mut attributes = Vec::with_capacity(request.requested_attributes.len());
        for (name, parameters) in &request.requested_attributes {
            let attribute = name.parse::<Attribute>().map_err(|_| {
                let served: Vec<&str> = Attribute::ALL.iter().map(|a| a.name()).collect();
                ApiError::invalid(format!("Unknown attribute: {name}. calmline serves {}.", served.join(", "))).typed("ATTRIBUTE_NOT_SUPPORTED")
            })?;
            let parameters = parameters.as_ref();
            match parameters.and_then(|p| p.score_type.as_deref()) {
                None | Some(PROBABILITY) | Some("SCORE_TYPE_UNSPECIFIED") => {}
                Some(other) => return Err(ApiError::invalid(format!("Unsupported score type {other} for attribute {name}: calmline serves PROBABILITY."))),
            }
            let threshold = parameters.and_then(|p| p.score_threshold);
            if threshold.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
                return Err(ApiError::invalid(format!("scoreThreshold for {name} must be between 0 and 1.")));
            }
            attributes.push((attribute, threshold));
        }
        let language = match request.languages.first() {
            None => None,
            Some(code) => {
                let base = code.split(['-', '_']).next().unwrap_or_default().to_ascii_lowercase();
                if !crate::model::ENCODER_LANGUAGES.contains(&base.as_str()) {
                    let names: Vec<&str> = attributes.iter().map(|(a, _)| a.name()).collect();
                    return Err(ApiError::invalid(format!("Attribute {} does not support request languages: {code}", names.join(", ")))
                        .typed("LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE"));
                }
                Some(base)
            }
        };
        let plan = Plan { language, attributes, spans: request.span_annotations, client_token: request.client_token, languages: request.languages };
        Ok((comment.text, plan))
    }

    /// Perspective's answer from calmline's assessment of the comment.
    fn answer(self, assessment: &pb::Assessment, text_chars: u32) -> AnalyzeCommentResponse {
        let mut scaled = [0.0f32; LABEL_COUNT];
        for s in &assessment.scores {
            if let Some(label) = label_of(s.label) {
                scaled[label.index()] = on_common_scale(s.score, s.threshold);
            }
        }
        let evidence: &[pb::Span] = assessment.guidance.as_ref().and_then(|g| g.evidence.as_ref()).map_or(&[][..], |e| e.spans.as_slice());
        let mut attribute_scores = BTreeMap::new();
        for &(attribute, threshold) in &self.attributes {
            let value = attribute.score(&scaled);
            if threshold.is_some_and(|t| value < t) {
                continue;
            }
            let span_scores = if self.spans { spans_for(attribute, evidence, value, text_chars) } else { Vec::new() };
            attribute_scores.insert(attribute.name(), AttributeScores { span_scores, summary_score: Score::probability(value) });
        }
        let detected = vec![assessment.language.clone()];
        AnalyzeCommentResponse {
            attribute_scores,
            languages: if self.languages.is_empty() { detected.clone() } else { self.languages },
            detected_languages: detected,
            client_token: self.client_token,
        }
    }
}

/// The words that drove a flagged attribute (calmline's evidence spans, each with its own
/// score); otherwise, as Perspective does for a one-sentence comment, the whole comment with
/// the summary score.
fn spans_for(attribute: Attribute, evidence: &[pb::Span], value: f32, text_chars: u32) -> Vec<SpanScore> {
    let words: Vec<SpanScore> = evidence
        .iter()
        .filter(|s| label_of(s.label).is_some_and(|l| attribute.labels().contains(&l)))
        .map(|s| SpanScore { begin: s.begin, end: s.end, score: Score::probability(s.score) })
        .collect();
    if value >= 0.5 && !words.is_empty() {
        return words;
    }
    vec![SpanScore { begin: 0, end: text_chars, score: Score::probability(value) }]
}

fn label_of(pb_label: i32) -> Option<Label> {
    Label::ALL.into_iter().find(|&l| convert::label(l) as i32 == pb_label)
}

/// `POST /v1alpha1/comments:analyze`.
pub async fn analyze(State(api): State<JsonApi>, headers: HeaderMap, query: Params, body: Body) -> Response {
    let result = async {
        let params = params(query)?;
        api.check_key(&headers, &params, KeyErrors::Google)?;
        check_alt(&params)?;
        let (text, plan) = Plan::check(json_body(&headers, body, api.max_body).await?)?;
        let text_chars = u32::try_from(text.chars().count()).unwrap_or(u32::MAX);
        let turn = pb::Turn { speaker: pb::Speaker::Customer as i32, text, lang: plan.language.clone() };
        let request = pb::AnalyzeRequest { turn: Some(turn), state: None, locale: String::new() };
        let response = TriageRpc::analyze(&*api.triage, grpc_request(request, &headers)?).await?.into_inner();
        let assessment = response.assessment.ok_or_else(|| ApiError::new(Code::Internal, "no assessment came back"))?;
        Ok::<_, ApiError>(json_response(&plan.answer(&assessment, text_chars)))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// Only JSON is served (`alt=json`, Google clients send it on every call).
fn check_alt(params: &[(String, String)]) -> Result<(), ApiError> {
    match params.iter().find(|(name, _)| name == "alt").map(|(_, v)| v.as_str()) {
        None | Some("json") => Ok(()),
        Some(other) => Err(ApiError::invalid(format!("alt={other} is not supported: only json"))),
    }
}

/// The discovery document, parsed once; `rootUrl` and `baseUrl` are filled per request.
static DISCOVERY: LazyLock<serde_json::Value> =
    LazyLock::new(|| serde_json::from_str(include_str!("perspective-discovery.json")).expect("the discovery document is valid JSON (a unit test parses it)"));

/// `GET /$discovery/rest?version=v1alpha1`: open, like Google's, so a client can build itself
/// before it sends its key.
pub async fn discovery(State(api): State<JsonApi>, headers: HeaderMap, query: Params) -> Response {
    let result = async {
        let params = params(query)?;
        if let Some((_, version)) = params.iter().find(|(name, _)| name == "version")
            && version != VERSION
        {
            return Err(ApiError::new(Code::NotFound, format!("no discovery document for version {version}; calmline serves {VERSION}")));
        }
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .filter(|h| is_host(h))
            .ok_or_else(|| ApiError::invalid("a valid Host header is required"))?;
        let root = format!("{}://{host}/", api.scheme);
        let mut document = DISCOVERY.clone();
        for field in ["rootUrl", "baseUrl", "mtlsRootUrl"] {
            document[field] = serde_json::Value::String(root.clone());
        }
        Ok(json_response(&document))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// A host and optional port (`name`, `1.2.3.4:50051`, `[::1]:50051`): nothing that could
/// turn the root URL into something else.
fn is_host(host: &str) -> bool {
    !host.is_empty() && host.len() <= 255 && host.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]_".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> Result<Plan, ApiError> {
        Plan::check(serde_json::from_value(json).map_err(|e| ApiError::invalid(e.to_string()))?).map(|(_, plan)| plan)
    }

    #[test]
    fn the_threshold_maps_to_one_half_in_every_language() {
        for t in [0.2f32, 0.5, 0.8] {
            assert!((on_common_scale(t, t) - 0.5).abs() < 1e-6);
            assert_eq!(on_common_scale(0.0, t), 0.0);
            assert!((on_common_scale(1.0, t) - 1.0).abs() < 1e-6);
            assert!(on_common_scale(t - 0.01, t) < 0.5 && on_common_scale(t + 0.01, t) > 0.5);
        }
    }

    #[test]
    fn attributes_follow_the_documented_mapping() {
        let mut scaled = [0.0f32; LABEL_COUNT];
        scaled[Label::Frustration.index()] = 0.9;
        assert_eq!(Attribute::Toxicity.score(&scaled), 0.0, "frustration is not toxicity");
        scaled[Label::Insult.index()] = 0.7;
        scaled[Label::Profanity.index()] = 0.6;
        assert_eq!(Attribute::Toxicity.score(&scaled), 0.7);
        assert_eq!(Attribute::SevereToxicity.score(&scaled), 0.6, "a profane insult: the lower of the two");
        scaled[Label::Threat.index()] = 0.8;
        assert_eq!(Attribute::SevereToxicity.score(&scaled), 0.8);
        assert_eq!(Attribute::SexuallyExplicit.score(&scaled), 0.0);
    }

    #[test]
    fn requests_are_checked_as_perspective_checks_them() {
        let ok = request(serde_json::json!({"comment": {"text": "hello"}, "requestedAttributes": {"TOXICITY": {}, "INSULT": {"scoreThreshold": 0.3}}, "languages": ["pt-BR"]})).unwrap();
        assert_eq!(ok.attributes, vec![(Attribute::Insult, Some(0.3)), (Attribute::Toxicity, None)]);
        assert_eq!(ok.language.as_deref(), Some("pt"));
        for (json, expect) in [
            (serde_json::json!({"requestedAttributes": {"TOXICITY": {}}}), "COMMENT_EMPTY"),
            (serde_json::json!({"comment": {"text": "  "}, "requestedAttributes": {"TOXICITY": {}}}), "COMMENT_EMPTY"),
            (serde_json::json!({"comment": {"text": "hi"}}), "NO_REQUESTED_ATTRIBUTES"),
            (serde_json::json!({"comment": {"text": "hi"}, "requestedAttributes": {"FLIRTATION": {}}}), "ATTRIBUTE_NOT_SUPPORTED"),
            (
                serde_json::json!({"comment": {"text": "hi"}, "requestedAttributes": {"TOXICITY": {}}, "languages": ["tlh"]}),
                "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE",
            ),
        ] {
            let e = request(json.clone()).unwrap_err();
            assert_eq!((e.code, e.error_type), (Code::InvalidArgument, Some(expect)), "{json}: {}", e.message);
        }
        let e = request(serde_json::json!({"comment": {"text": "hi"}, "requestedAttributes": {"TOXICITY": {"scoreType": "STD_DEV_SCORE"}}})).unwrap_err();
        assert!(e.message.contains("PROBABILITY"), "{}", e.message);
    }

    #[test]
    fn spans_are_the_words_when_flagged_and_the_whole_comment_otherwise() {
        let insult = pb::Span { label: pb::Label::Insult as i32, begin: 4, end: 9, byte_begin: 4, byte_end: 9, score: 0.8 };
        let words = spans_for(Attribute::Toxicity, std::slice::from_ref(&insult), 0.9, 20);
        assert_eq!((words.len(), words[0].begin, words[0].end), (1, 4, 9));
        let whole = spans_for(Attribute::Threat, &[insult], 0.1, 20);
        assert_eq!((whole.len(), whole[0].begin, whole[0].end), (1, 0, 20));
    }

    #[test]
    fn the_discovery_document_parses_and_names_the_method() {
        assert_eq!(DISCOVERY["resources"]["comments"]["methods"]["analyze"]["path"], "v1alpha1/comments:analyze");
        assert_eq!(format!("/{}", DISCOVERY["resources"]["comments"]["methods"]["analyze"]["path"].as_str().unwrap()), ANALYZE_PATH);
        assert!(is_host("127.0.0.1:50051") && is_host("[::1]:8080") && !is_host("evil.com/x?") && !is_host(""));
    }
}
