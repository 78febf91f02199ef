//! The one module that talks to webrtc-rs (0.21). Everything else in the crate sees our own
//! small types: [`Pc`], [`RemoteTrack`], [`LocalTrack`], [`PcEvent`].
//!
//! Each [`Pc`] is one PeerConnection bound to one UDP port leased from the pool, in ICE-lite
//! mode (the SFU only answers connectivity checks), with Opus (PT 111) and VP8 (PT 96),
//! the RFC 6464 audio-level extension, webrtc-rs's default interceptors (NACK generator and
//! responder, RTCP reports, TWCC feedback) and our [`KeyframeRequestTap`] last in the chain.
//!
//! webrtc-rs 0.21 stores `SettingEngine::with_nat_1to1_ips` but never applies it, so the
//! public IP is announced by rewriting our host candidates (trickled and in SDP) here.

use crate::port_pool::PortLease;
use crate::rtcp::{KeyframeRequestTap, is_keyframe_request};
use crate::{IceCandidate, PcKind, SfuError, TrackKind};
use rtc::interceptor::{
    NackGeneratorBuilder, ReceiverReportBuilder, Registry, Slot, TwccReceiverBuilder,
};
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_RTX, MIME_TYPE_VP8,
};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RTCRtpRtxParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceGatheringState, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;
use webrtc::runtime::TokioRuntime;

/// An RTP packet as webrtc-rs hands it to us (header fields + `Bytes` payload).
pub(crate) type RtpPacket = rtc::rtp::Packet;

/// Opus payload type on every SFU connection.
pub(crate) const OPUS_PT: u8 = 111;
/// VP8 payload type on every SFU connection.
pub(crate) const VP8_PT: u8 = 96;
/// Payload type of VP8's retransmission stream (RFC 4588 RTX, `apt=96`), offered on the
/// single-port engine's subscribe connections.
pub(crate) const VP8_RTX_PT: u8 = 97;
/// RTP clock of Opus (RFC 7587).
pub(crate) const OPUS_CLOCK_RATE: u32 = 48_000;
/// RTP clock of VP8 (RFC 7741) and of its RTX stream.
pub(crate) const VP8_CLOCK_RATE: u32 = 90_000;

/// How long we wait for host candidates before returning an SDP without them.
const GATHER_TIMEOUT: Duration = Duration::from_secs(2);
/// ICE consent timeouts of the server's agent: zero, it never declares a connection
/// disconnected or failed by itself. webrtc-rs 0.21's ICE-lite agent judges liveness only
/// by traffic from the first pair the browser nominated; Chromium may move its media and
/// consent checks to another valid pair without nominating again, and the agent then
/// failed a working connection ≈ 15 s later (the participant was removed mid-meeting,
/// mostly right after a subscribe renegotiation). A dead client is still noticed: its
/// WebSocket closes or times out, and a page whose media is lost rejoins by itself.
/// The sans-IO media plane (issue 10) replaces this with consent by any inbound traffic.
const ICE_DISCONNECTED_TIMEOUT: Duration = Duration::ZERO;
const ICE_FAILED_TIMEOUT: Duration = Duration::ZERO;
const ICE_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);

/// Where a PC binds and what address it announces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NetSettings {
    pub bind_ip: IpAddr,
    pub public_ip: Option<IpAddr>,
}

/// What a PC reports to its owner (sent from webrtc-rs's driver task; never blocks it).
pub(crate) enum PcEvent {
    /// A local ICE candidate to trickle to the client.
    LocalCandidate(PcKind, IceCandidate),
    /// ICE + DTLS are up.
    Connected(PcKind),
    /// ICE or DTLS failed, or the connection closed under us.
    Failed(PcKind, String),
    /// The client started sending a track (publish PC only).
    Track(RemoteTrack),
}

/// One PeerConnection and the port it holds.
pub(crate) struct Pc {
    kind: PcKind,
    pc: Arc<dyn PeerConnection>,
    net: NetSettings,
    gathering: watch::Receiver<bool>,
    /// Whether the last SDP we returned already listed all our candidates.
    sdp_complete: AtomicBool,
    /// Returned to the pool when the PC is dropped (after close).
    _lease: PortLease,
}

