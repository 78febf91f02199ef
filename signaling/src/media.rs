//! The seam between signaling and the SFU: type conversions, the task that turns a
//! participant's [`ParticipantEvent`]s into server messages, and the mapping of SFU
//! errors onto protocol error codes.

use sfu::{ParticipantEvent, SfuError};
use tokio::sync::mpsc;

use crate::error::{ErrorCode, ProtocolError};
use crate::outbox::{Outbound, Outbox};
use crate::protocol::{Candidate, PcKind, ServerMessage, TrackKind};

impl From<PcKind> for sfu::PcKind {
    fn from(pc: PcKind) -> Self {
        match pc {
            PcKind::Publish => sfu::PcKind::Publish,
            PcKind::Subscribe => sfu::PcKind::Subscribe,
        }
    }
}

impl From<sfu::PcKind> for PcKind {
    fn from(pc: sfu::PcKind) -> Self {
        match pc {
            sfu::PcKind::Publish => PcKind::Publish,
            sfu::PcKind::Subscribe => PcKind::Subscribe,
        }
    }
}

impl From<sfu::TrackKind> for TrackKind {
    fn from(kind: sfu::TrackKind) -> Self {
        match kind {
            sfu::TrackKind::Audio => TrackKind::Audio,
            sfu::TrackKind::Video => TrackKind::Video,
        }
    }
}

impl From<Candidate> for sfu::IceCandidate {
    fn from(c: Candidate) -> Self {
        sfu::IceCandidate {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_mline_index,
            username_fragment: c.username_fragment,
        }
    }
}

impl From<sfu::IceCandidate> for Candidate {
    fn from(c: sfu::IceCandidate) -> Self {
        Candidate {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_mline_index,
            username_fragment: c.username_fragment,
        }
    }
}

/// What one SFU event means for the client.
#[derive(Debug, PartialEq)]
pub(crate) enum Translated {
    /// Send this message.
    Message(ServerMessage),
    /// The media connections died; remove the participant.
    Closed(String),
}

/// Maps one SFU event to what the client should see.
pub(crate) fn translate(event: ParticipantEvent) -> Translated {
    Translated::Message(match event {
        ParticipantEvent::SubscribeOffer { sdp } => ServerMessage::SubscribeOffer { sdp },
        ParticipantEvent::IceCandidate { pc, candidate } => ServerMessage::IceCandidate {
            pc: pc.into(),
            candidate: candidate.into(),
        },
        ParticipantEvent::TrackPublished {
            publisher,
            track_id,
            kind,
        } => ServerMessage::TrackPublished {
            participant: publisher,
            track_id,
            kind: kind.into(),
        },
        ParticipantEvent::TrackUnpublished {
            publisher,
            track_id,
        } => ServerMessage::TrackUnpublished {
            participant: publisher,
            track_id,
        },
        ParticipantEvent::ActiveSpeakers { ids } => ServerMessage::ActiveSpeakers { ids },
        ParticipantEvent::Closed { reason } => return Translated::Closed(reason),
    })
}

/// Runs for as long as the participant is in the SFU: forwards its events, in order,
/// into its connection's queue. Ends when the SFU drops the sender (after `leave`),
/// when the connection is gone, or after `Closed`.
pub(crate) async fn forward_events(mut events: mpsc::Receiver<ParticipantEvent>, outbox: Outbox) {
    while let Some(event) = events.recv().await {
        match translate(event) {
            Translated::Message(message) => {
                // A full queue has already flagged the client as too slow; the
                // connection is about to close, so dropping here is fine.
                outbox.send(&message);
            }
            Translated::Closed(reason) => {
                outbox.push(Outbound::MediaClosed(reason));
                return;
            }
        }
    }
}

/// The protocol error a client sees when the SFU refuses one of its requests.
pub(crate) fn sfu_error(err: &SfuError) -> ProtocolError {
    let code = match err {
        SfuError::BadSdp(_) | SfuError::BadCandidate(_) | SfuError::NoOfferOutstanding => {
            ErrorCode::BadSdp
        }
        // Configuration, port exhaustion, shutdown, WebRTC failures: not the
        // client's fault. (A wildcard so that new SFU error variants map safely.)
        _ => ErrorCode::Internal,
    };
    match code {
        // The client can fix its SDP, so it gets the detail.
        ErrorCode::BadSdp => ProtocolError::new(code, format!("media server: {err}")),
        // Server-side trouble: the detail (addresses, ports) stays in the log.
        _ => {
            tracing::warn!(error = %err, "media server error");
            ProtocolError::new(code, "media server error; try again later")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_translates() {
        let cand = sfu::IceCandidate {
            candidate: "candidate:x".into(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: None,
            username_fragment: None,
        };
        let cases = vec![
            (
                ParticipantEvent::SubscribeOffer { sdp: "v=0".into() },
                ServerMessage::SubscribeOffer { sdp: "v=0".into() },
            ),
            (
                ParticipantEvent::IceCandidate {
                    pc: sfu::PcKind::Subscribe,
                    candidate: cand.clone(),
                },
                ServerMessage::IceCandidate {
                    pc: PcKind::Subscribe,
                    candidate: cand.into(),
                },
            ),
            (
                ParticipantEvent::TrackPublished {
                    publisher: 4,
                    track_id: "t".into(),
                    kind: sfu::TrackKind::Audio,
                },
                ServerMessage::TrackPublished {
                    participant: 4,
                    track_id: "t".into(),
                    kind: TrackKind::Audio,
                },
            ),
            (
                ParticipantEvent::TrackUnpublished {
                    publisher: 4,
                    track_id: "t".into(),
                },
                ServerMessage::TrackUnpublished {
                    participant: 4,
                    track_id: "t".into(),
                },
            ),
            (
                ParticipantEvent::ActiveSpeakers { ids: vec![3, 1] },
                ServerMessage::ActiveSpeakers { ids: vec![3, 1] },
            ),
        ];
        for (event, expected) in cases {
            assert_eq!(translate(event), Translated::Message(expected));
        }
        assert_eq!(
            translate(ParticipantEvent::Closed {
                reason: "ice".into()
            }),
            Translated::Closed("ice".into())
        );
    }

    #[test]
    fn sfu_errors_map_to_codes() {
        assert_eq!(
            sfu_error(&SfuError::BadSdp("x".into())).code,
            ErrorCode::BadSdp
        );
        assert_eq!(
            sfu_error(&SfuError::NoOfferOutstanding).code,
            ErrorCode::BadSdp
        );
        assert_eq!(sfu_error(&SfuError::NoFreePort).code, ErrorCode::Internal);
    }
}
