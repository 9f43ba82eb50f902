//! One session's frames from one batch, stored as one row: a compact index of each
//! frame's facts and the payloads back to back (`sqlite/0005_message_segments.sql`,
//! `postgres/0004_message_segments.sql`).
//!
//! A row per frame cost SQLite about as much as the proxy spends forwarding the
//! frame (a B-tree insert of eleven columns each); a segment costs one insert per
//! session per batch, and per frame a few bytes of index and a copy of its payload —
//! what pcap and Kafka do: a batch of frames is one sequential write.
//!
//! Index, per frame: the seq's distance from the previous one (varint; gaps are
//! dropped frames), a flags byte (direction in bits 0–1, fin, injected, truncated,
//! marked), then, only when marked, a byte of `wsgate_core::Marks` (what a rule or fault
//! did to it: rare, so unmarked frames pay nothing),
//! the opcode, the full size and the stored length (varints), and the time's
//! distance from the previous frame's in microseconds (zigzag varint; the first is
//! from 0). Decoding refuses anything that does not add up (a damaged row), rather
//! than guessing.

use bytes::Bytes;
use integer_encoding::VarInt;
use wsgate_core::{Direction, SessionId};

use crate::model::{MessageRow, from_micros, to_micros};

/// A session's frames from one batch, encoded.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Segment {
    pub first_seq: u64,
    pub last_seq: u64,
    pub frames: u64,
    /// What the restart rule needs without decoding: frames and bytes each way, and
    /// the last frame's time.
    pub msgs_in: u64,
    pub msgs_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub last_at: i64,
    pub index: Vec<u8>,
    pub payloads: Vec<u8>,
}

/// How a direction is stored; codes are never renumbered (the same as the
/// `messages` table's, `sqlite/0002_message_spans.sql`).
pub fn direction_code(d: Direction) -> u8 {
    match d {
        Direction::ClientToUpstream => 0,
        Direction::UpstreamToClient => 1,
        Direction::ClientToGateway => 2,
        Direction::GatewayToClient => 3,
    }
}

pub fn direction_from_code(code: u8) -> Option<Direction> {
    Direction::ALL.into_iter().find(|d| direction_code(*d) == code)
}

const FIN: u8 = 1 << 2;
const INJECTED: u8 = 1 << 3;
const TRUNCATED: u8 = 1 << 4;
/// A marks byte follows the opcode. Segments written before marks never set it.
const MARKED: u8 = 1 << 5;

/// A frame's index entry, usually: one byte each for the seq step, flags, opcode,
/// and lengths under 128, two or three for the time step.
const INDEX_BYTES_TYPICAL: usize = 8;

fn put<V: VarInt>(out: &mut Vec<u8>, v: V) {
    let mut buf = [0u8; 10];
    let n = v.encode_var(&mut buf);
    out.extend_from_slice(&buf[..n]);
}

/// A batch's `messages` as segments to encode: each session's frames together (the
/// sessions in order of first appearance), each group in rising seq order.
///
/// Grouped, not sorted: sorting a batch of 16 384 by session cost SQLite's writer a
/// twentieth of a core at 8 connections × 16 in flight. A session's frames come in
/// bursts (one read's worth), so the map is asked once per burst, not per frame.
pub fn by_session(messages: &[MessageRow]) -> Vec<Vec<&MessageRow>> {
    let mut groups: Vec<Vec<&MessageRow>> = Vec::new();
    // Fx, not SipHash: the keys are this process's own random ids, and hashing them
    // was a twentieth of the writer's time when sessions interleave frame by frame.
    let mut index: rustc_hash::FxHashMap<SessionId, usize> = rustc_hash::FxHashMap::default();
    let mut last: Option<(SessionId, usize)> = None;
    for m in messages {
        let g = match last {
            Some((id, g)) if id == m.session_id => g,
            _ => *index.entry(m.session_id).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            }),
        };
        groups[g].push(m);
        last = Some((m.session_id, g));
    }
    for run in &mut groups {
        // A segment needs rising seqs; the recorder delivers them so, and a batch
        // that did not (a bug elsewhere) is put in order rather than refused.
        if !run.is_sorted_by(|a, b| a.seq < b.seq) {
            run.sort_by_key(|m| m.seq);
            run.dedup_by_key(|m| m.seq);
        }
    }
    groups
}

/// Encodes `rows` (one session's, in seq order, at least one).
pub fn encode<'a, I>(rows: I) -> Segment
where
    I: IntoIterator<Item = &'a MessageRow>,
    I::IntoIter: Clone,
{
    let mut payloads = Vec::new();
    let mut s = encode_into(rows, &mut payloads);
    s.payloads = payloads;
    s
}

