//! SPEC §7 policy: each rule on both sides of its boundary, the fee formula, UTC-day rollover,
//! velocity, declared notional, and the scheduled-intent rules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::*;
use enclave_core::enclave::SignRequest;
use enclave_core::policy::{Action, Denial, Intent, Policy, Rule, TokenLimit, fee_lamports};
use enclave_core::pubkey::programs;
use enclave_core::{EnclaveError, Pubkey, SignOutcome};
use solana_instruction::{AccountMeta, Instruction};

const DEST: Pubkey = Pubkey([9; 32]);
const MINT: Pubkey = Pubkey([0x55; 32]);
const DEX: Pubkey = Pubkey([0x77; 32]);

fn denial(r: Result<impl std::fmt::Debug, EnclaveError>) -> Denial {
    match r {
        Err(EnclaveError::PolicyDenied(d)) => d,
        other => panic!("expected a policy denial, got {other:?}"),
    }
}

struct Case {
    f: Fixture,
    s: Setup,
    next_id: std::cell::Cell<u8>,
}

impl Case {
    fn new(policy: Policy) -> Self {
        Self::new_at(policy, T0)
    }
    fn new_at(policy: Policy, now: u64) -> Self {
        let f = fixture();
        f.clock.set(now);
        let s = f.setup(7, policy);
        Self { f, s, next_id: std::cell::Cell::new(1) }
    }
    fn agent(&self) -> Pubkey {
        self.s.agent.agent_pubkey
    }
    fn sign_with(
        &self,
        ixs: &[Instruction],
        notional: Option<u64>,
    ) -> Result<Vec<u8>, EnclaveError> {
        let tx = legacy_tx(&self.agent(), ixs);
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let req = SignRequest { declared_notional_cents: notional, ..request(&self.s, &tx, id) };
        self.f.sign(req).map(|s| s.transaction)
    }
    fn sign(&self, ixs: &[Instruction]) -> Result<Vec<u8>, EnclaveError> {
        self.sign_with(ixs, None)
    }
    fn transfer(&self, lamports: u64) -> Instruction {
        sol_transfer(&self.agent(), &DEST, lamports)
    }
}

fn system_ix(agent: &Pubkey, tag: u32, extra: &[u8]) -> Instruction {
    let mut data = tag.to_le_bytes().to_vec();
    data.extend_from_slice(extra);
    Instruction::new_with_bytes(
        address(&programs::SYSTEM),
        &data,
        vec![AccountMeta::new(address(agent), true), AccountMeta::new(address(&DEST), false)],
    )
}

fn token_ix(program: &Pubkey, agent: &Pubkey, tag: u8, extra: &[u8]) -> Instruction {
    let mut data = vec![tag];
    data.extend_from_slice(extra);
    Instruction::new_with_bytes(
        address(program),
        &data,
        vec![
            AccountMeta::new(address(&Pubkey([0x10; 32])), false),
            AccountMeta::new_readonly(address(&MINT), false),
            AccountMeta::new(address(&DEST), false),
            AccountMeta::new_readonly(address(agent), true),
        ],
    )
}

#[test]
fn system_instructions_transfer_and_create_account_only() {
    let c = Case::new(policy());
    let a = c.agent();
    verify_independently(&c.sign(&[c.transfer(1)]).unwrap());
    let create = solana_system_interface::instruction::create_account(
        &address(&a),
        &address(&Pubkey([0x21; 32])),
        1_000,
        0,
        &address(&DEX),
    );
    // CreateAccount needs the new account's signature too; the enclave fills only the agent slot.
    let tx = legacy_tx(&a, &[create]);
    c.f.sign(request(&c.s, &tx, 200)).unwrap();
    for (tag, name) in [
        (1u32, "Assign"),
        (4, "AdvanceNonceAccount"),
        (3, "instruction 3"),
        (8, "instruction 8"),
        (11, "instruction 11"),
    ] {
        let d = denial(c.sign(&[system_ix(&a, tag, &[0; 8])]));
        assert_eq!(d.rule, Rule::InstructionNotAllowed, "{name}");
        assert!(d.message.contains(name), "{}", d.message);
    }
    // A Transfer with extra data is not the Transfer we understand.
    assert_eq!(denial(c.sign(&[system_ix(&a, 2, &[0; 9])])).rule, Rule::InstructionNotAllowed);
}

