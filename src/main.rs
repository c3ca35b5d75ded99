//! The `calmline` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use calmline::config::{Cli, Command, DataArgs};
use calmline::model::{Classifier, FeatureExtractor};
use calmline::train::{self, TrainOptions, datasets::Caps};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Analyze(args) => calmline::analyze::run_cli(&args),
        Command::Train(args) => train_command(&args),
        Command::Eval(args) => eval_command(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn train_options(data: &DataArgs, steps: usize, learning_rate: f64, l2: f64) -> TrainOptions {
    TrainOptions {
        data_dir: data.data.clone(),
        cache_dir: data.cache.clone(),
        caps: Caps { train: data.cap_train, dev: data.cap_dev, test: data.cap_test },
        steps,
        learning_rate,
        l2,
    }
}

fn train_command(args: &calmline::config::TrainArgs) -> anyhow::Result<ExitCode> {
    let extractor = FeatureExtractor::load(&args.model.models.join("base")).context("loading the encoder")?;
    let opts = train_options(&args.data, args.steps, args.learning_rate, args.l2);
    let (head, report) = train::train_head(&extractor, &opts, &args.version)?;
    head.save(&args.model.models).context("saving the head")?;
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(args.model.models.join("eval-test.json"), json + "\n")?;
    println!("{}", report.to_markdown());
    eprintln!("head saved to {}", args.model.models.display());
    Ok(ExitCode::SUCCESS)
}

fn eval_command(args: &calmline::config::EvalArgs) -> anyhow::Result<ExitCode> {
    let classifier = Classifier::load(&args.model.models).context("loading the model")?;
    let opts = train_options(&args.data, 0, 0.0, 0.0);
    let data = train::featurise(&classifier.extractor, &opts)?;
    let report = train::evaluate(&classifier.head, &data, train::datasets::Split::Test);
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("{}", report.to_markdown());
    Ok(ExitCode::SUCCESS)
}
