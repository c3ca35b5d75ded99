//! calmline in Python: `calmline._calmline`, wrapped by the pure-Python package `calmline`
//! (python/calmline/__init__.py), which documents the API and turns the JSON returned here into
//! dicts.
//!
//! One `Engine` per model folder holds the service's own pipeline (tokenizer workers, the
//! inference thread, cross-caller batching) and a small tokio runtime to drive it: conversation
//! turns and transcripts of concurrent calls share its batches. `analyze` scores one call's texts
//! as `calmline analyze` does (same function, same results). Every call leaves the interpreter
//! (`Python::detach`) while the model runs, so other Python threads go on.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use calmline::domain::conduct::ConductModel;
use calmline::domain::conversation::{History, Speaker, TurnInput};
use calmline::domain::policy::{ConversationState, Policy};
use calmline::domain::text::{TextInput, analyze, validate};
use calmline::infer::{Pipeline, PipelineConfig};
use calmline::model::{Classifier, Precision};
use calmline::qa::output::{ErrorLine, Source, TurnLine};
use calmline::qa::scoring::{self, Outcome};
use calmline::qa::transcripts::parse_jsonl_record;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

struct Shared {
    pipeline: Pipeline,
    policy: Policy,
    runtime: tokio::runtime::Runtime,
}

/// The model, loaded once: `Engine(models_dir, base_dir, policy_path, evidence_spans)`.
#[pyclass(frozen, module = "calmline._calmline")]
struct Engine {
    shared: Arc<Shared>,
}

fn runtime_error(e: impl std::fmt::Display) -> PyErr {
    PyRuntimeError::new_err(e.to_string())
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (models, base, policy=None, evidence_spans=true, precision="auto"))]
    fn new(py: Python<'_>, models: PathBuf, base: PathBuf, policy: Option<PathBuf>, evidence_spans: bool, precision: &str) -> PyResult<Self> {
        let precision = match precision {
            "auto" => Precision::best_available(),
            "f32" => Precision::F32,
            "int8" => Precision::Int8,
            other => return Err(PyValueError::new_err(format!("precision must be \"auto\", \"f32\" or \"int8\", not {other:?}"))),
        };
        py.detach(|| {
            let policy = Policy::load_or_embedded(policy.as_deref()).map_err(|e| PyValueError::new_err(format!("policy: {e}")))?;
            let classifier = Classifier::load_from(&base, &models, precision).map_err(|e| runtime_error(format!("loading the model: {e}")))?;
            let conduct = ConductModel::embedded(&classifier.extractor).map_err(runtime_error)?;
            let config = PipelineConfig { max_wait: Duration::from_millis(2), evidence_spans, ..PipelineConfig::default() };
            let pipeline = Pipeline::start(Arc::new(classifier), Arc::new(conduct), config);
            let runtime = calmline::infer::runtime(Some(1)).map_err(runtime_error)?;
            Ok(Engine { shared: Arc::new(Shared { pipeline, policy, runtime }) })
        })
    }

    /// The model's version string (as in every output record).
    #[getter]
    fn model_version(&self) -> String {
        self.shared.pipeline.classifier().model_version().to_string()
    }

    /// The policy's hash (as in every `score_transcripts` record).
    #[getter]
    fn policy_hash(&self) -> String {
        self.shared.policy.hash.clone()
    }

    /// Analyses texts (each `(text, lang or None)`) as `calmline analyze --jsonl` does; one JSON
    /// object per text. A text that fails validation raises ValueError naming its position.
    fn analyze(&self, py: Python<'_>, texts: Vec<(String, Option<String>)>) -> PyResult<Vec<String>> {
        let inputs: Vec<TextInput> = texts.iter().map(|(text, lang)| TextInput { text, lang: lang.as_deref() }).collect();
        for (i, input) in inputs.iter().enumerate() {
            validate(input).map_err(|e| PyValueError::new_err(format!("text {i}: {e}")))?;
        }
        let shared = &self.shared;
        py.detach(|| {
            let analyses = analyze(shared.pipeline.classifier(), &shared.policy, &inputs).map_err(runtime_error)?;
            analyses.iter().map(|a| serde_json::to_string(a).map_err(runtime_error)).collect()
        })
    }

    /// Scores transcript records (each the JSON object of one `calmline score` input line) and
    /// returns one JSON line each, in order: the conversation line of `calmline score`, or its
    /// error line (`{"file", "line", "id", "error"}`) for a record that could not be read or
    /// scored. `file` and `first_line` name where the records came from. All records of a call
    /// are scored at once, so their turns share the encoder's batches (the caller bounds how
    /// many: 64 from the Python package).
    fn score_transcripts(&self, py: Python<'_>, records: Vec<String>, file: String, first_line: usize) -> PyResult<Vec<String>> {
        let shared = Arc::clone(&self.shared);
        py.detach(move || {
            shared.runtime.block_on(async {
                let tasks: Vec<_> = records
                    .iter()
                    .enumerate()
                    .map(|(i, raw)| {
                        let shared = Arc::clone(&shared);
                        let source = Source { file: file.clone(), line: first_line + i };
                        let record = parse_jsonl_record(raw.as_bytes(), source.line);
                        tokio::spawn(async move {
                            match record {
                                Err(e) => ErrorLine::new(&source, e.id.as_deref(), &e.message).to_json(),
                                Ok((_, transcript)) => match scoring::score(&shared.pipeline, &shared.policy, &transcript, &source).await {
                                    Outcome::Scored { line, .. } | Outcome::Failed { line } => line,
                                },
                            }
                        })
                    })
                    .collect();
                let mut lines = Vec::with_capacity(tasks.len());
                for task in tasks {
                    lines.push(task.await.map_err(runtime_error)?);
                }
                Ok(lines)
            })
        })
    }
}

