//! A small TURN client for tests: raw requests over UDP or TCP, with the STUN encoding
//! from the `stun`/`turn` crates, so a test can see exactly which error code the
//! server answers.

use std::net::SocketAddr;
use std::time::Duration;

use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::error_code::ErrorCodeAttribute;
use stun::integrity::MessageIntegrity;
use stun::message::{
    CLASS_ERROR_RESPONSE, CLASS_INDICATION, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, Getter as _,
    METHOD_ALLOCATE, METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, METHOD_DATA, METHOD_REFRESH,
    METHOD_SEND, Message, MessageType, Method, Setter,
};
use stun::textattrs::TextAttribute;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
use turn::proto::PROTO_UDP;
use turn::proto::channum::ChannelNumber;
use turn::proto::data::Data;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;

const WAIT: Duration = Duration::from_secs(5);

/// A byte stream a TURN client can run over (TCP, or TLS around it).
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for S {}

enum Transport {
    Udp(UdpSocket, SocketAddr),
    Tcp(Box<dyn Stream>),
}

/// One TURN client (one 5-tuple).
pub struct TurnClient {
    transport: Transport,
    username: String,
    password: String,
    realm: String,
    nonce: String,
    /// Data indications that arrived while waiting for a response.
    pub data: Vec<(SocketAddr, Vec<u8>)>,
}

/// How a request ended.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Success response.
    Ok(Message),
    /// Error response with this code.
    Error(u16),
}

impl TurnClient {
    /// A UDP client of the TURN server at `server`.
    pub async fn udp(server: SocketAddr, username: &str, password: &str) -> TurnClient {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        TurnClient::new(Transport::Udp(socket, server), username, password)
    }

    /// A TCP client of the TURN server at `server`.
    pub async fn tcp(server: SocketAddr, username: &str, password: &str) -> TurnClient {
        let stream = TcpStream::connect(server).await.unwrap();
        TurnClient::stream(stream, username, password)
    }

    /// A client over an established stream (e.g. TLS).
    pub fn stream(stream: impl Stream + 'static, username: &str, password: &str) -> TurnClient {
        TurnClient::new(Transport::Tcp(Box::new(stream)), username, password)
    }

    fn new(transport: Transport, username: &str, password: &str) -> TurnClient {
        TurnClient {
            transport,
            username: username.to_owned(),
            password: password.to_owned(),
            realm: String::new(),
            nonce: String::new(),
            data: Vec::new(),
        }
    }

    async fn send(&mut self, raw: &[u8]) {
        match &mut self.transport {
            Transport::Udp(socket, server) => {
                socket.send_to(raw, *server).await.unwrap();
            }
            Transport::Tcp(stream) => {
                stream.write_all(raw).await.unwrap();
                // ChannelData is padded to four bytes on a stream.
                if raw[0] >> 6 == 1 {
                    let pad = (4 - raw.len() % 4) % 4;
                    stream.write_all(&[0u8; 3][..pad]).await.unwrap();
                }
            }
        }
    }

    /// The next datagram or frame; `None` after `WAIT` or when the stream ended.
    pub async fn recv_raw(&mut self, wait: Duration) -> Option<Vec<u8>> {
        match &mut self.transport {
            Transport::Udp(socket, _) => {
                let mut buf = vec![0u8; 2048];
                let (n, _) = tokio::time::timeout(wait, socket.recv_from(&mut buf))
                    .await
                    .ok()?
                    .ok()?;
                buf.truncate(n);
                Some(buf)
            }
            Transport::Tcp(stream) => {
                let read = async {
                    let mut header = [0u8; 4];
                    stream.read_exact(&mut header).await.ok()?;
                    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
                    let (body, pad) = if header[0] >> 6 == 0 {
                        (16 + len, 0)
                    } else {
                        (len, (4 - len % 4) % 4)
                    };
                    let mut rest = vec![0u8; body + pad];
                    stream.read_exact(&mut rest).await.ok()?;
                    rest.truncate(body);
                    let mut frame = header.to_vec();
                    frame.extend(rest);
                    Some(frame)
                };
                tokio::time::timeout(wait, read).await.ok()?
            }
        }
    }

    /// Sends a request and waits for its response; Data indications seen meanwhile
    /// are kept in `self.data`.
    pub async fn request(
        &mut self,
        method: Method,
        mut attrs: Vec<Box<dyn Setter>>,
        authenticated: bool,
    ) -> Outcome {
        let mut m = Message::new();
        m.new_transaction_id().unwrap();
        let id = m.transaction_id;
        let mut all: Vec<Box<dyn Setter>> = vec![
            Box::new(id),
            Box::new(MessageType::new(method, CLASS_REQUEST)),
        ];
        all.append(&mut attrs);
        if authenticated {
            all.push(Box::new(TextAttribute::new(
                ATTR_USERNAME,
                self.username.clone(),
            )));
            all.push(Box::new(TextAttribute::new(ATTR_REALM, self.realm.clone())));
            all.push(Box::new(TextAttribute::new(ATTR_NONCE, self.nonce.clone())));
            all.push(Box::new(MessageIntegrity::new_long_term_integrity(
                self.username.clone(),
                self.realm.clone(),
                self.password.clone(),
            )));
        }
        m.build(&all).unwrap();
        self.send(&m.raw.clone()).await;
        loop {
            let raw = self
                .recv_raw(WAIT)
                .await
                .unwrap_or_else(|| panic!("no response to {method}"));
            let mut reply = Message::new();
            reply.raw = raw;
            if reply.decode().is_err() {
                continue; // ChannelData
            }
            if reply.typ == MessageType::new(METHOD_DATA, CLASS_INDICATION) {
                self.data.push(data_of(&reply));
                continue;
            }
            if reply.transaction_id != id {
                continue;
            }
            if reply.typ.class == CLASS_SUCCESS_RESPONSE {
                return Outcome::Ok(reply);
            }
            assert_eq!(reply.typ.class, CLASS_ERROR_RESPONSE);
            let mut code = ErrorCodeAttribute::default();
            code.get_from(&reply).unwrap();
            if let Ok(nonce) = TextAttribute::get_from_as(&reply, ATTR_NONCE) {
                self.nonce = nonce.text;
            }
            if let Ok(realm) = TextAttribute::get_from_as(&reply, ATTR_REALM) {
                self.realm = realm.text;
            }
            return Outcome::Error(code.code.0);
        }
    }