#[test]
fn durable_nonce_transactions_are_refused() {
    let c = Case::new(policy());
    let a = c.agent();
    let nonce = solana_system_interface::instruction::advance_nonce_account(
        &address(&Pubkey([0x22; 32])),
        &address(&a),
    );
    let d = denial(c.sign(&[nonce, c.transfer(1)]));
    assert_eq!(d.rule, Rule::InstructionNotAllowed);
    assert!(d.message.contains("durable nonce"), "{}", d.message);
}

#[test]
fn token_transfer_checked_only_for_listed_mints() {
    let c = Case::new(policy());
    let a = c.agent();
    for program in [programs::TOKEN, programs::TOKEN_2022] {
        verify_independently(
            &c.sign(&[token_transfer(&program, &Pubkey([0x10; 32]), &MINT, &DEST, &a, 1_000)])
                .unwrap(),
        );
        let d = denial(c.sign(&[token_transfer(
            &program,
            &Pubkey([0x10; 32]),
            &Pubkey([0x56; 32]),
            &DEST,
            &a,
            1,
        )]));
        assert_eq!(d.rule, Rule::TokenNotAllowed);
        assert_eq!(d.subject.as_deref(), Some(Pubkey([0x56; 32]).to_string().as_str()));
        for (tag, name) in [
            (3u8, "Transfer without mint check"),
            (4, "Approve"),
            (6, "SetAuthority"),
            (8, "Burn"),
            (9, "CloseAccount"),
            (7, "instruction 7"),
        ] {
            let d = denial(c.sign(&[token_ix(&program, &a, tag, &[0; 8])]));
            assert_eq!(d.rule, Rule::InstructionNotAllowed);
            assert!(d.message.contains(name), "{}", d.message);
        }
    }
}

#[test]
fn per_transaction_limits_on_both_sides() {
    let c = Case::new(policy());
    let a = c.agent();
    // The agent pays the 5 000-lamport fee, and the message says the per-transaction SOL limit
    // includes it: 1.999995 SOL plus the fee is exactly the limit.
    c.sign(&[c.transfer(1_999_995_000)]).unwrap();
    let d = denial(c.sign(&[c.transfer(1_999_995_001)]));
    assert_eq!(
        (d.rule, d.limit, d.requested),
        (Rule::MaxLamportsPerTx, Some(2_000_000_000), Some(2_000_000_001))
    );
    // Outflow adds up across instructions.
    let d = denial(c.sign(&[c.transfer(1_000_000_000), c.transfer(999_995_001)]));
    assert_eq!(d.requested, Some(2_000_000_001));

    let tok =
        |amount| token_transfer(&programs::TOKEN, &Pubkey([0x10; 32]), &MINT, &DEST, &a, amount);
    c.sign(&[tok(600), tok(400)]).unwrap();
    let d = denial(c.sign(&[tok(600), tok(401)]));
    assert_eq!((d.rule, d.limit, d.requested), (Rule::TokenMaxPerTx, Some(1_000), Some(1_001)));
    assert!(d.message.contains("exceeds the per-transaction limit 1000"), "{}", d.message);
}

