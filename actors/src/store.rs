//! Convoy's one durable store: an embedded redb database at `outbox.path`.
//!
//! One file, one place that opens it, one table per use, so everything Convoy must not
//! lose across a restart or a crash commits atomically beside everything else (the CRM
//! outbox will be a table here too). Today it holds the **owed re-reads**: conversations
//! whose work was interrupted (writes still owed at shutdown, live conversations, re-reads
//! queued but not done). The next start re-reads each one, whatever its age, and the state
//! it reads re-states the writes still missing; an entry is settled only after its re-read
//! succeeded, so a crash in between loses nothing.
//!
//! Why redb (vetted on this machine): pure Rust, ACID, fsync per commit, survived kill -9.
//! Calls block on the disk; they are rare (shutdown, start-up, one per settled re-read)
//! and made from the router's thread.
//!
//! Never holds conversation state: Genesys keeps the truth, this keeps what Convoy owes.

use std::path::{Path, PathBuf};

use convoy::ids::ConversationId;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

/// Conversation id → the highest version Convoy knew for it (a floor for the rebuild).
const OWED_REREADS: TableDefinition<&str, u64> = TableDefinition::new("owed_rereads");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the folder of outbox.path {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open outbox.path {path}: {source}")]
    Open { path: PathBuf, source: redb::Error },
    #[error("outbox.path {path}: {source}")]
    Io { path: PathBuf, source: redb::Error },
}

/// See the module docs. Cheap to share behind an `Arc`; redb serialises writers itself.
pub struct DurableStore {
    path: PathBuf,
    db: Database,
}

impl std::fmt::Debug for DurableStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableStore")
            .field("path", &self.path)
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
        let db = Database::create(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source: source.into(),
        })?;
        let store = DurableStore {
            path: path.to_path_buf(),
            db,
        };
        // Create the tables up front so readers never meet a missing table.
        store.write(|txn| {
            txn.open_table(OWED_REREADS)?;
            Ok(())
        })?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
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
                let known = table.get(id.as_str())?.map(|guard| guard.value());
                let version = known.map_or(*version, |known| known.max(*version));
                table.insert(id.as_str(), version)?;
            }
            Ok(())
        })
    }

    /// Every owed re-read, in id order.
    pub fn owed_rereads(&self) -> Result<Vec<(ConversationId, u64)>, StoreError> {
        let io = |source: redb::Error| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        let txn = self.db.begin_read().map_err(|e| io(e.into()))?;
        let table = txn.open_table(OWED_REREADS).map_err(|e| io(e.into()))?;
        let mut owed = Vec::with_capacity(table.len().map_err(|e| io(e.into()))? as usize);
        for entry in table.iter().map_err(|e| io(e.into()))? {
            let (id, version) = entry.map_err(|e| io(e.into()))?;
            owed.push((ConversationId::from(id.value()), version.value()));
        }
        Ok(owed)
    }

    /// The re-read of `id` succeeded: nothing is owed for it any more.
    pub fn settle_reread(&self, id: &ConversationId) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.open_table(OWED_REREADS)?.remove(id.as_str())?;
            Ok(())
        })
    }

    fn write(
        &self,
        work: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        let io = |source: redb::Error| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        let txn = self.db.begin_write().map_err(|e| io(e.into()))?;
        work(&txn).map_err(io)?;
        txn.commit().map_err(|e| io(e.into()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

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

    #[test]
    fn an_unusable_path_is_named_in_the_error() {
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("a-file");
        std::fs::write(&file, b"not a folder").unwrap();
        let error = DurableStore::open(&file.join("outbox.redb")).unwrap_err();
        assert!(error.to_string().contains("a-file"), "{error}");
    }
}
