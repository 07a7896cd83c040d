//! The plain-UDP fan-out's way out: threads that hand sealed packets to the
//! kernel, so that the loop's one core only routes and seals.
//!
//! Over plain UDP the kernel's send path is most of the cost of a forwarded
//! packet (`docs/PERFORMANCE.md`): the loop thread routing and sealing
//! for one core's worth of sends would sit mostly in `sendmmsg`. Each
//! worker owns a duplicate of the voice socket's descriptor, so packets
//! leave from the port clients know; the kernel's UDP send path takes no
//! socket-wide lock, so workers sending on one socket at once do not wait
//! on each other. Receiving stays with the loop, on the one socket: the
//! replay window, the address a session is learned at and the router all
//! live there.
//!
//! Waking a sleeping thread costs more than sending a few dozen packets
//! (about 120 µs of CPU a hand-over on the 2-core virtual machines this
//! was measured on, BENCHMARKS.md "Send workers and capacity"), so only
//! full batches are handed over; what is left at the end of a drain is
//! sent by the loop while its worker is idle. At voice rates the workers
//! then sleep, and they take over as batches fill. A listener's packets
//! always go through the same worker (chosen by its address), or through
//! the loop only while that worker has nothing queued or in hand, so they
//! leave in the order the router released them. A worker that falls
//! [`QUEUE`] batches behind has its new batches dropped and counted, as a
//! full socket buffer would drop them.
//!
//! Off by default (`dataplane.udp_send_workers` = 0): on two cores, with
//! the load generator beside the data plane, a worker only competed with
//! the loop and forwarded no more.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use super::counters::Counters;
use crate::udp::{Flushed, SendBatch};

/// Batches that may wait for one worker before new ones are dropped: at
/// 64 packets a batch, thousands of packets, tens of milliseconds of a
/// loaded data plane's sends.
const QUEUE: usize = 64;

/// One batch for a worker, and when its input arrived (for the forward
/// delay, which ends when the kernel has the packets).
struct Job {
    batch: SendBatch,
    since: Instant,
}

/// Where the plain-UDP packets of one drain of the router go: one batch
/// per worker, or one batch sent by the loop itself when there are none.
pub(super) struct PlainOut {
    /// One per worker (a listener's by its address), or just one.
    batches: Vec<SendBatch>,
    workers: Vec<Worker>,
    /// Emptied batches coming back from the workers, to be filled again
    /// rather than allocated.
    spares: Receiver<SendBatch>,
    spare_tx: Sender<SendBatch>,
}

struct Worker {
    jobs: Arc<Jobs>,
    thread: Option<JoinHandle<()>>,
}

/// One worker's queue. A mutex and a condition variable rather than a
/// channel: std's channels spin and yield before they sleep, which at
/// voice rates (a batch every few milliseconds) cost the process more CPU
/// than the sends themselves; this sleeps in the kernel at once.
#[derive(Default)]
struct Jobs {
    queue: Mutex<Queue>,
    ready: Condvar,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// The worker is sending a job it took.
    busy: bool,
    /// Set when the loop is gone: send what is queued, then stop.
    closed: bool,
}

