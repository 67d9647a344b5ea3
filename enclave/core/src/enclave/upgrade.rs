//! Upgrades of a cluster (SPEC §16, cluster): a member of another image joins by a membership
//! change, vouched for by KMS.
//!
//! A member trusts for admission only its own image. A new image is, by construction, in no
//! running member's measured config, and a predecessor image may since have been dropped from
//! the key policy (it had a flaw): for any other image, as with handover, the authority over
//! which images may decide is the KMS key policy, since only an image it admits can open a key
//! wrapped to the pinned KMS key.
//!
//! ```text
//! L = the leader, N = the newcomer (a card that verifies in every respect but its image)
//! 1. L  challenge(card_N)  K ← 32 random bytes; wrapped = RSA-OAEP-SHA-256(pinned KMS key, K)
//!                          kept for N's id with SHA-256(card_N), at most 300 s, one use
//!               → wrapped
//!    parent: KMS Decrypt(wrapped, Recipient = N's card document) → envelope for N's key
//!            (KMS refuses the Recipient of any image its key policy does not admit)
//! 2. N  prove(L, envelope) K ← envelope;
//!                          proof = HMAC-SHA256(K, "signer/cluster/upgrade/v2" ‖ L ‖ N
//!                                  ‖ N's own channel key ‖ image_digest(N's own image))
//!               → proof
//! 3. L  vouch(card_N, proof)   the challenge for N's id taken (one try), the same card
//!                          required, proof recomputed from the card's id, channel key and
//!                          image and checked in constant time; N is then admitted like any
//!                          member (learner, catch-up, voter).
//!
//! image_digest = SHA-256("signer/cluster/image/v1" ‖ for each image PCR ascending:
//!                        index u8 ‖ length u8 ‖ value)
//! ```
//!
//! Why it holds. An enclave id is the hash of the `public_key` in a document, and an image's
//! code chooses what it puts there: an untrusted image can claim any id. So the proof names what
//! the honest enclave behind the envelope's key knows of itself — its id, its own channel key
//! and its own measured image — and the leader admits the card only if all three are the card's.
//! A card that borrows an admitted enclave's id (to have that enclave answer the challenge)
//! names another image or another channel key than the proof, and is refused. The envelope is
//! made for the key in the card's document, which only the enclave holding it can open, and
//! KMS makes it only for an image its key policy admits; the proof is that enclave's, computed
//! by its own code. K is fresh per challenge and used once, so a recorded proof opens nothing
//! later. An envelope is unauthenticated: a host could hand N a key of its own, but then N's
//! proof is under the host's key and L refuses it. N takes nothing from K, it only proves;
//! what N then trusts arrives over the channel from members whose images its own trusted set
//! names.
//!
//! Every failure at step 3 is one answer ([`EnclaveError::Upgrade`], one text): no challenge,
//! an expired one, another card, a wrong proof.

use rsa::Oaep;
use sha2::{Digest, Sha256};
use signer_types::ids::EnclaveId;
use subtle::ConstantTimeEq;

use super::{Enclave, Image};
use crate::cluster::{NewImageMember, VerifiedMember};
use crate::error::EnclaveError;
use crate::secret::{Secret32, seeded_rng};

const UPGRADE_DOMAIN: &[u8] = b"signer/cluster/upgrade/v2";
const IMAGE_DOMAIN: &[u8] = b"signer/cluster/image/v1";
/// How long a challenge waits for its proof.
pub const CHALLENGE_SECONDS: u64 = 300;
/// Challenges kept at once (the oldest gives way).
pub const MAX_CHALLENGES: usize = 8;

const NOT_PROVEN: &str = "the new image's member did not prove that KMS admits its image";

/// A challenge for one newcomer: the key and the card it was made for.
pub(super) struct Challenge {
    key: Secret32,
    card_sha256: [u8; 32],
}

fn refused(why: impl Into<String>) -> EnclaveError {
    EnclaveError::Upgrade(why.into())
}

/// `image_digest` (module docs).
pub fn image_digest(image: &Image) -> [u8; 32] {
    let mut digest = Sha256::new();
    digest.update(IMAGE_DOMAIN);
    for (index, value) in image {
        digest.update([*index, u8::try_from(value.len()).unwrap_or(u8::MAX)]);
        digest.update(value);
    }
    digest.finalize().into()
}

/// The proof (module docs, step 2).
fn upgrade_proof(
    key: &Secret32,
    leader: EnclaveId,
    newcomer: EnclaveId,
    channel_public: &[u8; 32],
    image: &[u8; 32],
) -> [u8; 32] {
    super::handover::keyed_parts(
        key,
        &[UPGRADE_DOMAIN, &leader.0, &newcomer.0, channel_public, image],
    )
}

fn card_sha256(newcomer: &NewImageMember) -> [u8; 32] {
    Sha256::new()
        .chain_update(newcomer.channel_public())
        .chain_update(newcomer.document())
        .finalize()
        .into()
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
            Challenge { key, card_sha256: card_sha256(newcomer) },
            now.saturating_add(CHALLENGE_SECONDS),
            now,
        );
        Ok(wrapped)
    }

    /// Step 2, on the newcomer: the key from the KMS envelope made for this enclave, as a proof
    /// for `leader` naming this enclave, its own channel key (`channel_public`: the member key
    /// this enclave's own cluster code holds, never a caller's) and its own image. A failed
    /// envelope is the one envelope answer.
    pub fn upgrade_prove(
        &self,
        leader: EnclaveId,
        channel_public: &[u8; 32],
        envelope: &[u8],
    ) -> Result<[u8; 32], EnclaveError> {
        let image = image_digest(self.trusted_images.first().unwrap_or(&Image::new()));
        let proof = self
            .open_with_envelope(envelope, |key| {
                Ok(upgrade_proof(key, leader, self.id, channel_public, &image))
            })?
            .ok_or_else(|| refused("the KMS envelope is addressed to another enclave"))?;
        Ok(proof)
    }

    /// Step 3, on the leader: the newcomer as a member, if its proof answers this enclave's
    /// challenge for this very card (the challenge is taken whatever the outcome).
    pub fn upgrade_vouch(
        &self,
        newcomer: NewImageMember,
        proof: &[u8; 32],
    ) -> Result<VerifiedMember, EnclaveError> {
        let id = newcomer.enclave_id();
        let now = self.clock.now();
        let challenge = {
            let mut challenges = self.upgrade_keys.lock();
            let live = challenges.expiry_of(&id).is_some_and(|expires| expires > now);
            challenges.remove(&id).filter(|_| live)
        };
        let expected = challenge.filter(|c| c.card_sha256 == card_sha256(&newcomer)).map(|c| {
            upgrade_proof(
                &c.key,
                self.id,
                id,
                &newcomer.channel_public(),
                &image_digest(&newcomer.image()),
            )
        });
        match expected {
            Some(expected) if bool::from(expected.ct_eq(proof)) => Ok(newcomer.into_vouched()),
            _ => Err(refused(NOT_PROVEN)),
        }
    }
}
