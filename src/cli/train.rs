//! The model-making commands: `train` (the head and thresholds), `eval` (the public test
//! splits), `eval-judgement` (what users see), `eval-conduct`, and `export-examples` (the
//! fine-tuning trainer's input).

use std::process::ExitCode;

use anyhow::Context;

use crate::config::{
    DataArgs, EvalArgs, EvalConductArgs, EvalJudgementArgs, EvalSpansArgs, ExportExamplesArgs, ReportedSplit, TrainArgs, TrainSpansArgs, value_name,
};
use crate::domain::policy::Policy;
use crate::model::{Classifier, FeatureExtractor};
use crate::train::{self, TrainOptions, datasets::Caps};

pub fn train(args: &TrainArgs) -> anyhow::Result<ExitCode> {
    // Made before the long part, so a new --models folder cannot fail the run at the end.
    std::fs::create_dir_all(&args.model.models).with_context(|| format!("creating {}", args.model.models.display()))?;
    let mut extractor = FeatureExtractor::load(&args.model.base_dir()).context("loading the encoder")?;
    if let Some(dir) = &args.adapters {
        extractor.merge_adapters(dir).context("merging the adapters")?;
        anyhow::ensure!(extractor.fingerprint != "base", "no adapters found in {}", dir.display());
        if dir != &args.model.models {
            for file in ["adapters.json", "adapters.safetensors"] {
                std::fs::copy(dir.join(file), args.model.models.join(file)).with_context(|| format!("copying {file}"))?;
            }
        }
    }
    let opts = TrainOptions {
        project_weight: args.project_weight,
        threshold_rule: args.threshold_rule.into(),
        ..train_options(&args.data, args.steps, args.learning_rate, args.l2)
    };
    let (head, report, data) = train::train_head(&extractor, &opts, &args.version)?;
    head.save(&args.model.models).context("saving the head")?;
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(args.model.models.join("eval-test.json"), json + "\n")?;
    println!("{}", report.to_markdown());
    let neutral_rates = |head: &crate::model::head::Head| train::judgement::neutral_flag_rates(head, &data.examples, &data.features);
    eprintln!("neutral flag rates (texts, any wrong flag, any abuse flag): {:?}", neutral_rates(&head));
    if let Some(dir) = &args.compare {
        let previous = crate::model::head::Head::load(dir).with_context(|| format!("loading the head in {}", dir.display()))?;
        let report = train::evaluate(&previous, &data, train::datasets::Split::Test);
        std::fs::write(args.model.models.join("eval-test-previous.json"), serde_json::to_string_pretty(&report)? + "\n")?;
        eprintln!("previous head {}: neutral flag rates {:?}", previous.meta.model_version, neutral_rates(&previous));
    }
    eprintln!("head saved to {}", args.model.models.display());
    Ok(ExitCode::SUCCESS)
}

pub fn eval(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    let classifier = Classifier::load_from(&args.model.base_dir(), &args.model.models, args.model.precision()).context("loading the model")?;
    let opts = train_options(&args.data, 0, 0.0, 0.0);
    // Only the splits needed are scored: embedding the train splits too would cost ~20 minutes
    // through an adapted encoder for nothing.
    let wanted = |s: train::datasets::Split| s == train::datasets::Split::Test || (args.tune_thresholds.is_some() && s == train::datasets::Split::Dev);
    let examples: Vec<_> = train::load_examples(&opts)?.into_iter().filter(|e| wanted(e.split)).collect();
    let data = train::featurise_examples(&classifier.extractor, &opts.cache_dir, examples)?;
    let crate::model::Classifier { mut head, .. } = classifier;
    if let Some(rule) = args.tune_thresholds.map(train::ThresholdRule::from) {
        head = train::apply_threshold_rule(head, &data, rule)?;
        eprintln!("thresholds by {rule:?} on dev: {:?}, by language {:?}", head.meta.thresholds, head.meta.thresholds_by_language);
        if let Some(trained) = head.meta.trained.as_object_mut() {
            trained.insert("thresholds".into(), serde_json::json!(rule.describe()));
        }
        head.save(&args.model.models).context("saving the re-tuned thresholds")?;
    }
    let report = train::evaluate(&head, &data, train::datasets::Split::Test);
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("{}", report.to_markdown());
    Ok(ExitCode::SUCCESS)
}

pub fn eval_spans(args: &EvalSpansArgs) -> anyhow::Result<ExitCode> {
    let classifier = Classifier::load_from(&args.model.base_dir(), &args.model.models, args.model.precision()).context("loading the model")?;
    let report = train::spans::evaluate(&classifier, &args.data, args.limit.unwrap_or(usize::MAX))?;
    write_span_report(&args.out, classifier.model_version(), &report)
}

pub fn train_spans(args: &TrainSpansArgs) -> anyhow::Result<ExitCode> {
    let classifier = Classifier::load_from(&args.model.base_dir(), &args.model.models, args.model.precision()).context("loading the model")?;
    let (head, report) = train::spans::train(&classifier, &args.data, args.posts, args.steps, args.hidden, args.epochs)?;
    head.save(&args.model.models).context("saving the span head")?;
    write_span_report(&args.out, classifier.model_version(), &report)
}

fn write_span_report(out: &std::path::Path, model_version: &str, report: &train::spans::SpanReport) -> anyhow::Result<ExitCode> {
    let json = serde_json::to_string_pretty(&serde_json::json!({ "model_version": model_version, "semeval_2021_task5": report }))?;
    std::fs::write(out, json.clone() + "\n")?;
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}

