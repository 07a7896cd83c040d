//! The control plane's HTTP face for operators, on `metrics.listen`
//! (served by `openspeak_shared::ops`): `GET /metrics` in the Prometheus
//! text format, `GET /healthz` (alive: it answers) and `GET /readyz`
//! (ready: its state is loaded and it takes calls; 503 while it drains).
//!
//! As in the data plane, nothing here counts on the hot path: a scrape
//! reads the hub's sizes under the broker's lock once, the registry's data
//! planes, and the refusal counters kept where the refusals happen, and
//! renders them as constant metrics under `openspeak_control_`.
//!
//! | metric | type | what |
//! |---|---|---|
//! | `sessions` | gauge | sessions open now |
//! | `channels` | gauge | channels that exist now, the default one included |
//! | `dataplanes_attached` | gauge | data planes on the internal link now |
//! | `dataplane_sessions{dataplane}` | gauge | voice sessions each data plane last reported |
//! | `dataplane_forwarded_total{dataplane}` | counter | datagrams each data plane last reported forwarding |
//! | `auth_failures_total` | counter | calls refused for a bad token |
//! | `refused_total{reason}` | counter | calls refused for a limit: `rate_limited` (`auth.requests_per_second`), `session_cap` (`auth.max_sessions_per_token`) |
//! | `connections_turned_away_total{listener, reason}` | counter | connections the gate closed: `over_limit`, `silent`, `out_of_descriptors`, on `grpc` and `cluster` |

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router as Routes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use openspeak_shared::gate::GateCounters;
use openspeak_shared::ops;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::broker::Broker;
use crate::cluster::Registry;

/// The prefix of every name of the control plane's own.
pub const METRICS_PREFIX: &str = "openspeak_control";

/// Refusals counted where they happen, read by scrapes.
#[derive(Debug, Default)]
pub struct Refusals {
    /// Calls refused for a missing, unknown, expired or revoked token.
    pub auth_failures: AtomicU64,
    /// Calls refused by `auth.requests_per_second`.
    pub rate_limited: AtomicU64,
    /// `Connect`s refused by `auth.max_sessions_per_token`.
    pub session_cap: AtomicU64,
}

