//! [`BatchSocket`]: the media plane's one UDP socket, read and written many datagrams per
//! system call.
//!
//! Receiving goes through `quinn-udp`: `recvmmsg` fills up to [`quinn_udp::BATCH_SIZE`]
//! buffers per call, and with UDP GRO (Linux) each buffer may hold several datagrams of one
//! source cut at `stride`; [`BatchSocket::recv_batch`] splits them back into [`Datagram`]s.
//! Sending on Linux / Android is our own `sendmmsg`: one call carries many messages, each
//! to its own destination (the SFU's fan-out case: one packet to every subscriber), and a
//! run of consecutive datagrams to one destination that share a size (the last may be
//! shorter) becomes a single GSO message (`UDP_SEGMENT`), gathered from the datagrams'
//! own buffers without copying. When the kernel refuses GSO (`EIO` / `EINVAL`) it is
//! switched off for good and the batch retried; without `sendmmsg` (other platforms, or
//! `ENOSYS`) each message goes through `quinn-udp`'s `sendmsg`, still one call per GSO run.
//!
//! The socket is a plain non-blocking [`std::net::UdpSocket`] and this module owns no
//! reactor: it is meant for the per-worker thread loop of the sans-IO media plane, where
//! one thread owns its rooms' `rtc` cores, its timers and this socket, and waits with
//! `mio` (`SourceFd` on [`AsRawFd`], edge-triggered: call `recv_batch` until it reports
//! `WouldBlock`). Nothing here needs a runtime, so the same type also works under tokio's
//! `AsyncFd` (through [`AsFd`]) if a worker ends up being a tokio current-thread runtime;
//! the choice stays with the loop, and a per-worker `SO_REUSEPORT` socket needs no change
//! here.
//!
//! Nothing in this module logs payloads; errors name the peer address and sizes only.

use bytes::BytesMut;
use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
#[cfg(unix)]
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

/// Largest datagram accepted by default: an Ethernet MTU. WebRTC media stays below ~1200
/// bytes; anything larger is counted in [`UdpStats::oversized`] and dropped.
pub const DEFAULT_MAX_DATAGRAM: usize = 1500;
/// Messages prepared per `sendmmsg` call.
#[cfg(any(target_os = "linux", target_os = "android"))]
const MAX_MSGS: usize = 64;
/// Datagrams (iovecs) prepared per `sendmmsg` call, over all its messages.
#[cfg(any(target_os = "linux", target_os = "android"))]
const MAX_IOVS: usize = 512;
/// The kernel's limit on segments in one GSO send (`UDP_MAX_SEGMENTS`).
const MAX_GSO_SEGMENTS: usize = 64;
/// Bytes in one GSO send: below the largest UDP payload of IPv4 (65507).
const MAX_GSO_BYTES: usize = 65_000;

/// One received datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// The sender's address.
    pub from: SocketAddr,
    /// The datagram's bytes (a split of the socket's receive arena: dropping it lets the
    /// arena reuse the memory).
    pub data: BytesMut,
    /// When the kernel received it, as time since the Unix epoch (`SO_TIMESTAMPNS`;
    /// `None` where the platform gives none).
    pub received: Option<Duration>,
}

/// One datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Where to send it.
    pub to: SocketAddr,
    /// The datagram's bytes.
    pub data: BytesMut,
}

/// Datagram buffers kept for reuse: what [`BatchSocket::send_batch`] sent comes back here,
/// and the send path takes its next buffer from here, so forwarding allocates nothing in
/// steady state.
#[derive(Debug, Default)]
pub struct BufferPool {
    free: Vec<BytesMut>,
}

impl BufferPool {
    /// Buffers kept at most; beyond that what is given back is freed.
    pub const MAX_KEPT: usize = 1024;
    /// Capacity of a new buffer: an Ethernet MTU, room for any SRTP packet.
    pub const CAPACITY: usize = DEFAULT_MAX_DATAGRAM;

    /// An empty buffer with room for a datagram: a kept one if there is one.
    pub fn take(&mut self) -> BytesMut {
        self.free
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(Self::CAPACITY))
    }

    /// Keeps `buf` (emptied) for a later [`Self::take`], unless the pool is full or the
    /// buffer too small to be worth keeping.
    pub fn give(&mut self, mut buf: BytesMut) {
        if self.free.len() < Self::MAX_KEPT && buf.capacity() >= Self::CAPACITY {
            buf.clear();
            self.free.push(buf);
        }
    }

    /// Buffers kept now.
    pub fn len(&self) -> usize {
        self.free.len()
    }

    /// Whether no buffer is kept.
    pub fn is_empty(&self) -> bool {
        self.free.is_empty()
    }
}

