//! A gate in front of a TCP listener, so that connections which never
//! speak cannot use up the server.
//!
//! Without it a client can open TCP connections and send nothing: neither
//! HTTP/2 nor HTTP/1 closes them before a request begins, so they stay
//! until the process runs out of file descriptors; then every new client
//! is locked out and the accept loop spins on `EMFILE`. The gate
//! - holds at most `max_connections` at once, closing any beyond at once;
//! - closes a connection that sends nothing within `handshake_timeout`;
//! - pauses accepting for a moment when the system refuses a descriptor,
//!   rather than spinning;
//! - says so in the log when one of these bites, at most once every
//!   [`LOG_EVERY`] per listener, with counts, never once per connection.
//!
//! What it lets through is an ordinary `TcpStream` carrying a permit that
//! is given back when the connection closes.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tracing::warn;

/// How often, at most, a listener logs that a limit bit.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// How long accepting pauses when the system has no descriptor to give:
/// long enough not to spin, short enough that a freed one is soon used.
const PAUSE_WHEN_OUT_OF_DESCRIPTORS: Duration = Duration::from_millis(100);

/// Descriptors kept for everything but connections on this listener
/// (files, the other listeners, sockets to other planes), when the
/// connection limit is clipped to what the process may open.
const RESERVED_DESCRIPTORS: u64 = 256;

/// The gate's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateLimits {
    /// Connections open at once; one more is closed as soon as it comes.
    pub max_connections: usize,
    /// How long a new connection may stay silent before it is closed.
    pub handshake_timeout: Duration,
}

/// What a gate turned away so far.
#[derive(Debug, Default)]
pub struct GateCounters {
    /// Connections closed because `max_connections` were open.
    pub over_limit: AtomicU64,
    /// Connections closed because they sent nothing in time.
    pub silent: AtomicU64,
    /// Times the system had no descriptor for a new connection.
    pub out_of_descriptors: AtomicU64,
}

/// A connection the gate let through.
#[derive(Debug)]
pub struct GatedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl GatedStream {
    /// The client's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }
}

impl AsyncRead for GatedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for GatedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// tonic reads the client's address from this (the authenticator counts
/// failures per address).
impl tonic::transport::server::Connected for GatedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

/// Starts letting `listener`'s connections through `limits`; `name` says
/// which listener in the log. The stream ends when the task it runs on
/// ends; dropping the stream stops accepting.
///
/// `max_connections` is clipped to what the process may open, after
/// raising its soft descriptor limit as far as the hard one allows.
pub fn open(
    listener: TcpListener,
    limits: GateLimits,
    name: &'static str,
) -> (ReceiverStream<io::Result<GatedStream>>, Arc<GateCounters>) {
    let max = clip_to_descriptors(limits.max_connections, name);
    let counters = Arc::new(GateCounters::default());
    // Connections that spoke, waiting for the server to take them; a
    // short queue, since the server takes them as fast as they come.
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(
        listener,
        Arc::new(Semaphore::new(max)),
        limits.handshake_timeout,
        tx,
        counters.clone(),
        Throttle::new(name, max),
    ));
    (ReceiverStream::new(rx), counters)
}

