//! SRTP bypass for a selective forwarding unit (patch carried by Sealed; see PATCHES.md).
//!
//! An SFU forwards RTP it has already parsed and rewritten. Sending it through
//! [`RTCPeerConnection::handle_write`] moves every packet through all eight pipeline
//! handlers and the interceptor chain, by value, for nothing but SRTP protection and the
//! selected pair's address. These two calls do just that: protect with the connection's
//! outbound SRTP context and address to the ICE-selected pair. What the pipeline would
//! have done besides (NACK responder buffer, sender reports, outbound stream stats) is
//! then the caller's to do.
//!
//! The read side has one call too, [`RTCPeerConnection::read_rtp_bypass`]: a received SRTP
//! packet goes through only the handlers that act on one (SRTP, interceptors, endpoint),
//! and the media it yields is popped with [`RTCPeerConnection::poll_media_bypass`] without
//! a sweep of the whole pipeline per call.

use crate::peer_connection::RTCPeerConnection;
use crate::peer_connection::message::internal::{
    RTCMessageInternal, RTPMessage, TaggedRTCMessageInternal,
};
use crate::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use ::interceptor::Packet;
use log::warn;
use shared::error::Result;
use shared::util::is_rtcp;
use bytes::BytesMut;
use shared::{TaggedBytesMut, TransportContext, TransportMessage};
use std::collections::VecDeque;
use std::time::Instant;

/// What [`RTCPeerConnection::read_rtp_bypass`] did with a datagram.
pub enum BypassRead {
    /// Not an SRTP packet, or the connection has no selected pair or SRTP keys yet: the
    /// datagram is handed back for `handle_read`.
    NotTaken(TaggedBytesMut),
    /// Read. `events` is whether a handler raised an event on the way (a new remote
    /// stream, say); then `poll_event` has something to say.
    Taken {
        /// Whether events wait for `poll_event`.
        events: bool,
    },
}

impl RTCPeerConnection {
    /// Protects the marshalled RTP packet in `packet`, whose header is `header`, in place
    /// with this connection's outbound SRTP context (appending the tag: give it room and
    /// nothing is allocated or copied) and returns where to send it: the selected ICE
    /// candidate pair.
    ///
    /// Returns `Ok(None)`, `packet` untouched, while there is nowhere to send it yet: before
    /// DTLS has produced SRTP keys or before ICE has selected a pair. On error `packet` is
    /// unspecified. The packet bypasses the interceptor chain: no NACK history, sender
    /// report or outbound or candidate-pair statistics account for it.
    pub fn protect_rtp_bypass(
        &mut self,
        now: Instant,
        packet: &mut BytesMut,
        header: &rtp::Header,
    ) -> Result<Option<TransportContext>> {
        let Some(transport) = self.selected_transport() else {
            return Ok(None);
        };
        let Some(context) = self
            .pipeline_context
            .srtp_handler_context
            .local_srtp_context
            .as_mut()
        else {
            return Ok(None);
        };
        context.encrypt_rtp_in_place(packet, header)?;
        self.pipeline_context.observe(now);
        Ok(Some(transport))
    }

    /// Protects one marshalled (compound) RTCP packet with this connection's outbound SRTCP
    /// context and addresses it to the selected ICE candidate pair; `Ok(None)` as for
    /// [`Self::protect_rtp_bypass`].
    pub fn protect_rtcp_bypass(
        &mut self,
        now: Instant,
        packet: &[u8],
    ) -> Result<Option<TaggedBytesMut>> {
        let Some(transport) = self.selected_transport() else {
            return Ok(None);
        };
        let Some(context) = self
            .pipeline_context
            .srtp_handler_context
            .local_srtp_context
            .as_mut()
        else {
            return Ok(None);
        };
        let message = context.encrypt_rtcp(packet)?;
        self.pipeline_context.observe(now);
        Ok(Some(TransportMessage {
            now,
            transport,
            message,
        }))
    }