/// Counters of one [`BatchSocket`], for logs and benchmarks (datagrams per system call).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Receive system calls that returned datagrams.
    pub recv_syscalls: u64,
    /// Receive system calls that found nothing (`WouldBlock`).
    pub recv_empty: u64,
    /// Buffers those calls filled: one datagram each, or a GRO train of several.
    pub recv_buffers: u64,
    /// Datagrams received and handed out (oversized ones excluded).
    pub recv_datagrams: u64,
    /// Received datagrams dropped for being larger than the socket's maximum.
    pub oversized: u64,
    /// Send system calls, whatever their outcome.
    pub send_syscalls: u64,
    /// Messages handed to the kernel: one datagram each, or a GSO train of several.
    pub send_messages: u64,
    /// Datagrams handed to the kernel.
    pub send_datagrams: u64,
    /// Datagrams dropped because the kernel refused them (unreachable network, wrong
    /// address family, too large, ...).
    pub send_dropped: u64,
}

/// What batching the platform and kernel give this socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Receive buffers filled per system call (`recvmmsg`); 1 without it.
    pub recv_batch: usize,
    /// Datagrams the kernel may coalesce into one receive buffer (GRO); 1 without it.
    pub gro_segments: usize,
    /// Datagrams one GSO send may carry; 1 when GSO is unsupported or was refused.
    pub gso_segments: usize,
    /// Whether sends go through `sendmmsg` (several destinations per system call).
    pub sendmmsg: bool,
}

/// A non-blocking UDP socket that receives and sends many datagrams per system call.
/// See the [module documentation](self).
#[derive(Debug)]
pub struct BatchSocket {
    socket: UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
    max_datagram: usize,
    /// Bytes of one receive buffer: room for a full GRO train, or one datagram + 1 (so a
    /// truncated datagram is recognised as too large).
    slot_len: usize,
    recv_buf: Vec<u8>,
    meta: Vec<RecvMeta>,
    arena: BytesMut,
    /// GSO allowed (cleared for good when the kernel refuses it).
    gso: bool,
    /// `sendmmsg` allowed (cleared when the kernel does not have it).
    mmsg: bool,
    /// Gather buffer of the fallback path's GSO runs.
    scratch: Vec<u8>,
    stats: UdpStats,
}

