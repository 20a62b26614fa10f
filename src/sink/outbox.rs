//! The durable outbox between the event stage and the sinks.
//!
//! Every event (with its snapshot JPEG) is committed here, fsynced, before any sink sees it. Each
//! configured sink has a cursor: the sequence number of the last record it acknowledged. A record
//! is deleted once every configured sink's cursor has passed it, so a sink that is down holds the
//! backlog and a restart delivers it first. Sequence numbers only grow, so every sink sees events
//! in the order they were produced (and so per camera).
//!
//! Storage is `redb` (ACID, copy-on-write B-trees, checksummed commit slots): a process killed in
//! the middle of a commit reopens at the last completed commit, never at a half-written record.
//! Each record also carries its own CRC-32; a record that fails it (storage damage) is moved to a
//! quarantine table, counted and logged, and delivery goes on with the next one.
//!
//! The outbox is bounded by `max_bytes` (the sum of its records' sizes). When full it refuses new
//! records with [`OutboxError::Full`]; the caller waits for sinks to catch up (back-pressure
//! reaches the cameras, which drop frames, never results). A disk that fails a write (full, or
//! an I/O error) fails that call only: the database is closed and opened again on the next call,
//! so the outbox works again by itself once space returns (redb refuses every call after an I/O
//! error until it is reopened).
//!
//! The **delivered watermark** ([`Outbox::delivered`]) is the lowest sequence number every sink
//! has acknowledged: each record at or below it is delivered everywhere. Cameras checkpoint only
//! what it covers, so the outbox is a buffer, not the only copy: an instance lost with its disk
//! is replaced by a task that reads the video again from the checkpoint.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::{Notify, watch};

use crate::pipeline::events::Event;

/// seq → encoded record.
const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
/// sink name → last acknowledged seq.
const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");
/// Counters kept with the records: `next_seq`, `bytes`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// seq → raw bytes of records that failed their checksum.
const QUARANTINE: TableDefinition<u64, &[u8]> = TableDefinition::new("quarantine");

const FILE_NAME: &str = "outbox.redb";
/// crc32 (4) + event length (4).
const HEADER: usize = 8;

/// The outbox's errors.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox {}: cannot create the folder", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("outbox {}: cannot open the database", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("outbox {}: storage error", path.display())]
    Storage {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },
    #[error("outbox full: {bytes} of {max_bytes} bytes used, a {needed}-byte record does not fit")]
    Full { bytes: u64, max_bytes: u64, needed: u64 },
    #[error("outbox: event {event_id} cannot be encoded")]
    Encode {
        event_id: String,
        #[source]
        source: serde_json::Error,
    },
}

/// One queued event and its annotated snapshot (JPEG), if it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    pub event: Event,
    pub snapshot: Option<Vec<u8>>,
}

impl OutboxRecord {
    /// `[crc32 of the rest][event JSON length][event JSON][JPEG]`, little-endian.
    pub fn encode(&self) -> Result<Vec<u8>, OutboxError> {
        let json = serde_json::to_vec(&self.event)
            .map_err(|source| OutboxError::Encode { event_id: self.event.event_id.clone(), source })?;
        let jpeg = self.snapshot.as_deref().unwrap_or_default();
        let mut out = Vec::with_capacity(HEADER + json.len() + jpeg.len());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(jpeg);
        let crc = crc32fast::hash(&out[4..]);
        out[..4].copy_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// `None` when the bytes are damaged (checksum, lengths or JSON).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (head, rest) = bytes.split_at_checked(HEADER)?;
        let crc = u32::from_le_bytes(head[..4].try_into().ok()?);
        if crc32fast::hash(&bytes[4..]) != crc {
            return None;
        }
        let len = u32::from_le_bytes(head[4..].try_into().ok()?) as usize;
        let (json, jpeg) = rest.split_at_checked(len)?;
        let event = serde_json::from_slice(json).ok()?;
        Some(Self { event, snapshot: (!jpeg.is_empty()).then(|| jpeg.to_vec()) })
    }
}

/// Sizes the outbox reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    pub records: u64,
    pub bytes: u64,
}

