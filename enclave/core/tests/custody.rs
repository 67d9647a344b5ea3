//! UMK custody, user authorization (SPEC §15) and provenance: vaults are generated in the enclave
//! or imported on the wallet's signature; agents and grants are made only from proven vaults;
//! grants exist only because the wallet signed the message the enclave rendered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use common::*;
use enclave_core::authorization;
use enclave_core::enclave::{
    AuthorizeGrant, CreateAgent, CreateGrant, ImportVault, NewAgentKind, VaultProof,
};
use enclave_core::records::{KeyWrap, SealedGrant, VaultHeader, VaultOrigin, seal_vault};
use enclave_core::{EnclaveError, ErrorCode, OsRandom, Pubkey, Secret32};
use rsa::pkcs8::DecodePublicKey;

fn code<T: std::fmt::Debug>(r: Result<T, EnclaveError>) -> ErrorCode {
    r.expect_err("must be refused").code()
}

/// A signed grant request, ready to be sent (or tampered with).
#[derive(Clone)]
struct Signed {
    terms: AuthorizeGrant,
    nonce: String,
    issued_at: u64,
    signature: [u8; 64],
    message: String,
}

fn authorize(f: &Fixture, user: &User, terms: AuthorizeGrant) -> Signed {
    let auth = f.enclave.authorize_grant(&terms).unwrap();
    Signed {
        signature: user.sign(&auth.message),
        terms,
        nonce: auth.nonce,
        issued_at: auth.issued_at,
        message: auth.message,
    }
}

fn submit(
    f: &Fixture,
    s: &Setup,
    signed: &Signed,
) -> Result<enclave_core::enclave::CreatedGrant, EnclaveError> {
    f.unlocked(|envelope| {
        f.enclave.create_grant(&CreateGrant {
            grant: signed.terms.clone(),
            nonce: &signed.nonce,
            issued_at: signed.issued_at,
            signature: signed.signature,
            vault: VaultProof { record: &s.vault.record, provenance: &s.vault.provenance },
            envelope,
        })
    })
}

#[test]
fn the_message_is_sign_in_with_solana_text_with_every_limit_and_binding() {
    let f = fixture();
    let s = f.setup(0x20, policy());
    let terms = f.terms(s.wallet, s.agent.agent_pubkey, policy(), 900);
    let auth = f.enclave.authorize_grant(&terms).unwrap();
    let lines: Vec<&str> = auth.message.split('\n').collect();
    assert_eq!(lines[0], "app.example.com wants you to sign in with your Solana account:");
    assert_eq!(lines[1], s.wallet.to_string());
    assert_eq!(lines[2], "");
    assert!(lines[3].starts_with(&format!(
        "Allow bot b0b0b0b0-b0b0-b0b0-b0b0-b0b0b0b0b0b0 to sign with agent {} until 2026-01-01T12:15:00Z (15m). Limits: SOL 2 per tx and 5 per day",
        s.agent.agent_pubkey
    )), "{}", lines[3]);
    assert_eq!(lines[4], "");
    assert_eq!(lines[5], "URI: https://app.example.com");
    assert_eq!(lines[6], "Version: 1");
    assert_eq!(lines[7], "Chain ID: mainnet");
    assert_eq!(lines[8], format!("Nonce: {}", auth.nonce));
    assert_eq!(lines[9], "Issued At: 2026-01-01T12:00:00Z");
    assert_eq!(lines[10], "Expiration Time: 2026-01-01T12:10:00Z");
    assert_eq!(lines[11], "Resources:");
    assert_eq!(lines[12], "- urn:signer:purpose:grant");
    assert_eq!(lines[13], format!("- urn:signer:enclave:{}", f.enclave.id()));
    assert_eq!(lines[17], format!("- urn:signer:policy-sha256:{}", hex::encode(policy().sha256())));
    assert!(auth.message.bytes().all(|b| b == b'\n' || (0x20..0x7f).contains(&b)));
    assert!(!auth.message.ends_with('\n'));
    assert_eq!(auth.nonce.len(), 32, "128 random bits");
    assert_ne!(auth.nonce, f.enclave.authorize_grant(&terms).unwrap().nonce);
}

