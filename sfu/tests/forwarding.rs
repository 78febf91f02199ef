//! End-to-end forwarding through the `Sfu` API with native webrtc-rs 0.21 peers on loopback
//! (no signaling): publishers send Opus + VP8 RTP with known payloads, subscribers must get
//! them byte-identical, a late joiner makes the publishers see a PLI, a leaver's tracks are
//! unpublished and renegotiated away, audio levels produce active-speaker events.
//!
//! Run: `cargo test -p sfu --test forwarding` (add `--features test-tap` to also check the
//! payloads the SFU saw through the test tap).
//!
//! # Client recipe (webrtc-rs 0.21, what a native participant needs)
//!
//! * **Media engine**: register exactly Opus (`audio/opus`, 48000/2, PT 111, fmtp
//!   `minptime=10;useinbandfec=1`) and VP8 (`video/VP8`, 90000, PT 96); register the
//!   RFC 6464 extension with `register_header_extension(RTCRtpHeaderExtensionCapability {
//!   uri: "urn:ietf:params:rtp-hdrext:ssrc-audio-level" }, RtpCodecKind::Audio, None)`.
//! * **Interceptors**: `register_default_interceptors(Registry::new(), &mut engine)` (NACK,
//!   reports, TWCC), then `.with(Slot::Custom(14_000), tap)` where `tap` is a tiny
//!   interceptor marking inbound PLI/FIR with `Attribute::DeliverToApplication` — without it
//!   `TrackLocal::poll` never yields `TrackLocalEvent::OnRtcpPacket` (see [`KeyframeTap`]).
//! * **Setting engine**: `with_multicast_dns_mode(MulticastDnsMode::Disabled)` and
//!   `with_include_loopback_candidate(true)` (needed when binding 127.0.0.1);
//!   `PeerConnectionBuilder::with_udp_addrs(vec!["127.0.0.1:0"])`,
//!   `with_runtime(Arc::new(TokioRuntime))`.
//! * **Publish**: one `TrackLocalStaticRTP` per track, built from
//!   `MediaStreamTrack::new(stream_id, track_id, label, kind, vec![encoding with
//!   Some(ssrc) and the codec])`, added with `add_transceiver_from_track(.., Sendonly)`;
//!   offer, `set_local_description`, wait for `RTCIceGatheringState::Complete`, send
//!   `local_description().sdp` as `publish_offer`, apply the answer. Write RTP whose
//!   `header.ssrc` is the track's SSRC and whose PT is 111/96; attach the audio level with
//!   `write_rtp_with_extensions(pkt, &[HeaderExtension::AudioLevel(..)])`.
//! * **Subscribe**: on `subscribe_offer`: `set_remote_description(offer)`,
//!   `create_answer`, `set_local_description`, wait for gathering, send
//!   `local_description().sdp`. `on_track` gives `TrackRemote`s: `stream_id()` is the
//!   publisher id, `track_id()` the publisher's track id; read with `poll()`.
//! * **Keyframe requests** reach the publisher as `TrackLocalEvent::OnRtcpPacket` from
//!   `TrackLocalStaticRTP::poll()` (with the tap above).
//! * ICE: the SFU is ICE-lite and puts its host candidate in every SDP it returns; trickling
//!   the client's candidates is optional (the SFU learns them from the checks).

use bytes::Bytes;
use rtc::interceptor::{Attribute, Interceptor, Packet, Registry, Slot, StreamInfo, TaggedPacket};
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use rtc::rtp::extension::HeaderExtension;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp::extension::transport_cc_extension::TransportCcExtension;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;
use sfu::{
    IceCandidate, ParticipantEvent, ParticipantHandle, ParticipantId, PcKind, Router, Sfu,
    SfuConfig, TrackKind,
};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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
use webrtc::runtime::TokioRuntime;

const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------

/// Marks inbound PLI/FIR for the application (webrtc-rs 0.21 delivers no inbound RTCP to
/// the application otherwise), and notes the SSRC of every RTP packet that reaches the
/// connection, whether or not a negotiated track claims it.
#[derive(Default)]
struct KeyframeTap {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
    rtp_in: Arc<Mutex<BTreeSet<u32>>>,
    log: Arc<Mutex<TapLog>>,
}

/// Everything [`KeyframeTap`] saw arrive, in order.
#[derive(Default)]
struct TapLog {
    /// (SSRC, sequence number) of every RTP packet, duplicates included.
    rtp: Vec<(u32, u16)>,
    /// (SSRC, payload type, first two payload bytes) of every packet of a payload type
    /// other than Opus and VP8 (RTX: the first two bytes are the original sequence number).
    other: Vec<(u32, u8, u16)>,
    /// Every sender report.
    sender_reports: Vec<SenderReport>,
    /// Every receiver report.
    receiver_reports: Vec<ReceiverReport>,
    /// Every transport-layer NACK.
    nacks: Vec<TransportLayerNack>,
    /// Every transport-wide congestion control feedback packet.
    twcc: Vec<TransportLayerCc>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(rtp) = &msg.message.packet
            && let Ok(mut ssrcs) = self.rtp_in.lock()
        {
            ssrcs.insert(rtp.header.ssrc);
        }
        if let Ok(mut log) = self.log.lock() {
            match &msg.message.packet {
                Packet::Rtp(rtp) => {
                    log.rtp.push((rtp.header.ssrc, rtp.header.sequence_number));
                    if ![96, 111].contains(&rtp.header.payload_type) && rtp.payload.len() >= 2 {
                        log.other.push((
                            rtp.header.ssrc,
                            rtp.header.payload_type,
                            u16::from_be_bytes([rtp.payload[0], rtp.payload[1]]),
                        ));
                    }
                }
                Packet::Rtcp(packets) => log.sender_reports.extend(
                    packets
                        .iter()
                        .filter_map(|p| p.as_any().downcast_ref::<SenderReport>().cloned()),
                ),
                _ => {}
            }
            if let Packet::Rtcp(packets) = &msg.message.packet {
                for p in packets.iter().map(|p| p.as_any()) {
                    if let Some(rr) = p.downcast_ref::<ReceiverReport>() {
                        log.receiver_reports.push(rr.clone());
                    } else if let Some(nack) = p.downcast_ref::<TransportLayerNack>() {
                        log.nacks.push(nack.clone());
                    } else if let Some(cc) = p.downcast_ref::<TransportLayerCc>() {
                        log.twcc.push(cc.clone());
                    }
                }
            }
        }
        if let Packet::Rtcp(packets) = &mut msg.message.packet {
            packets.retain(|p| {
                p.as_any().is::<PictureLossIndication>() || p.as_any().is::<FullIntraRequest>()
            });
            if packets.is_empty() {
                return Ok(());
            }
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeTap {
    fn bind_local_stream(&mut self, _: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}

fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/opus".into(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
        rtcp_feedback: vec![],
    }
}

/// RTX for VP8 (RFC 4588), as browsers offer it.
fn rtx() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "video/rtx".into(),
        clock_rate: 90000,
        channels: 0,
        sdp_fmtp_line: "apt=96".into(),
        rtcp_feedback: vec![],
    }
}

