//! `floor`: what the kernel alone costs for the data plane's fan-out, so
//! that every data-plane figure can be quoted as a ratio to it, measured
//! in the same sitting on the same machine.
//!
//! One thread plays a data plane that does nothing but send: for each
//! speaker packet it sends the same bytes to every listener's socket on
//! loopback with one batched `sendmmsg` (one `sendmsg` each elsewhere),
//! paced as the voice scenario's speakers are, or as fast as it can with
//! `--saturate`. Another thread reads the listeners' sockets, as clients
//! would. The sender's own CPU time (`RUSAGE_THREAD`) over the packets it
//! sent is the floor per forwarded packet: on loopback a send includes
//! delivering the packet into the receiving socket. No server is involved.
//!
//! How the listeners read matters to the sender, because on loopback the
//! sender also wakes a reader that sleeps on its socket. The load
//! generator's clients do sleep on theirs (tokio, so `epoll`), and a data
//! plane's packet wakes them. So by default the listeners here are read
//! the same way, by tasks on a runtime that sleeps until a packet comes
//! (`--readers waiting`); `--readers polling` reads them without ever
//! sleeping on a socket, which leaves the wake-ups out (the floor of the
//! earlier figures in `BENCHMARKS.md`).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use crate::common::report::JsonReport;
use crate::common::stats::{micros_per, per_second};

/// The flags of `floor`.
#[derive(Debug, Clone, Args)]
pub struct FloorArgs {
    /// Listeners each speaker packet goes to (the fan-out).
    #[arg(long, value_name = "N", default_value_t = 49,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub listeners: u32,
    /// Speaker packets per second in all (the voice scenario's speakers ×
    /// their pps: 5 × 50 for `--scenario fanout`). Ignored with
    /// `--saturate`.
    #[arg(long, value_name = "R", default_value_t = 250,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate: u32,
    /// Bytes per packet: what the data plane writes per listener (a
    /// forwarded 80-byte payload sealed for plain UDP is 122 bytes).
    #[arg(long, value_name = "B", default_value_t = 122,
          value_parser = clap::value_parser!(u32).range(1..=1400))]
    pub packet_bytes: u32,
    /// Seconds to send for.
    #[arg(long, value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,
    /// Send as fast as one thread can instead: the packets per second one
    /// core reaches at the floor.
    #[arg(long)]
    pub saturate: bool,
    /// How the listeners' sockets are read: `waiting` (sleeping on them
    /// until a packet comes, as the load generator's clients do) or
    /// `polling` (never sleeping on a socket, so no wake-ups).
    #[arg(long, value_enum, value_name = "HOW", default_value_t = Readers::Waiting)]
    pub readers: Readers,
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// How the floor's listeners read their sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Readers {
    /// Tasks sleeping on each socket until a packet comes: the sender's
    /// delivery wakes them, as it wakes real clients.
    Waiting,
    /// One thread reading every socket without blocking, napping when all
    /// are empty: no delivery ever wakes a reader.
    Polling,
}

/// What a `floor` run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FloorReport {
    /// `"floor"`.
    pub scenario: &'static str,
    /// The fan-out.
    pub listeners: u32,
    /// Speaker packets per second asked for; 0 with `--saturate`.
    pub rate: u32,
    /// Bytes per packet.
    pub packet_bytes: u32,
    /// How the listeners read.
    pub readers: Readers,
    /// How long the sender sent, in seconds.
    pub seconds: f64,
    /// Packets the kernel took (each listener's copy counts once).
    pub sent: u64,
    /// Sends the kernel refused.
    pub send_errors: u64,
    /// Packets the listeners read.
    pub received: u64,
    /// The sender thread's CPU time, user and system, in seconds.
    pub cpu_seconds: f64,
    /// The floor: the sender's CPU per packet sent, in microseconds.
    pub cpu_us_per_packet: f64,
    /// The reading thread's CPU time, user and system, in seconds (none
    /// where the platform does not tell a thread's).
    pub reader_cpu_seconds: Option<f64>,
    /// The readers' CPU per packet read, in microseconds: the least a
    /// client process pays to take in what a data plane forwards.
    pub reader_cpu_us_per_packet: Option<f64>,
    /// Packets sent per second of wall time.
    pub packets_per_second: f64,
}

impl JsonReport for FloorReport {}

impl FloorReport {
    /// The report as text, one fact a line.
    pub fn table(&self) -> String {
        format!(
            "floor: {} listeners, {} B packets, {}, {} readers\n\
             sent                 {} packets in {:.2} s ({:.0}/s), {} refused\n\
             received             {}\n\
             sender CPU           {:.3} s\n\
             floor per packet     {:.2} µs\n\
             reader CPU           {}\n",
            self.listeners,
            self.packet_bytes,
            if self.rate == 0 {
                "as fast as one thread sends".to_owned()
            } else {
                format!("{} speaker packets/s", self.rate)
            },
            match self.readers {
                Readers::Waiting => "waiting",
                Readers::Polling => "polling",
            },
            self.sent,
            self.seconds,
            self.packets_per_second,
            self.send_errors,
            self.received,
            self.cpu_seconds,
            self.cpu_us_per_packet,
            match (self.reader_cpu_seconds, self.reader_cpu_us_per_packet) {
                (Some(s), Some(us)) => format!("{s:.3} s, {us:.2} µs per packet read"),
                (Some(s), None) => format!("{s:.3} s"),
                _ => "not measured here".to_owned(),
            },
        )
    }
}

