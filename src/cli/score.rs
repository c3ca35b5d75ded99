//! `calmline score`: finished transcripts in, QA outputs out, through the same pipeline, policy
//! and conduct judge as the service (`Pipeline::score_transcript`).
//!
//! Memory stays constant whatever the input size: a reader thread streams records into a bounded
//! channel, at most `--concurrency` conversations are scored at once, and results are written in
//! input order as they complete, one flushed line each. So an interrupted run (ctrl-c, SIGTERM,
//! or a kill) leaves whole lines behind, and `--resume` skips every record whose source (file and
//! line) is already in the output — nothing lost, nothing written twice.

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{HumanDuration, ProgressBar, ProgressState, ProgressStyle};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{self, InputFormat, ScoreArgs};
use crate::domain::conduct::ConductModel;
use crate::domain::policy::Policy;
use crate::infer::Pipeline;
use crate::qa::output::{self, ConversationLine, ErrorLine, Source};
use crate::qa::report::Report;
use crate::qa::scoring::{self, Outcome};
use crate::qa::shard::Shard;
use crate::qa::transcripts::{CsvReader, JsonlReader, Record};

pub const CONVERSATIONS_FILE: &str = "conversations.jsonl";
pub const ERRORS_FILE: &str = "errors.jsonl";
pub const SUMMARY_FILE: &str = "summary.csv";
pub const REPORT_FILE: &str = "report.html";

/// Exit code of a run stopped by a signal (as a shell reports ctrl-c).
const EXIT_INTERRUPTED: u8 = 130;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Jsonl,
    Csv,
}

/// One input: a file, or stdin (`path` None).
#[derive(Debug, Clone)]
struct Input {
    name: String,
    path: Option<PathBuf>,
    format: Format,
}

/// How a run ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub scored: u64,
    pub failed: u64,
    pub skipped: u64,
    pub turns: u64,
    pub interrupted: bool,
}

/// The pipeline of a QA run: the batching flags, `--concurrency` conversations admitted, one
/// tokenizer thread and the service's wait (a QA run keeps the encoder's queue full).
pub fn pipeline_config(args: &ScoreArgs) -> crate::infer::PipelineConfig {
    args.batching.pipeline_config(args.concurrency, 1, Duration::from_millis(2))
}

/// Runs `calmline score`: exit 0 when every record was scored, 1 when some failed (they are in
/// the errors file), 130 when interrupted; an error when the run could not start.
pub fn run(args: &ScoreArgs) -> anyhow::Result<ExitCode> {
    let inputs = resolve_inputs(&args.inputs, args.format)?;
    let mut sink = Sink::open(args.out.as_deref(), args.resume)?;
    let policy = crate::domain::policy::Policy::load_or_embedded(args.policy.policy.as_deref())?;
    let policy_hash = policy.hash.clone();
    let classifier = crate::model::Classifier::load_from(&args.model.base_dir(), &args.model.models, args.model.precision()).context("loading the model")?;
    let conduct = ConductModel::embedded(&classifier.extractor)?;
    let config = pipeline_config(args);
    let pipeline = Pipeline::start(Arc::new(classifier), Arc::new(conduct), config);
    let show_progress = match args.progress {
        config::Progress::Always => true,
        config::Progress::Never => false,
        config::Progress::Auto => std::io::stderr().is_terminal(),
    };
    let runtime = crate::infer::runtime(Some(2))?;
    let started = Instant::now();
    let totals = runtime.block_on(score_all(inputs, pipeline.clone(), Arc::new(policy), &mut sink, args.concurrency as usize, args.shard, show_progress))?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "scored {} turns of {} conversations in {seconds:.1} s ({:.1} turns/s; model loaded before); {} failed, {} already done",
        totals.turns,
        totals.scored,
        totals.turns as f64 / seconds.max(1e-9),
        totals.failed,
        totals.skipped,
    );
    let versions_model = pipeline.classifier().model_version().to_string();
    drop(pipeline);
    if let Some(out) = &args.out {
        let conversations = write_summaries(out, totals.interrupted)?;
        eprintln!(
            "{} conversations in {} ({} this run, {} already there, {} failed): {SUMMARY_FILE}, {REPORT_FILE}, {ERRORS_FILE}; model {versions_model}, policy {policy_hash}",
            conversations,
            out.display(),
            totals.scored,
            totals.skipped,
            totals.failed + sink.earlier_failures,
        );
    }
    if totals.interrupted {
        eprintln!("interrupted: the output holds every conversation finished so far; run again with --resume to continue");
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    Ok(if totals.failed + sink.earlier_failures > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn resolve_inputs(given: &[PathBuf], format: InputFormat) -> anyhow::Result<Vec<Input>> {
    let forced = match format {
        InputFormat::Jsonl => Some(Format::Jsonl),
        InputFormat::Csv => Some(Format::Csv),
        InputFormat::Auto => None,
    };
    let by_extension = |path: &Path| match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("jsonl" | "json" | "ndjson") => Some(Format::Jsonl),
        Some("csv") => Some(Format::Csv),
        _ => None,
    };
    if given.is_empty() {
        return Ok(vec![Input { name: "-".into(), path: None, format: forced.unwrap_or(Format::Jsonl) }]);
    }
    let mut inputs = Vec::new();
    for path in given {
        if path.as_os_str() == "-" {
            inputs.push(Input { name: "-".into(), path: None, format: forced.unwrap_or(Format::Jsonl) });
        } else if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading folder {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && (forced.is_some() || by_extension(p).is_some()))
                .collect();
            files.sort();
            if files.is_empty() {
                bail!("folder {} holds no .jsonl or .csv transcripts", path.display());
            }
            for file in files {
                let format = forced.or_else(|| by_extension(&file)).unwrap_or(Format::Jsonl);
                inputs.push(Input { name: file.display().to_string(), path: Some(file), format });
            }
        } else if path.is_file() {
            let Some(format) = forced.or_else(|| by_extension(path)) else {
                bail!("{}: unknown extension; name it .jsonl or .csv, or pass --format", path.display());
            };
            inputs.push(Input { name: path.display().to_string(), path: Some(path.clone()), format });
        } else {
            bail!("{}: no such file or folder", path.display());
        }
    }
    Ok(inputs)
}

