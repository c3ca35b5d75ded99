//! The gRPC service end to end through `calmline::run` on an ephemeral port: every RPC, the
//! guidance ladder in en, hu and he, state round trips, bad input, overload, deadlines, health
//! and metrics.

use crate::common;

use crate::common::{action_of, agent, customer};
use calmline::grpc::pb;
use pb::Action;
use tonic::Code;

/// Scripted conversations per language: frustration, then abuse that goes on.
struct Script {
    lang: &'static str,
    frustrated: &'static str,
    insult: &'static str,
    threat: &'static str,
    calm: &'static str,
}

/// Each script's insult is an insult aimed at the agent, so the ladder starts at LET_IT_PASS and
/// reaches SET_BOUNDARY at the third; rudeness alone would stop at STAY_CALM (covered by
/// `policy::tests::rudeness_alone_never_reaches_a_boundary`).
const SCRIPTS: &[Script] = &[
    Script {
        lang: "en",
        frustrated: "I've been waiting for two weeks and still nothing. This is so frustrating.",
        insult: "You're completely useless and incompetent.",
        threat: "I know where your office is and I will come there and beat you up.",
        calm: "Okay, thank you, that works now.",
    },
    Script {
        lang: "hu",
        frustrated: "Már harmadszor hívom önöket ugyanazzal a hibával, és még mindig nem javították meg. Elegem van!",
        insult: "Maga egy tehetetlen alak, semmit nem tud megoldani.",
        threat: "Tudom, hol van az irodájuk, odamegyek és megverem magát.",
        calm: "Rendben, köszönöm, most már működik.",
    },
    Script {
        lang: "he",
        frustrated: "זו הפעם השלישית שאני מתקשר על אותה תקלה ואף אחד לא תיקן אותה. נמאס לי!",
        insult: "אתה חסר תועלת לגמרי ולא מוכשר.",
        threat: "אני יודע איפה המשרד שלכם, אני אבוא לשם ואני ארביץ לך.",
        calm: "בסדר, תודה רבה, עכשיו זה עובד.",
    },
];

