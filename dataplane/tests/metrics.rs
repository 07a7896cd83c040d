//! The data plane's `/metrics`, `/healthz` and `/readyz` over real sockets on
//! 127.0.0.1: a data plane attached to a scripted control plane, raw QUIC
//! voice clients making traffic, and plain HTTP/1.1 requests reading the
//! exact samples before and after.

mod support;

use std::net::SocketAddr;

use openspeak_dataplane::{Dataplane, StartError};
use openspeak_shared::ops::MAX_CONNECTIONS as METRICS_MAX_CONNECTIONS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use openspeak_testkit::http::Reply;
use support::control::{Harness, SECRET, config, key, start};

use support::{
    Answer, QUIET, WAIT, connect, eventually, hears_nothing, join, present, talk, voice,
};

async fn get_path(h: &Harness, path: &str) -> Reply {
    get(h.metrics, path).await
}

/// A scrape of `/metrics`, which must succeed.
async fn scrape(h: &Harness) -> Scrape {
    let reply = get_path(h, "/metrics").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply
            .head
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        reply.head
    );
    Scrape(reply.body)
}

/// `GET path`, whose body must be of known length (no chunking).
async fn get(addr: SocketAddr, path: &str) -> Reply {
    let reply = openspeak_testkit::http::get(addr, path).await;
    assert!(
        !reply.head.contains("transfer-encoding"),
        "a body of known length: {}",
        reply.head
    );
    reply
}

/// The text of one scrape.
struct Scrape(String);

