//! Shared fixtures: an enclave with a test KMS key and a simulated NSM (the sim CA, on the test's
//! clock), a stand-in for KMS `Decrypt` with `Recipient`, users with wallet keypairs who sign
//! the enclave's authorization messages, and transactions built with the independent Solana
//! crates.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signer as _, SigningKey};
use enclave_core::authorization::MessageDomain;
use enclave_core::enclave::{
    Attester, AuthorizeGrant, CreateAgent, CreateGrant, CreatedAgent, CreatedGrant, CreatedVault,
    NewAgentKind, SignRequest, SignScheduledRequest, Signed, Unlocked, VaultProof,
};
use enclave_core::envelope::{self, ContentForm, RecipientKey};
use enclave_core::policy::{Intent, Policy, TokenLimit};
use enclave_core::records::{KeyWrap, ScheduledHeader, WrapAlg, WrappedKey, seal_scheduled};
use enclave_core::{
    Clock, Enclave, EnclaveConfig, EnclaveError, OsRandom, Pubkey, Secret32, SignOutcome,
};
use nitro_attestation::sim::{SimCa, SimDocument, SimLeaf};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rsa::{Oaep, RsaPrivateKey};
use sha2::Sha256;
use solana_address::Address;
use solana_hash::Hash;
use solana_instruction::{AccountMeta, Instruction};
use solana_message::{Message, VersionedMessage};
use solana_signature::Signature;
use solana_transaction::versioned::VersionedTransaction;

/// 2026-01-01T12:00:00Z.
pub const T0: u64 = 1_767_268_800;

/// A clock set by hand; with a non-zero `step`, every reading moves it forward by that much (a
/// request that takes time between its first and last look at the clock).
pub struct ManualClock(pub AtomicU64, pub AtomicU64);

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.0.fetch_add(self.1.load(Ordering::SeqCst), Ordering::SeqCst)
    }
}

impl ManualClock {
    pub fn set_step(&self, step: u64) {
        self.1.store(step, Ordering::SeqCst);
    }
    pub fn set(&self, t: u64) {
        self.0.store(t, Ordering::SeqCst);
    }
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
    fn peek(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The simulated NSM on the test clock: documents are timestamped (and their leaf issued) at the
/// clock's time.
pub struct TestNsm {
    pub ca: SimCa,
    leaf: Mutex<SimLeaf>,
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    clock: Arc<ManualClock>,
}

fn at(unix: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix)
}

impl TestNsm {
    pub fn new(clock: Arc<ManualClock>, image_byte: u8) -> Self {
        let ca = SimCa::from_pem(&keys().sim_ca_pem).unwrap();
        let leaf = ca.issue_leaf("i-test-enc", &mut rand::rng(), at(clock.peek())).unwrap();
        let mut pcrs: BTreeMap<u8, Vec<u8>> = (0u8..16).map(|i| (i, vec![0; 48])).collect();
        for i in 0..3 {
            pcrs.insert(i, vec![image_byte + i; 48]);
        }
        Self { ca, leaf: Mutex::new(leaf), pcrs, clock }
    }

    pub fn anchor(&self) -> nitro_attestation::TrustAnchor {
        self.ca.trust_anchor().unwrap()
    }

