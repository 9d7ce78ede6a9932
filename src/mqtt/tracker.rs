//! Sans-I/O bookkeeping that ties rumqttc's packet ids back to our callers, so a
//! publish completes on *its* PUBACK and a subscribe on *its* SUBACK.
//!
//! rumqttc assigns packet ids itself and reports them only as `Outgoing::Publish(pkid)`
//! / `Outgoing::Subscribe(pkid)` events, in the order the requests were handed to it.
//! The connection task hands requests over only while connected, so the order of
//! first-seen packet ids is the order of our queue. Retransmissions after a resumed
//! session reuse their packet id and are recognised as such. When the broker lost the
//! session (`session_present = false`) rumqttc drops what it had not delivered; the
//! tracker then yields every unacknowledged publish, oldest first, for resubmission.

use std::collections::{BTreeMap, VecDeque};

/// What an `Outgoing::Publish(pkid)` event meant.
#[derive(Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// The oldest publish without a packet id now has this one.
    Assigned,
    /// A resend of a publish we already track (resumed session, or collision resolved).
    Retransmission,
    /// A packet id we cannot attribute; logged by the caller.
    Unexpected,
}

#[derive(Debug)]
struct Entry<P, W> {
    seq: u64,
    publish: P,
    waiter: W,
}

/// Publishes handed to rumqttc and not yet acknowledged. `P` is the publish (kept for
/// resubmission), `W` whatever completes the caller (a oneshot sender).
#[derive(Debug)]
pub struct PublishTracker<P, W> {
    next_seq: u64,
    unassigned: VecDeque<Entry<P, W>>,
    inflight: BTreeMap<u16, Entry<P, W>>,
}

impl<P: Clone, W> PublishTracker<P, W> {
    /// An empty tracker.
    pub fn new() -> Self {
        PublishTracker {
            next_seq: 0,
            unassigned: VecDeque::new(),
            inflight: BTreeMap::new(),
        }
    }

    /// Publishes not yet acknowledged (the in-flight window the task bounds).
    pub fn len(&self) -> usize {
        self.unassigned.len() + self.inflight.len()
    }

    /// Records a publish just handed to rumqttc.
    pub fn submitted(&mut self, publish: P, waiter: W) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unassigned.push_back(Entry {
            seq,
            publish,
            waiter,
        });
    }

    /// rumqttc wrote a PUBLISH with this packet id.
    pub fn outgoing(&mut self, pkid: u16) -> Outgoing {
        if self.inflight.contains_key(&pkid) {
            return Outgoing::Retransmission;
        }
        match self.unassigned.pop_front() {
            Some(entry) => {
                self.inflight.insert(pkid, entry);
                Outgoing::Assigned
            }
            None => Outgoing::Unexpected,
        }
    }

    /// A PUBACK arrived: returns the caller to complete, if the id is ours.
    pub fn acked(&mut self, pkid: u16) -> Option<W> {
        self.inflight.remove(&pkid).map(|e| e.waiter)
    }

    /// The broker did not resume our session, so rumqttc dropped everything it had not
    /// delivered. Returns every unacknowledged publish, oldest first; the caller hands
    /// them to rumqttc again in that order (they get fresh packet ids).
    pub fn session_lost(&mut self) -> Vec<P> {
        let mut all: Vec<Entry<P, W>> = std::mem::take(&mut self.inflight).into_values().collect();
        all.extend(self.unassigned.drain(..));
        all.sort_by_key(|e| e.seq);
        let publishes = all.iter().map(|e| e.publish.clone()).collect();
        self.unassigned = all.into();
        publishes
    }

    /// Every waiter, for failing them at shutdown.
    pub fn drain(&mut self) -> Vec<W> {
        let mut all: Vec<Entry<P, W>> = std::mem::take(&mut self.inflight).into_values().collect();
        all.extend(self.unassigned.drain(..));
        all.sort_by_key(|e| e.seq);
        all.into_iter().map(|e| e.waiter).collect()
    }
}

impl<P: Clone, W> Default for PublishTracker<P, W> {
    fn default() -> Self {
        Self::new()
    }
}

/// SUBSCRIBE packets sent and not yet acknowledged, each with its purpose `S`.
#[derive(Debug)]
pub struct SubscribeTracker<S> {
    unassigned: VecDeque<S>,
    inflight: BTreeMap<u16, S>,
}

impl<S> SubscribeTracker<S> {
    /// An empty tracker.
    pub fn new() -> Self {
        SubscribeTracker {
            unassigned: VecDeque::new(),
            inflight: BTreeMap::new(),
        }
    }