#[test]
fn daily_limits_accumulate_and_roll_over_at_utc_midnight() {
    // T0 is 12:00 UTC; start at 23:59:00. The agent pays every fee (5 000 lamports a
    // transaction), and fees count in the daily SOL outflow.
    let c = Case::new_at(policy(), T0 + 12 * 3600 - 60);
    let a = c.agent();
    // Tokens: 2 500 per day (three transactions: 15 000 lamports of fees).
    let tok =
        |amount| token_transfer(&programs::TOKEN, &Pubkey([0x10; 32]), &MINT, &DEST, &a, amount);
    c.sign(&[tok(1_000)]).unwrap();
    c.sign(&[tok(1_000)]).unwrap();
    c.sign(&[tok(500)]).unwrap();
    let d = denial(c.sign(&[tok(1)]));
    assert_eq!((d.rule, d.used), (Rule::TokenMaxPerDay, Some(2_500)));
    // SOL: 5 SOL per day, fees included.
    for _ in 0..2 {
        c.sign(&[c.transfer(1_999_995_000)]).unwrap();
    }
    c.sign(&[c.transfer(999_980_000)]).unwrap();
    let d = denial(c.sign(&[c.transfer(1)]));
    assert_eq!(
        (d.rule, d.limit, d.requested, d.used),
        (Rule::MaxLamportsPerDay, Some(5_000_000_000), Some(5_001), Some(5_000_000_000))
    );
    assert!(d.message.contains("already used today"), "{}", d.message);
    // With the SOL budget spent, even a token transfer's fee is refused.
    assert_eq!(denial(c.sign(&[tok(1)])).rule, Rule::MaxLamportsPerDay);
    // One second before midnight still the same day; at 00:00:00 everything resets.
    c.f.clock.set(T0 + 12 * 3600 - 1);
    assert_eq!(denial(c.sign(&[c.transfer(1)])).rule, Rule::MaxLamportsPerDay);
    c.f.clock.set(T0 + 12 * 3600);
    c.sign(&[c.transfer(1_999_995_000)]).unwrap();
    c.sign(&[tok(1_000)]).unwrap();
}

#[test]
fn daily_limits_are_per_wallet_and_bot() {
    let f = fixture();
    let a = f.setup(30, policy());
    let b = f.setup(31, policy());
    for (s, base) in [(&a, 10u8), (&b, 20)] {
        let agent = s.agent.agent_pubkey;
        for i in 0..2 {
            let tx = legacy_tx(&agent, &[sol_transfer(&agent, &DEST, 1_999_995_000)]);
            f.sign(request(s, &tx, base + i)).unwrap();
        }
    }
}

#[test]
fn fee_formula_and_limit() {
    // 5000 × signatures + ceil(price × limit / 1e6)
    let t = Action::SolTransfer { from: DEST, to: DEST, lamports: 1 };
    assert_eq!(fee_lamports(1, &[t]), 5_000);
    assert_eq!(fee_lamports(3, &[t]), 15_000);
    assert_eq!(fee_lamports(1, &[t, Action::ComputeUnitPrice(1_000)]), 5_000 + 200);
    assert_eq!(
        fee_lamports(1, &[t, t, Action::ComputeUnitPrice(1_000)]),
        5_000 + 400,
        "200 000 CU per instruction"
    );
    assert_eq!(
        fee_lamports(1, &[t, Action::ComputeUnitPrice(1)]),
        5_000 + 1,
        "0.2 lamports round up to 1"
    );
    assert_eq!(
        fee_lamports(1, &[t, Action::ComputeUnitLimit(1_000), Action::ComputeUnitPrice(1_500)]),
        5_000 + 2,
        "1.5 rounds up"
    );
    assert_eq!(
        fee_lamports(1, &[t, Action::ComputeUnitLimit(1_000), Action::ComputeUnitPrice(1_000)]),
        5_001
    );
    assert_eq!(
        fee_lamports(
            1,
            &[t, Action::ComputeUnitLimit(u32::MAX), Action::ComputeUnitPrice(1_000_000)]
        ),
        5_000 + 1_400_000,
        "limit capped at 1.4M"
    );
    assert_eq!(
        fee_lamports(1, &[t, Action::ComputeUnitLimit(1), Action::ComputeUnitPrice(u64::MAX)]),
        5_000 + 18_446_744_073_710,
        "no overflow"
    );

    let c = Case::new(policy()); // max_fee 100 000
    // 5000 + ceil(95000 × 1e6 / 1e6) = 100 000: allowed. One micro-lamport more is 100 001.
    c.sign(&[compute_limit(1_000_000), compute_price(95_000), c.transfer(1)]).unwrap();
    let d = denial(c.sign(&[compute_limit(1_000_000), compute_price(95_001), c.transfer(1)]));
    assert_eq!(
        (d.rule, d.limit, d.requested),
        (Rule::MaxFeeLamports, Some(100_000), Some(100_001))
    );
    let d = denial(c.sign(&[compute_price(1), compute_price(1), c.transfer(1)]));
    assert_eq!(d.rule, Rule::InstructionNotAllowed);
    let heap =
        Instruction::new_with_bytes(address(&programs::COMPUTE_BUDGET), &[1, 0, 0, 1, 0], vec![]);
    assert_eq!(denial(c.sign(&[heap, c.transfer(1)])).rule, Rule::InstructionNotAllowed);
}

