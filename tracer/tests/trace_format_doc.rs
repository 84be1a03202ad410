//! docs/trace-format.md stays true: every example line is a record this tracer reads and
//! writes back unchanged, and every verdict and event kind is documented.

use tracer::{
    event::EventKind,
    record::{Record, WallClock},
    timeline::VerdictKind,
};

const DOC: &str = include_str!("../../docs/trace-format.md");

fn json_examples() -> Vec<&'static str> {
    let mut lines = Vec::new();
    let mut inside = false;
    for line in DOC.lines() {
        match line {
            "```json" => inside = true,
            "```" => inside = false,
            _ if inside => lines.push(line),
            _ => {}
        }
    }
    lines
}

#[test]
fn every_example_line_reads_and_writes_back_the_same() {
    let examples = json_examples();
    assert!(examples.len() >= 7, "{examples:?}");
    let mut offset = None;
    for line in examples {
        let record = Record::parse(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if let Record::Header(h) = &record {
            offset = Some(h.boot_to_wall_offset_ns);
        }
        // The header's offset belongs to the recording the other examples come from.
        if !matches!(record, Record::Lost(_)) {
            let clock = WallClock {
                boot_to_wall_offset_ns: offset.expect("the header comes first"),
            };
            assert_eq!(record.to_json(Some(&clock)), line);
        }
    }
}

#[test]
fn every_verdict_and_event_kind_is_documented() {
    for kind in VerdictKind::ALL {
        assert!(DOC.contains(&format!("| `{kind}` |")), "{kind}");
    }
    for kind in [
        // Adding a kind breaks `documented_kind` below until it is listed here too.
        EventKind::StateChange,
        EventKind::Retransmit,
        EventKind::RetransmitFailed,
        EventKind::ResetSent,
        EventKind::ResetReceived,
        EventKind::KeepaliveProbe,
        EventKind::ZeroWindowProbe,
        EventKind::ErrorReport,
        EventKind::Destroy,
        EventKind::Sweep,
        EventKind::Drop,
    ] {
        assert!(DOC.contains(&format!("| `{}` |", kind.name())), "{kind:?}");
    }
}

/// Does not compile when an event kind is added: list it above and document it.
#[allow(dead_code)]
fn documented_kind(kind: EventKind) {
    match kind {
        EventKind::StateChange
        | EventKind::Retransmit
        | EventKind::RetransmitFailed
        | EventKind::ResetSent
        | EventKind::ResetReceived
        | EventKind::KeepaliveProbe
        | EventKind::ZeroWindowProbe
        | EventKind::ErrorReport
        | EventKind::Destroy
        | EventKind::Sweep
        | EventKind::Drop => {}
    }
}