async fn converse(client: &mut common::TriageClient<tonic::transport::Channel>, turns: Vec<pb::Turn>, locale: &str) -> Vec<pb::Assessment> {
    let requests: Vec<pb::ConverseRequest> = turns.into_iter().map(|t| pb::ConverseRequest { turn: Some(t), locale: locale.into() }).collect();
    let mut stream = client.converse(tokio_stream::iter(requests)).await.unwrap().into_inner();
    let mut out = Vec::new();
    while let Some(a) = stream.message().await.unwrap() {
        out.push(a);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_goes_from_not_serving_to_serving_and_shutdown_drains() {
    let server = common::spawn(&[]).await;
    let seen = server.wait_serving().await;
    assert_eq!(seen.first(), Some(&tonic_health::pb::health_check_response::ServingStatus::NotServing), "{seen:?}");
    assert_eq!(seen.last(), Some(&tonic_health::pb::health_check_response::ServingStatus::Serving));

    // A conversation open when shutdown starts ends with UNAVAILABLE once it has no turn in
    // hand (the drain, docs/RELIABILITY.md): the client reconnects to another instance rather
    // than hold this one past its drain deadline. A stream (not a unary call) so the test knows,
    // rather than hopes, that the request reached the server before the shutdown began.
    let mut client = server.client().await;
    let (turns, rx) = tokio::sync::mpsc::channel(2);
    turns.send(pb::ConverseRequest { turn: Some(customer("Where is my parcel?")), locale: "en".into() }).await.unwrap();
    let mut answers = client.converse(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    assert!(answers.message().await.unwrap().is_some(), "the first turn is answered");

    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let request = tonic_health::pb::HealthCheckRequest { service: "calmline.v1.Triage".into() };
    let mut watch = health.watch(request).await.unwrap().into_inner();
    let stopping = tokio::spawn(server.stop());
    while let Some(message) = watch.message().await.unwrap() {
        if message.status == tonic_health::pb::health_check_response::ServingStatus::NotServing as i32 {
            break;
        }
    }
    drop(watch); // an open Watch stream would hold the drain open

    let status = answers.message().await.expect_err("the idle stream ends with a status when the drain begins");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), calmline::error::Error::ShuttingDown.to_string());
    drop(turns);
    stopping.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ladder_climbs_in_english_hungarian_and_hebrew() {
    let server = common::start(&[]).await;
    let mut client = server.client().await;
    for s in SCRIPTS {
        let turns = vec![customer(s.frustrated), customer(s.insult), customer(s.insult), customer(s.insult), customer(s.insult), customer(s.insult)];
        let out = converse(&mut client, turns, s.lang).await;
        let actions: Vec<pb::Action> = out.iter().map(action_of).collect();
        assert_eq!(
            actions,
            vec![Action::Acknowledge, Action::LetItPass, Action::StayCalm, Action::SetBoundary, Action::InvolveManager, Action::EndContact],
            "{}",
            s.lang
        );
        for a in &out {
            let g = a.guidance.as_ref().unwrap();
            let hint = g.hint.as_ref().unwrap();
            assert_eq!(hint.locale, s.lang, "hint in the agent's locale");
            assert!(!hint.text.is_empty());
            assert!(g.rule_id.starts_with("00"), "rule ids name their seed: {}", g.rule_id);
            assert!(a.language == s.lang || a.language == "und", "{}: detected {}", s.lang, a.language);
            assert!(!a.model_version.is_empty() && a.policy_hash.len() == 16);
            assert_eq!(a.scores.len(), 7);
        }
        assert_eq!(out[0].language, s.lang, "a full sentence is detected reliably");
        assert!(out[0].language_measured, "{} is a language the model card measures", s.lang);
        let ack = out[0].guidance.as_ref().unwrap();
        assert!(ack.donts.iter().any(|d| d.rule_id == "003-4-no-blaming-others"));
    }
}

/// The words a span marks, by its code-point offsets (checked against its byte offsets).
fn marked(text: &str, span: &pb::Span) -> String {
    let by_chars: String = text.chars().skip(span.begin as usize).take((span.end - span.begin) as usize).collect();
    assert_eq!(by_chars, text[span.byte_begin as usize..span.byte_end as usize], "code points and bytes mark the same words");
    by_chars
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insults_come_with_the_words_that_drove_them() {
    let server = common::start(&[]).await;
    let mut client = server.client().await;
    for s in SCRIPTS {
        let out = converse(&mut client, vec![customer(s.frustrated), customer(s.insult), customer(s.calm)], s.lang).await;
        let spans = |a: &pb::Assessment| a.guidance.as_ref().unwrap().evidence.as_ref().unwrap().spans.clone();
        let insult = spans(&out[1]);
        // The span head learnt from English posts; on the suite's flagged insults it marks words
        // in 93% (he) to 100% of them (the model card), and not in this Hebrew one.
        assert!(!insult.is_empty() || s.lang == "he", "{}: an insult has spans", s.lang);
        for span in &insult {
            let words = marked(s.insult, span);
            assert!(words.chars().any(char::is_alphanumeric), "{}: {words:?}", s.lang);
            assert!(out[1].flags.contains(&span.label), "{}: spans go under a flagged label", s.lang);
            assert!(span.score > 0.0 && span.score <= 1.0);
        }
        assert!(spans(&out[0]).is_empty() && spans(&out[2]).is_empty(), "{}: frustration or calm: no spans", s.lang);
    }
    let en = converse(&mut client, vec![customer(SCRIPTS[0].insult)], "en").await;
    let words: Vec<String> = en[0].guidance.as_ref().unwrap().evidence.as_ref().unwrap().spans.iter().map(|sp| marked(SCRIPTS[0].insult, sp)).collect();
    assert!(words.iter().any(|w| w.contains("useless") || w.contains("incompetent")), "{words:?}");

    let quiet = common::start(&["--no-spans"]).await;
    let mut client = quiet.client().await;
    let out = converse(&mut client, vec![customer(SCRIPTS[0].insult)], "en").await;
    assert!(out[0].guidance.as_ref().unwrap().evidence.as_ref().unwrap().spans.is_empty(), "--no-spans leaves them out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threat_goes_to_a_manager_at_once() {
    let server = common::start(&[]).await;
    let mut client = server.client().await;
    for s in SCRIPTS {
        let out = converse(&mut client, vec![customer(s.threat)], s.lang).await;
        assert_eq!(action_of(&out[0]), Action::InvolveManager, "{}: threat", s.lang);
        assert!(out[0].flags.contains(&(pb::Label::Threat as i32)), "{}: threat flagged", s.lang);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calm_turns_cool_the_conversation_down() {
    let server = common::start(&[]).await;
    let mut client = server.client().await;
    for s in SCRIPTS {
        // Two insults, three calm turns cool one heated turn down: the next insult is the
        // second rung again (STAY_CALM), not the third.
        let turns = vec![customer(s.insult), customer(s.insult), customer(s.calm), customer(s.calm), customer(s.calm), customer(s.insult)];
        let actions: Vec<pb::Action> = converse(&mut client, turns, s.lang).await.iter().map(action_of).collect();
        assert_eq!(actions, vec![Action::LetItPass, Action::StayCalm, Action::None, Action::None, Action::None, Action::StayCalm], "{}: cool-down", s.lang);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_with_round_tripped_state_matches_converse() {
    let server = common::start(&[]).await;
    let mut client = server.client().await;
    let s = &SCRIPTS[0];
    let turns = vec![
        customer(s.frustrated),
        agent("I'm sorry, let me check that for you."),
        customer(s.insult),
        customer(s.insult),
        customer(s.calm),
        customer(s.insult),
    ];
    let streamed = converse(&mut client, turns.clone(), "en").await;

    let mut state = None;
    for (i, turn) in turns.into_iter().enumerate() {
        let response = client.analyze(pb::AnalyzeRequest { turn: Some(turn), state, locale: "en".into() }).await.unwrap().into_inner();
        let a = response.assessment.unwrap();
        assert_eq!(a.turn_index, i as u32);
        assert_eq!(a.guidance.as_ref().map(|g| g.action), streamed[i].guidance.as_ref().map(|g| g.action), "turn {i}");
        assert_eq!(a.flags, streamed[i].flags);
        state = response.state;
    }
    assert!(streamed[1].guidance.is_none(), "agent turns get no guidance");
    assert_eq!(streamed[1].speaker, pb::Speaker::Agent as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_invalid_argument_with_a_clear_message() {
    let server = common::start(&["--max-message-bytes", "1048576"]).await;
    let mut client = server.client().await;
    let analyze = |turn: Option<pb::Turn>| pb::AnalyzeRequest { turn, ..Default::default() };

    let cases = [
        (analyze(None), "turn is missing"),
        (analyze(Some(customer("   "))), "text is empty"),
        (analyze(Some(pb::Turn { speaker: 0, text: "hi".into(), lang: None })), "speaker"),
        (analyze(Some(pb::Turn { speaker: 42, text: "hi".into(), lang: None })), "speaker is 42"),
        (analyze(Some(customer(&"a".repeat(300_000)))), "limit"),
        (analyze(Some(pb::Turn { speaker: 1, text: "hi".into(), lang: Some("no such lang!".into()) })), "lang"),
    ];
    for (request, expected) in cases {
        let status = client.analyze(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(status.message().contains(expected), "{:?} lacks {expected:?}", status.message());
    }
    // Over the message size limit: refused by the transport, the server stays up.
    let status = client.analyze(analyze(Some(customer(&"b ".repeat(600_000))))).await.unwrap_err();
    assert!(matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument), "{status:?}");

    // A bad turn in a stream ends it with INVALID_ARGUMENT naming the turn.
    let requests = vec![
        pb::ConverseRequest { turn: Some(customer("Hello")), locale: "en".into() },
        pb::ConverseRequest { turn: Some(customer("")), locale: String::new() },
    ];
    let mut stream = client.converse(tokio_stream::iter(requests)).await.unwrap().into_inner();
    assert!(stream.message().await.unwrap().is_some());
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("turn 1"), "{}", status.message());

    // The server is still fine.
    assert!(client.analyze(analyze(Some(customer("Thanks!")))).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_at_once_and_accepted_work_is_answered() {
    let server = common::start(&["--max-in-flight", "2", "--max-wait-ms", "20"]).await;
    let channel = server.channel().await;
    let long = "My order has not arrived and nobody answers my emails. ".repeat(40);
    let calls = (0..24).map(|_| {
        let mut client = common::TriageClient::new(channel.clone());
        let text = long.clone();
        tokio::spawn(async move { client.analyze(pb::AnalyzeRequest { turn: Some(customer(&text)), ..Default::default() }).await })
    });
    let results: Vec<_> = futures_join(calls).await;
    let refused: Vec<&tonic::Status> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let answered = results.iter().filter(|r| r.is_ok()).count();
    assert!(!refused.is_empty(), "24 concurrent calls against 2 slots: some must be refused");
    assert!(answered >= 2, "admitted calls are answered");
    for status in refused {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("capacity"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_turn_does_not_wait_for_company() {
    // A batch waits up to --max-wait-ms for more texts only while more are on their way. With
    // the wait at 60 s, a lone turn answered within 20 s proves it did not wait; a burst after
    // it is still batched and answered.
    let server = common::start(&["--max-wait-ms", "60000"]).await;
    let mut client = server.client().await;
    let mut request = tonic::Request::new(pb::AnalyzeRequest { turn: Some(customer("Where is my parcel?")), ..Default::default() });
    request.set_timeout(std::time::Duration::from_secs(20));
    assert!(client.analyze(request).await.is_ok(), "a lone turn waited for company");

    let channel = server.channel().await;
    let calls = (0..8).map(|i| {
        let mut client = common::TriageClient::new(channel.clone());
        tokio::spawn(async move {
            let mut request = tonic::Request::new(pb::AnalyzeRequest { turn: Some(customer(&format!("Order {i} never arrived."))), ..Default::default() });
            request.set_timeout(std::time::Duration::from_secs(20));
            client.analyze(request).await
        })
    });
    for result in futures_join(calls).await {
        assert!(result.is_ok(), "{result:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_batch_texts_is_honoured_by_the_encoder() {
    // The default is 32 (and was once applied whatever the flag said). With 48, 160 calls at once
    // (over five connections: one carries at most 32 streams) queue behind the first batch and
    // are run in encoder batches of more than 32 windows. The batch size histogram counts the
    // encoder's own batches, and no other test raises the limit.
    let server = common::start(&["--max-batch-texts", "48", "--max-wait-ms", "50"]).await;
    let mut channels = Vec::new();
    for _ in 0..5 {
        channels.push(server.channel().await);
    }
    let calls = (0..160).map(|i| {
        let mut client = common::TriageClient::new(channels[i % channels.len()].clone());
        let text = format!("Order {i} never arrived, where is it?");
        tokio::spawn(async move { client.analyze(pb::AnalyzeRequest { turn: Some(customer(&text)), ..Default::default() }).await })
    });
    for result in futures_join(calls).await {
        assert!(result.is_ok(), "{result:?}");
    }
    let scrape = server.scrape().await;
    let value = |prefix: &str| -> f64 {
        let line = scrape.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in /metrics"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let over_32 = value("calmline_batch_size_bucket{le=\"64\"}") - value("calmline_batch_size_bucket{le=\"32\"}");
    assert!(over_32 > 0.0, "no encoder batch over 32 windows with --max-batch-texts 48");
}

async fn futures_join<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_that_passes_gets_deadline_exceeded() {
    let server = common::start(&[]).await;
    let mut client = server.client().await;
    // ~2,200 tokens in five windows: several times 40 ms of work even on a fast machine.
    let long = "I am writing again about the invoice that was charged twice this month. ".repeat(150);
    let mut request = tonic::Request::new(pb::AnalyzeRequest { turn: Some(customer(&long)), ..Default::default() });
    request.set_timeout(std::time::Duration::from_millis(40));
    let status = client.analyze(request).await.unwrap_err();
    // calmline answers DEADLINE_EXCEEDED a few ms early; when the encoder holds both cores and
    // the handler is scheduled late, tonic's transport, which enforces the same header, answers
    // first with CANCELLED "Timeout expired". Either way the deadline was honoured.
    let transport_timeout = status.code() == Code::Cancelled && status.message() == "Timeout expired";
    assert!(status.code() == Code::DeadlineExceeded || transport_timeout, "{status:?}");

    let mut request = tonic::Request::new(pb::AnalyzeRequest { turn: Some(customer("Where is my parcel?")), ..Default::default() });
    request.set_timeout(std::time::Duration::from_secs(60));
    let response = client.analyze(request).await;
    assert!(response.is_ok(), "a generous deadline is met: {response:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_transcripts_reports_each_transcript_in_order_and_keeps_going() {
    let server = common::start(&[]).await;
    let mut client = server.client().await;
    let s = &SCRIPTS[1];
    let good = pb::Transcript {
        id: "c1".into(),
        locale: "hu".into(),
        agent_id: "a7".into(),
        turns: vec![customer(s.frustrated), agent("Elnézést kérek, azonnal utánanézek."), customer(s.insult), customer(s.insult), customer(s.insult)],
    };
    let bad = pb::Transcript { id: "c2".into(), turns: vec![customer("ok"), agent("")], ..Default::default() };
    let empty = pb::Transcript { id: "c3".into(), ..Default::default() };
    let mut stream = client.score_transcripts(tokio_stream::iter(vec![good, bad, empty])).await.unwrap().into_inner();
    let mut reports = Vec::new();
    while let Some(r) = stream.message().await.unwrap() {
        reports.push(r);
    }
    let ids: Vec<&str> = reports.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["c1", "c2", "c3"]);

    let r = &reports[0];
    assert_eq!(r.error, None);
    assert_eq!(r.agent_id, "a7");
    assert_eq!(r.turns.len(), 5);
    let summary = r.summary.as_ref().unwrap();
    assert_eq!((summary.customer_turns, summary.agent_turns), (4, 1));
    assert_eq!(summary.max_action, Action::SetBoundary as i32);
    assert_eq!(r.incidents.len(), 1, "only SET_BOUNDARY and above are incidents");
    assert_eq!((r.incidents[0].turn_index, r.incidents[0].action), (4, Action::SetBoundary as i32));
    assert!(r.turns[1].guidance.is_none());
    assert!(summary.flagged_turns.get("insult").copied().unwrap_or(0) >= 3);
    assert_eq!(r.turns[2].guidance.as_ref().unwrap().hint.as_ref().unwrap().locale, "hu");

    assert!(reports[1].error.as_deref().unwrap().contains("turns[1]"), "{:?}", reports[1].error);
    assert!(reports[2].error.as_deref().unwrap().contains("no turns"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_info_and_metrics_describe_the_server() {
    let server = common::start(&[]).await;
    let mut client = server.client().await;
    let info = client.get_info(pb::GetInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.labels, calmline::domain::labels::Label::ALL.iter().map(|l| l.name().to_string()).collect::<Vec<_>>());
    for lang in ["en", "hu", "he", "de"] {
        assert!(info.languages.iter().any(|l| l == lang));
    }
    assert_eq!(info.hint_locales, vec!["en", "he", "hu"]);
    // The default precision: int8 where the CPU has VNNI, the f32 GEMM's kernel elsewhere.
    let expected_kernel = calmline::model::Precision::best_available().kernel();
    assert_eq!(info.kernel, expected_kernel);
    for lang in ["en", "hu", "he", "de", "pt", "tr"] {
        assert!(info.measured_languages.iter().any(|l| l == lang), "{lang} in {:?}", info.measured_languages);
    }
    // Finnish is scored but its quality is not measured: the answer says so.
    let finnish = client
        .analyze(pb::AnalyzeRequest {
            turn: Some(customer("Tämä on täysin kestämätöntä, soitan teille jo kolmatta kertaa tällä viikolla!")),
            locale: "en".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let assessment = finnish.assessment.unwrap();
    assert_eq!((assessment.language.as_str(), assessment.language_measured), ("fi", false));
    assert_eq!(info.policy_hash.len(), 16);
    assert!(!info.model_version.is_empty());
    let limits = info.limits.unwrap();
    assert_eq!(limits.max_in_flight, 256);
    assert!(limits.max_turn_bytes > 0 && limits.max_turns_per_transcript > 0);

    client.analyze(pb::AnalyzeRequest { turn: Some(customer(SCRIPTS[0].insult)), locale: "en".into(), ..Default::default() }).await.unwrap();
    let _ = client.analyze(pb::AnalyzeRequest { turn: None, ..Default::default() }).await;
    let scrape = server.scrape().await;
    assert!(scrape.starts_with("HTTP/1.1 200"));
    // This server has no --api-keys; tests/it/access.rs scrapes the key metrics.
    for name in calmline::metrics::ALL.into_iter().filter(|n| !calmline::metrics::WITH_API_KEYS.contains(n)) {
        assert!(scrape.contains(name), "{name} missing from the scrape");
    }
    assert!(scrape.contains(r#"rpc="Analyze",code="INVALID_ARGUMENT""#) || scrape.contains(r#"code="INVALID_ARGUMENT",rpc="Analyze""#));
    assert!(scrape.contains(r#"stage="inference""#));
    assert!(scrape.contains(r#"action="LET_IT_PASS""#));
    assert!(!scrape.contains("idiot"), "no customer text in metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_model_or_a_bad_policy_stops_start_up_with_a_clear_error() {
    let empty = tempfile::tempdir().unwrap();
    let server = common::spawn(&["--models", empty.path().to_str().unwrap()]).await;
    let err = server.task.await.unwrap().unwrap_err();
    assert!(format!("{err:#}").contains("make setup"), "{err:#}");

    let policy = empty.path().join("policy.toml");
    std::fs::write(&policy, calmline::domain::policy::EMBEDDED_POLICY.replace("cool_down_after = 3", "cool_down_after = -1")).unwrap();
    let server = common::spawn(&["--policy", policy.to_str().unwrap()]).await;
    let err = server.task.await.unwrap().unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("policy.toml") && message.contains("cool_down_after"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let server = common::spawn(&[]).await;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::ListServices(String::new())) };
    let mut stream = client.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else { panic!("unexpected {response:?}") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["calmline.v1.Triage", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == expected), "{expected} not in {names:?}");
    }
}

/// Bytes sent as they are, to put on the wire what no generated client would.
#[derive(Clone, Copy, Default)]
struct RawBytes;

impl tonic::codec::Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;
    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }
    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

impl tonic::codec::Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, buf: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let bytes = bytes::Buf::chunk(buf).to_vec();
        bytes::Buf::advance(buf, bytes.len());
        Ok(Some(bytes))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_protobuf_is_the_clients_error() {
    let server = common::start(&[]).await;
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    // A `turn` field whose length runs past the message; a turn whose text is not UTF-8.
    let truncated = vec![0x0a, 0x7f, 0x12];
    let not_utf8 = vec![0x0a, 0x03, 0x12, 0x01, 0xff];
    for body in [truncated, not_utf8] {
        grpc.ready().await.unwrap();
        let path = http::uri::PathAndQuery::from_static("/calmline.v1.Triage/Analyze");
        let status = grpc.unary(tonic::Request::new(body.clone()), path, RawBytes).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{body:?}: {status:?}");
        assert!(status.message().contains("not valid protobuf"), "{status:?}");
    }
    // The server is unaffected.
    let ok = pb::AnalyzeRequest { turn: Some(customer("Where is my parcel?")), ..Default::default() };
    assert!(server.client().await.analyze(ok).await.is_ok());
    server.stop().await.unwrap();
}
