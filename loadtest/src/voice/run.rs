//! The `voice` scenario: clients in channels send voice through the data
//! plane while every listener measures what arrives.
//!
//! The run goes through fixed phases:
//! 1. setup, bounded by `--timeout`: the connection pool, the admin check,
//!    the run's channels and member token, then every client (at most
//!    `--ramp-concurrency` at once): session, join, `OpenVoice`, QUIC;
//! 2. warm-up: speakers send unmeasured packets until every speaker has
//!    reached every listener of its channel (the data plane learns of
//!    joins from the control plane, apart from the QUIC handshake), or
//!    [`WARMUP_TIMEOUT`];
//! 3. send: `--duration` of measured packets (through the simulated
//!    network), churn if asked; with `--metrics`, the data plane's
//!    counters are scraped just before; with `--timeline`, a recorder
//!    takes a row every interval (see `timeline`);
//! 4. drain: the longest simulated delay plus `drain_grace` (1 s), so that
//!    packets in flight arrive before losses are counted; then the second
//!    scrape, while every client is still connected;
//! 5. close: listeners hand back their tallies (and their last delays, for
//!    the timeline's last row, which runs to here), voice connections and
//!    sessions close, the fixtures go, the report is computed.
//!
//! Ctrl-C (`interrupt`) skips ahead to the close with what it has.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until, timeout_at};

use crate::common::error::RunError;
use crate::common::progress::{Phase, line_start, print_progress};
use crate::common::report::Outcome;
use crate::common::setup::{Admin, TOKEN_SPARE_LIFE};
use crate::common::stats::{LatencyPercentiles, duration_micros, micros_per, per_second};
use crate::common::tally::{ErrorKind, Failures, Step};
use crate::common::task::{self, COLLECT_GRACE, error_chain, lock};
use crate::metrics::process::UsageProbe;
use crate::metrics::scrape::{metrics_authority, scrape, scrape_process};
use crate::metrics::text::DataplaneCounters;
use crate::voice::counters::VoiceCounters;
use crate::voice::delivery::{SendLog, by_interval, totals};
use crate::voice::impairment::Direction;
use crate::voice::layout::Layout;
use crate::voice::member::{Ctx, Member, MemberResult, Signals, run_member, set_up};
use crate::voice::plan::VoicePlan;
use crate::voice::report::{
    ChurnReport, ImpairmentReport, Outages, ServerDrops, VoiceReport, VoiceServerStats,
    WarmupReport,
};
use crate::voice::timeline::{Plane, ProcessSample, ROW_GRACE, TimelineRow, judge_soak_with};

