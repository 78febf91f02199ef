//! ICE over TCP on a worker: the passive listener and one task per connection, on the
//! worker's own thread (a `LocalSet`), around the sockets of [`crate::ice_tcp`].
//!
//! A connection task reads RFC 4571 frames and hands them to the worker loop with the
//! PeerConnection its first Binding request named ([`TcpEvent::Frame`]); the worker feeds
//! them to that PeerConnection as TCP input and sends what it writes back to the task,
//! which frames and queues it (bounded: the oldest media frame goes first when full).

use super::worker::PcKey;
use crate::demux::Demux;
use crate::ice_tcp::{IceTcpConn, IceTcpListener};
use bytes::BytesMut;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, Ready};
use tokio::sync::mpsc;

/// Frames waiting between the worker and one connection's task.
const OUT_QUEUE: usize = 256;

/// What connection tasks tell the worker.
pub(crate) enum TcpEvent {
    /// A connection's first Binding request named `key`'s ufrag: send its output to `out`.
    Opened {
        peer: SocketAddr,
        key: PcKey,
        out: mpsc::Sender<BytesMut>,
    },
    /// One frame (a STUN, DTLS, RTP or RTCP packet) from `peer`.
    Frame {
        peer: SocketAddr,
        key: PcKey,
        frame: BytesMut,
        /// When it was read off the connection (what ingress shedding ages it from).
        received: Instant,
    },
    /// The connection is gone.
    Closed { peer: SocketAddr },
}

/// Accepts connections forever, one task each. Must run inside the worker's `LocalSet`.
pub(crate) async fn listen(
    listener: IceTcpListener,
    demux: Rc<RefCell<Demux<PcKey>>>,
    events: mpsc::UnboundedSender<TcpEvent>,
) {
    // SAFETY: the AsyncFd owns the listener, whose descriptor stays open and the same
    // until the AsyncFd drops it.
    let registered = unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) };
    let mut listener = match registered {
        Ok(fd) => fd,
        Err(err) => {
            tracing::error!(%err, "ICE-TCP listener cannot be registered");
            return;
        }
    };
    loop {
        let Ok(mut guard) = listener.readable_mut().await else {
            return;
        };
        loop {
            match guard.get_inner_mut().accept(Instant::now()) {
                Ok(Some(conn)) => {
                    tokio::task::spawn_local(connection(conn, Rc::clone(&demux), events.clone()));
                }
                Ok(None) => {
                    guard.clear_ready_matching(Ready::READABLE);
                    break;
                }
                Err(err) => {
                    tracing::debug!(%err, "ICE-TCP accept");
                    guard.clear_ready_matching(Ready::READABLE);
                    break;
                }
            }
        }
    }
}

