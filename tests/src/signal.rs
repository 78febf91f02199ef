//! The WebSocket side of a participant: connect to `/ws`, send and receive protocol messages.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::protocol::{ClientMessage, ServerMessage};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What went wrong on the signaling connection.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// The server could not be reached or refused the WebSocket upgrade.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The URL tried.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server closed the connection.
    #[error("signaling connection closed")]
    Closed,
    /// Nothing arrived in time.
    #[error("no signaling message within {0:?}")]
    Timeout(Duration),
    /// A WebSocket error.
    #[error("websocket: {0}")]
    WebSocket(String),
}

/// Something to put on the wire. `Text` and `Binary` exist to send what a correct client
/// never would.
#[derive(Clone, Debug)]
pub enum Outbound {
    /// A well-formed protocol message.
    Json(ClientMessage),
    /// Any text frame.
    Text(String),
    /// Any binary frame.
    Binary(Vec<u8>),
    /// Close the connection.
    Close,
}

/// What arrived from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A message of the protocol.
    Message(ServerMessage),
    /// A text frame this client does not understand (kept for tests to assert on).
    Unparsed(String),
}

/// A connected signaling WebSocket.
pub struct SignalConnection {
    ws: Ws,
    close_code: Option<u16>,
}

impl SignalConnection {
    /// Connects to `url` (`ws://host:port/ws`).
    pub async fn connect(url: &str) -> Result<SignalConnection, SignalError> {
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(url),
        )
        .await
        .map_err(|_| SignalError::Connect {
            url: url.to_owned(),
            reason: "timed out".into(),
        })?
        .map_err(|e| SignalError::Connect {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(SignalConnection {
            ws,
            close_code: None,
        })
    }

    /// Sends one frame.
    pub async fn send(&mut self, out: Outbound) -> Result<(), SignalError> {
        let msg = match out {
            Outbound::Json(m) => match serde_json::to_string(&m) {
                Ok(s) => Message::text(s),
                Err(e) => return Err(SignalError::WebSocket(e.to_string())),
            },
            Outbound::Text(s) => Message::text(s),
            Outbound::Binary(b) => Message::binary(b),
            Outbound::Close => {
                return self
                    .ws
                    .close(None)
                    .await
                    .map_err(|e| SignalError::WebSocket(e.to_string()));
            }
        };
        self.ws
            .send(msg)
            .await
            .map_err(|e| SignalError::WebSocket(e.to_string()))
    }

    /// Receives the next text frame; `Err(Closed)` once the server closed.
    pub async fn recv(&mut self) -> Result<Inbound, SignalError> {
        loop {
            match self.ws.next().await {
                None => return Err(SignalError::Closed),
                Some(Err(e)) => return Err(SignalError::WebSocket(e.to_string())),
                Some(Ok(Message::Text(t))) => return Ok(parse(t.as_str())),
                Some(Ok(Message::Close(frame))) => {
                    self.close_code = frame.map(|f| u16::from(f.code));
                    return Err(SignalError::Closed);
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The code of the server's close frame, once [`recv`](Self::recv) met one.
    pub fn close_code(&self) -> Option<u16> {
        self.close_code
    }

    /// [`recv`](Self::recv) with a deadline.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<Inbound, SignalError> {
        tokio::time::timeout(timeout, self.recv())
            .await
            .map_err(|_| SignalError::Timeout(timeout))?
    }

    /// Splits into a sending task fed by a channel and the receiving half.
    pub fn split(
        self,
    ) -> (
        tokio::sync::mpsc::UnboundedSender<Outbound>,
        SignalReceiver,
        tokio::task::JoinHandle<()>,
    ) {
        let (mut sink, stream) = self.ws.split();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Outbound>();
        let writer = tokio::spawn(async move {
            while let Some(out) = rx.recv().await {
                let msg = match out {
                    Outbound::Json(m) => match serde_json::to_string(&m) {
                        Ok(s) => Message::text(s),
                        Err(_) => continue,
                    },
                    Outbound::Text(s) => Message::text(s),
                    Outbound::Binary(b) => Message::binary(b),
                    Outbound::Close => {
                        let _ = sink.close().await;
                        break;
                    }
                };
                if sink.send(msg).await.is_err() {
                    break;
                }
            }
        });
        (tx, SignalReceiver { stream }, writer)
    }
}

/// The receiving half of a split [`SignalConnection`].
pub struct SignalReceiver {
    stream: futures_util::stream::SplitStream<Ws>,
}

impl SignalReceiver {
    /// Receives the next text frame; `Err(Closed)` once the server closed.
    pub async fn recv(&mut self) -> Result<Inbound, SignalError> {
        loop {
            match self.stream.next().await {
                None => return Err(SignalError::Closed),
                Some(Err(e)) => return Err(SignalError::WebSocket(e.to_string())),
                Some(Ok(Message::Text(t))) => return Ok(parse(t.as_str())),
                Some(Ok(Message::Close(_))) => return Err(SignalError::Closed),
                Some(Ok(_)) => continue,
            }
        }
    }
}

fn parse(text: &str) -> Inbound {
    match serde_json::from_str::<ServerMessage>(text) {
        Ok(m) => Inbound::Message(m),
        Err(_) => Inbound::Unparsed(text.to_owned()),
    }
}
