//! The engine's ICE-lite agent follows the browser's *latest* nomination.
//!
//! A browser (the controlling agent) nominates a pair from client address A, then — as
//! Firefox does when it abandons its first socket — nominates another succeeded pair from
//! address B. This proves, on a publish connection built by [`Peer::new`] and answered by
//! [`Peer::answer`] exactly as the worker does it, that after B's USE-CANDIDATE everything
//! the connection sends (here: the DTLS ClientHello and its retransmissions, the SFU being
//! the DTLS client of a publish connection) is addressed to B and nothing more to A, that
//! the transport stats count two selected-pair changes, and that ICE stays connected.
//!
//! Published `rtc-ice` 0.21.1 keeps the first nominated pair for good, so this test fails
//! without the "Sealed patch" in `third_party/rtc-ice/src/agent/agent_selector.rs`
//! (`ControlledSelector::handle_binding_request`; see `third_party/rtc-ice/PATCHES.md`).
//! Time is driven with `Instant` values only: no socket, no sleep.

use super::peer::Peer;
use crate::PcKind;
use crate::rtc::NetSettings;
use bytes::BytesMut;
use rtc::crypto::RTCCryptoProvider;
use rtc::ice::attributes::control::AttrControlling;
use rtc::ice::attributes::priority::PriorityAttr;
use rtc::ice::attributes::use_candidate::UseCandidateAttr;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::state::RTCIceConnectionState;
use rtc::sansio::Protocol;
use rtc::shared::TaggedBytesMut;
use rtc::statistics::StatsSelector;
use rtc::stun::attributes::{ATTR_USE_CANDIDATE, ATTR_USERNAME};
use rtc::stun::fingerprint::FINGERPRINT;
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::{
    BINDING_REQUEST, BINDING_SUCCESS, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, METHOD_BINDING,
    Message, Setter, TransactionId, is_stun_message,
};
use rtc::stun::textattrs::Username;
use rtc::stun::xoraddr::XorMappedAddress;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The worker's socket (never bound: the connection is sans-IO).
const SFU: &str = "10.0.0.5:40000";
/// The browser's first socket, nominated and then abandoned.
const CLIENT_A: &str = "10.0.0.9:50001";
/// The browser's final socket.
const CLIENT_B: &str = "10.0.0.9:50002";
const CLIENT_UFRAG: &str = "browserUfrag";
const CLIENT_PWD: &str = "browserPasswordOf24Chars";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// A browser-like publish offer: one send-only Opus m-line, DTLS `actpass`.
fn offer() -> String {
    let fingerprint = (0..32)
        .map(|i| format!("{:02X}", i * 7 % 256))
        .collect::<Vec<_>>()
        .join(":");
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "a=msid-semantic: WMS stream",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        &format!("a=ice-ufrag:{CLIENT_UFRAG}"),
        &format!("a=ice-pwd:{CLIENT_PWD}"),
        "a=ice-options:trickle",
        &format!("a=fingerprint:sha-256 {fingerprint}"),
        "a=setup:actpass",
        "a=mid:0",
        "a=sendonly",
        "a=msid:stream track",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=ssrc:1111 cname:browser",
        "",
    ]
    .join("\r\n")
}

/// The browser's side of ICE, hand-made STUN.
struct Browser {
    sfu_ufrag: String,
    sfu_pwd: String,
    crypto: Arc<dyn RTCCryptoProvider>,
}

impl Browser {
    /// A controlling check (RFC 8445 §7.2.2), nominating with `use_candidate`.
    fn check(&self, use_candidate: bool) -> BytesMut {
        let mut setters: Vec<Box<dyn Setter + '_>> = vec![
            Box::new(BINDING_REQUEST),
            Box::new(TransactionId::new()),
            Box::new(Username::new(
                ATTR_USERNAME,
                format!("{}:{CLIENT_UFRAG}", self.sfu_ufrag),
            )),
            Box::new(PriorityAttr(1_845_501_695)),
            Box::new(AttrControlling(0x0123_4567_89ab_cdef)),
        ];
        if use_candidate {
            setters.push(Box::<UseCandidateAttr>::default());
        }
        setters.push(Box::new(
            MessageIntegrity::new_short_term_integrity_with_provider(
                self.sfu_pwd.clone(),
                self.crypto.crypto(),
            ),
        ));
        setters.push(Box::new(FINGERPRINT));
        let mut m = Message::new();
        m.build(&setters).expect("build binding request");
        BytesMut::from(&m.raw[..])
    }

    /// The success response to the agent's check `request`, as seen by the socket it was
    /// sent to (keyed with the browser's password).
    fn answer(&self, request: &Message) -> BytesMut {
        let sfu = addr(SFU);
        let mut m = Message::new();
        m.build(&[
            Box::new(BINDING_SUCCESS),
            Box::new(request.transaction_id),
            Box::new(XorMappedAddress {
                ip: sfu.ip(),
                port: sfu.port(),
            }),
            Box::new(MessageIntegrity::new_short_term_integrity_with_provider(
                CLIENT_PWD.to_owned(),
                self.crypto.crypto(),
            )),
            Box::new(FINGERPRINT),
        ])
        .expect("build binding success");
        BytesMut::from(&m.raw[..])
    }
}

