//! ICE over TCP for clients whose UDP is blocked: the SFU's passive TCP candidates
//! (RFC 6544) and the RFC 4571 framing they speak.
//!
//! Over TCP every STUN, DTLS and SRTP packet travels as one *frame*: a 2-byte big-endian
//! length then that many bytes. [`Framer`] cuts a byte stream into frames (and encodes
//! them); a zero-length frame is skipped, and a length above the framer's maximum is an
//! error that closes the connection, so a peer can never make it buffer more than one
//! frame.
//!
//! [`IceTcpListener`] accepts connections on a non-blocking [`std::net::TcpListener`],
//! refusing (and counting) those beyond a total and a per-remote-IP limit. Each accepted
//! [`IceTcpConn`] must send, as its first frame and within a deadline, a STUN Binding
//! request whose USERNAME names a registered local ufrag (looked up through a closure the
//! caller passes: [`Demux::key_for_ufrag`](crate::demux::Demux::key_for_ufrag)); otherwise the
//! caller drops it. Writes go through a bounded queue of frames that never blocks: when it
//! is full the oldest media frame is dropped and counted.
//!
//! Like [`udp`](crate::udp), this module owns no reactor: the sockets are plain
//! non-blocking std sockets for the per-worker thread loop, which waits with `mio`
//! (`SourceFd` on [`AsRawFd`], edge-triggered): call [`IceTcpListener::accept`] until it
//! returns `Ok(None)`, [`IceTcpConn::on_readable`] until [`IceTcpConn::wants_read`] is
//! false, [`IceTcpConn::on_writable`] when the socket becomes writable, and
//! [`IceTcpConn::on_timer`] at [`IceTcpConn::deadline`]. Dropping a connection closes it.
//!
//! Nothing in this module logs payloads or ufrags; logs name the peer address only.

use crate::demux::{PacketClass, binding_request_username, classify};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
#[cfg(unix)]
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Largest frame accepted by default: an Ethernet MTU plus slack. WebRTC media stays
/// below ~1200 bytes.
pub const DEFAULT_MAX_FRAME: usize = 2048;
/// Largest payload an RFC 4571 length prefix can carry.
pub const MAX_ENCODABLE: usize = u16::MAX as usize;
/// Bytes read from a socket per `read` call.
pub const READ_CHUNK: usize = 4096;
/// `read` calls one [`IceTcpConn::on_readable`] makes at most before it returns (with
/// [`IceTcpConn::wants_read`] set), so one peer cannot hold the loop.
const MAX_READS_PER_CALL: usize = 16;
/// Slices gathered into one `writev`.
const MAX_WRITE_SLICES: usize = 32;

/// Why a frame cannot be decoded or encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A length prefix announced a frame larger than the framer's maximum.
    #[error("RFC 4571 frame of {len} bytes exceeds the maximum of {max}")]
    Oversized {
        /// The announced length.
        len: usize,
        /// The framer's maximum.
        max: usize,
    },
    /// A payload to encode does not fit a 16-bit length prefix.
    #[error("payload of {0} bytes does not fit an RFC 4571 frame")]
    TooLong(usize),
}

/// RFC 4571 decoder (and, through [`Framer::encode`], encoder). See the
/// [module documentation](self).
#[derive(Debug)]
pub struct Framer {
    /// The frame being assembled, length prefix included: at most `2 + max_frame` bytes.
    buf: BytesMut,
    max_frame: usize,
    /// Set by the first error: the stream cannot be resynchronised.
    failed: Option<FrameError>,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl Framer {
    /// A decoder of frames of up to `max_frame` bytes (clamped to 1..=[`MAX_ENCODABLE`]).
    pub fn new(max_frame: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_frame: max_frame.clamp(1, MAX_ENCODABLE),
            failed: None,
        }
    }