impl BatchSocket {
    /// Binds a socket for datagrams of up to [`DEFAULT_MAX_DATAGRAM`] bytes.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Self::bind_with_max_datagram(addr, DEFAULT_MAX_DATAGRAM)
    }

    /// Binds a socket; received datagrams larger than `max_datagram` bytes are dropped and
    /// counted in [`UdpStats::oversized`].
    pub fn bind_with_max_datagram(
        addr: impl ToSocketAddrs,
        max_datagram: usize,
    ) -> io::Result<Self> {
        if max_datagram == 0 || max_datagram > MAX_GSO_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "max_datagram must be between 1 and 65000 bytes",
            ));
        }
        let socket = UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        let local = socket.local_addr()?;
        let gro = state.gro_segments().max(1);
        // A GRO train is at most 64 segments and 64 KiB; one buffer must hold any of them,
        // or the kernel would truncate it silently.
        let slot_len = if gro > 1 {
            (gro * (max_datagram + 1)).max(1 << 16)
        } else {
            max_datagram + 1
        };
        let batch = quinn_udp::BATCH_SIZE.max(1);
        let sock = Self {
            socket,
            local,
            max_datagram,
            slot_len,
            recv_buf: vec![0; slot_len * batch],
            meta: vec![RecvMeta::default(); batch],
            arena: BytesMut::with_capacity(1 << 16),
            gso: state.max_gso_segments() > 1,
            mmsg: cfg!(any(target_os = "linux", target_os = "android")),
            scratch: Vec::new(),
            state,
            stats: UdpStats::default(),
        };
        tracing::debug!(local = %sock.local, caps = ?sock.capabilities(), "batch UDP socket bound");
        Ok(sock)
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The largest datagram `recv_batch` hands out.
    pub fn max_datagram(&self) -> usize {
        self.max_datagram
    }

    /// What batching this socket gets from the platform and the kernel.
    pub fn capabilities(&self) -> Capabilities {
        Capabilities {
            recv_batch: quinn_udp::BATCH_SIZE.max(1),
            gro_segments: self.state.gro_segments().max(1),
            gso_segments: self.gso_segments(),
            sendmmsg: self.mmsg,
        }
    }

    /// The socket's counters so far.
    pub fn stats(&self) -> UdpStats {
        self.stats
    }

    /// Sets the kernel's receive buffer size (`SO_RCVBUF`; Linux caps it at `rmem_max`).
    pub fn set_recv_buffer_size(&self, bytes: usize) -> io::Result<()> {
        self.state
            .set_recv_buffer_size(UdpSockRef::from(&self.socket), bytes)
    }

    /// Sets the kernel's send buffer size (`SO_SNDBUF`; Linux caps it at `wmem_max`).
    pub fn set_send_buffer_size(&self, bytes: usize) -> io::Result<()> {
        self.state
            .set_send_buffer_size(UdpSockRef::from(&self.socket), bytes)
    }

    fn gso_segments(&self) -> usize {
        if self.gso {
            self.state.max_gso_segments().clamp(1, MAX_GSO_SEGMENTS)
        } else {
            1
        }
    }

    /// Receives what one system call returns and appends it to `out` (GRO buffers split
    /// into their datagrams). Returns how many datagrams were appended, which may be 0 when
    /// every one was oversized. Fails with [`io::ErrorKind::WouldBlock`] once nothing is
    /// pending: an edge-triggered loop calls this until then.
    pub fn recv_batch(&mut self, out: &mut Vec<Datagram>) -> io::Result<usize> {
        let slot_len = self.slot_len;
        let mut chunks = self.recv_buf.chunks_mut(slot_len);
        let mut bufs: [IoSliceMut<'_>; quinn_udp::BATCH_SIZE] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or(&mut [])));
        let received =
            match self
                .state
                .recv(UdpSockRef::from(&self.socket), &mut bufs, &mut self.meta)
            {
                Ok(n) => n,
                Err(err) => {
                    if err.kind() == io::ErrorKind::WouldBlock {
                        self.stats.recv_empty += 1;
                    }
                    return Err(err);
                }
            };
        self.stats.recv_syscalls += 1;
        self.stats.recv_buffers += received as u64;
        let mut appended = 0;
        for (i, meta) in self.meta.iter().take(received).enumerate() {
            let start = i * slot_len;
            let Some(buf) = self.recv_buf.get(start..start + meta.len.min(slot_len)) else {
                continue;
            };
            if buf.is_empty() {
                // A zero-length datagram is legal UDP; the demux drops it.
                out.push(Datagram {
                    from: meta.addr,
                    data: BytesMut::new(),
                    received: meta.timestamp,
                });
                appended += 1;
                continue;
            }
            let stride = if meta.stride == 0 {
                buf.len()
            } else {
                meta.stride
            };
            for segment in buf.chunks(stride) {
                if segment.len() > self.max_datagram {
                    self.stats.oversized += 1;
                    tracing::debug!(from = %meta.addr, len = segment.len(), max = self.max_datagram, "oversized datagram dropped");
                    continue;
                }
                self.arena.reserve(segment.len());
                self.arena.extend_from_slice(segment);
                out.push(Datagram {
                    from: meta.addr,
                    data: self.arena.split(),
                    received: meta.timestamp,
                });
                appended += 1;
            }
        }
        self.stats.recv_datagrams += appended as u64;
        Ok(appended)
    }

    /// Hands as much of `batch` as the kernel takes, from the front, and removes what it
    /// handed (and what the kernel refused for good, counted in [`UdpStats::send_dropped`]).
    /// Returns how many datagrams were handed to the kernel; on `WouldBlock` (or a full
    /// buffer, `ENOBUFS`) the rest stays in `batch` for the next writable event. Fails
    /// only on errors of the socket itself, leaving the unsent datagrams in `batch`. The
    /// buffers of what was removed go back to `pool`.
    pub fn send_batch(
        &mut self,
        batch: &mut Vec<Outgoing>,
        pool: &mut BufferPool,
    ) -> io::Result<usize> {
        let before = self.stats;
        let mut done = 0;
        let result = loop {
            if done == batch.len() {
                break Ok(());
            }
            let step = if self.mmsg {
                self.send_mmsg(&batch[done..])
            } else {
                self.send_one(&batch[done..])
            };
            match step {
                Ok(Step::Sent(n)) | Ok(Step::Dropped(n)) => done += n,
                Ok(Step::Retry) => {}
                Ok(Step::Full) => break Ok(()),
                Err(err) => break Err(err),
            }
        };
        for sent in batch.drain(..done) {
            pool.give(sent.data);
        }
        result.map(|()| (self.stats.send_datagrams - before.send_datagrams) as usize)
    }

    /// Length of the run of datagrams starting at `items[0]` that can share one GSO send:
    /// one destination, one size, the last possibly shorter.
    fn gso_run(&self, items: &[Outgoing]) -> usize {
        let max = self.gso_segments();
        let Some(first) = items.first() else { return 0 };
        let size = first.data.len();
        if max <= 1 || size == 0 {
            return 1;
        }
        let mut total = size;
        let mut n = 1;
        for next in &items[1..] {
            let len = next.data.len();
            if n == max
                || next.to != first.to
                || len == 0
                || len > size
                || total + len > MAX_GSO_BYTES
            {
                break;
            }
            total += len;
            n += 1;
            if len < size {
                break;
            }
        }
        n
    }

    /// Classifies a send error of the message whose first datagram is `first` and that
    /// carries `count` datagrams.
    fn on_send_error(
        &mut self,
        err: io::Error,
        first: &Outgoing,
        count: usize,
    ) -> io::Result<Step> {
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(Step::Retry);
        }
        if err.kind() == io::ErrorKind::WouldBlock || err.raw_os_error() == Some(libc::ENOBUFS) {
            return Ok(Step::Full);
        }
        let errno = err.raw_os_error();
        if count > 1 && matches!(errno, Some(libc::EIO) | Some(libc::EINVAL)) {
            tracing::info!(%err, "kernel refused UDP GSO; sending unsegmented from now on");
            self.gso = false;
            return Ok(Step::Retry);
        }
        if errno == Some(libc::ENOSYS) && self.mmsg {
            tracing::info!("sendmmsg unavailable; sending one message per system call");
            self.mmsg = false;
            return Ok(Step::Retry);
        }
        if matches!(
            errno,
            Some(libc::EBADF) | Some(libc::ENOTSOCK) | Some(libc::EFAULT)
        ) {
            return Err(err);
        }
        self.stats.send_dropped += count as u64;
        tracing::debug!(to = %first.to, len = first.data.len(), count, %err, "datagrams refused by the kernel; dropped");
        Ok(Step::Dropped(count))
    }

    /// The fallback path: one GSO run (or one datagram) per `sendmsg`, through `quinn-udp`.
    fn send_one(&mut self, items: &[Outgoing]) -> io::Result<Step> {
        let n = self.gso_run(items);
        let Some(first) = items.first() else {
            return Ok(Step::Sent(0));
        };
        let contents: &[u8] = if n == 1 {
            &first.data
        } else {
            self.scratch.clear();
            for item in &items[..n] {
                self.scratch.extend_from_slice(&item.data);
            }
            &self.scratch
        };
        let transmit = Transmit {
            destination: first.to,
            ecn: None,
            contents,
            segment_size: (n > 1).then_some(first.data.len()),
            src_ip: None,
        };
        self.stats.send_syscalls += 1;
        match self
            .state
            .try_send(UdpSockRef::from(&self.socket), &transmit)
        {
            Ok(()) => {
                self.stats.send_messages += 1;
                self.stats.send_datagrams += n as u64;
                Ok(Step::Sent(n))
            }
            Err(err) => self.on_send_error(err, first, n),
        }
    }

    /// The Linux path: up to [`MAX_MSGS`] messages (each one datagram or one GSO run) per
    /// `sendmmsg`.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn send_mmsg(&mut self, items: &[Outgoing]) -> io::Result<Step> {
        use std::mem;

        /// Control buffer for one `UDP_SEGMENT` cmsg, aligned for `cmsghdr`.
        #[repr(C, align(8))]
        #[derive(Clone, Copy)]
        struct Ctrl([u8; 32]);

        // SAFETY: all-zero is a valid value of these plain C structs.
        let mut hdrs: [libc::mmsghdr; MAX_MSGS] = unsafe { mem::zeroed() };
        let mut names: [libc::sockaddr_storage; MAX_MSGS] = unsafe { mem::zeroed() };
        let mut iovs: [libc::iovec; MAX_IOVS] = unsafe { mem::zeroed() };
        let mut ctrls = [Ctrl([0; 32]); MAX_MSGS];
        // (start index in `items`, datagrams) of each prepared message.
        let mut runs = [(0usize, 0usize); MAX_MSGS];
        let v6_socket = self.local.is_ipv6();

        let mut msgs = 0;
        let mut next = 0;
        let mut iov_used = 0;
        while msgs < MAX_MSGS && next < items.len() {
            let n = self.gso_run(&items[next..]);
            if iov_used + n > MAX_IOVS {
                break;
            }
            for (k, item) in items[next..next + n].iter().enumerate() {
                iovs[iov_used + k] = libc::iovec {
                    iov_base: item.data.as_ptr() as *mut libc::c_void,
                    iov_len: item.data.len(),
                };
            }
            let namelen = write_sockaddr(items[next].to, v6_socket, &mut names[msgs]);
            let hdr = &mut hdrs[msgs].msg_hdr;
            hdr.msg_name = (&mut names[msgs] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = namelen;
            hdr.msg_iov = iovs[iov_used..].as_mut_ptr();
            hdr.msg_iovlen = n as _;
            if n > 1 {
                hdr.msg_control = ctrls[msgs].0.as_mut_ptr().cast();
                // SAFETY: CMSG_SPACE only computes a size.
                hdr.msg_controllen = unsafe { libc::CMSG_SPACE(mem::size_of::<u16>() as u32) } as _;
                // SAFETY: msg_control points at a zeroed, aligned buffer of 32 bytes, more
                // than CMSG_SPACE(2) (24 on 64-bit), so CMSG_FIRSTHDR is non-null and the
                // header plus its two data bytes lie inside the buffer.
                unsafe {
                    let cmsg = libc::CMSG_FIRSTHDR(hdr);
                    if !cmsg.is_null() {
                        (*cmsg).cmsg_level = libc::SOL_UDP;
                        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                        (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
                        // gso_run caps runs at 65000 bytes, so one segment fits in a u16.
                        let segment = items[next].data.len() as u16;
                        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
                    }
                }
            }
            runs[msgs] = (next, n);
            msgs += 1;
            next += n;
            iov_used += n;
        }

        self.stats.send_syscalls += 1;
        // SAFETY: `hdrs[..msgs]` point into `names`, `iovs` and `ctrls`, all alive until
        // the call returns, and the iovecs point into `items`' buffers, borrowed for as
        // long; the kernel only reads them.
        let sent =
            unsafe { libc::sendmmsg(self.socket.as_raw_fd(), hdrs.as_mut_ptr(), msgs as _, 0) };
        if sent < 0 {
            let (start, n) = runs[0];
            return self.on_send_error(io::Error::last_os_error(), &items[start], n);
        }
        let datagrams: usize = runs[..(sent as usize).min(msgs)]
            .iter()
            .map(|&(_, n)| n)
            .sum();
        self.stats.send_messages += (sent as usize).min(msgs) as u64;
        self.stats.send_datagrams += datagrams as u64;
        // A short count means the next message would block or fails: the next call says which.
        Ok(Step::Sent(datagrams))
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn send_mmsg(&mut self, items: &[Outgoing]) -> io::Result<Step> {
        self.mmsg = false;
        self.send_one(items)
    }

    /// Forces the fallback send path (no `sendmmsg`, no GSO), as on a kernel without them.
    #[cfg(test)]
    fn force_plain_send(&mut self) {
        self.mmsg = false;
        self.gso = false;
    }
}

/// Outcome of one send system call.
enum Step {
    /// This many datagrams went to the kernel.
    Sent(usize),
    /// This many datagrams were refused for good.
    Dropped(usize),
    /// Nothing happened; try again (interrupted, or a send mode was switched off).
    Retry,
    /// The kernel's buffer is full.
    Full,
}

/// Writes `addr` as a C socket address for a socket of the given family (IPv4 destinations
/// become IPv4-mapped IPv6 addresses on an IPv6 socket). Returns its length.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn write_sockaddr(
    addr: SocketAddr,
    v6_socket: bool,
    out: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
    use std::mem;
    let addr = match addr {
        SocketAddr::V4(v4) if v6_socket => {
            SocketAddr::new(std::net::IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        other => other,
    };
    match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin) };
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(), // as std passes it (no byte swap)
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin6) };
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(unix)]
impl AsRawFd for BatchSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

