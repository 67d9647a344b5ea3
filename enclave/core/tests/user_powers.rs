//! The user's own powers (each on the wallet's signature over a message this enclave rendered):
//! revoke its own grants, export a vault's master key or an agent's secret with HPKE to a key
//! only its browser holds, and retry a lost `create_grant` or import safely. Refusals revoke,
//! export and consume nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::*;
use enclave_core::authorization::RevokeScope;
use enclave_core::enclave::{
    ExportRequest, ExportSubject, Exported, NewAgentKind, VaultProof, WalletRevoke,
};
use enclave_core::{EnclaveError, ErrorCode, Pubkey};
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable as _, Kem as _, OpModeR, Serializable as _};
use sha2::{Digest, Sha256};

fn code<T: std::fmt::Debug>(r: Result<T, EnclaveError>) -> ErrorCode {
    r.expect_err("must be refused").code()
}

fn transfer(s: &Setup) -> Vec<u8> {
    let a = s.agent.agent_pubkey;
    legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), 1)])
}

fn revoke_as(
    f: &Fixture,
    signer: &User,
    wallet: Pubkey,
    scope: RevokeScope,
) -> Result<usize, EnclaveError> {
    let auth = f.enclave.authorize_revoke(wallet, scope).unwrap();
    f.enclave.revoke_signed(&WalletRevoke {
        wallet,
        scope,
        nonce: &auth.nonce,
        issued_at: auth.issued_at,
        signature: signer.sign(&auth.message),
    })
}

#[test]
fn a_wallet_revokes_its_own_grant_and_never_another_wallets() {
    let f = fixture();
    let victim = f.setup(0x80, policy());
    let attacker = f.setup(0x81, policy());
    f.sign(request(&victim, &transfer(&victim), 1)).unwrap();
    // The attacker's wallet signs a revocation naming the victim's grant id: nothing of the
    // victim's is revoked (the revocation is keyed by the signing wallet).
    revoke_as(&f, &attacker.user, attacker.wallet, RevokeScope::Record(victim.grant.grant_id))
        .unwrap();
    f.sign(request(&victim, &transfer(&victim), 2)).unwrap();
    // Signing for the victim's wallet with the attacker's key does not verify.
    let err =
        revoke_as(&f, &attacker.user, victim.wallet, RevokeScope::Record(victim.grant.grant_id))
            .unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthorizationSignatureInvalid);
    f.sign(request(&victim, &transfer(&victim), 3)).unwrap();
    // The victim revokes its own grant: its opened copy is dropped from memory too.
    let dropped =
        revoke_as(&f, &victim.user, victim.wallet, RevokeScope::Record(victim.grant.grant_id))
            .unwrap();
    assert_eq!(dropped, 1);
    assert_eq!(code(f.sign(request(&victim, &transfer(&victim), 4))), ErrorCode::GrantRevoked);
    // The attacker's own grant is untouched by all this.
    f.sign(request(&attacker, &transfer(&attacker), 5)).unwrap();
}

#[test]
fn a_wallet_revokes_all_its_grants_and_a_retry_is_answered_again() {
    let f = fixture();
    let s = f.setup(0x82, policy());
    let auth = f.enclave.authorize_revoke(s.wallet, RevokeScope::All).unwrap();
    assert!(auth.message.contains("Revoke every grant and scheduled transfer of this wallet"));
    assert!(auth.message.contains("- urn:signer:purpose:revoke\n"));
    assert!(auth.message.ends_with("- urn:signer:revoke:all"));
    let req = WalletRevoke {
        wallet: s.wallet,
        scope: RevokeScope::All,
        nonce: &auth.nonce,
        issued_at: auth.issued_at,
        signature: s.user.sign(&auth.message),
    };
    // A tampered scope does not verify, and revokes nothing.
    let tampered = WalletRevoke { scope: RevokeScope::Record([1; 16]), ..req };
    assert_eq!(code(f.enclave.revoke_signed(&tampered)), ErrorCode::AuthorizationSignatureInvalid);
    f.sign(request(&s, &transfer(&s), 1)).unwrap();
    f.enclave.revoke_signed(&req).unwrap();
    assert_eq!(code(f.sign(request(&s, &transfer(&s), 2))), ErrorCode::GrantRevoked);
    // The identical request again (a lost reply) is answered again.
    f.enclave.revoke_signed(&req).unwrap();
    // A grant made after the revocation works.
    let next = f.grant(&s.user, &s.vault, s.agent.agent_pubkey, policy(), 600);
    f.sign(request(&Fixture::with_grant(&s, next), &transfer(&s), 3)).unwrap();
}

