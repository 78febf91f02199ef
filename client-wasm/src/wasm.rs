//! The JavaScript face (wasm-bindgen), see `CONTRACTS.md` §3. Frames cost one copy in
//! (`&[u8]` from a `Uint8Array`) and one copy out (the returned `Uint8Array`).

use js_sys::{Array, BigInt, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use crate::epoch::{SessionConfig, SessionEvent};
#[cfg(feature = "test-api")]
use crate::random::DeterministicRandom;
use crate::{Codec, Identity, Session};

/// A P-256 key pair (`new Identity()`).
#[wasm_bindgen(js_name = Identity)]
pub struct WasmIdentity {
    inner: Identity,
}

#[wasm_bindgen(js_class = Identity)]
impl WasmIdentity {
    /// A fresh key pair from `crypto.getRandomValues`.
    #[wasm_bindgen(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> WasmIdentity {
        WasmIdentity {
            inner: Identity::generate(),
        }
    }

    /// **Tests only** (feature `test-api`, absent from the shipped package): the key pair of
    /// a given 32-byte secret scalar.
    #[cfg(feature = "test-api")]
    #[wasm_bindgen(js_name = fromSecretBytes)]
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<WasmIdentity, JsError> {
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| JsError::new("secret key must be 32 bytes"))?;
        Ok(WasmIdentity {
            inner: Identity::from_secret_bytes(&bytes)?,
        })
    }

    /// The 65-byte SEC1 uncompressed public key.
    #[wasm_bindgen(js_name = publicKey)]
    pub fn public_key(&self) -> Vec<u8> {
        self.inner.public_key().to_vec()
    }
}

/// One participant's engine (`new Session(room, ownId, secret, identity, nowMs)`).
#[wasm_bindgen(js_name = Session)]
pub struct WasmSession {
    inner: Session,
}

fn millis(now_ms: f64) -> u64 {
    if now_ms.is_finite() && now_ms > 0.0 {
        now_ms as u64
    } else {
        0
    }
}

fn meeting_secret(secret: Option<Vec<u8>>) -> Result<Option<[u8; 32]>, JsError> {
    secret
        .map(|s| {
            <[u8; 32]>::try_from(s.as_slice())
                .map_err(|_| JsError::new("meeting secret must be 32 bytes"))
        })
        .transpose()
}

/// A participant id given as a BigInt or as a safe non-negative integer number.
fn sender_id(value: &JsValue) -> Option<u64> {
    if value.is_bigint() {
        return u64::try_from(BigInt::from(value.clone())).ok();
    }
    let n = value.as_f64()?;
    (n.fract() == 0.0 && (0.0..=9_007_199_254_740_991.0).contains(&n)).then_some(n as u64)
}

fn codec(name: &str) -> Result<Codec, JsError> {
    Codec::from_name(name).ok_or_else(|| JsError::new("codec must be 'vp8', 'opus' or 'other'"))
}

fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    // Setting a property on a fresh plain object cannot fail.
    let _ = Reflect::set(obj, &JsValue::from_str(key), &value.into());
}

fn ids(list: &[u64]) -> Array {
    list.iter()
        .map(|&id| JsValue::from(BigInt::from(id)))
        .collect()
}

fn event_object(event: &SessionEvent) -> Object {
    let o = Object::new();
    match event {
        SessionEvent::KeysUnavailable => set(&o, "type", "keys_unavailable"),
        SessionEvent::KeyInstalled { epoch, leader } => {
            set(&o, "type", "key_installed");
            set(&o, "epoch", *epoch as f64);
            set(&o, "leader", BigInt::from(*leader));
        }
        SessionEvent::EpochChanged { epoch } => {
            set(&o, "type", "epoch_changed");
            set(&o, "epoch", *epoch as f64);
        }
        SessionEvent::LeaderChanged { leader } => {
            set(&o, "type", "leader_changed");
            set(&o, "leader", BigInt::from(*leader));
        }
        SessionEvent::RosterMismatch {
            epoch,
            leader,
            only_leader,
            only_local,
            keys_differ,
        } => {
            set(&o, "type", "roster_mismatch");
            set(&o, "epoch", *epoch as f64);
            set(&o, "leader", BigInt::from(*leader));
            set(&o, "onlyLeader", ids(only_leader));
            set(&o, "onlyLocal", ids(only_local));
            set(&o, "keysDiffer", *keys_differ);
        }
        SessionEvent::KeyframeNeeded { senders } => {
            set(&o, "type", "keyframe_needed");
            set(&o, "senders", ids(senders));
        }
        SessionEvent::SendingPaused { reason } => {
            set(&o, "type", "sending_paused");
            set(&o, "reason", reason.code());
        }
        SessionEvent::SendingResumed { epoch } => {
            set(&o, "type", "sending_resumed");
            set(&o, "epoch", *epoch as f64);
        }
    }
    o
}