    /// The image (PCR0..2) this NSM measures.
    pub fn image(&self) -> BTreeMap<u8, Vec<u8>> {
        self.pcrs.iter().filter(|(i, _)| **i < 3).map(|(i, v)| (*i, v.clone())).collect()
    }
}

impl Attester for TestNsm {
    fn attest(
        &self,
        public_key: &[u8],
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
    ) -> Result<Vec<u8>, String> {
        let now = at(self.clock.peek());
        let mut leaf = self.leaf.lock().unwrap();
        if leaf.not_after.duration_since(now).unwrap_or_default() < Duration::from_secs(1800)
            || now < leaf.not_after - nitro_attestation::sim::LEAF_VALIDITY
        {
            *leaf = self.ca.issue_leaf("i-test-enc", &mut rand::rng(), now).unwrap();
        }
        Ok(self.ca.issue_document(
            &leaf,
            &SimDocument {
                module_id: "i-test-enc",
                timestamp_ms: self.clock.peek() * 1000,
                pcrs: &self.pcrs,
                public_key: Some(public_key),
                user_data,
                nonce,
            },
        ))
    }
}

struct Keys {
    kms_pem: String,
    kms_spki: Vec<u8>,
    recipient_pem: String,
    sim_ca_pem: String,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rand_chacha();
        let kms = RsaPrivateKey::new(&mut rng, 3072).unwrap();
        let recipient = RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let ca = SimCa::generate(&mut rand::rng(), at(T0 - 86_400 * 365)).unwrap();
        Keys {
            kms_pem: kms.to_pkcs8_pem(Default::default()).unwrap().to_string(),
            kms_spki: kms.to_public_key().to_public_key_der().unwrap().as_bytes().to_vec(),
            recipient_pem: recipient.to_pkcs8_pem(Default::default()).unwrap().to_string(),
            sim_ca_pem: ca.to_pem().unwrap().to_string(),
        }
    })
}

fn rand_chacha() -> impl rand_core::CryptoRng {
    enclave_core::secret::seeded_rng(&OsRandom).unwrap()
}

pub struct Fixture {
    pub enclave: Arc<Enclave>,
    pub clock: Arc<ManualClock>,
    pub nsm: Arc<TestNsm>,
    pub kms: RsaPrivateKey,
    pub kms_spki: Vec<u8>,
    /// Counts calls to the KMS stand-in.
    pub kms_calls: AtomicU64,
}

pub fn domain() -> MessageDomain {
    MessageDomain {
        domain: "app.example.com".into(),
        uri: "https://app.example.com".into(),
        chain_id: "mainnet".into(),
        validity_seconds: 600,
        registry: enclave_core::policy::Registry::default(),
    }
}

pub fn config() -> EnclaveConfig {
    EnclaveConfig::new(&keys().kms_spki, domain()).unwrap()
}

pub fn fixture() -> Fixture {
    fixture_with(config())
}

pub fn fixture_with(config: EnclaveConfig) -> Fixture {
    fixture_on(config, Arc::new(ManualClock(AtomicU64::new(T0), AtomicU64::new(0))), 0x10, None)
}

/// An enclave on `clock` whose image is measured by `image_byte`; a fresh recipient key unless
/// `recipient_pem` is given.
pub fn fixture_on(
    config: EnclaveConfig,
    clock: Arc<ManualClock>,
    image_byte: u8,
    recipient_pem: Option<&str>,
) -> Fixture {
    let k = keys();
    let recipient =
        RecipientKey::from_pkcs8_pem(recipient_pem.unwrap_or(&k.recipient_pem)).unwrap();
    let nsm = Arc::new(TestNsm::new(Arc::clone(&clock), image_byte));
    let enclave = Arc::new(
        Enclave::new(
            config,
            recipient,
            Arc::new(OsRandom),
            clock.clone(),
            nsm.clone(),
            nsm.anchor(),
        )
        .unwrap(),
    );
    Fixture {
        enclave,
        clock,
        nsm,
        kms: RsaPrivateKey::from_pkcs8_pem(&k.kms_pem).unwrap(),
        kms_spki: k.kms_spki.clone(),
        kms_calls: AtomicU64::new(0),
    }
}

pub fn policy() -> Policy {
    Policy {
        max_lamports_per_tx: 2_000_000_000,
        max_lamports_per_day: 5_000_000_000,
        max_fee_lamports: 100_000,
        tokens: vec![TokenLimit {
            mint: Pubkey([0x55; 32]),
            max_per_tx: 1_000,
            max_per_day: 2_500,
        }],
        allowed_programs: vec![Pubkey([0x77; 32])],
        max_notional_cents_per_tx: 10_000,
        max_notional_cents_per_day: 25_000,
        destinations: None,
        max_tx_per_minute: None,
    }
}