/// Where results go, and what an earlier run already wrote there.
struct Sink {
    conversations: Box<dyn Write + Send>,
    errors: Box<dyn Write + Send>,
    done: HashSet<Source>,
    earlier_failures: u64,
}

impl Sink {
    fn open(out: Option<&Path>, resume: bool) -> anyhow::Result<Sink> {
        let Some(out) = out else {
            return Ok(Sink { conversations: Box::new(std::io::stdout()), errors: Box::new(std::io::stderr()), done: HashSet::new(), earlier_failures: 0 });
        };
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        let conversations_path = out.join(CONVERSATIONS_FILE);
        let errors_path = out.join(ERRORS_FILE);
        let mut done = HashSet::new();
        let mut earlier_failures = 0;
        if resume {
            for source in repair_and_read_sources(&conversations_path, |line| Ok(serde_json::from_str::<ConversationLine>(line)?.source))? {
                done.insert(source);
            }
            for source in repair_and_read_sources(&errors_path, |line| Ok(serde_json::from_str::<ErrorLine>(line)?.source()))? {
                earlier_failures += 1;
                done.insert(source);
            }
        } else if std::fs::metadata(&conversations_path).is_ok_and(|m| m.len() > 0) {
            bail!("{} already holds results; pass --resume to continue that run, or choose another --out", out.display());
        }
        let open = |path: &Path| -> anyhow::Result<Box<dyn Write + Send>> {
            let file = OpenOptions::new()
                .create(true)
                .write(true)
                .append(resume)
                .truncate(!resume)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            Ok(Box::new(BufWriter::new(file)))
        };
        Ok(Sink { conversations: open(&conversations_path)?, errors: open(&errors_path)?, done, earlier_failures })
    }

    fn write(&mut self, outcome: Outcome) -> std::io::Result<()> {
        let (target, line) = match outcome {
            Outcome::Scored { line, .. } => (&mut self.conversations, line),
            Outcome::Failed { line } => (&mut self.errors, line),
        };
        // One whole line, flushed, per record: what a kill leaves behind is at most one partial
        // last line, which `--resume` cuts off.
        target.write_all(line.as_bytes())?;
        target.write_all(b"\n")?;
        target.flush()
    }
}

/// Cuts a partial last line (left by a kill) and returns the sources of the whole lines, each
/// read by `source_of`.
fn repair_and_read_sources(path: &Path, source_of: fn(&str) -> serde_json::Result<Source>) -> anyhow::Result<Vec<Source>> {
    let Ok(mut file) = OpenOptions::new().read(true).write(true).open(path) else { return Ok(Vec::new()) };
    let len = file.metadata()?.len();
    if len > 0 {
        // Find the last newline by reading backwards in blocks.
        let mut pos = len;
        let mut block = vec![0u8; 64 * 1024];
        let mut whole = 0;
        'search: while pos > 0 {
            let start = pos.saturating_sub(block.len() as u64);
            let n = (pos - start) as usize;
            file.seek(SeekFrom::Start(start))?;
            file.read_exact(&mut block[..n])?;
            if let Some(i) = block[..n].iter().rposition(|&b| b == b'\n') {
                whole = start + i as u64 + 1;
                break 'search;
            }
            pos = start;
        }
        if whole < len {
            eprintln!("{}: cutting an unfinished last line ({} bytes) left by an interrupted run", path.display(), len - whole);
            file.set_len(whole)?;
        }
    }
    file.seek(SeekFrom::Start(0))?;
    let mut sources = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        sources.push(source_of(&line).with_context(|| format!("{}:{}: not a line calmline wrote", path.display(), n + 1))?);
    }
    Ok(sources)
}

