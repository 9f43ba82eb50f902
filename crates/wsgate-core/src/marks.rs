//! What the gateway did to a message on its way, beyond forwarding it: a rule rewrote,
//! delayed, dropped or answered it, a fault dropped, delayed, duplicated or truncated
//! it, an operator held it at a breakpoint. Carried on each message event and kept in history, so the live stream, the
//! message log and an export all say which frames a peer did not see as sent.
//!
//! A small set of flags rather than an enum: one frame can be rewritten by a rule and
//! then delayed by a fault. `injected` stays its own field (it predates marks and is in
//! every export).

use std::fmt;

/// A set of [`Mark`]s; empty for a message forwarded as it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Marks(u8);

/// One thing done to a message. Each is one bit of [`Marks`], stored as is: the
/// values never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mark {
    /// A rule acted on it (a transform), or produced it (an answer).
    Rule = 1,
    /// A fault acted on it, or produced it (a duplicate).
    Fault = 1 << 1,
    /// Not delivered to its receiver.
    Dropped = 1 << 2,
    /// Held back before it was delivered.
    Delayed = 1 << 3,
    /// A second copy of the message before it.
    Duplicate = 1 << 4,
    /// Its payload was changed (a rule's rewrite, a fault's truncation); history keeps
    /// what was delivered.
    Rewritten = 1 << 5,
    /// Sent by the gateway in answer to the message before it, which may not have
    /// been forwarded.
    Answer = 1 << 6,
    /// Held at an intercept breakpoint until an operator (or its timeout) let it go;
    /// with `rewritten` when the operator edited it, `dropped` when they dropped it.
    Held = 1 << 7,
}

impl Mark {
    pub const ALL: [Mark; 8] = [
        Mark::Rule,
        Mark::Fault,
        Mark::Dropped,
        Mark::Delayed,
        Mark::Duplicate,
        Mark::Rewritten,
        Mark::Answer,
        Mark::Held,
    ];

    /// The name on the wire (live stream, API, transcripts).
    pub fn as_str(self) -> &'static str {
        match self {
            Mark::Rule => "rule",
            Mark::Fault => "fault",
            Mark::Dropped => "dropped",
            Mark::Delayed => "delayed",
            Mark::Duplicate => "duplicate",
            Mark::Rewritten => "rewritten",
            Mark::Answer => "answer",
            Mark::Held => "held",
        }
    }

    pub fn from_name(name: &str) -> Option<Mark> {
        Mark::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

impl Marks {
    pub const NONE: Marks = Marks(0);

    #[inline]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    #[inline]
    pub const fn with(self, m: Mark) -> Marks {
        Marks(self.0 | m as u8)
    }

    #[inline]
    pub const fn contains(self, m: Mark) -> bool {
        self.0 & m as u8 != 0
    }

    /// The stored form.
    #[inline]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// From the stored form; bits no mark uses (a newer gateway's) are kept, so a
    /// history read and written again loses nothing.
    #[inline]
    pub const fn from_bits(bits: u8) -> Marks {
        Marks(bits)
    }

    /// The marks set, in a fixed order.
    pub fn iter(self) -> impl Iterator<Item = Mark> {
        Mark::ALL.into_iter().filter(move |m| self.contains(*m))
    }

    /// The wire names, for JSON.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Mark::as_str).collect()
    }
}

impl From<Mark> for Marks {
    fn from(m: Mark) -> Marks {
        Marks::NONE.with(m)
    }
}

impl<const N: usize> From<[Mark; N]> for Marks {
    fn from(ms: [Mark; N]) -> Marks {
        ms.into_iter().fold(Marks::NONE, Marks::with)
    }
}

impl fmt::Display for Marks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for m in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(m.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bits_are_kept() {
        let m = Marks::from([Mark::Fault, Mark::Delayed]);
        assert_eq!(m.names(), ["fault", "delayed"]);
        assert_eq!(m.to_string(), "fault,delayed");
        for mark in Mark::ALL {
            assert_eq!(Mark::from_name(mark.as_str()), Some(mark));
        }
        assert_eq!(Marks::from_bits(0x80 | 1).bits(), 0x81);
        assert!(Marks::NONE.is_empty());
    }
}
