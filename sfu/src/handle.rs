//! [`ParticipantHandle`]: signaling's handle on one participant, whichever engine carries
//! its media.

use crate::engine::MemberHandle;
use crate::participant::ActorHandle;
use crate::{IceCandidate, ParticipantId, PcKind, SfuError};

/// One participant's handle, used by signaling. Cheap to clone.
#[derive(Clone)]
pub struct ParticipantHandle {
    id: ParticipantId,
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    /// One PeerConnection per port, one actor task per participant.
    Actor(ActorHandle),
    /// The single-port engine's worker.
    Engine(MemberHandle),
}

impl ParticipantHandle {
    pub(crate) fn actor(handle: ActorHandle) -> Self {
        Self {
            id: handle.id(),
            inner: Inner::Actor(handle),
        }
    }

    pub(crate) fn engine(id: ParticipantId, handle: MemberHandle) -> Self {
        Self {
            id,
            inner: Inner::Engine(handle),
        }
    }

    /// This participant's id.
    pub fn id(&self) -> ParticipantId {
        self.id
    }

    /// Client offered on its publish PC; returns the SFU's answer SDP.
    pub async fn publish_offer(&self, sdp: &str) -> Result<String, SfuError> {
        match &self.inner {
            Inner::Actor(h) => h.publish_offer(sdp).await,
            Inner::Engine(h) => h.publish_offer(sdp).await,
        }
    }

    /// Client answered the SFU's last subscribe offer.
    pub async fn subscribe_answer(&self, sdp: &str) -> Result<(), SfuError> {
        match &self.inner {
            Inner::Actor(h) => h.subscribe_answer(sdp).await,
            Inner::Engine(h) => h.subscribe_answer(sdp).await,
        }
    }

    /// Adds a client ICE candidate to one of the participant's PCs. Candidates that arrive
    /// before the PC has a remote description are kept until it has one.
    pub async fn add_ice_candidate(
        &self,
        pc: PcKind,
        candidate: IceCandidate,
    ) -> Result<(), SfuError> {
        match &self.inner {
            Inner::Actor(h) => h.add_ice_candidate(pc, candidate).await,
            Inner::Engine(h) => h.add_ice_candidate(pc, candidate).await,
        }
    }

    /// Idempotent: closes both PCs, removes its tracks from every subscriber, tells the room.
    pub async fn leave(&self) {
        match &self.inner {
            Inner::Actor(h) => h.leave().await,
            Inner::Engine(h) => h.leave().await,
        }
    }
}
