//! `floor` on real loopback sockets: the paced fan-out sends what it was
//! asked to, every copy arrives, and the sender's CPU is measured;
//! `--saturate` sends as fast as it can.

use std::time::Duration;

use openspeak_loadtest::{FloorArgs, Readers, run_floor};

fn args(listeners: u32, rate: u32, saturate: bool) -> FloorArgs {
    FloorArgs {
        listeners,
        rate,
        packet_bytes: 122,
        duration: 1,
        saturate,
        readers: Readers::Waiting,
        json: None,
    }
}

#[test]
fn a_paced_fan_out_sends_each_packet_to_every_listener() {
    for readers in [Readers::Waiting, Readers::Polling] {
        paced_fan_out_reaches_every_listener(readers);
    }
}

fn paced_fan_out_reaches_every_listener(readers: Readers) {
    let report = run_floor(&FloorArgs {
        readers,
        ..args(4, 200, false)
    })
    .unwrap();
    assert_eq!(report.readers, readers);
    let table = report.table();
    // 200 speaker packets a second for 1 s, the first at once: 200 or 201
    // batches of 4 (fewer if the machine stalled the sender; never more).
    assert!((4 * 190..=4 * 201).contains(&report.sent), "{table}");
    assert_eq!(report.sent % 4, 0, "whole fan-outs: {table}");
    assert_eq!(report.send_errors, 0, "{table}");
    assert_eq!(
        report.received, report.sent,
        "loopback loses nothing at this rate: {table}"
    );
    assert!(report.seconds >= 1.0 && report.seconds < 1.5, "{table}");
    if cfg!(target_os = "linux") {
        assert!(report.cpu_seconds > 0.0, "{table}");
        assert!(
            report.cpu_us_per_packet > 0.0 && report.cpu_us_per_packet < 1_000.0,
            "{table}"
        );
        // The readers took in every packet, which costs them something.
        let reader = report
            .reader_cpu_us_per_packet
            .expect("Linux tells a thread's CPU");
        assert!(reader > 0.0 && reader < 1_000.0, "{table}");
    }
    assert_eq!(report.rate, 200);
}

#[test]
fn saturating_sends_far_more_than_the_paced_rate() {
    let report = run_floor(&args(8, 1, true)).unwrap();
    let table = report.table();
    assert_eq!(report.rate, 0, "no pacing: {table}");
    // Even a slow, shared machine sends thousands of loopback packets a
    // second from one thread; paced at 1/s it would send 16.
    assert!(report.sent > 1_000, "{table}");
    assert!(report.received <= report.sent, "{table}");
    assert!(report.packets_per_second > 1_000.0, "{table}");
    assert!(Duration::from_secs_f64(report.seconds) >= Duration::from_secs(1));
}
