//! The opt-in write-ahead log (`SLUICE_WRITE_AHEAD=true`): a click is appended to a local log
//! and fsynced (group commit: one fsync for every click that arrived meanwhile) before its 302
//! is sent, so even SIGKILL loses nothing that was answered.
//!
//! Records are the `row::Captured` form of a click: the IP already hashed and geolocated, so
//! no raw IP reaches the disk. Segments rotate every second; a closed segment is deleted once
//! every click in it is durable elsewhere (inserted into ClickHouse or in the spill). Segments
//! left by an earlier run are recovered by the inserter: each click whose id ClickHouse does not
//! have is inserted, exactly once.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::oneshot;
use tracing::{error, warn};

use super::frame::{self, DecodeError, Fields};
use crate::click::geo::Place;
use crate::click::row::Captured;
use crate::metrics::Metrics;

const SEGMENT_AGE: Duration = Duration::from_secs(1);
const SEGMENT_BYTES: u64 = 64 << 20;
/// Records written per group commit at most (bounds one write call).
const GROUP_MAX: usize = 4096;

type Ack = oneshot::Sender<Result<u64, ()>>;

#[derive(Default)]
struct Segment {
    written: u64,
    durable: u64,
    closed: bool,
}

struct Ledger {
    dir: PathBuf,
    segments: BTreeMap<u64, Segment>,
}

impl Ledger {
    /// Deletes closed segments whose clicks are all durable elsewhere.
    fn collect(&mut self) {
        let done: Vec<u64> = self
            .segments
            .iter()
            .filter(|(_, s)| s.closed && s.durable >= s.written)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in done {
            match fs::remove_file(self.dir.join(segment_name(seq))) {
                Ok(()) => {
                    self.segments.remove(&seq);
                }
                Err(error) => warn!(segment = seq, %error, "cannot delete write-ahead segment"),
            }
        }
    }
}

pub struct Wal {
    tx: mpsc::Sender<(Vec<u8>, Ack)>,
    ledger: Arc<Mutex<Ledger>>,
}

fn segment_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

/// Segment files in `dir`, oldest first.
pub fn segments_in(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse().ok())
        {
            out.push((seq, entry.path()));
        }
    }
    out.sort_unstable();
    Ok(out)
}

impl Wal {
    /// Opens the log in `dir`; returns it and the segments an earlier run left behind.
    pub fn open(
        dir: &Path,
        metrics: &'static Metrics,
    ) -> std::io::Result<(Wal, Vec<(u64, PathBuf)>)> {
        fs::create_dir_all(dir)?;
        let leftovers = segments_in(dir)?;
        let first = leftovers.last().map_or(1, |(seq, _)| seq + 1);
        let ledger = Arc::new(Mutex::new(Ledger {
            dir: dir.to_path_buf(),
            segments: BTreeMap::new(),
        }));
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            dir: dir.to_path_buf(),
            ledger: ledger.clone(),
            seq: first,
            file: None,
            opened: Instant::now(),
            size: 0,
            metrics,
        };
        std::thread::Builder::new()
            .name("sluice-wal".into())
            .spawn(move || writer.run(rx))?;
        Ok((Wal { tx, ledger }, leftovers))
    }

    /// Appends one record and waits until it is on disk; returns its segment.
    pub async fn append(&self, record: Vec<u8>) -> Result<u64, ()> {
        let (ack, done) = oneshot::channel();
        self.tx.send((record, ack)).map_err(|_| ())?;
        done.await.unwrap_or(Err(()))
    }

    /// At shutdown, after the pipeline drained and no request can append any more: closes
    /// every segment so the fully durable ones are deleted now, not recovered at next start.
    pub fn finish(&self) {
        let mut ledger = self.ledger.lock();
        for segment in ledger.segments.values_mut() {
            segment.closed = true;
        }
        ledger.collect();
    }

    /// Counts clicks of these segments as durable elsewhere.
    pub fn mark_durable(&self, counts: &[(u64, u32)]) {
        if counts.is_empty() {
            return;
        }
        let mut ledger = self.ledger.lock();
        for (seq, n) in counts {
            ledger.segments.entry(*seq).or_default().durable += u64::from(*n);
        }
        ledger.collect();
    }
}

struct Writer {
    dir: PathBuf,
    ledger: Arc<Mutex<Ledger>>,
    seq: u64,
    file: Option<File>,
    opened: Instant,
    size: u64,
    metrics: &'static Metrics,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<(Vec<u8>, Ack)>) {
        let mut group: Vec<(Vec<u8>, Ack)> = Vec::with_capacity(GROUP_MAX);
        loop {
            // Rotate on age even when idle, so a quiet segment can be deleted.
            match rx.recv_timeout(SEGMENT_AGE) {
                Ok(first) => group.push(first),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.rotate_if_due();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            while group.len() < GROUP_MAX {
                match rx.try_recv() {
                    Ok(more) => group.push(more),
                    Err(_) => break,
                }
            }
            let result = self.write(&group);
            self.metrics.wal_group_size.record(group.len() as f64);
            let seq = self.seq;
            if result.is_err() {
                self.metrics.wal_errors.increment(group.len() as u64);
            }
            for (_, ack) in group.drain(..) {
                let _ = ack.send(result.map(|()| seq));
            }
            self.rotate_if_due();
        }
    }