struct Handler {
    kind: PcKind,
    net: NetSettings,
    events: mpsc::UnboundedSender<PcEvent>,
    gathering_complete: watch::Sender<bool>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => {
                let candidate = IceCandidate {
                    candidate: announce_candidate(&init.candidate, self.net),
                    sdp_mid: init.sdp_mid,
                    sdp_mline_index: init.sdp_mline_index,
                    username_fragment: init.username_fragment,
                };
                let _ = self
                    .events
                    .send(PcEvent::LocalCandidate(self.kind, candidate));
            }
            Err(err) => tracing::warn!(pc = ?self.kind, %err, "cannot serialise local candidate"),
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathering_complete.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(pc = ?self.kind, %state, "connection state");
        let event = match state {
            RTCPeerConnectionState::Connected => PcEvent::Connected(self.kind),
            RTCPeerConnectionState::Failed => {
                PcEvent::Failed(self.kind, format!("{:?} connection failed", self.kind))
            }
            RTCPeerConnectionState::Disconnected => {
                // Consent may come back; Failed follows if it does not.
                return;
            }
            _ => return,
        };
        let _ = self.events.send(event);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if self.kind != PcKind::Publish {
            return;
        }
        let track_id = track.track_id().await;
        let kind = match track.kind().await {
            RtpCodecKind::Audio => TrackKind::Audio,
            RtpCodecKind::Video => TrackKind::Video,
            _ => {
                tracing::warn!(%track_id, "ignoring track of unknown kind");
                return;
            }
        };
        let _ = self.events.send(PcEvent::Track(RemoteTrack {
            track,
            track_id,
            kind,
        }));
    }
}

/// RTX for VP8 (RFC 4588): retransmissions on their own SSRC, so a receiver can tell a
/// repair from an original (for its bandwidth estimate and statistics).
pub(crate) fn vp8_rtx_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_RTX.to_owned(),
        clock_rate: VP8_CLOCK_RATE,
        channels: 0,
        sdp_fmtp_line: format!("apt={VP8_PT}"),
        rtcp_feedback: vec![],
    }
}

pub(crate) fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: OPUS_CLOCK_RATE,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

pub(crate) fn vp8_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: VP8_CLOCK_RATE,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![RTCPFeedback {
            typ: "ccm".to_owned(),
            parameter: "fir".to_owned(),
        }],
    }
}

pub(crate) fn rtc_err(context: &str, err: impl std::fmt::Display) -> SfuError {
    SfuError::Rtc(format!("{context}: {err}"))
}

/// The media engine and interceptor chain every SFU connection uses.
pub(crate) fn media_setup() -> Result<(MediaEngine, Registry), SfuError> {
    media_setup_with(false, Chain::Full)
}

/// Which interceptors a connection's chain holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chain {
    /// rtc's defaults (NACK generator and responder, sender and receiver reports, TWCC
    /// feedback) and our [`KeyframeRequestTap`].
    Full,
    /// Only what a connection that receives media and sends none through rtc needs: the
    /// NACK generator, receiver reports and TWCC feedback. The single-port engine's publish
    /// connections: every packet a publisher sends passes each interceptor in the chain,
    /// and the NACK responder, sender reports and the tap (whose RTCP comes from
    /// subscribers) would only move it along. The SDP is the same as with [`Chain::Full`].
    ReceiveOnly,
}

/// [`media_setup`], offering RTX for VP8 when `rtx` (the single-port engine's subscribe
/// connections: it answers NACKs itself, on the RTX stream when the subscriber took it),
/// with the interceptors `chain` names.
pub(crate) fn media_setup_with(
    rtx: bool,
    chain: Chain,
) -> Result<(MediaEngine, Registry), SfuError> {
    let mut engine = MediaEngine::default();
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: OPUS_PT,
            },
            RtpCodecKind::Audio,
        )
        .map_err(|e| rtc_err("register Opus", e))?;
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: vp8_codec(),
                payload_type: VP8_PT,
            },
            RtpCodecKind::Video,
        )
        .map_err(|e| rtc_err("register VP8", e))?;
    if rtx {
        engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: vp8_rtx_codec(),
                    payload_type: VP8_RTX_PT,
                },
                RtpCodecKind::Video,
            )
            .map_err(|e| rtc_err("register RTX", e))?;
    }
    engine
        .register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: crate::audio_level::AUDIO_LEVEL_URI.to_owned(),
            },
            RtpCodecKind::Audio,
            None,
        )
        .map_err(|e| rtc_err("register audio level", e))?;
    // NACK generator + responder, sender/receiver reports, TWCC feedback to publishers; this
    // also registers their RTCP feedback and header extensions with the media engine.
    let registry = register_default_interceptors(Registry::new(), &mut engine)
        .map_err(|e| rtc_err("register interceptors", e))?;
    let registry = match chain {
        // Application-most slot: every built-in interceptor sees inbound RTCP first.
        Chain::Full => registry.with(Slot::Custom(14_000), KeyframeRequestTap::default()),
        Chain::ReceiveOnly => Registry::new()
            .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
            .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build())
            .with(Slot::TwccReceiver, TwccReceiverBuilder::new().build()),
    };
    Ok((engine, registry))
}