    /// The largest frame this decoder accepts.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Bytes held of a frame not yet complete (prefix included); never more than
    /// `2 + max_frame`.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Feeds the next bytes of the stream and returns the frames they complete, in order.
    /// Zero-length frames are skipped. An oversized length prefix fails this and every
    /// later call (the frames completed earlier in the same call are discarded: the
    /// connection is to be closed).
    pub fn push(&mut self, mut data: &[u8]) -> Result<Vec<BytesMut>, FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let mut frames = Vec::new();
        loop {
            if self.buf.len() < 2 {
                let take = (2 - self.buf.len()).min(data.len());
                self.buf.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.buf.len() < 2 {
                    return Ok(frames);
                }
            }
            let len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
            if len == 0 {
                self.buf.clear();
                continue;
            }
            if len > self.max_frame {
                let err = FrameError::Oversized {
                    len,
                    max: self.max_frame,
                };
                self.failed = Some(err.clone());
                self.buf = BytesMut::new();
                return Err(err);
            }
            let have = self.buf.len() - 2;
            let take = (len - have).min(data.len());
            if have == 0 {
                self.buf.reserve(len);
            }
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() < 2 + len {
                return Ok(frames);
            }
            let mut frame = self.buf.split();
            frame.advance(2);
            frames.push(frame);
        }
    }

    /// Appends `payload` as one frame to `out`. Fails when it is longer than
    /// [`MAX_ENCODABLE`].
    pub fn encode(payload: &[u8], out: &mut BytesMut) -> Result<(), FrameError> {
        let len = u16::try_from(payload.len()).map_err(|_| FrameError::TooLong(payload.len()))?;
        out.reserve(2 + payload.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(payload);
        Ok(())
    }
}

/// Limits of the ICE-TCP listener and its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IceTcpConfig {
    /// Largest frame a peer may send (longer closes the connection).
    pub max_frame: usize,
    /// Time a new connection has to send a Binding request naming a registered ufrag.
    pub handshake_timeout: Duration,
    /// Frames a connection's write queue holds at most.
    pub max_queued_frames: usize,
    /// Connections open at once, over all peers.
    pub max_conns: usize,
    /// Connections open at once from one remote IP.
    pub max_conns_per_ip: usize,
}

impl Default for IceTcpConfig {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            handshake_timeout: Duration::from_secs(5),
            max_queued_frames: 256,
            max_conns: 1024,
            max_conns_per_ip: 8,
        }
    }
}

/// Counters of an [`IceTcpListener`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// Connections accepted and handed out.
    pub accepted: u64,
    /// Connections refused because [`IceTcpConfig::max_conns`] were open.
    pub refused_total: u64,
    /// Connections refused because [`IceTcpConfig::max_conns_per_ip`] were open from the
    /// same IP.
    pub refused_per_ip: u64,
}

/// Open connections, shared by the listener and its connections' [`Slot`]s.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

