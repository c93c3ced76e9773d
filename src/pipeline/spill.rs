//! The disk spill: an append-only log of sealed batches that could not be written to
//! ClickHouse, replayed in order when it answers again.
//!
//! Layout under `<data_dir>/spill/`: segment files `NNNNNNNNNNNNNNNNNNNN.seg` (increasing
//! sequence numbers) and a `cursor` file naming the next record to replay (`seq offset`,
//! then ` attempted` once an insert of that record has been tried from the spill).
//! Every record is framed (`frame.rs`: magic, length, crc32, payload), written and fsynced
//! before the batch counts as spilled. A process only ever appends to a segment it created,
//! so a torn tail (a crash mid-write) is always in a segment no one writes to again: the
//! reader skips from a bad record to the next segment and counts it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tracing::{error, warn};

use super::batch::{Batch, BatchKind};
use super::frame::{self, DecodeError, Fields};

const BATCH_HEADER: usize = 8 + 4 + 2 + 2 + 8 + 8 + 1 + 1;
/// A new segment is started past this size, so consumed data can be deleted in pieces.
const SEGMENT_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    #[error("spill io at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("spill is full ({bytes} of {max} bytes)")]
    Full { bytes: u64, max: u64 },
}

/// A spilled batch and whether an insert of it was ever attempted (only then can it
/// already be in ClickHouse, so only then does replay ask first).
#[derive(Debug)]
pub struct Spilled {
    pub batch: Batch,
    pub attempted: bool,
}

pub fn encode_record(batch: &Batch, attempted: bool, out: &mut Vec<u8>) {
    out.reserve(frame::HEADER + BATCH_HEADER + batch.data.len());
    let mark = frame::begin(out);
    out.extend_from_slice(&batch.id.to_le_bytes());
    out.extend_from_slice(&(batch.rows as u32).to_le_bytes());
    out.extend_from_slice(&batch.first_day.to_le_bytes());
    out.extend_from_slice(&batch.last_day.to_le_bytes());
    out.extend_from_slice(&batch.bots.to_le_bytes());
    out.extend_from_slice(&batch.previews.to_le_bytes());
    out.push(attempted as u8);
    out.push(batch.kind as u8);
    out.extend_from_slice(&batch.data);
    frame::finish(out, mark);
}

/// Decodes one record from the front of `buf`: `Ok(None)` when `buf` holds only part of
/// one (a torn tail, or more must be read), else the record and the bytes it used.
pub fn decode_record(buf: &[u8]) -> Result<Option<(Spilled, usize)>, DecodeError> {
    let Some((payload, used)) = frame::decode(buf)? else {
        return Ok(None);
    };
    let mut f = Fields::new(payload);
    let id = f.u64()?;
    let rows = f.u32()? as usize;
    let first_day = f.u16()?;
    let last_day = f.u16()?;
    let bots = f.u64()?;
    let previews = f.u64()?;
    let attempted = match f.u8()? {
        0 => false,
        1 => true,
        _ => return Err(DecodeError::Payload),
    };
    let kind = BatchKind::from_u8(f.u8()?).ok_or(DecodeError::Payload)?;
    let data = Bytes::copy_from_slice(f.rest());
    let batch = Batch {
        id,
        kind,
        rows,
        first_day,
        last_day,
        bots,
        previews,
        data,
        wal: Vec::new(),
        receipts: Vec::new(),
    };
    Ok(Some((Spilled { batch, attempted }, used)))
}

/// Writes one batch as a spill record to a file of its own (`path`, created, never
/// overwritten) and fsyncs it and its directory: how a refused batch is set aside.
pub fn write_record_file(path: &Path, batch: &Batch) -> Result<(), SpillError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut record = Vec::new();
    encode_record(batch, true, &mut record);
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    file.write_all(&record)
        .and_then(|()| file.sync_data())
        .map_err(io_err(path))?;
    sync_dir(dir)
}

