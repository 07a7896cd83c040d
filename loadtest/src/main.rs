//! `openspeak-loadtest`: flags in, a scenario (or `talk`, `record`) of the
//! library run, the report out. Exit status: 0 the run completed, 1 it
//! could not run (for `record` also: the connection or the session was
//! lost; the file holds what came until then), 2 bad flags (clap's, or
//! flags that contradict each other), 3 it timed out (the report covers
//! what happened until then), 4 `--strict` and a check or a call failed
//! (for `voice --timeline`, also a soak criterion),
//! 130 interrupted (Ctrl-C: the run stops, reports and cleans up; a second
//! Ctrl-C quits at once).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use openspeak_loadtest::{
    FloorArgs, JsonReport, Outcome, RecordArgs, RecordStarted, RecordStop, RunError, SessionsArgs,
    TalkArgs, TalkStarted, VoiceArgs, error_chain, run_floor, run_record, run_sessions, run_talk,
    run_voice,
};
use tokio::runtime::Runtime;
use tokio::sync::watch;

/// Exit status for flags that contradict each other (clap uses it too).
const BAD_FLAGS: u8 = 2;
/// Exit status when `--timeout` expired.
const TIMED_OUT: u8 = 3;
/// Exit status when `--strict` and a check or a call failed.
const CHECK_FAILED: u8 = 4;
/// Exit status on Ctrl-C (128 + SIGINT, as shells report it).
const INTERRUPTED: u8 = 130;