pub const BOT: [u8; 16] = [0xb0; 16];

/// A wallet owner: an ed25519 keypair.
pub struct User {
    pub key: SigningKey,
    pub wallet: Pubkey,
}

impl User {
    pub fn new(seed_byte: u8) -> Self {
        let key = SigningKey::from_bytes(&[seed_byte; 32]);
        let wallet = Pubkey(key.verifying_key().to_bytes());
        Self { key, wallet }
    }

    pub fn sign(&self, message: &str) -> [u8; 64] {
        self.key.sign(message.as_bytes()).to_bytes()
    }
}

/// A wallet, its vault, an agent and a grant.
pub struct Setup {
    pub user: User,
    pub wallet: Pubkey,
    pub vault: CreatedVault,
    pub agent: CreatedAgent,
    pub grant: CreatedGrant,
}

impl Fixture {
    /// Runs an operation that opens a vault, answering `NeedKey` with the KMS stand-in once.
    pub fn unlocked<T>(
        &self,
        mut op: impl FnMut(Option<&[u8]>) -> Result<Unlocked<T>, EnclaveError>,
    ) -> Result<T, EnclaveError> {
        match op(None)? {
            Unlocked::Done(v) => Ok(v),
            Unlocked::NeedKey(need) => {
                let env = self.kms_envelope(&need.wrapped);
                match op(Some(&env))? {
                    Unlocked::Done(v) => Ok(v),
                    Unlocked::NeedKey(_) => panic!("NeedKey twice"),
                }
            }
        }
    }

    pub fn vault(&self, wallet: Pubkey) -> CreatedVault {
        self.enclave.create_vault(wallet).unwrap()
    }

    pub fn agent(&self, wallet: Pubkey, vault: &CreatedVault, kind: NewAgentKind) -> CreatedAgent {
        self.unlocked(|envelope| {
            self.enclave.create_agent(&CreateAgent {
                wallet,
                vault: VaultProof { record: &vault.record, provenance: &vault.provenance },
                kind,
                envelope,
            })
        })
        .unwrap()
    }

    /// What a grant for `agent` with `policy` for `ttl` seconds looks like.
    pub fn terms(&self, wallet: Pubkey, agent: Pubkey, policy: Policy, ttl: u64) -> AuthorizeGrant {
        AuthorizeGrant { wallet, bot_id: BOT, agent_pubkey: agent, ttl_seconds: ttl, policy }
    }

    /// The grant message `terms` would get from this enclave under `domain`, with this nonce and
    /// time: what a wallet signs (or what a message for another deployment looks like).
    pub fn grant_message(
        &self,
        domain: &MessageDomain,
        terms: &AuthorizeGrant,
        nonce: &str,
        issued_at: u64,
    ) -> String {
        enclave_core::authorization::render(
            domain,
            &enclave_core::authorization::MessageFields {
                wallet: terms.wallet,
                enclave: self.enclave.id(),
                nonce,
                issued_at,
                purpose: enclave_core::authorization::Purpose::Grant {
                    bot_id: terms.bot_id,
                    agent: terms.agent_pubkey,
                    ttl_seconds: terms.ttl_seconds,
                    policy: &terms.policy,
                },
            },
        )
        .unwrap()
    }

    /// The user authorizes the grant: the enclave renders the message, the wallet signs it, the
    /// enclave creates the grant.
    pub fn try_grant(
        &self,
        user: &User,
        vault: &CreatedVault,
        terms: AuthorizeGrant,
    ) -> Result<CreatedGrant, EnclaveError> {
        let auth = self.enclave.authorize_grant(&terms)?;
        let signature = user.sign(&auth.message);
        self.unlocked(|envelope| {
            self.enclave.create_grant(&CreateGrant {
                grant: terms.clone(),
                nonce: &auth.nonce,
                issued_at: auth.issued_at,
                signature,
                vault: VaultProof { record: &vault.record, provenance: &vault.provenance },
                envelope,
            })
        })
    }

