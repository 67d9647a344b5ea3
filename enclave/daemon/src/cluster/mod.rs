//! A cluster of enclaves deciding together (SPEC §16, cluster): Raft (`openraft`) among the
//! members, the decision state as its state machine (enclave-core's commands, applied in log
//! order), messages between members over attested channels relayed by the untrusted hosts.
//!
//! - [`raft`]: the type configuration, the in-memory log and the state machine over
//!   [`enclave_core::Enclave::apply_committed`].
//! - The log lives only in enclave memory. A member that restarts has a new identity (its keys
//!   are generated at boot) and joins again as a new member, catching up by snapshot; an identity
//!   is never reused, so no member can forget a vote it gave or an entry it acknowledged.

pub mod node;
pub mod raft;
pub mod relay;
