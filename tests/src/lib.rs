//! Sealed's native participant and test support.
//!
//! - [`bot`]: an E2EE participant using the engine like a browser (sealed-bot, e2e tests).
//! - [`protocol`]: signaling protocol v1 messages, from the client's side.
//! - [`signal`]: the `/ws` connection.
//! - [`rtc`]: the webrtc-rs PeerConnections (the only module that touches webrtc-rs).
//! - [`media`]: synthetic VP8 frames, VP8 RTP packetizing, tones and tone detection.
//! - [`participant`]: a joined participant: signaling + publish and subscribe connections.
//! - [`server_process`]: a `sealed` child process with its RSS, descriptors and log.
//! - [`hostile`]: hostile clients from many loopback addresses (the abuse harness).
//! - [`redis_server`]: a throwaway `redis-server` child (the multi-node tests).

pub mod bot;
pub mod duration;
pub mod hostile;
pub mod media;
pub mod participant;
pub mod protocol;
pub mod redis_server;
pub mod rtc;
pub mod server_process;
pub mod signal;
