//! Convoy's one durable store: an embedded redb database at `outbox.path`.
//!
//! One file, one place that opens it, one table per use, so everything Convoy must not
//! lose across a restart or a crash commits atomically beside everything else. It holds:
//!
//! - the **owed re-reads**: conversations whose work was interrupted (writes still owed at
//!   shutdown, live conversations, re-reads queued but not done). The next start re-reads
//!   each one, whatever its age; an entry is settled only after its re-read succeeded.
//! - the **CRM outbox**: records accepted for the CRM, in acceptance order (`seq`), until a
//!   2xx acknowledges them or they are moved to the **dead letters** with the context of
//!   their last attempt. A record leaves the pending table only by one of those two paths,
//!   each one transaction, so nothing is lost between them. A record whose id is already
//!   pending or dead-lettered is not appended again (`convoy outbox retry-dead` is the way
//!   back for a dead one).
//! - the **pending summaries**: the latest conversation summary not yet upserted, one per
//!   conversation (a higher or equal revision replaces a stored one; settling removes it
//!   only at the revision that was sent, so a newer one committed meanwhile stays).
//! - the **SLA books**: each conversation's open SLA clocks (opaque JSON, owned by the SLA
//!   rules), committed with the records that caused them, so clocks resume after a crash.
//! - the **SLA outcomes**: every decided clock ([`StoredOutcome`], keyed
//!   `{conversation}/{clock}/{subject}`, indexed by decision time), committed in the same
//!   transaction as its `sla.outcome` record, kept `analytics.keep_outcomes` for QA
//!   snapshots, which read them by interval and never recompute them. Written whether or
//!   not a CRM is configured.
//! - the **analytics watermark**: the end of the last interval a scheduled snapshot
//!   covered, so a missed run is caught up by the next.
//!
//! [`DurableStore::commit`] is the group commit: many accepting steps in one write
//! transaction, one fsync. Counts come from redb's table lengths (stored in the tree
//! roots), so [`DurableStore::status`] stays cheap at any depth. Values are JSON bytes:
//! simple, and inspectable with any redb tool.
//!
//! redb lets one process open the file at a time: a second `open` while the daemon holds
//! it fails with [`StoreError::Locked`], which `convoy outbox` answers by going through the
//! daemon's admin API instead.
//!
//! Why redb (vetted on this machine): pure Rust, ACID, fsync per commit, survived kill -9.
//! Calls block on the disk: actors run them off their event loop (the admin server in
//! `web::block`).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use convoy::analytics::model::StoredOutcome;
use convoy::crm::CrmRecord;
use convoy::ids::ConversationId;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Conversation id → the highest version Convoy knew for it (a floor for the rebuild).
const OWED_REREADS: TableDefinition<&str, u64> = TableDefinition::new("owed_rereads");
/// Outbox sequence number → [`StoredRecord`] (JSON).
const PENDING: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox_pending");
/// Record id → its sequence number in [`PENDING`] (dedupe, retry by id).
const PENDING_IDS: TableDefinition<&str, u64> = TableDefinition::new("outbox_pending_ids");
/// The sequence number a record had when it died → [`DeadLetter`] (JSON).
const DEAD: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox_dead");
/// Record id → its key in [`DEAD`].
const DEAD_IDS: TableDefinition<&str, u64> = TableDefinition::new("outbox_dead_ids");
/// Conversation id → [`StoredSummary`] (JSON).
const SUMMARIES: TableDefinition<&str, &[u8]> = TableDefinition::new("pending_summaries");
/// Conversation id → its SLA book (JSON, opaque here).
const SLA_BOOKS: TableDefinition<&str, &[u8]> = TableDefinition::new("sla_books");
/// `{conversation}/{clock}/{subject}` → [`StoredOutcome`] (JSON).
const SLA_OUTCOMES: TableDefinition<&str, &[u8]> = TableDefinition::new("sla_outcomes");
/// (decided at, ms since the epoch; outcome key) → nothing: the outcomes by time, for
/// reads by interval and pruning by age.
const SLA_OUTCOMES_BY_TIME: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("sla_outcomes_by_time");
/// Counters that must never go back, e.g. [`NEXT_SEQ`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The sequence number the next appended record gets; never reused, even when the outbox
/// is empty, so a sequence number names one record for the life of the file.
const NEXT_SEQ: &str = "next_seq";
/// The end (ms since the epoch) of the last interval a scheduled snapshot covered.
const ANALYTICS_COVERED_TO: &str = "analytics_covered_to";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the folder of outbox.path {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open outbox.path {path}: {source}")]
    Open { path: PathBuf, source: redb::Error },
    /// Another process (a running daemon) holds the file.
    #[error("outbox.path {path} is open in another process (a running `convoy run`?)")]
    Locked { path: PathBuf },
    #[error("outbox.path {path} does not exist")]
    Missing { path: PathBuf },
    #[error("outbox.path {path}: {source}")]
    Io { path: PathBuf, source: redb::Error },
    /// A stored value that does not read back (a foreign or corrupted file).
    #[error("outbox.path {path}: unreadable {what}: {source}")]
    Corrupt {
        path: PathBuf,
        what: String,
        source: serde_json::Error,
    },
}

/// A record waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxRecord {
    /// Position in the outbox: records are sent in this order.
    pub seq: u64,
    pub record: CrmRecord,
    /// When it was committed (or put back by `retry-dead`).
    pub accepted_at: DateTime<Utc>,
}

/// How a pending record is stored (the key holds the seq).
#[derive(Debug, Serialize, Deserialize)]
struct StoredRecord {
    record: CrmRecord,
    accepted_at: DateTime<Utc>,
}

/// [`StoredRecord`] as it is written, borrowing the record: the same bytes without a
/// copy of its payload.
#[derive(Serialize)]
struct StoredRecordOut<'a> {
    record: &'a CrmRecord,
    accepted_at: DateTime<Utc>,
}

/// What acknowledging needs of a stored record: its id (the payload is skipped unread).
#[derive(Deserialize)]
struct StoredRecordId {
    record: RecordId,
}

#[derive(Deserialize)]
struct RecordId {
    id: String,
}

/// A conversation summary waiting to be upserted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingSummary {
    pub conversation_id: String,
    pub document: serde_json::Value,
    pub revision: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredSummary {
    document: serde_json::Value,
    revision: u64,
}

/// [`StoredSummary`] as it is written: the document's JSON as committed.
#[derive(Serialize)]
struct StoredSummaryOut<'a> {
    document: &'a RawValue,
    revision: u64,
}

/// What replacing or settling a summary needs of the stored one: its revision (the
/// document is skipped unread).
#[derive(Deserialize)]
struct StoredRevision {
    revision: u64,
}