/// Where a scrape reads from.
#[derive(Clone)]
pub(crate) struct Source {
    pub broker: Arc<Broker>,
    pub registry: Arc<Registry>,
    pub refusals: Arc<Refusals>,
    /// The gates of the public and the internal listener.
    pub gates: [(&'static str, Arc<GateCounters>); 2],
    /// Set when shutdown begins.
    pub draining: Arc<AtomicBool>,
}

/// One data plane as a scrape sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlaneSample {
    pub id: String,
    pub sessions: u64,
    pub forwarded: u64,
    /// The certificate it presented (not a metric; `GetStatus` shows it).
    pub cert_sha256: String,
}

/// What one scrape reports.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    pub sessions: u64,
    pub channels: u64,
    pub planes: Vec<PlaneSample>,
    pub auth_failures: u64,
    pub rate_limited: u64,
    pub session_cap: u64,
    /// Per listener: closed over the limit, silent, out of descriptors.
    pub turned_away: Vec<(&'static str, [u64; 3])>,
}

impl Source {
    fn snapshot(&self) -> Snapshot {
        let (sessions, channels) = self
            .broker
            .read(|hub| (hub.session_count() as u64, hub.channel_count() as u64));
        let r = &self.refusals;
        Snapshot {
            sessions,
            channels,
            planes: self.registry.samples(),
            auth_failures: r.auth_failures.load(Ordering::Relaxed),
            rate_limited: r.rate_limited.load(Ordering::Relaxed),
            session_cap: r.session_cap.load(Ordering::Relaxed),
            turned_away: self
                .gates
                .iter()
                .map(|(name, g)| {
                    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
                    (
                        *name,
                        [n(&g.over_limit), n(&g.silent), n(&g.out_of_descriptors)],
                    )
                })
                .collect(),
        }
    }
}

impl Snapshot {
    pub(crate) fn encode(self) -> Result<String, fmt::Error> {
        ops::encode(METRICS_PREFIX, "control", Box::new(self))
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut out: DescriptorEncoder) -> Result<(), fmt::Error> {
        gauge(&mut out, "sessions", "Sessions open now.", self.sessions)?;
        gauge(
            &mut out,
            "channels",
            "Channels that exist now, the default one included.",
            self.channels,
        )?;
        gauge(
            &mut out,
            "dataplanes_attached",
            "Data planes attached over the internal link now.",
            self.planes.len() as u64,
        )?;
        let mut family = out.encode_descriptor(
            "dataplane_sessions",
            "Voice sessions each attached data plane last reported carrying.",
            None,
            MetricType::Gauge,
        )?;
        for plane in &self.planes {
            ConstGauge::new(plane.sessions as i64)
                .encode(family.encode_family(&[("dataplane", plane.id.as_str())])?)?;
        }
        let mut family = out.encode_descriptor(
            "dataplane_forwarded",
            "Datagrams each attached data plane last reported having forwarded since it started.",
            None,
            MetricType::Counter,
        )?;
        for plane in &self.planes {
            ConstCounter::new(plane.forwarded)
                .encode(family.encode_family(&[("dataplane", plane.id.as_str())])?)?;
        }
        let failures = ConstCounter::new(self.auth_failures);
        failures.encode(out.encode_descriptor(
            "auth_failures",
            "Calls refused for a missing, unknown, expired or revoked token.",
            None,
            MetricType::Counter,
        )?)?;
        let mut family = out.encode_descriptor(
            "refused",
            "Calls refused for a limit on one member token: rate_limited \
             (auth.requests_per_second), session_cap (auth.max_sessions_per_token).",
            None,
            MetricType::Counter,
        )?;
        for (reason, value) in [
            ("rate_limited", self.rate_limited),
            ("session_cap", self.session_cap),
        ] {
            ConstCounter::new(value).encode(family.encode_family(&[("reason", reason)])?)?;
        }
        let mut family = out.encode_descriptor(
            "connections_turned_away",
            "Connections closed at the door: over_limit (server.max_connections), silent \
             (server.handshake_timeout), out_of_descriptors.",
            None,
            MetricType::Counter,
        )?;
        for (listener, counts) in &self.turned_away {
            for (reason, value) in ["over_limit", "silent", "out_of_descriptors"]
                .into_iter()
                .zip(counts)
            {
                ConstCounter::new(*value).encode(
                    family.encode_family(&[("listener", *listener), ("reason", reason)])?,
                )?;
            }
        }
        Ok(())
    }
}

fn gauge(out: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    ops::gauge(out, name, help, None, value)
}

/// The routes of the control plane's operators' listener.
pub(crate) fn routes(source: Source) -> Routes {
    Routes::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(source)
}

async fn metrics(State(source): State<Source>) -> Response {
    match source.snapshot().encode() {
        Ok(text) => ops::metrics_response(text),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n",
        )
            .into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready once bound with its state loaded (which is before this listener
/// serves at all), until shutdown begins.
async fn readyz(State(source): State<Source>) -> (StatusCode, &'static str) {
    if source.draining.load(Ordering::Relaxed) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down\n",
        )
    } else {
        (StatusCode::OK, "ready\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, name: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .map(str::to_owned)
    }

    #[test]
    fn every_value_lands_in_its_sample() {
        let snapshot = Snapshot {
            sessions: 1,
            channels: 2,
            planes: vec![PlaneSample {
                id: "dp-a".into(),
                sessions: 3,
                forwarded: 4,
                cert_sha256: String::new(),
            }],
            auth_failures: 5,
            rate_limited: 6,
            session_cap: 7,
            turned_away: vec![("grpc", [8, 9, 10]), ("cluster", [11, 12, 13])],
        };
        let text = snapshot.encode().unwrap();
        let expected = [
            ("sessions", "1"),
            ("channels", "2"),
            ("dataplanes_attached", "1"),
            ("dataplane_sessions{dataplane=\"dp-a\"}", "3"),
            ("dataplane_forwarded_total{dataplane=\"dp-a\"}", "4"),
            ("auth_failures_total", "5"),
            ("refused_total{reason=\"rate_limited\"}", "6"),
            ("refused_total{reason=\"session_cap\"}", "7"),
            (
                "connections_turned_away_total{listener=\"grpc\",reason=\"over_limit\"}",
                "8",
            ),
            (
                "connections_turned_away_total{listener=\"grpc\",reason=\"silent\"}",
                "9",
            ),
            (
                "connections_turned_away_total{listener=\"grpc\",reason=\"out_of_descriptors\"}",
                "10",
            ),
            (
                "connections_turned_away_total{listener=\"cluster\",reason=\"over_limit\"}",
                "11",
            ),
            (
                "connections_turned_away_total{listener=\"cluster\",reason=\"silent\"}",
                "12",
            ),
            (
                "connections_turned_away_total{listener=\"cluster\",reason=\"out_of_descriptors\"}",
                "13",
            ),
        ];
        for (name, value) in expected {
            let name = format!("{METRICS_PREFIX}_{name}");
            assert_eq!(
                sample(&text, &name).as_deref(),
                Some(value),
                "{name} in\n{text}"
            );
        }
        let own = text
            .lines()
            .filter(|l| l.starts_with(METRICS_PREFIX))
            .count();
        assert_eq!(own, expected.len(), "no sample unaccounted for:\n{text}");
        assert!(text.contains("openspeak_build_info{component=\"control\""));
    }
}