async fn accept_loop(
    listener: TcpListener,
    permits: Arc<Semaphore>,
    handshake_timeout: Duration,
    tx: mpsc::Sender<io::Result<GatedStream>>,
    counters: Arc<GateCounters>,
    mut log: Throttle,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tx.closed() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if out_of_descriptors(&e) => {
                counters.out_of_descriptors.fetch_add(1, Ordering::Relaxed);
                log.note(&counters);
                tokio::time::sleep(PAUSE_WHEN_OUT_OF_DESCRIPTORS).await;
                continue;
            }
            // A connection reset before it was taken, and the like: that
            // connection's trouble, not the listener's.
            Err(_) => continue,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            counters.over_limit.fetch_add(1, Ordering::Relaxed);
            log.note(&counters);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (tx, silent) = (tx.clone(), counters.clone());
        tokio::spawn(async move {
            // Whether it spoke: a byte waits to be read. A connection
            // closed at once (peek reads 0) has nothing to serve either.
            let mut byte = [0u8; 1];
            match tokio::time::timeout(handshake_timeout, stream.peek(&mut byte)).await {
                Ok(Ok(n)) if n > 0 => {
                    let gated = GatedStream {
                        stream,
                        _permit: permit,
                    };
                    let _ = tx.send(Ok(gated)).await;
                }
                Ok(_) => {}
                Err(_) => {
                    silent.silent.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        log.note(&counters);
    }
}

fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Logs what the gate turned away since the last line, at most once per
/// [`LOG_EVERY`].
struct Throttle {
    name: &'static str,
    max: usize,
    last: Option<Instant>,
    /// The counts at the last line: (over limit, silent, out of descriptors).
    logged: (u64, u64, u64),
}

impl Throttle {
    fn new(name: &'static str, max: usize) -> Self {
        Self {
            name,
            max,
            last: None,
            logged: (0, 0, 0),
        }
    }

    fn note(&mut self, counters: &GateCounters) {
        let now = (
            counters.over_limit.load(Ordering::Relaxed),
            counters.silent.load(Ordering::Relaxed),
            counters.out_of_descriptors.load(Ordering::Relaxed),
        );
        if now == self.logged || self.last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return;
        }
        warn!(
            listener = self.name,
            max_connections = self.max,
            closed_over_limit = now.0 - self.logged.0,
            closed_silent = now.1 - self.logged.1,
            out_of_descriptors = now.2 - self.logged.2,
            "turning connections away: too many open, silent past the handshake timeout, or no \
             file descriptor left"
        );
        self.logged = now;
        self.last = Some(Instant::now());
    }
}

/// Raises the process's soft limit on open files to its hard limit (once;
/// later calls read it), and clips `max` to what it leaves for connections.
fn clip_to_descriptors(max: usize, name: &'static str) -> usize {
    let Some(allowed) = raise_descriptor_limit() else {
        return max;
    };
    let room = allowed.saturating_sub(RESERVED_DESCRIPTORS).max(1);
    if (max as u64) > room {
        warn!(
            listener = name,
            configured = max,
            open_files_limit = allowed,
            using = room,
            "the connection limit is above what this process may open; using less (raise \
             LimitNOFILE / ulimit -n to allow more)"
        );
        return room as usize;
    }
    max
}

/// This process's limit on open files: soft (what applies) and hard
/// (how far the soft one may be raised).
pub(crate) fn open_files_limit() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}

/// The soft limit on open files after raising it to the hard limit.
fn raise_descriptor_limit() -> Option<u64> {
    let mut limit = open_files_limit()?;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_stream::StreamExt;

    const WAIT: Duration = Duration::from_secs(10);

    async fn gate(
        max: usize,
        timeout_ms: u64,
    ) -> (
        SocketAddr,
        ReceiverStream<io::Result<GatedStream>>,
        Arc<GateCounters>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = GateLimits {
            max_connections: max,
            handshake_timeout: Duration::from_millis(timeout_ms),
        };
        let (incoming, counters) = open(listener, limits, "test");
        (addr, incoming, counters)
    }

    /// Reads until the server closes `stream`; panics if it does not in time.
    async fn closed_by_server(stream: &mut TcpStream) {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(WAIT, stream.read(&mut buf)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            other => panic!("the connection was not closed: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_connection_that_speaks_is_let_through_with_its_bytes() {
        let (addr, mut incoming, _) = gate(4, 5_000).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"hello").await.unwrap();
        let mut server = tokio::time::timeout(WAIT, incoming.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let mut got = [0u8; 5];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello", "the peeked byte is still there to read");
        assert_eq!(server.peer_addr().unwrap(), client.local_addr().unwrap());
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_after_the_handshake_timeout() {
        let (addr, _incoming, counters) = gate(4, 200).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        closed_by_server(&mut client).await;
        assert_eq!(counters.silent.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_closed_and_a_freed_place_is_reused() {
        let (addr, mut incoming, counters) = gate(2, 5_000).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut client = TcpStream::connect(addr).await.unwrap();
            client.write_all(b"x").await.unwrap();
            let server = tokio::time::timeout(WAIT, incoming.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            held.push((client, server));
        }
        let mut third = TcpStream::connect(addr).await.unwrap();
        closed_by_server(&mut third).await;
        assert_eq!(counters.over_limit.load(Ordering::Relaxed), 1);

        // One closes; the next connection gets its place.
        drop(held.pop());
        speaks_and_gets_in(addr, &mut incoming, "the freed place was used").await;
    }

    /// A new connection that speaks is let through `incoming`.
    async fn speaks_and_gets_in(
        addr: SocketAddr,
        incoming: &mut ReceiverStream<io::Result<GatedStream>>,
        what: &str,
    ) {
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"y").await.unwrap();
        let server = tokio::time::timeout(WAIT, incoming.next()).await;
        assert!(matches!(server, Ok(Some(Ok(_)))), "{what}");
    }

    #[tokio::test]
    async fn silent_connections_do_not_hold_places_once_closed() {
        let (addr, mut incoming, counters) = gate(3, 200).await;
        let mut silent = Vec::new();
        for _ in 0..3 {
            silent.push(TcpStream::connect(addr).await.unwrap());
        }
        for client in &mut silent {
            closed_by_server(client).await;
        }
        assert_eq!(counters.silent.load(Ordering::Relaxed), 3);
        speaks_and_gets_in(addr, &mut incoming, "a speaking client got in").await;
    }
}