/// The browser's side of an export: an X25519 key pair, and HPKE open.
struct Browser {
    secret: <X25519HkdfSha256 as hpke::Kem>::PrivateKey,
    public: [u8; 32],
}

impl Browser {
    fn new(seed: u8) -> Self {
        let (secret, public) = X25519HkdfSha256::derive_keypair(&[seed; 32]);
        Self { secret, public: public.to_bytes().as_slice().try_into().unwrap() }
    }

    fn open(&self, wallet: &Pubkey, record: &[u8], exported: &Exported) -> Vec<u8> {
        let info =
            [b"signer/export/v1".as_slice(), &wallet.0, Sha256::digest(record).as_slice()].concat();
        let enc = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(&exported.enc).unwrap();
        hpke::single_shot_open::<hpke::aead::AesGcm256, hpke::kdf::HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &self.secret,
            &enc,
            &info,
            &exported.ciphertext,
            &[],
        )
        .unwrap()
    }
}

fn export(
    f: &Fixture,
    s: &Setup,
    agent_record: Option<&[u8]>,
    recipient: [u8; 32],
    sign_for: [u8; 32],
) -> Result<Exported, EnclaveError> {
    let subject = |recipient| ExportSubject {
        wallet: s.wallet,
        vault: VaultProof { record: &s.vault.record, provenance: &s.vault.provenance },
        agent_record,
        recipient,
    };
    let auth = f.enclave.authorize_export(&subject(sign_for))?;
    let signature = s.user.sign(&auth.message);
    f.unlocked(|envelope| {
        f.enclave.export(&ExportRequest {
            subject: subject(recipient),
            nonce: &auth.nonce,
            issued_at: auth.issued_at,
            signature,
            envelope,
        })
    })
}

#[test]
fn a_vault_and_its_agents_export_only_to_the_key_the_wallet_signed_for() {
    let f = fixture();
    let s = f.setup(0x83, policy());
    let browser = Browser::new(1);
    // The vault's master key.
    let exported = export(&f, &s, None, browser.public, browser.public).unwrap();
    assert_eq!(exported.kind, "vault");
    let umk = browser.open(&s.wallet, &s.vault.record, &exported);
    assert_eq!(umk, f.umk_of(&s.vault.record).expose());
    // The agent's seed: it derives the agent's public key.
    let exported = export(&f, &s, Some(&s.agent.record), browser.public, browser.public).unwrap();
    assert_eq!(exported.kind, "seed");
    let seed: [u8; 32] = browser.open(&s.wallet, &s.agent.record, &exported).try_into().unwrap();
    let derived = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    assert_eq!(Pubkey(derived), s.agent.agent_pubkey);
    // A mnemonic agent: the exported entropy is the recovery phrase that derives the agent.
    let agent = f.agent(s.wallet, &s.vault, NewAgentKind::Mnemonic { account: 3 });
    let exported = export(&f, &s, Some(&agent.record), browser.public, browser.public).unwrap();
    assert_eq!(exported.kind, "mnemonic");
    let entropy = browser.open(&s.wallet, &agent.record, &exported);
    let words = bip39::Mnemonic::from_entropy(&entropy).unwrap().to_string();
    assert_eq!(words.split(' ').count(), 24);
    let key = enclave_core::agent_key::signing_key(
        enclave_core::records::AgentKind::Mnemonic { account: 3 },
        &bip39::Mnemonic::parse(&words).unwrap().to_entropy(),
    )
    .unwrap();
    assert_eq!(Pubkey(key.verifying_key().to_bytes()), agent.agent_pubkey);
    assert_eq!(f.enclave.status().exports, 3);

    // Never to a key the message does not name: the host swapping in its own key fails the
    // signature, and nothing is exported.
    let host = Browser::new(2);
    let err = export(&f, &s, None, host.public, browser.public).unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthorizationSignatureInvalid);
    assert_eq!(f.enclave.status().exports, 3);
    // An agent record of another wallet, or not made from this vault, is refused.
    let other = f.setup(0x84, policy());
    assert_eq!(
        code(export(&f, &s, Some(&other.agent.record), browser.public, browser.public)),
        ErrorCode::RecordInvalid
    );
    assert_eq!(f.enclave.status().exports, 3);
}