pub struct Spill {
    dir: PathBuf,
    max_bytes: u64,
    /// (seq, size) of every segment on disk, oldest first.
    segments: Vec<(u64, u64)>,
    /// Where replay continues.
    cursor: (u64, u64),
    /// The position of a record whose insert was attempted although it was spilled as never
    /// attempted: its rows may be in ClickHouse, so replay must ask before inserting it.
    attempted_at: Option<(u64, u64)>,
    /// The segment this process appends to, created lazily.
    writer: Option<(u64, File)>,
    /// Records decoded at the cursor but not yet advanced past.
    peeked: Option<(u64, u64)>,
    /// Records skipped as corrupt since open.
    pub corrupt: u64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpillError + '_ {
    move |source| SpillError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn segment_name(seq: u64) -> String {
    format!("{seq:020}.seg")
}

impl Spill {
    /// Opens (creating) the spill directory and proves it writable.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spill, SpillError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let probe = dir.join("probe");
        File::create(&probe)
            .and_then(|mut f| f.write_all(b"ok").and_then(|()| f.sync_data()))
            .and_then(|()| fs::remove_file(&probe))
            .map_err(io_err(&probe))?;
        let mut segments = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name();
            let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse().ok())
            else {
                continue;
            };
            let len = entry.metadata().map_err(io_err(&entry.path()))?.len();
            segments.push((seq, len));
        }
        segments.sort_unstable();
        let cursor_path = dir.join("cursor");
        let (cursor, attempted) = match fs::read_to_string(&cursor_path) {
            Ok(text) => parse_cursor(&text).unwrap_or_else(|| {
                warn!("unreadable spill cursor; replaying from the oldest segment");
                ((0, 0), false)
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => ((0, 0), false),
            Err(e) => {
                return Err(SpillError::Io {
                    path: cursor_path,
                    source: e,
                })
            }
        };
        let mut spill = Spill {
            dir: dir.to_path_buf(),
            max_bytes,
            segments,
            cursor,
            attempted_at: attempted.then_some(cursor),
            writer: None,
            peeked: None,
            corrupt: 0,
        };
        spill.normalize_cursor();
        Ok(spill)
    }

    /// Bytes on disk not yet replayed (whole segments, the consumed head of the first included).
    pub fn bytes(&self) -> u64 {
        self.segments
            .iter()
            .map(|(_, len)| len)
            .sum::<u64>()
            .saturating_sub(self.cursor.1)
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    pub fn is_empty(&self) -> bool {
        match self.segments.last() {
            None => true,
            Some(&(last, len)) => {
                self.cursor.0 > last || (self.cursor.0 == last && self.cursor.1 >= len)
            }
        }
    }

    /// Appends and fsyncs one batch. Fails (and writes nothing) when over `max_bytes`.
    pub fn append(&mut self, batch: &Batch, attempted: bool) -> Result<(), SpillError> {
        let mut record = Vec::new();
        encode_record(batch, attempted, &mut record);
        let bytes = self.bytes();
        if bytes + record.len() as u64 > self.max_bytes {
            return Err(SpillError::Full {
                bytes,
                max: self.max_bytes,
            });
        }
        let rotate = match &self.writer {
            None => true,
            Some((seq, _)) => self.segment_len(*seq) >= SEGMENT_BYTES,
        };
        if rotate {
            let seq = self
                .segments
                .last()
                .map_or(1, |(s, _)| s + 1)
                .max(self.cursor.0);
            let path = self.dir.join(segment_name(seq));
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(io_err(&path))?;
            sync_dir(&self.dir)?;
            self.segments.push((seq, 0));
            self.writer = Some((seq, file));
        }
        let (seq, file) = self.writer.as_mut().expect("writer opened above");
        let path = self.dir.join(segment_name(*seq));
        let written = file.write_all(&record).and_then(|()| file.sync_data());
        if let Err(source) = written {
            // A partial record may be on disk: never append after it.
            self.writer = None;
            if let Some(s) = self.segments.iter_mut().find(|(s, _)| *s == seq_of(&path)) {
                s.1 = fs::metadata(&path).map(|m| m.len()).unwrap_or(s.1);
            }
            return Err(SpillError::Io { path, source });
        }
        let seq = *seq;
        if let Some(s) = self.segments.iter_mut().find(|(s, _)| *s == seq) {
            s.1 += record.len() as u64;
        }
        Ok(())
    }

    /// The record at the cursor, if any. Corrupt and torn records are skipped (with the
    /// rest of their segment) and counted.
    pub fn peek(&mut self) -> Result<Option<Spilled>, SpillError> {
        loop {
            self.normalize_cursor();
            let (seq, offset) = self.cursor;
            let Some(len) = self
                .segments
                .iter()
                .find(|(s, _)| *s == seq)
                .map(|(_, l)| *l)
            else {
                return Ok(None);
            };
            let writing = self.is_writer(seq);
            match read_record(&self.dir.join(segment_name(seq)), offset, len)? {
                Ok(Some((mut record, used))) => {
                    self.peeked = Some((seq, offset + used as u64));
                    record.attempted |= self.attempted_at == Some((seq, offset));
                    return Ok(Some(record));
                }
                // The end of the segment we are appending to: nothing more yet.
                Ok(None) if writing => return Ok(None),
                Ok(None) if offset >= len => self.cursor = (seq + 1, 0),
                Ok(None) => {
                    self.corrupt += 1;
                    warn!(segment = seq, offset, "torn spill record skipped");
                    self.cursor = (seq + 1, 0);
                }
                Err(error) => {
                    self.corrupt += 1;
                    error!(segment = seq, offset, %error, "corrupt spill record; skipping the rest of its segment");
                    self.cursor = (seq + 1, 0);
                }
            }
        }
    }

    /// Moves past the record returned by the last `peek` and persists the cursor; segments
    /// wholly behind it are deleted.
    pub fn advance(&mut self) -> Result<(), SpillError> {
        let Some(next) = self.peeked.take() else {
            return Ok(());
        };
        self.cursor = next;
        self.normalize_cursor();
        self.write_cursor(false)?;
        let done: Vec<u64> = self
            .segments
            .iter()
            .filter(|(s, len)| {
                *s < self.cursor.0
                    || (*s == self.cursor.0 && self.cursor.1 >= *len && !self.is_writer(*s))
            })
            .map(|(s, _)| *s)
            .collect();
        for seq in done {
            let seg = self.dir.join(segment_name(seq));
            if let Err(error) = fs::remove_file(&seg) {
                warn!(segment = seq, %error, "cannot delete replayed spill segment");
                continue;
            }
            self.segments.retain(|(s, _)| *s != seq);
            if self.cursor.0 == seq {
                self.cursor = (seq + 1, 0);
            }
        }
        Ok(())
    }

    /// Records on disk, before the first insert of the record the last `peek` returned, that
    /// it is being attempted: an insert whose answer is lost may still land, and neither a
    /// retry nor the next run may then insert it again without asking ClickHouse first.
    pub fn mark_attempted(&mut self) -> Result<(), SpillError> {
        if self.peeked.is_none() || self.attempted_at == Some(self.cursor) {
            return Ok(());
        }
        self.write_cursor(true)?;
        self.attempted_at = Some(self.cursor);
        Ok(())
    }

    /// `seq offset`, and ` attempted` when the record there has been tried, written whole.
    fn write_cursor(&self, attempted: bool) -> Result<(), SpillError> {
        let path = self.dir.join("cursor");
        let tmp = self.dir.join("cursor.tmp");
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            let flag = if attempted { " attempted" } else { "" };
            writeln!(f, "{} {}{flag}", self.cursor.0, self.cursor.1)?;
            f.sync_data()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(io_err(&path))
    }

    fn is_writer(&self, seq: u64) -> bool {
        self.writer.as_ref().is_some_and(|(s, _)| *s == seq)
    }

    fn segment_len(&self, seq: u64) -> u64 {
        self.segments
            .iter()
            .find(|(s, _)| *s == seq)
            .map_or(0, |(_, l)| *l)
    }

    /// A cursor naming a deleted or not-yet-existing segment moves to the oldest one left.
    fn normalize_cursor(&mut self) {
        if let Some(&(first, _)) = self.segments.first() {
            if self.cursor.0 < first {
                self.cursor = (first, 0);
            }
        }
    }
}

/// Reads the record at `offset` of a segment `len` bytes long.
fn read_record(
    path: &Path,
    offset: u64,
    len: u64,
) -> Result<Result<Option<(Spilled, usize)>, DecodeError>, SpillError> {
    let available = len.saturating_sub(offset);
    if available < frame::HEADER as u64 {
        return Ok(Ok(None));
    }
    let mut file = File::open(path).map_err(io_err(path))?;
    file.seek(SeekFrom::Start(offset)).map_err(io_err(path))?;
    let mut header = [0u8; frame::HEADER];
    file.read_exact(&mut header).map_err(io_err(path))?;
    let total = match frame::header(&header) {
        Ok(total) => total,
        Err(e) => return Ok(Err(e)),
    };
    if total as u64 > available {
        return Ok(Ok(None));
    }
    let mut buf = vec![0u8; total];
    buf[..frame::HEADER].copy_from_slice(&header);
    file.read_exact(&mut buf[frame::HEADER..])
        .map_err(io_err(path))?;
    Ok(decode_record(&buf))
}

fn seq_of(path: &Path) -> u64 {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn parse_cursor(text: &str) -> Option<((u64, u64), bool)> {
    let mut parts = text.split_whitespace();
    let cursor = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    let attempted = match parts.next() {
        None => false,
        Some("attempted") => true,
        Some(_) => return None,
    };
    Some((cursor, attempted))
}

fn sync_dir(dir: &Path) -> Result<(), SpillError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn batch(id: u64, data: &[u8]) -> Batch {
        Batch {
            id,
            rows: data.len(),
            first_day: 20_000,
            last_day: 20_001,
            bots: 1,
            previews: 2,
            kind: BatchKind::ClicksRowBinary,
            data: Bytes::copy_from_slice(data),
            wal: Vec::new(),
            receipts: Vec::new(),
        }
    }

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("sluice-spill-{:016x}", rand::random::<u64>()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// A batch spilled before any insert of it, then tried from the spill: a retry, in this
    /// run or the next, must ask ClickHouse first (the try may have landed, its answer lost).
    #[test]
    fn a_replay_attempt_is_remembered_across_reopen() {
        let d = dir();
        let mut s = Spill::open(&d, 1 << 30).unwrap();
        s.append(&batch(7, b"tried"), false).unwrap();
        s.append(&batch(8, b"next"), false).unwrap();
        assert!(!s.peek().unwrap().unwrap().attempted);
        s.mark_attempted().unwrap();
        assert!(s.peek().unwrap().unwrap().attempted);
        drop(s);
        let mut s = Spill::open(&d, 1 << 30).unwrap();
        let r = s.peek().unwrap().unwrap();
        assert_eq!((r.batch.id, r.attempted), (7, true));
        s.advance().unwrap();
        let r = s.peek().unwrap().unwrap();
        assert_eq!((r.batch.id, r.attempted), (8, false));
        drop(s);
        let r = Spill::open(&d, 1 << 30).unwrap().peek().unwrap().unwrap();
        assert_eq!((r.batch.id, r.attempted), (8, false));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn cursor_files_parse() {
        for (text, want) in [
            ("3 120\n", Some(((3, 120), false))),
            ("3 120 attempted\n", Some(((3, 120), true))),
            ("3 120 maybe\n", None),
            ("3\n", None),
            ("", None),
        ] {
            assert_eq!(parse_cursor(text), want, "{text:?}");
        }
    }

    #[test]
    fn round_trip_in_order_across_reopen() {
        let d = dir();
        let mut s = Spill::open(&d, 1 << 30).unwrap();
        assert!(s.is_empty());
        for i in 0..5u64 {
            s.append(&batch(i, &[i as u8; 100]), i % 2 == 0).unwrap();
        }
        let r = s.peek().unwrap().unwrap();
        assert_eq!((r.batch.id, r.attempted, r.batch.rows), (0, true, 100));
        s.advance().unwrap();
        drop(s);
        // A restart continues after the last advanced record, and appends go to a new segment.
        let mut s = Spill::open(&d, 1 << 30).unwrap();
        s.append(&batch(5, b"new"), false).unwrap();
        let mut ids = Vec::new();
        while let Some(r) = s.peek().unwrap() {
            assert_eq!(r.batch.first_day, 20_000);
            ids.push(r.batch.id);
            s.advance().unwrap();
        }
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
        // Fully replayed segments are deleted, except the one still being written.
        let segs = fs::read_dir(&d)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "seg")
            })
            .count();
        assert_eq!(segs, 1);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bound_is_enforced() {
        let d = dir();
        let mut s = Spill::open(&d, 300).unwrap();
        s.append(&batch(1, &[0; 100]), false).unwrap();
        assert!(matches!(
            s.append(&batch(2, &[0; 200]), false),
            Err(SpillError::Full { .. })
        ));
        assert_eq!(s.peek().unwrap().unwrap().batch.id, 1);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn torn_and_corrupt_tails_are_skipped() {
        let d = dir();
        let mut s = Spill::open(&d, 1 << 30).unwrap();
        s.append(&batch(1, b"aaaa"), false).unwrap();
        s.append(&batch(2, b"bbbb"), false).unwrap();
        drop(s);
        // Tear the last record of the first segment, as a crash mid-write would.
        let seg = d.join(segment_name(1));
        let len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let mut s = Spill::open(&d, 1 << 30).unwrap();
        s.append(&batch(3, b"cccc"), false).unwrap();
        let mut ids = Vec::new();
        while let Some(r) = s.peek().unwrap() {
            ids.push(r.batch.id);
            s.advance().unwrap();
        }
        assert_eq!(ids, vec![1, 3]);
        assert_eq!(s.corrupt, 1);
        fs::remove_dir_all(&d).unwrap();
    }

    proptest! {
        #[test]
        fn fuzz_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_record(&bytes);
        }

        #[test]
        fn fuzz_decoder_round_trips_and_detects_flips(data in proptest::collection::vec(any::<u8>(), 0..512), id: u64, flip in 0usize..10_000) {
            let mut buf = Vec::new();
            encode_record(&batch(id, &data), true, &mut buf);
            let (r, used) = decode_record(&buf).unwrap().unwrap();
            prop_assert_eq!(used, buf.len());
            prop_assert_eq!(r.batch.id, id);
            prop_assert_eq!(&r.batch.data[..], &data[..]);
            prop_assert!(decode_record(&buf[..buf.len() - 1]).unwrap().is_none());
            let at = flip % buf.len();
            buf[at] ^= 0x40;
            prop_assert!(decode_record(&buf).map(|r| r.is_none()).unwrap_or(true), "flip at {} decoded", at);
        }
    }
}