fn vp8() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "video/VP8".into(),
        clock_rate: 90000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// A payload whose every byte is determined by (publisher, kind, seq): a receiver can
/// check it is byte-identical without a copy of what was sent.
fn payload(publisher: ParticipantId, kind: u8, seq: u32) -> Bytes {
    let len = 40 + (seq as usize * 37) % 900;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&publisher.to_be_bytes());
    v.push(kind);
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend((v.len()..len).map(|i| (i as u32 ^ seq.wrapping_mul(31)) as u8));
    Bytes::from(v)
}

/// Decodes (publisher, kind, seq) and checks every byte.
fn check_payload(p: &[u8]) -> Option<(ParticipantId, u8, u32)> {
    let publisher = u64::from_be_bytes(p.get(0..8)?.try_into().ok()?);
    let kind = *p.get(8)?;
    let seq = u32::from_be_bytes(p.get(9..13)?.try_into().ok()?);
    (payload(publisher, kind, seq) == p).then_some((publisher, kind, seq))
}

#[derive(Default)]
struct Seen {
    /// (publisher, kind) → packets received intact, per receiving peer.
    intact: HashMap<(ParticipantId, u8), u64>,
    /// (publisher, kind) → (first seq, last seq, packets): loss = span − packets.
    ranges: HashMap<(ParticipantId, u8), (u32, u32, u64)>,
    corrupt: u64,
    /// (stream id, track id) of every track that arrived.
    tracks: Vec<(String, String)>,
    /// The tracks themselves, by track id (to send RTCP back through the SFU).
    remotes: HashMap<String, Arc<dyn TrackRemote>>,
    payload_types: Vec<u8>,
}

struct ClientHandler {
    gathered: watch::Sender<bool>,
    connected: watch::Sender<bool>,
    candidates: mpsc::UnboundedSender<IceCandidate>,
    seen: Arc<Mutex<Seen>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for ClientHandler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.candidates.send(IceCandidate {
                candidate: init.candidate,
                sdp_mid: init.sdp_mid,
                sdp_mline_index: init.sdp_mline_index,
                username_fragment: init.username_fragment,
            });
        }
    }
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            let _ = self.connected.send(true);
        }
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let stream = track.stream_id().await;
        let id = track.track_id().await;
        {
            let mut seen = self.seen.lock().unwrap();
            seen.tracks.push((stream, id.clone()));
            seen.remotes.insert(id, Arc::clone(&track));
        }
        let seen = Arc::clone(&self.seen);
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = event {
                    let mut s = seen.lock().unwrap();
                    if !s.payload_types.contains(&p.header.payload_type) {
                        s.payload_types.push(p.header.payload_type);
                    }
                    match check_payload(&p.payload) {
                        Some((publisher, kind, seq)) => {
                            *s.intact.entry((publisher, kind)).or_default() += 1;
                            let r = s.ranges.entry((publisher, kind)).or_insert((seq, seq, 0));
                            r.0 = r.0.min(seq);
                            r.1 = r.1.max(seq);
                            r.2 += 1;
                        }
                        None => s.corrupt += 1,
                    }
                }
            }
        });
    }
}

struct ClientPc {
    pc: Arc<dyn PeerConnection>,
    /// SSRCs of the RTP that reached this connection (see [`KeyframeTap`]).
    rtp_in: Arc<Mutex<BTreeSet<u32>>>,
    log: Arc<Mutex<TapLog>>,
    gathered: watch::Receiver<bool>,
    connected: watch::Receiver<bool>,
}

async fn client_pc(
    seen: Arc<Mutex<Seen>>,
    candidates: mpsc::UnboundedSender<IceCandidate>,
) -> ClientPc {
    let mut engine = MediaEngine::default();
    for (codec, pt, kind) in [
        (opus(), 111, RtpCodecKind::Audio),
        (vp8(), 96, RtpCodecKind::Video),
        (rtx(), 97, RtpCodecKind::Video),
    ] {
        engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: codec,
                    payload_type: pt,
                },
                kind,
            )
            .unwrap();
    }
    engine
        .register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: AUDIO_LEVEL_URI.into(),
            },
            RtpCodecKind::Audio,
            None,
        )
        .unwrap();
    let rtp_in = Arc::new(Mutex::new(BTreeSet::new()));
    let log = Arc::new(Mutex::new(TapLog::default()));
    let registry = register_default_interceptors(Registry::new(), &mut engine)
        .unwrap()
        .with(
            Slot::Custom(14_000),
            KeyframeTap {
                rtp_in: Arc::clone(&rtp_in),
                log: Arc::clone(&log),
                ..KeyframeTap::default()
            },
        );
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .with_include_loopback_candidate(true)
        .build();
    let (gathered_tx, gathered) = watch::channel(false);
    let (connected_tx, connected) = watch::channel(false);
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine)
        .with_setting_engine(settings)
        .with_interceptor_registry(registry)
        .with_runtime(Arc::new(TokioRuntime))
        .with_handler(Arc::new(ClientHandler {
            gathered: gathered_tx,
            connected: connected_tx,
            candidates,
            seen,
        }))
        .with_udp_addrs(vec!["127.0.0.1:0"])
        .build()
        .await
        .unwrap();
    ClientPc {
        pc: Arc::new(pc),
        rtp_in,
        log,
        gathered,
        connected,
    }
}