    pub fn grant(
        &self,
        user: &User,
        vault: &CreatedVault,
        agent: Pubkey,
        policy: Policy,
        ttl: u64,
    ) -> CreatedGrant {
        self.try_grant(user, vault, self.terms(user.wallet, agent, policy, ttl)).unwrap()
    }

    pub fn setup(&self, wallet_byte: u8, policy: Policy) -> Setup {
        self.setup_with_ttl(wallet_byte, policy, 3600)
    }

    pub fn setup_with_ttl(&self, wallet_byte: u8, policy: Policy, ttl: u64) -> Setup {
        let user = User::new(wallet_byte);
        let wallet = user.wallet;
        let vault = self.vault(wallet);
        let agent = self.agent(wallet, &vault, NewAgentKind::Seed);
        let grant = self.grant(&user, &vault, agent.agent_pubkey, policy, ttl);
        Setup { user, wallet, vault, agent, grant }
    }

    /// What KMS `Decrypt` with `Recipient` returns: the unwrapped key, enveloped to the enclave.
    pub fn kms_envelope(&self, wrapped: &WrappedKey) -> Vec<u8> {
        self.kms_calls.fetch_add(1, Ordering::SeqCst);
        assert_eq!(wrapped.alg, WrapAlg::RsaesOaepSha256);
        let key = self.kms.decrypt(Oaep::<Sha256>::new(), &wrapped.ciphertext).unwrap();
        envelope::seal(&key, self.enclave.recipient_public_key(), &OsRandom, ContentForm::Chunked)
            .unwrap()
    }

    /// Signs like the parent does: on `NeedKey`, fetch the envelope and retry once.
    pub fn sign(&self, req: SignRequest<'_>) -> Result<Signed, EnclaveError> {
        match self.enclave.sign(&req)? {
            SignOutcome::Signed(s) => Ok(s),
            SignOutcome::NeedKey(need) => {
                let env = self.kms_envelope(&need.wrapped);
                match self.enclave.sign(&SignRequest { envelope: Some(&env), ..req })? {
                    SignOutcome::Signed(s) => Ok(s),
                    SignOutcome::NeedKey(_) => panic!("NeedKey twice"),
                }
            }
        }
    }
}

impl Fixture {
    /// A scheduled record sealed the way a browser does it (the KMS public key only), for the
    /// agent whose seed is `seed` and the transfer `intent`: schedule id `[seed[0]; 16]`, a one-hour
    /// window open since `T0 - 10`, a 10 000-lamport fee bound, created an hour before `T0`, on
    /// this enclave — each changeable by `edit`.
    pub fn scheduled_record(
        &self,
        seed: [u8; 32],
        intent: &Intent,
        edit: impl FnOnce(&mut ScheduledHeader),
    ) -> (Vec<u8>, Pubkey) {
        let agent = Pubkey(SigningKey::from_bytes(&seed).verifying_key().to_bytes());
        let mut header = ScheduledHeader {
            wallet: Pubkey([0x88; 32]),
            schedule_id: [seed[0]; 16],
            agent_pubkey: agent,
            not_before: T0 - 10,
            not_after: T0 + 3600,
            max_fee_lamports: 10_000,
            intent_hash: intent.hash(),
            created_at: T0 - 3600,
            enclave_id: self.enclave.id(),
        };
        edit(&mut header);
        let kms = rsa::RsaPublicKey::from_public_key_der(&self.kms_spki).unwrap();
        let record =
            seal_scheduled(&header, &Secret32::new(seed), KeyWrap::Rsa(&kms), &OsRandom).unwrap();
        (record, agent)
    }