impl Jobs {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `job`, or gives it back when [`QUEUE`] jobs already wait.
    fn push(&self, job: Job) -> Result<(), Job> {
        let mut queue = self.lock();
        if queue.jobs.len() >= QUEUE {
            return Err(job);
        }
        queue.jobs.push_back(job);
        let was_empty = queue.jobs.len() == 1;
        drop(queue);
        // A worker with jobs queued before this one is awake already.
        if was_empty {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Whether the worker has nothing queued and nothing in hand: then
    /// the loop may send on its own without overtaking its packets.
    fn idle(&self) -> bool {
        let queue = self.lock();
        queue.jobs.is_empty() && !queue.busy
    }

    /// The next job, waiting for one (the job before it is done); `None`
    /// once closed and empty.
    fn pop(&self) -> Option<Job> {
        let mut queue = self.lock();
        queue.busy = false;
        loop {
            if let Some(job) = queue.jobs.pop_front() {
                queue.busy = true;
                return Some(job);
            }
            if queue.closed {
                return None;
            }
            queue = self.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }
}

impl PlainOut {
    /// Sending on the loop's own thread.
    pub(super) fn inline() -> PlainOut {
        let (spare_tx, spares) = mpsc::channel();
        PlainOut {
            batches: vec![SendBatch::default()],
            workers: Vec::new(),
            spares,
            spare_tx,
        }
    }

    /// `count` worker threads sending on duplicates of `socket`; with 0,
    /// the same as [`PlainOut::inline`].
    pub(super) fn with_workers(
        socket: BorrowedFd<'_>,
        count: usize,
        counters: &Arc<Counters>,
    ) -> io::Result<PlainOut> {
        let mut out = PlainOut::inline();
        if count == 0 {
            return Ok(out);
        }
        out.batches = (0..count).map(|_| SendBatch::default()).collect();
        for i in 0..count {
            let socket = UdpSocket::from(socket.try_clone_to_owned()?);
            let jobs = Arc::new(Jobs::default());
            let queue = Arc::clone(&jobs);
            let counters = Arc::clone(counters);
            let spares = out.spare_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("udp-send-{i}"))
                .spawn(move || work(&socket, &queue, &counters, &spares))?;
            out.workers.push(Worker {
                jobs,
                thread: Some(thread),
            });
        }
        Ok(out)
    }

    /// Worker threads (0: the loop sends).
    pub(super) fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Adds `packet` for `to`; returns the batch to pass to
    /// [`PlainOut::send_full`] when it is full.
    pub(super) fn push(&mut self, packet: &[u8], to: SocketAddr) -> Option<usize> {
        let i = if self.batches.len() == 1 {
            0
        } else {
            worker_for(&to, self.batches.len())
        };
        self.batches[i].push(packet, to).then_some(i)
    }

    /// Sends what is left at the end of a drain of the router, with
    /// `since` as when its input arrived. A worker's batch goes to it only
    /// if it is still busy (its listeners' earlier packets must leave
    /// first); an idle worker's is sent right here. At voice rates a drain
    /// is a few dozen packets, and waking a sleeping thread for them cost
    /// more than sending them (BENCHMARKS.md, "Send workers"): the workers
    /// take over only as the load grows and batches fill.
    pub(super) fn send_rest(
        &mut self,
        socket: BorrowedFd<'_>,
        counters: &Counters,
        since: Instant,
    ) {
        for i in 0..self.batches.len() {
            if self.batches[i].len() == 0 {
                continue;
            }
            match self.workers.get(i) {
                Some(worker) if !worker.jobs.idle() => self.hand_over(i, counters, since),
                _ => self.send_here(i, socket, counters, since),
            }
        }
    }

    /// Sends batch `i`, which is full: to its worker, or right here when
    /// there are none.
    pub(super) fn send_full(
        &mut self,
        i: usize,
        socket: BorrowedFd<'_>,
        counters: &Counters,
        since: Instant,
    ) {
        if self.workers.is_empty() {
            self.send_here(i, socket, counters, since);
        } else {
            self.hand_over(i, counters, since);
        }
    }

    /// Sends batch `i` on the loop's thread.
    fn send_here(&mut self, i: usize, socket: BorrowedFd<'_>, counters: &Counters, since: Instant) {
        let flushed = self.batches[i].flush(socket);
        note(counters, flushed, since);
    }

    /// Queues batch `i` for its worker, or drops and counts its packets
    /// when the worker is [`QUEUE`] batches behind.
    fn hand_over(&mut self, i: usize, counters: &Counters, since: Instant) {
        let spare = self.spares.try_recv().unwrap_or_default();
        let batch = std::mem::replace(&mut self.batches[i], spare);
        if let Err(job) = self.workers[i].jobs.push(Job { batch, since }) {
            let mut batch = job.batch;
            counters
                .dropped_send_error
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            batch.clear();
            let _ = self.spare_tx.send(batch);
        }
    }
}

impl Drop for PlainOut {
    /// Lets each worker send what it holds, then waits for it.
    fn drop(&mut self) {
        for worker in &self.workers {
            worker.jobs.close();
        }
        for worker in &mut self.workers {
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// A worker's life: send each batch it is given, count it, give the
/// emptied batch back; until the loop drops its end.
fn work(socket: &UdpSocket, jobs: &Jobs, counters: &Counters, spares: &Sender<SendBatch>) {
    while let Some(Job { mut batch, since }) = jobs.pop() {
        let flushed = batch.flush(socket.as_fd());
        note(counters, flushed, since);
        let _ = spares.send(batch);
    }
}

/// Counts what one flush did, and its packets' forward delay: from when
/// their input arrived to now, one clock read for the batch.
fn note(counters: &Counters, flushed: Flushed, since: Instant) {
    counters
        .datagrams_out
        .fetch_add(flushed.sent as u64, Ordering::Relaxed);
    counters
        .dropped_send_error
        .fetch_add(flushed.refused as u64, Ordering::Relaxed);
    let delay = Instant::now().saturating_duration_since(since);
    counters
        .forward_delay
        .record_many(delay, flushed.sent as u64);
}

/// The worker that sends to `to`, of `workers`: the same one for as long
/// as the address stays, so a listener's packets keep their order.
fn worker_for(to: &SocketAddr, workers: usize) -> usize {
    let ip = match to {
        SocketAddr::V4(a) => u64::from(a.ip().to_bits()),
        SocketAddr::V6(a) => {
            let bits = a.ip().to_bits();
            (bits as u64) ^ ((bits >> 64) as u64)
        }
    };
    // A multiplicative mix (Fibonacci hashing), so that consecutive ports
    // on one address spread over the workers.
    let mixed = (ip ^ (u64::from(to.port()) << 32) ^ u64::from(to.port()))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((mixed >> 32) % workers as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::time::Duration;

    #[test]
    fn a_listener_always_gets_the_same_worker_and_listeners_spread() {
        let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
        for port in [1, 40_000, 65_535] {
            assert_eq!(worker_for(&addr(port), 4), worker_for(&addr(port), 4));
        }
        let mut per_worker = [0; 4];
        for port in 40_000..40_400 {
            per_worker[worker_for(&addr(port), 4)] += 1;
        }
        assert!(
            per_worker.iter().all(|&n| n >= 60),
            "400 listeners on one host spread over 4 workers: {per_worker:?}"
        );
        let v6 = SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 9));
        assert!(worker_for(&v6, 3) < 3);
    }

    /// Two workers send 1,000 packets to 10 listeners over loopback: every
    /// packet arrives, each listener's in the order pushed, and the
    /// counters say so.
    #[test]
    fn workers_send_everything_in_order_per_listener_and_count_it() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let listeners: Vec<UdpSocket> = (0..10)
            .map(|_| {
                let l = UdpSocket::bind("127.0.0.1:0").unwrap();
                l.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                l
            })
            .collect();
        let counters = Arc::new(Counters::default());
        let mut out = PlainOut::with_workers(socket.as_fd(), 2, &counters).unwrap();
        assert_eq!(out.workers(), 2);
        let since = Instant::now();
        // Full batches go as they fill (16 jobs at most, fewer than a
        // worker's queue holds, so none may be dropped), the rest at the end.
        for n in 0u32..100 {
            for l in &listeners {
                if let Some(i) = out.push(&n.to_be_bytes(), l.local_addr().unwrap()) {
                    out.send_full(i, socket.as_fd(), &counters, since);
                }
            }
        }
        out.send_rest(socket.as_fd(), &counters, since);
        for l in &listeners {
            let mut buf = [0; 8];
            for n in 0u32..100 {
                let (len, from) = l.recv_from(&mut buf).expect("every packet arrives");
                assert_eq!(from, socket.local_addr().unwrap(), "from the voice port");
                assert_eq!(&buf[..len], n.to_be_bytes(), "in order");
            }
        }
        drop(out);
        let c = counters.snapshot();
        assert_eq!(c.datagrams_out, 1_000);
        assert_eq!(c.dropped_send_error, 0);
        assert_eq!(c.forward_delay.count(), 1_000);
        let senders: HashSet<usize> = listeners
            .iter()
            .map(|l| worker_for(&l.local_addr().unwrap(), 2))
            .collect();
        assert_eq!(senders.len(), 2, "both workers had listeners");
    }

    #[test]
    fn inline_sends_on_the_loops_own_thread() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let counters = Counters::default();
        let mut out = PlainOut::inline();
        assert_eq!(out.workers(), 0);
        assert_eq!(out.push(b"hi", listener.local_addr().unwrap()), None);
        out.send_rest(socket.as_fd(), &counters, Instant::now());
        let mut buf = [0; 4];
        assert_eq!(listener.recv(&mut buf).unwrap(), 2);
        assert_eq!(counters.snapshot().datagrams_out, 1);
    }
}
