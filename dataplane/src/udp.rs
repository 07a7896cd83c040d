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
use std::time::SystemTime;

use quinn_proto::Transmit;
use tokio::net::UdpSocket;

/// One packet read off the socket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    /// Bytes of the packet, at the start of the buffer given.
    pub len: usize,
    pub from: SocketAddr,
    /// When the kernel queued it, if it said.
    pub arrived: Option<SystemTime>,
}

/// Asks the kernel to stamp every packet `socket` receives.
#[cfg(target_os = "linux")]
pub(crate) fn enable_receive_timestamps(socket: &std::net::UdpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid fd, and a pointer to an int with its exact size, as
    // SO_TIMESTAMPNS takes.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn enable_receive_timestamps(_socket: &std::net::UdpSocket) -> io::Result<()> {
    Ok(())
}

/// Reads one packet into `buf` without waiting: `WouldBlock` when there is
/// none (and the socket's readiness is cleared, as tokio requires).
#[cfg(target_os = "linux")]
pub(crate) fn try_recv(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Received> {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    socket.try_io(tokio::io::Interest::READABLE, || recvmsg(fd, buf))
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn try_recv(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Received> {
    let (len, from) = socket.try_recv_from(buf)?;
    Ok(Received {
        len,
        from,
        arrived: None,
    })
}

#[cfg(target_os = "linux")]
fn recvmsg(fd: std::os::fd::RawFd, buf: &mut [u8]) -> io::Result<Received> {
    // SAFETY (whole function): every pointer handed to the kernel points at
    // a live local or at `buf`, with the length of what it points at; the
    // kernel writes at most those lengths and reports what it wrote in
    // `msg_namelen`/`msg_controllen`, which bound what is read back. The
    // control buffer is `u64`-aligned, as `cmsghdr` needs, and the CMSG_*
    // macros walk only within `msg_controllen`.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    // Room for one timestamp control message and then some.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control) as _;
    let len = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if len < 0 {
        return Err(io::Error::last_os_error());
    }
    let from = socket_addr(&name).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "packet from a non-IP address")
    })?;
    let mut arrived = None;
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        let header = unsafe { &*cmsg };
        if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_TIMESTAMPNS {
            let ts: libc::timespec =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            arrived = Some(
                SystemTime::UNIX_EPOCH
                    + std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32),
            );
        }
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok(Received {
        len: len as usize,
        from,
        arrived,
    })
}

/// The address in `name`, as `recvmsg` filled it.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A voice-style socket on `addr`: stamped, non-blocking, in tokio.
    fn bound(addr: &str) -> io::Result<UdpSocket> {
        let socket = std::net::UdpSocket::bind(addr)?;
        enable_receive_timestamps(&socket)?;
        socket.set_nonblocking(true)?;
        UdpSocket::from_std(socket)
    }

    /// The next packet, within 5 s.
    async fn read_one(socket: &UdpSocket, buf: &mut [u8]) -> Received {
        let read = async {
            loop {
                socket.readable().await.unwrap();
                match try_recv(socket, buf) {
                    Ok(got) => return got,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => panic!("{e}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("the packet arrives")
    }

    #[tokio::test]
    async fn a_packet_comes_with_its_sender_and_the_kernels_arrival_time() {
        let socket = bound("127.0.0.1:0").unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = SystemTime::now();
        peer.send_to(b"voice", socket.local_addr().unwrap())
            .unwrap();
        let mut buf = [0u8; 64];
        let got = read_one(&socket, &mut buf).await;
        assert_eq!(&buf[..got.len], b"voice");
        assert_eq!(got.from, peer.local_addr().unwrap());
        if cfg!(target_os = "linux") {
            let arrived = got.arrived.expect("the kernel stamps it");
            let after = SystemTime::now();
            assert!(arrived >= before - Duration::from_millis(1), "{arrived:?}");
            assert!(arrived <= after, "{arrived:?} after {after:?}");
        }
        assert_eq!(
            try_recv(&socket, &mut buf)
                .map_err(|e| e.kind())
                .unwrap_err(),
            io::ErrorKind::WouldBlock
        );
    }

    #[tokio::test]
    async fn an_ipv6_sender_reads_back_as_itself() {
        let Ok(socket) = bound("[::1]:0") else {
            eprintln!("SKIPPED: no IPv6 loopback on this machine");
            return;
        };
        let peer = std::net::UdpSocket::bind("[::1]:0").unwrap();
        peer.send_to(b"v6", socket.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 64];
        let got = read_one(&socket, &mut buf).await;
        assert_eq!(got.from, peer.local_addr().unwrap());
        assert_eq!(&buf[..got.len], b"v6");
    }
}
