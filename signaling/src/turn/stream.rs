//! TURN over TCP and TLS: cutting the byte stream into the messages the `turn` crate
//! handles one datagram at a time, and writing its replies back.
//!
//! RFC 8656 §6.2.1 / RFC 5766 §11.5: on a stream, STUN messages follow each other
//! as they are (20-byte header whose length field says how much follows), and a
//! ChannelData message (4-byte header, first two bits `01`) is padded to a multiple of
//! four bytes — in both directions. That framing is all this file does; every STUN and
//! TURN rule stays in the crate.
//!
//! Each connection gets its own [`StreamConn`], the crate's "socket" for everything it
//! sends that client: the replies and, for the allocation's lifetime, the relayed data.
//! Writes go through a bounded queue to a writer task, so a client that stops reading
//! loses datagrams (as it would over UDP) instead of stalling the relay.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::mpsc;
use turn::proto::chandata::ChannelData;
use webrtc_util::Conn;

use super::stats::TurnStats;

/// Largest message accepted on a stream. Browsers send a few hundred bytes of STUN
/// and ChannelData of at most an MTU; anything bigger is not a TURN client.
pub(crate) const MAX_FRAME: usize = 4096;

/// Datagrams queued for one client before new ones are dropped.
const WRITE_QUEUE: usize = 256;

/// Bytes of a frame's header that tell its length.
const HEADER: usize = 4;

/// Why a stream was closed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// Neither a STUN message nor ChannelData.
    #[error("not a STUN or ChannelData frame")]
    NotTurn,
    /// Longer than [`MAX_FRAME`].
    #[error("frame of {0} bytes is too large")]
    TooLarge(usize),
    /// The stream failed or ended.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Total length of the frame whose first four bytes are `header`, and how many padding
/// bytes follow it on a stream.
pub(crate) fn frame_len(header: [u8; HEADER]) -> Result<(usize, usize), FrameError> {
    let declared = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let (len, padding) = match header[0] >> 6 {
        // STUN: 20-byte header, attributes already 4-byte aligned.
        0b00 => (stun::message::MESSAGE_HEADER_SIZE + declared, 0),
        // ChannelData: 4-byte header, padded on streams.
        0b01 => (HEADER + declared, (4 - declared % 4) % 4),
        _ => return Err(FrameError::NotTurn),
    };
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    Ok((len, padding))
}

/// Reads the next frame (without its padding).
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; HEADER];
    reader.read_exact(&mut header).await?;
    let (len, padding) = frame_len(header)?;
    let mut frame = vec![0u8; len + padding];
    frame[..HEADER].copy_from_slice(&header);
    reader.read_exact(&mut frame[HEADER..]).await?;
    frame.truncate(len);
    Ok(frame)
}

/// Writes one frame, padding ChannelData to four bytes.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &[u8],
) -> std::io::Result<()> {
    writer.write_all(frame).await?;
    if ChannelData::is_channel_data(frame) {
        let padding = (4 - frame.len() % 4) % 4;
        writer.write_all(&[0u8; 3][..padding]).await?;
    }
    Ok(())
}

/// The crate's socket for one stream client: `send_to` that client queues a frame.
pub(crate) struct StreamConn {
    local: SocketAddr,
    peer: SocketAddr,
    queue: mpsc::Sender<Vec<u8>>,
    stats: Arc<TurnStats>,
}

fn not_supported() -> webrtc_util::Error {
    webrtc_util::Error::Other("a TURN stream only sends to its own client".into())
}

#[async_trait]
impl Conn for StreamConn {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(not_supported())
    }

    async fn recv(&self, _buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Err(not_supported())
    }

    async fn recv_from(&self, _buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        Err(not_supported())
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        self.send_to(buf, self.peer).await
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        if target != self.peer {
            return Err(not_supported());
        }
        match self.queue.try_send(buf.to_vec()) {
            Ok(()) => Ok(buf.len()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.dropped();
                Ok(buf.len())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(webrtc_util::Error::Other(
                "the TURN client disconnected".into(),
            )),
        }
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.local)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        Some(self.peer)
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// Serves one accepted (and, for TLS, handshaken) stream until the client leaves, stays
/// silent for `idle`, or sends something that is not TURN. `handle` processes each
/// frame with the connection's [`StreamConn`].
pub(crate) async fn serve<S, H, F>(
    stream: S,
    local: SocketAddr,
    peer: SocketAddr,
    idle: Duration,
    stats: Arc<TurnStats>,
    mut handle: H,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
    H: FnMut(Arc<dyn Conn + Send + Sync>, Vec<u8>) -> F,
    F: std::future::Future<Output = ()>,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (queue, mut outgoing) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let conn: Arc<dyn Conn + Send + Sync> = Arc::new(StreamConn {
        local,
        peer,
        queue,
        stats,
    });
    let writer_task = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if write_frame(&mut writer, &frame).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    loop {
        let frame = match tokio::time::timeout(idle, read_frame(&mut reader)).await {
            Ok(Ok(frame)) => frame,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TURN stream closed");
                break;
            }
            Err(_) => {
                tracing::debug!(%peer, "TURN stream idle; closing");
                break;
            }
        };
        handle(conn.clone(), frame).await;
    }
    writer_task.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lengths() {
        // A STUN header declaring 8 bytes of attributes.
        assert_eq!(frame_len([0x00, 0x01, 0x00, 0x08]).unwrap(), (28, 0));
        // ChannelData 0x4000 with 5 bytes of data: padded by 3.
        assert_eq!(frame_len([0x40, 0x00, 0x00, 0x05]).unwrap(), (9, 3));
        assert_eq!(frame_len([0x40, 0x00, 0x00, 0x08]).unwrap(), (12, 0));
        assert!(matches!(
            frame_len([0x80, 0, 0, 0]),
            Err(FrameError::NotTurn)
        ));
        // An HTTP request looks like a huge ChannelData frame and is refused by size.
        assert!(matches!(frame_len(*b"GET "), Err(FrameError::TooLarge(_))));
        assert!(matches!(
            frame_len([0x00, 0x01, 0xff, 0xff]),
            Err(FrameError::TooLarge(_))
        ));
    }

    #[tokio::test]
    async fn frames_round_trip_with_padding() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let stun = {
            let mut m = stun::message::Message::new();
            m.set_type(stun::message::BINDING_REQUEST);
            m.new_transaction_id().unwrap();
            m.encode();
            m.raw
        };
        let channel = vec![0x40, 0x01, 0x00, 0x03, 1, 2, 3];
        write_frame(&mut a, &channel).await.unwrap();
        write_frame(&mut a, &stun).await.unwrap();
        drop(a);
        let mut raw = Vec::new();
        // Padding went onto the wire…
        let first = read_frame(&mut b).await.unwrap();
        assert_eq!(first, channel);
        // …and was consumed, so the STUN message that follows parses.
        let second = read_frame(&mut b).await.unwrap();
        assert_eq!(second, stun);
        assert!(b.read_to_end(&mut raw).await.is_ok() && raw.is_empty());
    }
}
