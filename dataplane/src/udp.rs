//! The voice socket's reads and writes, with the kernel's receive time of
//! each packet.
//!
//! The data plane times how long voice spends inside it. Timing from the
//! moment its loop reads a packet would leave out the wait in the socket's
//! receive queue, which is where a busy or descheduled data plane makes
//! packets wait. So on Linux the socket asks the kernel to stamp each packet
//! as it arrives (`SO_TIMESTAMPNS`), and reads go through `recvmsg` to get
//! the stamp. Elsewhere reads are plain and carry no stamp; the delay then
//! starts at the read.

use std::io;
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::time::{Instant, SystemTime};

use quinn_proto::Transmit;
use tokio::net::UdpSocket;

/// One packet read off the socket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    /// Bytes of the packet.
    pub len: usize,
    pub from: SocketAddr,
    /// When the kernel queued it, if it said.
    pub arrived: Option<SystemTime>,
}

/// Asks the kernel to stamp every packet `socket` receives.
#[cfg(target_os = "linux")]
pub(crate) fn enable_receive_timestamps(socket: &std::net::UdpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    set_option(socket.as_raw_fd(), libc::SO_TIMESTAMPNS, 1)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn enable_receive_timestamps(_socket: &std::net::UdpSocket) -> io::Result<()> {
    Ok(())
}

/// Elsewhere the kernel's defaults stay: (0, 0) says nothing was set.
#[cfg(not(target_os = "linux"))]
pub(crate) fn size_buffers(_fd: std::os::fd::RawFd, _bytes: usize) -> io::Result<(usize, usize)> {
    Ok((0, 0))
}

/// How many bytes each voice socket asks the kernel to buffer, each way,
/// unless `dataplane.socket_buffer_bytes` says otherwise. The kernel's
/// default (about 208 KiB) holds a few thousand small packets: a burst of
/// garbage at the port, or a moment when the data plane is not scheduled,
/// would then drop real voice with it.
pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// The buffer sizes the kernel holds for `fd` after asking for `bytes`
/// each way: (receive, send), as the kernel reports them halved (it
/// doubles what is asked, for its own bookkeeping). Above
/// `net.core.rmem_max`/`wmem_max` the request is capped, unless the
/// process may force it (CAP_NET_ADMIN), which is tried then.
#[cfg(target_os = "linux")]
pub(crate) fn size_buffers(fd: std::os::fd::RawFd, bytes: usize) -> io::Result<(usize, usize)> {
    let asked = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let mut got = [0usize; 2];
    for (slot, (option, forced)) in got.iter_mut().zip([
        (libc::SO_RCVBUF, libc::SO_RCVBUFFORCE),
        (libc::SO_SNDBUF, libc::SO_SNDBUFFORCE),
    ]) {
        set_option(fd, option, asked)?;
        let mut size = get_option(fd, option)? / 2;
        if (size as usize) < bytes && set_option(fd, forced, asked).is_ok() {
            size = get_option(fd, option)? / 2;
        }
        *slot = usize::try_from(size).unwrap_or(0);
    }
    Ok((got[0], got[1]))
}

/// Sets the `SOL_SOCKET` integer option `name` of `fd`.
#[cfg(target_os = "linux")]
fn set_option(fd: std::os::fd::RawFd, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: a pointer to an int with its exact size, as every SOL_SOCKET
    // integer option takes; a bad fd is an error, not undefined behaviour.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads the `SOL_SOCKET` integer option `name` of `fd`.
#[cfg(target_os = "linux")]
fn get_option(fd: std::os::fd::RawFd, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `value`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Packets read off one socket in one system call (`recvmmsg` on Linux),
/// each in a slot of its own, so that a wake-up's input costs one entry
/// into the kernel rather than one per packet. The slots are allocated
/// once, and a packet is handled in place, where it was read.
///
/// A slot holds [`RecvBatch::SLOT`] bytes, more than any packet a voice
/// client sends: plain-UDP packets stay within 1,200 bytes, and QUIC
/// peers send at most the 1,472 bytes quinn announces as its largest UDP
/// payload. A longer packet is cut short by the kernel; it is counted in
/// [`RecvBatch::truncated`] and not handed on, as it would not parse.
#[derive(Debug, Default)]
pub(crate) struct RecvBatch {
    /// `MAX` slots of `SLOT` bytes, end to end (empty until `new`).
    slots: Vec<u8>,
    /// The packets of the last read: slot and what the kernel said.
    got: Vec<(usize, Received)>,
    truncated: usize,
}

impl RecvBatch {
    /// Most packets read in one call.
    pub(crate) const MAX: usize = 64;
    /// Bytes of each slot.
    pub(crate) const SLOT: usize = 2048;

    pub(crate) fn new() -> RecvBatch {
        RecvBatch {
            slots: vec![0; Self::MAX * Self::SLOT],
            got: Vec::with_capacity(Self::MAX),
            truncated: 0,
        }
    }

    /// Reads what the socket holds, up to [`Self::MAX`] packets, without
    /// waiting: `WouldBlock` when there is nothing (and the socket's
    /// readiness is cleared, as tokio requires). Returns the packets read,
    /// including truncated ones.
    pub(crate) fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        assert_eq!(self.slots.len(), Self::MAX * Self::SLOT, "RecvBatch::new");
        self.got.clear();
        self.truncated = 0;
        socket.try_io(tokio::io::Interest::READABLE, || self.read(socket))
    }

    /// Packets of the last read that are whole.
    pub(crate) fn len(&self) -> usize {
        self.got.len()
    }

    /// Packets of the last read that were longer than a slot (dropped).
    pub(crate) fn truncated(&self) -> usize {
        self.truncated
    }

    /// The `i`th whole packet of the last read, to be handled in place.
    pub(crate) fn get(&mut self, i: usize) -> (&mut [u8], Received) {
        let (slot, received) = self.got[i];
        let start = slot * Self::SLOT;
        (&mut self.slots[start..start + received.len], received)
    }

    /// Files what the kernel said of the packet in `slot`.
    fn note(&mut self, slot: usize, received: Received, truncated: bool) {
        if truncated || received.len > Self::SLOT {
            self.truncated += 1;
        } else {
            self.got.push((slot, received));
        }
    }

    #[cfg(target_os = "linux")]
    fn read(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY (whole function): all-zero is a valid value of these C
        // structs. Each header points at its own name and control buffer
        // on this stack frame and its own iovec, which points at its slot
        // in `self.slots`, with their lengths; the kernel writes at most
        // those lengths and reports what it wrote in `msg_len`,
        // `msg_namelen` and `msg_controllen`, which bound what is read
        // back. The control buffers are `u64`-aligned, as `cmsghdr` needs.
        let mut names: [libc::sockaddr_storage; Self::MAX] = unsafe { std::mem::zeroed() };
        // Room for one timestamp control message and then some, each.
        let mut controls = [[0u64; 8]; Self::MAX];
        let mut iovs: [libc::iovec; Self::MAX] = unsafe { std::mem::zeroed() };
        let mut headers: [libc::mmsghdr; Self::MAX] = unsafe { std::mem::zeroed() };
        for (i, slot) in self.slots.chunks_exact_mut(Self::SLOT).enumerate() {
            iovs[i] = libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: slot.len(),
            };
            let header = &mut headers[i].msg_hdr;
            header.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_iov = &mut iovs[i];
            header.msg_iovlen = 1;
            header.msg_control = controls[i].as_mut_ptr().cast();
            header.msg_controllen = size_of_val(&controls[i]) as _;
        }
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                Self::MAX as libc::c_uint,
                0,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, header) in headers[..n].iter().enumerate() {
            // A packet from a non-IP address cannot be ours; skip it.
            let Some(from) = socket_addr(&names[i]) else {
                continue;
            };
            let received = Received {
                len: header.msg_len as usize,
                from,
                arrived: arrival(&header.msg_hdr),
            };
            self.note(i, received, header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0);
        }
        Ok(n)
    }

    #[cfg(not(target_os = "linux"))]
    fn read(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let mut n = 0;
        while n < Self::MAX {
            let start = n * Self::SLOT;
            // One byte more than a slot tells a whole packet from a cut one.
            let mut probe = [0u8; Self::SLOT + 1];
            let (len, from) = match socket.try_recv_from(&mut probe) {
                Ok(got) => got,
                Err(e) if n > 0 && e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            };
            let whole = len.min(Self::SLOT);
            self.slots[start..start + whole].copy_from_slice(&probe[..whole]);
            let received = Received {
                len,
                from,
                arrived: None,
            };
            self.note(n, received, len > Self::SLOT);
            n += 1;
        }
        Ok(n)
    }
}

