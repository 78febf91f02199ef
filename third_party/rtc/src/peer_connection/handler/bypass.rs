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
use shared::error::Result;
use shared::{TaggedBytesMut, TransportContext, TransportMessage};
use std::time::Instant;

impl RTCPeerConnection {
    /// Protects one marshalled RTP packet whose header is `header` with this connection's
    /// outbound SRTP context and addresses it to the selected ICE candidate pair.
    ///
    /// Returns `Ok(None)` while there is nowhere to send it yet: before DTLS has produced
    /// SRTP keys or before ICE has selected a pair. The packet bypasses the interceptor
    /// chain: no NACK history, sender report or outbound or candidate-pair statistics
    /// account for it.
    pub fn protect_rtp_bypass(
        &mut self,
        now: Instant,
        packet: &[u8],
        header: &rtp::Header,
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
        let message = context.encrypt_rtp_with_header(packet, header)?;
        self.pipeline_context.observe(now);
        Ok(Some(TransportMessage {
            now,
            transport,
            message,
        }))
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
}