async fn local_sdp(pc: &ClientPc) -> String {
    let mut g = pc.gathered.clone();
    let _ = tokio::time::timeout(Duration::from_secs(3), g.wait_for(|d| *d)).await;
    pc.pc
        .local_description()
        .await
        .map(|d| d.sdp)
        .unwrap_or_default()
}

/// A published track on the client and how many PLIs it got.
struct Published {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    plis: Arc<AtomicU64>,
}

struct Peer {
    id: ParticipantId,
    handle: ParticipantHandle,
    seen: Arc<Mutex<Seen>>,
    log: Arc<Mutex<Vec<ParticipantEvent>>>,
    /// Subscribe answers the SFU refused.
    answer_errors: Arc<AtomicU64>,
    /// While set, the signaling stand-in holds subscribe offers unanswered.
    hold_answers: Arc<AtomicBool>,
    subscribe: Arc<ClientPc>,
    publish: Option<Arc<ClientPc>>,
    audio: Option<Published>,
    video: Option<Published>,
    senders: Vec<tokio::task::JoinHandle<()>>,
}

async fn join(room: &Router, id: ParticipantId) -> Peer {
    let (handle, mut events) = room.join(id).expect("join");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let log = Arc::new(Mutex::new(Vec::new()));
    let answer_errors = Arc::new(AtomicU64::new(0));
    let hold_answers = Arc::new(AtomicBool::new(false));

    let (sub_cand_tx, mut sub_cand_rx) = mpsc::unbounded_channel();
    let subscribe = Arc::new(client_pc(Arc::clone(&seen), sub_cand_tx).await);
    {
        let handle = handle.clone();
        tokio::spawn(async move {
            while let Some(c) = sub_cand_rx.recv().await {
                let _ = handle.add_ice_candidate(PcKind::Subscribe, c).await;
            }
        });
    }

    // The signaling stand-in: answers subscribe offers, applies SFU candidates, logs events.
    {
        let handle = handle.clone();
        let subscribe = Arc::clone(&subscribe);
        let log = Arc::clone(&log);
        let answer_errors = Arc::clone(&answer_errors);
        let hold = Arc::clone(&hold_answers);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match &event {
                    ParticipantEvent::SubscribeOffer { sdp } => {
                        while hold.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        let answered = answer_offer(&subscribe, &handle, sdp).await;
                        answer_errors.fetch_add(u64::from(answered.is_err()), Ordering::Relaxed);
                    }
                    ParticipantEvent::IceCandidate {
                        pc: PcKind::Subscribe,
                        candidate,
                    } => {
                        let _ = subscribe
                            .pc
                            .add_ice_candidate(RTCIceCandidateInit {
                                candidate: candidate.candidate.clone(),
                                sdp_mid: candidate.sdp_mid.clone(),
                                sdp_mline_index: candidate.sdp_mline_index,
                                username_fragment: candidate.username_fragment.clone(),
                                ..Default::default()
                            })
                            .await;
                    }
                    _ => {}
                }
                log.lock().unwrap().push(event);
            }
        });
    }

    Peer {
        id,
        handle,
        seen,
        log,
        answer_errors,
        hold_answers,
        subscribe,
        publish: None,
        audio: None,
        video: None,
        senders: Vec::new(),
    }
}

/// Answers a subscribe offer the way a client does. Errors are counted by the caller (a
/// peer tearing down may see its PC close mid-answer).
async fn answer_offer(
    subscribe: &ClientPc,
    handle: &ParticipantHandle,
    sdp: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let offer = RTCSessionDescription::offer(sdp.to_owned())?;
    subscribe.pc.set_remote_description(offer).await?;
    let answer = subscribe.pc.create_answer(None).await?;
    subscribe.pc.set_local_description(answer).await?;
    let sdp = local_sdp(subscribe).await;
    handle.subscribe_answer(&sdp).await?;
    Ok(())
}

fn local_track(id: ParticipantId, kind: RtpCodecKind, ssrc: u32) -> Arc<TrackLocalStaticRTP> {
    let (codec, name) = match kind {
        RtpCodecKind::Audio => (opus(), "audio"),
        _ => (vp8(), "video"),
    };
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        format!("client-stream-{id}"),
        format!("{name}-of-{id}"),
        name.into(),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )))
}