/// When a [`read_batch`] happened, and since when its input waited.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchRead {
    /// When the read returned.
    pub at: Instant,
    /// The wall clock at the same moment (tickets expire by it).
    pub wall: SystemTime,
    /// The earliest kernel arrival among the packets read, or `at` where
    /// the kernel gives none: what waited in the socket's queue waited in
    /// the data plane, so forward delays count from here.
    pub earliest: Instant,
}

/// One read of `socket` into `batch`, with one read of each clock for all
/// of it; `None` when there was nothing to read.
pub(crate) fn read_batch(socket: &UdpSocket, batch: &mut RecvBatch) -> Option<BatchRead> {
    let read = batch.recv(socket);
    let at = Instant::now();
    match read {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
        // ICMP errors from earlier sends (e.g. port unreachable) surface
        // here on some systems; they concern one peer, and the socket is
        // read again at its next readiness.
        Err(e) => {
            tracing::debug!(error = %e, "voice socket receive error");
            return None;
        }
    }
    let wall = SystemTime::now();
    let waited = (0..batch.len())
        .filter_map(|i| batch.got[i].1.arrived)
        .filter_map(|t| wall.duration_since(t).ok())
        .max()
        .unwrap_or_default();
    Some(BatchRead {
        at,
        wall,
        earliest: at.checked_sub(waited).unwrap_or(at),
    })
}