/// Encodes `rows` as [`encode`] does, but appends their payloads to `payloads`
/// (a whole batch's, written to a payload file at once) and leaves the segment's
/// own empty.
pub fn encode_into<'a, I>(rows: I, payloads: &mut Vec<u8>) -> Segment
where
    I: IntoIterator<Item = &'a MessageRow>,
    I::IntoIter: Clone,
{
    let rows = rows.into_iter();
    // Sized first (a pass over references), so the copies below never reallocate.
    let (frames, bytes) = rows.clone().fold((0, 0), |(n, b), m| (n + 1, b + m.payload.len()));
    payloads.reserve(bytes);
    let mut s = Segment { index: Vec::with_capacity(frames * INDEX_BYTES_TYPICAL), ..Segment::default() };
    let (mut prev_seq, mut prev_at) = (None::<u64>, 0i64);
    for m in rows {
        let at = to_micros(m.at);
        if prev_seq.is_none() {
            s.first_seq = m.seq;
        }
        put(&mut s.index, m.seq - prev_seq.unwrap_or(m.seq));
        let mut flags = direction_code(m.direction);
        flags |= if m.fin { FIN } else { 0 } | if m.injected { INJECTED } else { 0 };
        flags |= if m.truncated { TRUNCATED } else { 0 };
        if m.marks.is_empty() {
            s.index.extend_from_slice(&[flags, m.opcode]);
        } else {
            s.index.extend_from_slice(&[flags | MARKED, m.opcode, m.marks.bits()]);
        }
        put(&mut s.index, m.size);
        put(&mut s.index, m.payload.len() as u64);
        // Wrapping, here and in `decode`: any two times round-trip exactly, even
        // ones further apart than an i64 holds.
        put(&mut s.index, at.wrapping_sub(prev_at));
        payloads.extend_from_slice(&m.payload);
        // Saturating: a size read from a damaged row may be anything.
        if m.direction.is_inbound() {
            s.msgs_in += 1;
            s.bytes_in = s.bytes_in.saturating_add(m.size);
        } else {
            s.msgs_out += 1;
            s.bytes_out = s.bytes_out.saturating_add(m.size);
        }
        (prev_seq, prev_at) = (Some(m.seq), at);
        s.last_seq = m.seq;
        s.last_at = at;
        s.frames += 1;
    }
    s
}

/// The varint at `*i`, moving past it.
fn var<V: VarInt>(index: &[u8], i: &mut usize) -> Option<V> {
    let (v, n) = V::decode_var(index.get(*i..)?)?;
    *i += n;
    Some(v)
}

/// Retention by count cutting a stored segment: its frames without the first `drop`,
/// encoded again. `frames` is the row's own count; an index that disagrees with it,
/// or a cut that would leave nothing, is a damaged row (the caller drops a segment
/// whole when all of it goes). `id` names the row in the error.
pub fn cut(
    id: i64,
    first_seq: u64,
    index: &[u8],
    payloads: Bytes,
    frames: u64,
    drop: u64,
) -> Result<Segment, crate::StoreError> {
    // The rows' session does not matter here: they are encoded again at once.
    let all = decode(SessionId::default(), first_seq, index, payloads, 0, usize::MAX)?;
    let rest = usize::try_from(drop).ok().and_then(|d| all.get(d..)).filter(|rest| !rest.is_empty());
    match rest {
        Some(rest) if all.len() as u64 == frames => Ok(encode(rest)),
        _ => Err(crate::StoreError::Corrupt(format!(
            "message segment {id} counts {frames} frames, its index {}; cutting {drop}",
            all.len()
        ))),
    }
}

/// Why a stored segment could not be read.
#[derive(Debug, thiserror::Error)]
#[error("damaged message segment (first seq {first_seq}): {why}")]
pub struct Damaged {
    pub first_seq: u64,
    pub why: &'static str,
}

