//! Shared fixtures: an enclave with a test KMS key, a stand-in for KMS `Decrypt` with
//! `Recipient`, and transactions built with the independent Solana crates.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use enclave_core::enclave::{
    CreateAgent, CreateGrant, CreatedAgent, CreatedGrant, NewAgentKind, SignRequest, Signed,
};
use enclave_core::envelope::{self, ContentForm, RecipientKey};
use enclave_core::policy::{Policy, TokenLimit};
use enclave_core::records::{WrapAlg, WrappedKey};
use enclave_core::{
    Clock, Enclave, EnclaveConfig, EnclaveError, OsRandom, Pubkey, Secret32, SignOutcome,
};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
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
}

struct Keys {
    kms_pem: String,
    kms_spki: Vec<u8>,
    recipient_pem: String,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rand_chacha();
        let kms = RsaPrivateKey::new(&mut rng, 3072).unwrap();
        let recipient = RsaPrivateKey::new(&mut rng, 2048).unwrap();
        Keys {
            kms_pem: kms.to_pkcs8_pem(Default::default()).unwrap().to_string(),
            kms_spki: kms.to_public_key().to_public_key_der().unwrap().as_bytes().to_vec(),
            recipient_pem: recipient.to_pkcs8_pem(Default::default()).unwrap().to_string(),
        }
    })
}

fn rand_chacha() -> impl rand_core::CryptoRng {
    enclave_core::secret::seeded_rng(&OsRandom).unwrap()
}

pub struct Fixture {
    pub enclave: Arc<Enclave>,
    pub clock: Arc<ManualClock>,
    pub kms: RsaPrivateKey,
    pub kms_spki: Vec<u8>,
    /// Counts calls to the KMS stand-in.
    pub kms_calls: AtomicU64,
}

pub fn config() -> EnclaveConfig {
    EnclaveConfig::new(&keys().kms_spki).unwrap()
}

pub fn fixture() -> Fixture {
    fixture_with(config())
}

pub fn fixture_with(config: EnclaveConfig) -> Fixture {
    let k = keys();
    let clock = Arc::new(ManualClock(AtomicU64::new(T0), AtomicU64::new(0)));
    let recipient = RecipientKey::from_pkcs8_pem(&k.recipient_pem).unwrap();
    let enclave = Arc::new(Enclave::new(config, recipient, Arc::new(OsRandom), clock.clone()));
    Fixture {
        enclave,
        clock,
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

pub fn umk(byte: u8) -> Secret32 {
    Secret32::new([byte; 32])
}

pub const BOT: [u8; 16] = [0xb0; 16];

/// A wallet, its agent and a grant.
pub struct Setup {
    pub wallet: Pubkey,
    pub umk: Secret32,
    pub agent: CreatedAgent,
    pub grant: CreatedGrant,
}

impl Fixture {
    pub fn agent(&self, wallet: Pubkey, umk: &Secret32, kind: NewAgentKind) -> CreatedAgent {
        self.enclave.create_agent(CreateAgent { wallet, umk: umk.clone(), kind }).unwrap()
    }

    pub fn grant(
        &self,
        wallet: Pubkey,
        umk: &Secret32,
        agent: Pubkey,
        policy: Policy,
        ttl: u64,
    ) -> CreatedGrant {
        self.enclave
            .create_grant(CreateGrant {
                wallet,
                bot_id: BOT,
                agent_pubkey: agent,
                umk: umk.clone(),
                policy,
                ttl_seconds: ttl,
            })
            .unwrap()
    }

    pub fn setup(&self, wallet_byte: u8, policy: Policy) -> Setup {
        let wallet = Pubkey([wallet_byte; 32]);
        let umk = umk(wallet_byte);
        let agent = self.agent(wallet, &umk, NewAgentKind::Seed);
        let grant = self.grant(wallet, &umk, agent.agent_pubkey, policy, 3600);
        Setup { wallet, umk, agent, grant }
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