/// The kernel's receive stamp among `msg`'s control messages, if any.
#[cfg(target_os = "linux")]
fn arrival(msg: &libc::msghdr) -> Option<SystemTime> {
    // SAFETY: `msg` is a header the kernel filled; the CMSG_* macros walk
    // only within its `msg_controllen`, and the stamp is read unaligned.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        let header = unsafe { &*cmsg };
        if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_TIMESTAMPNS {
            let ts: libc::timespec =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            return Some(
                SystemTime::UNIX_EPOCH
                    + std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32),
            );
        }
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
    None
}

/// The address in `name`, as the kernel filled it.
#[cfg(target_os = "linux")]
fn socket_addr(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    match libc::c_int::from(name.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in,
            // which it is large and aligned enough for.
            let a =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Sends one packet quinn built. A full socket buffer drops it, as the
/// network would: QUIC recovers what matters, and late voice is worthless.
pub(crate) fn send(socket: &UdpSocket, transmit: &Transmit, buf: &[u8]) {
    let contents = &buf[..transmit.size];
    let segment = transmit.segment_size.unwrap_or(transmit.size).max(1);
    for packet in contents.chunks(segment) {
        if let Err(e) = socket.try_send_to(packet, transmit.destination) {
            tracing::trace!(error = %e, to = %transmit.destination, "voice packet not sent");
        }
    }
}

/// Packets to send on one socket, gathered so that a wake-up's fan-out
/// goes to the kernel in as few system calls as possible (`sendmmsg` on
/// Linux). The packets lie end to end in one buffer that keeps its
/// capacity, so gathering allocates nothing once warm.
#[derive(Debug, Default)]
pub(crate) struct SendBatch {
    bytes: Vec<u8>,
    /// Each packet's end in `bytes` and its destination.
    packets: Vec<(usize, SocketAddr)>,
}

/// What one [`SendBatch::flush`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Flushed {
    /// Packets the kernel took.
    pub sent: usize,
    /// Packets it refused (a full socket buffer): dropped, as the network
    /// would drop them.
    pub refused: usize,
}

impl SendBatch {
    /// Most packets handed to the kernel in one call.
    pub(crate) const MAX: usize = 64;

    /// Adds `packet` for `to`; returns whether the batch is now full.
    pub(crate) fn push(&mut self, packet: &[u8], to: SocketAddr) -> bool {
        self.bytes.extend_from_slice(packet);
        self.packets.push((self.bytes.len(), to));
        self.packets.len() >= Self::MAX
    }

    /// Packets waiting.
    pub(crate) fn len(&self) -> usize {
        self.packets.len()
    }

    /// Forgets the packets waiting, keeping the buffers.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.packets.clear();
    }

    /// Sends every packet waiting on `socket` (the voice socket, or a
    /// duplicate of it on a send worker's thread) and empties the batch.
    pub(crate) fn flush(&mut self, socket: BorrowedFd<'_>) -> Flushed {
        let mut flushed = Flushed::default();
        let mut start = 0;
        let mut from = 0;
        while from < self.packets.len() {
            let to = (from + Self::MAX).min(self.packets.len());
            let chunk = &self.packets[from..to];
            let sent = send_chunk(socket, &self.bytes, start, chunk);
            flushed.sent += sent;
            flushed.refused += chunk.len() - sent;
            start = chunk.last().map_or(start, |(end, _)| *end);
            from = to;
        }
        self.clear();
        flushed
    }
}