/// The frames of a segment whose first is `first_seq`, those with a seq above
/// `after` only, at most `limit`.
pub fn decode(
    session_id: SessionId,
    first_seq: u64,
    index: &[u8],
    payloads: Bytes,
    after: u64,
    limit: usize,
) -> Result<Vec<MessageRow>, Damaged> {
    let damaged = |why| Damaged { first_seq, why };
    let mut out = Vec::new();
    let (mut i, mut p) = (0usize, 0usize);
    let (mut seq, mut at) = (first_seq, 0i64);
    let mut first = true;
    while i < index.len() && out.len() < limit {
        let step: u64 = var(index, &mut i).ok_or_else(|| damaged("seq"))?;
        if first {
            if step != 0 {
                return Err(damaged("first seq step"));
            }
        } else if step == 0 {
            return Err(damaged("seq does not increase"));
        }
        seq = seq.checked_add(step).ok_or_else(|| damaged("seq overflows"))?;
        let [flags, opcode] = index.get(i..i + 2).and_then(|b| b.try_into().ok()).ok_or_else(|| damaged("flags"))?;
        i += 2;
        let mut marks = wsgate_core::Marks::NONE;
        if flags & MARKED != 0 {
            let bits = *index.get(i).ok_or_else(|| damaged("marks"))?;
            marks = wsgate_core::Marks::from_bits(bits);
            i += 1;
        }
        let size: u64 = var(index, &mut i).ok_or_else(|| damaged("size"))?;
        let len: u64 = var(index, &mut i).ok_or_else(|| damaged("stored length"))?;
        let len = usize::try_from(len).map_err(|_| damaged("stored length"))?;
        let dt: i64 = var(index, &mut i).ok_or_else(|| damaged("time"))?;
        at = at.wrapping_add(dt);
        let end = p.checked_add(len).filter(|e| *e <= payloads.len()).ok_or_else(|| damaged("payload length"))?;
        let direction = direction_from_code(flags & 0b11).ok_or_else(|| damaged("direction"))?;
        if seq > after {
            out.push(MessageRow {
                session_id,
                seq,
                direction,
                opcode,
                fin: flags & FIN != 0,
                size,
                at: from_micros(at),
                injected: flags & INJECTED != 0,
                marks,
                truncated: flags & TRUNCATED != 0,
                payload: payloads.slice(p..end),
            });
        }
        p = end;
        first = false;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u64, dir: Direction, payload: &'static [u8], at_us: i64) -> MessageRow {
        MessageRow {
            session_id: SessionId::new(),
            seq,
            direction: dir,
            opcode: if payload.is_empty() { 8 } else { 2 },
            fin: seq % 2 == 1,
            size: payload.len() as u64 + if seq == 5 { 100 } else { 0 },
            at: from_micros(at_us),
            injected: seq == 2,
            marks: if seq == 4 {
                wsgate_core::Marks::from([wsgate_core::Mark::Fault, wsgate_core::Mark::Dropped])
            } else {
                wsgate_core::Marks::NONE
            },
            truncated: seq == 5,
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn frames_round_trip_with_gaps_pages_and_every_field() {
        let id = SessionId::new();
        let rows = vec![
            row(3, Direction::ClientToUpstream, b"hello", 1_700_000_000_000_000),
            row(4, Direction::UpstreamToClient, b"", 1_700_000_000_000_000),
            row(5, Direction::GatewayToClient, b"cut", 1_699_999_999_999_990),
            row(9, Direction::ClientToGateway, b"\x00\xff", 1_700_000_000_000_123),
        ];
        let s = encode(&rows);
        assert_eq!((s.first_seq, s.last_seq, s.frames, s.msgs_in, s.msgs_out), (3, 9, 4, 2, 2));
        assert_eq!((s.bytes_in, s.bytes_out, s.last_at), (7, 103, 1_700_000_000_000_123));
        let back = decode(id, s.first_seq, &s.index, Bytes::from(s.payloads.clone()), 0, 100).unwrap();
        let strip = |m: &MessageRow| MessageRow { session_id: id, ..m.clone() };
        assert_eq!(back, rows.iter().map(strip).collect::<Vec<_>>());
        let page = decode(id, s.first_seq, &s.index, Bytes::from(s.payloads.clone()), 4, 1).unwrap();
        assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), [5]);
        // Damage is refused, never guessed at or panicked on.
        for cut in 0..s.index.len() {
            let _ = decode(id, s.first_seq, &s.index[..cut], Bytes::from(s.payloads.clone()), 0, 100);
        }
        assert!(decode(id, s.first_seq, &s.index, Bytes::from_static(b"x"), 0, 100).is_err());
    }

    #[test]
    fn a_batch_groups_by_session_in_seq_order() {
        let (a, b) = (SessionId::new(), SessionId::new());
        let of = |id, seq| MessageRow { session_id: id, ..row(seq, Direction::ClientToGateway, b"", 0) };
        let batch = [of(a, 1), of(a, 2), of(b, 7), of(a, 4), of(b, 5), of(b, 6), of(b, 6)];
        let groups = by_session(&batch);
        let seqs: Vec<Vec<_>> = groups.iter().map(|g| g.iter().map(|m| (m.session_id == a, m.seq)).collect()).collect();
        assert_eq!(seqs, [vec![(true, 1), (true, 2), (true, 4)], vec![(false, 5), (false, 6), (false, 7)]]);
    }

    /// Two frames' times further apart than an i64 of microseconds holds (chrono's
    /// range is wider): encoding subtracted without wrapping and panicked.
    #[test]
    fn times_at_the_ends_of_the_range_round_trip() {
        let id = SessionId::new();
        let far = [-8_000_000_000_000_000_000i64, 8_000_000_000_000_000_000];
        let rows: Vec<_> = far.iter().zip(1..).map(|(&t, seq)| row(seq, Direction::ClientToGateway, b"", t)).collect();
        let s = encode(&rows);
        let back = decode(id, s.first_seq, &s.index, Bytes::from(s.payloads.clone()), 0, 10).unwrap();
        assert_eq!(back.iter().map(|m| to_micros(m.at)).collect::<Vec<_>>(), far);
    }
}