fn decode_stun(out: &TaggedBytesMut) -> Option<Message> {
    if !is_stun_message(&out.message) {
        return None;
    }
    let mut m = Message {
        raw: out.message.to_vec(),
        ..Message::default()
    };
    m.decode().expect("the agent's STUN decodes");
    Some(m)
}

fn is_dtls(out: &TaggedBytesMut) -> bool {
    // RFC 7983: DTLS records start with 20..=63.
    out.message.first().is_some_and(|b| (20..=63).contains(b))
}

/// Everything the connection has to say now, the way the worker collects it: its events
/// first (they start the DTLS handshake once a pair is selected), then its datagrams.
fn drain(peer: &mut Peer, ice_states: &mut Vec<RTCIceConnectionState>) -> Vec<TaggedBytesMut> {
    let mut out = Vec::new();
    loop {
        let mut progressed = false;
        while let Some(event) = peer.pc.poll_event() {
            progressed = true;
            if let RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(state) = event {
                ice_states.push(state);
            }
        }
        while peer.pc.poll_read().is_some() {
            progressed = true;
        }
        while let Some(datagram) = peer.pc.poll_write() {
            progressed = true;
            out.push(datagram);
        }
        if !progressed {
            return out;
        }
    }
}

/// Runs the connection's timers up to `until`, returning what it sent meanwhile.
fn run_until(
    peer: &mut Peer,
    until: Instant,
    ice_states: &mut Vec<RTCIceConnectionState>,
) -> Vec<TaggedBytesMut> {
    let mut out = Vec::new();
    peer.refresh_timeout();
    while let Some(at) = peer.next_timeout.filter(|t| *t <= until) {
        peer.on_timer(at);
        out.extend(drain(peer, ice_states));
        peer.refresh_timeout();
        if peer.next_timeout.is_some_and(|t| t <= at) {
            // A timer that does not move would loop forever; step past it.
            peer.on_timer(at + Duration::from_millis(1));
            out.extend(drain(peer, ice_states));
            peer.refresh_timeout();
            if peer.next_timeout.is_some_and(|t| t <= at) {
                break;
            }
        }
    }
    out
}

/// Brings the pair (SFU, `client`) to Succeeded and nominates it, as a full controlling
/// agent does: a check, the agent's triggered check answered, then USE-CANDIDATE.
/// Returns what the connection sent in response to the nomination.
fn connect_from(
    peer: &mut Peer,
    browser: &Browser,
    client: SocketAddr,
    now: &mut Instant,
    ice_states: &mut Vec<RTCIceConnectionState>,
) -> Vec<TaggedBytesMut> {
    peer.read(*now, client, browser.check(false), false);
    let out = drain(peer, ice_states);
    let stun: Vec<Message> = out
        .iter()
        .inspect(|o| assert_eq!(o.transport.peer_addr, client, "ICE answers the sender"))
        .filter_map(decode_stun)
        .collect();
    assert!(
        stun.iter().any(|m| m.typ == BINDING_SUCCESS),
        "the check from {client} was answered"
    );
    let triggered = stun
        .iter()
        .find(|m| m.typ.method == METHOD_BINDING && m.typ.class == CLASS_REQUEST)
        .unwrap_or_else(|| panic!("no triggered check to {client}"));
    assert!(!triggered.contains(ATTR_USE_CANDIDATE));

    *now += Duration::from_millis(20);
    peer.read(*now, client, browser.answer(triggered), false);
    let out = drain(peer, ice_states);
    assert!(
        out.iter().all(|o| o.transport.peer_addr == client),
        "a success response makes the agent talk to {client} only"
    );

    *now += Duration::from_millis(20);
    peer.read(*now, client, browser.check(true), false);
    let mut out = drain(peer, ice_states);
    let nomination_answered = out
        .iter()
        .filter(|o| o.transport.peer_addr == client)
        .filter_map(decode_stun)
        .any(|m| m.typ.class == CLASS_SUCCESS_RESPONSE);
    assert!(
        nomination_answered,
        "the nomination from {client} was answered"
    );
    // The DTLS endpoint may only flush its first flight on the next timer.
    *now += Duration::from_millis(1);
    out.extend(run_until(peer, *now, ice_states));
    out
}

