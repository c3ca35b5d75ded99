//! The gRPC adapter: the `calmline.v1.Triage` service over the core, plus health and
//! reflection. Handlers validate, admit, call the core and convert; nothing else.

pub mod auth;
pub mod codec;
pub mod convert;
pub mod status;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::domain::conversation::{MAX_TURN_BYTES, MAX_TURNS_PER_TRANSCRIPT};
use crate::domain::labels::Label;
use crate::domain::policy::{ConversationState, Policy};
use crate::error::Error;
use crate::infer::Pipeline;
use crate::metrics as m;
use crate::shutdown::CancellationToken;
use convert::Versions;

/// The generated protobuf types and service stubs (`proto/calmline/v1/triage.proto`).
pub mod pb {
    tonic::include_proto!("calmline.v1");
}

/// The encoded file descriptor set of the contract, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/calmline_descriptor.bin"));

/// Messages buffered per response stream: a slow reader slows its own stream, nothing else.
const STREAM_BUFFER: usize = 16;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message_bytes: usize,
    /// Converse and ScoreTranscripts streams open at once.
    pub max_streams: usize,
    /// How long a stream may send nothing.
    pub stream_idle_timeout: Duration,
}

/// What the handlers share. The pipeline is set once the model is loaded and warm; until
/// then every RPC but `GetInfo` answers UNAVAILABLE.
pub struct Triage {
    pipeline: Arc<OnceLock<Pipeline>>,
    policy: Arc<Policy>,
    limits: Limits,
    streams: Arc<Semaphore>,
    /// Cancelled when the drain begins.
    stopping: CancellationToken,
}

impl Triage {
    pub fn new(pipeline: Arc<OnceLock<Pipeline>>, policy: Arc<Policy>, limits: Limits, stopping: CancellationToken) -> Self {
        Triage { pipeline, policy, limits, streams: Arc::new(Semaphore::new(limits.max_streams)), stopping }
    }

    /// A slot for one more open stream, or RESOURCE_EXHAUSTED at once.
    fn open_stream(&self, rpc: &'static str, opened: Instant) -> Result<OwnedSemaphorePermit, Status> {
        Arc::clone(&self.streams).try_acquire_owned().map_err(|_| {
            record(rpc, opened, tonic::Code::ResourceExhausted);
            Status::resource_exhausted(format!("{} streams are open, the most this server takes; retry later", self.limits.max_streams))
        })
    }

    fn pipeline(&self) -> Result<Pipeline, Status> {
        self.pipeline.get().cloned().ok_or_else(|| Status::unavailable("the model is still loading; retry shortly"))
    }
}

/// Counts and times one RPC outcome (labels from closed sets only).
fn record(rpc: &'static str, started: Instant, code: tonic::Code) {
    metrics::counter!(m::REQUESTS_TOTAL, "rpc" => rpc, "code" => status::code_label(code)).increment(1);
    metrics::histogram!(m::REQUEST_SECONDS, "rpc" => rpc).record(started.elapsed().as_secs_f64());
    tracing::debug!(rpc, code = status::code_label(code), elapsed_ms = started.elapsed().as_millis() as u64, "request done");
}

fn versions<'a>(pipeline: &'a Pipeline, policy: &'a Policy) -> Versions<'a> {
    Versions { model: pipeline.classifier().model_version(), policy_hash: &policy.hash }
}

/// The next message of a stream, or DEADLINE_EXCEEDED when the client stays silent too long.
async fn next_message<T>(inbound: &mut Streaming<T>, idle: Duration, stopping: &CancellationToken) -> Result<Option<T>, Status> {
    tokio::select! {
        // A stream waiting for its next message when the drain begins ends at once; one in the
        // middle of a turn gets here after answering it.
        biased;
        () = stopping.cancelled() => Err(Status::unavailable(SHUTTING_DOWN)),
        message = tokio::time::timeout(idle, inbound.message()) => match message {
            Ok(message) => message,
            Err(_) => Err(Status::deadline_exceeded(format!("nothing received for {} s: the stream is closed (idle limit)", idle.as_secs()))),
        },
    }
}