impl Pc {
    /// Builds a PeerConnection bound to `lease`'s port. PC events go to `events`.
    pub async fn new(
        kind: PcKind,
        net: NetSettings,
        lease: PortLease,
        events: mpsc::UnboundedSender<PcEvent>,
    ) -> Result<Pc, SfuError> {
        let (engine, registry) = media_setup()?;
        let settings = SettingEngineBuilder::new()
            .with_lite(true)
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            // A loopback bind address must still produce a host candidate (tests, dev).
            .with_include_loopback_candidate(true)
            .with_ice_timeouts(
                Some(ICE_DISCONNECTED_TIMEOUT),
                Some(ICE_FAILED_TIMEOUT),
                Some(ICE_KEEPALIVE_INTERVAL),
            )
            .build();
        let (gathering_tx, gathering_rx) = watch::channel(false);
        let handler = Arc::new(Handler {
            kind,
            net,
            events,
            gathering_complete: gathering_tx,
        });
        let addr = SocketAddr::new(net.bind_ip, lease.port());
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(engine)
            .with_setting_engine(settings)
            .with_interceptor_registry(registry)
            .with_runtime(Arc::new(TokioRuntime))
            .with_handler(handler)
            .with_udp_addrs(vec![addr])
            .build()
            .await
            .map_err(|e| rtc_err(&format!("bind {addr}"), e))?;
        Ok(Pc {
            kind,
            pc: Arc::new(pc),
            net,
            gathering: gathering_rx,
            sdp_complete: AtomicBool::new(false),
            _lease: lease,
        })
    }

    /// Applies the client's offer and returns our answer (with our candidates in it).
    ///
    /// Every step up to applying our answer depends on what the client offered, so a
    /// failure is the client's [`SfuError::BadSdp`]; the offer is then rolled back, and the
    /// connection is as it was before it (a later, valid offer works).
    pub async fn answer(&self, offer_sdp: &str) -> Result<String, SfuError> {
        let offer = RTCSessionDescription::offer(offer_sdp.to_owned())
            .map_err(|e| SfuError::BadSdp(e.to_string()))?;
        self.pc
            .set_remote_description(offer)
            .await
            .map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let answered = match self.pc.create_answer(None).await {
            Ok(answer) => self.pc.set_local_description(answer).await,
            Err(err) => Err(err),
        };
        if let Err(err) = answered {
            self.roll_back_offer().await;
            return Err(SfuError::BadSdp(format!("cannot answer this offer: {err}")));
        }
        self.local_sdp().await
    }

    /// Drops a remote offer we could not answer.
    async fn roll_back_offer(&self) {
        let rolled_back = match RTCSessionDescription::rollback(None) {
            Ok(rollback) => self.pc.set_remote_description(rollback).await,
            Err(err) => Err(err),
        };
        if let Err(err) = rolled_back {
            tracing::debug!(pc = ?self.kind, %err, "rollback of an unanswerable offer");
        }
    }

    /// Creates an offer, applies it locally and returns it (with our candidates in it).
    pub async fn offer(&self) -> Result<String, SfuError> {
        let offer = self
            .pc
            .create_offer(None)
            .await
            .map_err(|e| rtc_err("create offer", e))?;
        self.pc
            .set_local_description(offer)
            .await
            .map_err(|e| rtc_err("set local offer", e))?;
        self.local_sdp().await
    }

    /// Applies the client's answer to our last offer.
    pub async fn apply_answer(&self, answer_sdp: &str) -> Result<(), SfuError> {
        let answer = RTCSessionDescription::answer(answer_sdp.to_owned())
            .map_err(|e| SfuError::BadSdp(e.to_string()))?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(|e| SfuError::BadSdp(e.to_string()))
    }

    /// Adds a client candidate. With ICE-lite we never send checks, but a candidate tells
    /// the agent where the client is; an empty string is end-of-candidates.
    pub async fn add_candidate(&self, candidate: IceCandidate) -> Result<(), SfuError> {
        if candidate.candidate.trim().is_empty() {
            return Ok(());
        }
        self.pc
            .add_ice_candidate(candidate_init(candidate))
            .await
            .map_err(|e| SfuError::BadCandidate(e.to_string()))
    }

