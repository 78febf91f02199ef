//! A connection's outgoing queue, as seen by everybody who writes to it.
//!
//! The connection task owns the WebSocket; the room registry (broadcasts, E2EE
//! relays) and the SFU event forwarder only hold an [`Outbox`]. The queue is bounded:
//! a client that stops reading fills it, the next push fails instead of growing
//! memory, and the connection is told through its `too_slow` signal to disconnect
//! that client. Nobody else ever waits for a slow reader.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{Notify, mpsc};

use crate::protocol::ServerMessage;

/// One item in a connection's queue.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A serialized server message, written as one text frame.
    Text(Utf8Bytes),
    /// The SFU gave up on this participant's media (ICE/DTLS failure): the connection
    /// removes the participant, reports `media_failed` and closes.
    MediaClosed(String),
    /// Another node holds this room's claim (multi-node mode, after Redis lost it): the
    /// room was closed here; the connection closes with 1012 so that the client
    /// reconnects and is routed to the room's node.
    Moved,
}

/// The writing end of a connection's queue. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<Outbound>,
    too_slow: Arc<Notify>,
}

/// The reading end, owned by the connection task.
#[derive(Debug)]
pub(crate) struct OutboxReceiver {
    /// Queued items in order.
    pub rx: mpsc::Receiver<Outbound>,
    /// Fires when a push found the queue full.
    pub too_slow: Arc<Notify>,
}

impl Outbox {
    /// A queue holding at most `capacity` items.
    pub fn new(capacity: usize) -> (Outbox, OutboxReceiver) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let too_slow = Arc::new(Notify::new());
        (
            Outbox {
                tx,
                too_slow: too_slow.clone(),
            },
            OutboxReceiver { rx, too_slow },
        )
    }

    /// Queues a message. Returns false if it was not queued (full or closed).
    pub fn send(&self, message: &ServerMessage) -> bool {
        self.push(Outbound::Text(message.to_json().into()))
    }

    /// Queues an already serialized message (for broadcasts: serialize once).
    pub fn send_text(&self, text: Utf8Bytes) -> bool {
        self.push(Outbound::Text(text))
    }

    /// Queues an item without waiting. A full queue marks the client as too slow.
    pub fn push(&self, item: Outbound) -> bool {
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                // `notify_one` stores a permit if the connection is not waiting right
                // now, so the signal cannot be lost.
                self.too_slow.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}
