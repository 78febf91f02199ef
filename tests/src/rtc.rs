//! Every webrtc-rs call of the native participant lives here.
//!
//! The rest of the crate sees [`RtcPeer`] (one PeerConnection), [`LocalTrack`] (a track we
//! send RTP on), [`ReceivedRtp`] (a packet that arrived on the subscribe connection) and plain
//! strings for SDP; no webrtc-rs type leaks out, so an upgrade of that crate touches one file.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::interceptor::{
    Attribute, Interceptor, Packet as ChainPacket, Slot, StreamInfo, TaggedPacket,
};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfiguration, RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceServer,
    RTCIceTransportPolicy, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription, Registry, register_default_interceptors,
};

use crate::protocol::{Candidate, IceServer, MediaKind, PcName};

/// How a participant's connections find a path to the SFU: the server's TURN servers
/// (from `welcome`) and whether to use relayed candidates only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IceConfig {
    /// TURN servers with our credential.
    pub servers: Vec<IceServer>,
    /// Gather and use relayed (TURN) candidates only, like a browser with
    /// `iceTransportPolicy: "relay"`.
    pub relay_only: bool,
}

impl IceConfig {
    fn rtc_configuration(&self) -> RTCConfiguration {
        let servers = self
            .servers
            .iter()
            .map(|s| RTCIceServer {
                urls: s.urls.clone(),
                username: s.username.clone().unwrap_or_default(),
                credential: s.credential.clone().unwrap_or_default(),
            })
            .collect();
        let policy = if self.relay_only {
            RTCIceTransportPolicy::Relay
        } else {
            RTCIceTransportPolicy::All
        };
        RTCConfigurationBuilder::new()
            .with_ice_servers(servers)
            .with_ice_transport_policy(policy)
            .build()
    }
}

/// RTP payload type of Opus (CONTRACTS §1).
pub const OPUS_PT: u8 = 111;
/// RTP payload type of VP8 (CONTRACTS §1).
pub const VP8_PT: u8 = 96;
/// RTP clock rate of Opus.
pub const OPUS_CLOCK: u32 = 48_000;
/// RTP clock rate of VP8.
pub const VP8_CLOCK: u32 = 90_000;

/// What went wrong in the media stack.
#[derive(Debug, thiserror::Error)]
pub enum RtcError {
    /// webrtc-rs refused an operation.
    #[error("webrtc: {0}")]
    WebRtc(String),
    /// The connection did not reach `connected` in time.
    #[error("{0:?} connection not connected after {1:?} (state {2})")]
    ConnectTimeout(PcName, Duration, String),
}

fn rtc_err(e: impl std::fmt::Display) -> RtcError {
    RtcError::WebRtc(e.to_string())
}

/// One RTP packet as the participant sees it (no webrtc-rs types).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpPacket {
    /// Payload type.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence_number: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// SSRC.
    pub ssrc: u32,
    /// Marker bit.
    pub marker: bool,
    /// Payload bytes, exactly as carried.
    pub payload: Bytes,
}

/// A packet received on the subscribe connection, with where it came from.
#[derive(Clone, Debug)]
pub struct ReceivedRtp {
    /// Publisher id, from the forwarded stream's msid (`<publisher id> <track_id>`).
    pub publisher: Option<u64>,
    /// Publisher's track id.
    pub track_id: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// The packet.
    pub packet: RtpPacket,
    /// When it was handed to us.
    pub received_at: Instant,
}

/// Something a connection tells its owner.
#[derive(Debug)]
pub enum RtcEvent {
    /// A local ICE candidate to trickle to the server.
    LocalCandidate(PcName, Candidate),
    /// The connection state changed (lowercase W3C name).
    State(PcName, String),
    /// A remote track opened (subscribe side).
    TrackOpened {
        /// Publisher id from the msid stream id.
        publisher: Option<u64>,
        /// Track id.
        track_id: String,
        /// Audio or video.
        kind: MediaKind,
    },
    /// A remote track ended.
    TrackEnded {
        /// Publisher id from the msid stream id.
        publisher: Option<u64>,
        /// Track id.
        track_id: String,
    },
}

fn media_engine() -> Result<MediaEngine, RtcError> {
    let mut engine = MediaEngine::default();
    let fb = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: OPUS_PT,
            },
            RtpCodecKind::Audio,
        )
        .map_err(rtc_err)?;
    let mut vp8 = vp8_codec();
    vp8.rtcp_feedback = vec![fb("nack", ""), fb("nack", "pli"), fb("ccm", "fir")];
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: vp8,
                payload_type: VP8_PT,
            },
            RtpCodecKind::Video,
        )
        .map_err(rtc_err)?;
    Ok(engine)
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: OPUS_CLOCK,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