#[derive(Parser)]
#[command(name = "openspeak-loadtest", version, about)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// N clients connect, join channels, change presence and leave, while
    /// every client watches the server's events.
    Sessions(SessionsArgs),
    /// Speakers send voice through the data plane; every listener measures
    /// delivery, loss, order and one-way delay, optionally through a
    /// simulated bad network.
    // Boxed: its many flags would make every value of the enum large.
    Voice(Box<VoiceArgs>),
    /// One client sends an Ogg Opus file's packets into a channel at their
    /// real pace (real audio, end to end; see `record`).
    Talk(TalkArgs),
    /// One client writes one speaker's voice in a channel into an Ogg Opus
    /// file, until the speaker is quiet for --idle-ms.
    Record(RecordArgs),
    /// No server: what the kernel alone costs per packet for the same
    /// fan-out on loopback, the floor to quote data-plane figures against.
    Floor(FloorArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("openspeak-loadtest: error: {}", error_chain(e.as_ref()));
            let timed_out = e
                .downcast_ref::<RunError>()
                .is_some_and(RunError::is_timeout);
            ExitCode::from(if timed_out { TIMED_OUT } else { 1 })
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    match cli.scenario {
        // No server, no runtime: two threads and the kernel.
        Scenario::Floor(args) => {
            let report = run_floor(&args).context("the floor measurement failed")?;
            show(&report, report.table(), args.json.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Scenario::Sessions(args) => {
            let report = until_ctrl_c(&runtime, |interrupt| run_sessions(&args, interrupt))?;
            show(&report, report.table(), args.run.json.as_deref())?;
            if report.outcome == Outcome::TimedOut {
                eprintln!(
                    "openspeak-loadtest: timed out after {} s; the report covers what happened until then",
                    args.timeout
                );
                return Ok(ExitCode::from(TIMED_OUT));
            }
            Ok(exit_status(
                report.outcome,
                args.run.strict,
                &[(!report.clean(), "a check or a call failed")],
            ))
        }
        Scenario::Voice(args) => {
            let plan = match args.plan() {
                Ok(plan) => plan,
                Err(e) => {
                    eprintln!("openspeak-loadtest: error: {e}");
                    return Ok(ExitCode::from(BAD_FLAGS));
                }
            };
            let report = until_ctrl_c(&runtime, |interrupt| run_voice(&plan, interrupt))?;
            show(&report, report.table(), plan.run.json.as_deref())?;
            Ok(exit_status(
                report.outcome,
                plan.run.strict,
                &[
                    (
                        !report.clean(),
                        "a routing check, the setup or a call failed",
                    ),
                    (!report.soak_passed(), "the soak criteria were not met"),
                ],
            ))
        }
        Scenario::Talk(args) => {
            let report = until_ctrl_c(&runtime, |interrupt| {
                run_talk(&args, announce_talk, interrupt)
            })?;
            println!("{}", report.summary());
            if report.interrupted {
                return Ok(ExitCode::from(INTERRUPTED));
            }
            Ok(ExitCode::SUCCESS)
        }
        Scenario::Record(args) => {
            let report = until_ctrl_c(&runtime, |interrupt| {
                run_record(&args, |s| announce_record(s, &args.out), interrupt)
            })?;
            println!("{}", report.summary());
            match report.stop {
                RecordStop::Idle | RecordStop::MaxDuration => Ok(ExitCode::SUCCESS),
                RecordStop::Interrupted => Ok(ExitCode::from(INTERRUPTED)),
                RecordStop::VoiceLost(_) | RecordStop::SessionEnded(_) => Ok(ExitCode::FAILURE),
            }
        }
    }
}

/// How a scenario (`sessions`, `voice`) exits once it has reported: 130
/// when interrupted; with `--strict`, 4 when any check of `failed` (did
/// it fail, and what to say on stderr) failed, naming the first; else 0.
fn exit_status(outcome: Outcome, strict: bool, failed: &[(bool, &str)]) -> ExitCode {
    if outcome == Outcome::Interrupted {
        return ExitCode::from(INTERRUPTED);
    }
    if strict && let Some((_, what)) = failed.iter().find(|(failed, _)| *failed) {
        eprintln!("openspeak-loadtest: {what} (--strict)");
        return ExitCode::from(CHECK_FAILED);
    }
    ExitCode::SUCCESS
}

/// Prints a report's `table` on stdout and, with `--json FILE`, writes the
/// report there too: what `floor`, `sessions` and `voice` all end with.
fn show(report: &impl JsonReport, table: String, json: Option<&Path>) -> anyhow::Result<()> {
    print!("{table}");
    if let Some(path) = json {
        report.write_json(path)?;
    }
    Ok(())
}

/// `talk`'s first line, once in voice: where it talks and what it sends.
fn announce_talk(s: &TalkStarted) {
    eprintln!(
        "openspeak-loadtest: talking in {}: {} packets, {:.2} s",
        seat(&s.channel_name, &s.channel_id, s.session_id),
        s.packets,
        s.audio.as_secs_f64()
    );
}

/// `record`'s first line, once in voice. People and scripts wait for it:
/// from then on, whatever is said in the channel is recorded into `out`.
fn announce_record(s: &RecordStarted, out: &Path) {
    eprintln!(
        "openspeak-loadtest: recording {} into {}; waiting for a speaker",
        seat(&s.channel_name, &s.channel_id, s.session_id),
        out.display()
    );
}

/// Where `talk` or `record` sits, as their first line names it: channel
/// `NAME` (ID) as session N.
fn seat(channel_name: &str, channel_id: &str, session_id: u32) -> String {
    format!("channel `{channel_name}` ({channel_id}) as session {session_id}")
}

/// Runs a subcommand's `body` on `runtime`, handing it the flag that
/// Ctrl-C sets ([`on_ctrl_c`]): every subcommand that talks to a server
/// stops, reports and cleans up on it the same way.
fn until_ctrl_c<F: Future>(
    runtime: &Runtime,
    body: impl FnOnce(watch::Receiver<bool>) -> F,
) -> F::Output {
    runtime.block_on(async { body(on_ctrl_c()).await })
}

/// A flag that turns true on the first Ctrl-C; the second one exits at once.
fn on_ctrl_c() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return; // No signal handling here: Ctrl-C keeps its default.
        }
        eprintln!(
            "openspeak-loadtest: interrupted; closing sessions and cleaning up (Ctrl-C again to quit now)"
        );
        let _ = tx.send(true);
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(i32::from(INTERRUPTED));
        }
    });
    rx
}
