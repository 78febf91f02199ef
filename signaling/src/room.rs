//! One room as signaling sees it: the roster of participants with their names,
//! public keys and outboxes.
//!
//! The room owns its media: the SFU room ([`sfu::Router`]) lives exactly as long as this
//! room, and every member is in both from the same step (`Registry::join_with`). The
//! roster is what the E2EE layer needs (who is here, with which key); the SFU room holds
//! PeerConnections and tracks. A `BTreeMap` keeps the roster in ascending id order, which
//! is the order `welcome` promises.

use std::collections::BTreeMap;

use axum::extract::ws::Utf8Bytes;

use crate::outbox::Outbox;
use crate::protocol::{ParticipantId, ParticipantInfo};

/// A participant in a room.
#[derive(Debug)]
pub(crate) struct Member {
    /// Id, name and public key, as shown to the others.
    pub info: ParticipantInfo,
    /// Where messages for this participant go.
    pub outbox: Outbox,
}

/// The participants of one room, by ascending id, its id counter and its SFU room.
pub(crate) struct Room {
    members: BTreeMap<ParticipantId, Member>,
    next_id: ParticipantId,
    router: sfu::Router,
    instance: u64,
}

impl Room {
    /// An empty room around its SFU room; ids start at 1. `instance` tells it apart
    /// from earlier and later rooms of the same name on this server.
    pub fn new(router: sfu::Router, instance: u64) -> Self {
        Room {
            members: BTreeMap::new(),
            next_id: 1,
            router,
            instance,
        }
    }

    /// Which room of this name it is (see [`Room::new`]).
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// Every participant.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// The id the next participant gets.
    pub fn next_id(&self) -> ParticipantId {
        self.next_id
    }

    /// Consumes the id [`Room::next_id`] returned.
    pub fn take_id(&mut self) -> ParticipantId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The SFU room.
    pub fn router(&self) -> &sfu::Router {
        &self.router
    }

    /// Number of participants.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when nobody is left.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The roster in ascending id order.
    pub fn roster(&self) -> Vec<ParticipantInfo> {
        self.members.values().map(|m| m.info.clone()).collect()
    }

    /// A participant by id.
    pub fn get(&self, id: ParticipantId) -> Option<&Member> {
        self.members.get(&id)
    }

    /// Adds a participant.
    pub fn insert(&mut self, member: Member) {
        self.members.insert(member.info.id, member);
    }

    /// Removes a participant; returns it if it was present.
    pub fn remove(&mut self, id: ParticipantId) -> Option<Member> {
        self.members.remove(&id)
    }

    /// Queues `text` for every participant except `except`.
    pub fn broadcast(&self, except: ParticipantId, text: &Utf8Bytes) {
        for (id, member) in &self.members {
            if *id != except {
                member.outbox.send_text(text.clone());
            }
        }
    }
}