fn lock(counts: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    // The counts stay consistent under any panic (each update is one statement).
    counts.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A connection's place in its listener's counts, given back on drop.
#[derive(Debug)]
struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = lock(&self.counts);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// The passive ICE-TCP socket. See the [module documentation](self).
#[derive(Debug)]
pub struct IceTcpListener {
    listener: TcpListener,
    local: SocketAddr,
    config: IceTcpConfig,
    counts: Arc<Mutex<Counts>>,
    stats: ListenerStats,
}

impl IceTcpListener {
    /// Binds a non-blocking listener with the given limits.
    pub fn bind(addr: impl ToSocketAddrs, config: IceTcpConfig) -> io::Result<Self> {
        Self::from_std(TcpListener::bind(addr)?, config)
    }

    /// Wraps a bound listener (made non-blocking) with the given limits.
    pub fn from_std(listener: TcpListener, config: IceTcpConfig) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        tracing::debug!(%local, ?config, "ICE-TCP listener bound");
        Ok(Self {
            listener,
            local,
            config,
            counts: Arc::default(),
            stats: ListenerStats::default(),
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The listener's limits.
    pub fn config(&self) -> IceTcpConfig {
        self.config
    }

    /// The listener's counters so far.
    pub fn stats(&self) -> ListenerStats {
        self.stats
    }

    /// Connections accepted and not yet dropped.
    pub fn open_conns(&self) -> usize {
        lock(&self.counts).total
    }

    /// Accepts the next connection within the limits, closing and counting those beyond
    /// them on the way. `Ok(None)`: nothing more is pending. `now` starts the connection's
    /// handshake deadline. Errors are the listener's (e.g. out of descriptors), not a
    /// peer's.
    pub fn accept<K: Copy>(&mut self, now: Instant) -> io::Result<Option<IceTcpConn<K>>> {
        loop {
            let (stream, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            let ip = peer.ip();
            {
                let mut c = lock(&self.counts);
                if c.total >= self.config.max_conns {
                    self.stats.refused_total += 1;
                    tracing::debug!(%peer, "ICE-TCP connection refused: total limit");
                    continue;
                }
                let per_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
                if per_ip >= self.config.max_conns_per_ip {
                    self.stats.refused_per_ip += 1;
                    tracing::debug!(%peer, "ICE-TCP connection refused: per-IP limit");
                    continue;
                }
                c.total += 1;
                *c.per_ip.entry(ip).or_insert(0) += 1;
            }
            let slot = Slot {
                counts: Arc::clone(&self.counts),
                ip,
            };
            // On failure the slot is given back and the stream closed.
            let conn = match IceTcpConn::new(stream, peer, slot, &self.config, now) {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "ICE-TCP connection setup failed");
                    continue;
                }
            };
            self.stats.accepted += 1;
            tracing::debug!(%peer, "ICE-TCP connection accepted");
            return Ok(Some(conn));
        }
    }
}

#[cfg(unix)]
impl AsRawFd for IceTcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }
}

#[cfg(unix)]
impl AsFd for IceTcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

/// Why a connection is to be closed (the caller drops it).
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The socket failed.
    #[error("ICE-TCP socket error: {0}")]
    Io(#[from] io::Error),
    /// The peer broke the framing.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The peer closed its side.
    #[error("ICE-TCP peer closed the connection")]
    PeerClosed,
    /// The first frame was not a STUN Binding request.
    #[error("first ICE-TCP frame is not a STUN Binding request")]
    NotBindingRequest,
    /// The first frame was a Binding request naming no registered ufrag.
    #[error("ICE-TCP Binding request names an unknown ufrag")]
    UnknownUfrag,
    /// No accepted Binding request within [`IceTcpConfig::handshake_timeout`].
    #[error("no ICE-TCP Binding request before the deadline")]
    HandshakeTimeout,
}

/// Counters of one [`IceTcpConn`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Frames received and handed out.
    pub frames_in: u64,
    /// Frames written completely to the socket.
    pub frames_out: u64,
    /// RTP / RTCP frames dropped because the write queue was full.
    pub dropped_media: u64,
    /// Other frames (STUN, DTLS) dropped because the write queue was full of them.
    pub dropped_other: u64,
}

/// One queued frame, length prefix included.
#[derive(Debug)]
struct Queued {
    bytes: Bytes,
    media: bool,
}

/// One accepted ICE-TCP connection, tied to the PeerConnection key `K` its first Binding
/// request named. See the [module documentation](self).
#[derive(Debug)]
pub struct IceTcpConn<K> {
    stream: TcpStream,
    peer: SocketAddr,
    framer: Framer,
    /// `None` until the first frame named a registered ufrag.
    key: Option<K>,
    /// Until when the first Binding request may arrive (`None` once accepted).
    deadline: Option<Instant>,
    queue: VecDeque<Queued>,
    /// Bytes of the queue's front already written.
    written: usize,
    max_queued: usize,
    encode_buf: BytesMut,
    more_to_read: bool,
    stats: ConnStats,
    _slot: Slot,
}

