//! The `sessions` scenario: N clients connect, join, change presence and
//! leave, while every one of them watches the server's events.
//!
//! The run goes through fixed phases, each bounded by the one deadline of
//! `--timeout`:
//! 1. open the connection pool, check the admin token, create the channels
//!    and the member token;
//! 2. ramp: start every client (at most `--ramp-concurrency` connecting and
//!    joining at once) and wait for all of them to finish their actions;
//! 3. settle: wait until every open session has received every event (see
//!    [`caught_up`]);
//! 4. close every stream, collect the observers, ask the server who is
//!    still online, delete the fixtures, and compute the report.
//!
//! When the deadline passes, the run skips to phase 4 with what it has.

pub mod checks;
pub mod client;
pub mod counters;
pub mod flags;
pub mod observer;
pub mod registry;
pub mod report;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until, timeout_at};

use crate::common::error::RunError;
use crate::common::progress::{Phase, print_progress};
use crate::common::report::Outcome;
use crate::common::setup::{Admin, TOKEN_SPARE_LIFE};
use crate::common::stats::{LatencyPercentiles, per_second};
use crate::common::task::{COLLECT_GRACE, interrupted, lock};
use crate::metrics::process::{Usage, UsageProbe};
use crate::sessions::checks::{Join, Watcher, missing_joins};
use crate::sessions::client::{Histograms, ReaderEnd, Shared, run_client};
use crate::sessions::counters::Counters;
use crate::sessions::observer::{Findings, KIND_NAMES};
use crate::sessions::registry::{ReaderState, Registry};
use crate::sessions::report::{Report, ServerStats, Settled};
use flags::SessionsArgs;

/// With no event for this long after the ramp, the run counts as settled
/// even when the exact rule cannot apply.
const QUIET: Duration = Duration::from_secs(2);
/// How often the settle phase looks at the counters.
const SETTLE_POLL: Duration = Duration::from_millis(20);
/// Time for the server to notice the closed streams.
const OFFLINE_GRACE: Duration = Duration::from_secs(5);

