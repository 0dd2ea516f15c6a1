//! Sealed segments waiting to be completed by a flush.
//!
//! The coordinator seals segments at a flush timestamp; the data node completes them
//! with the flush that holds every row below it. A segment is ready once the channel
//! has consumed a row at or past that timestamp, or once the channel was found caught
//! up with the log after the seal arrived: a quiet channel may never see a later row.
//!
//! "After the seal arrived" is what a [`Mark`] records: the tick takes one before it
//! reads the log's end, and only the seals received before the mark count as caught
//! up when the end turns out to be consumed. A seal received while the end was being
//! read waits for the next check, since its rows may lie past the end that was read.

/// Seals received for one channel, in order.
#[derive(Debug, Default)]
pub(super) struct Sealed {
    waiting: Vec<Seal>,
    /// Seals received so far (numbers them).
    received: u64,
    /// Seals numbered up to this one were received before a check found the channel
    /// consumed to the end of its log.
    caught_up_through: u64,
}

#[derive(Debug)]
struct Seal {
    number: u64,
    segments: Vec<i64>,
    flush_ts: u64,
}

/// The seals received before a check of the log's end started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark(u64);

impl Sealed {
    pub(super) fn push(&mut self, segments: Vec<i64>, flush_ts: u64) {
        self.received += 1;
        self.waiting.push(Seal {
            number: self.received,
            segments,
            flush_ts,
        });
    }

    pub(super) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Take before reading the log's end; pass to [`Sealed::caught_up`] if it was
    /// consumed.
    pub(super) fn mark(&self) -> Mark {
        Mark(self.received)
    }

    /// The channel was consumed up to the log's end read after `mark` was taken.
    pub(super) fn caught_up(&mut self, mark: Mark) {
        self.caught_up_through = self.caught_up_through.max(mark.0);
    }

    fn ready(&self, seal: &Seal, max_ts: u64) -> bool {
        seal.number <= self.caught_up_through || max_ts >= seal.flush_ts
    }

    /// Whether a flush now would complete a segment (`max_ts`: the largest row
    /// timestamp consumed).
    pub(super) fn any_ready(&self, max_ts: u64) -> bool {
        self.waiting.iter().any(|s| self.ready(s, max_ts))
    }

    /// The segments a flush taking the buffer now completes; the others keep waiting.
    pub(super) fn take_ready(&mut self, max_ts: u64) -> Vec<i64> {
        let (ready, waiting): (Vec<Seal>, Vec<Seal>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|s| self.ready(s, max_ts));
        self.waiting = waiting;
        ready.into_iter().flat_map(|s| s.segments).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_is_ready_once_a_row_at_its_timestamp_is_consumed() {
        let mut sealed = Sealed::default();
        sealed.push(vec![1, 2], 100);
        sealed.push(vec![3], 200);
        assert!(!sealed.any_ready(99));
        assert!(sealed.take_ready(99).is_empty());
        assert!(sealed.any_ready(100));
        assert_eq!(sealed.take_ready(150), vec![1, 2]);
        assert!(!sealed.is_empty());
        assert_eq!(sealed.take_ready(200), vec![3]);
        assert!(sealed.is_empty());
    }

    #[test]
    fn only_seals_received_before_the_mark_count_as_caught_up() {
        let mut sealed = Sealed::default();
        sealed.push(vec![1], 100);
        let mark = sealed.mark();
        // Received while the log's end was being read: its rows may lie past it.
        sealed.push(vec![2], 200);
        sealed.caught_up(mark);
        assert!(sealed.any_ready(0));
        assert_eq!(sealed.take_ready(0), vec![1]);
        assert!(!sealed.any_ready(0));
        // The next check covers it.
        let mark = sealed.mark();
        sealed.caught_up(mark);
        assert_eq!(sealed.take_ready(0), vec![2]);
    }

    #[test]
    fn an_older_mark_does_not_undo_a_newer_one() {
        let mut sealed = Sealed::default();
        sealed.push(vec![1], 100);
        let old = sealed.mark();
        sealed.push(vec![2], 200);
        let new = sealed.mark();
        sealed.caught_up(new);
        sealed.caught_up(old);
        assert_eq!(sealed.take_ready(0), vec![1, 2]);
    }
}