impl<K: Copy> IceTcpConn<K> {
    fn new(
        stream: TcpStream,
        peer: SocketAddr,
        slot: Slot,
        config: &IceTcpConfig,
        now: Instant,
    ) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            peer,
            framer: Framer::new(config.max_frame),
            key: None,
            deadline: Some(now + config.handshake_timeout),
            queue: VecDeque::new(),
            written: 0,
            max_queued: config.max_queued_frames.max(1),
            encode_buf: BytesMut::new(),
            more_to_read: false,
            stats: ConnStats::default(),
            _slot: slot,
        })
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The PeerConnection the first Binding request named, once it arrived.
    pub fn key(&self) -> Option<K> {
        self.key
    }

    /// When [`on_timer`](Self::on_timer) must be called: the handshake deadline, `None`
    /// once the connection is accepted.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The connection's counters so far.
    pub fn stats(&self) -> ConnStats {
        self.stats
    }

    /// Frames waiting in the write queue (the one being written included).
    pub fn queued_frames(&self) -> usize {
        self.queue.len()
    }

    /// Whether the queue holds bytes the socket did not take yet (keep `WRITABLE`
    /// interest).
    pub fn wants_write(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Whether the last [`on_readable`](Self::on_readable) stopped at its read budget
    /// with data possibly left: call it again (an edge-triggered poll will not report it).
    pub fn wants_read(&self) -> bool {
        self.more_to_read
    }

    /// Fails with [`ConnError::HandshakeTimeout`] when the connection is not accepted by
    /// `now` and its deadline has passed.
    pub fn on_timer(&mut self, now: Instant) -> Result<(), ConnError> {
        match self.deadline {
            Some(deadline) if now >= deadline => {
                tracing::debug!(peer = %self.peer, "ICE-TCP connection timed out before its Binding request");
                Err(ConnError::HandshakeTimeout)
            }
            _ => Ok(()),
        }
    }

    /// Reads what the socket holds (up to a budget, see [`wants_read`](Self::wants_read))
    /// and returns the complete frames. Until the connection is accepted, its first frame
    /// must be a STUN Binding request whose USERNAME's local part `lookup` maps to a key;
    /// that frame is returned too (for the ICE agent). On error the connection is to be
    /// dropped, and the frames of this call are discarded.
    pub fn on_readable(
        &mut self,
        mut lookup: impl FnMut(&str) -> Option<K>,
    ) -> Result<Vec<BytesMut>, ConnError> {
        let mut chunk = [0u8; READ_CHUNK];
        let mut frames = Vec::new();
        self.more_to_read = false;
        for _ in 0..MAX_READS_PER_CALL {
            let n = match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ConnError::PeerClosed),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(frames),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            for frame in self.framer.push(&chunk[..n])? {
                if self.key.is_none() {
                    self.key = Some(self.authenticate(&frame, &mut lookup)?);
                    self.deadline = None;
                }
                self.stats.frames_in += 1;
                frames.push(frame);
            }
        }
        self.more_to_read = true;
        Ok(frames)
    }

    fn authenticate(
        &self,
        frame: &[u8],
        lookup: &mut impl FnMut(&str) -> Option<K>,
    ) -> Result<K, ConnError> {
        let Some(username) = binding_request_username(frame) else {
            tracing::debug!(peer = %self.peer, "ICE-TCP first frame is not a Binding request");
            return Err(ConnError::NotBindingRequest);
        };
        match lookup(&username.local) {
            Some(key) => {
                tracing::debug!(peer = %self.peer, "ICE-TCP connection named a registered ufrag");
                Ok(key)
            }
            None => {
                tracing::debug!(peer = %self.peer, "ICE-TCP Binding request names an unknown ufrag");
                Err(ConnError::UnknownUfrag)
            }
        }
    }

    /// Queues `payload` as one frame and writes what the socket takes now; never blocks.
    /// When the queue is full, the oldest RTP / RTCP frame not being written is dropped
    /// (or, when there is none, the new frame) and counted in [`ConnStats`]. Fails when
    /// the payload cannot be framed or the socket failed.
    pub fn queue(&mut self, payload: &[u8]) -> Result<(), ConnError> {
        let media = classify(payload) == PacketClass::Rtp;
        Framer::encode(payload, &mut self.encode_buf)?;
        let bytes = self.encode_buf.split().freeze();
        if self.queue.len() >= self.max_queued {
            // The front frame is never dropped once partly written: the stream would break.
            let skip = usize::from(self.written > 0);
            match self.queue.iter().skip(skip).position(|q| q.media) {
                Some(pos) => {
                    self.queue.remove(pos + skip);
                    self.stats.dropped_media += 1;
                }
                None => {
                    if media {
                        self.stats.dropped_media += 1;
                    } else {
                        self.stats.dropped_other += 1;
                    }
                    return self.flush();
                }
            }
        }
        self.queue.push_back(Queued { bytes, media });
        self.flush()
    }

    /// Writes queued frames until the queue is empty or the socket would block.
    pub fn on_writable(&mut self) -> Result<(), ConnError> {
        self.flush()
    }

    fn flush(&mut self) -> Result<(), ConnError> {
        while !self.queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_WRITE_SLICES];
            let mut count = 0;
            for (i, q) in self.queue.iter().take(MAX_WRITE_SLICES).enumerate() {
                let start = if i == 0 { self.written } else { 0 };
                slices[i] = IoSlice::new(&q.bytes[start..]);
                count += 1;
            }
            let mut n = match self.stream.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            while n > 0 {
                let Some(front) = self.queue.front() else {
                    break;
                };
                let left = front.bytes.len() - self.written;
                if n >= left {
                    n -= left;
                    self.queue.pop_front();
                    self.written = 0;
                    self.stats.frames_out += 1;
                } else {
                    self.written += n;
                    n = 0;
                }
            }
        }
        Ok(())
    }
}

