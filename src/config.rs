//! Command-line and environment configuration. Every flag is also an environment variable
//! (`CALMLINE_*`); nothing else in calmline reads the environment.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "calmline", version, about = "Detects frustration, rudeness and abuse in conversations and guides the agent")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC service (Triage, health, reflection) and its metrics endpoint.
    Serve(ServeArgs),
    /// Score one text (readable) or JSON lines from stdin (`--jsonl`).
    Analyze(AnalyzeArgs),
    /// QA: score finished transcripts (JSONL or CSV files, folders, or stdin) into a report.
    Score(ScoreArgs),
    /// Train the label head on the frozen encoder from the public data sets.
    Train(TrainArgs),
    /// Score the behaviour suite, the gold conversations and the neutral sets (what users see).
    EvalJudgement(EvalJudgementArgs),
    /// Score the evidence spans on SemEval-2021 Task 5 (toxic spans), character F1.
    EvalSpans(EvalSpansArgs),
    /// Train the evidence spans' head on SemEval-2021 Task 5 (toxic spans), beside the label head.
    TrainSpans(TrainSpansArgs),
    /// Re-score the held-out test splits with the committed head (the model card's numbers).
    Eval(EvalArgs),
    /// Write the training examples, tokenised, as JSON lines for the fine-tuning trainer
    /// (`trainer/finetune.py`, which trains the adapters; see `make finetune`).
    ExportExamples(ExportExamplesArgs),
    /// Precision and recall of the agent-conduct flags on the project's labelled agent turns.
    EvalConduct(EvalConductArgs),
    /// Print the `sha256:<hex>` of an API key read from stdin, for the --api-keys file.
    HashKey,
    /// Load generator: drive a running server with concurrent callers or streams for a bounded
    /// time; report throughput and latency percentiles.
    Bench(BenchArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Folder with the head (`head.json`, `head.safetensors`) and, under `base/`, the encoder
    /// blob and tokenizer fetched by `make setup`.
    #[arg(long, env = "CALMLINE_MODELS", default_value = "models")]
    pub models: PathBuf,
    /// Folder with the encoder blob and tokenizer, when not `<models>/base` (e.g. to run a
    /// fine-tuned model from `models/finetuned` on the fetched base).
    #[arg(long, env = "CALMLINE_BASE")]
    pub base: Option<PathBuf>,
    /// Arithmetic of the encoder's dense layers: int8 on CPUs with AVX-512 VNNI (`auto` picks it
    /// there), f32 (the reference) elsewhere. Heads are trained on f32 features (`calmline train`
    /// always embeds in f32); the eval commands embed in this arithmetic, each with its own
    /// feature cache entries.
    #[arg(long, env = "CALMLINE_PRECISION", value_enum, default_value_t = PrecisionChoice::Auto)]
    pub precision: PrecisionChoice,
}

impl ModelArgs {
    pub fn base_dir(&self) -> PathBuf {
        self.base.clone().unwrap_or_else(|| self.models.join("base"))
    }

