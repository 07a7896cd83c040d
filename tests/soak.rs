//! The soak, two minutes of it (`RELIABILITY.md` records the 30-minute
//! run; half of this one is warm-up, as a debug build's allocations settle
//! later than a release build's): the real control plane and data plane as
//! processes, and `openspeak-loadtest voice` against them with listeners
//! leaving and rejoining every ~10 s, its timeline scraping both planes'
//! `/metrics` every 30 s. The load generator's soak verdict (`--strict`)
//! is what must hold: each plane's resident memory grows under 5% after
//! the warm-up, no file descriptor is left open, and the last interval's
//! p99 stays within the bound of the first (with a slack for this
//! measurement's noise, below).
//!
//! Intervals of 30 s, not 10: an interval's p99 is its 1% worst delays,
//! and at this load (some 4,000 a second) one stall of the host of about
//! 100 ms fills that 1% of a 10 s interval by itself. With 10 s rows, 3
//! of 7 runs here failed so, on one interval's p99 alone (6.2 to 41.7,
//! 5.4 to 20.8 and 12.3 to 27.5 ms) while memory and descriptors stayed
//! flat; the 30-minute soak compares whole minutes.

mod support;

use std::time::Duration;

use support::{Control, DataplaneProcess, binary};
use tokio::process::Command;

/// Time for the run: setup, 120 s of voice and the drain.
const RUN_LIMIT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_with_churn_leaves_memory_descriptors_and_latency_flat() {
    let control = Control::start().await;
    let dataplane = DataplaneProcess::start(&control).await;
    let report = control.home.path().join("soak.json");
    let mut run = Command::new(binary("openspeak-loadtest"));
    run.args(["voice", "--addr", &control.url, "--token", &control.token])
        .args(["--clients", "100", "--channels", "20", "--speakers", "1"])
        // Every ~10 s, nearer the 30-minute run's ~20 s than the preset's
        // 3 s.
        .args(["--churn-every-ms", "10000", "--duration", "120"])
        .args(["--timeline", "30", "--warm-up", "60"])
        // The latency bound over the noise of this measurement: three debug
        // processes and their load generator on one 2-core host. Here the
        // p99 of a healthy run's 30 s intervals ranged from 4.8 to 25 ms
        // (three runs, no change in the server), so the release builds'
        // 5 ms of slack failed one run in three on noise alone; 30 ms still
        // fails a latency that grows (a queue, a leak) by more.
        .args(["--soak-p99-slack-ms", "30"])
        .args(["--metrics", &dataplane.metrics])
        .args(["--control-metrics", &control.metrics])
        .args(["--strict", "--quiet", "--json"])
        .arg(&report)
        .kill_on_drop(true);
    let output = tokio::time::timeout(RUN_LIMIT, run.output())
        .await
        .expect("the soak ends in time")
        .expect("the load generator runs");
    let text = std::fs::read_to_string(&report).unwrap_or_else(|e| {
        panic!(
            "no report ({e}); stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let json: serde_json::Value = serde_json::from_str(&text).expect("the report is JSON");
    let soak = &json["soak"];
    eprintln!("soak verdict: {soak:#}");
    assert!(
        output.status.success() && soak["passed"] == true,
        "the soak failed ({}): {}\nstderr:\n{}",
        output.status,
        soak["failures"],
        String::from_utf8_lossy(&output.stderr)
    );
    let rows = json["timeline"].as_array().expect("timeline rows");
    assert!(rows.len() >= 4, "a row every 30 s: {}", rows.len());
    for row in rows {
        for process in row["processes"].as_array().expect("scraped processes") {
            assert!(process["rss_bytes"].as_u64().is_some(), "{row}");
            assert!(process["open_fds"].as_u64().is_some(), "{row}");
        }
    }
}