impl Peer {
    /// Publishes Opus + VP8 and starts sending: audio 50 pkt/s at `level` −dBov, video
    /// `video_burst` packets every 10 ms.
    /// Negotiates the publish connection with one sendonly Opus (SSRC `audio`) and one VP8
    /// (SSRC `video`) track and waits until it is connected; sends nothing. Each track's
    /// RTCP events are counted (`plis`). Returns the connection, the two tracks and the
    /// (offer, answer) SDPs.
    async fn negotiate_publish(
        &mut self,
        audio: u32,
        video: u32,
    ) -> (Arc<ClientPc>, Published, Published, String, String) {
        let (cand_tx, mut cand_rx) = mpsc::unbounded_channel();
        let pc = Arc::new(client_pc(Arc::new(Mutex::default()), cand_tx).await);
        {
            let handle = self.handle.clone();
            tokio::spawn(async move {
                while let Some(c) = cand_rx.recv().await {
                    let _ = handle.add_ice_candidate(PcKind::Publish, c).await;
                }
            });
        }
        let mut published = vec![];
        for (kind, ssrc) in [(RtpCodecKind::Audio, audio), (RtpCodecKind::Video, video)] {
            let track = local_track(self.id, kind, ssrc);
            pc.pc
                .add_transceiver_from_track(
                    Arc::clone(&track) as Arc<dyn TrackLocal>,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Sendonly,
                        streams: vec![],
                        send_encodings: vec![],
                    }),
                )
                .await
                .unwrap();
            let plis = Arc::new(AtomicU64::new(0));
            {
                let track = Arc::clone(&track);
                let plis = Arc::clone(&plis);
                tokio::spawn(async move {
                    while let Some(event) = track.poll().await {
                        if let TrackLocalEvent::OnRtcpPacket(_) = event {
                            plis.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
            published.push(Published { track, ssrc, plis });
        }
        let offer = pc.pc.create_offer(None).await.unwrap();
        pc.pc.set_local_description(offer).await.unwrap();
        let offer = local_sdp(&pc).await;
        let answer = self
            .handle
            .publish_offer(&offer)
            .await
            .expect("publish answer");
        assert!(answer.contains("a=ice-lite"), "the SFU is ICE-lite");
        pc.pc
            .set_remote_description(RTCSessionDescription::answer(answer.clone()).unwrap())
            .await
            .unwrap();
        let mut connected = pc.connected.clone();
        tokio::time::timeout(WAIT, connected.wait_for(|c| *c))
            .await
            .expect("publish PC connects")
            .unwrap();
        let video = published.pop().unwrap();
        let audio = published.pop().unwrap();
        (pc, audio, video, offer, answer)
    }

    async fn publish(&mut self, level: u8, video_burst: u32) {
        let (pc, audio, video, _, _) = self
            .negotiate_publish(1000 + self.id as u32, 2000 + self.id as u32)
            .await;
        let id = self.id;
        for (p, kind, pt, interval, burst, ts_step) in [
            (&audio, 0u8, 111u8, 20u64, 1, 960u32),
            (&video, 1u8, 96u8, 10u64, video_burst, 900u32),
        ] {
            let track = Arc::clone(&p.track);
            let ssrc = p.ssrc;
            self.senders.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(interval));
                let mut seq: u32 = 0;
                loop {
                    if seq.is_multiple_of(burst) {
                        tick.tick().await;
                    }
                    let mut pkt = rtc::rtp::Packet::default();
                    pkt.header.version = 2;
                    pkt.header.payload_type = pt;
                    pkt.header.ssrc = ssrc;
                    pkt.header.sequence_number = seq as u16;
                    pkt.header.timestamp = seq.wrapping_mul(ts_step);
                    pkt.header.marker = true;
                    pkt.payload = payload(id, kind, seq);
                    let result = if kind == 0 {
                        track
                            .write_rtp_with_extensions(
                                pkt,
                                &[HeaderExtension::AudioLevel(AudioLevelExtension {
                                    level,
                                    voice: level < 127,
                                })],
                            )
                            .await
                    } else {
                        track.write_rtp(pkt).await
                    };
                    if result.is_err() {
                        return;
                    }
                    seq += 1;
                }
            }));
        }
        self.publish = Some(pc);
        self.audio = Some(audio);
        self.video = Some(video);
    }

    fn intact(&self, from: ParticipantId, kind: u8) -> u64 {
        self.seen
            .lock()
            .unwrap()
            .intact
            .get(&(from, kind))
            .copied()
            .unwrap_or(0)
    }

    fn events(&self) -> Vec<ParticipantEvent> {
        self.log.lock().unwrap().clone()
    }

    fn plis(&self) -> u64 {
        self.video
            .as_ref()
            .map_or(0, |v| v.plis.load(Ordering::Relaxed))
    }

    async fn stop(&mut self) {
        for s in self.senders.drain(..) {
            s.abort();
        }
        self.handle.leave().await;
        if let Some(p) = &self.publish {
            let _ = p.pc.close().await;
        }
        let _ = self.subscribe.pc.close().await;
    }
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The single-port engine on an OS-chosen port.
fn single_port() -> SfuConfig {
    SfuConfig {
        udp_port: Some(0),
        ..SfuConfig::default()
    }
}

