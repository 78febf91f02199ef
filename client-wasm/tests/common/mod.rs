//! An in-memory meeting: a tiny "server" that relays roster events and key messages between
//! [`Session`]s with controllable delays, order and loss, on a simulated clock.

#![allow(dead_code)]

use std::collections::BTreeMap;

use client_wasm::{
    DeterministicRandom, Identity, RandomSource, Session, SessionConfig, SessionEvent,
};

pub const ROOM: &str = "room-1";
pub const SECRET: [u8; 32] = [0x5e; 32];

/// What the server delivers to a member.
#[derive(Debug, Clone)]
pub enum Delivery {
    Joined { id: u64, public_key: [u8; 65] },
    Left { id: u64 },
    Message { from: u64, payload: Vec<u8> },
}

struct Queued {
    at: u64,
    seq: u64,
    to: u64,
    what: Delivery,
}

/// Decides the fate of one key message: `None` drops it, `Some(d)` delivers it `d` ms later.
pub type Policy = Box<dyn FnMut(u64, u64, &[u8]) -> Option<u64>>;

pub struct Net {
    pub now: u64,
    pub sessions: BTreeMap<u64, Session>,
    /// Sessions of members that left, kept to check what they can still decrypt.
    pub departed: BTreeMap<u64, Session>,
    pub public_keys: BTreeMap<u64, [u8; 65]>,
    pub events: BTreeMap<u64, Vec<SessionEvent>>,
    queue: Vec<Queued>,
    seq: u64,
    /// Per-recipient FIFO, like one WebSocket per member.
    pub fifo: bool,
    last_at: BTreeMap<u64, u64>,
    last_roster_at: BTreeMap<u64, u64>,
    rng: DeterministicRandom,
    /// Random extra delay 0..=jitter ms per delivery.
    pub jitter: u64,
    pub policy: Option<Policy>,
    /// Every key message relayed: (from, to, payload).
    pub log: Vec<(u64, u64, Vec<u8>)>,
    /// (recipient, member): the server never tells `recipient` that `member` joined, or tells
    /// it a substituted key.
    pub hidden: Vec<(u64, u64)>,
    pub substituted: Vec<(u64, u64, [u8; 65])>,
    /// Errors the sessions returned for roster events.
    pub roster_errors: Vec<(u64, client_wasm::EngineError)>,
}

/// A meeting of `ids`, joined 50 ms apart, after 3 s to settle.
pub fn meeting(ids: &[u64], seed: &[u8]) -> Net {
    let mut net = Net::new(seed);
    for &id in ids {
        net.join(id);
        net.run(50);
    }
    net.run(3_000);
    net
}

impl Net {
    pub fn new(seed: &[u8]) -> Net {
        Net {
            now: 1_000,
            sessions: BTreeMap::new(),
            departed: BTreeMap::new(),
            public_keys: BTreeMap::new(),
            events: BTreeMap::new(),
            queue: Vec::new(),
            seq: 0,
            fifo: true,
            last_at: BTreeMap::new(),
            last_roster_at: BTreeMap::new(),
            rng: DeterministicRandom::new(seed),
            jitter: 20,
            policy: None,
            log: Vec::new(),
            hidden: Vec::new(),
            substituted: Vec::new(),
            roster_errors: Vec::new(),
        }
    }

    fn delay(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.rng.fill(&mut b);
        1 + u64::from_be_bytes(b) % (self.jitter + 1)
    }

    fn enqueue(&mut self, to: u64, what: Delivery, delay: u64) {
        let mut at = self.now + delay;
        if self.fifo {
            let last = self.last_at.entry(to).or_insert(0);
            at = at.max(*last);
            *last = at;
        } else if !matches!(what, Delivery::Message { .. }) {
            // Even when key messages are reordered, one member's roster events keep their
            // order (the server's room sends them in order on one socket).
            let last = self.last_roster_at.entry(to).or_insert(0);
            at = at.max(*last);
            *last = at;
        }
        self.seq += 1;
        self.queue.push(Queued {
            at,
            seq: self.seq,
            to,
            what,
        });
    }

    pub fn session_for(id: u64, secret: Option<[u8; 32]>) -> Session {
        let mut rng = DeterministicRandom::new(&id.to_be_bytes());
        let identity = Identity::generate_with(&mut rng);
        Session::with_rng(
            ROOM,
            id,
            secret,
            identity,
            SessionConfig::default(),
            Box::new(rng),
        )
        .unwrap()
    }

    /// `id` joins: it gets the roster at once (welcome), the others learn of it later.
    pub fn join(&mut self, id: u64) {
        self.join_with(id, Some(SECRET));
    }

    pub fn join_with(&mut self, id: u64, secret: Option<[u8; 32]>) {
        let session = Net::session_for(id, secret);
        self.join_session(id, session);
    }

