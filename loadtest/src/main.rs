//! `openspeak-loadtest`: flags in, a scenario of the library run, the report
//! out. Exit status: 0 the run completed, 1 it could not run, 2 it timed
//! out (the report covers what happened until then), 3 `--strict` and a
//! check or call failed.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use openspeak_loadtest::{Outcome, SessionsArgs, SessionsError, run_sessions};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("openspeak-loadtest: error: {e:#}");
            let timed_out = e.downcast_ref::<SessionsError>().is_some_and(SessionsError::is_timeout);
            ExitCode::from(if timed_out { 2 } else { 1 })
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    match cli.scenario {
        Scenario::Sessions(args) => {
            let report = runtime.block_on(run_sessions(&args))?;
            print!("{}", report.table());
            if let Some(path) = &args.json {
                report.write_json(path)?;
            }
            if report.outcome == Outcome::TimedOut {
                eprintln!(
                    "openspeak-loadtest: timed out after {} s; the report covers what happened until then",
                    args.timeout
                );
                return Ok(ExitCode::from(2));
            }
            if args.strict && !report.clean() {
                eprintln!("openspeak-loadtest: a check or a call failed (--strict)");
                return Ok(ExitCode::from(3));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
