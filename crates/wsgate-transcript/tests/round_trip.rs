//! Writing then reading gives back the same values, for every kind of line; the
//! written JSON has the documented names (docs/transcript.md).

use bytes::Bytes;
use chrono::{TimeZone as _, Utc};
use serde_json::{Value, json};
use wsgate_transcript::{
    Close, Direction, Frame, Header, Initiator, Line, Offset, Payload, Reader, SessionKind, VERSION, parse_line,
    to_line, write,
};

fn header() -> Header {
    Header {
        version: VERSION,
        id: "01a206cd-6717-76b2-92ae-5845a280f692".into(),
        kind: SessionKind::Proxy,
        route: "proxy".into(),
        path: "/chat?room=1".into(),
        subprotocol: Some("v1".into()),
        upstream: Some("ws://127.0.0.1:9000/chat?room=1".into()),
        opened_at: Utc.timestamp_micros(1_795_410_454_295_032).single().expect("a time"),
        closed_at: Some(Utc.timestamp_micros(1_795_410_454_806_898).single().expect("a time")),
        close_code: Some(4001),
        close_reason: Some("bye".into()),
        initiator: Some(Initiator::Client),
    }
}

fn frame(seq: u64, payload: Payload) -> Frame {
    let size = match &payload {
        Payload::Close(Some(c)) => 2 + c.reason.len() as u64,
        Payload::Close(None) => 0,
        p => p.data().map_or(0, |d| d.len() as u64),
    };
    Frame {
        t: Offset::from_micros(3740 * seq as i64),
        seq,
        dir: Direction::ClientToUpstream,
        fin: true,
        size,
        payload,
        injected: false,
        truncated: false,
        marks: Vec::new(),
    }
}

/// Every payload kind, including the awkward ones.
fn frames() -> Vec<Frame> {
    let mut v = vec![
        frame(1, Payload::Text(Bytes::from_static("héllo".as_bytes()))),
        frame(2, Payload::Text(Bytes::new())),
        // A text fragment that splits "é": not UTF-8 on its own.
        Frame { fin: false, ..frame(3, Payload::Text(Bytes::from_static(b"h\xc3"))) },
        frame(4, Payload::Continuation(Bytes::from_static(b"\xa9llo"))),
        frame(5, Payload::Continuation(Bytes::from_static(b"whole"))),
        frame(6, Payload::Binary(Bytes::from_static(&[0, 1, 2, 0xfe, 0xff]))),
        frame(7, Payload::Binary(Bytes::new())),
        // Binary that happens to be UTF-8 stays binary.
        frame(8, Payload::Binary(Bytes::from_static(b"abc"))),
        frame(9, Payload::Ping(Bytes::from_static(b"\x00\xffping"))),
        frame(10, Payload::Ping(Bytes::new())),
        frame(11, Payload::Pong(Bytes::from_static(b"pong"))),
        frame(12, Payload::Close(Some(Close { code: 4001, reason: "bye".into() }))),
        frame(13, Payload::Close(Some(Close { code: 1000, reason: String::new() }))),
        frame(14, Payload::Close(None)),
    ];
    v.push(Frame {
        injected: true,
        truncated: true,
        marks: vec!["fault".into(), "delayed".into()],
        size: 1 << 20,
        dir: Direction::GatewayToClient,
        t: Offset::from_micros(-5),
        ..frame(15, Payload::Binary(Bytes::from_static(b"prefix")))
    });
    v
}

fn transcript() -> Vec<Line> {
    std::iter::once(Line::Header(header())).chain(frames().into_iter().map(Line::Frame)).collect()
}

fn read_all(bytes: &[u8]) -> Vec<Line> {
    Reader::new(bytes).collect::<Result<_, _>>().expect("a valid transcript")
}

#[test]
fn every_line_round_trips() {
    let lines = transcript();
    let mut out = Vec::new();
    for l in &lines {
        write(&mut out, l).expect("writes to a Vec");
    }
    assert_eq!(read_all(&out), lines);
    for l in &lines {
        assert_eq!(&parse_line(to_line(l).as_bytes()).expect("re-reads"), l);
    }
}

#[test]
fn header_has_the_documented_fields() {
    let v: Value = serde_json::from_str(&to_line(&header())).expect("JSON");
    assert_eq!(
        v,
        json!({"type":"session","version":1,"id":"01a206cd-6717-76b2-92ae-5845a280f692","kind":"proxy",
               "route":"proxy","path":"/chat?room=1","subprotocol":"v1",
               "upstream":"ws://127.0.0.1:9000/chat?room=1","opened_at":"2026-11-23T05:07:34.295032Z",
               "closed_at":"2026-11-23T05:07:34.806898Z","close_code":4001,"close_reason":"bye",
               "initiator":"client"})
    );
    // Absent values are null, not missing: every field is always on the first line.
    let open = Header { subprotocol: None, closed_at: None, close_code: None, initiator: None, ..header() };
    let v: Value = serde_json::from_str(&to_line(&open)).expect("JSON");
    assert_eq!((&v["subprotocol"], &v["closed_at"], &v["close_code"]), (&Value::Null, &Value::Null, &Value::Null));
    assert!(v.as_object().expect("an object").contains_key("initiator"));
}