/// Runs the scenario. An `Err` means the run could not start; a run that
/// started always yields a report, with [`Outcome::TimedOut`] when the
/// deadline cut it short and [`Outcome::Interrupted`] when `interrupt`
/// turned true (say, on Ctrl-C) during the ramp or the settling. Either way
/// the sessions are closed and the fixtures removed before it returns.
pub async fn run_sessions(
    args: &SessionsArgs,
    mut interrupt: watch::Receiver<bool>,
) -> Result<Report, RunError> {
    let started = Instant::now();
    let deadline = started + args.timeout();
    let mut warnings = Vec::new();

    let size = args.effective_connections();
    if size > args.run.connections {
        let note = format!(
            "raised --connections from {} to {size} (at most {} event streams per connection)",
            args.run.connections, args.run.streams_per_connection
        );
        if !args.run.quiet {
            eprintln!("note: {note}");
        }
        warnings.push(note);
    }
    let ttl = (!args.as_admin).then(|| args.timeout() + TOKEN_SPARE_LIFE);
    let prepared =
        Admin::set_up_run(&args.run, size, args.channels, args.clients, ttl, deadline).await?;

    let clients = args.clients as usize;
    let counters = Arc::new(Counters::default());
    counters.phase.set(Phase::Ramp);
    let (close_tx, close_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        registry: Registry::new(clients, prepared.fixtures.channel_ids.clone()),
        pool: prepared.pool.clone(),
        tokens: prepared.creds.clone(),
        ramp: Arc::new(Semaphore::new(args.run.ramp_concurrency as usize)),
        counters: counters.clone(),
        histograms: Mutex::new(Histograms::default()),
        readers: Mutex::default(),
        close: close_rx,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let printer = (!args.run.quiet).then(|| {
        tokio::spawn(print_progress(
            counters.clone(),
            clients as u64,
            Instant::now(),
            stop_rx,
        ))
    });

    // Ramp. The CPU window opens here, so setup is not in it.
    let probe = UsageProbe::start(args.run.server_pid, &mut warnings);
    let mut actors = JoinSet::new();
    for i in 0..clients {
        actors.spawn(run_client(i, shared.clone()));
    }
    let drain = async {
        while let Some(joined) = actors.join_next().await {
            if let Err(e) = joined
                && e.is_panic()
            {
                // A panic is a bug in this tool; let it show.
                std::panic::resume_unwind(e.into_panic());
            }
        }
    };
    let cut = tokio::select! {
        () = drain => None,
        () = sleep_until(deadline) => Some(Settled::Timeout),
        () = interrupted(&mut interrupt) => Some(Settled::Interrupted),
    };
    if cut.is_some() {
        shared.ramp.close();
        actors.abort_all();
    }

    // Settle.
    counters.phase.set(Phase::Settle);
    let settled = match cut {
        None => settle(&shared.registry, &counters, deadline, &interrupt).await,
        Some(cut) => cut,
    };
    let settle_end = Instant::now();

    // Close and collect.
    counters.phase.set(Phase::Close);
    let _ = close_tx.send(true);
    let readers = std::mem::take(&mut *lock(&shared.readers));
    let grace = Instant::now() + COLLECT_GRACE;
    let mut observers = Vec::with_capacity(readers.len());
    let mut lost = 0;
    for mut reader in readers {
        match timeout_at(grace, &mut reader).await {
            Ok(Ok(done)) => observers.push(done),
            Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            _ => {
                reader.abort();
                lost += 1;
            }
        }
    }
    if lost > 0 {
        warnings.push(format!(
            "{lost} event readers did not stop in time; their findings are lost"
        ));
    }
    drop(actors);
    let _ = stop_tx.send(true);
    if let Some(p) = printer {
        let _ = p.await;
    }

    let outcome = match settled {
        Settled::Sequence | Settled::Quiet => Outcome::Completed,
        Settled::Timeout => Outcome::TimedOut,
        Settled::Interrupted => Outcome::Interrupted,
    };
    let cut_short = outcome != Outcome::Completed;
    if cut_short {
        warnings.push(
            "the run was cut short before the events settled: missing-event counts include events still in flight"
                .into(),
        );
    }
    let sessions_left_online = {
        let session_ids = shared.registry.session_ids();
        match wait_offline(
            &prepared.admin,
            &session_ids,
            Instant::now() + OFFLINE_GRACE,
        )
        .await
        {
            Ok(n) => Some(n as u64),
            Err(status) => {
                warnings.push(format!(
                    "cannot list online users: {}",
                    crate::common::tally::describe_status(&status)
                ));
                None
            }
        }
    };
    // The window closes before cleanup, whose deletes are not the load.
    let usage = probe.finish(&mut warnings);
    warnings.extend(prepared.clean_up().await);

    let mut findings = Vec::with_capacity(observers.len());
    for (mut observer, end) in observers {
        observer.resolve_pending(&shared.registry, true);
        shared.merge_delays(&mut observer);
        findings.push((observer.into_findings(), end));
    }
    let facts = RunFacts {
        args,
        run_id: prepared.run_id,
        connections: prepared.pool.len() as u64,
        elapsed: started.elapsed(),
        settle_end: settle_end.into_std(),
        outcome,
        settled,
        sessions_left_online,
        usage,
        warnings,
    };
    Ok(build_report(facts, &shared, &findings))
}

/// What the report needs besides the clients' results.
struct RunFacts<'a> {
    /// The flags.
    args: &'a SessionsArgs,
    /// The run's name.
    run_id: String,
    /// Connections used.
    connections: u64,
    /// The whole run.
    elapsed: Duration,
    /// When settling ended (the end of the event rate's window).
    settle_end: std::time::Instant,
    /// How it ended.
    outcome: Outcome,
    /// How settling ended.
    settled: Settled,
    /// From `ListOnline`.
    sessions_left_online: Option<u64>,
    /// CPU and memory over the run.
    usage: Usage,
    /// Notes for the reader.
    warnings: Vec<String>,
}