#[wasm_bindgen(js_class = Session)]
impl WasmSession {
    /// `secret`: the 32-byte meeting secret, or `undefined` (then no key is ever derived).
    #[wasm_bindgen(constructor)]
    pub fn new(
        room: &str,
        own_id: u64,
        secret: Option<Vec<u8>>,
        identity: &WasmIdentity,
        now_ms: f64,
    ) -> Result<WasmSession, JsError> {
        let mut inner = Session::new(
            room,
            own_id,
            meeting_secret(secret)?,
            identity.inner.clone(),
            SessionConfig::default(),
        )?;
        inner.tick(millis(now_ms));
        Ok(WasmSession { inner })
    }

    /// **Tests only** (feature `test-api`, absent from the shipped package): a session whose
    /// randomness is derived from `seed` (reproducible).
    #[cfg(feature = "test-api")]
    #[wasm_bindgen(js_name = forTesting)]
    pub fn for_testing(
        room: &str,
        own_id: u64,
        secret: Option<Vec<u8>>,
        identity: &WasmIdentity,
        seed: &[u8],
        now_ms: f64,
    ) -> Result<WasmSession, JsError> {
        let rng = Box::new(DeterministicRandom::new(seed));
        let mut inner = Session::with_rng(
            room,
            own_id,
            meeting_secret(secret)?,
            identity.inner.clone(),
            SessionConfig::default(),
            rng,
        )?;
        inner.tick(millis(now_ms));
        Ok(WasmSession { inner })
    }

    /// A member joined (`welcome` roster or `participant_joined`).
    #[wasm_bindgen(js_name = memberJoined)]
    pub fn member_joined(
        &mut self,
        now_ms: f64,
        id: u64,
        public_key: &[u8],
    ) -> Result<(), JsError> {
        Ok(self.inner.member_joined(millis(now_ms), id, public_key)?)
    }

    /// A member left (`participant_left`).
    #[wasm_bindgen(js_name = memberLeft)]
    pub fn member_left(&mut self, now_ms: f64, id: u64) {
        self.inner.member_left(millis(now_ms), id);
    }

    /// A key message (`e2ee` from the server). Never throws; rejects are counted.
    pub fn receive(&mut self, now_ms: f64, from: u64, payload: &[u8]) {
        self.inner.receive(millis(now_ms), from, payload);
    }

    /// Runs the timers; call every 50-100 ms.
    pub fn tick(&mut self, now_ms: f64) {
        self.inner.tick(millis(now_ms));
    }

    /// Key messages to send: `[{to: BigInt, payload: Uint8Array}]`.
    #[wasm_bindgen(js_name = drainOutgoing)]
    pub fn drain_outgoing(&mut self) -> Array {
        let out = Array::new();
        while let Some(o) = self.inner.poll_outgoing() {
            let obj = Object::new();
            set(&obj, "to", BigInt::from(o.to));
            set(&obj, "payload", Uint8Array::from(o.payload.as_slice()));
            out.push(&obj);
        }
        out
    }

    /// Events: `[{type: 'epoch_changed'|'key_installed'|'roster_mismatch'|..., ...}]`.
    #[wasm_bindgen(js_name = drainEvents)]
    pub fn drain_events(&mut self) -> Array {
        let out = Array::new();
        while let Some(e) = self.inner.poll_event() {
            out.push(&event_object(&e));
        }
        out
    }