#[test]
fn allowed_programs_need_and_are_charged_declared_notional() {
    let c = Case::new(policy()); // 100 USD per tx, 250 USD per day
    let a = c.agent();
    let swap = || program_call(&DEX, &a, b"swap");
    assert_eq!(denial(c.sign(&[swap()])).rule, Rule::NotionalRequired);
    c.sign_with(&[swap()], Some(10_000)).unwrap();
    let d = denial(c.sign_with(&[swap()], Some(10_001)));
    assert_eq!(
        (d.rule, d.limit, d.requested),
        (Rule::MaxNotionalCentsPerTx, Some(10_000), Some(10_001))
    );
    c.sign_with(&[swap()], Some(10_000)).unwrap();
    c.sign_with(&[swap()], Some(5_000)).unwrap();
    let d = denial(c.sign_with(&[swap()], Some(1)));
    assert_eq!((d.rule, d.used), (Rule::MaxNotionalCentsPerDay, Some(25_000)));
    // Notional is not charged for plain transfers.
    c.sign_with(&[c.transfer(1)], Some(99_999)).unwrap();
    let d = denial(c.sign_with(&[program_call(&Pubkey([0x78; 32]), &a, b"x")], Some(1)));
    assert_eq!(d.rule, Rule::ProgramNotAllowed);
    assert_eq!(d.subject, Some(Pubkey([0x78; 32]).to_string()));
}

#[test]
fn destination_allowlist() {
    let mut p = policy();
    p.destinations = Some(vec![DEST]);
    let c = Case::new(p);
    let a = c.agent();
    c.sign(&[c.transfer(1)]).unwrap();
    let d = denial(c.sign(&[sol_transfer(&a, &Pubkey([8; 32]), 1)]));
    assert_eq!(d.rule, Rule::DestinationNotAllowed);
    c.sign(&[token_transfer(&programs::TOKEN, &Pubkey([0x10; 32]), &MINT, &DEST, &a, 1)]).unwrap();
    let d = denial(c.sign(&[token_transfer(
        &programs::TOKEN,
        &Pubkey([0x10; 32]),
        &MINT,
        &Pubkey([8; 32]),
        &a,
        1,
    )]));
    assert_eq!(d.rule, Rule::DestinationNotAllowed);
}