    pub fn precision(&self) -> crate::model::Precision {
        use crate::model::Precision;
        match self.precision {
            PrecisionChoice::Auto => Precision::best_available(),
            PrecisionChoice::F32 => Precision::F32,
            PrecisionChoice::Int8 => Precision::Int8,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// Policy file (severity rules, the guidance ladder, hints); the embedded
    /// `models/policy.toml` when not given. A bad file stops start-up with its place named.
    #[arg(long, env = "CALMLINE_POLICY")]
    pub policy: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Read `{"id": …, "text": …, "lang": …}` lines from stdin and write one result line each,
    /// in order; unreadable lines get an error object and the run goes on.
    #[arg(long, conflicts_with = "text")]
    pub jsonl: bool,
    /// Texts per model call in `--jsonl` mode: larger batches raise throughput, smaller ones
    /// give the first results sooner.
    #[arg(long, env = "CALMLINE_ANALYZE_BATCH", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub batch: u32,
    /// The text to analyse (readable output).
    #[arg(required_unless_present = "jsonl")]
    pub text: Option<String>,
}

/// The encoder's batching and the evidence spans: the same flags and environment variables for
/// the service and for `calmline score`, which share the pipeline.
#[derive(Debug, Clone, Args)]
pub struct BatchArgs {
    /// Texts per encoder batch. Batches are packed (no padding), so beyond a few the size
    /// matters little: 10,000 ConvAbuse turns through `calmline score` gave 245, 257, 238 and
    /// 261 turns/s at 4, 8, 16 and 32 (BENCHMARKS.md); under a service's load larger raises
    /// throughput.
    #[arg(long, env = "CALMLINE_MAX_BATCH_TEXTS", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_batch_texts: u32,
    /// Tokens per encoder batch (batches are packed, so padding never counts): bounds one
    /// batch's latency and memory.
    #[arg(long, env = "CALMLINE_MAX_BATCH_TOKENS", default_value_t = 8192, value_parser = clap::value_parser!(u32).range(512..=1_000_000))]
    pub max_batch_tokens: u32,
    /// Encoder windows one turn may take (512 tokens each, a quarter overlapping): a longer turn
    /// is refused (the service answers INVALID_ARGUMENT; `calmline score` reports its
    /// transcript as an error). A long turn is scored one window per batch, between other
    /// texts.
    #[arg(long, env = "CALMLINE_MAX_TURN_WINDOWS", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_turn_windows: u32,
    /// Leave out the evidence spans (the words behind each flag of a flagged customer turn).
    #[arg(long, env = "CALMLINE_NO_SPANS")]
    pub no_spans: bool,
    /// Batches run at once, each by its own inference thread on the shared encoder threads:
    /// with two, one batch's serial steps (quantizing rows, layer norms, the heads) overlap the
    /// other's parallel products instead of leaving cores idle.
    #[arg(long, env = "CALMLINE_INFERENCE_THREADS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub inference_threads: u32,
}

impl BatchArgs {
    /// The pipeline's configuration: these flags, with the admission and tokenizing of the caller.
    pub fn pipeline_config(&self, max_in_flight: u32, tokenizer_workers: u32, max_wait: std::time::Duration) -> crate::infer::PipelineConfig {
        crate::infer::PipelineConfig {
            max_in_flight: max_in_flight as usize,
            tokenizer_workers: tokenizer_workers as usize,
            max_batch_texts: self.max_batch_texts as usize,
            max_batch_tokens: self.max_batch_tokens as usize,
            max_wait,
            evidence_spans: !self.no_spans,
            max_turn_windows: self.max_turn_windows as usize,
            inference_threads: self.inference_threads as usize,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// gRPC address. Loopback by default: exposing it is a deliberate choice.
    #[arg(long, env = "CALMLINE_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: std::net::SocketAddr,
    /// Host names (with the port, as a browser sends them) the console, gRPC-web and the JSON API
    /// answer for besides the listen address's own: on loopback, requests naming any other host
    /// are refused (DNS rebinding); elsewhere, any host is answered unless names are given.
    #[arg(long = "allowed-host", env = "CALMLINE_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Prometheus metrics address (`GET /metrics`), on its own port so it can stay internal.
    #[arg(long, env = "CALMLINE_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Requests admitted at once; more are refused with RESOURCE_EXHAUSTED at once. Higher
    /// absorbs bursts, lower bounds latency and memory.
    #[arg(long, env = "CALMLINE_MAX_IN_FLIGHT", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_in_flight: u32,
    /// Tokenizer threads (they share one tokenizer). On 2 cores one is enough: the encoder
    /// needs the rest.
    #[arg(long, env = "CALMLINE_TOKENIZER_WORKERS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub tokenizer_workers: u32,
    #[command(flatten)]
    pub batching: BatchArgs,
    /// How long the first text of a batch waits for others, in milliseconds, when others are
    /// already on their way (admitted and being tokenized); a lone text never waits.
    #[arg(long, env = "CALMLINE_MAX_WAIT_MS", default_value_t = 2)]
    pub max_wait_ms: u64,
    /// Converse and ScoreTranscripts streams open at once; more are refused.
    #[arg(long, env = "CALMLINE_MAX_STREAMS", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_streams: u32,
    /// Of those streams, how many one API key may hold. Default: with two or more clients in
    /// --api-keys, three quarters of --max-streams (one client cannot lock the others out);
    /// with one or none, no share.
    #[arg(long, env = "CALMLINE_MAX_STREAMS_PER_KEY", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_streams_per_key: Option<u32>,
    /// Seconds a stream may stay silent before it is closed.
    #[arg(long, env = "CALMLINE_STREAM_IDLE_TIMEOUT_S", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub stream_idle_timeout_s: u64,
    /// Connections the gRPC port keeps open at once; past it a new one is closed at once.
    #[arg(long, env = "CALMLINE_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// Seconds a gRPC-port connection may go without a byte from its peer once it has spoken
    /// (HTTP/2 keepalive pings, every 30 s, keep a live client's connection reading); before its
    /// first bytes (HTTP/2 preface, TLS hello) it has 10 s.
    #[arg(long, env = "CALMLINE_CONNECTION_IDLE_TIMEOUT_S", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub connection_idle_timeout_s: u64,
    /// Bytes all requests together may hold in messages not yet whole (a stream's message
    /// being received, a unary call's body); a message that would go over is refused
    /// (RESOURCE_EXHAUSTED).
    #[arg(long, env = "CALMLINE_MAX_RECEIVING_BYTES", default_value_t = 32 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(65_536..=1 << 40))]
    pub max_receiving_bytes: u64,
    /// Seconds a unary call's request may take to arrive whole (DEADLINE_EXCEEDED after).
    #[arg(long, env = "CALMLINE_REQUEST_READ_TIMEOUT_S", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_read_timeout_s: u64,
    /// Seconds the drain may take after SIGTERM: health turns NOT_SERVING at once, unary calls
    /// finish, every stream finishes its current turn and ends with UNAVAILABLE; connections
    /// still open at the deadline are closed. Keep it under the orchestrator's grace period
    /// (Kubernetes: 30 s).
    #[arg(long, env = "CALMLINE_DRAIN_TIMEOUT_S", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub drain_timeout_s: u64,
    /// Largest gRPC message accepted, in bytes.
    #[arg(long, env = "CALMLINE_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Log format: "text" or "json". Logs never contain customer text.
    #[arg(long, env = "CALMLINE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// TLS certificate chain (PEM). With --tls-key, the service speaks only TLS.
    #[arg(long, env = "CALMLINE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "CALMLINE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) that client certificates must chain to: mutual TLS.
    #[arg(long, env = "CALMLINE_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// API keys file: `name sha256:<hex>` lines (`calmline hash-key` makes the hash). Without
    /// it every caller is let in.
    #[arg(long, env = "CALMLINE_API_KEYS")]
    pub api_keys: Option<PathBuf>,
    /// Serve plaintext on a non-loopback address (refused otherwise).
    #[arg(long, env = "CALMLINE_INSECURE")]
    pub insecure: bool,
    /// Also serve the agent console at `/console/` on the gRPC port, and accept gRPC-web
    /// (HTTP/1.1) calls from it.
    #[arg(long, env = "CALMLINE_CONSOLE")]
    pub console: bool,
}

#[derive(Debug, Clone, Args)]
pub struct EvalConductArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Labelled agent turns (JSON lines: id, lang, split, customer_before, text, labels).
    #[arg(long, default_value = "data/agent-conduct/turns.jsonl")]
    pub data: PathBuf,
    /// The gold conversations (`calmline score` transcripts): their agents' replies are written
    /// to be professional, so every conduct flag on one is a false alarm; they join the labelled
    /// turns as negatives, by the conversation's split.
    #[arg(long, default_value = "data/conversations")]
    pub conversations: PathBuf,
    /// Also search min_similarity and margin on the dev split and report the best.
    #[arg(long)]
    pub tune: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The server, e.g. http://127.0.0.1:50051.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub target: String,
    /// `analyze` (unary calls) or `converse` (one stream per caller, a turn at a time).
    #[arg(long, value_enum, default_value_t = BenchRpc::Analyze)]
    pub rpc: BenchRpc,
    /// Callers (or streams) at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// How long to drive the server.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// JSON lines with a "text" each (default: built-in short turns in eight languages).
    #[arg(long)]
    pub texts: Option<PathBuf>,
    /// API key to send.
    #[arg(long, env = "CALMLINE_BENCH_API_KEY")]
    pub api_key: Option<String>,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Transcript files (`.jsonl`, `.json`, `.csv`), folders of them (read in name order), or
    /// `-` for stdin. Stdin when none is given.
    pub inputs: Vec<PathBuf>,
    /// Input format; `auto` goes by the file extension (stdin: JSONL).
    #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
    pub format: InputFormat,
    /// Folder for `conversations.jsonl`, `summary.csv`, `report.html` and `errors.jsonl`.
    /// Without it the conversations go to stdout and errors to stderr.
    #[arg(long, env = "CALMLINE_SCORE_OUT")]
    pub out: Option<PathBuf>,
    /// Continue an interrupted run in `--out`: conversations already written are skipped.
    #[arg(long, requires = "out")]
    pub resume: bool,
    /// Score only part I of N (`--shard 0/4`), split by conversation id: N runs with their own
    /// `--out` (an Indexed Job's pods) score every conversation exactly once between them.
    #[arg(long)]
    pub shard: Option<crate::qa::shard::Shard>,
    /// Conversations scored at once (their turns share the encoder's batches).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    #[command(flatten)]
    pub batching: BatchArgs,
    /// Progress on stderr: `auto` shows it on a terminal only.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
}

#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Folder holding the public data sets (see `../shared/data/MANIFEST.md`).
    #[arg(long, env = "CALMLINE_DATA", default_value = "../shared/data")]
    pub data: PathBuf,
    /// Cache of embedded training texts; safe to delete.
    #[arg(long, env = "CALMLINE_CACHE", default_value = "models/cache")]
    pub cache: PathBuf,
    /// Most training texts per data set and language (keeps one set from dominating).
    #[arg(long, default_value_t = 2500)]
    pub cap_train: usize,
    /// Most dev texts per data set and language.
    #[arg(long, default_value_t = 500)]
    pub cap_dev: usize,
    /// Most test texts per data set and language.
    #[arg(long, default_value_t = 1000)]
    pub cap_test: usize,
    /// The project's in-domain turns (see data/indomain/README.md).
    #[arg(long, env = "CALMLINE_INDOMAIN", default_value = "data/indomain/turns.jsonl")]
    pub indomain: PathBuf,
    /// Leave the in-domain turns out (to measure what they add).
    #[arg(long)]
    pub no_indomain: bool,
    /// The project's behaviour suite (see data/behaviour/README.md): its train cases train,
    /// its dev cases calibrate, its test cases are reported.
    #[arg(long, env = "CALMLINE_BEHAVIOUR", default_value = "data/behaviour")]
    pub behaviour: PathBuf,
    /// Leave the behaviour suite out.
    #[arg(long)]
    pub no_behaviour: bool,
    /// The project's training turns (see data/training/README.md): written like the behaviour
    /// suite's cases, all for training.
    #[arg(long, env = "CALMLINE_TRAINING", default_value = "data/training")]
    pub training: PathBuf,
    /// Leave the training turns out (to measure what they add).
    #[arg(long)]
    pub no_training: bool,
    /// Leave the neutral sets (negatives in many languages) out.
    #[arg(long)]
    pub no_neutral: bool,
    /// The conversations with gold labels and actions per customer turn (see
    /// data/conversations/README.md): their dev turns calibrate the thresholds, their test turns
    /// are reported by `eval-judgement`.
    #[arg(long, env = "CALMLINE_CONVERSATIONS", default_value = "data/conversations")]
    pub conversations: PathBuf,
    /// Leave the conversations' dev turns out of the calibration.
    #[arg(long)]
    pub no_conversations: bool,
    /// Train the head with the dev conversations' agent replies as negatives for the labels
    /// aimed at people and profanity (experiment 10 in the model card: fewer conduct false
    /// alarms, more on customers' turns; not in the default recipe).
    #[arg(long)]
    pub agent_replies: bool,
}

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Full-batch optimiser steps.
    #[arg(long, default_value_t = 600)]
    pub steps: usize,
    #[arg(long, default_value_t = 0.01)]
    pub learning_rate: f64,
    /// L2 penalty on the head's weights.
    #[arg(long, default_value_t = 1e-4)]
    pub l2: f64,
    /// Version string reported with every result of this head.
    #[arg(long, default_value = "e5-small-q4+frozen-head-1")]
    pub version: String,
    /// Train the head on the encoder with these LoRA adapters (a folder with
    /// `adapters.safetensors`, e.g. `models`); they are copied beside the new head.
    #[arg(long)]
    pub adapters: Option<PathBuf>,
    /// Weight of each of the project's own turns (data/indomain, data/behaviour, data/training) in the loss,
    /// against 1 for a text of a public set.
    #[arg(long, default_value_t = 1.0)]
    pub project_weight: f32,
    /// Also score the head in this folder (trained on the same encoder, e.g. today's default
    /// `models`) on the same test data: `eval-test-previous.json` beside the new head.
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// How the thresholds are chosen on the dev splits.
    #[arg(long, value_enum, default_value_t = ThresholdRuleChoice::PooledNeutralUnion)]
    pub threshold_rule: ThresholdRuleChoice,
}

#[derive(Debug, Clone, Args)]
pub struct EvalJudgementArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// `test` (the reported numbers) or `dev` (while tuning).
    #[arg(long, value_enum, default_value_t = ReportedSplit::Test)]
    pub split: ReportedSplit,
    /// Where to write the report as JSON (Markdown goes to stdout).
    #[arg(long, default_value = "models/eval-judgement.json")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct EvalSpansArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Folder holding the public data sets (see `../shared/data/MANIFEST.md`).
    #[arg(long, env = "CALMLINE_DATA", default_value = "../shared/data")]
    pub data: PathBuf,
    /// Where to write the report as JSON.
    #[arg(long, default_value = "models/eval-spans.json")]
    pub out: PathBuf,
    /// Score only the first this many posts of each split (a quicker estimate).
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Args)]
pub struct TrainSpansArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Folder holding the public data sets (see `../shared/data/MANIFEST.md`).
    #[arg(long, env = "CALMLINE_DATA", default_value = "../shared/data")]
    pub data: PathBuf,
    /// Training posts read (from the start of tsd_train.csv).
    #[arg(long, default_value_t = 3000)]
    pub posts: usize,
    /// Full-batch optimiser steps (a head without a hidden layer).
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Hidden ReLU units between the token features and the output (0: none, one logistic
    /// output).
    #[arg(long, default_value_t = 0)]
    pub hidden: usize,
    /// Passes over the training tokens when there is a hidden layer.
    #[arg(long, default_value_t = 4)]
    pub epochs: usize,
    /// Where to write the report as JSON (the head goes beside the label head, in `--models`).
    #[arg(long, default_value = "models/eval-spans.json")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ExportExamplesArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// The JSON-lines file to write (see `src/train/export.rs` for its fields).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Where to write the report as JSON (Markdown goes to stdout).
    #[arg(long, default_value = "models/eval-test.json")]
    pub out: PathBuf,
    /// First re-tune the thresholds on the dev splits by this rule and save them in the
    /// model's head.json (scores the dev splits too).
    #[arg(long, value_enum)]
    pub tune_thresholds: Option<ThresholdRuleChoice>,
}

