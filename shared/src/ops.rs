//! The operators' HTTP listener that each process serves on its metrics
//! address (`metrics.listen` for the control plane,
//! `dataplane.metrics_listen` for a data plane), and the metrics every
//! OpenSpeak process reports about itself.
//!
//! Each process brings its own routes (`/metrics`, `/healthz`, `/readyz`)
//! and its own metrics; this holds what they share:
//! - [`OpsListener`]: binds early, so that a taken port stops start-up,
//!   then serves behind the connection gate (a few scrapers and health
//!   checks: [`MAX_CONNECTIONS`] places, silent ones closed after
//!   [`HANDSHAKE_TIMEOUT`]) until shutdown, with a short drain;
//! - [`encode`]: the Prometheus text of a process's own collector under
//!   its prefix, after the standard `process_*` metrics and
//!   `openspeak_build_info`, which every process reports alike.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeMetric, prometheus_text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

use crate::gate::{self, GateLimits, GatedStream};

/// Connections an operators' listener holds at once: a few scrapers and
/// health checks, with room to spare; more are closed at once.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a connection to it may stay silent before it is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long open HTTP connections get to finish once shutdown begins.
const DRAIN: Duration = Duration::from_secs(2);

/// The bound HTTP listener, before it serves.
#[derive(Debug)]
pub struct OpsListener {
    listener: TcpListener,
    addr: SocketAddr,
    name: &'static str,
}

impl OpsListener {
    /// Binds `addr`; `name` says which listener in the log.
    pub async fn bind(addr: SocketAddr, name: &'static str) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        Ok(Self {
            listener,
            addr,
            name,
        })
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers with `routes` until `shutdown` resolves, then gives open
    /// requests a short drain to finish.
    pub async fn serve(
        self,
        routes: axum::Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let (begun, draining) = oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            let _ = begun.send(());
        };
        let limits = GateLimits {
            max_connections: MAX_CONNECTIONS,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        };
        let (incoming, _) = gate::open(self.listener, limits, self.name);
        let listener = Gated {
            incoming,
            addr: self.addr,
        };
        let serving = axum::serve(listener, routes)
            .with_graceful_shutdown(signal)
            .into_future();
        tokio::pin!(serving);
        tokio::select! {
            served = &mut serving => {
                if let Err(e) = served {
                    warn!(listener = self.name, error = %e, "operators' HTTP listener failed");
                }
                return;
            }
            _ = draining => {}
        }
        if tokio::time::timeout(DRAIN, serving).await.is_err() {
            debug!(
                listener = self.name,
                "HTTP connections still open after the drain; leaving them"
            );
        }
    }
}

/// The connections the gate lets through, as axum takes them.
struct Gated {
    incoming: ReceiverStream<io::Result<GatedStream>>,
    addr: SocketAddr,
}

impl axum::serve::Listener for Gated {
    type Io = GatedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.incoming.next().await {
                Some(Ok(stream)) => match stream.peer_addr() {
                    Ok(peer) => return (stream, peer),
                    // Gone before it was served.
                    Err(_) => continue,
                },
                Some(Err(_)) => continue,
                // The gate stopped: nothing more will come.
                None => std::future::pending().await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// `text` as a `/metrics` answer.
pub fn metrics_response(text: String) -> Response {
    (
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        text,
    )
        .into_response()
}

/// The Prometheus text (version 0.0.4) of `collector`, its names under
/// `prefix`, after this process's `process_*` metrics and
/// `openspeak_build_info{component}`.
pub fn encode(
    prefix: &str,
    component: &'static str,
    collector: Box<dyn Collector>,
) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ProcessCollector { component }));
    registry
        .sub_registry_with_prefix(prefix)
        .register_collector(collector);
    let mut text = String::new();
    prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}

/// The standard `process_*` metrics, as Prometheus's own clients name
/// them, read from `/proc` and `getrusage` at each scrape; a value that
/// cannot be read is left out rather than reported as 0.
#[derive(Debug)]
struct ProcessCollector {
    component: &'static str,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut out: DescriptorEncoder) -> Result<(), fmt::Error> {
        let info = ConstGauge::new(1);
        info.encode(
            out.encode_descriptor(
                "openspeak_build_info",
                "Always 1; its labels say which OpenSpeak process and version this is.",
                None,
                MetricType::Gauge,
            )?
            .encode_family(&[
                ("component", self.component),
                ("version", env!("CARGO_PKG_VERSION")),
            ])?,
        )?;
        if let Some(seconds) = cpu_seconds() {
            let cpu = ConstCounter::new(seconds);
            cpu.encode(out.encode_descriptor(
                "process_cpu",
                "User and system CPU time this process has used.",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?)?;
        }
        if let Some((virtual_bytes, resident_bytes)) = memory_bytes() {
            gauge(
                &mut out,
                "process_resident_memory",
                "Resident memory size.",
                Some(&Unit::Bytes),
                resident_bytes,
            )?;
            gauge(
                &mut out,
                "process_virtual_memory",
                "Virtual memory size.",
                Some(&Unit::Bytes),
                virtual_bytes,
            )?;
        }
        if let Some(open) = open_fds() {
            gauge(
                &mut out,
                "process_open_fds",
                "Open file descriptors.",
                None,
                open,
            )?;
        }
        if let Some(max) = max_fds() {
            gauge(
                &mut out,
                "process_max_fds",
                "The most file descriptors this process may open.",
                None,
                max,
            )?;
        }
        Ok(())
    }
}

/// One constant gauge: what a collector that renders a snapshot writes.
pub fn gauge<N: EncodeGaugeValue>(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: N,
) -> fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(out.encode_descriptor(name, help, unit, metric.metric_type())?)
}

/// This process's user + system CPU time so far, from `getrusage`.
pub fn cpu_seconds() -> Option<f64> {
    // SAFETY: `getrusage` only writes into the struct we pass, which is
    // zero-initialised plain data of the right type.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

/// Virtual and resident memory in bytes, from `/proc/self/statm` (sizes
/// in pages).
fn memory_bytes() -> Option<(u64, u64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut pages = statm.split_whitespace().map(|p| p.parse::<u64>().ok());
    let (size, resident) = (pages.next()??, pages.next()??);
    // SAFETY: sysconf reads a constant of the system.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
    Some((size * page, resident * page))
}

/// How many file descriptors are open, from `/proc/self/fd`.
fn open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    // The directory's own descriptor, open while it is read, is one of them.
    Some((entries.count() as u64).saturating_sub(1))
}

/// The soft limit on open files.
fn max_fds() -> Option<u64> {
    Some(gate::open_files_limit()?.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct One;

    impl Collector for One {
        fn encode(&self, mut out: DescriptorEncoder) -> Result<(), fmt::Error> {
            gauge(&mut out, "things", "Things now.", None, 7u64)
        }
    }

    #[test]
    fn process_metrics_come_first_and_the_collector_is_under_its_prefix() {
        let text = encode("openspeak_test", "test", Box::new(One)).unwrap();
        assert!(text.contains("\nopenspeak_test_things 7\n"), "{text}");
        assert!(
            text.contains(&format!(
                "openspeak_build_info{{component=\"test\",version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_virtual_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "{name} in {text}"
            );
        }
        let rss: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            rss > 1e6,
            "a test process holds more than a megabyte: {rss}"
        );
    }
}