#[cfg(unix)]
impl AsFd for BatchSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    /// Payload `i` of sender `s`: a recognisable header then a fill, `len` bytes.
    fn payload(s: u8, i: u16, len: usize) -> Vec<u8> {
        let mut v = vec![s, (i >> 8) as u8, i as u8];
        v.extend((3..len).map(|k| (k as u8) ^ s ^ (i as u8)));
        v.truncate(len);
        v
    }

    /// Drains `sock` until `want` datagrams arrived or two seconds passed.
    fn recv_until(sock: &mut BatchSocket, out: &mut Vec<Datagram>, want: usize) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while out.len() < want && Instant::now() < deadline {
            match sock.recv_batch(out) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("recv_batch failed: {e}"),
            }
        }
    }

    fn by_source(got: &[Datagram]) -> HashMap<SocketAddr, Vec<Vec<u8>>> {
        let mut map: HashMap<SocketAddr, Vec<Vec<u8>>> = HashMap::new();
        for d in got {
            map.entry(d.from).or_default().push(d.data.to_vec());
        }
        map
    }

    #[test]
    fn loopback_receives_many_datagrams_per_syscall() {
        let mut rx = BatchSocket::bind("127.0.0.1:0").unwrap();
        let _ = rx.set_recv_buffer_size(4 << 20);
        let caps = rx.capabilities();
        eprintln!("receive capabilities: {caps:?}");
        assert!(
            caps.recv_batch > 1 || caps.gro_segments > 1 || !cfg!(target_os = "linux"),
            "neither recvmmsg nor GRO is available on this Linux: batching cannot be tested"
        );
        let senders: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut expected: HashMap<SocketAddr, Vec<Vec<u8>>> = HashMap::new();
        let mut got = Vec::new();
        // Rounds of 40 so the default receive buffer never overflows.
        for round in 0..5u16 {
            for k in 0..40u16 {
                let i = round * 40 + k;
                let s = (i % 3) as usize;
                let len = 1 + (usize::from(i) * 97) % 1400;
                let bytes = payload(s as u8, i, len);
                senders[s].send_to(&bytes, rx.local_addr()).unwrap();
                expected
                    .entry(senders[s].local_addr().unwrap())
                    .or_default()
                    .push(bytes);
            }
            recv_until(&mut rx, &mut got, usize::from(round + 1) * 40);
        }
        assert_eq!(got.len(), 200);
        assert_eq!(
            by_source(&got),
            expected,
            "every datagram, with its source, in order"
        );
        let stats = rx.stats();
        eprintln!("receive stats: {stats:?}");
        assert_eq!(stats.recv_datagrams, 200);
        if cfg!(target_os = "linux") {
            // 5 rounds of 40 datagrams: ~2 recvmmsg calls per round with a batch of 32.
            assert!(
                stats.recv_datagrams >= 4 * stats.recv_syscalls,
                "expected >= 4 datagrams per receive call, got {stats:?}"
            );
        }
    }

    fn send_all(tx: &mut BatchSocket, mut batch: Vec<Outgoing>) {
        let total = batch.len();
        let mut sent = 0;
        let deadline = Instant::now() + Duration::from_secs(2);
        while !batch.is_empty() && Instant::now() < deadline {
            sent += tx
                .send_batch(&mut batch, &mut BufferPool::default())
                .unwrap();
        }
        assert!(batch.is_empty(), "unsent datagrams left");
        assert_eq!(sent, total);
    }

    /// 100 datagrams to two destinations: runs of one size to one destination (GSO
    /// candidates), alternations, and odd sizes.
    fn two_destination_batch(
        a: SocketAddr,
        b: SocketAddr,
    ) -> (Vec<Outgoing>, HashMap<SocketAddr, Vec<Vec<u8>>>) {
        let mut batch = Vec::new();
        let mut expected: HashMap<SocketAddr, Vec<Vec<u8>>> = HashMap::new();
        for i in 0..100u16 {
            let (to, s, len) = match i {
                0..=29 => (a, 1, if i == 29 { 300 } else { 1000 }),
                30..=59 => (if i % 2 == 0 { a } else { b }, 2, 200 + usize::from(i)),
                _ => (b, 3, 1200),
            };
            let bytes = payload(s, i, len);
            expected.entry(to).or_default().push(bytes.clone());
            batch.push(Outgoing {
                to,
                data: BytesMut::from(&bytes[..]),
            });
        }
        (batch, expected)
    }

    #[test]
    fn sent_buffers_come_back_to_the_pool_empty_and_are_taken_again() {
        let mut tx = BatchSocket::bind("127.0.0.1:0").unwrap();
        let mut rx = BatchSocket::bind("127.0.0.1:0").unwrap();
        let mut pool = BufferPool::default();
        let mut batch = Vec::new();
        let mut addresses = Vec::new();
        for i in 0..3u8 {
            let mut data = pool.take();
            assert!(data.is_empty() && data.capacity() >= BufferPool::CAPACITY);
            data.extend_from_slice(&[i; 100]);
            addresses.push(data.as_ptr());
            batch.push(Outgoing {
                to: rx.local_addr(),
                data,
            });
        }
        // Too small to keep: freed, not pooled.
        batch.push(Outgoing {
            to: rx.local_addr(),
            data: BytesMut::from(&[9u8; 10][..]),
        });
        while !batch.is_empty() {
            tx.send_batch(&mut batch, &mut pool).unwrap();
        }
        assert_eq!(pool.len(), 3, "the three pooled buffers, not the small one");
        let mut got = Vec::new();
        recv_until(&mut rx, &mut got, 4);
        assert_eq!(got[0].data[..], [0u8; 100][..], "sent before it was reused");
        for _ in 0..3 {
            let again = pool.take();
            assert!(again.is_empty());
            assert!(
                addresses.contains(&again.as_ptr()),
                "a kept buffer, not a new one"
            );
        }
        assert!(pool.is_empty());
        for _ in 0..BufferPool::MAX_KEPT + 5 {
            pool.give(BytesMut::with_capacity(BufferPool::CAPACITY));
        }
        assert_eq!(pool.len(), BufferPool::MAX_KEPT);
    }

    fn check_two_destinations(tx: &mut BatchSocket) -> UdpStats {
        let mut a = BatchSocket::bind("127.0.0.1:0").unwrap();
        let mut b = BatchSocket::bind("127.0.0.1:0").unwrap();
        let (batch, expected) = two_destination_batch(a.local_addr(), b.local_addr());
        send_all(tx, batch);
        let mut got_a = Vec::new();
        let mut got_b = Vec::new();
        let (want_a, want_b) = (
            expected[&a.local_addr()].len(),
            expected[&b.local_addr()].len(),
        );
        recv_until(&mut a, &mut got_a, want_a);
        recv_until(&mut b, &mut got_b, want_b);
        assert!(
            got_a
                .iter()
                .chain(&got_b)
                .all(|d| d.from == tx.local_addr())
        );
        let to_a: Vec<Vec<u8>> = got_a.iter().map(|d| d.data.to_vec()).collect();
        let to_b: Vec<Vec<u8>> = got_b.iter().map(|d| d.data.to_vec()).collect();
        assert_eq!(to_a, expected[&a.local_addr()]);
        assert_eq!(to_b, expected[&b.local_addr()]);
        eprintln!("receivers: {:?} / {:?}", a.stats(), b.stats());
        let stats = tx.stats();
        assert_eq!(stats.send_datagrams, 100);
        assert_eq!(stats.send_dropped, 0);
        eprintln!(
            "send capabilities: {:?}, stats: {stats:?}",
            tx.capabilities()
        );
        stats
    }

    #[test]
    fn send_batch_reaches_two_destinations_intact() {
        let mut tx = BatchSocket::bind("127.0.0.1:0").unwrap();
        let caps = tx.capabilities();
        let stats = check_two_destinations(&mut tx);
        if cfg!(target_os = "linux") {
            assert!(caps.sendmmsg, "sendmmsg expected on Linux");
            // 100 datagrams in messages of <= 64 per sendmmsg: 2 calls, plus GSO runs.
            assert!(
                stats.send_syscalls <= 4,
                "expected few sendmmsg calls, got {stats:?}"
            );
        }
    }

    #[test]
    fn plain_fallback_send_path_delivers_everything() {
        let mut tx = BatchSocket::bind("127.0.0.1:0").unwrap();
        tx.force_plain_send();
        assert_eq!(tx.capabilities().gso_segments, 1);
        let stats = check_two_destinations(&mut tx);
        assert_eq!(
            stats.send_syscalls, 100,
            "one sendmsg per datagram without sendmmsg or GSO"
        );
    }

    #[test]
    fn oversized_datagram_is_counted_not_fatal() {
        let mut rx = BatchSocket::bind_with_max_datagram("127.0.0.1:0", 256).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(&[7u8; 1000], rx.local_addr()).unwrap();
        tx.send_to(&[9u8; 256], rx.local_addr()).unwrap();
        tx.send_to(&[5u8; 257], rx.local_addr()).unwrap();
        let mut got = Vec::new();
        recv_until(&mut rx, &mut got, 1);
        // Give the third datagram time to arrive and be judged.
        let deadline = Instant::now() + Duration::from_millis(200);
        while rx.stats().oversized < 2 && Instant::now() < deadline {
            let _ = rx.recv_batch(&mut got);
        }
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].data[..], &[9u8; 256][..]);
        assert_eq!(rx.stats().oversized, 2);
    }

    #[test]
    fn refused_destination_is_dropped_and_the_rest_sent() {
        let mut tx = BatchSocket::bind("127.0.0.1:0").unwrap();
        let mut rx = BatchSocket::bind("127.0.0.1:0").unwrap();
        // An IPv6 destination on an IPv4 socket: the kernel refuses it (EAFNOSUPPORT).
        let bad: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
        let out = |to, data: &[u8]| Outgoing {
            to,
            data: BytesMut::from(data),
        };
        let mut batch = vec![
            out(bad, b"lost1"),
            out(rx.local_addr(), b"kept1"),
            out(bad, b"lost2"),
            out(rx.local_addr(), b"kept2"),
        ];
        let mut sent = 0;
        while !batch.is_empty() {
            sent += tx
                .send_batch(&mut batch, &mut BufferPool::default())
                .unwrap();
        }
        assert_eq!(sent, 2);
        assert_eq!(tx.stats().send_dropped, 2);
        let mut got = Vec::new();
        recv_until(&mut rx, &mut got, 2);
        let got: Vec<&[u8]> = got.iter().map(|d| &d.data[..]).collect();
        assert_eq!(got, vec![&b"kept1"[..], &b"kept2"[..]]);
    }

    #[test]
    fn gso_train_is_received_and_split_back() {
        let mut tx = BatchSocket::bind("127.0.0.1:0").unwrap();
        let mut rx = BatchSocket::bind("127.0.0.1:0").unwrap();
        let mut batch: Vec<Outgoing> = (0..40u16)
            .map(|i| Outgoing {
                to: rx.local_addr(),
                data: BytesMut::from(&payload(4, i, if i == 39 { 500 } else { 1100 })[..]),
            })
            .collect();
        let expected: Vec<Vec<u8>> = batch.iter().map(|o| o.data.to_vec()).collect();
        send_all(&mut tx, std::mem::take(&mut batch));
        let mut got = Vec::new();
        recv_until(&mut rx, &mut got, 40);
        let got: Vec<Vec<u8>> = got.iter().map(|d| d.data.to_vec()).collect();
        assert_eq!(got, expected);
        let (caps, tx_stats, rx_stats) = (tx.capabilities(), tx.stats(), rx.stats());
        eprintln!("GSO train: {caps:?}; sender {tx_stats:?}; receiver {rx_stats:?}");
        if caps.gso_segments > 1 {
            assert_eq!(tx_stats.send_syscalls, 1, "one GSO message");
        } else {
            eprintln!("GSO unavailable here: the train went as single datagrams");
        }
        if cfg!(target_os = "linux") && caps.gso_segments > 1 && caps.gro_segments > 1 {
            // A kernel that accepts UDP_GRO (>= 5.0) hands a GSO train on loopback to a GRO
            // socket whole: one buffer, split back here.
            assert!(
                rx_stats.recv_buffers < rx_stats.recv_datagrams,
                "GRO did not coalesce the train: {rx_stats:?}"
            );
        } else {
            eprintln!("GSO or GRO unavailable here: the GRO split path is not exercised");
        }
    }

    #[test]
    fn empty_socket_reports_would_block() {
        let mut rx = BatchSocket::bind("127.0.0.1:0").unwrap();
        let err = rx.recv_batch(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(rx.stats().recv_empty, 1);
    }

    #[test]
    fn received_datagrams_carry_the_kernel_receive_time() {
        let mut rx = BatchSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        tx.send_to(b"hello", rx.local_addr()).unwrap();
        let mut out = Vec::new();
        for _ in 0..200 {
            if rx.recv_batch(&mut out).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(out.len(), 1);
        if cfg!(target_os = "linux") {
            let received = out[0].received.expect("SO_TIMESTAMPNS on Linux");
            let after = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            assert!(
                before <= received + std::time::Duration::from_millis(1) && received <= after,
                "{before:?} <= {received:?} <= {after:?}"
            );
        }
    }

    #[test]
    fn gso_runs_group_one_destination_and_size() {
        let tx = BatchSocket::bind("127.0.0.1:0").unwrap();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let item = |to, len: usize| Outgoing {
            to,
            data: BytesMut::from(&vec![0u8; len][..]),
        };
        let items = vec![
            item(a, 100),
            item(a, 100),
            item(a, 60),
            item(a, 100),
            item(b, 100),
        ];
        if tx.capabilities().gso_segments > 1 {
            assert_eq!(tx.gso_run(&items), 3, "a shorter datagram ends the run");
            assert_eq!(
                tx.gso_run(&items[3..]),
                1,
                "another destination ends the run"
            );
            assert_eq!(
                tx.gso_run(&[item(a, 10), item(a, 20)]),
                1,
                "a longer datagram ends the run"
            );
        } else {
            eprintln!("GSO unavailable here: runs are single datagrams");
            assert_eq!(tx.gso_run(&items), 1);
        }
    }
}