fn config(ports: std::ops::RangeInclusive<u16>) -> SfuConfig {
    SfuConfig {
        udp_ports: ports,
        ..SfuConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_byte_identical_and_handles_join_and_leave() {
    forwards_byte_identical_and_handles_join_and_leave_on(config(47000..=47099)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_port_forwards_byte_identical_and_handles_join_and_leave() {
    forwards_byte_identical_and_handles_join_and_leave_on(single_port()).await;
}

async fn forwards_byte_identical_and_handles_join_and_leave_on(config: SfuConfig) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "sfu=info".into()),
        )
        .with_test_writer()
        .try_init();
    let sfu = Sfu::new(config).expect("sfu");
    let room = sfu.open_room("room").expect("room");
    let tapped = Arc::new(AtomicU64::new(0));
    let tap_corrupt = Arc::new(AtomicU64::new(0));
    #[cfg(feature = "test-tap")]
    {
        let tapped = Arc::clone(&tapped);
        let tap_corrupt = Arc::clone(&tap_corrupt);
        sfu.set_tap(Some(Box::new(move |publisher, _track, payload: &Bytes| {
            tapped.fetch_add(1, Ordering::Relaxed);
            if check_payload(payload).map(|p| p.0) != Some(publisher) {
                tap_corrupt.fetch_add(1, Ordering::Relaxed);
            }
        })));
    }

    let mut a = join(&room, 1).await;
    let mut b = join(&room, 2).await;
    let mut c = join(&room, 3).await;
    a.publish(20, 1).await; // talking
    b.publish(127, 1).await; // silent

    // Everyone gets every other publisher's audio and video, intact.
    eventually("c receives a and b", || {
        [(1, 0), (1, 1), (2, 0), (2, 1)]
            .iter()
            .all(|&(p, k)| c.intact(p, k) > 20)
    })
    .await;
    eventually("a receives b, b receives a", || {
        a.intact(2, 0) > 20 && a.intact(2, 1) > 20 && b.intact(1, 0) > 20 && b.intact(1, 1) > 20
    })
    .await;
    assert_eq!(a.intact(1, 0), 0, "nobody receives their own media");
    for peer in [&a, &b, &c] {
        let seen = peer.seen.lock().unwrap();
        assert_eq!(seen.corrupt, 0, "payloads are forwarded byte-identical");
        let mut pts = seen.payload_types.clone();
        pts.sort_unstable();
        assert_eq!(pts, vec![96, 111]);
    }
    // msid: stream id = publisher id, track id = the publisher's track id.
    {
        let seen = c.seen.lock().unwrap();
        for (stream, track) in [
            ("1", "audio-of-1"),
            ("1", "video-of-1"),
            ("2", "audio-of-2"),
        ] {
            assert!(
                seen.tracks.contains(&(stream.into(), track.into())),
                "{stream}/{track} in {:?}",
                seen.tracks
            );
        }
    }
    let published: Vec<_> = c
        .events()
        .into_iter()
        .filter_map(|e| match e {
            ParticipantEvent::TrackPublished {
                publisher,
                track_id,
                kind,
            } => Some((publisher, track_id, kind)),
            _ => None,
        })
        .collect();
    assert!(published.contains(&(1, "video-of-1".into(), TrackKind::Video)));
    assert!(published.contains(&(2, "audio-of-2".into(), TrackKind::Audio)));
    if cfg!(feature = "test-tap") {
        assert!(
            tapped.load(Ordering::Relaxed) > 0,
            "the tap saw the forwarded payloads"
        );
    }
    assert_eq!(tap_corrupt.load(Ordering::Relaxed), 0);

    // Active speakers from RFC 6464 levels: a talks, b is silent.
    eventually("active speakers = [1]", || {
        c.events()
            .iter()
            .any(|e| matches!(e, ParticipantEvent::ActiveSpeakers { ids } if ids.as_slice() == [1]))
    })
    .await;

    // A late joiner makes both publishers see a keyframe request.
    tokio::time::sleep(Duration::from_millis(600)).await; // let the PLI limiter window pass
    let (a_plis, b_plis) = (a.plis(), b.plis());
    let mut d = join(&room, 4).await;
    eventually("d receives video", || {
        d.intact(1, 1) > 5 && d.intact(2, 1) > 5
    })
    .await;
    eventually("publishers see a PLI for the late joiner", || {
        a.plis() > a_plis && b.plis() > b_plis
    })
    .await;
    assert!(sfu.stats().keyframe_requests > 0);

    // A subscriber's own PLI is relayed to the publisher (through the SFU's RTCP tap).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let a_plis = a.plis();
    let remote = c.seen.lock().unwrap().remotes.get("video-of-1").cloned();
    let remote = remote.expect("c has a's video track");
    let media_ssrc = remote.ssrcs().await.first().copied().expect("ssrc");
    remote
        .write_rtcp(vec![Box::new(PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        })])
        .await
        .expect("PLI sent");
    eventually("a sees c's PLI", || a.plis() > a_plis).await;

    // A leaves: the others are told and renegotiated; A's media stops reaching them.
    let offers_before = c
        .events()
        .iter()
        .filter(|e| matches!(e, ParticipantEvent::SubscribeOffer { .. }))
        .count();
    a.stop().await;
    for peer in [&b, &c, &d] {
        eventually("TrackUnpublished for a's tracks", || {
            let ev = peer.events();
            ["audio-of-1", "video-of-1"].iter().all(|t| {
                ev.iter().any(|e| matches!(e, ParticipantEvent::TrackUnpublished { publisher: 1, track_id } if track_id == t))
            })
        })
        .await;
    }
    eventually("c got a new offer", || {
        c.events()
            .iter()
            .filter(|e| matches!(e, ParticipantEvent::SubscribeOffer { .. }))
            .count()
            > offers_before
    })
    .await;
    let stats = sfu.stats();
    assert_eq!(stats.participants, 3);
    assert_eq!(stats.tracks, 2);
    for peer in [&b, &c, &d] {
        assert_eq!(
            peer.answer_errors.load(Ordering::Relaxed),
            0,
            "every subscribe answer was accepted (one offer in flight at a time)"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let frozen = c.intact(1, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(c.intact(1, 1), frozen, "no media from a leaver");
    assert!(c.intact(2, 1) > 0);

    b.stop().await;
    c.stop().await;
    d.stop().await;
    let stats = sfu.stats();
    assert_eq!((stats.rooms, stats.participants, stats.tracks), (1, 0, 0));
    assert!(stats.forwarded_packets > 0 && stats.forwarded_bytes > 0);
    drop(room);
    assert_eq!(sfu.stats().rooms, 0, "dropping its router closes the room");
    let open = sfu.open_room("room").expect("room");
    sfu.shutdown().await;
    assert!(open.join(9).is_err(), "no joins after shutdown");
    assert!(sfu.open_room("other").is_err(), "no rooms after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_errors_and_others_keep_working() {
    bad_input_gets_errors_and_others_keep_working_on(config(47100..=47119)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_port_bad_input_gets_errors_and_others_keep_working() {
    bad_input_gets_errors_and_others_keep_working_on(single_port()).await;
}

async fn bad_input_gets_errors_and_others_keep_working_on(config: SfuConfig) {
    let sfu = Sfu::new(config).expect("sfu");
    let bad = sfu.open_room("bad").expect("room");
    let mut a = join(&bad, 1).await;
    let b = join(&bad, 2).await;
    assert!(bad.join(1).is_err(), "duplicate id");
    assert!(b.handle.publish_offer("garbage").await.is_err());
    assert!(
        b.handle.subscribe_answer("v=0").await.is_err(),
        "no offer outstanding"
    );
    let bogus = IceCandidate {
        candidate: "candidate:nonsense".into(),
        sdp_mid: Some("0".into()),
        sdp_mline_index: Some(0),
        username_fragment: None,
    };
    // Held until an offer arrives: not an error yet, and never a panic.
    let _ = b.handle.add_ice_candidate(PcKind::Publish, bogus).await;
    a.publish(40, 1).await;
    let garbage = IceCandidate {
        candidate: "candidate:1 1 udp nope 127.0.0.1 x typ host".into(),
        sdp_mid: Some("0".into()),
        sdp_mline_index: Some(0),
        username_fragment: None,
    };
    assert!(
        a.handle
            .add_ice_candidate(PcKind::Publish, garbage)
            .await
            .is_err(),
        "an unparsable candidate is a clear error"
    );
    eventually("b still receives a", || b.intact(1, 1) > 10).await;
    a.stop().await;
    b.handle.leave().await;
    b.handle.leave().await; // idempotent
    assert!(
        b.handle.publish_offer("v=0").await.is_err(),
        "gone after leave"
    );
    assert_eq!(sfu.stats().participants, 0);
}

/// Load check (not run by default): 4 publishers (Opus 50 pkt/s + VP8 300 pkt/s each) and 4
/// more subscribers, all on loopback in this one process; reports loss per flow.
///
/// `cargo test -p sfu --release --test forwarding -- --ignored --nocapture load_4x4`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load check; run explicitly"]
async fn load_4x4() {
    load_4x4_on(config(47300..=47399)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load check; run explicitly"]
async fn single_port_load_4x4() {
    load_4x4_on(single_port()).await;
}

async fn load_4x4_on(config: SfuConfig) {
    let sfu = Sfu::new(config).expect("sfu");
    let load = sfu.open_room("load").expect("room");
    let mut peers = Vec::new();
    for id in 1..=8 {
        peers.push(join(&load, id).await);
    }
    for peer in peers.iter_mut().take(4) {
        peer.publish(30, 3).await;
    }
    eventually("every flow reaches every subscriber", || {
        peers.iter().all(|p| {
            (1..=4)
                .filter(|&from| from != p.id)
                .all(|from| p.intact(from, 0) > 0 && p.intact(from, 1) > 0)
        })
    })
    .await;
    let before = sfu.stats();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = sfu.stats();
    let secs = started.elapsed().as_secs_f64();
    for peer in &mut peers {
        for s in peer.senders.drain(..) {
            s.abort();
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut lost, mut got) = (0u64, 0u64);
    for peer in &peers {
        let seen = peer.seen.lock().unwrap();
        assert_eq!(seen.corrupt, 0);
        for (&(from, kind), &(first, last, count)) in &seen.ranges {
            let span = u64::from(last - first) + 1;
            lost += span.saturating_sub(count);
            got += count;
            if span > count {
                println!(
                    "peer {} from {from} kind {kind}: lost {}",
                    peer.id,
                    span - count
                );
            }
        }
    }
    for peer in &peers {
        assert_eq!(peer.answer_errors.load(Ordering::Relaxed), 0);
    }
    let fwd = after.forwarded_packets - before.forwarded_packets;
    println!(
        "load_4x4: {:.0} forwarded pkt/s, {:.1} Mbit/s payload, received {got}, lost {lost} ({:.4}%), SFU drops {}",
        fwd as f64 / secs,
        (after.forwarded_bytes - before.forwarded_bytes) as f64 * 8.0 / secs / 1e6,
        lost as f64 * 100.0 / got.max(1) as f64,
        after.dropped_packets
    );
    for mut peer in peers {
        peer.stop().await;
    }
    assert_eq!(lost, 0, "loss on loopback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_track_flows_only_after_the_subscriber_answered_its_offer() {
    a_new_track_flows_only_after_the_subscriber_answered_its_offer_on(config(47120..=47139)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_port_a_new_track_flows_only_after_the_subscriber_answered_its_offer() {
    a_new_track_flows_only_after_the_subscriber_answered_its_offer_on(single_port()).await;
}

async fn a_new_track_flows_only_after_the_subscriber_answered_its_offer_on(config: SfuConfig) {
    let sfu = Sfu::new(config).expect("sfu");
    let room = sfu.open_room("room").expect("room");
    let mut c = join(&room, 3).await;
    c.publish(20, 1).await;
    let mut b = join(&room, 2).await;
    eventually("b receives c", || b.intact(3, 1) > 5).await;
    let before = b.subscribe.rtp_in.lock().unwrap().clone();

    // b sits on the offer that adds a's tracks, as a busy browser may for a while.
    b.hold_answers.store(true, Ordering::Relaxed);
    let mut a = join(&room, 1).await;
    a.publish(20, 1).await;
    eventually("the SFU adds a track of a's to b's subscription", || {
        // (Later events queue behind the offer b holds.)
        b.events()
            .iter()
            .any(|e| matches!(e, ParticipantEvent::TrackPublished { publisher: 1, .. }))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        *b.subscribe.rtp_in.lock().unwrap(),
        before,
        "no RTP on a new SSRC before the answer (Firefox mis-routes SSRCs it was not offered)"
    );

    b.hold_answers.store(false, Ordering::Relaxed);
    eventually("b receives a's audio and video once it answered", || {
        b.intact(1, 0) > 5 && b.intact(1, 1) > 5
    })
    .await;
    assert_eq!(b.answer_errors.load(Ordering::Relaxed), 0);
    for peer in [&mut a, &mut b, &mut c] {
        peer.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_forwarded_to_a_subscriber_that_answered_but_never_connected() {
    nothing_is_forwarded_to_a_subscriber_that_answered_but_never_connected_on(config(
        47140..=47149,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_port_nothing_is_forwarded_to_a_subscriber_that_answered_but_never_connected() {
    nothing_is_forwarded_to_a_subscriber_that_answered_but_never_connected_on(single_port()).await;
}

async fn nothing_is_forwarded_to_a_subscriber_that_answered_but_never_connected_on(
    config: SfuConfig,
) {
    let sfu = Sfu::new(config).expect("sfu");
    let room = sfu.open_room("room").expect("room");
    let mut a = join(&room, 1).await;
    a.publish(20, 1).await;

    // b answers the SFU's offer, then its client goes away before ICE and DTLS: its
    // subscribe connection never gets SRTP keys.
    let (b, mut events) = room.join(2).expect("join");
    let offer = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.recv().await {
            if let ParticipantEvent::SubscribeOffer { sdp } = event {
                return sdp;
            }
        }
        panic!("events ended before an offer");
    })
    .await
    .expect("a subscribe offer for a's tracks");
    let (cand_tx, _cand_rx) = mpsc::unbounded_channel();
    let client = client_pc(Arc::new(Mutex::default()), cand_tx).await;
    client
        .pc
        .set_remote_description(RTCSessionDescription::offer(offer).unwrap())
        .await
        .unwrap();
    let answer = client.pc.create_answer(None).await.unwrap();
    client.pc.set_local_description(answer).await.unwrap();
    let sdp = local_sdp(&client).await;
    client.pc.close().await.unwrap();
    let before = sfu.stats();
    b.subscribe_answer(&sdp).await.expect("answer accepted");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = sfu.stats();
    assert_eq!(
        (after.forwarded_packets, after.dropped_packets),
        (before.forwarded_packets, before.dropped_packets),
        "b is the only subscriber: a packet written to its unconnected connection would \
         be dropped by the WebRTC stack with a warning each"
    );
    b.leave().await;
    a.stop().await;
}

/// Forwarded packets bypass rtc's interceptors (third_party/rtc/PATCHES.md), so the engine
/// answers NACKs from its own history — on the RTX stream the subscriber took — and sends
/// its own sender reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_port_answers_nacks_from_its_history_and_sends_sender_reports() {
    let sfu = Sfu::new(single_port()).expect("sfu");
    let room = sfu.open_room("room").expect("room");
    let mut a = join(&room, 1).await;
    a.publish(20, 3).await;
    let mut b = join(&room, 2).await;
    eventually("b receives a's video", || b.intact(1, 1) > 30).await;

    let remote = b.seen.lock().unwrap().remotes.get("video-of-1").cloned();
    let remote = remote.expect("b has a's video track");
    let media_ssrc = remote.ssrcs().await.first().copied().expect("ssrc");
    let first = b
        .subscribe
        .log
        .lock()
        .unwrap()
        .rtp
        .iter()
        .find(|(ssrc, _)| *ssrc == media_ssrc)
        .map(|&(_, seq)| seq)
        .expect("a video packet");
    // Three packets b got (first, first + 2, first + 3), and one never sent.
    let asked = [first, first.wrapping_add(2), first.wrapping_add(3)];
    let unsent = first.wrapping_sub(1000);
    let before = sfu.stats().retransmitted_packets;
    remote
        .write_rtcp(vec![Box::new(TransportLayerNack {
            sender_ssrc: 0,
            media_ssrc,
            nacks: vec![
                NackPair {
                    packet_id: first,
                    lost_packets: 0b110,
                },
                NackPair {
                    packet_id: unsent,
                    lost_packets: 0,
                },
            ],
        })])
        .await
        .expect("NACK sent");
    let repairs = || b.subscribe.log.lock().unwrap().other.clone();
    eventually("three RTX packets reach b", || repairs().len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let repairs = repairs();
    assert_eq!(
        repairs.iter().map(|&(_, _, osn)| osn).collect::<Vec<_>>(),
        asked,
        "exactly the kept ones, once each, original sequence numbers first"
    );
    for &(ssrc, payload_type, _) in &repairs {
        assert_eq!(payload_type, 97, "the RTX payload type b answered with");
        assert_ne!(ssrc, media_ssrc, "RTX has its own SSRC");
    }
    assert_eq!(sfu.stats().retransmitted_packets - before, 3);

    // One sender report a second per stream, counting what was sent on it.
    eventually("sender reports for both of a's streams", || {
        let log = b.subscribe.log.lock().unwrap();
        let ssrcs: BTreeSet<u32> = log.sender_reports.iter().map(|sr| sr.ssrc).collect();
        ssrcs.len() == 2 && ssrcs.contains(&media_ssrc)
    })
    .await;
    let (sr, got) = {
        let log = b.subscribe.log.lock().unwrap();
        let sr = log
            .sender_reports
            .iter()
            .rfind(|sr| sr.ssrc == media_ssrc)
            .cloned()
            .expect("a video report");
        let got = log
            .rtp
            .iter()
            .filter(|(ssrc, _)| *ssrc == media_ssrc)
            .count();
        (sr, got)
    };
    assert!(sr.packet_count > 30, "{} packets reported", sr.packet_count);
    assert!(
        sr.packet_count as usize <= got,
        "reported {} of {got} received",
        sr.packet_count
    );
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let ntp_seconds = sr.ntp_time >> 32;
    assert!(
        ntp_seconds.abs_diff(unix + 2_208_988_800) < 5,
        "NTP time {ntp_seconds} is now"
    );
    for peer in [&mut a, &mut b] {
        peer.stop().await;
    }
}

/// A worker that falls behind drops the media that waited longer than
/// `ingress_max_age` instead of forwarding it late, counts it, and carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_port_sheds_media_that_waited_too_long() {
    let sfu = Sfu::new(SfuConfig {
        ingress_max_age: Duration::from_millis(50),
        ..single_port()
    })
    .expect("sfu");
    let room = sfu.open_room("room").expect("room");
    let mut a = join(&room, 1).await;
    a.publish(20, 3).await;
    let mut b = join(&room, 2).await;
    eventually("b receives a's audio and video", || {
        b.intact(1, 0) > 20 && b.intact(1, 1) > 20
    })
    .await;
    assert_eq!(
        sfu.stats().shed_packets,
        0,
        "nothing is shed while keeping up"
    );

    sfu.stall_media(Duration::from_millis(400));
    eventually("what waited through the stall is shed", || {
        sfu.stats().shed_packets > 10
    })
    .await;
    let (audio, video) = (b.intact(1, 0), b.intact(1, 1));
    eventually("forwarding resumes", || {
        b.intact(1, 0) > audio + 20 && b.intact(1, 1) > video + 20
    })
    .await;
    for peer in [&mut a, &mut b] {
        peer.stop().await;
    }
}

/// The transport-wide congestion control RTP header extension (draft-holmer-rmcat-01).
const TWCC_URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// A publisher's media takes the single-port engine's short read path
/// (`read_rtp_bypass`, third_party/rtc/PATCHES.md), which skips most of rtc's pipeline but
/// must neither skip its interceptors nor starve their timers. So a publisher whose VP8
/// stream loses three packets on the way gets, within a few seconds: a NACK naming the
/// three and never a packet that arrived (NACK generator), receiver reports for its audio
/// and video counting up to their last packet and the three lost (receiver reports), and
/// transport-wide congestion control feedback on every packet it sent (TWCC receiver).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_port_gives_publishers_nack_twcc_and_receiver_reports() {
    let sfu = Sfu::new(single_port()).expect("sfu");
    let room = sfu.open_room("room").expect("room");
    let mut a = join(&room, 1).await;
    let (audio_ssrc, video_ssrc) = (1001, 2001);
    let (pc, audio, video, offer, answer) = a.negotiate_publish(audio_ssrc, video_ssrc).await;
    a.publish = Some(pc);
    let (audio, video) = (audio.track, video.track);
    for (who, sdp) in [("offer", &offer), ("answer", &answer)] {
        assert!(
            sdp.contains(TWCC_URI) && sdp.contains("a=rtcp-fb:96 transport-cc"),
            "the publish {who} negotiates transport-wide congestion control:\n{sdp}"
        );
    }

    // 61 video packets 5 ms apart, an audio packet every fourth; video 21..=23 are lost
    // on the way: neither their RTP nor their transport-wide sequence numbers arrive. The
    // client's default interceptors negotiate TWCC but number nothing (no TWCC sender is
    // registered), so the numbers are stamped here, as a browser's sender would.
    const FIRST: u16 = 1000;
    let lost: BTreeSet<u16> = (21..=23).map(|i| FIRST + i).collect();
    let mut sent = BTreeSet::new();
    let (mut transport_seq, mut audio_seq) = (0u16, 0u16);
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    for i in 0..=60u16 {
        tick.tick().await;
        let seq = FIRST + i;
        let twcc = |transport_sequence| {
            HeaderExtension::TransportCc(TransportCcExtension { transport_sequence })
        };
        let video_transport_seq = transport_seq;
        transport_seq += 1;
        if !lost.contains(&seq) {
            let mut pkt = rtc::rtp::Packet::default();
            pkt.header.version = 2;
            pkt.header.payload_type = 96;
            pkt.header.ssrc = video_ssrc;
            pkt.header.sequence_number = seq;
            pkt.header.timestamp = u32::from(i) * 900;
            pkt.header.marker = true;
            pkt.payload = payload(a.id, 1, u32::from(seq));
            video
                .write_rtp_with_extensions(pkt, &[twcc(video_transport_seq)])
                .await
                .expect("video written");
            sent.insert(seq);
        }
        if i % 4 == 0 {
            let mut pkt = rtc::rtp::Packet::default();
            pkt.header.version = 2;
            pkt.header.payload_type = 111;
            pkt.header.ssrc = audio_ssrc;
            pkt.header.sequence_number = audio_seq;
            pkt.header.timestamp = u32::from(audio_seq) * 960;
            pkt.payload = payload(a.id, 0, u32::from(audio_seq));
            audio
                .write_rtp_with_extensions(
                    pkt,
                    &[
                        twcc(transport_seq),
                        HeaderExtension::AudioLevel(AudioLevelExtension {
                            level: 30,
                            voice: true,
                        }),
                    ],
                )
                .await
                .expect("audio written");
            transport_seq += 1;
            audio_seq += 1;
        }
    }
    let (last_video, last_audio) = (FIRST + 60, audio_seq - 1);

    // What reached the publisher's connection, as its interceptors see it.
    let log = Arc::clone(&a.publish.as_ref().expect("published").log);
    let nacked = || -> BTreeSet<u16> {
        log.lock()
            .unwrap()
            .nacks
            .iter()
            .filter(|n| n.media_ssrc == video_ssrc)
            .flat_map(|n| n.nacks.iter().flat_map(NackPair::packet_list))
            .collect()
    };
    // Whether a receiver report has `ssrc` received up to `last` with `lost` lost.
    let reported = |ssrc: u32, last: u16, lost: u32| {
        log.lock().unwrap().receiver_reports.iter().any(|rr| {
            rr.reports.iter().any(|r| {
                r.ssrc == ssrc && r.last_sequence_number == u32::from(last) && r.total_lost == lost
            })
        })
    };
    // The transport-wide sequence numbers TWCC feedback reported on.
    let covered = || -> BTreeSet<u16> {
        log.lock()
            .unwrap()
            .twcc
            .iter()
            .flat_map(|cc| {
                (0..cc.packet_status_count).map(|k| cc.base_sequence_number.wrapping_add(k))
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let nack = nacked() == lost;
        let rr_video = reported(video_ssrc, last_video, 3);
        let rr_audio = reported(audio_ssrc, last_audio, 0);
        let twcc = (0..transport_seq).all(|s| covered().contains(&s));
        if nack && rr_video && rr_audio && twcc {
            break;
        }
        if Instant::now() >= deadline {
            let (nacked, covered) = (nacked(), covered());
            let reports = log.lock().unwrap().receiver_reports.clone();
            panic!(
                "5 s after the last packet: NACK of {lost:?}: {nack} (named {nacked:?}); \
                 RR of video up to {last_video} with 3 lost: {rr_video}, of audio up to \
                 {last_audio}: {rr_audio} (reports {reports:?}); TWCC on 0..{transport_seq}: \
                 {twcc} (covered {covered:?})"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        nacked().is_disjoint(&sent),
        "no NACK names a packet that arrived: {:?}",
        nacked()
    );
    a.stop().await;
}
