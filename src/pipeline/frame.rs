//! The record framing shared by the spill and the write-ahead log:
//! `magic u32 | payload length u32 | crc32(payload) u32 | payload`, little-endian. A reader
//! can tell a complete record from a torn tail and detect any flipped byte.

const MAGIC: u32 = 0x534c_5331; // "SLS1"
pub const HEADER: usize = 12;
/// Larger records than any batch can be are corruption, not data.
pub const MAX_PAYLOAD: u32 = 1 << 30;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("bad magic")]
    Magic,
    #[error("record length {0} out of range")]
    Length(u32),
    #[error("checksum mismatch")]
    Checksum,
    #[error("malformed payload")]
    Payload,
}

/// Starts a record in `out`; append the payload, then call `finish` with the returned mark.
pub fn begin(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&[0; 8]); // length and crc, filled by `finish`
    start
}

pub fn finish(out: &mut [u8], start: usize) {
    let payload = &out[start + HEADER..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// Checks a record header: `Ok(total record length)`.
pub fn header(h: &[u8; HEADER]) -> Result<usize, DecodeError> {
    if u32::from_le_bytes(h[0..4].try_into().expect("4 bytes")) != MAGIC {
        return Err(DecodeError::Magic);
    }
    let len = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
    if len > MAX_PAYLOAD {
        return Err(DecodeError::Length(len));
    }
    Ok(HEADER + len as usize)
}

/// The payload of the record at the front of `buf` and the bytes it used; `Ok(None)` when
/// `buf` holds only part of one.
pub fn decode(buf: &[u8]) -> Result<Option<(&[u8], usize)>, DecodeError> {
    let Some(h) = buf.get(..HEADER) else {
        return Ok(None);
    };
    let total = header(h.try_into().expect("header length"))?;
    let Some(record) = buf.get(..total) else {
        return Ok(None);
    };
    let payload = &record[HEADER..];
    if crc32fast::hash(payload) != u32::from_le_bytes(record[8..12].try_into().expect("4 bytes")) {
        return Err(DecodeError::Checksum);
    }
    Ok(Some((payload, total)))
}

/// A cursor over length-prefixed fields inside a payload.
pub struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Fields<'a> {
        Fields { buf }
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Payload);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(
            self.bytes(2)?.try_into().expect("2 bytes"),
        ))
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(
            self.bytes(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(
            self.bytes(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// A string written by `put_str`.
    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.bytes(n)?).map_err(|_| DecodeError::Payload)
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn rest(self) -> &'a [u8] {
        self.buf
    }
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_reject_damage() {
        let mut out = Vec::new();
        let mark = begin(&mut out);
        put_str(&mut out, "hello");
        out.push(7);
        finish(&mut out, mark);
        let (payload, used) = decode(&out).unwrap().unwrap();
        assert_eq!(used, out.len());
        let mut f = Fields::new(payload);
        assert_eq!((f.str().unwrap(), f.u8().unwrap()), ("hello", 7));
        assert!(
            f.u8().is_err(),
            "reading past the payload is an error, not a panic"
        );
        assert_eq!(decode(&out[..out.len() - 1]), Ok(None));
        let mut bad = out.clone();
        bad[HEADER + 1] ^= 1;
        assert_eq!(decode(&bad), Err(DecodeError::Checksum));
        bad = out.clone();
        bad[0] ^= 1;
        assert_eq!(decode(&bad), Err(DecodeError::Magic));
    }
}