fn vp8_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: VP8_CLOCK,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// Lets keyframe requests (PLI, FIR) that arrive for a track we send reach the application.
///
/// webrtc-rs ends inbound RTCP inside its interceptor chain unless an interceptor marks it
/// for delivery; this one sits application-most, marks keyframe requests and lets nothing
/// else through to the application.
#[derive(Default)]
struct KeyframeRequestTap {
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let ChainPacket::Rtcp(packets) = &mut msg.message.packet {
            packets.retain(|p| {
                let any = p.as_any();
                any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
            });
            if packets.is_empty() {
                return Ok(());
            }
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.writes.pop_front()
    }
}

impl Interceptor for KeyframeRequestTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// Where received RTP goes, and what was lost on the way.
#[derive(Clone)]
pub struct RtpSink {
    tx: mpsc::Sender<ReceivedRtp>,
    overflow: Arc<AtomicU64>,
}

impl RtpSink {
    /// A sink holding up to `capacity` packets; packets beyond are dropped and counted.
    pub fn new(capacity: usize) -> (RtpSink, mpsc::Receiver<ReceivedRtp>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            RtpSink {
                tx,
                overflow: Arc::new(AtomicU64::new(0)),
            },
            rx,
        )
    }

    /// Packets dropped because the reader fell behind.
    pub fn overflow(&self) -> u64 {
        self.overflow.load(Ordering::Relaxed)
    }

    fn push(&self, p: ReceivedRtp) {
        if self.tx.try_send(p).is_err() {
            self.overflow.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Handler {
    name: PcName,
    events: mpsc::UnboundedSender<RtcEvent>,
    state: watch::Sender<RTCPeerConnectionState>,
    sink: Option<RtpSink>,
    remotes: RemoteMap,
}

/// Remote tracks by (publisher, track id), for keyframe requests.
type RemoteMap = Arc<Mutex<HashMap<(Option<u64>, String), RemoteRef>>>;

#[derive(Clone)]
struct RemoteRef {
    track: Arc<dyn TrackRemote>,
    ssrc: u32,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let Ok(init) = event.candidate.to_json() else {
            return;
        };
        let _ = self.events.send(RtcEvent::LocalCandidate(
            self.name,
            Candidate {
                candidate: init.candidate,
                sdp_mid: init.sdp_mid.filter(|m| !m.is_empty()),
                sdp_mline_index: init.sdp_mline_index,
                username_fragment: init.username_fragment,
            },
        ));
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.state.send_replace(state);
        let _ = self
            .events
            .send(RtcEvent::State(self.name, state.to_string()));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        // Called from the connection's driver: hand the reading to a task of our own.
        let Some(sink) = self.sink.clone() else {
            return;
        };
        let events = self.events.clone();
        let remotes = self.remotes.clone();
        tokio::spawn(async move {
            let stream_id = track.stream_id().await;
            let track_id = track.track_id().await;
            let publisher = stream_id.parse::<u64>().ok();
            let kind = match track.kind().await {
                RtpCodecKind::Video => MediaKind::Video,
                _ => MediaKind::Audio,
            };
            let ssrc = track.ssrcs().await.first().copied().unwrap_or(0);
            if let Ok(mut map) = remotes.lock() {
                map.insert(
                    (publisher, track_id.clone()),
                    RemoteRef {
                        track: track.clone(),
                        ssrc,
                    },
                );
            }
            let _ = events.send(RtcEvent::TrackOpened {
                publisher,
                track_id: track_id.clone(),
                kind,
            });
            while let Some(evt) = track.poll().await {
                match evt {
                    TrackRemoteEvent::OnRtpPacket(p) => sink.push(ReceivedRtp {
                        publisher,
                        track_id: track_id.clone(),
                        kind,
                        packet: RtpPacket {
                            payload_type: p.header.payload_type,
                            sequence_number: p.header.sequence_number,
                            timestamp: p.header.timestamp,
                            ssrc: p.header.ssrc,
                            marker: p.header.marker,
                            payload: p.payload,
                        },
                        received_at: Instant::now(),
                    }),
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
            if let Ok(mut map) = remotes.lock() {
                map.remove(&(publisher, track_id.clone()));
            }
            let _ = events.send(RtcEvent::TrackEnded {
                publisher,
                track_id,
            });
        });
    }
}

/// One PeerConnection of a native participant, bound to 127.0.0.1.
pub struct RtcPeer {
    name: PcName,
    pc: Arc<dyn PeerConnection>,
    state: watch::Receiver<RTCPeerConnectionState>,
    has_remote: AtomicBool,
    early_candidates: tokio::sync::Mutex<Vec<Candidate>>,
    remotes: RemoteMap,
}

impl RtcPeer {
    /// Builds a connection. Received RTP (subscribe side) goes to `sink`; candidates, state
    /// changes and track open/close go to `events`.
    pub async fn new(
        name: PcName,
        events: mpsc::UnboundedSender<RtcEvent>,
        sink: Option<RtpSink>,
        ice: &IceConfig,
    ) -> Result<RtcPeer, RtcError> {
        let mut engine = media_engine()?;
        let registry = register_default_interceptors(Registry::new(), &mut engine)
            .map_err(rtc_err)?
            .with(Slot::from(14_000), KeyframeRequestTap::default());
        let (state_tx, state_rx) = watch::channel(RTCPeerConnectionState::New);
        let remotes = Arc::new(Mutex::new(HashMap::new()));
        let handler = Arc::new(Handler {
            name,
            events,
            state: state_tx,
            sink,
            remotes: remotes.clone(),
        });
        let pc = PeerConnectionBuilder::new()
            .with_configuration(ice.rtc_configuration())
            .with_media_engine(engine)
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_udp_addrs(vec!["127.0.0.1:0"])
            .build()
            .await
            .map_err(rtc_err)?;
        Ok(RtcPeer {
            name,
            pc: Arc::new(pc),
            state: state_rx,
            has_remote: AtomicBool::new(false),
            early_candidates: tokio::sync::Mutex::new(Vec::new()),
            remotes,
        })
    }

    /// Adds a sendonly track of `kind` with the given ids; RTP is written through the result.
    pub async fn add_send_track(
        &self,
        kind: MediaKind,
        track_id: &str,
        stream_id: &str,
    ) -> Result<LocalTrack, RtcError> {
        let ssrc = rand::random::<u32>();
        let (codec_kind, codec, pt, clock) = match kind {
            MediaKind::Audio => (RtpCodecKind::Audio, opus_codec(), OPUS_PT, OPUS_CLOCK),
            MediaKind::Video => (RtpCodecKind::Video, vp8_codec(), VP8_PT, VP8_CLOCK),
        };
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            stream_id.to_owned(),
            track_id.to_owned(),
            track_id.to_owned(),
            codec_kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                active: true,
                codec,
                ..Default::default()
            }],
        )));
        self.pc
            .add_transceiver_from_track(
                track.clone() as Arc<dyn TrackLocal>,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendonly,
                    streams: vec![stream_id.to_owned()],
                    send_encodings: vec![],
                }),
            )
            .await
            .map_err(rtc_err)?;
        let keyframe_requests = Arc::new(AtomicU64::new(0));
        let (kf_tx, kf_rx) = watch::channel(0u64);
        {
            let track = track.clone();
            let counter = keyframe_requests.clone();
            tokio::spawn(async move {
                // Ends when the track is unbound (its connection closed).
                while let Some(TrackLocalEvent::OnRtcpPacket(packets)) = track.poll().await {
                    let n = packets.len() as u64;
                    let total = counter.fetch_add(n, Ordering::Relaxed) + n;
                    kf_tx.send_replace(total);
                }
            });
        }
        Ok(LocalTrack {
            inner: Arc::new(LocalTrackInner {
                track_id: track_id.to_owned(),
                kind,
                ssrc,
                payload_type: pt,
                clock_rate: clock,
                track,
                seq: AtomicU16::new(rand::random()),
                ts_base: AtomicU32::new(rand::random()),
                keyframe_requests,
                keyframe_watch: kf_rx,
                sent: AtomicU64::new(0),
            }),
        })
    }

    /// Creates an offer, sets it locally and returns its SDP.
    pub async fn create_offer(&self) -> Result<String, RtcError> {
        let offer = self.pc.create_offer(None).await.map_err(rtc_err)?;
        let sdp = offer.sdp.clone();
        self.pc
            .set_local_description(offer)
            .await
            .map_err(rtc_err)?;
        Ok(sdp)
    }

    /// Applies the server's answer to our offer.
    pub async fn set_answer(&self, sdp: &str) -> Result<(), RtcError> {
        let answer = RTCSessionDescription::answer(sdp.to_owned()).map_err(rtc_err)?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(rtc_err)?;
        self.remote_set().await
    }

    /// Applies a server offer and returns our answer's SDP (set locally).
    pub async fn answer_offer(&self, sdp: &str) -> Result<String, RtcError> {
        let offer = RTCSessionDescription::offer(sdp.to_owned()).map_err(rtc_err)?;
        self.pc
            .set_remote_description(offer)
            .await
            .map_err(rtc_err)?;
        let answer = self.pc.create_answer(None).await.map_err(rtc_err)?;
        let out = answer.sdp.clone();
        self.pc
            .set_local_description(answer)
            .await
            .map_err(rtc_err)?;
        self.remote_set().await?;
        Ok(out)
    }

    async fn remote_set(&self) -> Result<(), RtcError> {
        if !self.has_remote.swap(true, Ordering::SeqCst) {
            let early = std::mem::take(&mut *self.early_candidates.lock().await);
            for c in early {
                self.add_candidate_now(c).await?;
            }
        }
        Ok(())
    }

    /// Adds a server candidate; held back until a remote description exists.
    pub async fn add_remote_candidate(&self, c: Candidate) -> Result<(), RtcError> {
        if c.candidate.is_empty() {
            return Ok(());
        }
        if !self.has_remote.load(Ordering::SeqCst) {
            let mut early = self.early_candidates.lock().await;
            // Re-check under the lock: remote_set may have flushed meanwhile.
            if !self.has_remote.load(Ordering::SeqCst) {
                early.push(c);
                return Ok(());
            }
        }
        self.add_candidate_now(c).await
    }

    async fn add_candidate_now(&self, c: Candidate) -> Result<(), RtcError> {
        self.pc
            .add_ice_candidate(RTCIceCandidateInit {
                candidate: c.candidate,
                sdp_mid: c.sdp_mid,
                sdp_mline_index: c.sdp_mline_index,
                username_fragment: c.username_fragment,
                url: None,
            })
            .await
            .map_err(rtc_err)
    }

    /// Waits until the connection is `connected`.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), RtcError> {
        let mut rx = self.state.clone();
        let res = tokio::time::timeout(
            timeout,
            rx.wait_for(|s| *s == RTCPeerConnectionState::Connected),
        )
        .await;
        match res {
            Ok(Ok(_)) => Ok(()),
            _ => Err(RtcError::ConnectTimeout(
                self.name,
                timeout,
                self.state.borrow().to_string(),
            )),
        }
    }

    /// Current connection state (lowercase W3C name).
    pub fn state(&self) -> String {
        self.state.borrow().to_string()
    }

    /// Sends a PLI for a received track, as a browser's decoder would after loss.
    pub async fn request_keyframe(&self, publisher: u64, track_id: &str) -> Result<(), RtcError> {
        let remote = self
            .remotes
            .lock()
            .ok()
            .and_then(|m| m.get(&(Some(publisher), track_id.to_owned())).cloned());
        let Some(r) = remote else {
            return Err(RtcError::WebRtc(format!(
                "no remote track {publisher}/{track_id}"
            )));
        };
        r.track
            .write_rtcp(vec![Box::new(PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc: r.ssrc,
            })])
            .await
            .map_err(rtc_err)
    }

    /// Closes the connection.
    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

