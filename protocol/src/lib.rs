//! The parent ↔ enclave protocol (SPEC §8).
//!
//! - [`frame`]: `u32` big-endian length ‖ payload, payload ≤ 256 KiB, checked before allocating.
//! - [`messages`]: CBOR requests and responses tagged with a request id; `hello` with the protocol
//!   version opens every connection.
//! - [`transport`]: vsock (production) or Unix socket (simulation) behind one boxed stream type.
//! - [`client`]: a multiplexed connection and a reconnecting client for the parent.
#![forbid(unsafe_code)]

pub mod client;
pub mod frame;
pub mod messages;
pub mod transport;

pub use client::{ClientError, Connection, EnclaveClient};
pub use frame::{FrameError, MAX_FRAME_LEN, read_frame, write_frame};
pub use messages::{
    AgentKindMsg, ClusterMemberInfo, ClusterPeer, ClusterStatusReply, CreateAgentOp, CreateGrantOp,
    ErrorReply, ExportOp, ExportSubjectMsg, GrantFields, HandoverStage, HandoverSummary,
    ImportVaultOp, Op, Outcome, PROTOCOL_VERSION, ReceiptsReply, RelayedMessage, Reply, Request,
    Response, RevokeMsg, RevokeScopeMsg, RevokeSignedOp, SignOp, SignScheduledOp, StatusReply,
};
pub use transport::{BoxedReader, BoxedWriter, Endpoint, Listener, Stream};