/// Runs the measurement: binds the listeners on 127.0.0.1, sends, drains,
/// and reports.
pub fn run_floor(args: &FloorArgs) -> io::Result<FloorReport> {
    let listeners: Vec<UdpSocket> = (0..args.listeners)
        .map(|_| {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        })
        .collect::<io::Result<_>>()?;
    let targets: Vec<SocketAddr> = listeners
        .iter()
        .map(UdpSocket::local_addr)
        .collect::<io::Result<_>>()?;
    let received = Arc::new(AtomicU64::new(0));
    let readers = Readers::start(args.readers, listeners, received.clone())?;
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    let batch = Batch::new(&targets, vec![0x5a; args.packet_bytes as usize]);
    let result = send_for(args, &sender, batch);
    // Let the last packets land before counting them.
    std::thread::sleep(Duration::from_millis(100));
    let reader_cpu = readers.stop();
    let sent = result?;
    let cpu_seconds = sent.cpu.as_secs_f64();
    let seconds = sent.wall.as_secs_f64();
    let received = received.load(Ordering::Relaxed);
    let reader_cpu_seconds = reader_cpu.map(|cpu| cpu.as_secs_f64());
    Ok(FloorReport {
        scenario: "floor",
        listeners: args.listeners,
        rate: if args.saturate { 0 } else { args.rate },
        packet_bytes: args.packet_bytes,
        readers: args.readers,
        seconds,
        sent: sent.packets,
        send_errors: sent.errors,
        received,
        cpu_seconds,
        cpu_us_per_packet: micros_per(Some(cpu_seconds), sent.packets).unwrap_or(0.0),
        reader_cpu_seconds,
        reader_cpu_us_per_packet: micros_per(reader_cpu_seconds, received),
        packets_per_second: per_second(sent.packets, sent.wall),
    })
}

/// What the sender did.
struct Sent {
    packets: u64,
    errors: u64,
    wall: Duration,
    cpu: Duration,
}

/// Sends the batch once per speaker packet, paced or flat out, for the
/// run's duration; measures its own thread's CPU.
fn send_for(args: &FloorArgs, sender: &UdpSocket, mut batch: Batch) -> io::Result<Sent> {
    let interval = Duration::from_secs(1) / args.rate;
    let duration = Duration::from_secs(args.duration);
    let fan_out = args.listeners as usize;
    let (mut packets, mut errors) = (0u64, 0u64);
    let cpu_start = thread_cpu()?;
    let start = Instant::now();
    let mut next = start;
    // Bounded by the duration: every pass sends or sleeps toward it.
    while start.elapsed() < duration {
        if !args.saturate {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            // Behind (a descheduled thread): carry on from now rather than
            // sending a burst to catch up.
            next = next.max(Instant::now() - interval) + interval;
        }
        let took = batch.send(sender);
        packets += took as u64;
        errors += (fan_out - took) as u64;
    }
    let wall = start.elapsed();
    let cpu = thread_cpu()?.saturating_sub(cpu_start);
    Ok(Sent {
        packets,
        errors,
        wall,
        cpu,
    })
}