/// Everything one accepting step wants durable at once.
#[derive(Debug, Clone, Default)]
pub struct Commit {
    /// Appended in order; a record whose id is already pending or dead-lettered is skipped
    /// (counted as a duplicate).
    pub records: Vec<CrmRecord>,
    /// (conversation id, document, revision): a higher or equal revision replaces the
    /// stored one, a lower one is ignored. The document arrives as JSON text, serialised
    /// once by whoever built it (no `Value` tree in between).
    pub summaries: Vec<(String, Box<RawValue>, u64)>,
    /// (conversation id, book as JSON text): `None` removes the book (every clock
    /// settled).
    pub sla_books: Vec<(String, Option<Box<RawValue>>)>,
    /// Decided SLA outcomes (an outcome already stored under its key is replaced).
    pub sla_outcomes: Vec<StoredOutcome>,
}

impl Commit {
    fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.summaries.is_empty()
            && self.sla_books.is_empty()
            && self.sla_outcomes.is_empty()
    }
}

/// What [`DurableStore::commit`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CommitReport {
    pub appended: usize,
    pub duplicates: usize,
    /// The seq of the last appended record, if any.
    pub last_seq: Option<u64>,
    /// The conversations whose pending summary was written (a lower revision than the
    /// stored one is not), in commit order: what a summary sender must read again.
    pub summaries: Vec<String>,
}

/// Why a record could not be delivered, with its delivery history: what a dead letter
/// carries besides the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryFailure {
    /// The HTTP status of the refusal, if there was an answer.
    pub status: Option<u16>,
    pub reason: String,
    /// The start of the error body (callers cut it; see [`excerpt`]).
    pub body_excerpt: Option<String>,
    pub attempts: u32,
    pub first_attempt_at: DateTime<Utc>,
    /// Also when the record was dead-lettered: that happens right after the last attempt.
    pub last_attempt_at: DateTime<Utc>,
    pub idempotency_key: Option<String>,
}

/// A pending record (by seq) to move to the dead letters, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterNew {
    pub seq: u64,
    pub failure: DeliveryFailure,
}

/// A dead-lettered record and the context of its death (flattened: the JSON of
/// `convoy outbox dead` and `/outbox/dead` lists the failure's fields beside the record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The seq it had in the outbox.
    pub seq: u64,
    pub record: CrmRecord,
    pub accepted_at: DateTime<Utc>,
    #[serde(flatten)]
    pub failure: DeliveryFailure,
}

/// The store's counts, for `convoy outbox status`, `/outbox` and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxStatus {
    pub pending: u64,
    pub dead_lettered: u64,
    /// Acceptance time of the first pending record (the next to send).
    pub oldest_pending_at: Option<DateTime<Utc>>,
    pub summaries_pending: u64,
    pub sla_books: u64,
    pub owed_rereads: u64,
}

/// The longest body excerpt worth keeping in a dead letter.
pub const BODY_EXCERPT_CHARS: usize = 512;

/// The first [`BODY_EXCERPT_CHARS`] characters of an error body (lossy UTF-8), marked
/// with `…` when cut.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut chars = text.chars();
    let mut cut: String = chars.by_ref().take(BODY_EXCERPT_CHARS).collect();
    if chars.next().is_some() {
        cut.push('…');
    }
    cut
}

/// What can go wrong inside a transaction, named once it reaches [`StoreError`].
enum Fault {
    Redb(redb::Error),
    Corrupt {
        what: String,
        source: serde_json::Error,
    },
}

macro_rules! redb_fault {
    ($($error:ty),*) => {$(
        impl From<$error> for Fault {
            fn from(error: $error) -> Fault {
                Fault::Redb(error.into())
            }
        }
    )*};
}
redb_fault!(
    redb::Error,
    redb::TableError,
    redb::StorageError,
    redb::TransactionError,
    redb::CommitError,
    redb::SetDurabilityError
);

fn encode(value: &impl Serialize, what: &str) -> Result<Vec<u8>, Fault> {
    serde_json::to_vec(value).map_err(|source| Fault::Corrupt {
        what: what.to_owned(),
        source,
    })
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Fault> {
    serde_json::from_slice(bytes).map_err(|source| Fault::Corrupt {
        what: what.to_owned(),
        source,
    })
}

/// See the module docs. Cheap to share behind an `Arc`; redb serialises writers itself.
pub struct DurableStore {
    path: PathBuf,
    db: Database,
    fsync: bool,
}

impl std::fmt::Debug for DurableStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableStore")
            .field("path", &self.path)
            .field("fsync", &self.fsync)
            .finish_non_exhaustive()
    }
}

impl DurableStore {
    /// Opens (or creates) the database, creating its folder if needed.
    pub fn open(path: &Path) -> Result<DurableStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Folder {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        Self::with_database(path, Database::create(path))
    }

