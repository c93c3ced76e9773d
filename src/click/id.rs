//! Click ids: UUIDv7 (48-bit millisecond time, 74 random bits), so ids sort by time and two
//! nodes never need to coordinate. Randomness comes from a per-thread wyrand seeded from the
//! OS: no lock and no syscall per id.

use std::cell::Cell;
use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClickId(pub [u8; 16]);

thread_local! {
    static RNG: Cell<u64> = Cell::new(rand::random::<u64>() | 1);
}

fn next_random() -> u64 {
    RNG.with(|state| {
        // wyrand: fast, passes BigCrush; ids need uniqueness, not secrecy.
        let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let t = (s as u128).wrapping_mul((s ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

impl ClickId {
    pub fn new(ts_ms: u64) -> ClickId {
        let a = next_random();
        let b = next_random();
        let mut bytes = [0u8; 16];
        bytes[0..6].copy_from_slice(&ts_ms.to_be_bytes()[2..8]);
        bytes[6] = 0x70 | ((a >> 8) as u8 & 0x0f); // version 7
        bytes[7] = a as u8;
        bytes[8..16].copy_from_slice(&b.to_be_bytes());
        bytes[8] = 0x80 | (bytes[8] & 0x3f); // RFC 4122 variant
        ClickId(bytes)
    }

    pub fn timestamp_ms(&self) -> u64 {
        let mut b = [0u8; 8];
        b[2..8].copy_from_slice(&self.0[0..6]);
        u64::from_be_bytes(b)
    }

    /// Canonical hyphenated lowercase form, written into a stack buffer.
    pub fn to_hyphenated(&self) -> [u8; 36] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        // Where each byte's two digits go (hyphens at 8, 13, 18 and 23): fixed, so the loop
        // unrolls into plain stores (a running index was ~250 instructions a redirect).
        const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
        let mut out = [b'-'; 36];
        for (byte, at) in self.0.iter().zip(AT) {
            out[at] = HEX[(byte >> 4) as usize];
            out[at + 1] = HEX[(byte & 0xf) as usize];
        }
        out
    }

    pub fn parse(s: &str) -> Option<ClickId> {
        let hex: Vec<u8> = s.bytes().filter(|&b| b != b'-').collect();
        if hex.len() != 32 || s.len() != 36 {
            return None;
        }
        let mut out = [0u8; 16];
        hex::decode_to_slice(&hex, &mut out).ok()?;
        Some(ClickId(out))
    }
}

impl fmt::Display for ClickId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let buf = self.to_hyphenated();
        f.write_str(std::str::from_utf8(&buf).expect("hex is ascii"))
    }
}

impl fmt::Debug for ClickId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn layout_and_round_trip() {
        let id = ClickId::new(1_700_000_000_123);
        assert_eq!(id.timestamp_ms(), 1_700_000_000_123);
        let s = id.to_string();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "7", "version nibble");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "variant");
        assert_eq!(ClickId::parse(&s), Some(id));
        assert_eq!(ClickId::parse("not-a-uuid"), None);
        assert_eq!(ClickId::parse("0123456789abcdef0123456789abcdef"), None);
    }

    #[test]
    fn hyphenated_form() {
        let cases = [
            ([0u8; 16], "00000000-0000-0000-0000-000000000000"),
            ([0xff; 16], "ffffffff-ffff-ffff-ffff-ffffffffffff"),
            (
                [
                    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76,
                    0x54, 0x32, 0x10,
                ],
                "01234567-89ab-cdef-fedc-ba9876543210",
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(ClickId(bytes).to_string(), want);
        }
    }

    #[test]
    fn unique_and_time_ordered_across_ms() {
        let ids: HashSet<ClickId> = (0..100_000).map(|_| ClickId::new(42)).collect();
        assert_eq!(ids.len(), 100_000);
        assert!(ClickId::new(1000) < ClickId::new(1001));
    }
}