pub fn eval_judgement(args: &EvalJudgementArgs) -> anyhow::Result<ExitCode> {
    use train::datasets::Split;
    use train::judgement;
    let classifier = Classifier::load_from(&args.model.base_dir(), &args.model.models, args.model.precision()).context("loading the model")?;
    let policy = Policy::load_or_embedded(args.policy.policy.as_deref())?;
    let split = match args.split {
        ReportedSplit::Dev => Split::Dev,
        ReportedSplit::Test => Split::Test,
    };
    let cases = judgement::load_cases(&args.data.behaviour)?;
    let suite = judgement::run_suite(&classifier, &policy, &cases, split)?;
    let conversations = judgement::load_conversations(&args.data.conversations)?;
    let dialogues = judgement::run_conversations(&classifier, &policy, &conversations, split)?;
    let opts = train_options(&args.data, 0, 0.0, 0.0);
    // Every split is embedded (only the test split counts) so the f32 features cached by `train`
    // serve an f32 run (an int8 run has cache entries of its own).
    let data = train::featurise_examples(&classifier.extractor, &opts.cache_dir, train::neutral::load_neutral(&opts.data_dir)?)?;
    let rates = judgement::neutral_flag_rates(&classifier.head, &data.examples, &data.features);
    let offensive = train::datasets::offensive_tests(&opts.data_dir, opts.caps.test)?;
    let (examples, truth): (Vec<_>, Vec<bool>) = offensive.into_iter().unzip();
    let embedded = train::featurise_examples(&classifier.extractor, &opts.cache_dir, examples)?;
    let offensive: Vec<_> = embedded.examples.into_iter().zip(truth).collect();
    let offensive_rows = judgement::offensive_rows(&classifier.head, &offensive, &embedded.features);
    let report = serde_json::json!({
        "offensive_public_tests": offensive_rows,
        "model_version": classifier.model_version(),
        "policy_hash": policy.hash,
        "split": value_name(&args.split),
        "behaviour": suite,
        "conversations": dialogues,
        "neutral_flag_rates": rates,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("{}", judgement::markdown(&suite, &dialogues, &rates));
    println!("\n### Public offensive/toxic test sets: any label aimed at people, or profanity, flagged\n\n{}", judgement::offensive_markdown(&offensive_rows));
    Ok(ExitCode::SUCCESS)
}

pub fn eval_conduct(args: &EvalConductArgs) -> anyhow::Result<ExitCode> {
    use crate::domain::conduct::{ConductModel, evaluation};
    let classifier = Classifier::load_from(&args.model.base_dir(), &args.model.models, args.model.precision()).context("loading the model")?;
    let model = ConductModel::embedded(&classifier.extractor)?;
    let labelled = evaluation::load(&args.data, &classifier)?;
    let professional = evaluation::score(train::judgement::professional_replies(&args.conversations)?, &classifier)?;
    let mut thresholds = model.thresholds();
    if args.tune {
        // Chosen with the professional replies as negatives: a flag on a good agent costs.
        let both: Vec<_> = labelled.iter().chain(&professional).cloned().collect();
        let (best, f1) = evaluation::tune(&both, &model);
        println!("best on dev (macro F1 {f1:.3}): {best:?}; committed: {thresholds:?}\n");
        thresholds = best;
    }
    println!("model {}, conduct {}, {thresholds:?}\n", classifier.model_version(), model.version);
    for split in ["dev", "test"] {
        let counts = evaluation::count(&labelled, &model, split, thresholds);
        println!("### {split} split (macro F1 {:.3})\n\n{}", evaluation::macro_f1(&counts), evaluation::markdown(&counts));
        // What a QA team would see on good agents: how many professional replies get any flag.
        let alarms = evaluation::false_alarms(&professional, &model, split, thresholds);
        println!(
            "Professional replies of the gold conversations ({split}) with a conduct flag:\n\n| language | replies | flagged | rate | by kind |\n|---|---:|---:|---:|---|"
        );
        for (lang, a) in &alarms {
            let kinds: Vec<String> = a.by_kind.iter().map(|(k, n)| format!("{} {n}", k.name())).collect();
            println!("| {lang} | {} | {} | {:.1}% | {} |", a.replies, a.flagged, 100.0 * a.rate(), kinds.join(", "));
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

pub fn export_examples(args: &ExportExamplesArgs) -> anyhow::Result<ExitCode> {
    let extractor = FeatureExtractor::load(&args.model.base_dir()).context("loading the encoder and its tokenizer")?;
    let options = train_options(&args.data, 0, 0.0, 0.0);
    let examples = train::load_examples(&options)?;
    let groups = train::export::twin_groups(options.behaviour.as_deref(), options.training.as_deref())?;
    let file = std::fs::File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let written = train::export::write_examples(&extractor.tokenizer, &examples, &groups, &mut out)?;
    std::io::Write::flush(&mut out)?;
    eprintln!("{written} examples written to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

fn train_options(data: &DataArgs, steps: usize, learning_rate: f64, l2: f64) -> TrainOptions {
    TrainOptions {
        data_dir: data.data.clone(),
        cache_dir: data.cache.clone(),
        caps: Caps { train: data.cap_train, dev: data.cap_dev, test: data.cap_test },
        steps,
        learning_rate,
        l2,
        indomain: (!data.no_indomain).then(|| data.indomain.clone()),
        behaviour: (!data.no_behaviour).then(|| data.behaviour.clone()),
        training: (!data.no_training).then(|| data.training.clone()),
        neutral: !data.no_neutral,
        conversations: (!data.no_conversations).then(|| data.conversations.clone()),
        agent_replies: data.agent_replies.then(|| data.conversations.clone()),
        project_weight: 1.0,
        threshold_rule: train::ThresholdRule::PerLanguage,
    }
}
