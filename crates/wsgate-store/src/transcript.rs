//! Stored sessions as transcripts (`GET /api/sessions/{id}/export`,
//! `wsgate history export`): the store's rows converted into the typed lines of
//! `wsgate-transcript`, which owns the format (`docs/transcript.md`) and its writer.

use wsgate_core::{Direction, Initiator, SessionKind};
use wsgate_transcript as format;

use crate::{MessageRow, SessionRow};

pub use format::VERSION;

/// The first line.
pub fn header(s: &SessionRow) -> format::Header {
    format::Header {
        version: VERSION,
        id: s.id.to_string(),
        kind: kind(s.kind),
        route: s.route.clone(),
        path: s.path.clone(),
        subprotocol: s.subprotocol.clone(),
        upstream: s.upstream.clone(),
        opened_at: s.opened_at,
        closed_at: s.closed_at,
        close_code: s.close_code,
        close_reason: s.close_reason.clone(),
        initiator: s.initiator.map(initiator),
    }
}

/// One frame's line; `t` is its time since the session opened.
pub fn frame(s: &SessionRow, m: &MessageRow) -> format::Frame {
    let data = m.payload.clone();
    let payload = match m.opcode {
        0 => format::Payload::Continuation(data),
        1 => format::Payload::Text(data),
        2 => format::Payload::Binary(data),
        // A close payload is a code and a UTF-8 reason; one byte is no code at all
        // (the decoder refuses it, so only a truncated row could hold one).
        8 => format::Payload::Close((m.payload.len() >= 2).then(|| format::Close {
            code: u16::from_be_bytes([m.payload[0], m.payload[1]]),
            reason: String::from_utf8_lossy(&m.payload[2..]).into_owned(),
        })),
        9 => format::Payload::Ping(data),
        // 10; the decoder refuses the reserved opcodes, so no row holds one.
        _ => format::Payload::Pong(data),
    };
    format::Frame {
        t: format::Offset::from_delta(m.at - s.opened_at),
        seq: m.seq,
        dir: direction(m.direction),
        fin: m.fin,
        size: m.size,
        payload,
        injected: m.injected,
        truncated: m.truncated,
        marks: m.marks.names().into_iter().map(str::to_owned).collect(),
    }
}

/// Appends one line (JSON + `\n`) to `out`.
pub fn push_line(out: &mut Vec<u8>, line: &impl format::Encode) {
    // Writing to a Vec cannot fail.
    let _ = format::write(out, line);
}

fn kind(k: SessionKind) -> format::SessionKind {
    match k {
        SessionKind::Proxy => format::SessionKind::Proxy,
        SessionKind::Relay => format::SessionKind::Relay,
        SessionKind::Mock => format::SessionKind::Mock,
        SessionKind::Outbound => format::SessionKind::Outbound,
    }
}

fn initiator(i: Initiator) -> format::Initiator {
    match i {
        Initiator::Client => format::Initiator::Client,
        Initiator::Upstream => format::Initiator::Upstream,
        Initiator::Gateway => format::Initiator::Gateway,
        Initiator::Admin => format::Initiator::Admin,
    }
}

fn direction(d: Direction) -> format::Direction {
    match d {
        Direction::ClientToUpstream => format::Direction::ClientToUpstream,
        Direction::UpstreamToClient => format::Direction::UpstreamToClient,
        Direction::ClientToGateway => format::Direction::ClientToGateway,
        Direction::GatewayToClient => format::Direction::GatewayToClient,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use chrono::{TimeDelta, Utc};
    use wsgate_core::{SessionId, State};

    use super::*;

    fn session() -> SessionRow {
        let opened_at = Utc::now();
        SessionRow {
            id: SessionId::new(),
            instance: "test".into(),
            kind: SessionKind::Outbound,
            route: "outbound".into(),
            path: "/chat?room=1".into(),
            client_addr: None,
            headers: Vec::new(),
            subprotocol: Some("v1".into()),
            upstream: Some("ws://127.0.0.1:9/chat".into()),
            state: State::Disconnected,
            opened_at,
            closed_at: Some(opened_at + TimeDelta::seconds(2)),
            close_code: Some(4001),
            close_reason: Some("bye".into()),
            initiator: Some(Initiator::Admin),
            failure: None,
            failure_kind: None,
            http_status: None,
            messages_in: 0,
            messages_out: 0,
            bytes_in: 0,
            bytes_out: 0,
            messages_dropped: 0,
        }
    }

    fn message(s: &SessionRow, seq: u64, opcode: u8, payload: &'static [u8]) -> MessageRow {
        MessageRow {
            session_id: s.id,
            seq,
            direction: Direction::UpstreamToClient,
            opcode,
            fin: true,
            size: payload.len() as u64,
            at: s.opened_at + TimeDelta::nanoseconds(1_234_567 * seq as i64),
            injected: seq == 2,
            marks: wsgate_core::Marks::NONE,
            truncated: false,
            payload: Bytes::from_static(payload),
        }
    }

    /// What the export writes, the transcript reader reads back as the same rows.
    #[test]
    fn exported_rows_read_back() {
        let s = session();
        let rows = [
            message(&s, 1, 1, "héllo".as_bytes()),
            message(&s, 2, 2, b"\x00\xff"),
            message(&s, 3, 9, b""),
            message(&s, 4, 8, b"\x0f\xa1bye"),
            message(&s, 5, 8, b""),
        ];
        let mut out = Vec::new();
        push_line(&mut out, &header(&s));
        for m in &rows {
            push_line(&mut out, &frame(&s, m));
        }
        let lines: Vec<_> = format::Reader::new(&out[..]).collect::<Result<_, _>>().expect("a valid transcript");
        let format::Line::Header(h) = &lines[0] else { panic!("a header first") };
        assert_eq!(
            (h.id.as_str(), h.kind, h.initiator),
            (s.id.to_string().as_str(), format::SessionKind::Outbound, Some(format::Initiator::Admin))
        );
        assert_eq!((h.opened_at, h.closed_at, h.close_code), (s.opened_at, s.closed_at, Some(4001)));
        let frames: Vec<_> = lines[1..]
            .iter()
            .map(|l| match l {
                format::Line::Frame(f) => f.clone(),
                format::Line::Header(_) => panic!("one header"),
            })
            .collect();
        // Times are cut to the microsecond.
        assert_eq!(frames.iter().map(|f| f.t.micros()).collect::<Vec<_>>(), [1234, 2469, 3703, 4938, 6172]);
        assert_eq!(frames[0].payload, format::Payload::Text(Bytes::from_static("héllo".as_bytes())));
        assert_eq!(
            (&frames[1].payload, frames[1].injected),
            (&format::Payload::Binary(Bytes::from_static(b"\x00\xff")), true)
        );
        assert_eq!(frames[2].payload, format::Payload::Ping(Bytes::new()));
        let bye = format::Close { code: 4001, reason: "bye".into() };
        assert_eq!((&frames[3].payload, frames[3].size), (&format::Payload::Close(Some(bye)), 5));
        assert_eq!(frames[4].payload, format::Payload::Close(None));
        assert!(frames.iter().all(|f| f.dir == format::Direction::UpstreamToClient));
    }
}
