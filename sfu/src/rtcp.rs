//! RTCP: letting subscribers' keyframe requests reach us, and pacing the ones we send.
//!
//! webrtc-rs 0.21 stops inbound RTCP at the end of its interceptor chain: the built-in
//! interceptors consume receiver reports, NACKs and transport-wide feedback, and nothing
//! reaches the application unless an interceptor marks it. [`KeyframeRequestTap`] sits last
//! in the chain and marks the keyframe requests (PLI, FIR) and NACKs for delivery (the
//! single-port engine answers NACKs itself: its forwarded packets bypass the stack's NACK
//! history); everything else it swallows, as the stack would have.
//!
//! [`KeyframeLimiter`] rate-limits the PLIs the SFU sends to one publisher's track, however
//! many subscribers ask.

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Whether an RTCP packet asks for packets again (a generic NACK, RFC 4585 §6.2.1).
pub(crate) fn is_nack(packet: &dyn rtc::rtcp::Packet) -> bool {
    packet.as_any().is::<TransportLayerNack>()
}

/// Whether an RTCP packet asks for a keyframe.
pub(crate) fn is_keyframe_request(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

/// Interceptor that delivers inbound PLI/FIR to the application (see the module docs).
#[derive(Default)]
pub(crate) struct KeyframeRequestTap {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Error> {
        if let Packet::Rtcp(packets) = &mut msg.message.packet {
            packets.retain(|p| is_keyframe_request(p.as_ref()) || is_nack(p.as_ref()));
            if packets.is_empty() {
                // Already acted on by the interceptors before us; not the application's.
                return Ok(());
            }
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeRequestTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// At most one keyframe request per `min_interval`, lock-free (called from many subscribers'
/// tasks at once).
#[derive(Debug)]
pub(crate) struct KeyframeLimiter {
    epoch: Instant,
    min_interval_us: u64,
    /// Microseconds since `epoch` of the last request let through, plus one (0 = never).
    last_us: AtomicU64,
}

impl KeyframeLimiter {
    /// A limiter letting one request through per `min_interval`.
    pub fn new(min_interval: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            min_interval_us: u64::try_from(min_interval.as_micros()).unwrap_or(u64::MAX),
            last_us: AtomicU64::new(0),
        }
    }

    /// The least time between two requests let through.
    pub fn interval(&self) -> Duration {
        Duration::from_micros(self.min_interval_us)
    }

    /// Whether a request at `now` may go out; if so, records it.
    pub fn allow(&self, now: Instant) -> bool {
        let now_us = u64::try_from(now.saturating_duration_since(self.epoch).as_micros())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let mut last = self.last_us.load(Ordering::Relaxed);
        loop {
            if last != 0 && now_us.saturating_sub(last) < self.min_interval_us {
                return false;
            }
            match self.last_us.compare_exchange_weak(
                last,
                now_us,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(current) => last = current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::AttributedPacket;
    use rtc::rtcp::receiver_report::ReceiverReport;

    #[test]
    fn limiter_lets_one_request_per_interval() {
        let l = KeyframeLimiter::new(Duration::from_millis(500));
        let t0 = Instant::now();
        assert!(l.allow(t0), "first request goes out");
        assert!(!l.allow(t0 + Duration::from_millis(10)));
        assert!(!l.allow(t0 + Duration::from_millis(499)));
        assert!(l.allow(t0 + Duration::from_millis(500)));
        assert!(!l.allow(t0 + Duration::from_millis(700)));
        assert!(l.allow(t0 + Duration::from_millis(1200)));
    }

    #[test]
    fn limiter_is_shared_between_threads() {
        let l = std::sync::Arc::new(KeyframeLimiter::new(Duration::from_secs(60)));
        let now = Instant::now();
        let allowed: usize = (0..8)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || (0..100).filter(|_| l.allow(now)).count())
            })
            .map(|h| h.join().unwrap_or(0))
            .sum();
        assert_eq!(allowed, 1, "one request in the interval, whoever asks");
    }

    fn tagged(packets: Vec<Box<dyn rtc::rtcp::Packet>>) -> TaggedPacket {
        TaggedPacket {
            now: Instant::now(),
            transport: Default::default(),
            message: AttributedPacket::new(Packet::Rtcp(packets)),
        }
    }

    #[test]
    fn only_keyframe_requests_and_nacks_are_delivered() {
        let mut tap = KeyframeRequestTap::default();
        let pli: Box<dyn rtc::rtcp::Packet> = Box::new(PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: 2,
        });
        let rr: Box<dyn rtc::rtcp::Packet> = Box::new(ReceiverReport::default());
        tap.handle_read(tagged(vec![rr.clone(), pli]))
            .expect("read");
        let out = tap.poll_read().expect("the PLI is passed on");
        match &out.message.packet {
            Packet::Rtcp(p) => {
                assert_eq!(p.len(), 1);
                assert!(is_keyframe_request(p[0].as_ref()));
            }
            _ => panic!("expected RTCP"),
        }
        assert!(out.message.has(&Attribute::DeliverToApplication));

        let nack: Box<dyn rtc::rtcp::Packet> = Box::new(TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc: 2,
            nacks: vec![],
        });
        tap.handle_read(tagged(vec![nack, rr.clone()]))
            .expect("read");
        let out = tap.poll_read().expect("the NACK is passed on");
        match &out.message.packet {
            Packet::Rtcp(p) => {
                assert_eq!(p.len(), 1);
                assert!(is_nack(p[0].as_ref()));
            }
            _ => panic!("expected RTCP"),
        }

        tap.handle_read(tagged(vec![rr])).expect("read");
        assert!(
            tap.poll_read().is_none(),
            "receiver reports stay in the stack"
        );
    }
}
