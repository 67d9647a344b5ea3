//! The Raft glue: type configuration, the in-memory log store, and the state machine that applies
//! committed proposals to the enclave's decision state.
//!
//! Log entries carry [`Proposal`]s (CBOR inside the members' channel). The response of an entry is
//! its apply outcome on *this* member ([`Applied`]); it never crosses the network (a client's
//! request is answered by the leader that committed it), so it is skipped by serde.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::Arc;

use enclave_core::enclave::replicated::{Decided, Proposal};
use enclave_core::{Enclave, EnclaveError};
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, LogState, RaftLogId, RaftLogReader, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

/// Raft node ids: the first 8 bytes (little-endian) of a member's enclave id.
pub type NodeId = u64;

/// What the cluster's membership records of each member: who it is and how to reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its enclave id (attested: derived from the recipient key in its document).
    pub enclave_id: [u8; 16],
    /// Its per-boot channel key (attested: bound by its document's `user_data`).
    pub channel_public: [u8; 32],
    /// Where its parent relays member traffic (`host:port`): a routing hint the hosts control
    /// anyway, authenticated by nothing and trusted for nothing.
    pub relay: String,
}

/// The outcome of applying one entry on this member.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Applied {
    #[serde(skip)]
    pub outcome: Option<Result<Decided, EnclaveError>>,
}

openraft::declare_raft_types!(
    /// The cluster's Raft types.
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = NodeId,
        Node = Member,
);

pub type Raft = openraft::Raft<TypeConfig>;

fn storage_error(what: &str, e: impl std::fmt::Display) -> StorageError<NodeId> {
    let io = std::io::Error::other(format!("{what}: {e}"));
    StorageIOError::<NodeId>::write_state_machine(&io).into()
}

/// The Raft log, vote and commit index, in enclave memory.
#[derive(Clone, Default)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

#[derive(Default)]
struct LogInner {
    last_purged: Option<LogId<NodeId>>,
    log: BTreeMap<u64, Entry<TypeConfig>>,
    committed: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let inner = self.inner.lock().await;
        Ok(inner.log.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.inner.lock().await;
        let last = inner.log.values().next_back().map(|e| *e.get_log_id()).or(inner.last_purged);
        Ok(LogState { last_purged_log_id: inner.last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.inner.lock().await.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().await.vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.inner.lock().await.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().await.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.inner.lock().await;
        for entry in entries {
            inner.log.insert(entry.get_log_id().index, entry);
        }
        // Memory is this log's durable medium: appended is flushed.
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        inner.log.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        if inner.last_purged.is_some_and(|p| p.index > log_id.index) {
            return Ok(());
        }
        inner.last_purged = Some(log_id);
        let keep = inner.log.split_off(&(log_id.index.saturating_add(1)));
        inner.log = keep;
        Ok(())
    }
}

/// The state machine: the enclave's decision state, plus what Raft needs to know of it.
#[derive(Clone)]
pub struct StateMachine {
    enclave: Arc<Enclave>,
    inner: Arc<Mutex<MachineInner>>,
}

#[derive(Default)]
struct MachineInner {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Member>,
    snapshot: Option<StoredSnapshot>,
    snapshots_built: u64,
}

#[derive(Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Member>,
    data: Vec<u8>,
}

impl StateMachine {
    pub fn new(enclave: Arc<Enclave>) -> Self {
        Self { enclave, inner: Arc::new(Mutex::new(MachineInner::default())) }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        // Applying holds this lock too: the state and its log position are read together.
        let mut inner = self.inner.lock().await;
        let data = self
            .enclave
            .replicated_state()
            .map_err(|e| storage_error("snapshotting the decision state", e))?;
        inner.snapshots_built = inner.snapshots_built.saturating_add(1);
        let snapshot_id = match inner.last_applied {
            Some(last) => format!("{}-{}-{}", last.leader_id, last.index, inner.snapshots_built),
            None => format!("--{}", inner.snapshots_built),
        };
        let meta = SnapshotMeta {
            last_log_id: inner.last_applied,
            last_membership: inner.membership.clone(),
            snapshot_id,
        };
        inner.snapshot = Some(StoredSnapshot { meta: meta.clone(), data: data.clone() });
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>), StorageError<NodeId>>
    {
        let inner = self.inner.lock().await;
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.inner.lock().await;
        let mut outcomes = Vec::new();
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => outcomes.push(Applied::default()),
                EntryPayload::Normal(proposal) => {
                    outcomes
                        .push(Applied { outcome: Some(self.enclave.apply_committed(&proposal)) });
                }
                EntryPayload::Membership(membership) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), membership);
                    outcomes.push(Applied::default());
                }
            }
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let mut inner = self.inner.lock().await;
        self.enclave
            .install_replicated_state(&data)
            .map_err(|e| storage_error("installing a snapshot of the decision state", e))?;
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.snapshot = Some(StoredSnapshot { meta: meta.clone(), data });
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let inner = self.inner.lock().await;
        Ok(inner
            .snapshot
            .clone()
            .map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}