/// `--precision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrecisionChoice {
    /// int8 where the CPU has AVX-512 VNNI, else f32.
    Auto,
    F32,
    Int8,
}

/// `--threshold-rule`, `--tune-thresholds`: how a label's threshold is chosen on the dev splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ThresholdRuleChoice {
    /// Max F1 over all dev texts together: the largest sets decide.
    Pooled,
    /// Max of the mean F1 over the data sets and languages that annotate the label, so the
    /// project's own turns count as much as a large public set.
    MeanOverSources,
    /// Per label and per language where its dev data allows, held to the false-alarm budget on
    /// neutral text.
    PerLanguage,
    /// `per-language`, then each language's neutral dev text held to a budget for all labels
    /// together where the dev F-beta it costs is worth it.
    PerLanguageNeutralUnion,
    /// One threshold per label for every language; a language gets its own only where its
    /// neutral dev text is flagged over the budget.
    PooledNeutralUnion,
    /// `pooled-neutral-union`, with a data set's languages that have only a few positives of a
    /// label (one language's gold conversations and its two threats) counted as one group.
    PooledJoinedNeutralUnion,
}

impl From<ThresholdRuleChoice> for crate::train::ThresholdRule {
    fn from(choice: ThresholdRuleChoice) -> Self {
        use crate::train::ThresholdRule;
        match choice {
            ThresholdRuleChoice::Pooled => ThresholdRule::Pooled,
            ThresholdRuleChoice::MeanOverSources => ThresholdRule::MeanOverSources,
            ThresholdRuleChoice::PerLanguage => ThresholdRule::PerLanguage,
            ThresholdRuleChoice::PerLanguageNeutralUnion => ThresholdRule::PerLanguageNeutralUnion,
            ThresholdRuleChoice::PooledNeutralUnion => ThresholdRule::PooledNeutralUnion,
            ThresholdRuleChoice::PooledJoinedNeutralUnion => ThresholdRule::PooledJoinedNeutralUnion,
        }
    }
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `calmline bench --rpc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchRpc {
    /// Unary calls.
    Analyze,
    /// One stream per caller, a turn at a time.
    Converse,
}

/// `calmline score --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// By the file extension (stdin: JSON lines).
    Auto,
    Jsonl,
    Csv,
}

