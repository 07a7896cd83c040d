//! Small helpers every run's tasks share: locks, the interrupt, the grace
//! for collecting them, random names and seeds, and errors as one line.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

/// Time for a run's client tasks to hand back what they measured (the
/// `sessions` readers their observers, the `voice` members their tallies)
/// once told to stop; what a task has not handed back by then is lost,
/// with a warning.
pub const COLLECT_GRACE: Duration = Duration::from_secs(5);

/// Locks a mutex, ignoring poisoning: the data are counters, still usable
/// after a panic elsewhere.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Resolves when `interrupt` turns true; never, if its sender is gone.
pub async fn interrupted(interrupt: &mut watch::Receiver<bool>) {
    if interrupt.wait_for(|i| *i).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A short random name for a run.
pub fn random_run_id() -> String {
    format!("{:010x}", rand::random::<u64>() & 0xff_ffff_ffff)
}

/// A seed for a run that was not given one; the report shows it, so the
/// run can be repeated.
pub fn random_seed() -> u64 {
    // Small enough to type back in by hand.
    rand::random::<u64>() % 1_000_000_000
}

/// An error and its causes on one line, without the repeats that nested
/// transport errors produce ("tcp connect error: tcp connect error: ...")
/// or that errors quoting their cause produce ("x.opus: not found: not
/// found").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_short_and_differ() {
        let (a, b) = (random_run_id(), random_run_id());
        assert_eq!(a.len(), 10);
        assert_ne!(a, b);
    }
}
