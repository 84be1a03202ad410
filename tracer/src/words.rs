//! How numbers and kernel codes read for people: durations a person parses at a glance,
//! counts with their nouns, retransmit classes. Shared by verdict explanations and output.

use crate::event::RetransmitClass;

/// `850 ms`, `1.4 s`, `924.6 s`, `2 h 11 min`.
pub fn duration_ms(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 1_000_000 {
        let tenths = (ms + 50) / 100;
        format!("{}.{} s", tenths / 10, tenths % 10)
    } else if ms < 3_600_000 {
        let secs = (ms + 500) / 1000;
        format!("{} min {} s", secs / 60, secs % 60)
    } else {
        let mins = (ms + 30_000) / 60_000;
        format!("{} h {} min", mins / 60, mins % 60)
    }
}

pub fn ns_to_ms(ns: u64) -> u64 {
    ns / 1_000_000
}

/// `1 retransmit`, `3 retransmits`.
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    match n.into() {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

/// A retransmit's class as people name it: `RTO`, `SYN-ACK`, `tail loss probe`, ...
pub fn retransmit_class(class: Option<RetransmitClass>) -> &'static str {
    match class {
        Some(RetransmitClass::Rto) => "RTO",
        Some(RetransmitClass::Syn) => "SYN",
        Some(RetransmitClass::SynAck) => "SYN-ACK",
        Some(RetransmitClass::Tlp) => "tail loss probe",
        Some(RetransmitClass::Fast) => "fast",
        Some(RetransmitClass::LossRecovery) => "loss recovery",
        Some(RetransmitClass::RackTimeout) => "RACK timeout",
        Some(RetransmitClass::Unknown) | None => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_ms(850), "850 ms");
        assert_eq!(duration_ms(1_400), "1.4 s");
        assert_eq!(duration_ms(924_600), "924.6 s");
        assert_eq!(duration_ms(1_500_000), "25 min 0 s");
        assert_eq!(duration_ms(7_875_000), "2 h 11 min");
    }

    #[test]
    fn counts_agree_with_their_nouns() {
        assert_eq!(count(1u32, "retransmit"), "1 retransmit");
        assert_eq!(count(0u8, "probe"), "0 probes");
        assert_eq!(count(15u64, "retransmit"), "15 retransmits");
    }
}