#[test]
fn frames_have_the_documented_fields() {
    let lines: Vec<Value> = frames().iter().map(|f| serde_json::from_str(&to_line(f)).expect("JSON")).collect();
    assert_eq!(
        lines[0],
        json!({"t":0.00374,"seq":1,"dir":"client_to_upstream","type":"text","opcode":1,"fin":true,"size":6,"text":"héllo"})
    );
    assert_eq!(lines[1]["text"], "");
    assert_eq!((&lines[2]["base64"], &lines[2]["fin"]), (&json!("aMM="), &json!(false)));
    assert_eq!(
        (&lines[3]["type"], &lines[3]["opcode"], &lines[3]["base64"]),
        (&json!("continuation"), &json!(0), &json!("qWxsbw=="))
    );
    assert_eq!(lines[4]["text"], "whole");
    assert_eq!(
        lines[5],
        json!({"t":0.02244,"seq":6,"dir":"client_to_upstream","type":"binary","opcode":2,"fin":true,"size":5,"base64":"AAEC/v8="})
    );
    assert_eq!(lines[6]["base64"], "");
    assert_eq!(lines[7]["base64"], "YWJj");
    assert_eq!((&lines[8]["opcode"], &lines[10]["opcode"]), (&json!(9), &json!(10)));
    assert_eq!(
        lines[11],
        json!({"t":0.04488,"seq":12,"dir":"client_to_upstream","type":"close","opcode":8,"fin":true,"size":5,"code":4001,"reason":"bye"})
    );
    assert_eq!((&lines[12]["code"], &lines[12]["reason"]), (&json!(1000), &json!("")));
    let empty_close = lines[13].as_object().expect("an object");
    assert!(
        !empty_close.contains_key("code") && !empty_close.contains_key("reason") && !empty_close.contains_key("base64")
    );
    assert_eq!(
        (&lines[14]["injected"], &lines[14]["truncated"], &lines[14]["t"]),
        (&json!(true), &json!(true), &json!(-0.000005))
    );
    assert!(!lines[0].as_object().expect("an object").contains_key("injected"), "false flags are left out");
}

#[test]
fn offsets_survive_json_floats() {
    // serde_json's float parsing may be one ulp off; whole microseconds within the
    // bound come back exactly.
    let mut us = 1i64;
    while us < Offset::MAX_MICROS {
        for v in [us, us + 1, (us * 3 + 7).min(Offset::MAX_MICROS), -us, Offset::MAX_MICROS - us] {
            let f = Frame { t: Offset::from_micros(v), ..frame(1, Payload::Text(Bytes::new())) };
            let Line::Frame(back) = parse_line(to_line(&f).as_bytes()).expect("re-reads") else { panic!("a frame") };
            assert_eq!(back.t.micros(), v);
        }
        us = us * 7 / 3 + 1;
    }
    assert_eq!(Offset::from_micros(i64::MAX).micros(), Offset::MAX_MICROS);
    assert_eq!(Offset::from_delta(chrono::TimeDelta::MAX).micros(), Offset::MAX_MICROS);
    assert_eq!(Offset::from_delta(chrono::TimeDelta::nanoseconds(1_999)).micros(), 1);
}

#[test]
fn reads_what_a_hand_written_script_leaves_out() {
    // No opcode, fin, size: they follow from the rest.
    let text = concat!(
        "{\"type\":\"session\",\"version\":1,\"id\":\"x\",\"kind\":\"mock\",\"route\":\"r\",\"path\":\"/\",",
        "\"opened_at\":\"2026-01-01T00:00:00+01:00\",\"future_field\":[1,2]}\n",
        "\n",
        "  {\"t\":1,\"seq\":1,\"dir\":\"gateway_to_client\",\"type\":\"text\",\"text\":\"hi\",\"later\":{}}\r\n",
        "{\"t\":2,\"seq\":2,\"dir\":\"gateway_to_client\",\"type\":\"close\",\"code\":1000}",
    );
    let lines = read_all(text.as_bytes());
    let Line::Header(h) = &lines[0] else { panic!("a header first") };
    assert_eq!(
        (h.kind, h.subprotocol.as_deref(), h.opened_at.to_rfc3339()),
        (SessionKind::Mock, None, "2025-12-31T23:00:00+00:00".into())
    );
    let Line::Frame(f) = &lines[1] else { panic!("a frame") };
    assert_eq!(
        (f.t.micros(), f.fin, f.size, &f.payload),
        (1_000_000, true, 2, &Payload::Text(Bytes::from_static(b"hi")))
    );
    let Line::Frame(f) = &lines[2] else { panic!("a frame") };
    assert_eq!((f.size, &f.payload), (2, &Payload::Close(Some(Close { code: 1000, reason: String::new() }))));
}