/// Waits until every open session has every event, or the events stop, or
/// the deadline, or an interrupt.
async fn settle(
    registry: &Registry,
    counters: &Counters,
    deadline: Instant,
    interrupt: &watch::Receiver<bool>,
) -> Settled {
    let mut seen = counters.events.load(Ordering::Relaxed);
    let mut changed = Instant::now();
    loop {
        if caught_up(registry) {
            return Settled::Sequence;
        }
        let now = Instant::now();
        let events = counters.events.load(Ordering::Relaxed);
        if events != seen {
            (seen, changed) = (events, now);
        } else if now - changed >= QUIET {
            return Settled::Quiet;
        }
        if *interrupt.borrow() {
            return Settled::Interrupted;
        }
        if timeout_at(deadline, sleep(SETTLE_POLL)).await.is_err() {
            return Settled::Timeout;
        }
    }
}

/// Whether every open session has received the last event any client
/// caused. A client's last action is its presence going back to online; its
/// own stream reports that event's sequence. Since every session receives
/// every event in one order, a session whose stream has reached the highest
/// such sequence has received every join and every presence change of the
/// run.
pub fn caught_up(registry: &Registry) -> bool {
    let mut target = 0;
    for slot in registry.slots() {
        if slot.reader() == ReaderState::Running && slot.acted.load(Ordering::Acquire) {
            match slot.final_seq.load(Ordering::Acquire) {
                0 => return false,
                seq => target = target.max(seq),
            }
        }
    }
    registry
        .slots()
        .iter()
        .filter(|s| s.reader() == ReaderState::Running)
        .all(|s| s.last_seq.load(Ordering::Acquire) >= target)
}

/// Polls `ListOnline` until none of `sessions` is listed or `until`;
/// returns how many still are.
async fn wait_offline(
    admin: &Admin,
    sessions: &[u32],
    until: Instant,
) -> Result<usize, tonic::Status> {
    loop {
        let left = match timeout_at(until, admin.still_online(sessions)).await {
            Ok(result) => result?,
            Err(_) => return Err(tonic::Status::deadline_exceeded("ListOnline took too long")),
        };
        if left == 0 || Instant::now() + Duration::from_millis(100) >= until {
            return Ok(left);
        }
        sleep(Duration::from_millis(100)).await;
    }
}