impl Scrape {
    /// The value of the sample `openspeak_dataplane_<name>` (with its
    /// labels, as written), which must be present.
    fn value(&self, name: &str) -> f64 {
        let name = format!("openspeak_dataplane_{name}");
        self.0
            .lines()
            .find_map(|line| line.strip_prefix(&name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no sample {name} in\n{}", self.0))
            .parse()
            .unwrap()
    }

    fn rejected(&self, reason: &str) -> f64 {
        self.value(&format!("tickets_rejected_total{{reason=\"{reason}\"}}"))
    }

    fn dropped(&self, reason: &str) -> f64 {
        self.value(&format!("datagrams_dropped_total{{reason=\"{reason}\"}}"))
    }

    /// The sum of a labelled counter's samples, to check that the ones not
    /// named stayed at 0.
    fn total(&self, family: &str) -> f64 {
        let prefix = format!("openspeak_dataplane_{family}{{");
        self.0
            .lines()
            .filter(|line| line.starts_with(&prefix))
            .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }
}

const DROP_REASONS: [&str; 14] = [
    "malformed",
    "unknown_session",
    "oversized",
    "rate_limited",
    "muted",
    "no_channel",
    "duplicate",
    "late",
    "stale",
    "listener_lag",
    "discarded",
    "no_connection",
    "send_buffer_full",
    "send_error",
];

const REJECT_REASONS: [&str; 9] = [
    "malformed",
    "unknown_key",
    "forged",
    "expired",
    "in_use",
    "timeout",
    "unsupported_version",
    "replaced",
    "removed",
];

#[tokio::test]
async fn scrapes_count_tickets_voice_and_drops() {
    let mut h = start(SECRET).await;

    // Before anything: every series is there, at 0.
    let before = scrape(&h).await;
    for name in [
        "connections",
        "members",
        "link_attached",
        "tickets_accepted_total",
        "datagrams_received_total",
        "datagrams_forwarded_total",
        "datagrams_lost_total",
        "datagrams_reordered_total",
        "speaker_jitter_max_seconds",
    ] {
        assert_eq!(before.value(name), 0.0, "{name}");
    }
    for reason in REJECT_REASONS {
        assert_eq!(before.rejected(reason), 0.0, "{reason}");
    }
    for reason in DROP_REASONS {
        assert_eq!(before.dropped(reason), 0.0, "{reason}");
    }

    let (k, issuer) = key(11);
    let _control = h.attach_one(k).await;
    let attached = scrape(&h).await;
    assert_eq!(attached.value("link_attached"), 1.0);
    assert_eq!(attached.value("members"), 2.0);
    assert_eq!(attached.value("connections"), 0.0);

    // A forged ticket: refused, and counted under its reason only.
    let mut forged = support::ticket(&issuer, 1, 60);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let (_x_ep, x) = connect(h.quic, h.pin).await;
    assert_eq!(
        present(&x, &forged).await,
        Answer::Rejected(3, "forged ticket".into(), 3)
    );
    let after_forged = scrape(&h).await;
    assert_eq!(after_forged.rejected("forged"), 1.0);
    assert_eq!(after_forged.total("tickets_rejected_total"), 1.0);
    assert_eq!(after_forged.value("tickets_accepted_total"), 0.0);

    // Two members talk: ten datagrams in, ten out to the one listener.
    let (_a_ep, a) = join(h.quic, h.pin, &support::ticket(&issuer, 1, 60), 1).await;
    let (_b_ep, b) = join(h.quic, h.pin, &support::ticket(&issuer, 2, 60), 2).await;
    talk(&a, 1, 0..10, &[&b]).await;
    let talked = scrape(&h).await;
    assert_eq!(talked.value("tickets_accepted_total"), 2.0);
    assert_eq!(talked.value("connections"), 2.0);
    assert_eq!(talked.value("members"), 2.0);
    assert_eq!(talked.value("datagrams_received_total"), 10.0);
    assert_eq!(talked.value("datagrams_forwarded_total"), 10.0);
    assert_eq!(talked.total("datagrams_dropped_total"), 0.0);
    assert_eq!(talked.value("datagrams_lost_total"), 0.0);
    assert!(talked.value("speaker_jitter_max_seconds") >= 0.0);
    // Every forwarded datagram left in a packet whose delay was measured;
    // datagrams for one listener may share a packet.
    let measured = talked.value("forward_delay_seconds_count");
    assert!(
        (1.0..=10.0).contains(&measured),
        "{measured} packets measured"
    );
    assert_eq!(
        talked.value("forward_delay_seconds_bucket{le=\"+Inf\"}"),
        measured
    );
    assert!(talked.value("forward_delay_seconds_sum") > 0.0);

    // A copy of a packet already forwarded, and a datagram that does not
    // parse: both dropped, each under its reason, neither forwarded.
    a.send_datagram(voice(9)).unwrap();
    a.send_datagram(bytes::Bytes::from_static(&[0xff])).unwrap();
    eventually("the router has taken both datagrams", || async {
        scrape(&h).await.value("datagrams_received_total") == 12.0
    })
    .await;
    // Nothing else is sent, so the counters stay as they were when the
    // wait ended.
    let dropped = scrape(&h).await;
    assert_eq!(dropped.dropped("duplicate"), 1.0);
    assert_eq!(dropped.dropped("malformed"), 1.0);
    assert_eq!(dropped.total("datagrams_dropped_total"), 2.0);
    assert_eq!(dropped.value("datagrams_forwarded_total"), 10.0);
    hears_nothing(&b).await;
}

#[tokio::test]
async fn health_and_readiness_follow_the_link_and_other_paths_are_404() {
    let mut h = start(SECRET).await;
    // (path, status, body) as each answers.
    let answers = async |h: &Harness, expected: [(&str, u16, &str); 2]| {
        for (path, status, body) in expected {
            let reply = get_path(h, path).await;
            assert_eq!(
                (reply.status, reply.body.as_str()),
                (status, body),
                "{path}"
            );
        }
    };
    answers(
        &h,
        [
            ("/healthz", 200, "ok: link connecting\n"),
            (
                "/readyz",
                503,
                "not ready: connecting to the control plane\n",
            ),
        ],
    )
    .await;

    let (k, _issuer) = key(1);
    let control = h.attach_one(k).await;
    answers(
        &h,
        [
            ("/healthz", 200, "ok: link attached\n"),
            ("/readyz", 200, "ready: attached, membership loaded\n"),
        ],
    )
    .await;

    // The control plane goes away: the data plane still routes voice, so
    // it stays healthy, and says where its link is.
    h.detach(control).await;
    for (path, status, start) in [
        ("/healthz", 200, "ok: link away"),
        ("/readyz", 503, "not ready: the control plane is away"),
    ] {
        let reply = get_path(&h, path).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.body);
        assert!(reply.body.starts_with(start), "{path}: {}", reply.body);
    }
    assert_eq!(scrape(&h).await.value("link_attached"), 0.0);

    for path in ["/", "/metrics/", "/health", "/favicon.ico"] {
        assert_eq!(get_path(&h, path).await.status, 404, "{path}");
    }
}

/// Connections that never send a byte hold the metrics port's places only
/// up to its limit: one more is closed at once, and scrapes work again as
/// soon as places are free. (The gate's own tests close silent
/// connections after the handshake timeout.)
#[tokio::test]
async fn silent_connections_cannot_lock_scrapers_out() {
    let h = start(SECRET).await;
    let mut silent = Vec::new();
    for _ in 0..METRICS_MAX_CONNECTIONS {
        silent.push(TcpStream::connect(h.metrics).await.unwrap());
    }
    // The gate takes them in order; once all hold a place, the next is
    // closed without a word. Bounded: each try is a fresh connection.
    let mut turned_away = false;
    for _ in 0..50 {
        let mut extra = TcpStream::connect(h.metrics).await.unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(QUIET, extra.read(&mut buf)).await;
        if matches!(read, Ok(Ok(0)) | Ok(Err(_))) {
            turned_away = true;
            break;
        }
    }
    assert!(turned_away, "a connection beyond the limit was closed");

    drop(silent);
    let addr = h.metrics;
    eventually("a scrape gets through again", || async move {
        let Ok(Ok(mut stream)) = tokio::time::timeout(QUIET, TcpStream::connect(addr)).await else {
            return false;
        };
        let request = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        if stream.write_all(request.as_bytes()).await.is_err() {
            return false;
        }
        let mut response = String::new();
        let read = tokio::time::timeout(WAIT, stream.read_to_string(&mut response)).await;
        matches!(read, Ok(Ok(_))) && response.starts_with("HTTP/1.1 200")
    })
    .await;
}

#[tokio::test]
async fn a_taken_metrics_port_stops_start_up_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let control: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut config = config(dir.path(), control, Some(SECRET));
    config.dataplane.metrics_listen = addr.to_string();
    let error = Dataplane::bind(&config).await.unwrap_err();
    assert!(
        matches!(&error, StartError::Metrics { addr: a, .. } if *a == addr),
        "{error}"
    );
    let text = error.to_string();
    assert!(text.contains(&addr.to_string()), "{text}");
    assert!(text.contains("dataplane.metrics_listen"), "{text}");
}

#[tokio::test]
async fn an_empty_metrics_listen_serves_no_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let control: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut config = config(dir.path(), control, Some(SECRET));
    config.dataplane.metrics_listen = String::new();
    let dataplane = Dataplane::bind(&config).await.unwrap();
    assert_eq!(dataplane.metrics_addr(), None);

    config.dataplane.metrics_listen = "localhost:9101".into();
    let error = Dataplane::bind(&config).await.unwrap_err();
    assert!(matches!(error, StartError::MetricsListen(_)), "{error}");
}