    /// Records a SUBSCRIBE just handed to rumqttc.
    pub fn submitted(&mut self, purpose: S) {
        self.unassigned.push_back(purpose);
    }

    /// rumqttc wrote a SUBSCRIBE with this packet id. False if it cannot be attributed.
    pub fn outgoing(&mut self, pkid: u16) -> bool {
        match self.unassigned.pop_front() {
            Some(purpose) => {
                self.inflight.insert(pkid, purpose);
                true
            }
            None => false,
        }
    }

    /// A SUBACK arrived.
    pub fn acked(&mut self, pkid: u16) -> Option<S> {
        self.inflight.remove(&pkid)
    }

    /// The connection dropped: rumqttc forgets unacknowledged SUBSCRIBEs (we purge them
    /// and subscribe afresh on the next ConnAck). Returns their purposes.
    pub fn connection_lost(&mut self) -> Vec<S> {
        let mut all: Vec<S> = std::mem::take(&mut self.inflight).into_values().collect();
        all.extend(self.unassigned.drain(..));
        all
    }
}

impl<S> Default for SubscribeTracker<S> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type T = PublishTracker<&'static str, u32>;

    #[test]
    fn acks_complete_the_right_caller() {
        let mut t = T::new();
        t.submitted("a", 1);
        t.submitted("b", 2);
        assert_eq!(t.outgoing(7), Outgoing::Assigned);
        assert_eq!(t.outgoing(8), Outgoing::Assigned);
        assert_eq!(t.len(), 2);
        assert_eq!(t.acked(8), Some(2));
        assert_eq!(t.acked(8), None);
        assert_eq!(t.acked(7), Some(1));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn unknown_ids_are_not_attributed() {
        let mut t = T::new();
        assert_eq!(t.outgoing(3), Outgoing::Unexpected);
        assert_eq!(t.acked(3), None);
    }

    #[test]
    fn resumed_session_retransmits_keep_their_caller() {
        let mut t = T::new();
        t.submitted("a", 1);
        t.submitted("b", 2);
        t.submitted("c", 3);
        assert_eq!(t.outgoing(1), Outgoing::Assigned);
        assert_eq!(t.outgoing(2), Outgoing::Assigned);
        // connection lost, session resumed: rumqttc resends 1 and 2, then sends "c".
        assert_eq!(t.outgoing(1), Outgoing::Retransmission);
        assert_eq!(t.outgoing(2), Outgoing::Retransmission);
        assert_eq!(t.outgoing(3), Outgoing::Assigned);
        assert_eq!(t.acked(1), Some(1));
        assert_eq!(t.acked(2), Some(2));
        assert_eq!(t.acked(3), Some(3));
    }

    #[test]
    fn lost_session_resubmits_everything_in_order() {
        let mut t = T::new();
        t.submitted("a", 1);
        t.submitted("b", 2);
        t.submitted("c", 3);
        t.submitted("d", 4);
        t.outgoing(9); // a
        t.outgoing(4); // b: lower pkid than a, order must still follow submission
        t.outgoing(5); // c
        assert_eq!(t.acked(5), Some(3));
        assert_eq!(t.session_lost(), vec!["a", "b", "d"]);
        assert_eq!(t.len(), 3);
        // fresh ids in resubmission order
        assert_eq!(t.outgoing(1), Outgoing::Assigned);
        assert_eq!(t.outgoing(2), Outgoing::Assigned);
        assert_eq!(t.outgoing(3), Outgoing::Assigned);
        assert_eq!(t.acked(1), Some(1));
        assert_eq!(t.acked(2), Some(2));
        assert_eq!(t.acked(3), Some(4));
    }

    #[test]
    fn drain_returns_all_waiters_oldest_first() {
        let mut t = T::new();
        t.submitted("a", 1);
        t.submitted("b", 2);
        t.outgoing(5);
        assert_eq!(t.drain(), vec![1, 2]);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn subscribe_tracker_pairs_ids_in_order() {
        let mut s = SubscribeTracker::new();
        s.submitted("x");
        s.submitted("y");
        assert!(s.outgoing(4));
        assert!(s.outgoing(5));
        assert!(!s.outgoing(6));
        assert_eq!(s.acked(5), Some("y"));
        s.submitted("z");
        let mut lost = s.connection_lost();
        lost.sort();
        assert_eq!(lost, vec!["x", "z"]);
        assert_eq!(s.acked(4), None);
    }
}
