//! Test tap (feature `test-tap`, off by default): lets tests observe the payloads the SFU
//! forwards, to prove they leave untouched (ciphertext in, same ciphertext out).

use crate::ParticipantId;
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use std::sync::Arc;

/// Called for every packet a receiver fans out: (publisher, track id, payload).
pub type TapFn = dyn Fn(ParticipantId, &str, &Bytes) + Send + Sync;

/// The per-`Sfu` slot holding the tap, shared with every receiver.
#[derive(Clone, Default)]
pub(crate) struct TapSlot(Arc<ArcSwapOption<Box<TapFn>>>);

impl TapSlot {
    pub fn set(&self, tap: Option<Box<TapFn>>) {
        self.0.store(tap.map(Arc::new));
    }

    pub fn record(&self, publisher: ParticipantId, track_id: &str, payload: &Bytes) {
        if let Some(tap) = self.0.load().as_ref() {
            tap(publisher, track_id, payload);
        }
    }
}