#[test]
fn each_refusal_of_an_authorization_has_its_own_code_and_seals_nothing() {
    let f = fixture();
    let s = f.setup(0x21, policy());
    let terms = f.terms(s.wallet, s.agent.agent_pubkey, policy(), 900);
    let grants_before = f.enclave.status().nonces_used;

    // Another wallet signed.
    let mut signed = authorize(&f, &s.user, terms.clone());
    signed.signature = User::new(0x99).sign(&signed.message);
    assert_eq!(code(submit(&f, &s, &signed)), ErrorCode::AuthorizationSignatureInvalid);

    // A field differs from what was signed: policy, bot, agent, lifetime, issue time, nonce.
    type Tamper = Box<dyn Fn(&mut Signed)>;
    let tamper: Vec<(&str, Tamper)> = vec![
        ("policy", Box::new(|x| x.terms.policy.max_lamports_per_day += 1)),
        ("bot", Box::new(|x| x.terms.bot_id[0] ^= 1)),
        ("agent", Box::new(|x| x.terms.agent_pubkey = Pubkey([7; 32]))),
        ("ttl", Box::new(|x| x.terms.ttl_seconds += 1)),
        ("issued_at", Box::new(|x| x.issued_at -= 1)),
        ("nonce", Box::new(|x| x.nonce = "0".repeat(32))),
        ("wallet", Box::new(|x| x.terms.wallet = User::new(0x98).wallet)),
    ];
    for (name, change) in &tamper {
        let mut signed = authorize(&f, &s.user, terms.clone());
        change(&mut signed);
        let r = submit(&f, &s, &signed);
        assert_eq!(code(r), ErrorCode::AuthorizationSignatureInvalid, "{name}");
    }

    // Another domain or chain: a message rendered for another deployment never verifies here.
    for other in [
        MessageFieldsDomain { domain: "evil.example.com", chain_id: "mainnet" },
        MessageFieldsDomain { domain: "app.example.com", chain_id: "devnet" },
    ] {
        let mut signed = authorize(&f, &s.user, terms.clone());
        let mut d = domain();
        d.domain = other.domain.into();
        d.chain_id = other.chain_id.into();
        let message = f.grant_message(&d, &terms, &signed.nonce, signed.issued_at);
        signed.signature = s.user.sign(&message);
        assert_eq!(code(submit(&f, &s, &signed)), ErrorCode::AuthorizationSignatureInvalid);
    }

    assert_eq!(f.enclave.status().nonces_used, grants_before, "no nonce was consumed");

    // Expired: the message is valid ten minutes (the setup's used nonce expires with it).
    let signed = authorize(&f, &s.user, terms.clone());
    f.clock.advance(600);
    assert_eq!(code(submit(&f, &s, &signed)), ErrorCode::AuthorizationExpired);
    f.clock.advance(1);

    // Malleated: S + L verifies for a lax verifier, not here.
    let mut signed = authorize(&f, &s.user, terms.clone());
    signed.signature = malleate(signed.signature);
    assert_eq!(code(submit(&f, &s, &signed)), ErrorCode::AuthorizationSignatureNoncanonical);

    assert_eq!(f.enclave.status().nonces_used, 0, "no nonce was consumed");

    // And the honest one works once; its replay is refused.
    let signed = authorize(&f, &s.user, terms.clone());
    let grant = submit(&f, &s, &signed).unwrap();
    assert_eq!(grant.grant_id, authorization::grant_id(&signed.signature));
    assert_eq!(grant.issued_at, signed.issued_at);
    assert_eq!(grant.expires_at, signed.issued_at + 900);
    // The same signature again is the same grant (a lost reply); the nonce under any other
    // signed message (a client that rendered its own, with another lifetime) is a replay.
    assert_eq!(submit(&f, &s, &signed).unwrap().grant_id, grant.grant_id);
    let mut other = signed.clone();
    other.terms.ttl_seconds = 901;
    other.signature =
        s.user.sign(&f.grant_message(&domain(), &other.terms, &other.nonce, other.issued_at));
    assert_eq!(code(submit(&f, &s, &other)), ErrorCode::AuthorizationReplayed);
}

struct MessageFieldsDomain {
    domain: &'static str,
    chain_id: &'static str,
}

/// Messages carry the enclave's own decision time, which never goes back: a clock that steps
/// back cannot date a new message before an earlier one (nor make an issued message "not yet
/// valid"). `authorization_not_yet_valid` remains for a message whose time is ahead of that
/// decision time, which only a message this enclave did not issue could be.
#[test]
fn messages_are_dated_by_a_decision_time_that_never_goes_back() {
    let f = fixture();
    let s = f.setup(0x22, policy());
    let terms = f.terms(s.wallet, s.agent.agent_pubkey, policy(), 900);
    let first = authorize(&f, &s.user, terms.clone());
    f.clock.set(T0 - 61);
    let second = authorize(&f, &s.user, terms);
    assert_eq!((first.issued_at, second.issued_at), (T0, T0));
    // A message dated ahead of it is refused before anything else is looked at.
    let mut ahead = second.clone();
    ahead.issued_at = T0 + 61;
    assert_eq!(code(submit(&f, &s, &ahead)), ErrorCode::AuthorizationNotYetValid);
}

