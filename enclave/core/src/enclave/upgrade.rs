//! Upgrades of a cluster (SPEC §16, cluster): a member of a new image joins by a membership
//! change, vouched for by KMS.
//!
//! A member trusts the images it was built to trust: its own and its configured predecessors. A
//! new image is, by construction, in no running member's set (no measured config can name an
//! image built after it). As with handover, the authority over which images may decide is the
//! KMS key policy: only an image it admits can open a key wrapped to the pinned KMS key.
//!
//! ```text
//! L = the leader, N = the newcomer (a card that verifies in every respect but its image)
//! 1. L  challenge(card_N)  K ← 32 random bytes; wrapped = RSA-OAEP-SHA-256(pinned KMS key, K)
//!                          kept for N, at most 300 s, one use
//!               → wrapped
//!    parent: KMS Decrypt(wrapped, Recipient = N's card document) → envelope for N
//!            (KMS refuses the Recipient of any image its key policy does not admit)
//! 2. N  prove(L, envelope) K ← envelope; proof = HMAC-SHA256(K, "signer/cluster/upgrade/v1" ‖ L ‖ N)
//!               → proof
//! 3. L  vouch(card_N, proof)   K for N taken (one try), proof checked in constant time; N is
//!                          then admitted like any member (learner, catch-up, voter).
//! ```
//!
//! Why it holds: the envelope is addressed to N's attested recipient key, so only N's enclave
//! can open it, and KMS makes it only for an image its policy admits; the proof names N, and
//! N's card binds N's channel key, so the proof admits that channel key and no other. K is
//! fresh per challenge and used once, so a recorded proof opens nothing later. An envelope is
//! unauthenticated: a host could hand N a key of its own, but then N's proof is under the
//! host's key and L refuses it. N needs no commitment from L (unlike a handover successor): N
//! takes nothing from K, it only proves; what N then trusts arrives over the channel from
//! members whose images N's own trusted set names.
//!
//! Every failure at step 3 is one answer ([`EnclaveError::Upgrade`], one text): no challenge,
//! an expired one, a wrong proof.

use rsa::Oaep;
use sha2::Sha256;
use signer_types::ids::EnclaveId;
use subtle::ConstantTimeEq;

use super::Enclave;
use crate::cluster::{NewImageMember, VerifiedMember};
use crate::error::EnclaveError;
use crate::secret::{Secret32, seeded_rng};

const UPGRADE_DOMAIN: &[u8] = b"signer/cluster/upgrade/v1";
/// How long a challenge waits for its proof.
pub const CHALLENGE_SECONDS: u64 = 300;
/// Challenges kept at once (the oldest gives way).
pub const MAX_CHALLENGES: usize = 8;

const NOT_PROVEN: &str = "the new image's member did not prove that KMS admits its image";

fn refused(why: impl Into<String>) -> EnclaveError {
    EnclaveError::Upgrade(why.into())
}

/// `HMAC-SHA256(K, "signer/cluster/upgrade/v1" ‖ leader ‖ newcomer)`.
fn upgrade_proof(key: &Secret32, leader: EnclaveId, newcomer: EnclaveId) -> [u8; 32] {
    super::handover::keyed(key, UPGRADE_DOMAIN, leader, newcomer)
}

impl Enclave {
    /// Step 1, on the leader: a fresh key for `newcomer`, wrapped to the pinned KMS key.
    pub fn upgrade_challenge(&self, newcomer: &NewImageMember) -> Result<Vec<u8>, EnclaveError> {
        let key = Secret32::random(&*self.rng)?;
        let mut oaep_rng = seeded_rng(&*self.rng)?;
        let wrapped = self
            .config
            .kms_public_key
            .encrypt(&mut oaep_rng, Oaep::<Sha256>::new(), key.expose())
            .map_err(|e| refused(format!("wrapping the upgrade key: {e}")))?;
        let now = self.clock.now();
        self.upgrade_keys.lock().insert_evicting(
            newcomer.enclave_id(),
            key,
            now.saturating_add(CHALLENGE_SECONDS),
            now,
        );
        Ok(wrapped)
    }

    /// Step 2, on the newcomer: the key from the KMS envelope made for this enclave, as a proof
    /// for `leader`. A failed envelope is the one envelope answer.
    pub fn upgrade_prove(
        &self,
        leader: EnclaveId,
        envelope: &[u8],
    ) -> Result<[u8; 32], EnclaveError> {
        let proof = self
            .open_with_envelope(envelope, |key| Ok(upgrade_proof(key, leader, self.id)))?
            .ok_or_else(|| refused("the KMS envelope is addressed to another enclave"))?;
        Ok(proof)
    }

    /// Step 3, on the leader: the newcomer as a member, if its proof opens this enclave's
    /// challenge for it (taken whatever the outcome).
    pub fn upgrade_vouch(
        &self,
        newcomer: NewImageMember,
        proof: &[u8; 32],
    ) -> Result<VerifiedMember, EnclaveError> {
        let id = newcomer.enclave_id();
        let now = self.clock.now();
        let key = {
            let mut keys = self.upgrade_keys.lock();
            let live = keys.expiry_of(&id).is_some_and(|expires| expires > now);
            keys.remove(&id).filter(|_| live)
        };
        let expected = key.map(|k| upgrade_proof(&k, self.id, id));
        match expected {
            Some(expected) if bool::from(expected.ct_eq(proof)) => Ok(newcomer.into_vouched()),
            _ => Err(refused(NOT_PROVEN)),
        }
    }
}
