//! What the flood tests share: a flood paced in bursts on a task of its
//! own, the conversation that must come through it whole, and a relay
//! that copies a real client's packets so that a flood can be made of
//! their mutants, sent from the client's own address.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::within;

/// A voice packet every 20 ms, as a real client talks.
const FRAME: Duration = Duration::from_millis(20);

/// Sends `count` datagrams made by `make` to `target`, `burst` of them per
/// millisecond at most, cycling over `from`. Paced so that the kernel's
/// receive buffer is never what gives: a loss is the data plane's.
pub fn spawn(
    target: SocketAddr,
    from: Vec<Arc<UdpSocket>>,
    count: usize,
    burst: usize,
    mut make: impl FnMut(usize) -> Vec<u8> + Send + 'static,
) -> JoinHandle<()> {
    assert!(!from.is_empty() && burst > 0);
    tokio::spawn(async move {
        for start in (0..count).step_by(burst) {
            for n in start..(start + burst).min(count) {
                let packet = make(n);
                from[n % from.len()].send_to(&packet, target).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
}

/// `n` sockets on 127.0.0.1 to flood from.
pub async fn sources(n: usize) -> Vec<Arc<UdpSocket>> {
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        sockets.push(Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap()));
    }
    sockets
}

/// Random bytes of a random length under 1,200.
pub fn random(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.random_range(0..1200);
    (0..len).map(|_| rng.random()).collect()
}

/// A mutant of one of `valid`: one in ten replayed as it was, four in ten
/// cut short at a random length, the rest with one to three bits flipped.
/// None of them may be taken as the client's.
pub fn mutant(rng: &mut StdRng, valid: &[Vec<u8>]) -> Vec<u8> {
    let mut packet = valid[rng.random_range(0..valid.len())].clone();
    match rng.random_range(0..10) {
        0 => {}
        1..=4 => packet.truncate(rng.random_range(0..packet.len())),
        _ => {
            for _ in 0..rng.random_range(1..=3) {
                let bit = rng.random_range(0..packet.len() * 8);
                packet[bit / 8] ^= 1 << (bit % 8);
            }
        }
    }
    packet
}

/// `count` mutants of the client's packets that `relay` copied, sent to
/// `target` from the client's own address, `burst` per millisecond.
pub fn mutants(relay: &Relay, target: SocketAddr, count: usize, burst: usize) -> JoinHandle<()> {
    let copies = relay.copies();
    assert!(
        copies.len() >= 50,
        "the relay copied the client's packets: {}",
        copies.len()
    );
    let mut rng = rng(0x3A7A);
    spawn(
        target,
        vec![relay.upstream.clone()],
        count,
        burst,
        move |_| mutant(&mut rng, &copies),
    )
}

/// Puts sessions `talker` and `talker + 1` in a channel of their own on
/// `server`, and starts a relay in front of `target` for the talker.
pub async fn pair_with_relay(server: &super::Server, talker: u32, target: SocketAddr) -> Relay {
    let channel = format!("c{talker}");
    server.member(talker, &channel, false).await;
    server.member(talker + 1, &channel, false).await;
    Relay::start(target).await
}

/// A seeded generator, so that a failing flood can be replayed.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// How a conversation came through a flood.
#[derive(Debug)]
pub struct Conversation {
    pub sent: u32,
    pub heard: u32,
}

impl Conversation {
    /// Panics unless the conversation lasted the flood and lost under 0.1%.
    pub fn assert_whole(&self, flood: &str) {
        let Self { sent, heard } = *self;
        assert!(
            sent >= 100,
            "the conversation ran through the {flood}: {self:?}"
        );
        let lost = sent.saturating_sub(heard);
        assert!(
            f64::from(lost) / f64::from(sent) < 0.001,
            "lost {lost} of {sent} during the {flood}"
        );
    }

    /// Panics if the listener heard more than was sent: a replay of the
    /// talker's own packets (a flood of mutants holds them) heard twice.
    pub fn assert_no_replay_heard(&self) {
        assert!(
            self.heard <= self.sent,
            "no replay was heard twice: {self:?}"
        );
    }
}

/// Panics unless `server`'s endpoint outlived the floods and the process
/// grew by less than 16 MiB since its resident size was `before`; returns
/// the growth in bytes, for the report.
pub fn assert_unharmed(server: &super::Server, before: u64) -> u64 {
    let grown = super::rss().saturating_sub(before);
    assert!(grown < 16 << 20, "memory grew by {grown} bytes");
    assert!(!server.handle.is_closed(), "the endpoint is still running");
    grown
}

/// Keeps a conversation going through `flood`: `say(n)` sends voice packet
/// `n` every 20 ms until the flood is over, and `heard` is the listener's
/// count, which ends two seconds after the last packet it heard.
pub async fn converse_through(
    flood: JoinHandle<()>,
    mut say: impl AsyncFnMut(u32),
    heard: JoinHandle<u32>,
) -> Conversation {
    let mut sent = 0u32;
    let mut ticker = tokio::time::interval(FRAME);
    while !flood.is_finished() {
        ticker.tick().await;
        say(sent).await;
        sent += 1;
        assert!(sent < 50 * 120, "the flood takes more than two minutes");
    }
    flood.await.unwrap();
    let heard = within("the listener's count", heard).await.unwrap();
    Conversation { sent, heard }
}

/// A UDP relay on 127.0.0.1 in front of a server: what a client sends to
/// [`Relay::addr`] goes on to the server from [`Relay::upstream`], and the
/// server's answers go back to the client. The server sees the client at
/// `upstream`, so what a test sends from there comes from the client's own
/// address. The relay keeps copies of the client's packets, and can cut
/// the way back to the client (a path that stops carrying the server's
/// packets).
pub struct Relay {
    pub addr: SocketAddr,
    pub upstream: Arc<UdpSocket>,
    copies: Arc<Mutex<Vec<Vec<u8>>>>,
    cut: Arc<AtomicBool>,
    tasks: [JoinHandle<()>; 2],
}

/// At most this many of the client's packets are kept.
const KEEP: usize = 1000;

impl Relay {
    pub async fn start(server: SocketAddr) -> Self {
        let downstream = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let upstream = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = downstream.local_addr().unwrap();
        let copies = Arc::new(Mutex::new(Vec::new()));
        let cut = Arc::new(AtomicBool::new(false));
        let (client_tx, mut client_rx) = tokio::sync::watch::channel(None);
        let to_server = {
            let (downstream, upstream, copies) =
                (downstream.clone(), upstream.clone(), copies.clone());
            tokio::spawn(async move {
                let mut buf = vec![0; 2048];
                loop {
                    let (len, from) = downstream.recv_from(&mut buf).await.unwrap();
                    client_tx.send_if_modified(|client| client.replace(from) != Some(from));
                    {
                        let mut copies = copies.lock().unwrap();
                        if copies.len() < KEEP {
                            copies.push(buf[..len].to_vec());
                        }
                    }
                    // A send the kernel refuses is a loss on the path, as
                    // on a real network.
                    let _ = upstream.send_to(&buf[..len], server).await;
                }
            })
        };
        let to_client = {
            let (downstream, upstream, cut) = (downstream, upstream.clone(), cut.clone());
            tokio::spawn(async move {
                let mut buf = vec![0; 2048];
                let client = *client_rx.wait_for(Option::is_some).await.unwrap();
                let client = client.unwrap();
                loop {
                    let (len, _) = upstream.recv_from(&mut buf).await.unwrap();
                    if cut.load(Ordering::Relaxed) {
                        continue;
                    }
                    let _ = downstream.send_to(&buf[..len], client).await;
                }
            })
        };
        Self {
            addr,
            upstream,
            copies,
            cut,
            tasks: [to_server, to_client],
        }
    }

    /// Drops (`true`) or again passes on the server's packets to the
    /// client; the client's packets still reach the server.
    pub fn cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::Relaxed);
    }

    /// Forgets the client's packets kept so far.
    pub fn forget(&self) {
        self.copies.lock().unwrap().clear();
    }

    /// The client's packets kept since the last [`Relay::forget`].
    pub fn copies(&self) -> Vec<Vec<u8>> {
        self.copies.lock().unwrap().clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