#[test]
fn destinations_and_mints_from_lookup_tables_are_refused() {
    let c = Case::new(policy());
    let a = c.agent();
    let table = solana_message::AddressLookupTableAccount {
        key: address(&Pubkey([0x61; 32])),
        addresses: vec![address(&DEST), address(&MINT)],
    };
    let build = |ix: Instruction| {
        let msg = solana_message::v0::Message::try_compile(
            &address(&a),
            &[ix],
            std::slice::from_ref(&table),
            blockhash(),
        )
        .unwrap();
        assert_eq!(msg.address_table_lookups.len(), 1, "the test needs a lookup");
        let tx = solana_transaction::versioned::VersionedTransaction {
            signatures: vec![solana_signature::Signature::default(); 1],
            message: solana_message::VersionedMessage::V0(msg),
        };
        bincode::serialize(&tx).unwrap()
    };
    for (ix, what) in [
        (sol_transfer(&a, &DEST, 1), "destination"),
        (
            token_transfer(
                &programs::TOKEN,
                &Pubkey([0x10; 32]),
                &MINT,
                &Pubkey([0x12; 32]),
                &a,
                1,
            ),
            "mint",
        ),
    ] {
        let tx = build(ix);
        let d = denial(c.f.sign(request(&c.s, &tx, 100 + what.len() as u8)));
        assert_eq!(d.rule, Rule::LookupTableAccount, "{what}");
        assert!(d.message.contains(what), "{}", d.message);
    }
}

#[test]
fn velocity_limit_counts_the_last_minute() {
    let mut p = policy();
    p.max_tx_per_minute = Some(3);
    let c = Case::new(p);
    for _ in 0..3 {
        c.sign(&[c.transfer(1)]).unwrap();
    }
    let d = denial(c.sign(&[c.transfer(1)]));
    assert_eq!((d.rule, d.limit, d.used), (Rule::MaxTxPerMinute, Some(3), Some(3)));
    c.f.clock.advance(59);
    assert_eq!(denial(c.sign(&[c.transfer(1)])).rule, Rule::MaxTxPerMinute);
    c.f.clock.advance(1);
    c.sign(&[c.transfer(1)]).unwrap();
}

#[test]
fn policy_validation() {
    let mut p = policy();
    p.tokens.push(TokenLimit { mint: MINT, max_per_tx: 1, max_per_day: 1 });
    assert!(p.validate().unwrap_err().contains("listed twice"));
    let mut p = policy();
    p.allowed_programs.push(programs::SYSTEM);
    assert!(p.validate().unwrap_err().contains("own rules"));
    let mut p = policy();
    p.max_tx_per_minute = Some(0);
    assert!(p.validate().is_err());
    let mut p = policy();
    p.destinations = Some(vec![DEST; 1025]);
    assert!(p.validate().is_err());
    // JSON form: base58 keys, unknown fields refused, optional fields optional.
    let json = serde_json::to_value(policy()).unwrap();
    assert_eq!(json["tokens"][0]["mint"], MINT.to_string());
    assert!(json.get("destinations").is_none());
    let mut extra = json.clone();
    extra["max_lamports_per_week"] = 1.into();
    assert!(
        serde_json::from_value::<Policy>(extra).unwrap_err().to_string().contains("unknown field")
    );
    let mut missing = json;
    missing.as_object_mut().unwrap().remove("max_fee_lamports");
    assert!(
        serde_json::from_value::<Policy>(missing)
            .unwrap_err()
            .to_string()
            .contains("max_fee_lamports")
    );
}

fn scheduled(
    f: &Fixture,
    intent: Intent,
    not_before: u64,
    not_after: u64,
    max_fee: u64,
    id: u8,
) -> (Vec<u8>, Pubkey) {
    f.scheduled_record([id; 32], &intent, |h| {
        h.wallet = Pubkey([0x70; 32]);
        (h.not_before, h.not_after, h.max_fee_lamports) = (not_before, not_after, max_fee);
    })
}

fn sign_scheduled(
    f: &Fixture,
    record: &[u8],
    tx: &[u8],
    request_id: u8,
) -> Result<Vec<u8>, EnclaveError> {
    match f.sign_scheduled(record, tx, request_id)? {
        SignOutcome::Signed(s) => Ok(s.transaction),
        SignOutcome::NeedKey(_) => panic!("NeedKey twice"),
    }
}

