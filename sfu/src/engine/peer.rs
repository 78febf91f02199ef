//! One `rtc` (sans-IO) PeerConnection of the single-port engine and the state the worker
//! keeps beside it.
//!
//! The connection never touches a socket: the worker hands it the datagrams the demux
//! routed to it (`handle_read`), and takes what it wants to send (`poll_write`). Its ICE
//! credentials are chosen here, so the worker can register the ufrag with the demux before
//! the client's first STUN check arrives.

use crate::rtc::{
    Chain, NetSettings, VP8_PT, announce_sdp, candidate_init, down_track_media, media_setup_with,
    rtc_err,
};
use crate::{IceCandidate, PcKind, SfuError, TrackKind};
use bytes::BytesMut;
use rand::Rng;
use rand::distr::Alphanumeric;
use rtc::ice::tcp_type::TcpType;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_RTX;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::message::TaggedRTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{BypassRead, RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::{RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Remote candidates kept while a connection has no remote description yet (also the
/// bound on candidates for a connection not built yet).
pub(crate) const MAX_PENDING_CANDIDATES: usize = 32;
/// ICE-TCP frames kept while a connection has no remote description yet.
const MAX_EARLY_TCP_FRAMES: usize = 16;
/// ICE-lite consent: no traffic for this long marks the connection disconnected ...
const ICE_DISCONNECTED_TIMEOUT: Duration = Duration::from_secs(5);
/// ... and this long after that, failed (the participant is then closed).
const ICE_FAILED_TIMEOUT: Duration = Duration::from_secs(10);
/// Keepalive interval of the agent.
const ICE_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);

/// A random string of `len` characters from the ICE alphabet (RFC 8445 `ice-char`).
fn ice_string(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// One PeerConnection driven by a worker.
pub(crate) struct Peer {
    pub kind: PcKind,
    pub pc: RTCPeerConnection,
    /// Our ICE username fragment (registered with the demux).
    pub ufrag: String,
    /// The worker's socket address: what `handle_read` is told the datagram arrived on.
    local: SocketAddr,
    /// The worker's ICE-TCP listening address, if it has one.
    local_tcp: Option<SocketAddr>,
    net: NetSettings,
    /// A remote description has been applied.
    pub has_remote: bool,
    /// ICE and DTLS are up (SRTP keys exist).
    pub connected: bool,
    /// When the connection must be up by (set at the first offer/answer).
    pub connect_deadline: Option<Instant>,
    pending: Vec<IceCandidate>,
    /// ICE-TCP frames that arrived before the remote description: STUN over TCP is never
    /// retransmitted (RFC 6544), so a check the agent cannot verify yet (no remote
    /// password) must wait for it rather than be lost.
    early_tcp: Vec<(SocketAddr, BytesMut)>,
    /// The connection's next timer, cached after every interaction.
    pub next_timeout: Option<Instant>,
}

/// How [`Peer::read`] handled a datagram, and so how its results are collected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// Media only, waiting for [`Peer::next_media`]; no event was raised.
    Media,
    /// The whole pipeline ran (or an event was raised): poll events and messages.
    Full,
}

impl Peer {
    /// Builds a connection that announces the worker's socket `local` as its host
    /// candidate, and `local_tcp` as a passive ICE-TCP one (RFC 6544) beside it.
    pub fn new(
        kind: PcKind,
        local: SocketAddr,
        local_tcp: Option<SocketAddr>,
        net: NetSettings,
    ) -> Result<Peer, SfuError> {
        let (engine, registry) = match kind {
            PcKind::Publish => media_setup_with(false, Chain::ReceiveOnly)?,
            PcKind::Subscribe => media_setup_with(true, Chain::Full)?,
        };
        let ufrag = ice_string(16);
        let settings = SettingEngineBuilder::new()
            .with_lite(true)
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(true)
            .with_ice_credentials(ufrag.clone(), ice_string(32))
            .with_ice_timeouts(
                Some(ICE_DISCONNECTED_TIMEOUT),
                Some(ICE_FAILED_TIMEOUT),
                Some(ICE_KEEPALIVE_INTERVAL),
            )
            .build();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(engine)
            .with_setting_engine(settings)
            .with_interceptor_registry(registry)
            .build(Instant::now())
            .map_err(|e| rtc_err("build PeerConnection", e))?;
        let mut hosts = vec![("udp", local, TcpType::Unspecified)];
        if let Some(tcp) = local_tcp {
            hosts.push(("tcp", tcp, TcpType::Passive));
        }
        for (network, addr, tcp_type) in hosts {
            let host = CandidateHostConfig {
                base_config: CandidateConfig {
                    network: network.to_owned(),
                    address: addr.ip().to_string(),
                    port: addr.port(),
                    component: 1,
                    ..Default::default()
                },
                tcp_type,
            }
            .new_candidate_host()
            .map_err(|e| rtc_err("host candidate", e))?;
            let init = RTCIceCandidate::from(&host)
                .to_json()
                .map_err(|e| rtc_err("host candidate", e))?;
            pc.add_local_candidate(init)
                .map_err(|e| rtc_err("add host candidate", e))?;
        }
        Ok(Peer {
            kind,
            pc,
            ufrag,
            local,
            local_tcp,
            net,
            has_remote: false,
            connected: false,
            connect_deadline: None,
            pending: Vec::new(),
            early_tcp: Vec::new(),
            next_timeout: None,
        })
    }

    /// Feeds one datagram (or one de-framed ICE-TCP frame) from `from`. Errors are the
    /// peer's (garbage, a failed check) and only logged: they must not end the connection.
    ///
    /// SRTP on a connected connection takes rtc's short read path (SRTP, interceptors,
    /// endpoint; see `third_party/rtc/PATCHES.md`): then the result is [`Read::Media`] and
    /// what it yielded is popped with [`Peer::next_media`]. Anything else is
    /// [`Read::Full`]: events and messages are polled from the connection as usual.
    pub fn read(&mut self, now: Instant, from: SocketAddr, data: BytesMut, tcp: bool) -> Read {
        if tcp && !self.has_remote {
            if self.early_tcp.len() < MAX_EARLY_TCP_FRAMES {
                self.early_tcp.push((from, data));
            }
            return Read::Full;
        }
        let (local_addr, transport_protocol) = match (tcp, self.local_tcp) {
            (true, Some(local_tcp)) => (local_tcp, TransportProtocol::TCP),
            (true, None) => return Read::Full,
            (false, _) => (self.local, TransportProtocol::UDP),
        };
        let msg = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr,
                peer_addr: from,
                ecn: None,
                transport_protocol,
            },
            message: data,
        };
        let msg = match self.pc.read_rtp_bypass(msg) {
            BypassRead::Taken { events: false } => return Read::Media,
            BypassRead::Taken { events: true } => return Read::Full,
            BypassRead::NotTaken(msg) => msg,
        };
        if let Err(err) = self.pc.handle_read(msg) {
            tracing::debug!(pc = ?self.kind, %from, %err, "datagram refused");
        }
        Read::Full
    }

    /// The next media message [`Peer::read`] yielded on its short path.
    pub fn next_media(&mut self) -> Option<TaggedRTCMessage> {
        self.pc.poll_media_bypass()
    }

    /// Applies the client's offer and returns our answer. A failure is the client's
    /// [`SfuError::BadSdp`]; the offer is rolled back so a later valid offer works.
    pub fn answer(
        &mut self,
        now: Instant,
        offer_sdp: &str,
        connect_timeout: Duration,
    ) -> Result<String, SfuError> {
        let offer = RTCSessionDescription::offer(offer_sdp.to_owned())
            .map_err(|e| SfuError::BadSdp(e.to_string()))?;
        self.pc
            .set_remote_description(now, offer)
            .map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let answered = self
            .pc
            .create_answer(None)
            .and_then(|answer| self.pc.set_local_description(now, answer));
        if let Err(err) = answered {
            let rolled_back = RTCSessionDescription::rollback(None)
                .and_then(|rollback| self.pc.set_remote_description(now, rollback));
            if let Err(err) = rolled_back {
                tracing::debug!(%err, "rollback of an unanswerable offer");
            }
            return Err(SfuError::BadSdp(format!("cannot answer this offer: {err}")));
        }
        self.negotiated(now, connect_timeout);
        self.local_sdp()
    }

    /// Creates an offer, applies it locally and returns it.
    pub fn offer(&mut self, now: Instant) -> Result<String, SfuError> {
        let offer = self
            .pc
            .create_offer(None)
            .map_err(|e| rtc_err("create offer", e))?;
        self.pc
            .set_local_description(now, offer)
            .map_err(|e| rtc_err("set local offer", e))?;
        self.local_sdp()
    }

    /// The payload type of the RTX stream of `sender`'s track, if the last answer took RTX
    /// (rtc drops a sender's RTX encoding when the answer has no RTX codec).
    pub fn rtx_payload_type(&mut self, sender: RTCRtpSenderId) -> Option<u8> {
        let mut sender = self.pc.rtp_sender(sender)?;
        let parameters = sender.get_parameters();
        parameters
            .encodings
            .first()?
            .rtp_coding_parameters
            .rtx
            .as_ref()?;
        let apt = format!("apt={VP8_PT}");
        parameters
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| {
                c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_RTX)
                    && c.rtp_codec
                        .sdp_fmtp_line
                        .split(';')
                        .any(|p| p.trim() == apt)
            })
            .map(|c| c.payload_type)
    }

    /// Applies the client's answer to our last offer.
    pub fn apply_answer(
        &mut self,
        now: Instant,
        answer_sdp: &str,
        connect_timeout: Duration,
    ) -> Result<(), SfuError> {
        let answer = RTCSessionDescription::answer(answer_sdp.to_owned())
            .map_err(|e| SfuError::BadSdp(e.to_string()))?;
        self.pc
            .set_remote_description(now, answer)
            .map_err(|e| SfuError::BadSdp(e.to_string()))?;
        self.negotiated(now, connect_timeout);
        Ok(())
    }

    /// A description was exchanged: apply held candidates, start the connect timer.
    fn negotiated(&mut self, now: Instant, connect_timeout: Duration) {
        self.has_remote = true;
        if !self.connected && self.connect_deadline.is_none() {
            self.connect_deadline = Some(now + connect_timeout);
        }
        for candidate in std::mem::take(&mut self.pending) {
            if let Err(err) = self.add_remote(candidate) {
                tracing::debug!(%err, "held candidate rejected");
            }
        }
        // The caller drains the connection afterwards, whatever path each frame took.
        for (from, frame) in std::mem::take(&mut self.early_tcp) {
            self.read(now, from, frame, true);
        }
    }

    /// Adds a client candidate, or holds it until there is a remote description.
    pub fn add_candidate(&mut self, candidate: IceCandidate) -> Result<(), SfuError> {
        if candidate.candidate.trim().is_empty() {
            return Ok(());
        }
        if self.has_remote {
            self.add_remote(candidate)
        } else if self.pending.len() < MAX_PENDING_CANDIDATES {
            self.pending.push(candidate);
            Ok(())
        } else {
            Err(SfuError::BadCandidate(
                "too many candidates before the offer".into(),
            ))
        }
    }

    fn add_remote(&mut self, candidate: IceCandidate) -> Result<(), SfuError> {
        self.pc
            .add_remote_candidate(candidate_init(candidate))
            .map_err(|e| SfuError::BadCandidate(e.to_string()))
    }

    /// Adds a down track: msid `<stream_id> <track_id>`, sending as `ssrc` (and its
    /// retransmissions as `rtx_ssrc`, if the subscriber takes RTX). With `reuse`,
    /// it takes over a transceiver of its kind whose earlier track was removed (and that
    /// removal negotiated), so the subscriber's SDP does not grow with every leave and
    /// join; otherwise it gets a new send-only transceiver.
    pub fn add_down_track(
        &mut self,
        stream_id: &str,
        track_id: &str,
        kind: TrackKind,
        ssrc: u32,
        rtx_ssrc: Option<u32>,
        reuse: bool,
    ) -> Result<RTCRtpSenderId, SfuError> {
        let track = down_track_media(stream_id, track_id, kind, ssrc, rtx_ssrc);
        if reuse {
            // `add_track` takes the first live transceiver of this kind without a sender
            // and makes it send-only again (inactive + send).
            return self
                .pc
                .add_track(track)
                .map_err(|e| rtc_err("reuse a transceiver", e));
        }
        let transceiver = self
            .pc
            .add_transceiver_from_track(
                track,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendonly,
                    streams: vec![stream_id.to_owned()],
                    send_encodings: vec![],
                }),
            )
            .map_err(|e| rtc_err("add down track", e))?;
        self.pc
            .rtp_transceiver(transceiver)
            .and_then(|t| t.sender())
            .ok_or_else(|| SfuError::Rtc("down track has no sender".into()))
    }

    /// Stops sending a down track (its m-line goes inactive at the next offer).
    pub fn remove_down_track(&mut self, sender: RTCRtpSenderId) -> Result<(), SfuError> {
        self.pc
            .remove_track(sender)
            .map_err(|e| rtc_err("remove down track", e))
    }

    /// Runs the connection's timers if due and caches the next one.
    pub fn on_timer(&mut self, now: Instant) {
        if self.next_timeout.is_some_and(|t| t <= now)
            && let Err(err) = self.pc.handle_timeout(now)
        {
            tracing::debug!(pc = ?self.kind, %err, "timer");
        }
    }

    /// Re-reads the connection's next timer.
    pub fn refresh_timeout(&mut self) {
        self.next_timeout = self.pc.poll_timeout();
    }

    fn local_sdp(&self) -> Result<String, SfuError> {
        let desc = self
            .pc
            .local_description()
            .ok_or_else(|| SfuError::Rtc("no local description".into()))?;
        Ok(announce_sdp(&desc.sdp, self.net))
    }
}