/// Puts the results together.
fn build_report(
    facts: RunFacts<'_>,
    shared: &Shared,
    findings: &[(Findings, ReaderEnd)],
) -> Report {
    let registry = &shared.registry;
    let slots = registry.slots();
    let first_connect = slots.iter().filter_map(|s| s.connect_sent.get()).min();
    let last_join = slots.iter().filter_map(|s| s.join_done.get()).max();
    let join_phase = match (first_connect, last_join) {
        (Some(a), Some(b)) => b.saturating_duration_since(*a),
        _ => Duration::ZERO,
    };
    let events_window = first_connect.map_or(Duration::ZERO, |a| {
        facts.settle_end.saturating_duration_since(*a)
    });
    let joins_ok = slots.iter().filter(|s| s.join_done.get().is_some()).count() as u64;

    let joins: Vec<Join> = slots
        .iter()
        .map(|s| Join {
            ok: s.join_done.get().is_some(),
            seq: s.join_seq(),
            sent: s.join_sent.get().copied(),
        })
        .collect();
    let watchers: Vec<Watcher<'_>> = findings
        .iter()
        .filter(|(_, end)| *end == ReaderEnd::Closed)
        .filter_map(|(f, _)| {
            let slot = registry.slot(f.index);
            Some(Watcher {
                index: f.index,
                snapshot_seq: *slot.snapshot_seq.get()?,
                started_at: *slot.started_at.get()?,
                seen: &f.seen,
            })
        })
        .collect();
    let missing = missing_joins(&watchers, &joins);

    let mut by_kind = BTreeMap::new();
    for (f, _) in findings {
        for (name, n) in KIND_NAMES.iter().zip(f.by_kind) {
            if n > 0 {
                *by_kind.entry((*name).to_owned()).or_default() += n;
            }
        }
    }
    let sum = |field: fn(&Findings) -> u64| findings.iter().map(|(f, _)| field(f)).sum::<u64>();
    let events_received = shared.counters.events.load(Ordering::Relaxed);
    let h = lock(&shared.histograms);
    Report {
        scenario: "sessions",
        run_id: facts.run_id,
        addr: facts.args.run.server.addr.clone(),
        outcome: facts.outcome,
        clients: u64::from(facts.args.clients),
        channels: registry.channel_ids().len() as u64,
        connections: facts.connections,
        as_admin: facts.args.as_admin,
        elapsed_s: facts.elapsed.as_secs_f64(),
        join_phase_s: join_phase.as_secs_f64(),
        sessions_started: slots
            .iter()
            .filter(|s| s.session_id.get().is_some())
            .count() as u64,
        joins_ok,
        presence_ok: slots
            .iter()
            .filter(|s| s.acted.load(Ordering::Acquire))
            .count() as u64,
        joins_per_sec: per_second(joins_ok, join_phase),
        event_delay_us: LatencyPercentiles::of(&h.event_delay),
        event_delay_from_request_us: LatencyPercentiles::of(&h.event_delay_from_request),
        connect_us: LatencyPercentiles::of(&h.connect),
        join_us: LatencyPercentiles::of(&h.join),
        events_before_join_response: sum(|f| f.early),
        events_received,
        events_per_sec: per_second(events_received, events_window),
        loadtest_cpu_s: facts.usage.own_cpu.map(|d| d.as_secs_f64()),
        server: facts
            .usage
            .server
            .as_ref()
            .map(|u| ServerStats::new(u, events_received, u64::from(facts.args.clients))),
        events_by_kind: by_kind,
        expected_events: missing.expected,
        missing_events: missing.missing,
        sessions_missing_events: missing.sessions_missing,
        duplicate_events: sum(|f| f.duplicate_joins),
        wrong_channel_events: sum(|f| f.wrong_channel_joins),
        events_for_failed_joins: sum(|f| f.seen_without_ok),
        sequence_violations: sum(|f| f.sequence_violations),
        sessions_with_sequence_violations: sum(|f| u64::from(f.sequence_violations > 0)),
        sessions_left_online: facts.sessions_left_online,
        settled: facts.settled,
        failures: lock(&shared.counters.failures.tally).clone(),
        warnings: facts.warnings,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    fn running(reg: &Registry, i: usize, last: u64, acted: bool, final_seq: u64) {
        let s = reg.slot(i);
        s.set_reader(ReaderState::Running);
        s.last_seq.store(last, Ordering::Release);
        s.acted.store(acted, Ordering::Release);
        s.final_seq.store(final_seq, Ordering::Release);
    }

    #[test]
    fn caught_up_waits_for_every_final_event_everywhere() {
        let reg = Registry::new(3, vec!["a".into()]);
        running(&reg, 0, 20, true, 18);
        running(&reg, 1, 19, true, 0);
        assert!(!caught_up(&reg), "client 1 has not seen its own last event");
        running(&reg, 1, 19, true, 19);
        // Client 2 never started: it does not hold anything up.
        assert_eq!(reg.slot(2).reader(), ReaderState::NotStarted);
        assert!(caught_up(&reg));
        running(&reg, 0, 18, true, 18);
        assert!(!caught_up(&reg), "client 0 has not reached 19");
        // A failed reader is not waited for.
        reg.slot(0).set_reader(ReaderState::Failed);
        assert!(caught_up(&reg));
    }
}