/// The longest the warm-up may take before measuring starts anyway.
pub const WARMUP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the warm-up checks whether every path carries voice.
const WARMUP_POLL: Duration = Duration::from_millis(10);
/// Time for closing the voice connections and the sessions.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Runs the scenario. An `Err` means the run could not start; a run that
/// started always yields a report (with [`Outcome::Interrupted`] when
/// `interrupt` turned true), and the sessions are closed and the fixtures
/// removed before it returns.
pub async fn run_voice(
    plan: &VoicePlan,
    mut interrupt: watch::Receiver<bool>,
) -> Result<VoiceReport, RunError> {
    plan.validate()?;
    let started = Instant::now();
    let setup_deadline = started + plan.setup_timeout;
    let layout = plan.layout();
    let mut warnings = Vec::new();

    let ttl = plan.setup_timeout + plan.duration + TOKEN_SPARE_LIFE;
    let prepared = Admin::set_up_run(
        &plan.run,
        plan.effective_connections(),
        plan.channels,
        plan.clients,
        Some(ttl),
        setup_deadline,
    )
    .await?;

    let counters = Arc::new(VoiceCounters::default());
    let (close_tx, close_rx) = watch::channel(false);
    let ctx = Arc::new(Ctx {
        plan: plan.clone(),
        layout,
        epoch: started.into_std(),
        pool: prepared.pool.clone(),
        tokens: prepared.creds.clone(),
        channel_ids: prepared.fixtures.channel_ids.clone(),
        ramp: Semaphore::new(plan.run.ramp_concurrency as usize),
        counters: counters.clone(),
        latency: Mutex::default(),
        cut_us: AtomicU64::new(u64::MAX),
        voice_sessions: (0..plan.clients).map(|_| AtomicU32::new(0)).collect(),
        heard: (0..plan.clients).map(|_| AtomicU32::new(0)).collect(),
        in_voice: (0..plan.channels).map(|_| AtomicU32::new(0)).collect(),
        sockets: Mutex::default(),
        readers: Mutex::default(),
        close: close_rx,
        events: AtomicU64::new(0),
        uplink_dropped: AtomicU64::new(0),
        downlink_dropped: AtomicU64::new(0),
        send_errors: AtomicU64::new(0),
        churn_cycles: AtomicU64::new(0),
        churn_failures: AtomicU64::new(0),
        voice_lost: AtomicU64::new(0),
        voice_back: AtomicU64::new(0),
        longest_outage_us: AtomicU64::new(0),
        wrong_samples: Mutex::new(Vec::new()),
    });
    let (printer_stop, printer_rx) = watch::channel(false);
    let printer = (!plan.run.quiet).then(|| {
        tokio::spawn(print_progress(
            counters.clone(),
            u64::from(plan.clients),
            started,
            printer_rx,
        ))
    });

    // 1. Setup.
    let (members, setup_timed_out, mut interrupted) =
        set_up_all(&ctx, setup_deadline, &mut interrupt).await;
    let setup_end = Instant::now();
    if setup_timed_out {
        warnings.push(format!(
            "--timeout ({} s) cut the setup short: {} of {} clients got into voice",
            plan.setup_timeout.as_secs(),
            members.len(),
            plan.clients
        ));
    }

    // 2. Warm-up.
    let (go_tx, go_rx) = watch::channel(None);
    let (stop_send_tx, stop_send_rx) = watch::channel(false);
    let (stop_listen_tx, stop_listen_rx) = watch::channel(false);
    let signals = Signals {
        go: go_rx,
        stop_sending: stop_send_rx,
        stop_listening: stop_listen_rx,
    };
    counters.phase.set(Phase::Warmup);
    let mut running = JoinSet::new();
    for member in members {
        running.spawn(run_member(member, ctx.clone(), signals.clone()));
    }
    let warmup_started = Instant::now();
    let (paths, mut paths_heard) = warmup_paths(&ctx);
    if !interrupted {
        let until = warmup_started + WARMUP_TIMEOUT;
        while paths_heard < paths && Instant::now() < until {
            tokio::select! {
                () = sleep(WARMUP_POLL) => {}
                () = task::interrupted(&mut interrupt) => {
                    interrupted = true;
                    break;
                }
            }
            paths_heard = warmup_paths(&ctx).1;
        }
    }
    let warmup = WarmupReport {
        paths,
        paths_heard,
        seconds: warmup_started.elapsed().as_secs_f64(),
    };
    if paths_heard < paths && !interrupted {
        warnings.push(format!(
            "warm-up: {} of {paths} speaker-to-listener paths carried no packet within {} s; \
             measuring anyway, so their packets count as lost",
            paths - paths_heard,
            WARMUP_TIMEOUT.as_secs()
        ));
    }

    // 3. Send. The CPU window and the data plane's counting window open
    // here, so setup is not in them. The scrape comes first: it may take
    // up to its timeout, which must not shorten the send phase. The last
    // warm-up packets may still fall inside the window.
    let scraped_before = if interrupted {
        None
    } else {
        scrape_dataplane(plan, "before the send phase", &mut warnings).await
    };
    let probe = UsageProbe::start(plan.run.server_pid, &mut warnings);
    let send_start = Instant::now();
    let mut send_end = send_start;
    let mut recorder = None;
    if !interrupted {
        counters.phase.set(Phase::Send);
        if let Some(every) = plan.timeline {
            // Before go: the first delivery must find its interval's end.
            let cut = ctx.micros((send_start + every).into_std());
            lock(&ctx.latency).set_cut(cut);
            ctx.cut_us.store(cut, Ordering::Relaxed);
            recorder = Some(tokio::spawn(record_timeline(
                ctx.clone(),
                started,
                send_start,
                every,
                // Set on an interrupt, or once the drain is over.
                signals.stop_sending.clone(),
            )));
        }
        let _ = go_tx.send(Some(send_start.into_std()));
        tokio::select! {
            () = sleep_until(send_start + plan.duration) => {}
            () = task::interrupted(&mut interrupt) => {
                interrupted = true;
                let _ = stop_send_tx.send(true);
            }
        }
        send_end = Instant::now();
    }

    // 4. Drain: the speakers flush what the simulated uplink holds, the
    // downlink and the data plane deliver the rest. Also after an interrupt
    // in the send phase (it is short), so that what was sent is judged.
    counters.phase.set(Phase::Drain);
    let sent_anything = send_end > send_start;
    if sent_anything {
        let drain = plan.link(Direction::Uplink).max_delay()
            + plan.link(Direction::Downlink).max_delay()
            + plan.drain_grace;
        if interrupted {
            sleep(drain).await;
        } else {
            tokio::select! {
                () = sleep(drain) => {}
                () = task::interrupted(&mut interrupt) => interrupted = true,
            }
        }
    }
    // Everything sent has settled (delivered, or given up by the data
    // plane), and no client has left yet, whose leaving the data plane
    // would count as drops of its own.
    let dataplane = match scraped_before {
        Some(before) => scrape_dataplane(plan, "after the drain", &mut warnings)
            .await
            .and_then(|after| {
                let delta = after.since(&before);
                if delta.is_none() {
                    warnings.push(
                        "data plane metrics: a counter went down during the run (did the \
                         data plane restart?); its counts are left out"
                            .into(),
                    );
                }
                delta
            }),
        None => None,
    };
    let _ = stop_send_tx.send(true);
    let _ = stop_listen_tx.send(true);

    // 5. Collect and close.
    let grace = Instant::now() + COLLECT_GRACE;
    let mut results: Vec<MemberResult> = Vec::with_capacity(running.len());
    let mut unfinished = 0;
    while !running.is_empty() {
        match timeout_at(grace, running.join_next()).await {
            Ok(Some(Ok(r))) => results.push(r),
            Ok(Some(Err(e))) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Ok(Some(Err(_))) => unfinished += 1,
            Ok(None) => break,
            Err(_) => {
                unfinished += running.len();
                running.abort_all();
                break;
            }
        }
    }
    if unfinished > 0 {
        warnings.push(format!(
            "{unfinished} clients did not stop in time; what they received is lost"
        ));
    }
    let usage = probe.finish(&mut warnings);
    // The timeline's last row: from the last interval's start to now, the
    // drain included, with every listener's last delays handed in.
    let mut timeline = Vec::new();
    if let Some(handle) = recorder {
        let mut recorded = match handle.await {
            Ok(recorded) => recorded,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Recorded::default(),
        };
        let every = plan.timeline.unwrap_or(plan.duration);
        let from = every * recorded.rows.len() as u32;
        let latency = lock(&ctx.latency).close_last();
        let row = TimelineRow {
            from_s: from.as_secs_f64(),
            t_s: send_start.elapsed().as_secs_f64(),
            counts: Default::default(),
            latency_us: latency,
            processes: scrape_processes(plan, &mut recorded.failures).await,
        };
        print_row(plan, started, &row, &ctx.counters, &mut recorded.live);
        recorded.rows.push(row);
        warnings.extend(recorded.failures.warnings());
        timeline = recorded.rows;
    }
    counters.phase.set(Phase::Close);
    let voices: Vec<_> = results.iter_mut().filter_map(|r| r.voice.take()).collect();
    let _ =
        tokio::time::timeout(CLOSE_GRACE, join_all(voices.into_iter().map(|v| v.close()))).await;
    counters.voice_up.store(0, Ordering::Relaxed);
    let _ = close_tx.send(true);
    let readers = std::mem::take(&mut *lock(&ctx.readers));
    let grace = Instant::now() + CLOSE_GRACE;
    for mut reader in readers {
        if timeout_at(grace, &mut reader).await.is_err() {
            reader.abort();
        }
    }
    warnings.extend(prepared.clean_up().await);
    let _ = printer_stop.send(true);
    if let Some(p) = printer {
        let _ = p.await;
    }

    let facts = Facts {
        run_id: prepared.run_id,
        outcome: if interrupted {
            Outcome::Interrupted
        } else {
            Outcome::Completed
        },
        elapsed: started.elapsed(),
        setup: setup_end - started,
        sending: send_end - send_start,
        setup_timed_out,
        warmup,
        usage,
        dataplane,
        timeline,
        send_start_us: ctx.micros(send_start.into_std()),
        warnings,
    };
    Ok(build_report(plan, &ctx, results, facts))
}