    /// Signs a scheduled transfer like the parent does: on `NeedKey`, fetch the envelope and
    /// retry once.
    pub fn sign_scheduled(
        &self,
        record: &[u8],
        tx: &[u8],
        request_id: u8,
    ) -> Result<SignOutcome, EnclaveError> {
        let req = SignScheduledRequest {
            scheduled_record: record,
            transaction: tx,
            request_id: [request_id; 16],
            envelope: None,
        };
        match self.enclave.sign_scheduled(&req)? {
            SignOutcome::NeedKey(need) => {
                let env = self.kms_envelope(&need.wrapped);
                self.enclave.sign_scheduled(&SignScheduledRequest { envelope: Some(&env), ..req })
            }
            done => Ok(done),
        }
    }
}

pub fn request<'a>(s: &'a Setup, tx: &'a [u8], request_id: u8) -> SignRequest<'a> {
    SignRequest {
        grant_record: &s.grant.record,
        agent_key_record: &s.agent.record,
        bot_id: BOT,
        transaction: tx,
        request_id: [request_id; 16],
        declared_notional_cents: None,
        envelope: None,
    }
}

pub fn address(p: &Pubkey) -> Address {
    Address::from(p.0)
}

pub fn blockhash() -> Hash {
    Hash::new_from_array([0x42; 32])
}

/// A legacy transaction (unsigned slots) built by the independent Solana crates.
pub fn legacy_tx(payer: &Pubkey, instructions: &[Instruction]) -> Vec<u8> {
    let message = Message::new_with_blockhash(instructions, Some(&address(payer)), &blockhash());
    let n = usize::from(message.header.num_required_signatures);
    let tx = VersionedTransaction {
        signatures: vec![Signature::default(); n],
        message: VersionedMessage::Legacy(message),
    };
    bincode::serialize(&tx).unwrap()
}

/// A v0 transaction (unsigned slots) without lookup tables.
pub fn v0_tx(payer: &Pubkey, instructions: &[Instruction]) -> Vec<u8> {
    let message =
        solana_message::v0::Message::try_compile(&address(payer), instructions, &[], blockhash())
            .unwrap();
    let n = usize::from(message.header.num_required_signatures);
    let tx = VersionedTransaction {
        signatures: vec![Signature::default(); n],
        message: VersionedMessage::V0(message),
    };
    bincode::serialize(&tx).unwrap()
}

pub fn sol_transfer(from: &Pubkey, to: &Pubkey, lamports: u64) -> Instruction {
    solana_system_interface::instruction::transfer(&address(from), &address(to), lamports)
}

pub fn compute_limit(units: u32) -> Instruction {
    let mut data = vec![2];
    data.extend(units.to_le_bytes());
    Instruction::new_with_bytes(
        address(&enclave_core::pubkey::programs::COMPUTE_BUDGET),
        &data,
        vec![],
    )
}

pub fn compute_price(micro_lamports: u64) -> Instruction {
    let mut data = vec![3];
    data.extend(micro_lamports.to_le_bytes());
    Instruction::new_with_bytes(
        address(&enclave_core::pubkey::programs::COMPUTE_BUDGET),
        &data,
        vec![],
    )
}

/// SPL Token `TransferChecked` (tag 12).
pub fn token_transfer(
    program: &Pubkey,
    source: &Pubkey,
    mint: &Pubkey,
    dest: &Pubkey,
    authority: &Pubkey,
    amount: u64,
) -> Instruction {
    let mut data = vec![12];
    data.extend(amount.to_le_bytes());
    data.push(6);
    Instruction::new_with_bytes(
        address(program),
        &data,
        vec![
            AccountMeta::new(address(source), false),
            AccountMeta::new_readonly(address(mint), false),
            AccountMeta::new(address(dest), false),
            AccountMeta::new_readonly(address(authority), true),
        ],
    )
}

/// An instruction of an arbitrary program.
pub fn program_call(program: &Pubkey, signer: &Pubkey, data: &[u8]) -> Instruction {
    Instruction::new_with_bytes(
        address(program),
        data,
        vec![AccountMeta::new(address(signer), true)],
    )
}