    fn write(&mut self, group: &[(Vec<u8>, Ack)]) -> Result<(), ()> {
        let path = self.dir.join(segment_name(self.seq));
        if self.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|error| {
                    error!(%error, path = %path.display(), "cannot open write-ahead segment");
                })?;
            self.ledger.lock().segments.entry(self.seq).or_default();
            self.file = Some(file);
            self.opened = Instant::now();
            self.size = 0;
        }
        let file = self.file.as_mut().expect("opened above");
        let mut buf = Vec::with_capacity(group.iter().map(|(r, _)| r.len()).sum());
        for (record, _) in group {
            buf.extend_from_slice(record);
        }
        if let Err(error) = file.write_all(&buf).and_then(|()| file.sync_data()) {
            error!(%error, "write-ahead append failed");
            // Never append after a possibly partial record.
            self.file = None;
            self.close_current();
            self.seq += 1;
            return Err(());
        }
        self.size += buf.len() as u64;
        self.ledger
            .lock()
            .segments
            .entry(self.seq)
            .or_default()
            .written += group.len() as u64;
        Ok(())
    }

    fn rotate_if_due(&mut self) {
        if self.file.is_some()
            && (self.opened.elapsed() >= SEGMENT_AGE || self.size >= SEGMENT_BYTES)
        {
            self.file = None;
            self.close_current();
            self.seq += 1;
        }
    }

    fn close_current(&self) {
        let mut ledger = self.ledger.lock();
        ledger.segments.entry(self.seq).or_default().closed = true;
        ledger.collect();
    }
}

/// The write-ahead record of a click.
pub fn encode_record(c: &Captured<'_>, out: &mut Vec<u8>) {
    let mark = frame::begin(out);
    out.extend_from_slice(&c.id);
    out.extend_from_slice(&c.ts_ms.to_le_bytes());
    out.extend_from_slice(&c.ip_hash.to_le_bytes());
    out.push(c.head as u8);
    for s in [
        c.tenant_id,
        c.link_id,
        c.campaign,
        c.source,
        c.medium,
        c.partner_click_id,
    ] {
        frame::put_str(out, s);
    }
    for s in c.subs {
        frame::put_str(out, s);
    }
    for s in [
        c.place.country,
        c.place.region,
        c.place.city,
        c.user_agent,
        c.platform,
        c.referrer,
        c.variant,
    ] {
        frame::put_str(out, s);
    }
    out.push(c.anonymous as u8);
    frame::finish(out, mark);
}

pub fn decode_payload(payload: &[u8]) -> Result<Captured<'_>, DecodeError> {
    let mut f = Fields::new(payload);
    let id: [u8; 16] = f.bytes(16)?.try_into().expect("16 bytes");
    let ts_ms = f.u64()?;
    let ip_hash = f.u64()?;
    let head = f.u8()? != 0;
    let mut strs = [""; 17];
    for s in &mut strs {
        *s = f.str()?;
    }
    let [tenant_id, link_id, campaign, source, medium, partner_click_id, s1, s2, s3, s4, s5, country, region, city, user_agent, platform, referrer] =
        strs;
    // Records written before clicks carried a variant end here.
    let variant = if f.is_empty() { "" } else { f.str()? };
    // And those written before the anonymous-address flag here.
    let anonymous = !f.is_empty() && f.u8()? != 0;
    Ok(Captured {
        id,
        ts_ms,
        tenant_id,
        link_id,
        campaign,
        source,
        medium,
        partner_click_id,
        subs: [s1, s2, s3, s4, s5],
        ip_hash,
        place: Place {
            country,
            region,
            city,
        },
        user_agent,
        platform,
        referrer,
        head,
        variant,
        anonymous,
    })
}

/// The intact records of a segment's bytes (a torn or corrupt tail ends them).
pub fn records(buf: &[u8]) -> impl Iterator<Item = Captured<'_>> {
    let mut rest = buf;
    std::iter::from_fn(move || loop {
        match frame::decode(rest) {
            Ok(Some((payload, used))) => {
                rest = &rest[used..];
                match decode_payload(payload) {
                    Ok(c) => return Some(c),
                    Err(error) => warn!(%error, "undecodable write-ahead record skipped"),
                }
            }
            Ok(None) => return None,
            Err(error) => {
                warn!(%error, "corrupt write-ahead tail; the rest of the segment is skipped");
                return None;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let c = Captured {
            id: [7; 16],
            subs: ["a", "", "c", "", "é"],
            user_agent: "Mozilla/5.0",
            head: true,
            ..crate::click::row::sample()
        };
        let mut buf = Vec::new();
        encode_record(&c, &mut buf);
        encode_record(&c, &mut buf);
        let torn = buf.len() - 5;
        let all: Vec<_> = records(&buf[..torn]).collect();
        assert_eq!(all, vec![c.clone()]);
        // A record written before clicks carried a variant (it ends at the referrer) reads
        // back with none.
        let without = Captured {
            variant: "",
            ..c.clone()
        };
        let mut record = Vec::new();
        encode_record(&without, &mut record);
        // (without the empty variant (a 4-byte length) and the flag)
        let old_payload = &record[frame::HEADER..record.len() - 5];
        assert_eq!(decode_payload(old_payload).unwrap(), without);
        // One written before the anonymous flag (it ends at the variant) reads back as not
        // anonymous.
        let anonymous = Captured {
            anonymous: true,
            ..c.clone()
        };
        let mut record = Vec::new();
        encode_record(&anonymous, &mut record);
        let payload = &record[frame::HEADER..];
        assert_eq!(decode_payload(payload).unwrap(), anonymous);
        let before_flag = &payload[..payload.len() - 1];
        assert_eq!(decode_payload(before_flag).unwrap(), c);
    }
}