/// The thread reading the listeners, and how to stop it.
struct Running {
    /// Ends with the CPU time the thread spent reading.
    thread: std::thread::JoinHandle<Option<Duration>>,
    done: Arc<AtomicBool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Readers {
    /// Starts reading `listeners` on a thread of their own, counting every
    /// packet read into `received`.
    fn start(self, listeners: Vec<UdpSocket>, received: Arc<AtomicU64>) -> io::Result<Running> {
        let done = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let builder = std::thread::Builder::new().name("floor-listeners".into());
        let thread = match self {
            Readers::Polling => {
                let done = done.clone();
                builder.spawn(move || cpu_of(|| drain_until(&listeners, &done, &received)))?
            }
            Readers::Waiting => {
                // Built here so that a failure is this call's error.
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()?;
                let sockets = listeners
                    .into_iter()
                    .map(|s| {
                        let _entered = runtime.enter();
                        tokio::net::UdpSocket::from_std(s)
                    })
                    .collect::<io::Result<Vec<_>>>()?;
                builder.spawn(move || {
                    cpu_of(|| runtime.block_on(wait_on(sockets, received, stopped)))
                })?
            }
        };
        Ok(Running {
            thread,
            done,
            stop: Some(stop),
        })
    }
}

impl Running {
    /// Stops the readers and waits for their thread; the CPU time it
    /// spent, where the platform tells.
    fn stop(mut self) -> Option<Duration> {
        self.done.store(true, Ordering::Relaxed);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.thread.join().ok().flatten()
    }
}

/// Runs `work` and measures the calling thread's CPU time over it.
fn cpu_of(work: impl FnOnce()) -> Option<Duration> {
    let start = thread_cpu().ok();
    work();
    Some(thread_cpu().ok()?.saturating_sub(start?))
}

/// One task per listener, each asleep on its socket until a packet comes,
/// until `stopped` resolves.
async fn wait_on(
    sockets: Vec<tokio::net::UdpSocket>,
    received: Arc<AtomicU64>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for socket in sockets {
        let received = received.clone();
        tasks.spawn(async move {
            let mut buf = [0u8; 2048];
            // Aborted once `stopped` resolves.
            while socket.recv(&mut buf).await.is_ok() {
                received.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let _ = stopped.await;
    tasks.abort_all();
}

/// Reads every listener socket until `done`, counting packets.
fn drain_until(listeners: &[UdpSocket], done: &AtomicBool, received: &AtomicU64) {
    let mut buf = [0u8; 2048];
    while !done.load(Ordering::Relaxed) {
        let mut got = 0u64;
        for socket in listeners {
            while socket.recv(&mut buf).is_ok() {
                got += 1;
            }
        }
        received.fetch_add(got, Ordering::Relaxed);
        if got == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// The CPU time of the calling thread, user and system.
#[cfg(target_os = "linux")]
fn thread_cpu() -> io::Result<Duration> {
    crate::metrics::process::rusage_cpu(libc::RUSAGE_THREAD)
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu() -> io::Result<Duration> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "the sender's CPU time is read with RUSAGE_THREAD, which only Linux has",
    ))
}

/// One speaker packet's fan-out, built once and handed to the kernel in
/// one call per speaker packet, so that the sender spends nothing of its
/// own per packet beyond the system call.
#[cfg(target_os = "linux")]
struct Batch {
    /// One header per target; each points into `names` and at `iov`,
    /// whose heap storage stays put while the batch lives.
    headers: Vec<libc::mmsghdr>,
    _names: Vec<libc::sockaddr_in>,
    _iov: Box<libc::iovec>,
    _packet: Vec<u8>,
}

#[cfg(target_os = "linux")]
impl Batch {
    fn new(targets: &[SocketAddr], packet: Vec<u8>) -> Self {
        let mut names: Vec<libc::sockaddr_in> = targets
            .iter()
            .map(|t| {
                let SocketAddr::V4(v4) = t else {
                    unreachable!("the listeners are bound on 127.0.0.1")
                };
                libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: v4.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*v4.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                }
            })
            .collect();
        let mut iov = Box::new(libc::iovec {
            iov_base: packet.as_ptr() as *mut libc::c_void,
            iov_len: packet.len(),
        });
        let headers = names
            .iter_mut()
            .map(|name| {
                // SAFETY: all-zero is a valid mmsghdr (null pointers, zero
                // lengths), filled in right after.
                let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
                header.msg_hdr.msg_name = (name as *mut libc::sockaddr_in).cast();
                header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
                header.msg_hdr.msg_iov = &mut *iov;
                header.msg_hdr.msg_iovlen = 1;
                header
            })
            .collect();
        Self {
            headers,
            _names: names,
            _iov: iov,
            _packet: packet,
        }
    }

    /// Sends the packet to every target; how many the kernel took.
    fn send(&mut self, socket: &UdpSocket) -> usize {
        use std::os::fd::AsRawFd;
        let mut sent = 0;
        // A partial send leaves the rest for another call; a refusal ends
        // this packet's fan-out.
        while sent < self.headers.len() {
            let rest = &mut self.headers[sent..];
            // SAFETY: every header points at a live sockaddr_in and at the
            // one iovec, which points at the packet with its length (see
            // the struct); the kernel reads those and writes only
            // `msg_len` in the headers given, which `rest` covers.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    rest.as_mut_ptr(),
                    rest.len() as libc::c_uint,
                    0,
                )
            };
            if n <= 0 {
                break;
            }
            sent += n as usize;
        }
        sent
    }
}

/// The fan-out as one `send_to` per target, where `sendmmsg` is missing.
#[cfg(not(target_os = "linux"))]
struct Batch {
    targets: Vec<SocketAddr>,
    packet: Vec<u8>,
}

#[cfg(not(target_os = "linux"))]
impl Batch {
    fn new(targets: &[SocketAddr], packet: Vec<u8>) -> Self {
        Self {
            targets: targets.to_vec(),
            packet,
        }
    }

    fn send(&mut self, socket: &UdpSocket) -> usize {
        self.targets
            .iter()
            .filter(|t| socket.send_to(&self.packet, t).is_ok())
            .count()
    }
}
