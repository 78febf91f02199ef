//! Sealed's selective forwarding unit (SFU): the media plane.
//!
//! The SFU routes RTP it cannot decrypt. Vocabulary follows mediasoup / LiveKit:
//! a [`Sfu`] opens rooms, each owned through its [`Router`]; a room holds participants; each participant has two
//! PeerConnections — *publish* (the client offers, we receive its tracks) and *subscribe*
//! (we offer, and renegotiate as tracks come and go). Each published track has a
//! *receiver* that fans its packets out to one *down track* per subscriber; the down
//! track's *forwarder* rewrites SSRC / payload type / sequence numbers / timestamps and
//! never touches the payload (end-to-end encrypted ciphertext).
//!
//! This crate knows RTP and nothing of HTTP or JSON; signaling drives it through
//! [`Sfu::open_room`], [`Router::join`] and the returned [`ParticipantHandle`] /
//! [`ParticipantEvent`] stream.

#![warn(missing_docs)]

mod audio_level;
mod config;
/// Routing of the one media port's datagrams to PeerConnections (not yet wired in).
pub mod demux;
mod down_track;
/// The single-port media engine: `rtc` PeerConnections driven by worker threads.
mod engine;
mod error;
mod forwarder;
mod handle;
/// ICE over TCP: RFC 4571 framing and passive RFC 6544 connections (not yet wired in).
pub mod ice_tcp;
mod negotiation;
mod participant;
mod port_pool;
mod receiver;
mod room;
mod rtc;
mod rtcp;
mod sfu;
mod stats;
#[cfg(feature = "test-tap")]
pub mod tap;
/// The media plane's batched UDP socket (not yet wired in).
pub mod udp;

pub use config::SfuConfig;
pub use error::SfuError;
pub use handle::ParticipantHandle;
pub use sfu::{Router, Sfu};
pub use stats::SfuStats;

/// A participant's id: assigned by signaling, unique within a room, never reused.
pub type ParticipantId = u64;

/// Which of a participant's two PeerConnections something is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PcKind {
    /// The client offers and sends its tracks to the SFU.
    Publish,
    /// The SFU offers and sends the other participants' tracks to the client.
    Subscribe,
}

/// Media kind of a published track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackKind {
    /// Opus, payload type 111.
    Audio,
    /// VP8, payload type 96.
    Video,
}

/// An ICE candidate as the browser's `RTCIceCandidateInit` carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceCandidate {
    /// The `candidate:...` attribute value (an empty string means end of candidates).
    pub candidate: String,
    /// Media section id the candidate belongs to.
    pub sdp_mid: Option<String>,
    /// Media section index the candidate belongs to.
    pub sdp_mline_index: Option<u16>,
    /// ICE username fragment of the generation the candidate belongs to.
    pub username_fragment: Option<String>,
}

/// What the SFU tells signaling about one participant.
#[derive(Clone, Debug)]
pub enum ParticipantEvent {
    /// The SFU (re)negotiates this participant's subscribe PC. Never two in flight: the next
    /// offer waits for the answer to the previous one.
    SubscribeOffer {
        /// The offer SDP.
        sdp: String,
    },
    /// A local ICE candidate of one of this participant's PCs (trickle). The SFU's SDPs
    /// normally carry all its candidates already (ICE-lite, host candidates only), so this
    /// is only sent for candidates gathered after an SDP was handed out.
    IceCandidate {
        /// Which PC the candidate belongs to.
        pc: PcKind,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// Sent to every OTHER participant of the room (and, on join, for each existing track, to
    /// the newcomer). `track_id` is the publisher's MediaStreamTrack id / SDP msid track id.
    TrackPublished {
        /// Who publishes the track.
        publisher: ParticipantId,
        /// The publisher's track id.
        track_id: String,
        /// Audio or video.
        kind: TrackKind,
    },
    /// A track announced by `TrackPublished` is gone.
    TrackUnpublished {
        /// Who published the track.
        publisher: ParticipantId,
        /// The publisher's track id.
        track_id: String,
    },
    /// Room-wide, from RFC 6464 audio levels, at most a few times a second, only on change.
    ActiveSpeakers {
        /// Speaking participants, loudest first.
        ids: Vec<ParticipantId>,
    },
    /// ICE/DTLS failed or timed out: signaling must remove the participant (call leave()).
    Closed {
        /// Human-readable cause, for logs.
        reason: String,
    },
}