#[cfg(unix)]
impl<K> AsRawFd for IceTcpConn<K> {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}

#[cfg(unix)]
impl<K> AsFd for IceTcpConn<K> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rtc::stun::attributes::ATTR_USERNAME;
    use rtc::stun::message::{BINDING_REQUEST, Message, Setter, TransactionId};
    use rtc::stun::textattrs::TextAttribute;

    const RTP: &[u8] = &[0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0xde, 0xad];

    fn binding(username: &str) -> Vec<u8> {
        let setters: Vec<Box<dyn Setter>> = vec![
            Box::new(BINDING_REQUEST),
            Box::new(TransactionId::new()),
            Box::new(TextAttribute::new(ATTR_USERNAME, username.to_owned())),
        ];
        let mut m = Message::new();
        m.build(&setters).unwrap();
        m.raw
    }

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        Framer::encode(payload, &mut out).unwrap();
        out.to_vec()
    }

    /// The lookup the worker loop will pass: the demux's ufrag table ("sfuA" → 7).
    fn lookup(ufrag: &str) -> Option<u32> {
        let mut demux = crate::demux::Demux::default();
        demux.register_ufrag("sfuA", 7u32).ok()?;
        demux.key_for_ufrag(ufrag)
    }

    fn config() -> IceTcpConfig {
        IceTcpConfig {
            handshake_timeout: Duration::from_millis(200),
            ..IceTcpConfig::default()
        }
    }

    fn listener(config: IceTcpConfig) -> IceTcpListener {
        IceTcpListener::bind("127.0.0.1:0", config).unwrap()
    }

    /// Accepts within two seconds (the kernel may not have queued the connection yet).
    fn accept_within(l: &mut IceTcpListener) -> Option<IceTcpConn<u32>> {
        accept_for(l, Duration::from_secs(2))
    }

    /// Accepts within `wait`.
    fn accept_for(l: &mut IceTcpListener, wait: Duration) -> Option<IceTcpConn<u32>> {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Some(conn) = l.accept(Instant::now()).unwrap() {
                return Some(conn);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    }

    /// Reads until `want` frames arrived, an error, or two seconds passed.
    fn read_until(conn: &mut IceTcpConn<u32>, want: usize) -> Result<Vec<Vec<u8>>, ConnError> {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut got = Vec::new();
        while got.len() < want && Instant::now() < deadline {
            let frames = conn.on_readable(lookup)?;
            if frames.is_empty() {
                std::thread::sleep(Duration::from_millis(2));
            }
            got.extend(frames.into_iter().map(|f| f.to_vec()));
        }
        Ok(got)
    }

    /// Whether the server closed `client`'s connection (EOF or reset) within two seconds.
    fn closed_by_server(client: &mut TcpStream) -> bool {
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 64];
        matches!(client.read(&mut buf), Ok(0))
            || matches!(client.read(&mut buf), Err(e) if e.kind() == io::ErrorKind::ConnectionReset)
    }

    #[test]
    fn encode_then_decode() {
        let mut out = BytesMut::new();
        Framer::encode(RTP, &mut out).unwrap();
        Framer::encode(&[], &mut out).unwrap();
        Framer::encode(b"x", &mut out).unwrap();
        assert_eq!(&out[..2], &[0, RTP.len() as u8]);
        let mut f = Framer::default();
        let frames = f.push(&out).unwrap();
        assert_eq!(frames, vec![BytesMut::from(RTP), BytesMut::from(&b"x"[..])]);
        assert_eq!(f.buffered_len(), 0);
        assert_eq!(
            Framer::encode(&vec![0; MAX_ENCODABLE + 1], &mut out),
            Err(FrameError::TooLong(MAX_ENCODABLE + 1))
        );
        Framer::encode(&vec![0; MAX_ENCODABLE], &mut BytesMut::new()).unwrap();
    }

    #[test]
    fn zero_length_frames_are_skipped() {
        let mut f = Framer::default();
        assert_eq!(f.push(&[0, 0, 0, 0, 0]).unwrap(), Vec::<BytesMut>::new());
        assert_eq!(
            f.push(&[0, 0, 1, 9, 0, 0]).unwrap(),
            vec![BytesMut::from(&[9u8][..])]
        );
        assert_eq!(f.buffered_len(), 0);
    }

    #[test]
    fn oversized_length_is_an_error_and_sticks() {
        let mut f = Framer::new(100);
        assert_eq!(
            f.push(&[0, 101]),
            Err(FrameError::Oversized { len: 101, max: 100 }),
            "detected from the prefix alone"
        );
        assert!(f.push(&framed(b"ok")).is_err(), "no resynchronisation");
        assert_eq!(f.buffered_len(), 0);
        let mut f = Framer::default();
        let mut stream = framed(RTP);
        stream.extend_from_slice(&[0xff, 0xff]);
        assert!(f.push(&stream).is_err());
        assert_eq!(Framer::new(100).push(&framed(&[1; 100])).unwrap().len(), 1);
    }

    #[test]
    fn buffer_holds_at_most_one_frame() {
        let mut f = Framer::new(1000);
        // A peer trickling a maximal frame, then half of another.
        let mut stream = framed(&[5; 1000]);
        stream.extend_from_slice(&framed(&[6; 1000])[..600]);
        for byte in stream.chunks(7) {
            f.push(byte).unwrap();
            assert!(f.buffered_len() <= 2 + 1000);
        }
        assert_eq!(f.buffered_len(), 600);
        // One huge push of many frames still buffers only the unfinished one.
        let mut f = Framer::new(1000);
        let mut stream: Vec<u8> = (0..100).flat_map(|_| framed(&[1; 999])).collect();
        stream.extend_from_slice(&[3, 0xe8, 1, 2]);
        assert_eq!(f.push(&stream).unwrap().len(), 100);
        assert_eq!(f.buffered_len(), 4);
    }

    proptest! {
        #[test]
        fn any_chunking_gives_back_exactly_the_frames(
            frames in proptest::collection::vec(
                prop_oneof![
                    1 => Just(Vec::new()),
                    8 => proptest::collection::vec(any::<u8>(), 1..300),
                    1 => proptest::collection::vec(any::<u8>(), 1500..=2048),
                ],
                0..40,
            ),
            cuts in proptest::collection::vec(1usize..5000, 1..50),
        ) {
            let stream: Vec<u8> = frames.iter().flat_map(|f| framed(f)).collect();
            let mut f = Framer::default();
            let mut got = Vec::new();
            let mut rest = &stream[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                i += 1;
                got.extend(f.push(&rest[..n]).unwrap().into_iter().map(|b| b.to_vec()));
                prop_assert!(f.buffered_len() <= 2 + DEFAULT_MAX_FRAME);
                rest = &rest[n..];
            }
            let want: Vec<Vec<u8>> = frames.into_iter().filter(|f| !f.is_empty()).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(f.buffered_len(), 0);
        }

        #[test]
        fn push_never_panics_on_arbitrary_bytes(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..700), 0..20),
        ) {
            let mut f = Framer::new(1200);
            for c in chunks {
                let _ = f.push(&c);
                prop_assert!(f.buffered_len() <= 2 + 1200);
            }
        }
    }

    #[test]
    fn loopback_binding_request_then_split_rtp_frame() {
        let mut l = listener(config());
        let mut client = TcpStream::connect(l.local_addr()).unwrap();
        client.set_nodelay(true).unwrap();
        let mut conn = accept_within(&mut l).unwrap();
        assert_eq!(conn.peer_addr(), client.local_addr().unwrap());
        assert!(conn.deadline().is_some());
        assert_eq!(conn.key(), None);

        let stun = binding("sfuA:peer1");
        client.write_all(&framed(&stun)).unwrap();
        let rtp = framed(RTP);
        client.write_all(&rtp[..1]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        client.write_all(&rtp[1..5]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        client.write_all(&rtp[5..]).unwrap();

        let got = read_until(&mut conn, 2).unwrap();
        assert_eq!(got, vec![stun, RTP.to_vec()]);
        assert_eq!(conn.key(), Some(7));
        assert_eq!(conn.deadline(), None, "accepted: no deadline");
        conn.on_timer(Instant::now() + Duration::from_secs(60))
            .unwrap();
        assert_eq!(conn.stats().frames_in, 2);

        // And back: what the SFU queues arrives framed.
        conn.queue(RTP).unwrap();
        assert!(!conn.wants_write());
        let mut buf = vec![0u8; rtp.len()];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(buf, rtp);
        assert_eq!(conn.stats().frames_out, 1);

        drop(conn);
        assert_eq!(l.open_conns(), 0);
        assert!(closed_by_server(&mut client));
    }

    #[test]
    fn silent_connection_is_closed_after_the_deadline() {
        let mut l = listener(config());
        let mut client = TcpStream::connect(l.local_addr()).unwrap();
        let mut conn = accept_within(&mut l).unwrap();
        let deadline = conn.deadline().unwrap();
        assert!(conn.on_readable(lookup).unwrap().is_empty());
        conn.on_timer(Instant::now()).unwrap();
        std::thread::sleep(Duration::from_millis(250));
        assert!(Instant::now() >= deadline);
        assert!(matches!(
            conn.on_timer(Instant::now()),
            Err(ConnError::HandshakeTimeout)
        ));
        drop(conn);
        assert!(closed_by_server(&mut client));
        assert_eq!(l.open_conns(), 0);
    }

    #[test]
    fn first_frame_must_name_a_registered_ufrag() {
        let mut l = listener(config());
        let mut client = TcpStream::connect(l.local_addr()).unwrap();
        let mut conn = accept_within(&mut l).unwrap();
        client
            .write_all(&framed(&binding("unknown:peer1")))
            .unwrap();
        assert!(matches!(
            read_until(&mut conn, 1),
            Err(ConnError::UnknownUfrag)
        ));
        drop(conn);
        assert!(closed_by_server(&mut client));

        // Media before the Binding request is refused too.
        let mut client = TcpStream::connect(l.local_addr()).unwrap();
        let mut conn = accept_within(&mut l).unwrap();
        client.write_all(&framed(RTP)).unwrap();
        client.write_all(&framed(&binding("sfuA:peer1"))).unwrap();
        assert!(matches!(
            read_until(&mut conn, 2),
            Err(ConnError::NotBindingRequest)
        ));

        // An oversized frame closes.
        let mut client = TcpStream::connect(l.local_addr()).unwrap();
        let mut conn = accept_within(&mut l).unwrap();
        client.write_all(&[0xff, 0xff, 0]).unwrap();
        assert!(matches!(
            read_until(&mut conn, 1),
            Err(ConnError::Frame(FrameError::Oversized { .. }))
        ));
    }

    #[test]
    fn per_ip_and_total_limits_refuse_and_count() {
        let mut l = listener(IceTcpConfig {
            max_conns_per_ip: 1,
            ..config()
        });
        let _c1 = TcpStream::connect(l.local_addr()).unwrap();
        let conn1 = accept_within(&mut l).unwrap();
        let mut c2 = TcpStream::connect(l.local_addr()).unwrap();
        assert!(accept_for(&mut l, Duration::from_millis(200)).is_none());
        assert_eq!(l.stats().refused_per_ip, 1);
        assert!(closed_by_server(&mut c2));
        assert_eq!(l.open_conns(), 1);
        // A slot given back is free again.
        drop(conn1);
        let _c3 = TcpStream::connect(l.local_addr()).unwrap();
        assert!(accept_within(&mut l).is_some());
        assert_eq!(l.stats().accepted, 2);

        let mut l = listener(IceTcpConfig {
            max_conns: 1,
            ..config()
        });
        let _c1 = TcpStream::connect(l.local_addr()).unwrap();
        let _conn1 = accept_within(&mut l).unwrap();
        let mut c2 = TcpStream::connect(l.local_addr()).unwrap();
        assert!(accept_for(&mut l, Duration::from_millis(200)).is_none());
        assert_eq!(l.stats().refused_total, 1);
        assert!(closed_by_server(&mut c2));
    }

    #[test]
    fn full_write_queue_drops_oldest_media_and_never_blocks() {
        let mut l = listener(IceTcpConfig {
            max_queued_frames: 8,
            ..config()
        });
        // The client never reads: the socket buffers fill, then the queue.
        let _client = TcpStream::connect(l.local_addr()).unwrap();
        let mut conn = accept_within(&mut l).unwrap();
        let stun = binding("sfuA:peer1");
        let mut rtp = RTP.to_vec();
        rtp.resize(1200, 0xab);
        let start = Instant::now();
        let mut queued = 0;
        while conn.stats().dropped_media == 0 && queued < 100_000 {
            conn.queue(&rtp).unwrap();
            queued += 1;
        }
        assert!(conn.stats().dropped_media > 0, "queue never filled");
        assert_eq!(conn.queued_frames(), 8);
        // Control frames survive; media makes room for them.
        conn.queue(&stun).unwrap();
        assert_eq!(conn.queued_frames(), 8);
        assert_eq!(conn.stats().dropped_media, 2);
        for _ in 0..20 {
            conn.queue(&stun).unwrap();
        }
        assert_eq!(conn.queued_frames(), 8);
        assert!(conn.stats().dropped_other > 0);
        assert!(conn.wants_write());
        conn.on_writable().unwrap();
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}
