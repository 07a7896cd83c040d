//! Memory per idle voice session: how much a data plane's resident memory
//! grows for each session that is admitted and then says nothing.
//!
//! ```sh
//! cargo bench -p openspeak-dataplane --bench idle_memory -- udp 10000
//! cargo bench -p openspeak-dataplane --bench idle_memory -- quic 5000
//! ```
//!
//! The voice endpoint runs in a child process of its own (this program
//! again, with `OPENSPEAK_IDLE_MEMORY_KEY` set), so that the clients' own
//! state does not count: the parent reads the child's resident set from
//! `/proc` before the first session and after the last is admitted, and
//! divides the growth by the number of sessions. The child's endpoint is
//! the one the data plane runs, without the control link or metrics,
//! whose memory does not grow with sessions. Each session is also a
//! member of a channel of 50, as the control plane would make it, so the
//! router's entry counts, in every UDP worker's copy of the router: the
//! endpoint has as many UDP workers as the data plane has by default (one
//! per core), or `OPENSPEAK_IDLE_MEMORY_WORKERS`.
//!
//! UDP sessions share 64 client sockets (the data plane keys a session by
//! its id, not its address); each presents its ticket, then pings once, so
//! that the data plane also holds its address. QUIC sessions are separate
//! connections over 64 client endpoints, each through its ticket exchange.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use openspeak_client::VoiceClient;
use openspeak_dataplane::{Member, MemberChange, SessionId};
use openspeak_shared::ticket::{TicketIssuer, TicketKey};
use openspeak_testkit::voice;
use openspeak_voice::udp::{self, Control, Direction, KIND_PING, Packet, SessionKey};
use tokio::net::UdpSocket;

const KEY_ENV: &str = "OPENSPEAK_IDLE_MEMORY_KEY";
const WORKERS_ENV: &str = "OPENSPEAK_IDLE_MEMORY_WORKERS";
/// Members per channel.
const CHANNEL: u32 = 50;
/// Client sockets (UDP) or endpoints (QUIC) the sessions are spread over.
const CLIENT_SOCKETS: usize = 64;
/// How long one session may take to be admitted before the run fails.
const SETUP_LIMIT: Duration = Duration::from_secs(10);

fn main() {
    if let Ok(key) = std::env::var(KEY_ENV) {
        return serve(&key);
    }
    // `cargo bench` passes `--bench`; the rest are ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (transport, sessions) = match args.as_slice() {
        [t, n] if t == "udp" || t == "quic" => (t.clone(), n.parse::<u32>().expect("a count")),
        [] => ("udp".to_owned(), 1000),
        _ => panic!("usage: idle_memory [udp|quic] [SESSIONS]"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(measure(&transport, sessions));
}

/// The child: a voice endpoint that accepts tickets sealed with `key`
/// (hex: id, then the secret), which answers each line on stdin (a
/// number of sessions, which it makes members first) with its connection
/// count and resident set.
fn serve(key: &str) {
    let (id, secret) = key.split_once(':').expect("id:secret");
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(secret, &mut bytes).expect("a 32-byte hex secret");
    let key = TicketKey {
        id: id.parse().expect("a key id"),
        secret: bytes,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let workers = std::env::var(WORKERS_ENV).map_or_else(
        |_| std::thread::available_parallelism().map_or(1, |n| n.get()),
        |w| w.parse().expect("a number of workers"),
    );
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        runtime.block_on(async {
            let server = voice::start_with_key_and_udp_workers(key, workers);
            ready_tx
                .send((
                    server.addr,
                    server.udp_addr,
                    server.pin_hex(),
                    server.handle.clone(),
                ))
                .expect("the main thread waits");
            std::future::pending::<()>().await;
        });
    });
    let (addr, udp_addr, pin, handle) = ready_rx.recv().expect("the endpoint starts");
    println!("{addr} {udp_addr} {pin} {workers}");
    let members = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let mut made = 0;
    for line in std::io::stdin().lines() {
        let Ok(line) = line else {
            break;
        };
        let upto: u32 = line.trim().parse().expect("a number of sessions");
        let changes = (made + 1..=upto)
            .map(|s| {
                let member = Member {
                    channel: Some(format!("c{}", s / CHANNEL).into()),
                    muted: false,
                    deafened: false,
                };
                MemberChange::Set(SessionId(s), member)
            })
            .collect();
        members
            .block_on(handle.apply(changes))
            .expect("the endpoint takes the members");
        made = made.max(upto);
        // The workers' copies follow the loop's; a round trip through each
        // of their routers shows they are there.
        members
            .block_on(handle.router_stats())
            .expect("the routers answer");
        println!("{} {}", handle.stats().connections, rss_kib("self"));
    }
}

