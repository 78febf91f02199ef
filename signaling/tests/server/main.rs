//! WebSocket- and HTTP-level tests of the signaling server, run in-process on free
//! ports (one test binary: it links the whole WebRTC stack once).

mod support;

mod abuse;
mod auth;
mod bad_input;
mod flows;
mod http;
mod limits;
mod media;
mod shutdown;
