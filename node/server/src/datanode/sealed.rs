//! Sealed segments waiting to be completed by a flush.
//!
//! The coordinator seals segments at a flush timestamp; the data node completes them
//! with the flush that holds every row and every delete below it. Both logs of the
//! channel count: a seal is ready once each of them, the insert log and the delete
//! log, has either been consumed at or past the flush timestamp or been found
//! consumed to its end after the seal arrived (a quiet log may never see a later
//! record). A flush that completed segments on the insert log alone would return
//! `Flush(wait)` with deletes issued before it still unread.
//!
//! "After the seal arrived" is what a [`Mark`] records: the tick takes one before it
//! reads a log's end, and only the seals received before the mark count as caught
//! up when the end turns out to be consumed. A seal received while the end was being
//! read waits for the next check, since its records may lie past the end that was read.

use crate::msgstream::Stream;

/// Seals received for one channel, in order, and how far each log was read.
#[derive(Debug, Default)]
pub(super) struct Sealed {
    waiting: Vec<Seal>,
    /// Seals received so far (numbers them).
    received: u64,
    insert: LogProgress,
    delete: LogProgress,
}

/// How far one log of the channel has been read, as the seals see it.
#[derive(Debug, Default, Clone, Copy)]
struct LogProgress {
    /// The largest record timestamp consumed from the log since this node took the
    /// channel.
    max_ts: u64,
    /// Seals numbered up to this one were received before a check found the log
    /// consumed to its end.
    caught_up_through: u64,
}

impl LogProgress {
    fn passed(&self, seal: &Seal) -> bool {
        seal.number <= self.caught_up_through || self.max_ts >= seal.flush_ts
    }
}

#[derive(Debug)]
struct Seal {
    number: u64,
    segments: Vec<i64>,
    flush_ts: u64,
}

/// The seals received before a check of a log's end started.
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

    fn log(&mut self, stream: Stream) -> &mut LogProgress {
        match stream {
            Stream::Insert => &mut self.insert,
            Stream::Delete => &mut self.delete,
        }
    }

    /// A record of `stream` with timestamps up to `ts` was consumed.
    pub(super) fn consumed(&mut self, stream: Stream, ts: u64) {
        let log = self.log(stream);
        log.max_ts = log.max_ts.max(ts);
    }

    /// Take before reading a log's end; pass to [`Sealed::caught_up`] if it was
    /// consumed.
    pub(super) fn mark(&self) -> Mark {
        Mark(self.received)
    }

    /// `stream` was consumed up to the log's end read after `mark` was taken.
    pub(super) fn caught_up(&mut self, stream: Stream, mark: Mark) {
        let log = self.log(stream);
        log.caught_up_through = log.caught_up_through.max(mark.0);
    }

    fn ready(&self, seal: &Seal) -> bool {
        self.insert.passed(seal) && self.delete.passed(seal)
    }

    /// Whether a flush now would complete a segment.
    pub(super) fn any_ready(&self) -> bool {
        self.waiting.iter().any(|s| self.ready(s))
    }

    /// What a flush taking the buffer now completes: the segments of the ready
    /// seals, and the largest of their flush timestamps (0 if none), which both
    /// logs are consumed through. The others keep waiting.
    pub(super) fn take_ready(&mut self) -> (Vec<i64>, u64) {
        let (ready, waiting): (Vec<Seal>, Vec<Seal>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|s| self.ready(s));
        self.waiting = waiting;
        let through = ready.iter().map(|s| s.flush_ts).max().unwrap_or(0);
        (
            ready.into_iter().flat_map(|s| s.segments).collect(),
            through,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both logs consumed up to `ts`.
    fn consumed(sealed: &mut Sealed, ts: u64) {
        sealed.consumed(Stream::Insert, ts);
        sealed.consumed(Stream::Delete, ts);
    }

    fn caught_up(sealed: &mut Sealed, mark: Mark) {
        sealed.caught_up(Stream::Insert, mark);
        sealed.caught_up(Stream::Delete, mark);
    }

    #[test]
    fn a_seal_is_ready_once_both_logs_are_consumed_at_its_timestamp() {
        let mut sealed = Sealed::default();
        sealed.push(vec![1, 2], 100);
        sealed.push(vec![3], 200);
        consumed(&mut sealed, 99);
        assert!(!sealed.any_ready());
        assert_eq!(sealed.take_ready(), (vec![], 0));
        consumed(&mut sealed, 100);
        assert!(sealed.any_ready());
        consumed(&mut sealed, 150);
        assert_eq!(sealed.take_ready(), (vec![1, 2], 100));
        assert!(!sealed.is_empty());
        consumed(&mut sealed, 200);
        assert_eq!(sealed.take_ready(), (vec![3], 200));
        assert!(sealed.is_empty());
    }

    #[test]
    fn the_insert_log_alone_does_not_complete_a_seal() {
        let mut sealed = Sealed::default();
        sealed.push(vec![1], 100);
        // Every insert read, the deletes before the flush not yet.
        sealed.consumed(Stream::Insert, 500);
        let mark = sealed.mark();
        sealed.caught_up(Stream::Insert, mark);
        sealed.consumed(Stream::Delete, 99);
        assert!(!sealed.any_ready());
        assert_eq!(sealed.take_ready(), (vec![], 0));
        // A delete at the flush timestamp, or the delete log's end, completes it.
        sealed.consumed(Stream::Delete, 100);
        assert_eq!(sealed.take_ready(), (vec![1], 100));
        sealed.push(vec![2], 600);
        let mark = sealed.mark();
        sealed.caught_up(Stream::Delete, mark);
        assert!(
            !sealed.any_ready(),
            "the insert log is not caught up for it"
        );
        sealed.caught_up(Stream::Insert, mark);
        assert_eq!(sealed.take_ready(), (vec![2], 600));
        // A seal without segments flushes the channel through its timestamp.
        sealed.push(vec![], 700);
        sealed.consumed(Stream::Insert, 700);
        sealed.consumed(Stream::Delete, 650);
        assert!(!sealed.any_ready());
        sealed.consumed(Stream::Delete, 710);
        assert_eq!(sealed.take_ready(), (vec![], 700));
    }

    #[test]
    fn only_seals_received_before_the_mark_count_as_caught_up() {
        let mut sealed = Sealed::default();
        sealed.push(vec![1], 100);
        let mark = sealed.mark();
        // Received while the log's end was being read: its rows may lie past it.
        sealed.push(vec![2], 200);
        caught_up(&mut sealed, mark);
        assert!(sealed.any_ready());
        assert_eq!(sealed.take_ready(), (vec![1], 100));
        assert!(!sealed.any_ready());
        // The next check covers it.
        let mark = sealed.mark();
        caught_up(&mut sealed, mark);
        assert_eq!(sealed.take_ready(), (vec![2], 200));
    }

    #[test]
    fn an_older_mark_does_not_undo_a_newer_one() {
        let mut sealed = Sealed::default();
        sealed.push(vec![1], 100);
        let old = sealed.mark();
        sealed.push(vec![2], 200);
        let new = sealed.mark();
        caught_up(&mut sealed, new);
        caught_up(&mut sealed, old);
        assert_eq!(sealed.take_ready(), (vec![1, 2], 200));
    }
}