    /// Opens a database that must exist already (the CLI: a typo in `outbox.path` must not
    /// create an empty outbox and report it).
    pub fn open_existing(path: &Path) -> Result<DurableStore, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        Self::with_database(path, Database::open(path))
    }

    fn with_database(
        path: &Path,
        opened: Result<Database, redb::DatabaseError>,
    ) -> Result<DurableStore, StoreError> {
        let db = opened.map_err(|source| match source {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                path: path.to_path_buf(),
            },
            source => StoreError::Open {
                path: path.to_path_buf(),
                source: source.into(),
            },
        })?;
        let store = DurableStore {
            path: path.to_path_buf(),
            db,
            fsync: true,
        };
        // Create the tables up front so readers never meet a missing table.
        store.write(|txn| {
            txn.open_table(OWED_REREADS)?;
            txn.open_table(PENDING)?;
            txn.open_table(PENDING_IDS)?;
            txn.open_table(DEAD)?;
            txn.open_table(DEAD_IDS)?;
            txn.open_table(SUMMARIES)?;
            txn.open_table(SLA_BOOKS)?;
            txn.open_table(SLA_OUTCOMES)?;
            txn.open_table(SLA_OUTCOMES_BY_TIME)?;
            txn.open_table(META)?;
            Ok(())
        })?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether commits wait for the disk (the default). Off only for benchmarks that
    /// measure everything but the disk: an unsynced commit is lost in a crash, and is only
    /// made durable by a later synced one.
    pub fn set_fsync(&mut self, fsync: bool) {
        self.fsync = fsync;
    }

    /// Records conversations to re-read at the next start (keeps the higher version of an
    /// id already recorded). One transaction, one fsync.
    pub fn owe_rereads(&self, owed: &[(ConversationId, u64)]) -> Result<(), StoreError> {
        if owed.is_empty() {
            return Ok(());
        }
        self.write(|txn| {
            let mut table = txn.open_table(OWED_REREADS)?;
            for (id, version) in owed {
                let known = table.get(id.text().as_str())?.map(|guard| guard.value());
                let version = known.map_or(*version, |known| known.max(*version));
                table.insert(id.text().as_str(), version)?;
            }
            Ok(())
        })
    }

    /// Every owed re-read, in id order.
    pub fn owed_rereads(&self) -> Result<Vec<(ConversationId, u64)>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(OWED_REREADS)?;
            let mut owed = Vec::with_capacity(table.len()? as usize);
            for entry in table.iter()? {
                let (id, version) = entry?;
                owed.push((ConversationId::from(id.value()), version.value()));
            }
            Ok(owed)
        })
    }

    /// The re-read of `id` succeeded: nothing is owed for it any more.
    pub fn settle_reread(&self, id: &ConversationId) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.open_table(OWED_REREADS)?.remove(id.text().as_str())?;
            Ok(())
        })
    }

    /// Group commit: every given commit in ONE write transaction (one fsync), applied in
    /// order. Records get consecutive sequence numbers after every earlier one.
    pub fn commit(
        &self,
        commits: &[Commit],
        accepted_at: DateTime<Utc>,
    ) -> Result<CommitReport, StoreError> {
        if commits.iter().all(Commit::is_empty) {
            return Ok(CommitReport::default());
        }
        self.write(|txn| {
            let mut report = CommitReport::default();
            let mut pending = txn.open_table(PENDING)?;
            let mut pending_ids = txn.open_table(PENDING_IDS)?;
            let dead_ids = txn.open_table(DEAD_IDS)?;
            let mut summaries = txn.open_table(SUMMARIES)?;
            let mut books = txn.open_table(SLA_BOOKS)?;
            let mut outcomes = txn.open_table(SLA_OUTCOMES)?;
            let mut outcomes_by_time = txn.open_table(SLA_OUTCOMES_BY_TIME)?;
            let mut meta = txn.open_table(META)?;
            let mut next_seq = meta.get(NEXT_SEQ)?.map_or(1, |guard| guard.value());
            for commit in commits {
                for outcome in &commit.sla_outcomes {
                    let key = outcome.key();
                    let earlier = match outcomes.get(key.as_str())? {
                        Some(guard) => Some(decode::<StoredOutcome>(guard.value(), "SLA outcome")?),
                        None => None,
                    };
                    if let Some(earlier) = earlier {
                        outcomes_by_time
                            .remove((earlier.decided_at.timestamp_millis(), key.as_str()))?;
                    }
                    outcomes.insert(key.as_str(), encode(outcome, "SLA outcome")?.as_slice())?;
                    outcomes_by_time
                        .insert((outcome.decided_at.timestamp_millis(), key.as_str()), ())?;
                }
                for record in &commit.records {
                    let id = record.id.as_str();
                    if pending_ids.get(id)?.is_some() || dead_ids.get(id)?.is_some() {
                        report.duplicates += 1;
                        continue;
                    }
                    let stored = StoredRecordOut {
                        record,
                        accepted_at,
                    };
                    pending.insert(next_seq, encode(&stored, "outbox record")?.as_slice())?;
                    pending_ids.insert(id, next_seq)?;
                    report.appended += 1;
                    report.last_seq = Some(next_seq);
                    next_seq += 1;
                }
                for (conversation_id, document, revision) in &commit.summaries {
                    let stored_revision = match summaries.get(conversation_id.as_str())? {
                        Some(guard) => {
                            Some(decode::<StoredRevision>(guard.value(), "summary")?.revision)
                        }
                        None => None,
                    };
                    if stored_revision.is_some_and(|stored| stored > *revision) {
                        continue;
                    }
                    let stored = StoredSummaryOut {
                        document,
                        revision: *revision,
                    };
                    summaries.insert(
                        conversation_id.as_str(),
                        encode(&stored, "summary")?.as_slice(),
                    )?;
                    report.summaries.push(conversation_id.clone());
                }
                for (conversation_id, book) in &commit.sla_books {
                    match book {
                        Some(book) => {
                            books.insert(conversation_id.as_str(), book.get().as_bytes())?;
                        }
                        None => {
                            books.remove(conversation_id.as_str())?;
                        }
                    }
                }
            }
            meta.insert(NEXT_SEQ, next_seq)?;
            Ok(report)
        })
    }

    /// Up to `limit` pending records after `after_seq` (from the start when `None`), in
    /// seq order.
    pub fn pending_records(
        &self,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let from = after_seq.map_or(0, |seq| seq.saturating_add(1));
        self.read(|txn| {
            let table = txn.open_table(PENDING)?;
            let mut records = Vec::new();
            for entry in table.range(from..)?.take(limit) {
                let (seq, bytes) = entry?;
                let stored: StoredRecord = decode(bytes.value(), "outbox record")?;
                records.push(OutboxRecord {
                    seq: seq.value(),
                    record: stored.record,
                    accepted_at: stored.accepted_at,
                });
            }
            Ok(records)
        })
    }

    /// The CRM acknowledged these records (a 2xx): they leave the outbox. Unknown seqs
    /// (acknowledged before) are ignored. Returns how many left.
    pub fn acknowledge(&self, seqs: &[u64]) -> Result<usize, StoreError> {
        if seqs.is_empty() {
            return Ok(0);
        }
        self.write(|txn| {
            let mut pending = txn.open_table(PENDING)?;
            let mut pending_ids = txn.open_table(PENDING_IDS)?;
            let mut removed = 0;
            for seq in seqs {
                let Some(bytes) = pending.remove(*seq)? else {
                    continue;
                };
                let stored: StoredRecordId = decode(bytes.value(), "outbox record")?;
                drop(bytes);
                pending_ids.remove(stored.record.id.as_str())?;
                removed += 1;
            }
            Ok(removed)
        })
    }

    /// Moves records from pending to the dead letters with their context, in one
    /// transaction: they leave pending only by being written there. Seqs no longer pending
    /// are ignored. Returns how many moved.
    pub fn dead_letter(&self, letters: &[DeadLetterNew]) -> Result<usize, StoreError> {
        if letters.is_empty() {
            return Ok(0);
        }
        self.write(|txn| {
            let mut pending = txn.open_table(PENDING)?;
            let mut pending_ids = txn.open_table(PENDING_IDS)?;
            let mut dead = txn.open_table(DEAD)?;
            let mut dead_ids = txn.open_table(DEAD_IDS)?;
            let mut moved = 0;
            for letter in letters {
                let Some(bytes) = pending.remove(letter.seq)? else {
                    continue;
                };
                let stored: StoredRecord = decode(bytes.value(), "outbox record")?;
                drop(bytes);
                let id = stored.record.id.clone();
                pending_ids.remove(id.as_str())?;
                let dead_letter = DeadLetter {
                    seq: letter.seq,
                    record: stored.record,
                    accepted_at: stored.accepted_at,
                    failure: letter.failure.clone(),
                };
                // An id dead once already (re-accepted meanwhile) keeps only its latest death.
                if let Some(earlier) = dead_ids.insert(id.as_str(), letter.seq)? {
                    let earlier = earlier.value();
                    dead.remove(earlier)?;
                }
                dead.insert(letter.seq, encode(&dead_letter, "dead letter")?.as_slice())?;
                moved += 1;
            }
            Ok(moved)
        })
    }

    /// Every dead letter, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(DEAD)?;
            let mut letters = Vec::with_capacity(table.len()? as usize);
            for entry in table.iter()? {
                let (_, bytes) = entry?;
                letters.push(decode(bytes.value(), "dead letter")?);
            }
            Ok(letters)
        })
    }

    /// Moves dead letters (the given record ids, or all when `None`) back to the end of
    /// the outbox, accepted again at `at`; unknown ids are ignored. Returns how many moved.
    pub fn retry_dead(
        &self,
        ids: Option<&[String]>,
        at: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        self.write(|txn| {
            let mut pending = txn.open_table(PENDING)?;
            let mut pending_ids = txn.open_table(PENDING_IDS)?;
            let mut dead = txn.open_table(DEAD)?;
            let mut dead_ids = txn.open_table(DEAD_IDS)?;
            let mut meta = txn.open_table(META)?;
            let dead_seqs: Vec<u64> = match ids {
                Some(ids) => {
                    let mut seqs = Vec::new();
                    for id in ids {
                        if let Some(seq) = dead_ids.get(id.as_str())? {
                            seqs.push(seq.value());
                        }
                    }
                    // Back in the order they first came, whatever order the ids were given.
                    seqs.sort_unstable();
                    seqs.dedup();
                    seqs
                }
                None => {
                    let mut seqs = Vec::new();
                    for entry in dead.iter()? {
                        seqs.push(entry?.0.value());
                    }
                    seqs
                }
            };
            let mut next_seq = meta.get(NEXT_SEQ)?.map_or(1, |guard| guard.value());
            let mut moved = 0;
            for dead_seq in dead_seqs {
                let Some(bytes) = dead.remove(dead_seq)? else {
                    continue;
                };
                let letter: DeadLetter = decode(bytes.value(), "dead letter")?;
                drop(bytes);
                dead_ids.remove(letter.record.id.as_str())?;
                if pending_ids.get(letter.record.id.as_str())?.is_some() {
                    // Only reachable through a foreign edit of the file; pending already
                    // carries the record.
                    continue;
                }
                let stored = StoredRecord {
                    record: letter.record,
                    accepted_at: at,
                };
                pending.insert(next_seq, encode(&stored, "outbox record")?.as_slice())?;
                pending_ids.insert(stored.record.id.as_str(), next_seq)?;
                next_seq += 1;
                moved += 1;
            }
            meta.insert(NEXT_SEQ, next_seq)?;
            Ok(moved)
        })
    }

    /// Every pending summary, by conversation id.
    pub fn pending_summaries(&self) -> Result<Vec<PendingSummary>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(SUMMARIES)?;
            let mut summaries = Vec::with_capacity(table.len()? as usize);
            for entry in table.iter()? {
                let (id, bytes) = entry?;
                let stored: StoredSummary = decode(bytes.value(), "summary")?;
                summaries.push(PendingSummary {
                    conversation_id: id.value().to_owned(),
                    document: stored.document,
                    revision: stored.revision,
                });
            }
            Ok(summaries)
        })
    }

    /// The pending summaries of these conversations (those still pending), in the order
    /// given: what changed since a full [`DurableStore::pending_summaries`].
    pub fn pending_summaries_of(
        &self,
        conversation_ids: &[String],
    ) -> Result<Vec<PendingSummary>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(SUMMARIES)?;
            let mut summaries = Vec::with_capacity(conversation_ids.len());
            for id in conversation_ids {
                if let Some(bytes) = table.get(id.as_str())? {
                    let stored: StoredSummary = decode(bytes.value(), "summary")?;
                    summaries.push(PendingSummary {
                        conversation_id: id.clone(),
                        document: stored.document,
                        revision: stored.revision,
                    });
                }
            }
            Ok(summaries)
        })
    }

    /// The summary of `conversation_id` at `revision` was upserted: it leaves the store,
    /// unless a newer revision was committed meanwhile (that one is still owed).
    pub fn settle_summary(&self, conversation_id: &str, revision: u64) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut table = txn.open_table(SUMMARIES)?;
            let stored_revision = match table.get(conversation_id)? {
                Some(guard) => Some(decode::<StoredRevision>(guard.value(), "summary")?.revision),
                None => None,
            };
            if stored_revision == Some(revision) {
                table.remove(conversation_id)?;
            }
            Ok(())
        })
    }

    /// Every open SLA book, by conversation id.
    pub fn sla_books(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(SLA_BOOKS)?;
            let mut books = Vec::with_capacity(table.len()? as usize);
            for entry in table.iter()? {
                let (id, bytes) = entry?;
                books.push((id.value().to_owned(), decode(bytes.value(), "SLA book")?));
            }
            Ok(books)
        })
    }

    /// The SLA outcomes decided in `[from, to)`, in decision-time order.
    pub fn sla_outcomes(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<StoredOutcome>, StoreError> {
        self.read(|txn| {
            let index = txn.open_table(SLA_OUTCOMES_BY_TIME)?;
            let outcomes = txn.open_table(SLA_OUTCOMES)?;
            let mut found = Vec::new();
            let (from, to) = (from.timestamp_millis(), to.timestamp_millis());
            for entry in index.range((from, "")..(to, ""))? {
                let (key, _) = entry?;
                let (_, key) = key.value();
                if let Some(bytes) = outcomes.get(key)? {
                    found.push(decode(bytes.value(), "SLA outcome")?);
                }
            }
            Ok(found)
        })
    }

    /// Drops the SLA outcomes decided before `before`. Returns how many went.
    pub fn prune_sla_outcomes(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.write(|txn| {
            let mut index = txn.open_table(SLA_OUTCOMES_BY_TIME)?;
            let mut outcomes = txn.open_table(SLA_OUTCOMES)?;
            let mut old: Vec<(i64, String)> = Vec::new();
            for entry in index.range(..(before.timestamp_millis(), ""))? {
                let (key, _) = entry?;
                let (at, key) = key.value();
                old.push((at, key.to_owned()));
            }
            for (at, key) in &old {
                index.remove((*at, key.as_str()))?;
                outcomes.remove(key.as_str())?;
            }
            Ok(old.len())
        })
    }

    /// The end of the last interval a scheduled snapshot covered, if any.
    pub fn analytics_covered_to(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read(|txn| {
            let meta = txn.open_table(META)?;
            let millis = meta.get(ANALYTICS_COVERED_TO)?.map(|guard| guard.value());
            Ok(millis
                .and_then(|ms| i64::try_from(ms).ok())
                .and_then(DateTime::from_timestamp_millis))
        })
    }

    /// A scheduled snapshot covered everything up to `to`.
    pub fn set_analytics_covered_to(&self, to: DateTime<Utc>) -> Result<(), StoreError> {
        let millis = u64::try_from(to.timestamp_millis()).unwrap_or(0);
        self.write(|txn| {
            txn.open_table(META)?.insert(ANALYTICS_COVERED_TO, millis)?;
            Ok(())
        })
    }

    /// The counts, read in one snapshot without scanning any table.
    pub fn status(&self) -> Result<OutboxStatus, StoreError> {
        self.read(|txn| {
            let pending = txn.open_table(PENDING)?;
            let oldest_pending_at = match pending.first()? {
                Some((_, bytes)) => {
                    Some(decode::<StoredRecord>(bytes.value(), "outbox record")?.accepted_at)
                }
                None => None,
            };
            Ok(OutboxStatus {
                pending: pending.len()?,
                dead_lettered: txn.open_table(DEAD)?.len()?,
                oldest_pending_at,
                summaries_pending: txn.open_table(SUMMARIES)?.len()?,
                sla_books: txn.open_table(SLA_BOOKS)?.len()?,
                owed_rereads: txn.open_table(OWED_REREADS)?.len()?,
            })
        })
    }

    fn fail(&self, fault: Fault) -> StoreError {
        match fault {
            Fault::Redb(source) => StoreError::Io {
                path: self.path.clone(),
                source,
            },
            Fault::Corrupt { what, source } => StoreError::Corrupt {
                path: self.path.clone(),
                what,
                source,
            },
        }
    }

    fn read<T>(
        &self,
        work: impl FnOnce(&redb::ReadTransaction) -> Result<T, Fault>,
    ) -> Result<T, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|error| self.fail(error.into()))?;
        work(&txn).map_err(|fault| self.fail(fault))
    }

    fn write<T>(
        &self,
        work: impl FnOnce(&redb::WriteTransaction) -> Result<T, Fault>,
    ) -> Result<T, StoreError> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(|error| self.fail(error.into()))?;
        if !self.fsync {
            txn.set_durability(Durability::None)
                .map_err(|error| self.fail(error.into()))?;
        }
        // A failed step drops the transaction, which aborts it: nothing half-done commits.
        let value = work(&txn).map_err(|fault| self.fail(fault))?;
        txn.commit().map_err(|error| self.fail(error.into()))?;
        Ok(value)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A JSON document as the commit carries it.
    fn raw(value: serde_json::Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(&value).unwrap()
    }

    fn id(text: &str) -> ConversationId {
        ConversationId::from(text)
    }

    #[test]
    fn owed_rereads_survive_a_reopen_until_settled() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("nested").join("outbox.redb");
        {
            let store = DurableStore::open(&path).unwrap();
            store.owe_rereads(&[(id("b"), 3), (id("a"), 7)]).unwrap();
            store.owe_rereads(&[(id("a"), 2)]).unwrap();
        }
        let store = DurableStore::open(&path).unwrap();
        assert_eq!(
            store.owed_rereads().unwrap(),
            vec![(id("a"), 7), (id("b"), 3)],
            "the higher version of a re-recorded id is kept"
        );
        store.settle_reread(&id("a")).unwrap();
        assert_eq!(store.owed_rereads().unwrap(), vec![(id("b"), 3)]);
    }

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + second, 0).unwrap()
    }

    fn record(id: &str, conversation: &str) -> CrmRecord {
        CrmRecord {
            id: id.to_owned(),
            conversation_id: conversation.to_owned(),
            kind: "message.status".to_owned(),
            payload: serde_json::json!({ "schema": 1, "of": id }).into(),
        }
    }

    fn records(ids: &[&str]) -> Commit {
        Commit {
            records: ids.iter().map(|id| record(id, "c1")).collect(),
            ..Commit::default()
        }
    }

    fn pending_ids(store: &DurableStore) -> Vec<String> {
        store
            .pending_records(None, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|pending| pending.record.id)
            .collect()
    }

    fn letter(seq: u64, status: u16) -> DeadLetterNew {
        DeadLetterNew {
            seq,
            failure: DeliveryFailure {
                status: Some(status),
                reason: format!("the CRM answered {status}"),
                body_excerpt: Some(excerpt(br#"{"error":"invalid_record"}"#)),
                attempts: 3,
                first_attempt_at: at(10),
                last_attempt_at: at(20),
                idempotency_key: Some("batch-1".to_owned()),
            },
        }
    }

    fn open_temp() -> (tempfile::TempDir, DurableStore) {
        let folder = tempfile::tempdir().unwrap();
        let store = DurableStore::open(&folder.path().join("outbox.redb")).unwrap();
        (folder, store)
    }

    #[test]
    fn committed_records_wait_in_order_until_acknowledged() {
        let (_folder, store) = open_temp();
        let report = store
            .commit(&[records(&["r1", "r2", "r3"])], at(0))
            .unwrap();
        assert_eq!(
            report,
            CommitReport {
                appended: 3,
                duplicates: 0,
                last_seq: Some(3),
                summaries: Vec::new(),
            }
        );
        let pending = store.pending_records(None, 10).unwrap();
        assert_eq!(
            pending.iter().map(|p| p.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(pending[0].record, record("r1", "c1"));
        assert_eq!(pending[0].accepted_at, at(0));
        assert_eq!(
            store.pending_records(Some(1), 1).unwrap()[0].record.id,
            "r2",
            "a page starts after the given seq and holds at most `limit`"
        );

        assert_eq!(store.acknowledge(&[1, 3, 99]).unwrap(), 2);
        assert_eq!(pending_ids(&store), vec!["r2"]);
        assert_eq!(
            store.acknowledge(&[1]).unwrap(),
            0,
            "acknowledging twice is harmless"
        );
    }

    #[test]
    fn a_record_already_pending_or_dead_is_not_appended_again() {
        let (_folder, store) = open_temp();
        let report = store
            .commit(
                &[records(&["r1", "r2", "r1"]), records(&["r2", "r3"])],
                at(0),
            )
            .unwrap();
        assert_eq!((report.appended, report.duplicates), (3, 2));
        assert_eq!(pending_ids(&store), vec!["r1", "r2", "r3"]);

        store.dead_letter(&[letter(2, 400)]).unwrap();
        let report = store.commit(&[records(&["r2"])], at(1)).unwrap();
        assert_eq!(
            (report.appended, report.duplicates),
            (0, 1),
            "a dead-lettered id comes back only through retry_dead"
        );

        store.acknowledge(&[1]).unwrap();
        let report = store.commit(&[records(&["r1"])], at(2)).unwrap();
        assert_eq!(
            (report.appended, report.last_seq),
            (1, Some(4)),
            "an acknowledged id may be accepted again, at a new seq (the sink dedupes)"
        );
    }

    #[test]
    fn dead_letters_keep_their_context_and_retry_puts_them_back_at_the_end() {
        let (_folder, store) = open_temp();
        store
            .commit(&[records(&["r1", "r2", "r3"])], at(0))
            .unwrap();
        assert_eq!(
            store
                .dead_letter(&[letter(1, 422), letter(3, 400), letter(7, 400)])
                .unwrap(),
            2,
            "a seq no longer pending is not dead-lettered"
        );
        assert_eq!(pending_ids(&store), vec!["r2"]);
        let dead = store.dead_letters().unwrap();
        assert_eq!(dead.len(), 2);
        assert_eq!(dead[0].record, record("r1", "c1"));
        assert_eq!(dead[0].seq, 1);
        assert_eq!(dead[0].failure.status, Some(422));
        assert_eq!(dead[0].failure.reason, "the CRM answered 422");
        assert_eq!(
            dead[0].failure.body_excerpt.as_deref(),
            Some(r#"{"error":"invalid_record"}"#)
        );
        assert_eq!(dead[0].failure.attempts, 3);
        assert_eq!(dead[0].failure.first_attempt_at, at(10));
        assert_eq!(dead[0].failure.last_attempt_at, at(20));
        assert_eq!(dead[0].failure.idempotency_key.as_deref(), Some("batch-1"));
        assert_eq!(dead[0].accepted_at, at(0));

        let ids = vec!["r3".to_owned(), "unknown".to_owned()];
        assert_eq!(store.retry_dead(Some(&ids), at(30)).unwrap(), 1);
        let pending = store.pending_records(None, 10).unwrap();
        assert_eq!(
            pending
                .iter()
                .map(|p| (p.seq, p.record.id.as_str()))
                .collect::<Vec<_>>(),
            vec![(2, "r2"), (4, "r3")],
            "a retried record goes to the end, under a new seq"
        );
        assert_eq!(pending[1].accepted_at, at(30));
        assert_eq!(store.dead_letters().unwrap().len(), 1);

        assert_eq!(store.retry_dead(None, at(31)).unwrap(), 1);
        assert_eq!(pending_ids(&store), vec!["r2", "r3", "r1"]);
        assert!(store.dead_letters().unwrap().is_empty());
        assert_eq!(store.retry_dead(None, at(32)).unwrap(), 0);
    }

    #[test]
    fn a_record_dead_twice_keeps_only_its_latest_death() {
        let (_folder, store) = open_temp();
        store.commit(&[records(&["r1"])], at(0)).unwrap();
        store.dead_letter(&[letter(1, 400)]).unwrap();
        store.retry_dead(None, at(1)).unwrap();
        store.dead_letter(&[letter(2, 409)]).unwrap();
        let dead = store.dead_letters().unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].seq, dead[0].failure.status), (2, Some(409)));
    }

    #[test]
    fn the_latest_summary_revision_wins_and_settling_an_older_one_keeps_it() {
        let (_folder, store) = open_temp();
        let summary = |conversation: &str, revision: u64| Commit {
            summaries: vec![(
                conversation.to_owned(),
                raw(serde_json::json!({ "revision": revision })),
                revision,
            )],
            ..Commit::default()
        };
        let report = store
            .commit(
                &[summary("c1", 2), summary("c1", 1), summary("c2", 1)],
                at(0),
            )
            .unwrap();
        assert_eq!(
            report.summaries,
            vec!["c1".to_owned(), "c2".to_owned()],
            "the report names the summaries written, not the one a higher revision kept out"
        );
        let revisions = |store: &DurableStore| {
            store
                .pending_summaries()
                .unwrap()
                .into_iter()
                .map(|s| {
                    assert_eq!(s.document["revision"], s.revision);
                    (s.conversation_id, s.revision)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            revisions(&store),
            vec![("c1".to_owned(), 2), ("c2".to_owned(), 1)],
            "a lower revision does not replace a higher one"
        );

        // c1's revision 2 is being upserted while revision 3 is committed.
        store.commit(&[summary("c1", 3)], at(1)).unwrap();
        store.settle_summary("c1", 2).unwrap();
        store.settle_summary("c2", 1).unwrap();
        assert_eq!(revisions(&store), vec![("c1".to_owned(), 3)]);
        // Reading only what changed: a settled one is simply absent.
        let changed = store
            .pending_summaries_of(&["c2".to_owned(), "c1".to_owned(), "c9".to_owned()])
            .unwrap();
        assert_eq!(
            changed
                .iter()
                .map(|s| (
                    s.conversation_id.as_str(),
                    s.revision,
                    s.document["revision"].clone()
                ))
                .collect::<Vec<_>>(),
            vec![("c1", 3, serde_json::json!(3))]
        );
        store.settle_summary("c1", 3).unwrap();
        assert!(store.pending_summaries().unwrap().is_empty());
    }

    #[test]
    fn sla_books_are_replaced_and_removed_when_settled() {
        let (_folder, store) = open_temp();
        let book = |conversation: &str, book: Option<Box<RawValue>>| Commit {
            sla_books: vec![(conversation.to_owned(), book)],
            ..Commit::default()
        };
        store
            .commit(
                &[
                    book("c1", Some(raw(serde_json::json!({ "open": 1 })))),
                    book("c2", Some(raw(serde_json::json!({ "open": 2 })))),
                    book("c1", Some(raw(serde_json::json!({ "open": 3 })))),
                ],
                at(0),
            )
            .unwrap();
        assert_eq!(
            store.sla_books().unwrap(),
            vec![
                ("c1".to_owned(), serde_json::json!({ "open": 3 })),
                ("c2".to_owned(), serde_json::json!({ "open": 2 }))
            ]
        );
        store.commit(&[book("c1", None)], at(1)).unwrap();
        assert_eq!(store.sla_books().unwrap().len(), 1);
    }

    #[test]
    fn a_group_commit_of_many_steps_appends_them_all_in_order() {
        let (_folder, store) = open_temp();
        let commits: Vec<Commit> = (0..500)
            .map(|step| Commit {
                records: vec![
                    record(&format!("r{step}-a"), &format!("c{step}")),
                    record(&format!("r{step}-b"), &format!("c{step}")),
                ],
                summaries: vec![(format!("c{step}"), raw(serde_json::json!({})), 1)],
                sla_books: vec![(format!("c{step}"), Some(raw(serde_json::json!([]))))],
                ..Commit::default()
            })
            .collect();
        let report = store.commit(&commits, at(0)).unwrap();
        assert_eq!((report.appended, report.last_seq), (1000, Some(1000)));
        let pending = store.pending_records(None, usize::MAX).unwrap();
        let expected: Vec<String> = (0..500)
            .flat_map(|step| [format!("r{step}-a"), format!("r{step}-b")])
            .collect();
        assert_eq!(
            pending
                .iter()
                .map(|p| p.record.id.clone())
                .collect::<Vec<_>>(),
            expected
        );
        let status = store.status().unwrap();
        assert_eq!(
            (status.pending, status.summaries_pending, status.sla_books),
            (1000, 500, 500)
        );
    }

    #[test]
    fn status_counts_every_table_and_names_the_oldest_pending() {
        let (_folder, store) = open_temp();
        assert_eq!(
            store.status().unwrap(),
            OutboxStatus {
                pending: 0,
                dead_lettered: 0,
                oldest_pending_at: None,
                summaries_pending: 0,
                sla_books: 0,
                owed_rereads: 0,
            }
        );
        store.commit(&[records(&["r1", "r2"])], at(5)).unwrap();
        store.commit(&[records(&["r3"])], at(9)).unwrap();
        store.dead_letter(&[letter(3, 400)]).unwrap();
        store.owe_rereads(&[(id("c1"), 1)]).unwrap();
        store.acknowledge(&[1]).unwrap();
        let status = store.status().unwrap();
        assert_eq!(status.pending, 1);
        assert_eq!(status.dead_lettered, 1);
        assert_eq!(status.oldest_pending_at, Some(at(5)));
        assert_eq!(status.owed_rereads, 1);
    }

    #[test]
    fn everything_survives_a_reopen_and_seqs_are_never_reused() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("outbox.redb");
        {
            let store = DurableStore::open(&path).unwrap();
            store
                .commit(
                    &[Commit {
                        records: vec![record("r1", "c1"), record("r2", "c1")],
                        summaries: vec![("c1".to_owned(), raw(serde_json::json!({ "n": 1 })), 4)],
                        sla_books: vec![(
                            "c1".to_owned(),
                            Some(raw(serde_json::json!({ "b": 1 }))),
                        )],
                        ..Commit::default()
                    }],
                    at(0),
                )
                .unwrap();
            store.dead_letter(&[letter(1, 400)]).unwrap();
            store.acknowledge(&[2]).unwrap();
        }
        let store = DurableStore::open(&path).unwrap();
        assert!(pending_ids(&store).is_empty());
        assert_eq!(store.dead_letters().unwrap()[0].record.id, "r1");
        assert_eq!(store.pending_summaries().unwrap()[0].revision, 4);
        assert_eq!(store.sla_books().unwrap().len(), 1);
        let report = store.commit(&[records(&["r3"])], at(1)).unwrap();
        assert_eq!(
            report.last_seq,
            Some(3),
            "the empty outbox does not restart at 1"
        );
    }

    #[test]
    fn a_second_open_of_a_held_file_is_locked_and_a_missing_file_is_not_created() {
        let (folder, store) = open_temp();
        match DurableStore::open_existing(store.path()) {
            Err(StoreError::Locked { path }) => assert_eq!(path, store.path()),
            other => panic!("expected Locked, got {other:?}"),
        }
        let missing = folder.path().join("typo.redb");
        assert!(matches!(
            DurableStore::open_existing(&missing),
            Err(StoreError::Missing { .. })
        ));
        assert!(!missing.exists());
        assert!(
            matches!(
                redb::ReadOnlyDatabase::open(store.path()),
                Err(redb::DatabaseError::DatabaseAlreadyOpen)
            ),
            "a read-only open is refused too, which is why `convoy outbox` asks the daemon"
        );
        drop(store);
        DurableStore::open_existing(&folder.path().join("outbox.redb")).unwrap();
    }

    #[test]
    fn unsynced_commits_still_read_back_in_the_process() {
        let (_folder, mut store) = open_temp();
        store.set_fsync(false);
        store.commit(&[records(&["r1"])], at(0)).unwrap();
        assert_eq!(pending_ids(&store), vec!["r1"]);
    }

    #[test]
    fn a_long_error_body_is_cut_to_an_excerpt() {
        let body = "x".repeat(BODY_EXCERPT_CHARS + 10);
        let cut = excerpt(body.as_bytes());
        assert_eq!(cut.chars().count(), BODY_EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt(b"short"), "short");
    }

    /// Where the crash child writes; set only when the parent runs it.
    const CRASH_PATH_ENV: &str = "CONVOY_STORE_CRASH_CHILD_PATH";

    /// The child of `committed_data_survives_a_process_crash`: commits, then aborts the
    /// process (no destructor, no close). Does nothing when run on its own.
    #[test]
    #[ignore = "run by committed_data_survives_a_process_crash"]
    fn crash_child_commits_then_aborts() {
        let Some(path) = std::env::var_os(CRASH_PATH_ENV) else {
            return;
        };
        let store = DurableStore::open(Path::new(&path)).unwrap();
        store
            .commit(
                &[Commit {
                    records: vec![record("r1", "c1"), record("r2", "c1")],
                    summaries: vec![("c1".to_owned(), raw(serde_json::json!({})), 1)],
                    sla_books: vec![("c1".to_owned(), Some(raw(serde_json::json!({ "open": 1 }))))],
                    ..Commit::default()
                }],
                at(0),
            )
            .unwrap();
        store.acknowledge(&[1]).unwrap();
        std::process::abort();
    }

    #[test]
    fn committed_data_survives_a_process_crash() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("outbox.redb");
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::tests::crash_child_commits_then_aborts",
                "--ignored",
                "--nocapture",
            ])
            .env(CRASH_PATH_ENV, &path)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "the child must have crashed: {status:?}");
        let store = DurableStore::open(&path).unwrap();
        assert_eq!(pending_ids(&store), vec!["r2"]);
        assert_eq!(store.pending_summaries().unwrap().len(), 1);
        assert_eq!(store.sla_books().unwrap().len(), 1);
    }

    mod property {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeSet;

        #[derive(Debug, Clone)]
        enum Op {
            /// Record ids (from a small pool, so duplicates happen).
            Commit(Vec<u8>),
            /// Indexes into the pending records.
            Acknowledge(Vec<usize>),
            DeadLetter(Vec<usize>),
            /// Indexes into the dead letters, or all.
            Retry(Option<Vec<usize>>),
        }

        fn op() -> impl Strategy<Value = Op> {
            let picks = || proptest::collection::vec(0usize..8, 0..4);
            prop_oneof![
                3 => proptest::collection::vec(0u8..12, 0..5).prop_map(Op::Commit),
                2 => picks().prop_map(Op::Acknowledge),
                2 => picks().prop_map(Op::DeadLetter),
                1 => proptest::option::of(picks()).prop_map(Op::Retry),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

            /// Every record ever appended is pending, dead-lettered or acknowledged — never
            /// lost — and pending stays in seq order, each id at most once.
            #[test]
            fn records_leave_pending_only_by_acknowledge_or_dead_letter(
                ops in proptest::collection::vec(op(), 1..25)
            ) {
                let (_folder, mut store) = open_temp();
                store.set_fsync(false);
                let mut appended: BTreeSet<String> = BTreeSet::new();
                let mut acknowledged: BTreeSet<String> = BTreeSet::new();
                for (step, op) in ops.into_iter().enumerate() {
                    let now = at(step as i64);
                    let pending = store.pending_records(None, usize::MAX).unwrap();
                    let dead = store.dead_letters().unwrap();
                    match op {
                        Op::Commit(ids) => {
                            let ids: Vec<String> = ids.iter().map(|i| format!("r{i}")).collect();
                            let commit = Commit {
                                records: ids.iter().map(|id| record(id, "c")).collect(),
                                ..Commit::default()
                            };
                            let report = store.commit(&[commit], now).unwrap();
                            let fresh: BTreeSet<&String> = ids.iter().filter(|id| {
                                !pending.iter().any(|p| &p.record.id == *id)
                                    && !dead.iter().any(|d| &d.record.id == *id)
                            }).collect();
                            prop_assert_eq!(report.appended, fresh.len());
                            prop_assert_eq!(report.appended + report.duplicates, ids.len());
                            for id in fresh {
                                acknowledged.remove(id);
                                appended.insert(id.clone());
                            }
                        }
                        Op::Acknowledge(picks) => {
                            let chosen: Vec<&OutboxRecord> =
                                picks.iter().filter_map(|i| pending.get(*i)).collect();
                            let seqs: Vec<u64> = chosen.iter().map(|p| p.seq).collect();
                            store.acknowledge(&seqs).unwrap();
                            acknowledged.extend(chosen.iter().map(|p| p.record.id.clone()));
                        }
                        Op::DeadLetter(picks) => {
                            let letters: Vec<DeadLetterNew> = picks
                                .iter()
                                .filter_map(|i| pending.get(*i))
                                .map(|p| letter(p.seq, 400))
                                .collect();
                            store.dead_letter(&letters).unwrap();
                        }
                        Op::Retry(picks) => {
                            let ids = picks.map(|picks| {
                                picks
                                    .iter()
                                    .filter_map(|i| dead.get(*i))
                                    .map(|d| d.record.id.clone())
                                    .collect::<Vec<_>>()
                            });
                            store.retry_dead(ids.as_deref(), now).unwrap();
                        }
                    }
                    let pending = store.pending_records(None, usize::MAX).unwrap();
                    let dead = store.dead_letters().unwrap();
                    prop_assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq));
                    let mut held: Vec<String> = pending
                        .iter()
                        .map(|p| p.record.id.clone())
                        .chain(dead.iter().map(|d| d.record.id.clone()))
                        .collect();
                    let count = held.len();
                    held.sort();
                    held.dedup();
                    prop_assert_eq!(held.len(), count, "an id is held at most once");
                    let mut accounted: BTreeSet<String> = held.into_iter().collect();
                    accounted.extend(acknowledged.iter().cloned());
                    prop_assert_eq!(&accounted, &appended, "nothing lost, nothing invented");
                    let status = store.status().unwrap();
                    prop_assert_eq!(status.pending, pending.len() as u64);
                    prop_assert_eq!(status.dead_lettered, dead.len() as u64);
                }
            }
        }
    }

    #[test]
    fn an_unusable_path_is_named_in_the_error() {
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("a-file");
        std::fs::write(&file, b"not a folder").unwrap();
        let error = DurableStore::open(&file.join("outbox.redb")).unwrap_err();
        assert!(error.to_string().contains("a-file"), "{error}");
    }

    fn outcome(conversation: &str, decided_second: i64) -> StoredOutcome {
        StoredOutcome {
            conversation_id: conversation.to_owned(),
            clock: convoy::sla::ClockKind::Answer,
            subject: "acd-1".to_owned(),
            outcome: convoy::sla::SlaOutcome::Compliant,
            deadline: at(decided_second),
            fulfilled_at: Some(at(decided_second)),
            queue_id: Some("q1".to_owned()),
            messenger_type: Some("open".to_owned()),
            decided_at: at(decided_second),
        }
    }

    #[test]
    fn sla_outcomes_are_read_by_interval_replaced_by_key_and_pruned_by_age() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("outbox.redb");
        {
            let store = DurableStore::open(&path).unwrap();
            let commit = Commit {
                records: vec![record("c1/sla/answer/acd-1/outcome", "c1")],
                sla_outcomes: vec![outcome("c1", 10), outcome("c2", 20), outcome("c3", 30)],
                ..Commit::default()
            };
            store.commit(&[commit], at(0)).unwrap();
            // c2 decided again (a rebuilt conversation): one entry, the later decision.
            let again = Commit {
                sla_outcomes: vec![outcome("c2", 25)],
                ..Commit::default()
            };
            store.commit(&[again], at(0)).unwrap();
        }
        let store = DurableStore::open(&path).unwrap();
        let ids = |found: Vec<StoredOutcome>| -> Vec<(String, i64)> {
            found
                .into_iter()
                .map(|o| (o.conversation_id, o.decided_at.timestamp() - 1_700_000_000))
                .collect()
        };
        assert_eq!(
            ids(store.sla_outcomes(at(10), at(30)).unwrap()),
            vec![("c1".to_owned(), 10), ("c2".to_owned(), 25)],
            "[from, to): the start is in, the end is out"
        );
        assert_eq!(store.prune_sla_outcomes(at(25)).unwrap(), 1);
        assert_eq!(
            ids(store.sla_outcomes(at(0), at(100)).unwrap()),
            vec![("c2".to_owned(), 25), ("c3".to_owned(), 30)]
        );
        assert_eq!(
            store.status().unwrap().pending,
            1,
            "the record committed beside them"
        );
    }

    #[test]
    fn the_analytics_watermark_survives_a_reopen() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("outbox.redb");
        {
            let store = DurableStore::open(&path).unwrap();
            assert_eq!(store.analytics_covered_to().unwrap(), None);
            store.set_analytics_covered_to(at(3_600)).unwrap();
        }
        let store = DurableStore::open(&path).unwrap();
        assert_eq!(store.analytics_covered_to().unwrap(), Some(at(3_600)));
    }
}