    /// Adds a send-only transceiver carrying a down track. Its SDP msid is
    /// `<stream_id> <track_id>`; it sends as `ssrc`.
    pub async fn add_down_track(
        &self,
        stream_id: String,
        track_id: String,
        kind: TrackKind,
        ssrc: u32,
    ) -> Result<LocalTrack, SfuError> {
        let track = Arc::new(TrackLocalStaticRTP::new(down_track_media(
            &stream_id, &track_id, kind, ssrc, None,
        )));
        let transceiver = self
            .pc
            .add_transceiver_from_track(
                Arc::clone(&track) as Arc<dyn TrackLocal>,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendonly,
                    streams: vec![stream_id],
                    send_encodings: vec![],
                }),
            )
            .await
            .map_err(|e| rtc_err("add down track", e))?;
        let sender = transceiver
            .sender()
            .await
            .map_err(|e| rtc_err("down track sender", e))?
            .ok_or_else(|| SfuError::Rtc("down track has no sender".into()))?;
        Ok(LocalTrack { track, sender })
    }

    /// Stops sending a down track (its m-line goes inactive at the next offer).
    pub async fn remove_down_track(&self, track: &LocalTrack) -> Result<(), SfuError> {
        self.pc
            .remove_track(&track.sender)
            .await
            .map_err(|e| rtc_err("remove down track", e))
    }

    /// Closes the connection and stops its driver; the socket is released.
    pub async fn close(&self) {
        if let Err(err) = self.pc.close().await {
            tracing::debug!(pc = ?self.kind, %err, "close");
        }
    }

    /// Our current local SDP, after host candidates were gathered (or the wait timed out).
    async fn local_sdp(&self) -> Result<String, SfuError> {
        let mut gathering = self.gathering.clone();
        let complete = tokio::time::timeout(GATHER_TIMEOUT, gathering.wait_for(|done| *done))
            .await
            .is_ok_and(|r| r.is_ok());
        let desc = self
            .pc
            .local_description()
            .await
            .ok_or_else(|| SfuError::Rtc("no local description".into()))?;
        self.sdp_complete.store(complete, Ordering::Release);
        Ok(announce_sdp(&desc.sdp, self.net))
    }

    /// Whether the SDPs we hand out already carry every local candidate, so trickling
    /// them too would only duplicate (and could race the answer to the client).
    pub fn sdp_has_all_candidates(&self) -> bool {
        self.sdp_complete.load(Ordering::Acquire)
    }
}

/// A track a client publishes, as received on its publish PC.
pub(crate) struct RemoteTrack {
    track: Arc<dyn TrackRemote>,
    /// The publisher's track id (SDP msid track id).
    pub track_id: String,
    /// Audio or video.
    pub kind: TrackKind,
}

/// What a remote track yields.
pub(crate) enum RemoteEvent {
    /// One RTP packet.
    Rtp(RtpPacket),
    /// Something else (RTCP, mute, open); ignore.
    Other,
}

impl RemoteTrack {
    /// The next packet or event; `None` once the track has ended.
    pub async fn next(&self) -> Option<RemoteEvent> {
        match self.track.poll().await? {
            TrackRemoteEvent::OnRtpPacket(packet) => Some(RemoteEvent::Rtp(packet)),
            TrackRemoteEvent::OnEnded => None,
            _ => Some(RemoteEvent::Other),
        }
    }

    /// A handle that can send keyframe requests for this track from any task.
    pub fn keyframe_requester(&self) -> KeyframeRequester {
        KeyframeRequester {
            track: Arc::clone(&self.track),
        }
    }
}

/// Sends PLIs to a publisher for one of its tracks.
#[derive(Clone)]
pub(crate) struct KeyframeRequester {
    track: Arc<dyn TrackRemote>,
}

impl KeyframeRequester {
    /// Sends a PLI for `media_ssrc` to the publisher.
    pub async fn send_pli(&self, media_ssrc: u32) -> Result<(), SfuError> {
        self.track
            .write_rtcp(vec![Box::new(PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc,
            })])
            .await
            .map_err(|e| rtc_err("send PLI", e))
    }
}

/// A down track's sending side on a subscriber's PC.
pub(crate) struct LocalTrack {
    track: Arc<TrackLocalStaticRTP>,
    sender: Arc<dyn RtpSender>,
}