#[test]
fn an_export_message_says_what_leaves_and_to_which_key() {
    let f = fixture();
    let s = f.setup(0x85, policy());
    let subject = ExportSubject {
        wallet: s.wallet,
        vault: VaultProof { record: &s.vault.record, provenance: &s.vault.provenance },
        agent_record: Some(&s.agent.record),
        recipient: Browser::new(3).public,
    };
    let auth = f.enclave.authorize_export(&subject).unwrap();
    let recipient = hex::encode(subject.recipient);
    assert!(
        auth.message.contains(&format!(
            "Export the seed of agent {} to the key {recipient} your browser holds. Whoever holds \
             it can move the agent's funds outside every limit and grant.",
            s.agent.agent_pubkey
        )),
        "{}",
        auth.message
    );
    assert!(auth.message.contains(&format!("- urn:signer:export-recipient:x25519:{recipient}")));
    assert!(auth.message.contains(&format!(
        "- urn:signer:export-record-sha256:{}",
        hex::encode(Sha256::digest(&s.agent.record))
    )));
}

#[test]
fn a_lost_create_grant_reply_is_retried_safely_and_any_other_reuse_is_a_replay() {
    let f = fixture();
    let s = f.setup(0x86, policy());
    let terms = f.terms(s.wallet, s.agent.agent_pubkey, policy(), 600);
    let auth = f.enclave.authorize_grant(&terms).unwrap();
    let signature = s.user.sign(&auth.message);
    let create = |signature| {
        f.unlocked(|envelope| {
            f.enclave.create_grant(&enclave_core::enclave::CreateGrant {
                grant: terms.clone(),
                nonce: &auth.nonce,
                issued_at: auth.issued_at,
                signature,
                vault: VaultProof { record: &s.vault.record, provenance: &s.vault.provenance },
                envelope,
            })
        })
    };
    let first = create(signature).unwrap();
    let again = create(signature).unwrap();
    assert_eq!(
        (again.grant_id, again.issued_at, again.expires_at),
        (first.grant_id, first.issued_at, first.expires_at)
    );
    // Both records are the one grant: same counters, and one revocation stops both.
    let a = Fixture::with_grant(&s, first);
    let b = Fixture::with_grant(&s, again);
    f.sign(request(&a, &transfer(&s), 1)).unwrap();
    f.sign(request(&b, &transfer(&s), 2)).unwrap();
    // Another signature over the same nonce (a malleated one is refused earlier; another key's
    // does not verify) never makes a second grant.
    assert_eq!(code(create(malleate(signature))), ErrorCode::AuthorizationSignatureNoncanonical);
    f.enclave.revoke(enclave_core::enclave::RevokeTarget::Record(a.grant.grant_id)).unwrap();
    assert_eq!(code(f.sign(request(&b, &transfer(&s), 3))), ErrorCode::GrantRevoked);
}

#[test]
fn while_the_kill_switch_is_engaged_no_grant_message_is_issued_but_users_keep_their_powers() {
    let f = fixture();
    let s = f.setup(0x87, policy());
    let terms = f.terms(s.wallet, s.agent.agent_pubkey, policy(), 600);
    let pending = f.enclave.authorize_grant(&terms).unwrap();
    f.enclave.set_kill_switch(true).unwrap();
    assert_eq!(code(f.enclave.authorize_grant(&terms)), ErrorCode::KillSwitch);
    let err = f
        .unlocked(|envelope| {
            f.enclave.create_grant(&enclave_core::enclave::CreateGrant {
                grant: terms.clone(),
                nonce: &pending.nonce,
                issued_at: pending.issued_at,
                signature: s.user.sign(&pending.message),
                vault: VaultProof { record: &s.vault.record, provenance: &s.vault.provenance },
                envelope,
            })
        })
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::KillSwitch);
    // Revoking and exporting stay the user's.
    revoke_as(&f, &s.user, s.wallet, RevokeScope::Record(s.grant.grant_id)).unwrap();
    let browser = Browser::new(4);
    export(&f, &s, None, browser.public, browser.public).unwrap();
    f.enclave.set_kill_switch(false).unwrap();
    f.enclave.authorize_grant(&terms).unwrap();
}