/// `calmline score --progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// On a terminal only.
    Auto,
    Always,
    Never,
}

/// `calmline eval-judgement --split`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportedSplit {
    /// While tuning.
    Dev,
    /// The reported numbers.
    Test,
}

/// The command-line name of a value (as the user types it and reports show it).
pub fn value_name(value: &impl ValueEnum) -> String {
    value.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn batching(argv: &[&str]) -> crate::infer::PipelineConfig {
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(a) => crate::server::pipeline_config(&a),
            Command::Score(a) => crate::cli::score::pipeline_config(&a),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn serve_and_score_take_the_same_batching_flags() {
        for command in ["serve", "score"] {
            let config = batching(&[
                "calmline",
                command,
                "--max-batch-texts",
                "7",
                "--max-batch-tokens",
                "1024",
                "--max-turn-windows",
                "3",
                "--no-spans",
                "--inference-threads",
                "3",
            ]);
            assert_eq!(
                (config.max_batch_texts, config.max_batch_tokens, config.max_turn_windows, config.evidence_spans, config.inference_threads),
                (7, 1024, 3, false, 3),
                "{command}"
            );
        }
        let refused = Cli::try_parse_from(["calmline", "score", "--max-batch-texts", "0"]).unwrap_err().to_string();
        assert!(refused.contains("0 is not in 1..=1024"), "{refused}");
        // The same environment variables as the README's table, for both.
        let cli = <Cli as clap::CommandFactory>::command();
        for command in ["serve", "score"] {
            let sub = cli.find_subcommand(command).unwrap();
            let env = |id: &str| sub.get_arguments().find(|a| a.get_id() == id).and_then(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned());
            for (id, var) in [
                ("max_batch_texts", "CALMLINE_MAX_BATCH_TEXTS"),
                ("max_batch_tokens", "CALMLINE_MAX_BATCH_TOKENS"),
                ("max_turn_windows", "CALMLINE_MAX_TURN_WINDOWS"),
                ("no_spans", "CALMLINE_NO_SPANS"),
                ("inference_threads", "CALMLINE_INFERENCE_THREADS"),
            ] {
                assert_eq!(env(id).as_deref(), Some(var), "{command} --{id}");
            }
        }
    }
}
