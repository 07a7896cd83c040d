//! The signals that ask an OpenSpeak process to shut down gracefully.

use std::io;

/// Starts listening for SIGINT (Ctrl-C) and SIGTERM (what `docker stop` and
/// systemd send) now, and returns a future that resolves on the first.
///
/// The handlers are installed by this call, not when the future is first
/// polled: a process calls it before it binds and announces its listeners,
/// so a signal sent the moment it is ready finds the handlers in place
/// (otherwise the default action would kill it without a graceful drain).
/// Must be called within a tokio runtime.
pub fn listen() -> io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