/// What a stream open at shutdown ends with (UNAVAILABLE: another instance can take it).
pub const SHUTTING_DOWN: &str = "server shutting down; reconnect";

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Runs a streaming RPC's work on its own task, answering through a bounded channel (a slow
/// reader slows only its own stream). The work's error, if any, ends the stream; the outcome is
/// counted once, when the stream ends.
fn respond_in_stream<T, F, Fut>(rpc: &'static str, opened: Instant, work: F) -> ResponseStream<T>
where
    T: Send + 'static,
    F: FnOnce(mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: Future<Output = Result<(), Status>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let errors = tx.clone();
    let work = work(tx);
    tokio::spawn(async move {
        let outcome = work.await;
        record(rpc, opened, outcome.as_ref().map(|_| tonic::Code::Ok).unwrap_or_else(|s| s.code()));
        if let Err(status) = outcome {
            let _ = errors.send(Err(status)).await;
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl pb::triage_server::Triage for Triage {
    #[tracing::instrument(skip_all)]
    async fn analyze(&self, request: Request<pb::AnalyzeRequest>) -> Result<Response<pb::AnalyzeResponse>, Status> {
        let started = Instant::now();
        let result = async {
            let pipeline = self.pipeline()?;
            let deadline = status::deadline(request.metadata(), started);
            let req = request.into_inner();
            let turn = convert::turn(req.turn, "turn")?;
            let mut state = convert::state_from_pb(req.state);
            // Unary calls are refused at once when full: the caller retries, nothing waits unbounded.
            let admitted = pipeline.admit()?;
            let a = pipeline.analyze_turn(&self.policy, &admitted, &mut state, &turn, &req.locale, deadline).await?;
            let assessment = convert::assessment(&a, &pipeline.classifier().head, &versions(&pipeline, &self.policy), started.elapsed());
            Ok::<_, Status>(pb::AnalyzeResponse { assessment: Some(assessment), state: Some(convert::state_to_pb(&state)) })
        }
        .await;
        record("Analyze", started, result.as_ref().map(|_| tonic::Code::Ok).unwrap_or_else(|s| s.code()));
        result.map(Response::new)
    }

    type ConverseStream = ResponseStream<pb::Assessment>;

    #[tracing::instrument(skip_all)]
    async fn converse(&self, request: Request<Streaming<pb::ConverseRequest>>) -> Result<Response<Self::ConverseStream>, Status> {
        let opened = Instant::now();
        let pipeline = self.pipeline()?;
        let slot = self.open_stream("Converse", opened)?;
        let policy = Arc::clone(&self.policy);
        let deadline = status::deadline(request.metadata(), opened);
        let idle = self.limits.stream_idle_timeout;
        let stopping = self.stopping.clone();
        let mut inbound = request.into_inner();
        let stream = respond_in_stream("Converse", opened, move |tx| async move {
            let _slot = slot;
            let mut state = ConversationState::default();
            let mut locale = String::new();
            while let Some(message) = next_message(&mut inbound, idle, &stopping).await? {
                let started = Instant::now();
                if locale.is_empty() {
                    locale = message.locale;
                }
                let turn_index = state.turns;
                let turn = convert::turn(message.turn, &format!("turn {turn_index}"))?;
                // The stream is accepted work: wait for admission rather than refuse.
                let admitted = pipeline.admit_wait().await?;
                let a = pipeline.analyze_turn(&policy, &admitted, &mut state, &turn, &locale, deadline).await?;
                let assessment = convert::assessment(&a, &pipeline.classifier().head, &versions(&pipeline, &policy), started.elapsed());
                if tx.send(Ok(assessment)).await.is_err() {
                    break; // the client has gone
                }
            }
            Ok(())
        });
        Ok(Response::new(stream))
    }

    type ScoreTranscriptsStream = ResponseStream<pb::TranscriptReport>;

    #[tracing::instrument(skip_all)]
    async fn score_transcripts(&self, request: Request<Streaming<pb::Transcript>>) -> Result<Response<Self::ScoreTranscriptsStream>, Status> {
        let opened = Instant::now();
        let pipeline = self.pipeline()?;
        let slot = self.open_stream("ScoreTranscripts", opened)?;
        let policy = Arc::clone(&self.policy);
        let deadline = status::deadline(request.metadata(), opened);
        let idle = self.limits.stream_idle_timeout;
        let stopping = self.stopping.clone();
        let mut inbound = request.into_inner();
        let stream = respond_in_stream("ScoreTranscripts", opened, move |tx| async move {
            let _slot = slot;
            while let Some(message) = next_message(&mut inbound, idle, &stopping).await? {
                let started = Instant::now();
                let (id, agent_id) = (message.id.clone(), message.agent_id.clone());
                // A transcript that cannot be scored gets a report with its error; the stream
                // goes on, so one bad transcript never loses the others.
                let failed = |e: Error| pb::TranscriptReport { id: id.clone(), agent_id: agent_id.clone(), error: Some(e.to_string()), ..Default::default() };
                let report = match convert::transcript(message) {
                    Err(e) => failed(e),
                    Ok(transcript) => {
                        let admitted = pipeline.admit_wait().await?;
                        match pipeline.score_transcript(&policy, &admitted, &transcript, deadline).await {
                            Ok(r) => convert::report(&r, &pipeline.classifier().head, &versions(&pipeline, &policy), started.elapsed()),
                            Err(e @ Error::Validation(_)) => failed(e),
                            Err(e) => return Err(Status::from(e)),
                        }
                    }
                };
                if tx.send(Ok(report)).await.is_err() {
                    break;
                }
            }
            Ok(())
        });
        Ok(Response::new(stream))
    }

    async fn get_info(&self, _request: Request<pb::GetInfoRequest>) -> Result<Response<pb::GetInfoResponse>, Status> {
        let started = Instant::now();
        let (model_version, limits, measured_languages) = match self.pipeline.get() {
            Some(p) => (
                p.classifier().model_version().to_string(),
                (p.config().max_in_flight, p.config().max_batch_texts),
                p.classifier().head.meta.measured_languages.clone(),
            ),
            None => (String::new(), (0, 0), Vec::new()),
        };
        let response = pb::GetInfoResponse {
            labels: Label::ALL.iter().map(|l| l.name().to_string()).collect(),
            languages: crate::model::ENCODER_LANGUAGES.iter().map(|l| l.to_string()).collect(),
            hint_locales: self.policy.locales(),
            model_version,
            policy_version: self.policy.version.clone(),
            policy_hash: self.policy.hash.clone(),
            limits: Some(pb::Limits {
                max_turn_bytes: MAX_TURN_BYTES as u32,
                max_turns_per_transcript: MAX_TURNS_PER_TRANSCRIPT as u32,
                max_message_bytes: self.limits.max_message_bytes as u32,
                max_in_flight: limits.0 as u32,
                max_batch_texts: limits.1 as u32,
                max_streams: self.limits.max_streams as u32,
                stream_idle_timeout_s: self.limits.stream_idle_timeout.as_secs() as u32,
            }),
            measured_languages,
        };
        record("GetInfo", started, tonic::Code::Ok);
        Ok(Response::new(response))
    }
}
