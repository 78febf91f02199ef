//! SRTP bypass for a selective forwarding unit (patch carried by Sealed; see PATCHES.md).
//!
//! An SFU forwards RTP it has already parsed and rewritten. Sending it through
//! [`RTCPeerConnection::handle_write`] moves every packet through all eight pipeline
//! handlers and the interceptor chain, by value, for nothing but SRTP protection and the
//! selected pair's address. These two calls do just that: protect with the connection's
//! outbound SRTP context and address to the ICE-selected pair. What the pipeline would
//! have done besides (NACK responder buffer, sender reports, outbound stream stats) is
//! then the caller's to do.

use crate::peer_connection::RTCPeerConnection;
use bytes::BytesMut;
use shared::error::Result;
use shared::{TaggedBytesMut, TransportMessage};
use std::time::Instant;

impl RTCPeerConnection {
    /// Protects one marshalled RTP packet whose header is `header` with this connection's
    /// outbound SRTP context and addresses it to the selected ICE candidate pair.
    ///
    /// Returns `Ok(None)` while there is nowhere to send it yet: before DTLS has produced
    /// SRTP keys or before ICE has selected a pair. The packet bypasses the interceptor
    /// chain: no NACK history, sender report or outbound statistics account for it.
    pub fn protect_rtp_bypass(
        &mut self,
        now: Instant,
        packet: &[u8],
        header: &rtp::Header,
    ) -> Result<Option<TaggedBytesMut>> {
        let Some(context) = self
            .pipeline_context
            .srtp_handler_context
            .local_srtp_context
            .as_mut()
        else {
            return Ok(None);
        };
        if self
            .pipeline_context
            .ice_handler_context
            .ice_transport
            .agent
            .get_selected_candidate_pair()
            .is_none()
        {
            return Ok(None);
        }
        let protected = context.encrypt_rtp_with_header(packet, header)?;
        Ok(self.address_to_selected_pair(now, protected))
    }

    /// Protects one marshalled (compound) RTCP packet with this connection's outbound SRTCP
    /// context and addresses it to the selected ICE candidate pair; `Ok(None)` as for
    /// [`Self::protect_rtp_bypass`].
    pub fn protect_rtcp_bypass(
        &mut self,
        now: Instant,
        packet: &[u8],
    ) -> Result<Option<TaggedBytesMut>> {
        let Some(context) = self
            .pipeline_context
            .srtp_handler_context
            .local_srtp_context
            .as_mut()
        else {
            return Ok(None);
        };
        if self
            .pipeline_context
            .ice_handler_context
            .ice_transport
            .agent
            .get_selected_candidate_pair()
            .is_none()
        {
            return Ok(None);
        }
        let protected = context.encrypt_rtcp(packet)?;
        Ok(self.address_to_selected_pair(now, protected))
    }

    /// What the ICE handler does to every write: the selected pair's addresses and protocol,
    /// and the pair's sent-packet statistics.
    fn address_to_selected_pair(
        &mut self,
        now: Instant,
        message: BytesMut,
    ) -> Option<TaggedBytesMut> {
        self.pipeline_context.observe(now);
        let ice = &self.pipeline_context.ice_handler_context;
        let (local, remote) = ice.ice_transport.agent.get_selected_candidate_pair()?;
        let transport = shared::TransportContext {
            local_addr: local.base_addr(),
            peer_addr: remote.addr(),
            transport_protocol: local.network_type().to_protocol(),
            ecn: None,
        };
        if let Some(key) = &ice.selected_pair_key
            && let Some(pair) = self.pipeline_context.stats.ice_candidate_pairs.get_mut(key)
        {
            pair.on_packet_sent(message.len(), now);
        }
        Some(TransportMessage {
            now,
            transport,
            message,
        })
    }
}