    pub fn join_session(&mut self, id: u64, mut session: Session) {
        let pk = self.identity_key(&session);
        for (&other, other_pk) in &self.public_keys {
            session.member_joined(self.now, other, other_pk).unwrap();
        }
        let others: Vec<u64> = self.sessions.keys().copied().collect();
        for other in others {
            if self.hidden.contains(&(other, id)) {
                continue;
            }
            let public_key = self
                .substituted
                .iter()
                .find(|(to, member, _)| *to == other && *member == id)
                .map_or(pk, |(_, _, fake)| *fake);
            let d = self.delay();
            self.enqueue(other, Delivery::Joined { id, public_key }, d);
        }
        self.public_keys.insert(id, pk);
        self.sessions.insert(id, session);
        self.flush();
    }

    fn identity_key(&self, session: &Session) -> [u8; 65] {
        // The session's own key: regenerate it deterministically as session_for did.
        let mut rng = DeterministicRandom::new(&session.own_id().to_be_bytes());
        Identity::generate_with(&mut rng).public_key()
    }

    /// `id` leaves; its session is kept in `departed`.
    pub fn leave(&mut self, id: u64) {
        if let Some(s) = self.sessions.remove(&id) {
            self.departed.insert(id, s);
        }
        self.public_keys.remove(&id);
        self.queue.retain(|q| q.to != id);
        let others: Vec<u64> = self.sessions.keys().copied().collect();
        for other in others {
            let d = self.delay();
            self.enqueue(other, Delivery::Left { id }, d);
        }
    }

    /// Collects every session's outgoing messages and events.
    pub fn flush(&mut self) {
        let ids: Vec<u64> = self.sessions.keys().copied().collect();
        for id in ids {
            while let Some(out) = self.sessions.get_mut(&id).and_then(|s| s.poll_outgoing()) {
                // The server relays only to members still present.
                if !self.sessions.contains_key(&out.to) {
                    continue;
                }
                self.log.push((id, out.to, out.payload.clone()));
                let fate = match self.policy.as_mut() {
                    Some(p) => p(id, out.to, &out.payload),
                    None => Some(0),
                };
                if let Some(extra) = fate {
                    let d = self.delay() + extra;
                    self.enqueue(
                        out.to,
                        Delivery::Message {
                            from: id,
                            payload: out.payload,
                        },
                        d,
                    );
                }
            }
            if let Some(s) = self.sessions.get_mut(&id) {
                while let Some(e) = s.poll_event() {
                    self.events.entry(id).or_default().push(e);
                }
            }
        }
    }

    /// Delivers a message as if the server relayed it now (for replay/forgery tests).
    pub fn inject(&mut self, from: u64, to: u64, payload: &[u8]) {
        if let Some(s) = self.sessions.get_mut(&to) {
            s.receive(self.now, from, payload);
        }
        self.flush();
    }

    /// Advances the clock by `ms` in 5 ms steps, delivering and ticking.
    pub fn run(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now += 5;
            loop {
                self.queue.sort_by_key(|q| (q.at, q.seq));
                if self.queue.first().is_none_or(|q| q.at > self.now) {
                    break;
                }
                let q = self.queue.remove(0);
                let now = self.now;
                if let Some(s) = self.sessions.get_mut(&q.to) {
                    match q.what {
                        Delivery::Joined { id, public_key } => {
                            if let Err(e) = s.member_joined(now, id, &public_key) {
                                self.roster_errors.push((q.to, e));
                            }
                        }
                        Delivery::Left { id } => s.member_left(now, id),
                        Delivery::Message { from, payload } => s.receive(now, from, &payload),
                    }
                }
                self.flush();
            }
            let now = self.now;
            for s in self.sessions.values_mut() {
                s.tick(now);
            }
            self.flush();
        }
    }

    /// The common sending epoch if every present member sends with the same one.
    pub fn converged_epoch(&self) -> Option<u64> {
        let mut epochs = self.sessions.values().map(|s| s.epoch());
        let first = epochs.next()??;
        epochs.all(|e| e == Some(first)).then_some(first)
    }

    pub fn session(&mut self, id: u64) -> &mut Session {
        self.sessions.get_mut(&id).unwrap()
    }

    /// Every present member can decrypt a fresh frame of every other present member.
    pub fn all_can_talk(&mut self) -> bool {
        let ids: Vec<u64> = self.sessions.keys().copied().collect();
        for &a in &ids {
            let frame = format!("hello from {a}").into_bytes();
            let Ok(ct) = self.session(a).encrypt(client_wasm::Codec::Other, &frame) else {
                return false;
            };
            for &b in &ids {
                if a != b
                    && self
                        .session(b)
                        .decrypt(client_wasm::Codec::Other, &ct)
                        .as_deref()
                        != Ok(&frame[..])
                {
                    return false;
                }
            }
        }
        true
    }
}