#[test]
fn scheduled_intent_window_and_fee() {
    let f = fixture();
    let intent = Intent { destination: DEST.0, mint: [0; 32], amount: 777 };
    let (record, agent) = scheduled(&f, intent, T0 + 100, T0 + 200, 10_000, 0x81);
    let tx = legacy_tx(&agent, &[sol_transfer(&agent, &DEST, 777)]);
    let d = denial(sign_scheduled(&f, &record, &tx, 1));
    assert_eq!((d.rule, d.limit, d.requested), (Rule::ScheduleWindow, Some(T0 + 100), Some(T0)));
    f.clock.set(T0 + 201);
    assert_eq!(
        sign_scheduled(&f, &record, &tx, 1).unwrap_err().code(),
        enclave_core::ErrorCode::GrantExpired
    );
    f.clock.set(T0 + 150);
    // Not the intent: wrong amount, wrong destination, an extra transfer, a fee above the bound.
    for (name, ixs) in [
        ("amount", vec![sol_transfer(&agent, &DEST, 778)]),
        ("destination", vec![sol_transfer(&agent, &Pubkey([8; 32]), 777)]),
        ("extra", vec![sol_transfer(&agent, &DEST, 777), sol_transfer(&agent, &DEST, 1)]),
    ] {
        let d = denial(sign_scheduled(&f, &record, &legacy_tx(&agent, &ixs), 2));
        assert_eq!(d.rule, Rule::IntentMismatch, "{name}");
    }
    let d = denial(sign_scheduled(
        &f,
        &record,
        &legacy_tx(
            &agent,
            &[compute_limit(10_000), compute_price(500_001), sol_transfer(&agent, &DEST, 777)],
        ),
        3,
    ));
    assert_eq!((d.rule, d.limit, d.requested), (Rule::MaxFeeLamports, Some(10_000), Some(10_001)));
    // Exactly the intent, with a priority fee at the bound.
    let ok = legacy_tx(
        &agent,
        &[compute_limit(10_000), compute_price(500_000), sol_transfer(&agent, &DEST, 777)],
    );
    verify_independently(&sign_scheduled(&f, &record, &ok, 4).unwrap());

    // Token intent: mint and destination token account bound.
    let token_intent = Intent { destination: [0x12; 32], mint: MINT.0, amount: 50 };
    let (record, agent) = scheduled(&f, token_intent, T0, T0 + 600, 10_000, 0x82);
    let good = legacy_tx(
        &agent,
        &[token_transfer(
            &programs::TOKEN,
            &Pubkey([0x10; 32]),
            &MINT,
            &Pubkey([0x12; 32]),
            &agent,
            50,
        )],
    );
    verify_independently(&sign_scheduled(&f, &record, &good, 5).unwrap());
    let wrong_mint = legacy_tx(
        &agent,
        &[token_transfer(
            &programs::TOKEN,
            &Pubkey([0x10; 32]),
            &Pubkey([0x57; 32]),
            &Pubkey([0x12; 32]),
            &agent,
            50,
        )],
    );
    assert_eq!(denial(sign_scheduled(&f, &record, &wrong_mint, 6)).rule, Rule::IntentMismatch);

    // A window longer than the enclave's maximum (48 h) is refused outright.
    let (record, agent) = scheduled(&f, intent, T0, T0 + 48 * 3600 + 1, 10_000, 0x83);
    let err =
        sign_scheduled(&f, &record, &legacy_tx(&agent, &[sol_transfer(&agent, &DEST, 777)]), 7)
            .unwrap_err();
    assert!(err.to_string().contains("scheduled window"), "{err}");
}

#[test]
fn agent_must_be_a_required_signer() {
    let c = Case::new(policy());
    let other = Pubkey([0x99; 32]);
    let tx = legacy_tx(&other, &[sol_transfer(&other, &DEST, 1)]);
    let err = c.f.sign(request(&c.s, &tx, 1)).unwrap_err();
    assert_eq!(err.code(), enclave_core::ErrorCode::BadRequest);
    assert!(err.to_string().contains("not a required signer"), "{err}");
}
