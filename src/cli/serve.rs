//! The `calmline serve` command: a runtime, the listeners, and the service until a signal.

use std::process::ExitCode;

use anyhow::Context;

use crate::config::{LogFormat, ServeArgs};

pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    super::init_tracing(args.log_format == LogFormat::Json);
    let runtime = crate::infer::runtime(None)?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
        let metrics_listener = match args.metrics_listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?),
            None => None,
        };
        crate::server::run(args, listener, metrics_listener, crate::shutdown::signal()).await
    })?;
    Ok(ExitCode::SUCCESS)
}