#[test]
fn one_signature_is_one_grant_and_another_enclave_refuses_it() {
    let clock = Arc::new(ManualClock(AtomicU64::new(T0), AtomicU64::new(0)));
    let here = fixture_on(config(), Arc::clone(&clock), 0x10, None);
    let s = here.setup(0x23, policy());
    let terms = here.terms(s.wallet, s.agent.agent_pubkey, policy(), 900);
    let signed = authorize(&here, &s.user, terms);
    let grant = submit(&here, &s, &signed).unwrap();
    // A second enclave of the same image (another instance, another id) renders the message
    // with its own id: the signature does not verify there, and nothing is minted.
    let pem = {
        use rsa::pkcs8::EncodePrivateKey;
        let mut rng = enclave_core::secret::seeded_rng(&OsRandom).unwrap();
        rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap().to_pkcs8_pem(Default::default()).unwrap()
    };
    let there = fixture_on(config(), clock, 0x10, Some(&pem));
    assert_ne!(there.enclave.id(), here.enclave.id());
    assert_eq!(code(submit(&there, &s, &signed)), ErrorCode::AuthorizationSignatureInvalid);
    // The grant itself is refused there as well (its header names `here`).
    let a = s.agent.agent_pubkey;
    let tx = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), 1)]);
    let err = there.sign(request(&Fixture::with_grant(&s, grant), &tx, 1)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::WrongEnclave, "{err}");
}

#[test]
fn honest_vault_agent_grant_and_old_provenance_still_verifies() {
    let f = fixture();
    let s = f.setup(0x24, policy());
    // Thirty days later the provenance documents' certificates (3 h) have long expired; they
    // are verified at their own timestamp, so the vault still makes agents and grants.
    f.clock.advance(30 * 86_400);
    let agent = f.agent(s.wallet, &s.vault, NewAgentKind::Mnemonic { account: 1 });
    let grant = f.grant(&s.user, &s.vault, agent.agent_pubkey, policy(), 600);
    let a = agent.agent_pubkey;
    let tx = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), 1)]);
    let setup = Setup { user: User::new(0x24), wallet: s.wallet, vault: s.vault, agent, grant };
    verify_independently(&f.sign(request(&setup, &tx, 1)).unwrap().transaction);
}

fn sealed_outside(f: &Fixture, wallet: Pubkey, origin: VaultOrigin) -> Vec<u8> {
    let kms_pub = rsa::RsaPublicKey::from_public_key_der(&f.kms_spki).unwrap();
    let header = VaultHeader { wallet, vault_id: [0x0e; 16], created_at: T0, origin };
    seal_vault(&header, &Secret32::new([0x77; 32]), KeyWrap::Rsa(&kms_pub), &OsRandom).unwrap()
}

#[test]
fn agents_from_unproven_vaults_are_impossible() {
    let f = fixture();
    let s = f.setup(0x25, policy());
    let create = |record: &[u8], provenance: &[u8], wallet: Pubkey| {
        f.unlocked(|envelope| {
            f.enclave.create_agent(&CreateAgent {
                wallet,
                vault: VaultProof { record, provenance },
                kind: NewAgentKind::Seed,
                envelope,
            })
        })
    };
    // A vault sealed by test code with a UMK it knows, generated or imported, with no provenance,
    // or with the provenance of another vault.
    for origin in [VaultOrigin::Generated, VaultOrigin::Imported] {
        let forged = sealed_outside(&f, s.wallet, origin);
        assert_eq!(code(create(&forged, b"", s.wallet)), ErrorCode::ProvenanceInvalid);
        let err = create(&forged, &s.vault.provenance, s.wallet).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ProvenanceInvalid);
        assert!(err.to_string().contains("user_data mismatch"), "{err}");
    }
    // The only document a caller can ask for carries its nonce and no user_data: even with the
    // forged vault's binding as the nonce, it is no provenance.
    let forged = sealed_outside(&f, s.wallet, VaultOrigin::Generated);
    let binding = signer_types::provenance::Subject::vault(&forged).unwrap().user_data();
    let callers = f.enclave.attest_for_caller(Some(&binding)).unwrap();
    let err = create(&forged, &callers, s.wallet).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ProvenanceInvalid, "{err}");
    // A tampered document.
    let mut tampered = s.vault.provenance.clone();
    let n = tampered.len();
    tampered[n - 10] ^= 1;
    assert_eq!(code(create(&s.vault.record, &tampered, s.wallet)), ErrorCode::ProvenanceInvalid);
    // The agent's provenance presented as the vault's (another record).
    assert_eq!(
        code(create(&s.vault.record, &s.agent.provenance, s.wallet)),
        ErrorCode::ProvenanceInvalid
    );
    // Another wallet's vault.
    let other = f.setup(0x26, policy());
    assert_eq!(
        code(create(&other.vault.record, &other.vault.provenance, s.wallet)),
        ErrorCode::RecordInvalid
    );
    // Grants from an unproven vault are refused the same way.
    let forged = sealed_outside(&f, s.wallet, VaultOrigin::Generated);
    let signed = authorize(&f, &s.user, f.terms(s.wallet, s.agent.agent_pubkey, policy(), 600));
    let r = f.unlocked(|envelope| {
        f.enclave.create_grant(&CreateGrant {
            grant: signed.terms.clone(),
            nonce: &signed.nonce,
            issued_at: signed.issued_at,
            signature: signed.signature,
            vault: VaultProof { record: &forged, provenance: &s.vault.provenance },
            envelope,
        })
    });
    assert_eq!(code(r), ErrorCode::ProvenanceInvalid);
    assert_eq!(f.kms_calls.load(std::sync::atomic::Ordering::SeqCst), 0, "no KMS call for it");
}

