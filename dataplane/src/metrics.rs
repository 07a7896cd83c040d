//! The data plane's HTTP face for operators, on `dataplane.metrics_listen`
//! (served by `openspeak_shared::ops`): `GET /metrics` in the Prometheus
//! text format, `GET /healthz` (alive: the voice endpoint runs) and
//! `GET /readyz` (ready for new calls: attached to the control plane with
//! its membership loaded).
//!
//! Nothing here counts. The endpoint and the router already keep every
//! counter ([`EndpointStats`], [`RouterStats`]); a scrape takes a
//! [`Snapshot`] of them (the endpoint's atomics directly, the router's
//! totals by asking its task, which owns them and is never locked) and
//! renders it with `prometheus-client` as constant metrics. So the voice
//! path pays nothing for metrics, and one scrape sees one router state.
//! The mapping from snapshot to samples is pure, and tested as such.
//!
//! Every name of its own starts with `openspeak_dataplane_`; before them
//! come the `process_*` metrics and `openspeak_build_info` that every
//! OpenSpeak process reports. Every datagram the data
//! plane drops is counted once in `datagrams_dropped_total`, under one
//! `reason`:
//!
//! | reason | where | why |
//! |---|---|---|
//! | `malformed` | router | did not parse as a voice datagram |
//! | `unknown_session` | router | its session is not a member (any more) |
//! | `oversized` | router | its payload is over `voice.max_payload_bytes` |
//! | `rate_limited` | router | its session is over `voice.max_packets_per_second` or `voice.max_bytes_per_second` |
//! | `muted` | router | its speaker is muted |
//! | `no_channel` | router | its speaker is in no channel |
//! | `duplicate` | router | a copy of a packet already released or held |
//! | `late` | router | its slot had already been given up |
//! | `stale` | router | older than `voice.max_packet_age_ms` |
//! | `listener_lag` | router, endpoint | a slow listener's oldest, over `voice.max_broadcast_lag_ms` (in the router's queue, or waiting for a congested QUIC connection) |
//! | `discarded` | router | queued for a listener that deafened, moved or left |
//! | `no_connection` | endpoint | for a member with no live connection |
//! | `send_buffer_full` | endpoint | the listener's QUIC datagram buffer was full |
//! | `send_error` | endpoint | QUIC refused it (connection closing) |
//!
//! Loss on the way in is not a drop: `datagrams_lost_total` counts the
//! sequence numbers given up after waiting for them.
//!
//! Packets on the plain-UDP port that never become a voice datagram are
//! counted apart, in `udp_packets_dropped_total`: `malformed` (not the
//! format), `unknown_session` (no key for its session id), `bad_seal`
//! (failed authentication), `replay` (a counter already taken or too old).

use std::fmt;
use std::time::Duration;

use axum::Router as Routes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Unit;
use thiserror::Error;
use tokio::sync::watch;

use openspeak_shared::ops::{self, gauge};
use openspeak_voice::RejectCode;

use crate::{
    EndpointStats, FORWARD_DELAY_BUCKETS, ForwardDelay, Handle, LinkState, RouterStats,
    UDP_DROP_REASONS,
};

/// The prefix of every metric name.
pub const METRICS_PREFIX: &str = "openspeak_dataplane";
/// The longest a scrape waits for the router task's answer. A router that
/// takes longer is overloaded or stuck; a prompt 503 tells the scraper so,
/// where hanging would only look like a network problem.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// Every reject code, in code order, with its `reason` label.
const REJECT_REASONS: [(RejectCode, &str); 9] = [
    (RejectCode::Malformed, "malformed"),
    (RejectCode::UnknownKey, "unknown_key"),
    (RejectCode::Forged, "forged"),
    (RejectCode::Expired, "expired"),
    (RejectCode::InUse, "in_use"),
    (RejectCode::Timeout, "timeout"),
    (RejectCode::UnsupportedVersion, "unsupported_version"),
    (RejectCode::Replaced, "replaced"),
    (RejectCode::Removed, "removed"),
];