impl LocalTrack {
    /// Sends one packet (header already rewritten for this down track).
    pub async fn write(&self, packet: RtpPacket) -> Result<(), SfuError> {
        self.track
            .write_rtp(packet)
            .await
            .map_err(|e| rtc_err("write RTP", e))
    }

    /// Waits for the subscriber to ask for a keyframe; `None` once the track is unbound.
    pub async fn next_keyframe_request(&self) -> Option<()> {
        loop {
            match self.track.poll().await? {
                TrackLocalEvent::OnRtcpPacket(packets) => {
                    if packets.iter().any(|p| is_keyframe_request(p.as_ref())) {
                        return Some(());
                    }
                }
                _ => continue,
            }
        }
    }
}

/// The media track of a down track: msid `<stream_id> <track_id>`, Opus or VP8, sending
/// as `ssrc`. Both engines announce down tracks this way.
pub(crate) fn down_track_media(
    stream_id: &str,
    track_id: &str,
    kind: TrackKind,
    ssrc: u32,
    rtx_ssrc: Option<u32>,
) -> MediaStreamTrack {
    let (codec_kind, codec) = match kind {
        TrackKind::Audio => (RtpCodecKind::Audio, opus_codec()),
        TrackKind::Video => (RtpCodecKind::Video, vp8_codec()),
    };
    MediaStreamTrack::new(
        stream_id.to_owned(),
        track_id.to_owned(),
        track_id.to_owned(),
        codec_kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                rtx: rtx_ssrc.map(|ssrc| RTCRtpRtxParameters { ssrc }),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )
}

/// A client candidate as the WebRTC stack takes it.
pub(crate) fn candidate_init(candidate: IceCandidate) -> RTCIceCandidateInit {
    RTCIceCandidateInit {
        candidate: candidate.candidate,
        sdp_mid: candidate.sdp_mid,
        sdp_mline_index: candidate.sdp_mline_index,
        username_fragment: candidate.username_fragment,
        ..Default::default()
    }
}

/// Rewrites a candidate line (`candidate:<foundation> <component> <transport> <priority>
/// <address> <port> typ ...`) to announce `public_ip` instead of the bind address.
fn announce_candidate(candidate: &str, net: NetSettings) -> String {
    let Some(public) = net.public_ip else {
        return candidate.to_owned();
    };
    let bind = net.bind_ip.to_string();
    let mut parts: Vec<&str> = candidate.split(' ').collect();
    let public = public.to_string();
    if parts.len() > 5 && parts[4] == bind {
        parts[4] = &public;
    }
    parts.join(" ")
}

/// Applies [`announce_candidate`] to every `a=candidate:` line of an SDP.
pub(crate) fn announce_sdp(sdp: &str, net: NetSettings) -> String {
    if net.public_ip.is_none() {
        return sdp.to_owned();
    }
    let mut out = String::with_capacity(sdp.len() + 64);
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let ending = &line[body.len()..];
        match body.strip_prefix("a=") {
            Some(candidate) if candidate.starts_with("candidate:") => {
                out.push_str("a=");
                out.push_str(&announce_candidate(candidate, net));
            }
            _ => out.push_str(body),
        }
        out.push_str(ending);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(public: Option<&str>) -> NetSettings {
        NetSettings {
            bind_ip: "10.0.0.5".parse().expect("ip"),
            public_ip: public.map(|p| p.parse().expect("ip")),
        }
    }

    #[test]
    fn public_ip_replaces_bind_address_in_candidates() {
        let c = "candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host";
        assert_eq!(
            announce_candidate(c, net(Some("203.0.113.7"))),
            "candidate:1 1 udp 2130706431 203.0.113.7 40000 typ host"
        );
        assert_eq!(announce_candidate(c, net(None)), c);
        let other = "candidate:1 1 udp 2130706431 192.168.1.1 40000 typ host";
        assert_eq!(announce_candidate(other, net(Some("203.0.113.7"))), other);
    }

    #[test]
    fn public_ip_replaces_bind_address_in_sdp() {
        let sdp = "v=0\r\na=ice-lite\r\na=candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host\r\na=end-of-candidates\r\n";
        let out = announce_sdp(sdp, net(Some("203.0.113.7")));
        assert_eq!(
            out,
            "v=0\r\na=ice-lite\r\na=candidate:1 1 udp 2130706431 203.0.113.7 40000 typ host\r\na=end-of-candidates\r\n"
        );
    }

    #[test]
    fn media_setup_registers_codecs_and_extension() {
        assert!(media_setup().is_ok());
    }
}