/// Deserializes with the independent implementation and verifies every signature.
pub fn verify_independently(tx: &[u8]) -> VersionedTransaction {
    let tx: VersionedTransaction = bincode::deserialize(tx).unwrap();
    tx.verify_and_hash_message().expect("every signature verifies");
    tx
}

impl Fixture {
    /// The master key inside a vault record, as only KMS (the test holds its key) and the enclave
    /// can recover it: for tests that look for it where it must not be.
    pub fn umk_of(&self, vault_record: &[u8]) -> enclave_core::Secret32 {
        let sealed = enclave_core::records::SealedVault::parse(vault_record).unwrap();
        let dek = self.kms.decrypt(Oaep::<Sha256>::new(), &sealed.wrapped.ciphertext).unwrap();
        let dek = enclave_core::Secret32::from_slice(&dek).unwrap();
        enclave_core::records::open_vault(&sealed, &dek).unwrap()
    }

    /// The contents of a grant record, opened with the test's KMS key.
    pub fn grant_contents(&self, grant_record: &[u8]) -> enclave_core::records::GrantContents {
        let sealed = enclave_core::records::SealedGrant::parse(grant_record).unwrap();
        let dek = self.kms.decrypt(Oaep::<Sha256>::new(), &sealed.wrapped.ciphertext).unwrap();
        let dek = enclave_core::Secret32::from_slice(&dek).unwrap();
        enclave_core::records::open_grant(&sealed, &dek).unwrap()
    }

    /// A setup whose grant is replaced.
    pub fn with_grant(s: &Setup, grant: CreatedGrant) -> Setup {
        Setup {
            user: User { key: s.user.key.clone(), wallet: s.user.wallet },
            wallet: s.wallet,
            vault: s.vault.clone(),
            agent: s.agent.clone(),
            grant,
        }
    }

    /// Seals a grant record by hand (anyone can: the KMS key is public), sealed to this enclave.
    pub fn forge_grant(
        &self,
        header: enclave_core::records::GrantHeader,
        contents: &enclave_core::records::GrantContents,
    ) -> CreatedGrant {
        let kms_pub =
            <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&self.kms_spki)
                .unwrap();
        let record = enclave_core::records::seal_grant(
            &header,
            contents,
            enclave_core::records::KeyWrap::Rsa(&kms_pub),
            &OsRandom,
        )
        .unwrap();
        CreatedGrant {
            grant_id: header.grant_id,
            issued_at: header.issued_at,
            expires_at: header.expires_at,
            record,
            enclave_id: header.enclave_id,
            receipt: None,
        }
    }
}

/// An identical retry's answer: the same signature, transaction and record, and no second
/// receipt (the first answer carried it; nothing was decided again).
pub fn assert_retry_of(again: &Signed, first: &Signed) {
    assert_eq!(
        (again.signature, &again.transaction, again.record_id),
        (first.signature, &first.transaction, first.record_id),
        "identical retry, identical result"
    );
    assert!(first.receipt.is_some(), "the first answer carries its receipt");
    assert!(again.receipt.is_none(), "a retry writes no second receipt");
}

/// The same signature with `S + L` (the group order) in place of `S`: a lax verifier accepts it,
/// a strict one must not.
pub fn malleate(signature: [u8; 64]) -> [u8; 64] {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut out = signature;
    let mut carry = 0u16;
    for (s, l) in out[32..].iter_mut().zip(L) {
        let v = u16::from(*s) + u16::from(l) + carry;
        *s = v as u8;
        carry = v >> 8;
    }
    out
}

/// A fresh RSA-2048 recipient key (PKCS#8 PEM): another enclave instance.
pub fn fresh_recipient() -> String {
    use rsa::pkcs8::EncodePrivateKey as _;
    let mut rng = enclave_core::secret::seeded_rng(&OsRandom).unwrap();
    rsa::RsaPrivateKey::new(&mut rng, 2048)
        .unwrap()
        .to_pkcs8_pem(Default::default())
        .unwrap()
        .to_string()
}