/// What one scrape reports: the data plane's counters at one moment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    /// The QUIC endpoint's counters (connections, tickets, sends).
    pub endpoint: EndpointStats,
    /// The router's totals over every session it has known.
    pub router: RouterStats,
    /// Where the link to the control plane is.
    pub link: LinkState,
    /// CPU time (user + system) this process has used, in seconds; so that
    /// a load generator that can only reach `/metrics` still gets the
    /// cost per forwarded packet.
    pub cpu_seconds: f64,
}

impl Snapshot {
    /// Rejected tickets by `reason`, every reason present (zeros too, so
    /// that `rate()` sees a series from its start).
    fn rejected(&self) -> [(&'static str, u64); 9] {
        REJECT_REASONS.map(|(code, reason)| {
            let count = self.endpoint.rejected.get(code as usize).copied();
            (reason, count.unwrap_or(0))
        })
    }

    /// Dropped datagrams by `reason`: the router's drops (whose sum is
    /// [`RouterStats::dropped`]; `listener_lag` adds the endpoint's own lag
    /// drops), then the endpoint's.
    fn dropped(&self) -> [(&'static str, u64); 14] {
        let (r, e) = (&self.router, &self.endpoint);
        let (s, l) = (&r.speakers, &r.listeners);
        [
            ("malformed", r.malformed.total()),
            ("unknown_session", r.unknown_session),
            ("oversized", s.oversized),
            ("rate_limited", s.rate_limited),
            ("muted", s.muted),
            ("no_channel", s.no_channel),
            ("duplicate", s.duplicate),
            ("late", s.late),
            ("stale", s.stale),
            // The router's queues and those in front of congested QUIC
            // listeners: one rule, two places.
            ("listener_lag", l.dropped_lag + e.dropped_lag),
            ("discarded", l.discarded),
            ("no_connection", e.dropped_no_connection),
            ("send_buffer_full", e.dropped_send_buffer),
            ("send_error", e.dropped_send_error),
        ]
    }

    /// Plain-UDP packets dropped before routing, by `reason`.
    fn udp_dropped(&self) -> [(&'static str, u64); 4] {
        std::array::from_fn(|i| (UDP_DROP_REASONS[i], self.endpoint.udp_dropped[i]))
    }

    /// The snapshot in the Prometheus text format (version 0.0.4).
    pub(crate) fn encode(self) -> Result<String, fmt::Error> {
        ops::encode(METRICS_PREFIX, "dataplane", Box::new(self))
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut out: DescriptorEncoder) -> Result<(), fmt::Error> {
        let (e, r) = (&self.endpoint, &self.router);
        gauge(
            &mut out,
            "connections",
            "Voice connections admitted with a ticket and open now.",
            None,
            e.connections,
        )?;
        gauge(
            &mut out,
            "members",
            "Sessions the router knows now: members placed on this data plane, connected or not.",
            None,
            r.members as u64,
        )?;
        let attached = matches!(self.link, LinkState::Attached { .. });
        gauge(
            &mut out,
            "link_attached",
            "1 while attached to the control plane; 0 while connecting or away (voice keeps flowing).",
            None,
            u64::from(attached),
        )?;
        counter(
            &mut out,
            "tickets_accepted",
            "Voice connections whose ticket was accepted.",
            e.accepted,
        )?;
        counters_by(
            &mut out,
            "tickets_rejected",
            "Voice connections refused at the ticket exchange, by reject code.",
            &self.rejected(),
        )?;
        counter(
            &mut out,
            "datagrams_received",
            "Voice datagrams read from client connections (those then dropped included).",
            e.datagrams_in,
        )?;
        counter(
            &mut out,
            "datagrams_forwarded",
            "Voice datagrams handed to QUIC for a listener (one per listener per packet).",
            e.datagrams_out,
        )?;
        counters_by(
            &mut out,
            "datagrams_dropped",
            "Voice datagrams the data plane dropped, by reason; each drop is counted once.",
            &self.dropped(),
        )?;
        counters_by(
            &mut out,
            "quic_handshakes_turned_away",
            "New QUIC connections not accepted because many were not yet admitted: sent a Retry (\"retry\") or refused (\"refused\").",
            &[
                ("retry", e.handshakes_retried),
                ("refused", e.handshakes_refused),
            ],
        )?;
        counter(
            &mut out,
            "udp_packets_received",
            "Packets read from the plain-UDP voice sockets, all UDP workers together (tickets and sealed packets, those then dropped included).",
            e.udp_received,
        )?;
        udp_by_worker(&mut out, &e.udp_received_by_thread)?;
        counters_by(
            &mut out,
            "udp_packets_dropped",
            "Plain-UDP packets dropped before routing, by reason.",
            &self.udp_dropped(),
        )?;
        counter(
            &mut out,
            "datagrams_lost",
            "Sequence numbers given up after waiting for them: lost before reaching the server.",
            r.speakers.lost,
        )?;
        counter(
            &mut out,
            "datagrams_reordered",
            "Voice datagrams that arrived after a later one and were put back in order.",
            r.speakers.reordered,
        )?;
        gauge(
            &mut out,
            "listener_queued",
            "Voice datagrams queued for listeners now, not yet handed to QUIC.",
            None,
            r.listeners.queued as u64,
        )?;
        gauge(
            &mut out,
            "speaker_jitter_max",
            "The largest current interarrival jitter estimate among speakers (RFC 3550).",
            // Base units, as Prometheus asks: seconds.
            Some(&Unit::Seconds),
            r.speakers.jitter_ms / 1000.0,
        )?;
        forward_delay(&mut out, &e.forward_delay)?;
        counter(
            &mut out,
            "events_dropped",
            "Speaking changes for the control plane dropped because its link was not draining them.",
            e.dropped_events,
        )?;
        let cpu = ConstCounter::new(self.cpu_seconds);
        cpu.encode(out.encode_descriptor(
            "process_cpu",
            "CPU time (user and system) the data plane process has used.",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)
    }
}

fn counter(out: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(out.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// The forward delay as a histogram in seconds.
fn forward_delay(out: &mut DescriptorEncoder, delay: &ForwardDelay) -> fmt::Result {
    let mut buckets: Vec<(f64, u64)> = FORWARD_DELAY_BUCKETS
        .iter()
        .copied()
        .zip(delay.counts.iter().copied())
        .collect();
    buckets.push((f64::INFINITY, delay.counts[FORWARD_DELAY_BUCKETS.len()]));
    let mut metric = out.encode_descriptor(
        "forward_delay",
        "Time from the kernel receiving a speaker's packet (or the jitter buffer releasing it) to \
         the data plane writing the packet that carries it to a listener.",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    metric.encode_histogram::<NoLabelSet>(
        delay.sum_nanos as f64 / 1e9,
        delay.count(),
        &buckets,
        None,
    )
}

/// One counter family with a `reason` label.
fn counters_by(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(&str, u64)],
) -> fmt::Result {
    let mut family = out.encode_descriptor(name, help, None, MetricType::Counter)?;
    for &(reason, value) in samples {
        ConstCounter::new(value).encode(family.encode_family(&[("reason", reason)])?)?;
    }
    Ok(())
}

/// The plain-UDP packets read by each UDP worker, labelled `worker` by
/// its number (0 is the endpoint's loop): how evenly the kernel spread the
/// clients over the workers' sockets.
fn udp_by_worker(out: &mut DescriptorEncoder, counts: &[u64]) -> fmt::Result {
    let mut family = out.encode_descriptor(
        "udp_worker_packets_received",
        "Packets read from the plain-UDP voice sockets, by the UDP worker that read them (0 is the voice loop).",
        None,
        MetricType::Counter,
    )?;
    for (worker, &value) in counts.iter().enumerate() {
        let worker = worker.to_string();
        ConstCounter::new(value).encode(family.encode_family(&[("worker", worker.as_str())])?)?;
    }
    Ok(())
}

/// The answer to `/healthz`. A data plane keeps routing voice while the
/// control plane is away, so only a stopped endpoint is unhealthy.
fn health(stopped: bool, link: &LinkState) -> (StatusCode, &'static str) {
    if stopped {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "stopped: the voice endpoint is not running\n",
        );
    }
    let body = match link {
        LinkState::Attached { .. } => "ok: link attached\n",
        LinkState::Connecting => "ok: link connecting\n",
        LinkState::Away => "ok: link away, voice still routed\n",
    };
    (StatusCode::OK, body)
}

/// Why a scrape has no metrics to show.
#[derive(Debug, Error)]
enum ScrapeError {
    /// The endpoint (and its router task) has stopped.
    #[error("the voice endpoint has stopped")]
    Stopped,
    /// The router task did not answer within [`SCRAPE_TIMEOUT`].
    #[error("the router did not answer within 2 s")]
    Timeout,
    /// `prometheus-client` failed to write the text (a bug).
    #[error("cannot encode the metrics")]
    Encode(#[from] fmt::Error),
}

impl IntoResponse for ScrapeError {
    fn into_response(self) -> Response {
        let status = match self {
            ScrapeError::Stopped | ScrapeError::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            ScrapeError::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, format!("{self}\n")).into_response()
    }
}

/// Where the handlers read from; cloned into each request.
#[derive(Clone)]
struct Source {
    handle: Handle,
    link: watch::Receiver<LinkState>,
}

impl Source {
    async fn snapshot(&self) -> Result<Snapshot, ScrapeError> {
        let router = tokio::time::timeout(SCRAPE_TIMEOUT, self.handle.router_stats())
            .await
            .map_err(|_| ScrapeError::Timeout)?
            .map_err(|_| ScrapeError::Stopped)?;
        Ok(Snapshot {
            // After the router's answer, so that the endpoint's counts are
            // never behind the router's.
            endpoint: self.handle.stats(),
            router,
            link: self.link.borrow().clone(),
            cpu_seconds: ops::cpu_seconds().unwrap_or(0.0),
        })
    }
}

async fn metrics(State(source): State<Source>) -> Result<Response, ScrapeError> {
    Ok(ops::metrics_response(source.snapshot().await?.encode()?))
}

async fn healthz(State(source): State<Source>) -> impl IntoResponse {
    health(source.handle.is_closed(), &source.link.borrow())
}

async fn readyz(State(source): State<Source>) -> impl IntoResponse {
    readiness(source.handle.is_closed(), &source.link.borrow())
}

/// The answer to `/readyz`: ready for new calls once attached to the
/// control plane with its snapshot applied. A data plane that is away
/// keeps routing the calls it has (so it stays healthy) but gets no new
/// ones, which a balancer should know.
fn readiness(stopped: bool, link: &LinkState) -> (StatusCode, &'static str) {
    match (stopped, link) {
        (true, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the voice endpoint is not running\n",
        ),
        (false, LinkState::Attached { .. }) => {
            (StatusCode::OK, "ready: attached, membership loaded\n")
        }
        (false, LinkState::Connecting) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: connecting to the control plane\n",
        ),
        (false, LinkState::Away) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the control plane is away; calls in progress are still routed\n",
        ),
    }
}

/// The routes of the data plane's operators' listener: `/metrics`,
/// `/healthz` and `/readyz` (anything else is 404).
pub(crate) fn routes(handle: Handle, link: watch::Receiver<LinkState>) -> Routes {
    Routes::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Source { handle, link })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ListenerStats, MalformedStats, SpeakerStats};

    /// A snapshot in which every counter has a value of its own, so that a
    /// sample taken from the wrong field shows.
    fn distinct() -> Snapshot {
        let mut rejected = [0; 10];
        for (i, slot) in rejected.iter_mut().enumerate().skip(1) {
            *slot = 100 + i as u64;
        }
        Snapshot {
            endpoint: EndpointStats {
                accepted: 1,
                rejected,
                datagrams_in: 2,
                datagrams_out: 3,
                dropped_no_connection: 5,
                dropped_send_buffer: 6,
                dropped_send_error: 7,
                dropped_lag: 50,
                dropped_events: 8,
                connections: 9,
                // 1, 2, 3, ... packets in the buckets, in bucket order.
                forward_delay: ForwardDelay {
                    counts: std::array::from_fn(|i| i as u64 + 1),
                    sum_nanos: 2_500_000,
                },
                udp_received: 40,
                udp_received_by_thread: vec![15, 25],
                udp_dropped: [41, 42, 43, 44],
                handshakes_retried: 45,
                handshakes_refused: 46,
            },
            router: RouterStats {
                unknown_session: 10,
                malformed: MalformedStats {
                    too_short: 11,
                    unknown_kind: 12,
                    empty_payload: 13,
                    payload_too_long: 14,
                    zero_speaker: 15,
                },
                speakers: SpeakerStats {
                    received: 16,
                    // The router's own malformed count (by wire error) is
                    // the one shown; this per-speaker sum must not be.
                    malformed: 31,
                    oversized: 32,
                    rate_limited: 33,
                    muted: 17,
                    no_channel: 18,
                    duplicate: 19,
                    late: 20,
                    stale: 21,
                    lost: 22,
                    reordered: 23,
                    forwarded: 24,
                    jitter_ms: 2.5,
                },
                listeners: ListenerStats {
                    enqueued: 25,
                    delivered: 26,
                    dropped_lag: 27,
                    discarded: 28,
                    queued: 29,
                },
                members: 30,
            },
            link: LinkState::Attached {
                instance: "one".into(),
            },
            cpu_seconds: 31.5,
        }
    }

    /// The value of the sample line `name` (with its labels), if present.
    fn sample(text: &str, name: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_owned))
    }