/// `VmRSS` of `/proc/<pid>/status`, in KiB.
fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("Linux /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

/// The child process and the pipe to ask it for its figures.
struct Endpoint {
    child: Child,
    ask: ChildStdin,
    answers: BufReader<ChildStdout>,
    addr: SocketAddr,
    udp_addr: SocketAddr,
    pin: String,
}

impl Endpoint {
    fn start(key: &TicketKey) -> Endpoint {
        let mut child = Command::new(std::env::current_exe().expect("this program"))
            .env(KEY_ENV, format!("{}:{}", key.id, hex::encode(key.secret)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the endpoint process starts");
        let ask = child.stdin.take().expect("piped");
        let mut answers = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        answers
            .read_line(&mut line)
            .expect("the endpoint says where it is");
        let mut words = line.split_whitespace();
        let mut next = || words.next().expect("four words").to_owned();
        let (addr, udp_addr, pin) = (next(), next(), next());
        eprintln!("endpoint with {} UDP workers", next());
        Endpoint {
            child,
            ask,
            answers,
            addr: addr.parse().expect("an address"),
            udp_addr: udp_addr.parse().expect("an address"),
            pin,
        }
    }

    /// The endpoint's connection count and resident set (KiB), once
    /// sessions 1 to `members` are members of channels.
    fn figures(&mut self, members: u32) -> (u64, u64) {
        writeln!(self.ask, "{members}").expect("the endpoint listens");
        let mut line = String::new();
        self.answers.read_line(&mut line).expect("an answer");
        let mut words = line
            .split_whitespace()
            .map(|w| w.parse().expect("a number"));
        (words.next().expect("two"), words.next().expect("two"))
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn measure(transport: &str, sessions: u32) {
    let key = TicketKey::generate(7).expect("a ticket key");
    let issuer = TicketIssuer::new(key.clone());
    let mut endpoint = Endpoint::start(&key);
    // One session first, so that what every session needs once (buffers
    // sized on first use, the allocator's first arenas) is in the base.
    let started = Instant::now();
    let mut held = Held::default();
    open(transport, &endpoint, &issuer, 1..2, &mut held).await;
    let (one, before) = endpoint.figures(1);
    assert_eq!(one, 1, "the first session is admitted");
    open(transport, &endpoint, &issuer, 2..sessions + 2, &mut held).await;
    let (count, after) = endpoint.figures(sessions + 1);
    let setup = started.elapsed();
    assert_eq!(
        count,
        u64::from(sessions) + 1,
        "every session is admitted and still there"
    );
    let per_session = (after.saturating_sub(before) * 1024) as f64 / f64::from(sessions);
    println!(
        "{transport}: {sessions} idle sessions in {:.1} s; endpoint resident set {before} KiB -> {after} KiB; {per_session:.0} bytes ({:.2} KiB) per session",
        setup.as_secs_f64(),
        per_session / 1024.0
    );
}

/// What keeps the sessions open while they are measured.
#[derive(Default)]
struct Held {
    quic: Vec<VoiceClient>,
    udp: Vec<UdpSocket>,
}

async fn open(
    transport: &str,
    endpoint: &Endpoint,
    issuer: &TicketIssuer,
    ids: std::ops::Range<u32>,
    held: &mut Held,
) {
    let total = ids.len();
    let progress = |done: usize| {
        if done.is_multiple_of(1000) {
            eprintln!("  {done} of {total} sessions open");
        }
    };
    if transport == "udp" {
        let sockets = CLIENT_SOCKETS.min(total);
        let mut tasks = Vec::new();
        for s in 0..sockets {
            let socket = UdpSocket::bind("127.0.0.1:0").await.expect("a socket");
            let mine: Vec<u32> = ids.clone().skip(s).step_by(sockets).collect();
            let tickets: Vec<Vec<u8>> = mine
                .iter()
                .map(|id| voice::ticket(issuer, *id, 3600))
                .collect();
            let to = endpoint.udp_addr;
            tasks.push(tokio::spawn(async move {
                for (id, ticket) in mine.into_iter().zip(tickets) {
                    join_udp(&socket, to, id, &ticket).await;
                }
                socket
            }));
        }
        for (done, task) in tasks.into_iter().enumerate() {
            held.udp.push(task.await.expect("a UDP client task"));
            progress((done + 1) * total / sockets);
        }
    } else {
        let clients: Vec<quinn::Endpoint> = (0..CLIENT_SOCKETS.min(total))
            .map(|_| openspeak_client::voice::client_endpoint(endpoint.addr).expect("an endpoint"))
            .collect();
        let mut opened = futures::stream::iter(ids.enumerate())
            .map(|(i, id)| {
                let client = clients[i % clients.len()].clone();
                let ticket = voice::ticket(issuer, id, 3600);
                let (addr, pin) = (endpoint.addr, endpoint.pin.clone());
                async move {
                    tokio::time::timeout(
                        SETUP_LIMIT,
                        VoiceClient::connect_via(&client, addr, &pin, &ticket),
                    )
                    .await
                    .expect("admitted in time")
                    .expect("admitted")
                }
            })
            .buffer_unordered(64);
        while let Some(client) = opened.next().await {
            held.quic.push(client);
            progress(held.quic.len());
        }
    }
}

/// Presents `ticket` for session `id` and pings once, retrying each until
/// answered (the packets may be lost like any UDP packet).
async fn join_udp(socket: &UdpSocket, to: SocketAddr, id: u32, ticket: &[u8]) {
    let key = SessionKey::new(&voice::session_key(id));
    let hello = udp::encode_ticket(ticket).expect("a ticket fits");
    let mut ping = Vec::new();
    udp::seal_into(
        &key,
        Direction::ToDataplane,
        id,
        0,
        &[KIND_PING, 0, 0, 0, 0, 0, 0, 0, 1],
        &mut ping,
    );
    for (packet, want) in [(&hello, "ACCEPTED"), (&ping, "PONG")] {
        tokio::time::timeout(SETUP_LIMIT, async {
            loop {
                socket.send_to(packet, to).await.expect("sent");
                let answered = tokio::time::timeout(Duration::from_millis(250), async {
                    let mut buf = [0u8; 2048];
                    loop {
                        let len = socket.recv(&mut buf).await.expect("received");
                        if let Some(got) = control(&key, id, &mut buf[..len]) {
                            return got;
                        }
                    }
                })
                .await;
                match answered {
                    Ok(Control::Accepted(_)) if want == "ACCEPTED" => return,
                    Ok(Control::Pong(_)) if want == "PONG" => return,
                    _ => {}
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("session {id}: no {want}"));
    }
}

/// The control message in `packet`, if it is session `id`'s.
fn control(key: &SessionKey, id: u32, packet: &mut [u8]) -> Option<Control> {
    let Ok(Packet::Sealed(header)) = udp::parse(packet) else {
        return None;
    };
    if header.session_id != id {
        return None;
    }
    let plaintext = udp::open_in_place(key, Direction::ToClient, header, packet).ok()?;
    Control::parse(plaintext)
}