/// Sends the packets of `chunk` (at most [`SendBatch::MAX`]), which lie in
/// `bytes` from `start` on; how many the kernel took. Stops at the first
/// refusal: the socket's buffer is full, and the rest would fail too.
fn send_chunk(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    start: usize,
    chunk: &[(usize, SocketAddr)],
) -> usize {
    debug_assert!(chunk.len() <= SendBatch::MAX);
    let mut begin = start;
    let packets = chunk.iter().map(|(end, to)| {
        let packet = &bytes[begin..*end];
        begin = *end;
        (packet, *to)
    });
    send_packets(socket, packets)
}

/// [`send_chunk`]'s sending, on Linux in one `sendmmsg` call.
#[cfg(target_os = "linux")]
fn send_packets<'a>(
    socket: BorrowedFd<'_>,
    packets: impl Iterator<Item = (&'a [u8], SocketAddr)>,
) -> usize {
    use std::os::fd::AsRawFd;
    // SAFETY (whole function): all-zero is a valid value of these C
    // structs. Each header points at its own name and iovec on this stack
    // frame, and each iovec at its packet's bytes, with their lengths; the
    // kernel reads them and writes only the headers' `msg_len`, and
    // everything outlives the call.
    let mut names: [libc::sockaddr_storage; SendBatch::MAX] = unsafe { std::mem::zeroed() };
    let mut iovs: [libc::iovec; SendBatch::MAX] = unsafe { std::mem::zeroed() };
    let mut headers: [libc::mmsghdr; SendBatch::MAX] = unsafe { std::mem::zeroed() };
    let mut count = 0;
    for (i, (packet, to)) in packets.enumerate() {
        iovs[i] = libc::iovec {
            iov_base: packet.as_ptr() as *mut libc::c_void,
            iov_len: packet.len(),
        };
        let namelen = write_name(&to, &mut names[i]);
        let header = &mut headers[i].msg_hdr;
        header.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        header.msg_namelen = namelen;
        header.msg_iov = &mut iovs[i];
        header.msg_iovlen = 1;
        count = i + 1;
    }
    // Straight to the kernel rather than through tokio's readiness: the
    // socket is non-blocking, a full buffer answers EAGAIN and drops the
    // rest (nothing waits to write voice later), and a socket not yet
    // seen writable by the reactor must still send.
    let n = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            count as libc::c_uint,
            0,
        )
    };
    if n < 0 {
        tracing::trace!(error = %io::Error::last_os_error(), "voice packets not sent");
        0
    } else {
        n as usize
    }
}