/// Drives one connection until it fails, closes, or the worker drops its output side.
async fn connection(
    conn: IceTcpConn<PcKey>,
    demux: Rc<RefCell<Demux<PcKey>>>,
    events: mpsc::UnboundedSender<TcpEvent>,
) {
    let peer = conn.peer_addr();
    // SAFETY: as in `listen`: the AsyncFd owns the stream for its whole life.
    let registered =
        unsafe { AsyncFd::register_with_interest(conn, Interest::READABLE | Interest::WRITABLE) };
    let Ok(mut conn) = registered else {
        return;
    };
    let (out_tx, mut out_rx) = mpsc::channel::<BytesMut>(OUT_QUEUE);
    let mut out_tx = Some(out_tx);
    'conn: loop {
        let deadline = conn.get_ref().deadline();
        let interest = if conn.get_ref().wants_write() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        tokio::select! {
            ready = conn.ready_mut(interest) => {
                let Ok(mut guard) = ready else { break };
                let ready = guard.ready();
                if ready.is_writable() {
                    if guard.get_inner_mut().on_writable().is_err() {
                        break;
                    }
                    if guard.get_inner().wants_write() {
                        guard.clear_ready_matching(Ready::WRITABLE);
                    }
                }
                if ready.is_readable() {
                    let frames = {
                        let demux = demux.borrow();
                        guard.get_inner_mut().on_readable(|ufrag| demux.key_for_ufrag(ufrag))
                    };
                    let Ok(frames) = frames else { break };
                    if !guard.get_inner().wants_read() {
                        guard.clear_ready_matching(Ready::READABLE);
                    }
                    let Some(key) = guard.get_inner().key() else { continue };
                    if let Some(out) = out_tx.take()
                        && events.send(TcpEvent::Opened { peer, key, out }).is_err()
                    {
                        break;
                    }
                    let received = Instant::now();
                    for frame in frames {
                        if events.send(TcpEvent::Frame { peer, key, frame, received }).is_err() {
                            break 'conn;
                        }
                    }
                }
            }
            out = out_rx.recv(), if out_tx.is_none() => {
                let Some(frame) = out else { break };
                if conn.get_mut().queue(&frame).is_err() {
                    break;
                }
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                if conn.get_mut().on_timer(std::time::Instant::now()).is_err() {
                    break;
                }
            }
        }
    }
    let _ = events.send(TcpEvent::Closed { peer });
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline.into()).await;
    }
}

/// STUN message types this module needs to recognise (RFC 5389).
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const MAGIC_COOKIE: u32 = 0x2112_A442;
/// USE-CANDIDATE (RFC 8445): the controlling agent nominates this pair.
const ATTR_USE_CANDIDATE: u16 = 0x0025;

/// A STUN message's type, if `frame` is one.
fn stun_type(frame: &[u8]) -> Option<u16> {
    let header = frame.get(..20)?;
    let cookie = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    (cookie == MAGIC_COOKIE).then(|| u16::from_be_bytes([header[0], header[1]]))
}

/// Whether `frame` is a Binding request carrying USE-CANDIDATE.
pub(crate) fn is_nomination(frame: &[u8]) -> bool {
    if stun_type(frame) != Some(BINDING_REQUEST) {
        return false;
    }
    let mut attrs = frame.get(20..).unwrap_or_default();
    while let Some(head) = attrs.get(..4) {
        let kind = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        if kind == ATTR_USE_CANDIDATE {
            return true;
        }
        let padded = 4 + len.div_ceil(4) * 4;
        attrs = attrs.get(padded..).unwrap_or_default();
    }
    false
}

/// Whether `frame` is a Binding success response.
pub(crate) fn is_binding_success(frame: &[u8]) -> bool {
    stun_type(frame) == Some(BINDING_SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(kind: u16, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (t, v) in attrs {
            body.extend_from_slice(&t.to_be_bytes());
            body.extend_from_slice(&(v.len() as u16).to_be_bytes());
            body.extend_from_slice(v);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&kind.to_be_bytes());
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn nominations_and_successes_are_recognised() {
        let nominating = stun(
            BINDING_REQUEST,
            &[(0x0006, b"abc:def"), (ATTR_USE_CANDIDATE, b"")],
        );
        assert!(is_nomination(&nominating));
        assert!(!is_binding_success(&nominating));
        let plain = stun(
            BINDING_REQUEST,
            &[(0x0006, b"abc:def"), (0x0024, &[0, 0, 0, 1])],
        );
        assert!(!is_nomination(&plain));
        let success = stun(BINDING_SUCCESS, &[(0x0020, &[0; 8])]);
        assert!(is_binding_success(&success) && !is_nomination(&success));
        // Not STUN, truncated, or a length running past the end: never a nomination.
        assert!(!is_nomination(&[0x80, 0x60, 0, 0]));
        let mut cut = nominating.clone();
        cut.truncate(26);
        assert!(!is_nomination(&cut));
        assert!(!is_nomination(
            &stun(BINDING_REQUEST, &[(0x0006, &[1; 40])])[..28]
        ));
    }
}
