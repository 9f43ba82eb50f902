//! A session's deliveries from shared logs, read back as messages.
//!
//! A relay publication is stored once, as an entry of its room's log
//! ([`LogEntryRow`]); each member's history holds runs that refer to it
//! ([`RunRow`]). Every backend reads a session's messages the same way: its own rows,
//! plus its runs cut to the page ([`clip`]) and filled from the log ([`expand`]),
//! merged by seq ([`merge`]). An entry the log does not have (dropped under
//! `--record drop`, or pruned) is a gap, as a dropped message is.

use wsgate_core::Direction;

use crate::model::{LogEntryRow, MessageRow, RunRow};

/// The parts of `runs` a page of at most `limit` messages after `after_seq` can
/// hold: each cut to seqs above `after_seq`, in seq order, `limit` messages in all.
pub(crate) fn clip(mut runs: Vec<RunRow>, after_seq: u64, limit: usize) -> Vec<RunRow> {
    runs.sort_by_key(|r| r.first_seq);
    let mut left = limit as u64;
    let mut out = Vec::new();
    for mut r in runs {
        if left == 0 {
            break;
        }
        let skip = (after_seq + 1).saturating_sub(r.first_seq).min(r.count);
        r.first_seq += skip;
        r.first_offset += skip;
        r.count = (r.count - skip).min(left);
        if r.count == 0 {
            continue;
        }
        left -= r.count;
        out.push(r);
    }
    out
}

/// The offsets of the log entries `run` needs, first and last (inclusive).
pub(crate) fn offsets(run: &RunRow) -> (u64, u64) {
    (run.first_offset, run.first_offset + run.count - 1)
}

/// `run`'s messages, from the log's `entries` (any order; those outside the run are
/// ignored).
pub(crate) fn expand(run: &RunRow, entries: impl IntoIterator<Item = LogEntryRow>) -> Vec<MessageRow> {
    let (first, last) = offsets(run);
    let mut rows: Vec<MessageRow> = entries
        .into_iter()
        .filter(|e| e.log == run.log && (first..=last).contains(&e.offset))
        .map(|e| MessageRow {
            session_id: run.session_id,
            seq: run.first_seq + (e.offset - run.first_offset),
            direction: Direction::GatewayToClient,
            opcode: e.opcode,
            fin: true,
            size: e.size,
            at: e.at,
            injected: false,
            marks: wsgate_core::Marks::NONE,
            truncated: e.truncated,
            payload: e.payload,
        })
        .collect();
    rows.sort_by_key(|m| m.seq);
    rows
}

/// A page: the session's own rows and its deliveries (each in seq order), merged by
/// seq, at most `limit`.
pub(crate) fn merge(own: Vec<MessageRow>, delivered: Vec<MessageRow>, limit: usize) -> Vec<MessageRow> {
    if delivered.is_empty() {
        return own;
    }
    let mut out = Vec::with_capacity(limit.min(own.len() + delivered.len()));
    let (mut a, mut b) = (own.into_iter().peekable(), delivered.into_iter().peekable());
    while out.len() < limit {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.seq <= y.seq => a.next(),
            (Some(_), Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, _) => b.next(),
        };
        match next {
            Some(m) => out.push(m),
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use wsgate_core::SessionId;

    use super::*;

    fn run(first_seq: u64, count: u64, first_offset: u64) -> RunRow {
        RunRow { session_id: SessionId::new(), first_seq, count, log: uuid::Uuid::nil(), first_offset }
    }

    fn entry(offset: u64) -> LogEntryRow {
        LogEntryRow {
            log: uuid::Uuid::nil(),
            offset,
            opcode: 1,
            size: 1,
            at: chrono::Utc::now(),
            truncated: false,
            payload: Bytes::from(offset.to_string()),
        }
    }

    #[test]
    fn a_page_starting_inside_a_run_gets_its_tail_and_no_more_than_the_limit() {
        let runs = clip(vec![run(10, 5, 100), run(2, 3, 7)], 3, 4);
        // Seqs 4 (offset 9) of the first run, then 10..=12 of the second.
        assert_eq!(
            runs.iter().map(|r| (r.first_seq, r.count, r.first_offset)).collect::<Vec<_>>(),
            [(4, 1, 9), (10, 3, 100)]
        );
        assert!(clip(vec![run(2, 3, 7)], 4, 10).is_empty());
    }

    #[test]
    fn missing_entries_are_gaps_and_pages_merge_by_seq() {
        let r = run(3, 3, 20);
        let delivered = expand(&r, [entry(22), entry(20), entry(99)]);
        assert_eq!(delivered.iter().map(|m| m.seq).collect::<Vec<_>>(), [3, 5]);
        let own = |seq| MessageRow { seq, ..delivered[0].clone() };
        let page = merge(vec![own(1), own(4), own(6)], delivered, 4);
        assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 3, 4, 5]);
    }
}