    #[test]
    fn every_counter_lands_in_its_sample() {
        let text = distinct().encode().unwrap();
        let p = |name: &str| format!("{METRICS_PREFIX}_{name}");
        let expected = [
            ("connections", "9"),
            ("members", "30"),
            ("link_attached", "1"),
            ("process_cpu_seconds_total", "31.5"),
            ("tickets_accepted_total", "1"),
            ("udp_packets_received_total", "40"),
            ("quic_handshakes_turned_away_total{reason=\"retry\"}", "45"),
            (
                "quic_handshakes_turned_away_total{reason=\"refused\"}",
                "46",
            ),
            ("udp_packets_dropped_total{reason=\"malformed\"}", "41"),
            (
                "udp_packets_dropped_total{reason=\"unknown_session\"}",
                "42",
            ),
            ("udp_packets_dropped_total{reason=\"bad_seal\"}", "43"),
            ("udp_packets_dropped_total{reason=\"replay\"}", "44"),
            ("tickets_rejected_total{reason=\"malformed\"}", "101"),
            ("tickets_rejected_total{reason=\"unknown_key\"}", "102"),
            ("tickets_rejected_total{reason=\"forged\"}", "103"),
            ("tickets_rejected_total{reason=\"expired\"}", "104"),
            ("tickets_rejected_total{reason=\"in_use\"}", "105"),
            ("tickets_rejected_total{reason=\"timeout\"}", "106"),
            (
                "tickets_rejected_total{reason=\"unsupported_version\"}",
                "107",
            ),
            ("tickets_rejected_total{reason=\"replaced\"}", "108"),
            ("tickets_rejected_total{reason=\"removed\"}", "109"),
            ("udp_worker_packets_received_total{worker=\"0\"}", "15"),
            ("udp_worker_packets_received_total{worker=\"1\"}", "25"),
            ("datagrams_received_total", "2"),
            ("datagrams_forwarded_total", "3"),
            ("datagrams_dropped_total{reason=\"malformed\"}", "65"),
            ("datagrams_dropped_total{reason=\"unknown_session\"}", "10"),
            ("datagrams_dropped_total{reason=\"oversized\"}", "32"),
            ("datagrams_dropped_total{reason=\"rate_limited\"}", "33"),
            ("datagrams_dropped_total{reason=\"muted\"}", "17"),
            ("datagrams_dropped_total{reason=\"no_channel\"}", "18"),
            ("datagrams_dropped_total{reason=\"duplicate\"}", "19"),
            ("datagrams_dropped_total{reason=\"late\"}", "20"),
            ("datagrams_dropped_total{reason=\"stale\"}", "21"),
            ("datagrams_dropped_total{reason=\"listener_lag\"}", "77"),
            ("datagrams_dropped_total{reason=\"discarded\"}", "28"),
            ("datagrams_dropped_total{reason=\"no_connection\"}", "5"),
            ("datagrams_dropped_total{reason=\"send_buffer_full\"}", "6"),
            ("datagrams_dropped_total{reason=\"send_error\"}", "7"),
            ("datagrams_lost_total", "22"),
            ("datagrams_reordered_total", "23"),
            ("listener_queued", "29"),
            ("speaker_jitter_max_seconds", "0.0025"),
            ("events_dropped_total", "8"),
            ("forward_delay_seconds_count", "171"),
            ("forward_delay_seconds_sum", "0.0025"),
        ];
        for (name, value) in expected {
            assert_eq!(
                sample(&text, &p(name)).as_deref(),
                Some(value),
                "{name} in\n{text}"
            );
        }
        // Buckets are cumulative: 1, 1 + 2, 1 + 2 + 3, ... packets, under
        // each bound in order, the unbounded one last.
        let bucket = p("forward_delay_seconds_bucket{le=\"");
        let buckets: Vec<(f64, u64)> = text
            .lines()
            .filter_map(|l| l.strip_prefix(&bucket)?.split_once("\"} "))
            .map(|(le, n)| {
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (le, n.parse().unwrap())
            })
            .collect();
        let bounds = FORWARD_DELAY_BUCKETS.iter().copied().chain([f64::INFINITY]);
        let want: Vec<(f64, u64)> = bounds
            .enumerate()
            .map(|(i, le)| (le, (i as u64 + 1) * (i as u64 + 2) / 2))
            .collect();
        assert_eq!(buckets, want, "{text}");
        // The data plane's own samples; the process metrics before them
        // are `openspeak_shared::ops`'s, and tested there.
        let samples = text
            .lines()
            .filter(|l| l.starts_with(METRICS_PREFIX))
            .count();
        assert_eq!(
            samples,
            expected.len() + buckets.len(),
            "no sample unaccounted for"
        );
        assert!(
            text.contains("openspeak_build_info{component=\"dataplane\""),
            "{text}"
        );
        for family in ["tickets_rejected_total", "datagrams_dropped_total"] {
            assert!(text.contains(&format!("# TYPE {} counter\n", p(family))));
        }
        assert!(text.contains(&format!("# TYPE {} gauge\n", p("members"))));
        assert!(
            text.lines()
                .filter(|l| l.starts_with("# HELP "))
                .all(|l| l.len() > "# HELP ".len() + METRICS_PREFIX.len() + 10),
            "every metric has a help text"
        );
    }