    /// What the ICE handler stamps on every write: the selected pair's local base address,
    /// remote address and protocol. (It also counts the write in the pair's statistics,
    /// looked up by a string key; bypassed packets are not counted there.)
    fn selected_transport(&self) -> Option<TransportContext> {
        let (local, remote) = self
            .pipeline_context
            .ice_handler_context
            .ice_transport
            .agent
            .get_selected_candidate_pair()?;
        Some(TransportContext {
            local_addr: local.base_addr(),
            peer_addr: remote.addr(),
            transport_protocol: local.network_type().to_protocol(),
            ecn: None,
        })
    }

    /// Reads one received datagram if it is SRTP (not SRTCP) on a connection with a
    /// selected pair and SRTP keys, running it through the SRTP, interceptor and endpoint
    /// handlers only — what `handle_read` does for such a packet, without the demuxer, ICE,
    /// DTLS, SCTP and data-channel handlers it passes through unchanged (the selected
    /// pair's received-packet statistics are not counted). The media it yields waits for
    /// [`Self::poll_media_bypass`].
    pub fn read_rtp_bypass(&mut self, msg: TaggedBytesMut) -> BypassRead {
        let data = &msg.message;
        let srtp = data.len() >= 2 && (128..=191).contains(&data[0]) && !is_rtcp(data);
        if !srtp
            || self
                .pipeline_context
                .srtp_handler_context
                .remote_srtp_context
                .is_none()
            || self
                .pipeline_context
                .ice_handler_context
                .ice_transport
                .agent
                .get_selected_candidate_pair()
                .is_none()
        {
            return BypassRead::NotTaken(msg);
        }
        self.pipeline_context.observe(msg.now);
        self.pipeline_context
            .stats
            .transport
            .on_packet_received(msg.message.len());
        let mut queue = VecDeque::with_capacity(1);
        queue.push_back(TaggedRTCMessageInternal {
            now: msg.now,
            // What the ICE handler hands on: DTLS and SRTP are bound to the ICE transport.
            transport: TransportContext::default(),
            message: RTCMessageInternal::Rtp(RTPMessage::Raw(msg.message)),
        });
        use sansio::Protocol;
        macro_rules! through {
            ($getter:ident) => {{
                let mut handler = self.$getter();
                while let Some(m) = queue.pop_front() {
                    if let Err(err) = handler.handle_read(m) {
                        warn!("{}.handle_read got error: {}", handler.name(), err);
                    }
                }
                while let Some(m) = handler.poll_read() {
                    queue.push_back(m);
                }
            }};
        }
        through!(get_srtp_handler);
        through!(get_interceptor_handler);
        through!(get_endpoint_handler);
        for msg in queue {
            if let RTCMessageInternal::Rtp(RTPMessage::TrackPacket(track_packet)) = msg.message {
                let message = match track_packet.packet {
                    Packet::Rtp(packet) => RTCMessage::RtpPacket(track_packet.track_id, packet),
                    Packet::Rtcp(packets) => RTCMessage::RtcpPacket(track_packet.track_id, packets),
                    _ => continue,
                };
                self.pipeline_context.media_read_outs.push_back(TaggedRTCMessage {
                    now: msg.now,
                    message,
                });
            }
        }
        let ctx = &self.pipeline_context;
        BypassRead::Taken {
            events: !ctx.srtp_handler_context.event_outs.is_empty()
                || !ctx.interceptor_handler_context.event_outs.is_empty()
                || !ctx.endpoint_handler_context.event_outs.is_empty(),
        }
    }

    /// The next received media message, without the pipeline sweep `poll_read` makes first
    /// (for draining what [`Self::read_rtp_bypass`] yielded).
    pub fn poll_media_bypass(&mut self) -> Option<TaggedRTCMessage> {
        self.pipeline_context.media_read_outs.pop_front()
    }
}