/// The data plane's counters now, with `--metrics`; `None` without, or with
/// a warning when the scrape failed (the run goes on: the clients' view is
/// the measurement, the data plane's an addition).
async fn scrape_dataplane(
    plan: &VoicePlan,
    when: &str,
    warnings: &mut Vec<String>,
) -> Option<DataplaneCounters> {
    let given = plan.metrics.as_deref()?;
    let scraped = match metrics_authority(given) {
        Ok(authority) => scrape(&authority).await,
        Err(e) => Err(e),
    };
    scraped
        .map_err(|e| {
            warnings.push(format!(
                "data plane metrics: scraping {given} {when} failed: {}",
                error_chain(&e)
            ));
        })
        .ok()
}

/// Sets up every client; returns those in voice, whether the deadline cut
/// the setup short, and whether an interrupt did.
async fn set_up_all(
    ctx: &Arc<Ctx>,
    deadline: Instant,
    interrupt: &mut watch::Receiver<bool>,
) -> (Vec<Member>, bool, bool) {
    let mut setups = JoinSet::new();
    for i in 0..ctx.plan.clients {
        setups.spawn(set_up(i, ctx.clone()));
    }
    let mut members = Vec::with_capacity(ctx.plan.clients as usize);
    let (mut timed_out, mut interrupted, mut cut) = (false, false, 0);
    loop {
        tokio::select! {
            next = setups.join_next() => match next {
                Some(Ok(Some(m))) => members.push(m),
                Some(Ok(None)) => {}
                Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Some(Err(_)) => cut += 1,
                None => break,
            },
            () = sleep_until(deadline), if !timed_out && !interrupted => {
                timed_out = true;
                ctx.ramp.close();
                setups.abort_all();
            }
            () = task::interrupted(interrupt), if !timed_out && !interrupted => {
                interrupted = true;
                ctx.ramp.close();
                setups.abort_all();
            }
        }
    }
    if timed_out {
        // Clients that failed a step were counted there; these were cut.
        for _ in 0..cut {
            ctx.fail(
                Step::Setup,
                &ErrorKind::named("timed_out"),
                "not in voice when --timeout expired",
            );
        }
    }
    (members, timed_out, interrupted)
}