enum Pending {
    Ready(Option<Outcome>),
    Running(JoinHandle<Outcome>),
}

struct Item {
    input: usize,
    record: Record,
}

/// Counts the bytes read from an input, for progress.
struct Counted<R> {
    inner: R,
    bytes: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Streams every input's records into `tx` until the end or `stop`.
fn read_inputs(inputs: Vec<Input>, tx: mpsc::Sender<Item>, bytes: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    for (index, input) in inputs.into_iter().enumerate() {
        let reader: Box<dyn Read> = match &input.path {
            None => Box::new(std::io::stdin()),
            Some(path) => match File::open(path) {
                Ok(f) => Box::new(f),
                Err(e) => {
                    let record = Err(crate::qa::transcripts::RecordError { line: 0, id: None, message: format!("cannot open: {e}") });
                    if tx.blocking_send(Item { input: index, record }).is_err() {
                        return;
                    }
                    continue;
                }
            },
        };
        let counted = Counted { inner: reader, bytes: Arc::clone(&bytes) };
        let records: Box<dyn Iterator<Item = Record>> = match input.format {
            Format::Jsonl => Box::new(JsonlReader::new(BufReader::new(counted))),
            Format::Csv => Box::new(CsvReader::new(counted)),
        };
        for record in records {
            if stop.load(Ordering::Relaxed) || tx.blocking_send(Item { input: index, record }).is_err() {
                return;
            }
        }
    }
}

async fn score_all(
    inputs: Vec<Input>,
    pipeline: Pipeline,
    policy: Arc<Policy>,
    sink: &mut Sink,
    concurrency: usize,
    shard: Option<Shard>,
    show_progress: bool,
) -> anyhow::Result<Totals> {
    let names: Vec<String> = inputs.iter().map(|i| i.name.clone()).collect();
    let total_bytes: u64 = inputs.iter().filter_map(|i| i.path.as_ref()).filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    let stdin_used = inputs.iter().any(|i| i.path.is_none());
    let bytes = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = mpsc::channel::<Item>(concurrency * 2);
    let reader = {
        let (bytes, stop) = (Arc::clone(&bytes), Arc::clone(&stop));
        std::thread::Builder::new().name("calmline-score-read".into()).spawn(move || read_inputs(inputs, tx, bytes, stop))?
    };
    let mut progress = Progress::new(show_progress, if stdin_used { None } else { Some(total_bytes) }, Arc::clone(&bytes));
    let mut totals = Totals::default();
    let mut window: VecDeque<Pending> = VecDeque::new();
    let stopping = crate::shutdown::termination();
    tokio::pin!(stopping);
    loop {
        let item = tokio::select! {
            biased;
            _ = &mut stopping => { totals.interrupted = true; break; }
            item = rx.recv() => match item { Some(item) => item, None => break },
        };
        let source = |line: usize| Source { file: names[item.input].clone(), line };
        if let Some(shard) = shard {
            // The conversation id; its file and line when it has none.
            let (line, id) = match &item.record {
                Ok((line, transcript)) => (*line, Some(transcript.id.as_str())),
                Err(e) => (e.line, e.id.as_deref()),
            };
            let key = id.filter(|id| !id.is_empty()).map_or_else(|| format!("{}:{line}", names[item.input]), str::to_string);
            if !shard.owns(&key) {
                continue;
            }
        }
        let pending = match item.record {
            Err(e) => {
                let source = source(e.line);
                if sink.done.contains(&source) {
                    totals.skipped += 1;
                    Pending::Ready(None)
                } else {
                    Pending::Ready(Some(Outcome::Failed { line: ErrorLine::new(&source, e.id.as_deref(), &e.message).to_json() }))
                }
            }
            Ok((line, transcript)) => {
                let source = source(line);
                if sink.done.contains(&source) {
                    totals.skipped += 1;
                    Pending::Ready(None)
                } else {
                    let (pipeline, policy) = (pipeline.clone(), Arc::clone(&policy));
                    Pending::Running(tokio::spawn(async move { scoring::score(&pipeline, &policy, &transcript, &source).await }))
                }
            }
        };
        window.push_back(pending);
        while window.len() >= concurrency {
            write_front(&mut window, sink, &mut totals).await?;
            progress.tick(&totals);
        }
    }
    stop.store(true, Ordering::Relaxed);
    drop(rx); // unblocks the reader
    // Everything already accepted is finished and written, also when stopping.
    while !window.is_empty() {
        write_front(&mut window, sink, &mut totals).await?;
        progress.tick(&totals);
    }
    progress.finish();
    let _ = reader.join();
    Ok(totals)
}

async fn write_front(window: &mut VecDeque<Pending>, sink: &mut Sink, totals: &mut Totals) -> anyhow::Result<()> {
    let outcome = match window.pop_front().expect("the window is not empty") {
        Pending::Ready(outcome) => outcome,
        Pending::Running(task) => Some(task.await.context("a scoring task panicked")?),
    };
    match &outcome {
        Some(Outcome::Scored { turns, .. }) => {
            totals.scored += 1;
            totals.turns += turns;
        }
        Some(Outcome::Failed { .. }) => totals.failed += 1,
        None => {}
    }
    if let Some(outcome) = outcome {
        sink.write(outcome).context("writing the results")?;
    }
    Ok(())
}

/// How often `--progress always` writes a line when stderr is not a terminal.
const LOG_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The run's progress on stderr: conversations, turns per second and, when the input size is
/// known, percent and ETA. On a terminal, indicatif's bar; with `--progress always` on a pipe or
/// in a CI log (where indicatif hides itself), a plain line every few seconds instead of cursor
/// movements no log viewer understands.
struct Progress {
    bar: ProgressBar,
    /// When the last plain line was written, if lines are wanted.
    logged: Option<Instant>,
    total_bytes: Option<u64>,
    bytes: Arc<AtomicU64>,
    started: Instant,
}

impl Progress {
    fn new(enabled: bool, total_bytes: Option<u64>, bytes: Arc<AtomicU64>) -> Progress {
        let total_bytes = total_bytes.filter(|&t| t > 0);
        let on_terminal = std::io::stderr().is_terminal();
        let bar = match total_bytes {
            _ if !enabled || !on_terminal => ProgressBar::hidden(),
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template("[{bar:24}] {percent:>3}% {msg}{eta_when_known}").expect("a valid template").progress_chars("#.").with_key(
                    "eta_when_known",
                    |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        // Indicatif's estimate is noise in the first percent, and moot at the end.
                        if (0.01..1.0).contains(&state.fraction()) {
                            let _ = std::fmt::Write::write_fmt(w, format_args!(", ETA {}", HumanDuration(state.eta())));
                        }
                    },
                ),
            ),
            None => ProgressBar::new_spinner().with_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template")),
        };
        let now = Instant::now();
        Progress { bar, logged: (enabled && !on_terminal).then_some(now), total_bytes, bytes, started: now }
    }

    fn line(&self, totals: &Totals) -> String {
        let rate = totals.turns as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let mut line = format!("{} conversations, {} turns, {rate:.1} turns/s", totals.scored + totals.failed, totals.turns);
        if totals.skipped > 0 {
            line += &format!(", {} already done", totals.skipped);
        }
        line
    }

    fn tick(&mut self, totals: &Totals) {
        let bytes = self.bytes.load(Ordering::Relaxed);
        if !self.bar.is_hidden() {
            self.bar.set_position(bytes);
            self.bar.set_message(self.line(totals));
        } else if self.logged.is_some_and(|at| at.elapsed() >= LOG_PROGRESS_EVERY) {
            let percent = self.total_bytes.map(|total| format!("{:.0}% ", 100.0 * (bytes as f64 / total as f64).min(1.0))).unwrap_or_default();
            eprintln!("{percent}{}", self.line(totals));
            self.logged = Some(Instant::now());
        }
    }

    /// Clears the bar: the run's summary follows on stderr.
    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Writes `summary.csv` and `report.html` from `conversations.jsonl` and `errors.jsonl` (so a
/// resumed run's summaries cover the whole run). Returns the number of conversations.
pub fn write_summaries(out: &Path, interrupted: bool) -> anyhow::Result<u64> {
    let conversations = BufReader::new(File::open(out.join(CONVERSATIONS_FILE))?);
    let mut csv = csv::Writer::from_path(out.join(SUMMARY_FILE))?;
    csv.write_record(output::summary_header())?;
    let mut report = Report::default();
    let mut count = 0;
    for line in conversations.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let conversation: ConversationLine = serde_json::from_str(&line)?;
        csv.write_record(output::summary_row(&conversation))?;
        report.add_conversation(conversation);
        count += 1;
    }
    csv.flush()?;
    if let Ok(errors) = File::open(out.join(ERRORS_FILE)) {
        for line in BufReader::new(errors).lines() {
            if let Ok(error) = serde_json::from_str::<ErrorLine>(&line?) {
                report.add_error(error);
            }
        }
    }
    std::fs::write(out.join(REPORT_FILE), report.render(interrupted))?;
    Ok(count)
}