struct LocalTrackInner {
    track_id: String,
    kind: MediaKind,
    ssrc: u32,
    payload_type: u8,
    clock_rate: u32,
    track: Arc<TrackLocalStaticRTP>,
    seq: AtomicU16,
    ts_base: AtomicU32,
    keyframe_requests: Arc<AtomicU64>,
    keyframe_watch: watch::Receiver<u64>,
    sent: AtomicU64,
}

/// A track we publish; cheap to clone.
#[derive(Clone)]
pub struct LocalTrack {
    inner: Arc<LocalTrackInner>,
}

impl LocalTrack {
    /// Our track id (the msid track id the SFU announces).
    pub fn track_id(&self) -> &str {
        &self.inner.track_id
    }

    /// Audio or video.
    pub fn kind(&self) -> MediaKind {
        self.inner.kind
    }

    /// RTP clock rate of the codec.
    pub fn clock_rate(&self) -> u32 {
        self.inner.clock_rate
    }

    /// Sends one RTP packet with the next sequence number; `rtp_time` is relative to the
    /// track's random base. Returns the sequence number used.
    pub async fn send(&self, payload: Bytes, rtp_time: u32, marker: bool) -> Result<u16, RtcError> {
        let i = &self.inner;
        let seq = i.seq.fetch_add(1, Ordering::Relaxed);
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::Header {
                version: 2,
                marker,
                payload_type: i.payload_type,
                sequence_number: seq,
                timestamp: i.ts_base.load(Ordering::Relaxed).wrapping_add(rtp_time),
                ssrc: i.ssrc,
                ..Default::default()
            },
            payload,
        };
        i.track.write_rtp(packet).await.map_err(rtc_err)?;
        i.sent.fetch_add(1, Ordering::Relaxed);
        Ok(seq)
    }

    /// Packets handed to the connection so far.
    pub fn sent(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
    }

    /// Keyframe requests (PLI/FIR) received for this track so far.
    pub fn keyframe_requests(&self) -> u64 {
        self.inner.keyframe_requests.load(Ordering::Relaxed)
    }

    /// A watch that changes whenever a keyframe request arrives (value: running total).
    pub fn keyframe_watch(&self) -> watch::Receiver<u64> {
        self.inner.keyframe_watch.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connects a sendonly publisher straight to a receiver (no SFU) and checks that RTP
    /// arrives byte-identical and that a PLI from the receiver reaches the publisher.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn direct_connection_carries_rtp_and_pli() {
        let (pub_tx, mut pub_rx) = mpsc::unbounded_channel();
        let (sub_tx, mut sub_rx) = mpsc::unbounded_channel();
        let (sink, mut media) = RtpSink::new(1024);
        let ice = IceConfig::default();
        let publisher = Arc::new(
            RtcPeer::new(PcName::Publish, pub_tx, None, &ice)
                .await
                .unwrap(),
        );
        let receiver = Arc::new(
            RtcPeer::new(PcName::Subscribe, sub_tx, Some(sink), &ice)
                .await
                .unwrap(),
        );
        let audio = publisher
            .add_send_track(MediaKind::Audio, "a-1", "42")
            .await
            .unwrap();
        let video = publisher
            .add_send_track(MediaKind::Video, "v-1", "42")
            .await
            .unwrap();
        let offer = publisher.create_offer().await.unwrap();
        let answer = receiver.answer_offer(&offer).await.unwrap();
        publisher.set_answer(&answer).await.unwrap();

        // Trickle both ways until both are connected.
        let (p2, r2) = (publisher.clone(), receiver.clone());
        let relay = tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(RtcEvent::LocalCandidate(_, c)) = pub_rx.recv() => {
                        let _ = r2.add_remote_candidate(c).await;
                    }
                    Some(e) = sub_rx.recv() => {
                        if let RtcEvent::LocalCandidate(_, c) = e {
                            let _ = p2.add_remote_candidate(c).await;
                        }
                    }
                    else => break,
                }
            }
        });
        publisher
            .wait_connected(Duration::from_secs(10))
            .await
            .unwrap();
        receiver
            .wait_connected(Duration::from_secs(10))
            .await
            .unwrap();

        let mut sent = Vec::new();
        for i in 0..50u32 {
            let a = Bytes::from(vec![i as u8; 80]);
            audio.send(a.clone(), i * 960, false).await.unwrap();
            let v = Bytes::from(vec![0x90, 0x80, 0x80, i as u8, 7, 7, 7]);
            video.send(v.clone(), i * 3000, true).await.unwrap();
            sent.push(a);
            sent.push(v);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut got = Vec::new();
        while got.len() < 90 {
            match tokio::time::timeout(Duration::from_secs(5), media.recv()).await {
                Ok(Some(p)) => {
                    assert_eq!(p.publisher, Some(42));
                    got.push(p.packet.payload);
                }
                _ => break,
            }
        }
        assert!(got.len() >= 90, "received only {} packets", got.len());
        assert!(got.iter().all(|p| sent.contains(p)));

        receiver.request_keyframe(42, "v-1").await.unwrap();
        let mut kf = video.keyframe_watch();
        tokio::time::timeout(Duration::from_secs(5), kf.wait_for(|n| *n > 0))
            .await
            .expect("PLI reached the publisher")
            .unwrap();
        relay.abort();
        publisher.close().await;
        receiver.close().await;
    }
}
