//! Subscribe-side renegotiation: never two offers in flight.
//!
//! Tracks come and go at any time; each change needs a new offer on the subscriber's PC.
//! While an offer waits for its answer, further changes only mark the state dirty, and the
//! answer triggers one new offer covering all of them (coalescing).

/// What the caller should do after telling the state machine something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NextStep {
    /// Create and send an offer now.
    Offer,
    /// Nothing to do now (an offer is in flight, or nothing changed).
    Wait,
}

/// Renegotiation state of one subscribe PC.
#[derive(Debug, Default)]
pub(crate) struct Negotiation {
    in_flight: bool,
    dirty: bool,
}

impl Negotiation {
    /// The set of down tracks changed.
    pub fn changed(&mut self) -> NextStep {
        self.dirty = true;
        self.next()
    }

    /// An offer was created and handed to signaling.
    pub fn offer_sent(&mut self) {
        self.in_flight = true;
        self.dirty = false;
    }

    /// Creating an offer failed: allow a later retry.
    pub fn offer_failed(&mut self) {
        self.in_flight = false;
        self.dirty = true;
    }

    /// The client answered. `Err` if no offer was outstanding.
    pub fn answered(&mut self) -> Result<NextStep, NoOfferOutstanding> {
        if !self.in_flight {
            return Err(NoOfferOutstanding);
        }
        self.in_flight = false;
        Ok(self.next())
    }

    /// The client's answer could not be applied: our offer is still the outstanding one.
    pub fn answer_rejected(&mut self) {
        self.in_flight = true;
    }

    /// Whether an offer should be made now (changes pending, none in flight).
    pub fn should_offer(&self) -> bool {
        self.next() == NextStep::Offer
    }

    /// Whether an offer awaits its answer.
    #[cfg(test)]
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    fn next(&self) -> NextStep {
        if self.dirty && !self.in_flight {
            NextStep::Offer
        } else {
            NextStep::Wait
        }
    }
}

/// An answer arrived with no offer outstanding.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NoOfferOutstanding;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_change_offers_at_once() {
        let mut n = Negotiation::default();
        assert_eq!(n.changed(), NextStep::Offer);
    }

    #[test]
    fn changes_during_flight_are_coalesced_into_one_offer() {
        let mut n = Negotiation::default();
        assert_eq!(n.changed(), NextStep::Offer);
        n.offer_sent();
        assert_eq!(n.changed(), NextStep::Wait);
        assert_eq!(n.changed(), NextStep::Wait);
        assert_eq!(n.changed(), NextStep::Wait);
        assert_eq!(
            n.answered(),
            Ok(NextStep::Offer),
            "one offer for three changes"
        );
        n.offer_sent();
        assert_eq!(n.answered(), Ok(NextStep::Wait), "nothing new: stable");
    }

    #[test]
    fn answer_without_offer_is_rejected() {
        let mut n = Negotiation::default();
        assert_eq!(n.answered(), Err(NoOfferOutstanding));
        n.changed();
        n.offer_sent();
        assert!(n.answered().is_ok());
        assert_eq!(n.answered(), Err(NoOfferOutstanding), "answered twice");
    }

    #[test]
    fn rejected_answer_keeps_the_offer_outstanding() {
        let mut n = Negotiation::default();
        n.changed();
        n.offer_sent();
        assert!(n.answered().is_ok());
        n.answer_rejected();
        assert!(n.in_flight());
        assert!(
            !n.should_offer(),
            "no second offer while the first is unanswered"
        );
        assert!(n.answered().is_ok());
    }

    #[test]
    fn failed_offer_can_be_retried() {
        let mut n = Negotiation::default();
        n.changed();
        n.offer_failed();
        assert!(!n.in_flight());
        assert_eq!(n.changed(), NextStep::Offer);
    }
}
