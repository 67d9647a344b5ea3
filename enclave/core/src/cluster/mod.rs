//! A replicated cluster of enclaves: the I/O-free cryptographic part.
//!
//! Members reach each other only through their hosts, which forward opaque bytes and may drop,
//! delay, reorder, duplicate or replay them. What a member relies on instead:
//!
//! - [`member`]: who a member is. An attested [`MemberCard`] binds a per-boot X25519 channel key
//!   to the enclave id (the hash of the RSA recipient key in every document) through
//!   `user_data`; [`verify_member`] checks it against the trust anchor and the trusted images.
//!   [`cluster_id`] names a cluster after its founders. A member of an image outside the trusted
//!   set is a [`NewImageMember`]: only KMS can vouch for it (an upgrade, `enclave::upgrade`).
//! - [`channel`]: what members say. HPKE Auth-mode messages between admitted members, bound to
//!   sender and recipient, numbered, with a sliding replay window; every failure from the
//!   cryptographic step on is one [`ChannelError::Rejected`].
//!
//! Wire formats and size limits are in each module's documentation.

pub mod channel;
pub mod member;

pub use channel::{ChannelError, Members, Opened, Opener, ReplayWindow, Sealer};
pub use member::{
    Candidate, MemberCard, MemberError, MemberKey, NewImageMember, VerifiedMember, cluster_id,
    member_binding, node_id, verify_candidate, verify_member, verify_member_at_own_time,
};