    /// `clear prefix ‖ SFrame` of an encoded frame; throws if there is no key yet or sending
    /// is paused (see `paused()`).
    pub fn encrypt(&mut self, codec_name: &str, data: &[u8]) -> Result<Vec<u8>, JsError> {
        Ok(self.inner.encrypt(codec(codec_name)?, data)?)
    }

    /// Decrypts a frame of the track of participant `sender` (a BigInt or number; the SFU
    /// puts it first in the track's msid). Returns the frame as a `Uint8Array`, or, when it
    /// is dropped, the reason as a string: `'unknown_kid'`, `'auth'`, `'replay'`,
    /// `'malformed'` or `'wrong_sender'` (the frame's KID names someone else). With
    /// `sender` `undefined` any member's frame is accepted (tools and benchmarks only).
    pub fn decrypt(
        &mut self,
        codec_name: &str,
        data: &[u8],
        sender: JsValue,
    ) -> Result<JsValue, JsError> {
        let codec = codec(codec_name)?;
        let result = if sender.is_undefined() || sender.is_null() {
            self.inner.decrypt(codec, data)
        } else {
            let sender = sender_id(&sender)
                .ok_or_else(|| JsError::new("sender must be a participant id"))?;
            self.inner.decrypt_from(codec, sender, data)
        };
        Ok(match result {
            Ok(frame) => Uint8Array::from(frame.as_slice()).into(),
            Err(e) => JsValue::from_str(e.drop_reason().code()),
        })
    }

    /// Why sending is paused (`'rekey_overdue'`, `'roster_mismatch'`,
    /// `'epochs_exhausted'`), or `undefined` while sending is allowed.
    pub fn paused(&self) -> Option<String> {
        self.inner.paused().map(|r| r.code().to_owned())
    }

    /// A chat message's payload (`epoch ‖ seq ‖ ciphertext ‖ tag`) to relay to the room.
    /// Throws an `Error` whose message is the [`ChatError`](crate::ChatError) code
    /// (`not_sending`, `too_large`) when it cannot be sent now.
    #[wasm_bindgen(js_name = encryptChat)]
    pub fn encrypt_chat(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, JsError> {
        self.inner
            .encrypt_chat(plaintext)
            .map_err(|e| JsError::new(e.code()))
    }

    /// `{plaintext: Uint8Array}` or `{error: code}` for a payload relayed from `from` (a
    /// number or a BigInt). Never throws for anything a peer sends.
    #[wasm_bindgen(js_name = decryptChat)]
    pub fn decrypt_chat(&mut self, from: JsValue, payload: &[u8]) -> Object {
        let o = Object::new();
        let result = match sender_id(&from) {
            Some(from) => self.inner.decrypt_chat(from, payload),
            None => Err(crate::ChatError::UnknownSender),
        };
        match result {
            Ok(plaintext) => set(&o, "plaintext", Uint8Array::from(plaintext.as_slice())),
            Err(e) => set(&o, "error", e.code()),
        }
        o
    }

    /// "dddd dddd dddd dddd dddd" over the roster, self included.
    #[wasm_bindgen(js_name = safetyNumber)]
    pub fn safety_number(&self) -> String {
        self.inner.safety_number()
    }

    /// Current sending epoch, or `undefined`.
    pub fn epoch(&self) -> Option<f64> {
        self.inner.epoch().map(|e| e as f64)
    }

    /// Current leader id.
    pub fn leader(&self) -> u64 {
        self.inner.leader()
    }

    /// Roster ids, self included, ascending (BigInts).
    pub fn roster(&self) -> Array {
        ids(&self.inner.roster())
    }

    /// Every counter as a plain object of numbers (snake_case names as in Rust).
    pub fn counters(&self) -> Object {
        let o = Object::new();
        for (name, value) in self.inner.counters().fields() {
            set(&o, name, value as f64);
        }
        o
    }
}