/// The durable queue. Every method does blocking disk I/O: call it from a blocking thread.
pub struct Outbox {
    /// `None` after an I/O error: opened again by the next call.
    db: RwLock<Option<Database>>,
    path: PathBuf,
    max_bytes: u64,
    sinks: Vec<String>,
    /// Serialises appends with the size check.
    stats: Mutex<OutboxStats>,
    /// The newest appended seq, for sinks waiting for work.
    appended: watch::Sender<u64>,
    /// Woken when acknowledgements free space.
    freed: Notify,
    /// The lowest sequence number every sink has acknowledged.
    delivered: watch::Sender<u64>,
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir` for these sinks. Cursors of sinks no longer
    /// configured are dropped; a newly configured sink starts at the oldest record kept.
    pub fn open(dir: &Path, max_bytes: u64, sinks: &[&str]) -> Result<Self, OutboxError> {
        std::fs::create_dir_all(dir).map_err(|source| OutboxError::Dir { path: dir.to_owned(), source })?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|source| OutboxError::Open { path: path.clone(), source })?;
        let mut outbox = Self {
            db: RwLock::new(Some(db)),
            path,
            max_bytes,
            sinks: sinks.iter().map(|s| (*s).to_owned()).collect(),
            stats: Mutex::new(OutboxStats::default()),
            appended: watch::Sender::new(0),
            freed: Notify::new(),
            delivered: watch::Sender::new(0),
        };
        let (stats, last, delivered) = outbox.init()?;
        *outbox.stats.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner) = stats;
        outbox.appended.send_replace(last);
        outbox.delivered.send_replace(delivered);
        crate::metrics::set_outbox(stats.records, stats.bytes, max_bytes);
        Ok(outbox)
    }

    /// Sizes, the newest sequence number and the delivered watermark.
    fn init(&self) -> Result<(OutboxStats, u64, u64), OutboxError> {
        self.write(|txn| {
            let mut cursors = txn.open_table(CURSORS)?;
            let stale: Vec<String> = cursors
                .iter()?
                .filter_map(Result::ok)
                .map(|(k, _)| k.value().to_owned())
                .filter(|k| !self.sinks.contains(k))
                .collect();
            for name in stale {
                cursors.remove(name.as_str())?;
            }
            let delivered = self.lowest_cursor(&cursors)?;
            drop(cursors);
            let records = txn.open_table(RECORDS)?;
            let count = records.len()?;
            let last = records.last()?.map_or(0, |(k, _)| k.value());
            drop(records);
            txn.open_table(QUARANTINE)?;
            let meta = txn.open_table(META)?;
            let bytes = meta.get("bytes")?.map_or(0, |v| v.value());
            let next = meta.get("next_seq")?.map_or(1, |v| v.value());
            // No sink: whatever is appended is done with.
            let delivered = delivered.unwrap_or(next - 1);
            Ok((OutboxStats { records: count, bytes }, last, delivered))
        })
    }

    /// Commits one record durably and returns its sequence number.
    pub fn append(&self, record: &OutboxRecord) -> Result<u64, OutboxError> {
        let bytes = record.encode()?;
        let needed = bytes.len() as u64;
        let mut stats = self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if stats.bytes + needed > self.max_bytes {
            crate::metrics::count_outbox_full();
            return Err(OutboxError::Full { bytes: stats.bytes, max_bytes: self.max_bytes, needed });
        }
        let seq = self.write(|txn| {
            let mut meta = txn.open_table(META)?;
            let seq = meta.get("next_seq")?.map_or(1, |v| v.value());
            let total = meta.get("bytes")?.map_or(0, |v| v.value()) + needed;
            meta.insert("next_seq", seq + 1)?;
            meta.insert("bytes", total)?;
            txn.open_table(RECORDS)?.insert(seq, bytes.as_slice())?;
            Ok(seq)
        })?;
        stats.records += 1;
        stats.bytes += needed;
        crate::metrics::set_outbox(stats.records, stats.bytes, self.max_bytes);
        drop(stats);
        self.appended.send_replace(seq);
        if self.sinks.is_empty() {
            self.delivered.send_replace(seq);
        }
        Ok(seq)
    }

    /// Up to `max_records` records (and about `max_bytes` bytes, at least one record) that `sink`
    /// has not acknowledged, oldest first. Damaged records are quarantined and skipped.
    pub fn pending(
        &self,
        sink: &str,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, OutboxRecord)>, OutboxError> {
        let (out, damaged) = self.read(|txn| {
            let after = txn.open_table(CURSORS)?.get(sink)?.map_or(0, |v| v.value());
            let records = txn.open_table(RECORDS)?;
            let (mut out, mut damaged, mut size) = (Vec::new(), Vec::new(), 0usize);
            for item in records.range(after + 1..)? {
                let (k, v) = item?;
                let raw = v.value();
                if !out.is_empty() && (out.len() >= max_records || size + raw.len() > max_bytes) {
                    break;
                }
                match OutboxRecord::decode(raw) {
                    Some(r) => {
                        size += raw.len();
                        out.push((k.value(), r));
                    }
                    None => damaged.push(k.value()),
                }
            }
            Ok((out, damaged))
        })?;
        if !damaged.is_empty() {
            self.quarantine(&damaged)?;
        }
        Ok(out)
    }

    /// Moves damaged records out of the queue, keeping their bytes for inspection.
    fn quarantine(&self, seqs: &[u64]) -> Result<(), OutboxError> {
        let freed = self.write(|txn| {
            let mut records = txn.open_table(RECORDS)?;
            let mut quarantine = txn.open_table(QUARANTINE)?;
            let mut freed = 0u64;
            for &seq in seqs {
                let raw = records.remove(seq)?.map(|v| v.value().to_vec());
                if let Some(raw) = raw {
                    freed += raw.len() as u64;
                    quarantine.insert(seq, raw.as_slice())?;
                }
            }
            subtract_bytes(txn, freed)?;
            Ok(freed)
        })?;
        for &seq in seqs {
            crate::metrics::count_outbox_corrupt();
            tracing::error!(outbox = %self.path.display(), seq, "outbox record failed its checksum; quarantined");
        }
        self.forget(seqs.len() as u64, freed);
        Ok(())
    }

    /// Records that `sink` has delivered everything up to `seq`, and deletes what every sink has.
    pub fn ack(&self, sink: &str, seq: u64) -> Result<(), OutboxError> {
        let (removed, freed, low) = self.write(|txn| {
            let mut cursors = txn.open_table(CURSORS)?;
            let old = cursors.get(sink)?.map_or(0, |v| v.value());
            cursors.insert(sink, old.max(seq))?;
            let low = self.lowest_cursor(&cursors)?.unwrap_or(0);
            drop(cursors);
            let mut records = txn.open_table(RECORDS)?;
            let (mut removed, mut freed) = (0u64, 0u64);
            for item in records.extract_from_if(..=low, |_, _| true)? {
                let (_, v) = item?;
                removed += 1;
                freed += v.value().len() as u64;
            }
            drop(records);
            subtract_bytes(txn, freed)?;
            Ok((removed, freed, low))
        })?;
        self.forget(removed, freed);
        self.delivered.send_if_modified(|d| {
            let moved = low > *d;
            *d = (*d).max(low);
            moved
        });
        Ok(())
    }

    /// The lowest cursor of the configured sinks (`None`: no sink).
    fn lowest_cursor(&self, cursors: &redb::Table<'_, &str, u64>) -> Result<Option<u64>, redb::Error> {
        let mut low = None;
        for name in &self.sinks {
            let cursor = cursors.get(name.as_str())?.map_or(0, |v| v.value());
            low = Some(low.map_or(cursor, |l: u64| l.min(cursor)));
        }
        Ok(low)
    }

    fn forget(&self, removed: u64, freed: u64) {
        if removed == 0 {
            return;
        }
        let mut stats = self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        stats.records = stats.records.saturating_sub(removed);
        stats.bytes = stats.bytes.saturating_sub(freed);
        crate::metrics::set_outbox(stats.records, stats.bytes, self.max_bytes);
        drop(stats);
        self.freed.notify_waiters();
    }

    /// How many records `sink` has not acknowledged.
    pub fn backlog(&self, sink: &str) -> Result<u64, OutboxError> {
        self.read(|txn| {
            let after = txn.open_table(CURSORS)?.get(sink)?.map_or(0, |v| v.value());
            let records = txn.open_table(RECORDS)?;
            let mut n = 0;
            for item in records.range(after + 1..)? {
                item?;
                n += 1;
            }
            Ok(n)
        })
    }

    /// Records that failed their checksum and were set aside.
    pub fn quarantined(&self) -> Result<u64, OutboxError> {
        self.read(|txn| Ok(txn.open_table(QUARANTINE)?.len()?))
    }

    pub fn stats(&self) -> OutboxStats {
        *self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Follows the newest appended sequence number (sinks wait on it for work).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Follows the delivered watermark: every record at or below it is delivered by every sink.
    pub fn delivered(&self) -> watch::Receiver<u64> {
        self.delivered.subscribe()
    }

    /// Resolves the next time acknowledgements free space.
    pub fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }

    /// Test support: overwrites a stored record's bytes as storage damage would.
    #[doc(hidden)]
    pub fn damage_for_tests(&self, seq: u64, bytes: &[u8]) -> Result<(), OutboxError> {
        self.write(|txn| {
            txn.open_table(RECORDS)?.insert(seq, bytes)?;
            Ok(())
        })
    }

    /// The open database, opened again when an I/O error closed it.
    fn db(&self) -> Result<RwLockReadGuard<'_, Option<Database>>, OutboxError> {
        {
            let db = self.db.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if db.is_some() {
                return Ok(db);
            }
        }
        let mut db = self.db.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if db.is_none() {
            let opened =
                Database::create(&self.path).map_err(|source| OutboxError::Open { path: self.path.clone(), source })?;
            tracing::info!(outbox = %self.path.display(), "outbox opened again after an I/O error");
            *db = Some(opened);
        }
        drop(db);
        Ok(self.db.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// An I/O error leaves redb refusing every later call: close it; the next call reopens.
    fn storage_error(&self, source: redb::Error) -> OutboxError {
        if matches!(source, redb::Error::Io(_) | redb::Error::PreviousIo) {
            crate::metrics::count_outbox_io_error();
            self.db.write().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        }
        OutboxError::Storage { path: self.path.clone(), source }
    }

    fn write<T>(&self, f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>) -> Result<T, OutboxError> {
        let result = {
            let guard = self.db()?;
            let Some(db) = guard.as_ref() else { return Err(self.closed()) };
            let mut txn = match db.begin_write() {
                Ok(txn) => txn,
                Err(e) => {
                    drop(guard);
                    return Err(self.storage_error(e.into()));
                }
            };
            let run = || -> Result<T, redb::Error> {
                txn.set_durability(Durability::Immediate)
                    .map_err(|e| redb::Error::from(redb::StorageError::Backend(Box::new(e))))?;
                let value = f(&txn)?;
                txn.commit()?;
                Ok(value)
            };
            run()
        };
        result.map_err(|source| self.storage_error(source))
    }

    fn read<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>) -> Result<T, OutboxError> {
        let result = {
            let guard = self.db()?;
            let Some(db) = guard.as_ref() else { return Err(self.closed()) };
            db.begin_read().map_err(redb::Error::from).and_then(|txn| f(&txn))
        };
        result.map_err(|source| self.storage_error(source))
    }

    fn closed(&self) -> OutboxError {
        OutboxError::Storage { path: self.path.clone(), source: redb::Error::DatabaseClosed }
    }
}

/// Lowers the stored `bytes` counter by what a transaction removed.
fn subtract_bytes(txn: &redb::WriteTransaction, freed: u64) -> Result<(), redb::Error> {
    let mut meta = txn.open_table(META)?;
    let total = meta.get("bytes")?.map_or(0, |v| v.value()).saturating_sub(freed);
    meta.insert("bytes", total)?;
    Ok(())
}
