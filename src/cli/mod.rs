//! The command-line adapter: one module per `calmline` command over the library, and the
//! dispatch from the parsed command line.

pub mod analyze;
pub mod bench;
pub mod score;
pub mod serve;
pub mod train;

use std::process::ExitCode;

use crate::config::Command;

/// Runs one parsed command.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => serve::run(&args),
        Command::Analyze(args) => analyze::run(&args),
        Command::Score(args) => {
            init_tracing(false);
            score::run(&args)
        }
        Command::Train(args) => train::train(&args),
        Command::Eval(args) => train::eval(&args),
        Command::EvalJudgement(args) => train::eval_judgement(&args),
        Command::EvalSpans(args) => train::eval_spans(&args),
        Command::TrainSpans(args) => train::train_spans(&args),
        Command::ExportExamples(args) => train::export_examples(&args),
        Command::EvalConduct(args) => train::eval_conduct(&args),
        Command::HashKey => hash_key(),
        Command::Bench(args) => bench::run(&args),
    }
}

pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CALMLINE_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn hash_key() -> anyhow::Result<ExitCode> {
    let mut key = String::new();
    std::io::stdin().read_line(&mut key)?;
    if key.trim().is_empty() {
        anyhow::bail!("give the key on stdin, e.g. `head -c 32 /dev/urandom | base64 | tee key.txt | calmline hash-key`");
    }
    println!("{}", crate::grpc::auth::hash_key(&key));
    Ok(ExitCode::SUCCESS)
}
