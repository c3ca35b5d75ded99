//! When to stop, and telling everyone: the process's termination signals, and the token every
//! handler and stream watches (cancelled when the drain begins).

pub use tokio_util::sync::CancellationToken;

/// Completes on the first ctrl-c or SIGTERM, which starts the drain; a second one exits the
/// process at once (an operator who asks twice does not want to wait for the drain).
pub async fn signal() {
    termination().await;
    tokio::spawn(async {
        termination().await;
        eprintln!("second signal: exiting without finishing the drain");
        std::process::exit(130);
    });
}

/// Completes on ctrl-c or SIGTERM (on ctrl-c alone where SIGTERM cannot be watched).
pub async fn termination() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