/// What the timeline recorder hands back.
#[derive(Debug, Default)]
struct Recorded {
    /// The rows of the intervals that ended within the send phase.
    rows: Vec<TimelineRow>,
    /// Scrapes that failed.
    failures: ScrapeFailures,
    /// The progress counters at the last row, for the live loss estimate.
    live: (u64, u64),
}

/// Failed scrapes by address: how many, and the first error.
#[derive(Debug, Default)]
struct ScrapeFailures(std::collections::BTreeMap<String, (u64, String)>);

impl ScrapeFailures {
    fn note(&mut self, addr: &str, error: String) {
        self.0.entry(addr.to_owned()).or_insert((0, error)).0 += 1;
    }

    /// One warning per address.
    fn warnings(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(addr, (n, first))| {
                format!(
                    "timeline: scraping {addr} failed for {n} rows (first: {first}); their \
                     memory and descriptors are null"
                )
            })
            .collect()
    }
}

/// Takes a timeline row every `every` of the send phase, [`ROW_GRACE`]
/// after each interval's end, until the phase ends or `stop`. The last
/// row, which runs to the end of the drain, is the run's to take.
async fn record_timeline(
    ctx: Arc<Ctx>,
    started: Instant,
    send_start: Instant,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> Recorded {
    let plan = &ctx.plan;
    let send_end = send_start + plan.duration;
    let mut recorded = Recorded::default();
    for k in 1u32.. {
        let end = send_start + every * k;
        if end >= send_end {
            break;
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            () = sleep_until(end + ROW_GRACE) => {}
        }
        let next_cut = ctx.micros((end + every).into_std());
        let latency = {
            let mut book = lock(&ctx.latency);
            let closed = book.close_interval(next_cut);
            ctx.cut_us.store(book.cut_us(), Ordering::Relaxed);
            closed
        };
        let row = TimelineRow {
            from_s: (every * (k - 1)).as_secs_f64(),
            t_s: (every * k).as_secs_f64(),
            counts: Default::default(),
            latency_us: latency,
            processes: scrape_processes(plan, &mut recorded.failures).await,
        };
        print_row(plan, started, &row, &ctx.counters, &mut recorded.live);
        recorded.rows.push(row);
    }
    recorded
}

/// Prints `row` as a progress-style line (unless `--quiet`), with the
/// progress counters' loss since the last row as a live estimate.
fn print_row(
    plan: &VoicePlan,
    started: Instant,
    row: &TimelineRow,
    counters: &VoiceCounters,
    live: &mut (u64, u64),
) {
    let owed = counters.owed.load(Ordering::Relaxed);
    let delivered = counters.delivered.load(Ordering::Relaxed);
    let (d_owed, d_delivered) = (
        owed.saturating_sub(live.0),
        delivered.saturating_sub(live.1),
    );
    *live = (owed, delivered);
    if plan.run.quiet {
        return;
    }
    let loss = (d_owed > 0).then(|| (1.0 - d_delivered as f64 / d_owed as f64).max(0.0));
    eprintln!(
        "{} {}",
        line_start(started.elapsed(), counters.phase.get()),
        row.line(loss)
    );
}

/// Every process's gauges now (`--metrics`, then `--control-metrics`),
/// both scraped at once; a failed scrape leaves its sample's fields null.
async fn scrape_processes(plan: &VoicePlan, failures: &mut ScrapeFailures) -> Vec<ProcessSample> {
    let targets: Vec<(Plane, &str)> = [
        (Plane::Data, plan.metrics.as_deref()),
        (Plane::Control, plan.control_metrics.as_deref()),
    ]
    .into_iter()
    .filter_map(|(plane, addr)| Some((plane, addr?)))
    .collect();
    let scraped = join_all(targets.iter().map(|&(_, given)| async move {
        match metrics_authority(given) {
            Ok(authority) => scrape_process(&authority).await,
            Err(e) => Err(e),
        }
    }))
    .await;
    targets
        .into_iter()
        .zip(scraped)
        .map(|((plane, given), result)| {
            let gauges = result
                .map_err(|e| failures.note(given, error_chain(&e)))
                .ok();
            ProcessSample::new(plane, given, gauges)
        })
        .collect()
}

/// Speaker-to-listener paths among the clients in voice, and how many of
/// them carried a warm-up packet.
fn warmup_paths(ctx: &Ctx) -> (u64, u64) {
    let layout: &Layout = &ctx.layout;
    let (mut paths, mut heard) = (0u64, 0u64);
    for c in 0..layout.channels {
        let in_voice = u64::from(ctx.in_voice[c as usize].load(Ordering::Acquire));
        for s in layout.speakers_of(c) {
            if ctx.voice_sessions[s as usize].load(Ordering::Acquire) == 0 {
                continue; // never got into voice: sends nothing
            }
            let listeners = in_voice.saturating_sub(1);
            paths += listeners;
            heard += u64::from(ctx.heard[s as usize].load(Ordering::Acquire)).min(listeners);
        }
    }
    (paths, heard)
}

/// What the report needs besides the clients' results.
struct Facts {
    run_id: String,
    outcome: Outcome,
    elapsed: Duration,
    setup: Duration,
    sending: Duration,
    setup_timed_out: bool,
    warmup: WarmupReport,
    usage: crate::metrics::process::Usage,
    /// The data plane's counts over the send phase and the drain.
    dataplane: Option<DataplaneCounters>,
    /// `--timeline` rows, their counts still to fill in.
    timeline: Vec<TimelineRow>,
    /// The send phase's start, µs since the epoch.
    send_start_us: u64,
    warnings: Vec<String>,
}

/// Puts the results together.
fn build_report(
    plan: &VoicePlan,
    ctx: &Ctx,
    results: Vec<MemberResult>,
    facts: Facts,
) -> VoiceReport {
    let layout = ctx.layout;
    let mut logs: Vec<Option<SendLog>> = vec![None; plan.clients as usize];
    let mut tallies = Vec::with_capacity(results.len());
    for r in results {
        if let Some(slot) = logs.get_mut(r.index as usize) {
            *slot = r.log;
        }
        tallies.push(r.tally);
    }
    let t = totals(&layout, &logs, &tallies);
    let mut warnings = facts.warnings;
    warnings.append(&mut lock(&ctx.wrong_samples));
    let mut timeline = facts.timeline;
    let soak = plan.timeline.map(|every| {
        let every_us = duration_micros(every);
        let starts: Vec<u64> = (0..timeline.len() as u64)
            .map(|k| facts.send_start_us + k * every_us)
            .collect();
        match by_interval(&layout, &logs, &tallies, &starts) {
            Some(counts) => {
                for (row, c) in timeline.iter_mut().zip(counts) {
                    row.counts = c;
                }
            }
            None => warnings.push(
                "timeline: a speaker kept no send times, so the rows' packet counts are 0".into(),
            ),
        }
        judge_soak_with(
            &timeline,
            plan.warm_up_rows(),
            plan.effective_warm_up(),
            u64::try_from(plan.soak_p99_slack.as_micros()).unwrap_or(u64::MAX),
        )
    });
    let c = &ctx.counters;
    let received = c.received.load(Ordering::Relaxed);
    // From `/proc` with `--server-pid`; else from the data plane's own
    // `process_cpu_seconds_total` with `--metrics`.
    let cpu_seconds = facts
        .usage
        .server
        .as_ref()
        .and_then(|s| s.cpu)
        .map(|d| d.as_secs_f64())
        .or_else(|| facts.dataplane.as_ref().map(|d| d.cpu_us as f64 / 1e6));
    let voice_connected = ctx
        .voice_sessions
        .iter()
        .filter(|s| s.load(Ordering::Acquire) != 0)
        .count() as u64;
    let latency = LatencyPercentiles::of(lock(&ctx.latency).overall());
    VoiceReport {
        scenario: "voice",
        preset: plan.preset.map(<&str>::from),
        run_id: facts.run_id,
        addr: plan.run.server.addr.clone(),
        outcome: facts.outcome,
        transport: plan.transport.into(),
        seed: plan.seed,
        clients: u64::from(plan.clients),
        channels: u64::from(plan.channels),
        speakers_per_channel: u64::from(plan.speakers),
        pps: u64::from(plan.pps),
        payload_bytes: plan.payload_bytes as u64,
        duration_s: plan.duration.as_secs_f64(),
        talk_spurt_ms: plan.talk.map(|t| t.spurt.as_millis() as u64),
        silence_ms: plan.talk.map(|t| t.silence.as_millis() as u64),
        playout_ms: plan.playout.as_millis() as u64,
        sockets: u64::from(plan.sockets),
        impairment: ImpairmentReport {
            uplink: plan.link(Direction::Uplink),
            downlink: plan.link(Direction::Downlink),
            uplink_dropped: ctx.uplink_dropped.load(Ordering::Relaxed),
            downlink_dropped: ctx.downlink_dropped.load(Ordering::Relaxed),
        },
        churn: plan.churn_every.map(|every| ChurnReport {
            every_ms: every.as_millis() as u64,
            churners: (0..plan.clients).filter(|&i| layout.churns(i)).count() as u64,
            cycles: ctx.churn_cycles.load(Ordering::Relaxed),
            failed: ctx.churn_failures.load(Ordering::Relaxed),
        }),
        sessions: c.sessions_started.load(Ordering::Relaxed),
        voice_connected,
        setup_failures: u64::from(plan.clients).saturating_sub(voice_connected),
        setup_timed_out: facts.setup_timed_out,
        warmup: facts.warmup,
        elapsed_s: facts.elapsed.as_secs_f64(),
        setup_s: facts.setup.as_secs_f64(),
        send_phase_s: facts.sending.as_secs_f64(),
        delivery: t,
        loss_ratio: t.loss_ratio(),
        late_ratio: t.late_ratio(),
        playout_loss_ratio: t.playout_loss_ratio(),
        received_datagrams: received,
        send_errors: ctx.send_errors.load(Ordering::Relaxed),
        outages: Outages {
            lost: ctx.voice_lost.load(Ordering::Relaxed),
            back: ctx.voice_back.load(Ordering::Relaxed),
            longest_ms: ctx.longest_outage_us.load(Ordering::Relaxed) as f64 / 1000.0,
        },
        sent_per_sec: per_second(t.sent, facts.sending),
        delivered_per_sec: per_second(t.delivered, facts.sending),
        latency_us: latency,
        cpu_seconds,
        cpu_us_per_forwarded_packet: micros_per(cpu_seconds, received),
        server: facts.usage.server.as_ref().map(|s| VoiceServerStats {
            pid: s.pid,
            peak_rss_kb: s.peak_rss_kb,
        }),
        loadtest_cpu_s: facts.usage.own_cpu.map(|d| d.as_secs_f64()),
        metrics: plan.metrics.clone(),
        server_received: facts.dataplane.as_ref().map(|d| d.received),
        server_forwarded: facts.dataplane.as_ref().map(|d| d.forwarded),
        server_drops: facts.dataplane.as_ref().map(ServerDrops::of),
        server_lost: facts.dataplane.as_ref().map(|d| d.lost),
        server_reordered: facts.dataplane.as_ref().map(|d| d.reordered),
        server_forward_delay_us: facts
            .dataplane
            .as_ref()
            .and_then(|d| d.forward_delay_bounds()),
        events_received: ctx.events.load(Ordering::Relaxed),
        control_metrics: plan.control_metrics.clone(),
        timeline_s: plan.timeline.map(|d| d.as_secs()),
        timeline,
        soak,
        failures: lock(&ctx.counters.failures.tally).clone(),
        warnings,
    }
}