/// [`send_chunk`]'s sending elsewhere: one packet at a time.
#[cfg(not(target_os = "linux"))]
fn send_packets<'a>(
    socket: BorrowedFd<'_>,
    packets: impl Iterator<Item = (&'a [u8], SocketAddr)>,
) -> usize {
    // A second handle on the same (non-blocking) socket, for `send_to`.
    let Ok(socket) = socket.try_clone_to_owned().map(std::net::UdpSocket::from) else {
        return 0;
    };
    let mut sent = 0;
    for (packet, to) in packets {
        if socket.send_to(packet, to).is_err() {
            break;
        }
        sent += 1;
    }
    sent
}

/// Writes `addr` into `name` as the kernel wants it; returns its length.
#[cfg(target_os = "linux")]
fn write_name(addr: &SocketAddr, name: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a
            // sockaddr_in.
            let sin =
                unsafe { &mut *(name as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &mut *(name as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn voice_sockets_get_the_buffers_they_ask_for() {
        use std::os::fd::AsRawFd;
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (default_rx, _) = size_buffers(socket.as_raw_fd(), 0).unwrap_or((0, 0));
        let (rx, tx) = size_buffers(socket.as_raw_fd(), SOCKET_BUFFER_BYTES).unwrap();
        // As root (CI) the kernel's caps are lifted; elsewhere they hold.
        assert!(
            rx >= SOCKET_BUFFER_BYTES && tx >= SOCKET_BUFFER_BYTES,
            "asked {SOCKET_BUFFER_BYTES} each way, got {rx} / {tx} (the kernel's floor: {default_rx})"
        );
    }
    use std::os::fd::AsFd;
    use std::time::Duration;

    /// A voice-style socket on `addr`: stamped, non-blocking, in tokio.
    fn bound(addr: &str) -> io::Result<UdpSocket> {
        let socket = std::net::UdpSocket::bind(addr)?;
        enable_receive_timestamps(&socket)?;
        socket.set_nonblocking(true)?;
        UdpSocket::from_std(socket)
    }

    /// The next `count` packets (whole ones), within 5 s, in the order
    /// read: bytes and what the kernel said.
    async fn read(socket: &UdpSocket, count: usize) -> Vec<(Vec<u8>, Received)> {
        let mut batch = RecvBatch::new();
        let mut got = Vec::new();
        let read = async {
            while got.len() < count {
                socket.readable().await.unwrap();
                match batch.recv(socket) {
                    Ok(_) => {
                        assert_eq!(batch.truncated(), 0);
                        for i in 0..batch.len() {
                            let (bytes, received) = batch.get(i);
                            got.push((bytes.to_vec(), received));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => panic!("{e}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("the packets arrive");
        assert_eq!(got.len(), count, "no more than asked for");
        got
    }

    /// Whether the socket holds nothing more.
    fn drained(socket: &UdpSocket) -> bool {
        let mut batch = RecvBatch::new();
        matches!(batch.recv(socket), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    #[tokio::test]
    async fn a_packet_comes_with_its_sender_and_the_kernels_arrival_time() {
        let socket = bound("127.0.0.1:0").unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = SystemTime::now();
        peer.send_to(b"voice", socket.local_addr().unwrap())
            .unwrap();
        let (bytes, got) = read(&socket, 1).await.remove(0);
        assert_eq!(bytes, b"voice");
        assert_eq!(got.len, 5);
        assert_eq!(got.from, peer.local_addr().unwrap());
        if cfg!(target_os = "linux") {
            let arrived = got.arrived.expect("the kernel stamps it");
            let after = SystemTime::now();
            assert!(arrived >= before - Duration::from_millis(1), "{arrived:?}");
            assert!(arrived <= after, "{arrived:?} after {after:?}");
        }
        assert!(drained(&socket));
    }

    #[tokio::test]
    async fn one_read_takes_every_waiting_packet_in_order_up_to_the_batch() {
        let socket = bound("127.0.0.1:0").unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let count = RecvBatch::MAX + 5;
        for i in 0..count {
            peer.send_to(&[i as u8; 3], socket.local_addr().unwrap())
                .unwrap();
        }
        // Loopback delivers at once: all of them wait in the socket now.
        socket.readable().await.unwrap();
        let mut batch = RecvBatch::new();
        assert_eq!(batch.recv(&socket).unwrap(), RecvBatch::MAX);
        assert_eq!(batch.len(), RecvBatch::MAX);
        for i in 0..RecvBatch::MAX {
            let (bytes, received) = batch.get(i);
            assert_eq!(bytes, &[i as u8; 3], "packet {i}");
            assert_eq!(received.from, peer.local_addr().unwrap());
        }
        assert_eq!(batch.recv(&socket).unwrap(), 5, "the rest on the next read");
        assert_eq!(batch.get(4).0, &[(count - 1) as u8; 3]);
        assert!(drained(&socket));
    }

    #[tokio::test]
    async fn a_packet_longer_than_a_slot_is_counted_and_not_handed_on() {
        let socket = bound("127.0.0.1:0").unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = socket.local_addr().unwrap();
        peer.send_to(&[1; RecvBatch::SLOT], to).unwrap();
        peer.send_to(&[2; RecvBatch::SLOT + 1], to).unwrap();
        peer.send_to(&[3; 10], to).unwrap();
        socket.readable().await.unwrap();
        let mut batch = RecvBatch::new();
        assert_eq!(batch.recv(&socket).unwrap(), 3);
        assert_eq!(batch.truncated(), 1);
        assert_eq!(batch.len(), 2);
        assert_eq!(
            batch.get(0).0,
            &[1; RecvBatch::SLOT][..],
            "a full slot is whole"
        );
        assert_eq!(batch.get(1).0, &[3; 10]);
    }

    #[tokio::test]
    async fn an_ipv6_sender_reads_back_as_itself() {
        let Ok(socket) = bound("[::1]:0") else {
            eprintln!("SKIPPED: no IPv6 loopback on this machine");
            return;
        };
        let peer = std::net::UdpSocket::bind("[::1]:0").unwrap();
        peer.send_to(b"v6", socket.local_addr().unwrap()).unwrap();
        let (bytes, got) = read(&socket, 1).await.remove(0);
        assert_eq!(got.from, peer.local_addr().unwrap());
        assert_eq!(bytes, b"v6");
    }

    #[tokio::test]
    async fn a_batch_reaches_every_destination_in_order_and_empties() {
        let sender = bound("127.0.0.1:0").unwrap();
        let receivers: Vec<UdpSocket> = (0..3).map(|_| bound("127.0.0.1:0").unwrap()).collect();
        let mut batch = SendBatch::default();
        // More than one call's worth, spread over the receivers.
        let count = SendBatch::MAX + 6;
        for i in 0..count {
            let to = receivers[i % 3].local_addr().unwrap();
            let full = batch.push(&[i as u8; 7], to);
            assert_eq!(full, batch.len() >= SendBatch::MAX);
            if full {
                assert_eq!(batch.flush(sender.as_fd()).sent, SendBatch::MAX);
            }
        }
        assert_eq!(batch.len(), 6);
        assert_eq!(
            batch.flush(sender.as_fd()),
            Flushed {
                sent: 6,
                refused: 0
            }
        );
        assert_eq!(batch.len(), 0);
        for (r, receiver) in receivers.iter().enumerate() {
            let mine = (r..count).step_by(3);
            let got = read(receiver, mine.len()).await;
            for (i, (bytes, received)) in mine.zip(got) {
                assert_eq!(bytes, &[i as u8; 7], "packet {i}");
                assert_eq!(received.from, sender.local_addr().unwrap());
            }
        }
    }

    #[tokio::test]
    async fn a_batch_reaches_an_ipv6_destination() {
        let (Ok(sender), Ok(receiver)) = (bound("[::1]:0"), bound("[::1]:0")) else {
            eprintln!("SKIPPED: no IPv6 loopback on this machine");
            return;
        };
        let mut batch = SendBatch::default();
        batch.push(b"six", receiver.local_addr().unwrap());
        assert_eq!(batch.flush(sender.as_fd()).sent, 1);
        let (bytes, _) = read(&receiver, 1).await.remove(0);
        assert_eq!(bytes, b"six");
    }
}