    /// Allocate as a browser does: unauthenticated first (401 brings realm and nonce),
    /// then with the credential. `Ok(relayed address)` or `Err(error code)`.
    pub async fn allocate(&mut self) -> Result<SocketAddr, u16> {
        let transport = || -> Vec<Box<dyn Setter>> {
            vec![Box::new(RequestedTransport {
                protocol: PROTO_UDP,
            })]
        };
        if self.nonce.is_empty() {
            assert_eq!(
                self.request(METHOD_ALLOCATE, transport(), false).await,
                Outcome::Error(401)
            );
        }
        match self.request(METHOD_ALLOCATE, transport(), true).await {
            Outcome::Ok(reply) => {
                let mut relayed = RelayedAddress::default();
                relayed.get_from(&reply).unwrap();
                Ok(SocketAddr::new(relayed.ip, relayed.port))
            }
            Outcome::Error(code) => Err(code),
        }
    }

    /// CreatePermission for `peer`: `Ok` or the error code.
    pub async fn create_permission(&mut self, peer: SocketAddr) -> Result<(), u16> {
        let attrs: Vec<Box<dyn Setter>> = vec![Box::new(PeerAddress {
            ip: peer.ip(),
            port: peer.port(),
        })];
        ok(self.request(METHOD_CREATE_PERMISSION, attrs, true).await)
    }

    /// ChannelBind `channel` (0x4000..) to `peer`.
    pub async fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> Result<(), u16> {
        let attrs: Vec<Box<dyn Setter>> = vec![
            Box::new(ChannelNumber(channel)),
            Box::new(PeerAddress {
                ip: peer.ip(),
                port: peer.port(),
            }),
        ];
        ok(self.request(METHOD_CHANNEL_BIND, attrs, true).await)
    }

    /// Refresh with `lifetime` (0 deletes the allocation).
    pub async fn refresh(&mut self, lifetime: Duration) -> Result<(), u16> {
        let attrs: Vec<Box<dyn Setter>> = vec![Box::new(Lifetime(lifetime))];
        ok(self.request(METHOD_REFRESH, attrs, true).await)
    }

    /// A Send indication carrying `data` to `peer`.
    pub async fn send_indication(&mut self, peer: SocketAddr, data: &[u8]) {
        let mut m = Message::new();
        m.new_transaction_id().unwrap();
        let attrs: Vec<Box<dyn Setter>> = vec![
            Box::new(m.transaction_id),
            Box::new(MessageType::new(METHOD_SEND, CLASS_INDICATION)),
            Box::new(PeerAddress {
                ip: peer.ip(),
                port: peer.port(),
            }),
            Box::new(Data(data.to_vec())),
        ];
        m.build(&attrs).unwrap();
        self.send(&m.raw.clone()).await;
    }

    /// ChannelData on a bound channel.
    pub async fn send_channel_data(&mut self, channel: u16, data: &[u8]) {
        let mut raw = channel.to_be_bytes().to_vec();
        raw.extend((data.len() as u16).to_be_bytes());
        raw.extend(data);
        self.send(&raw).await;
    }

    /// The next Data indication or ChannelData payload: `(peer or None, data)`.
    pub async fn recv_data(&mut self, wait: Duration) -> Option<(Option<SocketAddr>, Vec<u8>)> {
        if !self.data.is_empty() {
            let (peer, data) = self.data.remove(0);
            return Some((Some(peer), data));
        }
        let raw = self.recv_raw(wait).await?;
        if raw[0] >> 6 == 1 {
            let len = usize::from(u16::from_be_bytes([raw[2], raw[3]]));
            return Some((None, raw[4..4 + len].to_vec()));
        }
        let mut m = Message::new();
        m.raw = raw;
        m.decode().ok()?;
        let (peer, data) = data_of(&m);
        Some((Some(peer), data))
    }
}

fn data_of(m: &Message) -> (SocketAddr, Vec<u8>) {
    let mut peer = PeerAddress::default();
    peer.get_from(m).unwrap();
    let mut data = Data::default();
    data.get_from(m).unwrap();
    (SocketAddr::new(peer.ip, peer.port), data.0)
}

fn ok(outcome: Outcome) -> Result<(), u16> {
    match outcome {
        Outcome::Ok(_) => Ok(()),
        Outcome::Error(code) => Err(code),
    }
}