    #[test]
    fn the_router_drops_sum_to_its_own_total() {
        let snapshot = distinct();
        let router: u64 = snapshot.dropped()[..11].iter().map(|(_, n)| n).sum();
        // `listener_lag` also counts what waited too long in front of a
        // congested QUIC listener, in the endpoint.
        assert_eq!(
            router,
            snapshot.router.dropped() + snapshot.endpoint.dropped_lag
        );
        let endpoint: u64 = snapshot.dropped()[11..].iter().map(|(_, n)| n).sum();
        assert_eq!(endpoint, 5 + 6 + 7);
    }

    #[test]
    fn every_reject_code_has_its_own_reason() {
        for (i, (code, _)) in REJECT_REASONS.iter().enumerate() {
            assert_eq!(*code as usize, i + 1, "in code order, none skipped");
        }
    }

    #[test]
    fn a_fresh_data_plane_shows_every_series_at_zero() {
        let fresh = Snapshot {
            endpoint: EndpointStats::default(),
            router: RouterStats::default(),
            link: LinkState::Connecting,
            cpu_seconds: 0.0,
        };
        let text = fresh.encode().unwrap();
        assert_eq!(
            sample(&text, "openspeak_dataplane_link_attached"),
            Some("0".into())
        );
        let samples: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(METRICS_PREFIX))
            .collect();
        assert_eq!(samples.len(), 62, "{text}");
        let zero = |l: &&str| l.rsplit_once(' ').map(|(_, v)| v.parse::<f64>()) == Some(Ok(0.0));
        assert!(samples.iter().all(zero), "{text}");
    }

    #[test]
    fn health_fails_only_when_the_endpoint_stopped() {
        let attached = LinkState::Attached {
            instance: "x".into(),
        };
        assert_eq!(
            health(false, &attached),
            (StatusCode::OK, "ok: link attached\n")
        );
        let (status, body) = health(false, &LinkState::Away);
        assert_eq!(status, StatusCode::OK);
        assert!(body.starts_with("ok: link away"), "{body}");
        assert_eq!(health(false, &LinkState::Connecting).0, StatusCode::OK);
        assert_eq!(health(true, &attached).0, StatusCode::SERVICE_UNAVAILABLE);
    }
}