#[test]
fn provenance_from_an_image_outside_the_trusted_set_is_refused_unless_configured() {
    let clock = Arc::new(ManualClock(AtomicU64::new(T0), AtomicU64::new(0)));
    let old_image = fixture_on(config(), Arc::clone(&clock), 0x40, None);
    let s = old_image.setup(0x27, policy());
    let create = |f: &Fixture| {
        f.unlocked(|envelope| {
            f.enclave.create_agent(&CreateAgent {
                wallet: s.wallet,
                vault: VaultProof { record: &s.vault.record, provenance: &s.vault.provenance },
                kind: NewAgentKind::Seed,
                envelope,
            })
        })
    };
    let new_image = fixture_on(config(), Arc::clone(&clock), 0x50, None);
    let err = create(&new_image).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ProvenanceInvalid);
    assert!(err.to_string().contains("none of the 1 trusted images"), "{err}");
    // An upgrade lists its predecessor: then the old image's vaults are accepted.
    let mut upgrade = config();
    upgrade.predecessor_images.push(old_image.nsm.image());
    let successor = fixture_on(upgrade, clock, 0x50, None);
    assert_eq!(successor.enclave.trusted_images().len(), 2);
    create(&successor).unwrap();
}

#[test]
fn a_browser_sealed_vault_becomes_usable_on_the_wallets_signed_import() {
    let f = fixture();
    let user = User::new(0x28);
    let record = sealed_outside(&f, user.wallet, VaultOrigin::Imported);
    let auth = f.enclave.authorize_import(user.wallet, &record).unwrap();
    assert!(
        auth.message.contains("Import vault 0e0e0e0e-0e0e-0e0e-0e0e-0e0e0e0e0e0e"),
        "{}",
        auth.message
    );
    assert!(auth.message.contains("- urn:signer:purpose:import-vault"));
    let import = |signature: [u8; 64], nonce: &str| {
        f.unlocked(|envelope| {
            f.enclave.import_vault(&ImportVault {
                wallet: user.wallet,
                vault_record: &record,
                nonce,
                issued_at: auth.issued_at,
                signature,
                envelope,
            })
        })
    };
    let err = import(User::new(0x97).sign(&auth.message), &auth.nonce).unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthorizationSignatureInvalid);
    let imported = import(user.sign(&auth.message), &auth.nonce).unwrap();
    assert_eq!(imported.vault_id, [0x0e; 16]);
    // The same signed import again (a lost reply) gets the same answer, not a replay.
    assert_eq!(import(user.sign(&auth.message), &auth.nonce).unwrap().vault_id, [0x0e; 16]);
    // With its provenance, the imported vault makes agents and grants.
    let vault = enclave_core::enclave::CreatedVault {
        vault_id: imported.vault_id,
        record: record.clone(),
        provenance: imported.provenance,
    };
    let agent = f.agent(user.wallet, &vault, NewAgentKind::Seed);
    let grant = f.grant(&user, &vault, agent.agent_pubkey, policy(), 600);
    assert_eq!(SealedGrant::parse(&grant.record).unwrap().header.wallet, user.wallet);
    // A generated vault is not imported (it has provenance already).
    let generated = f.vault(user.wallet);
    assert_eq!(
        code(f.enclave.authorize_import(user.wallet, &generated.record)),
        ErrorCode::RecordInvalid
    );
}