#[test]
fn a_later_nomination_moves_the_selected_pair() {
    let (sfu, a, b) = (addr(SFU), addr(CLIENT_A), addr(CLIENT_B));
    let net = NetSettings {
        bind_ip: sfu.ip(),
        public_ip: None,
    };
    let mut peer = Peer::new(PcKind::Publish, sfu, None, net).expect("publish connection");
    let mut now = Instant::now();
    let answer = peer
        .answer(now, &offer(), Duration::from_secs(10))
        .expect("the SFU answers the offer");
    assert!(
        answer.contains("a=setup:active"),
        "the SFU is the DTLS client of a publish connection:\n{answer}"
    );
    assert!(answer.contains("a=ice-lite"), "the SFU is ICE-lite");
    let sfu_pwd = answer
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-pwd:"))
        .expect("our answer carries its ICE password")
        .trim()
        .to_owned();
    let browser = Browser {
        sfu_ufrag: peer.ufrag.clone(),
        sfu_pwd,
        crypto: rtc::crypto::default_provider().expect("crypto provider"),
    };
    let mut ice_states = Vec::new();
    drain(&mut peer, &mut ice_states);

    // 1. The browser's first socket: pair A nominated, the DTLS handshake starts there.
    now += Duration::from_millis(10);
    let out = connect_from(&mut peer, &browser, a, &mut now, &mut ice_states);
    assert!(
        out.iter().any(|o| is_dtls(o) && o.transport.peer_addr == a),
        "after A's nomination the ClientHello goes to A: {:?}",
        out.iter()
            .map(|o| o.transport.peer_addr)
            .collect::<Vec<_>>()
    );
    assert!(out.iter().all(|o| o.transport.peer_addr == a));
    assert_eq!(ice_states.last(), Some(&RTCIceConnectionState::Connected));

    // 2. Its final socket: pair B succeeds and is nominated; A falls silent from here on.
    now += Duration::from_millis(100);
    let mut after_switch = connect_from(&mut peer, &browser, b, &mut now, &mut ice_states);

    // 3. The ClientHello is retransmitted on the DTLS timer (about once a second here),
    // to B only. B keeps consent alive (a check every 500 ms) while A stays silent.
    let end = now + Duration::from_secs(4);
    while now < end {
        let next = now + Duration::from_millis(500);
        after_switch.extend(run_until(&mut peer, next, &mut ice_states));
        now = next;
        peer.read(now, b, browser.check(false), false);
        after_switch.extend(drain(&mut peer, &mut ice_states));
    }

    let to_a: Vec<&TaggedBytesMut> = after_switch
        .iter()
        .filter(|o| o.transport.peer_addr == a)
        .collect();
    assert!(
        to_a.is_empty(),
        "after B's nomination {} datagram(s) ({} DTLS) still went to the abandoned A",
        to_a.len(),
        to_a.iter().filter(|o| is_dtls(o)).count()
    );
    let dtls_to_b = after_switch
        .iter()
        .filter(|o| is_dtls(o) && o.transport.peer_addr == b)
        .count();
    assert!(
        dtls_to_b >= 2,
        "the DTLS flight and its retransmission go to B (saw {dtls_to_b})"
    );
    assert!(after_switch.iter().all(|o| o.transport.local_addr == sfu));

    let stats = peer.pc.get_stats(now, StatsSelector::None);
    let transport = stats.transport().expect("transport stats");
    assert_eq!(
        transport.selected_candidate_pair_changes, 2,
        "A, then B, was the selected pair"
    );
    assert_eq!(ice_states.last(), Some(&RTCIceConnectionState::Connected));
    assert!(
        !ice_states.iter().any(|s| matches!(
            s,
            RTCIceConnectionState::Disconnected | RTCIceConnectionState::Failed
        )),
        "ICE stayed up: {ice_states:?}"
    );
}