/// A live conversation: `customer(text)` / `agent(text)` in the order they were said; each turn
/// returns its JSON (a turn of a `calmline score` record: guidance for customer turns, conduct
/// for agent turns). The guidance ladder moves on with each turn, as in the service's Converse.
#[pyclass(frozen, module = "calmline._calmline")]
struct Conversation {
    shared: Arc<Shared>,
    locale: String,
    /// The ladder's state and what earlier turns tell about the next agent turn.
    state: Mutex<(ConversationState, History)>,
}

#[pymethods]
impl Conversation {
    #[new]
    fn new(engine: &Engine, locale: String) -> Self {
        Conversation { shared: Arc::clone(&engine.shared), locale, state: Mutex::new(Default::default()) }
    }

    /// Assesses the next turn; `speaker` is "customer" or "agent".
    #[pyo3(signature = (speaker, text, lang=None))]
    fn turn(&self, py: Python<'_>, speaker: &str, text: String, lang: Option<String>) -> PyResult<String> {
        let speaker = match speaker {
            "customer" => Speaker::Customer,
            "agent" => Speaker::Agent,
            other => return Err(PyValueError::new_err(format!("speaker must be \"customer\" or \"agent\", not {other:?}"))),
        };
        let turn = TurnInput { speaker, text, lang };
        turn.validate().map_err(|e| PyValueError::new_err(e.to_string()))?;
        let shared = Arc::clone(&self.shared);
        py.detach(|| {
            // Turns of one conversation are assessed one after the other: the ladder is a sequence.
            let mut guard = self.state.lock().map_err(|_| runtime_error("an earlier turn of this conversation failed mid-way"))?;
            let (state, history) = &mut *guard;
            let assessment = shared.runtime.block_on(async {
                let admitted = shared.pipeline.admit_wait().await?;
                shared.pipeline.analyze_turn(&shared.policy, &admitted, state, Some(history), &turn, &self.locale, None).await
            });
            let assessment = assessment.map_err(runtime_error)?;
            Ok(TurnLine::new(&assessment, &turn.text).to_json())
        })
    }

    /// Turns assessed so far.
    #[getter]
    fn turns(&self) -> PyResult<u32> {
        Ok(self.state.lock().map_err(|_| runtime_error("an earlier turn of this conversation failed mid-way"))?.0.turns)
    }
}

#[pymodule]
fn _calmline(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add_class::<Conversation>()?;
    m.add("MAX_TEXT_BYTES", calmline::domain::text::MAX_TEXT_BYTES)?;
    Ok(())
}
