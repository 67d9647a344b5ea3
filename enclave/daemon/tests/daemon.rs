//! The real `signer-enclave` binary over a real Unix socket: every operation, malformed frames,
//! concurrency, and graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use ed25519_dalek::{Signer as _, Verifier as _};
use enclave_core::envelope::{self, ContentForm};
use enclave_core::policy::{Intent, Policy};
use enclave_core::records::{KeyWrap, ScheduledHeader, seal_scheduled};
use enclave_core::{EnclaveId, ErrorCode, OsRandom, Pubkey, Secret32};
use nitro_attestation::{AttestationPolicy, TrustAnchor};
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::{Oaep, RsaPrivateKey};
use sha2::Sha256;
use signer_enclave::config::{AuthorizationConfig, FileConfig};
use signer_protocol::messages::{decode, encode};
use signer_protocol::{
    AgentKindMsg, Connection, CreateAgentOp, CreateGrantOp, Endpoint, GrantFields, Op, Outcome,
    Reply, Response, RevokeMsg, SignOp, SignScheduledOp, read_frame,
};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

const TIMEOUT: Duration = Duration::from_secs(30);

fn authorization() -> AuthorizationConfig {
    AuthorizationConfig {
        domain: "app.example.com".into(),
        uri: "https://app.example.com".into(),
        chain_id: "devnet".into(),
        validity_seconds: 600,
        tokens: Vec::new(),
        programs: Vec::new(),
    }
}

fn kms_key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut rng = enclave_core::secret::seeded_rng(&OsRandom).unwrap();
        RsaPrivateKey::new(&mut rng, 3072).unwrap()
    })
}

struct Daemon {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl Daemon {
    fn start(name: &str) -> Self {
        Self::start_with(name, |_| {})
    }

    fn start_with(name: &str, edit: impl FnOnce(&mut FileConfig)) -> Self {
        let socket = std::env::temp_dir()
            .join(format!("enclave-test-{name}-{}", std::process::id()))
            .join("enclave.sock");
        let d = Self::spawn(name, &format!("unix:{}", socket.display()), edit);
        d.wait_ready();
        d
    }

    /// Starts another instance of the same image whose documents chain to `other`'s sim root
    /// (as every enclave's chain to AWS's).
    fn start_sharing_ca(name: &str, other: &Daemon) -> Self {
        let dir = std::env::temp_dir().join(format!("enclave-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(other.dir.join("sim-ca.pem"), dir.join("sim-ca.pem")).unwrap();
        let socket = dir.join("enclave.sock");
        let d = Self::spawn_in(dir, &format!("unix:{}", socket.display()), |_| {});
        d.wait_ready();
        d
    }

    /// Starts the daemon without waiting for it.
    fn spawn(name: &str, listen: &str, edit: impl FnOnce(&mut FileConfig)) -> Self {
        let dir = std::env::temp_dir().join(format!("enclave-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self::spawn_in(dir, listen, edit)
    }

    fn spawn_in(dir: PathBuf, listen: &str, edit: impl FnOnce(&mut FileConfig)) -> Self {
        let der = kms_key().to_public_key().to_public_key_der().unwrap();
        let mut config = FileConfig::new(der.as_bytes(), Some("test-key".into()), authorization());
        edit(&mut config);
        std::fs::write(dir.join("enclave.toml"), config.to_toml().unwrap()).unwrap();
        let socket = dir.join("enclave.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_signer-enclave"))
            .args(["--listen", listen])
            .args(["--nsm", "sim", "--config"])
            .arg(dir.join("enclave.toml"))
            .arg("--sim-ca")
            .arg(dir.join("sim-ca.pem"))
            .env("RUST_LOG", "debug")
            .stderr(Stdio::from(std::fs::File::create(dir.join("enclave.log")).unwrap()))
            .spawn()
            .unwrap();
        Self { child, dir, socket }
    }

    fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + TIMEOUT;
        while std::time::Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("enclave did not start: {}", self.log());
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::Unix(self.socket.clone())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("enclave.log")).unwrap_or_default()
    }

    fn sim_root(&self) -> TrustAnchor {
        let pem = std::fs::read_to_string(self.dir.join("sim-ca.pem")).unwrap();
        nitro_attestation::sim::SimCa::from_pem(&pem).unwrap().trust_anchor().unwrap()
    }

    async fn connect(&self) -> Connection {
        Connection::open(&self.endpoint(), TIMEOUT).await.unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn ok(c: &Connection, op: Op) -> Reply {
    match c.call(&op, TIMEOUT).await.unwrap() {
        Outcome::Ok(r) => r,
        Outcome::Err(e) => panic!("{} refused: {e:?}", op.name()),
    }
}

async fn err(c: &Connection, op: Op) -> signer_protocol::ErrorReply {
    match c.call(&op, TIMEOUT).await.unwrap() {
        Outcome::Err(e) => e,
        Outcome::Ok(r) => panic!("expected an error, got {r:?}"),
    }
}

fn policy() -> Policy {
    Policy {
        max_lamports_per_tx: 1_000_000_000,
        max_lamports_per_day: u64::MAX,
        max_fee_lamports: 100_000,
        tokens: vec![],
        allowed_programs: vec![],
        max_notional_cents_per_tx: 0,
        max_notional_cents_per_day: 0,
        destinations: None,
        max_tx_per_minute: None,
    }
}

/// A legacy transaction: one signer (`agent`), System Transfer to `to`.
fn transfer_tx(agent: &Pubkey, to: &Pubkey, lamports: u64) -> Vec<u8> {
    let mut tx = vec![1];
    tx.extend([0u8; 64]);
    tx.extend([1, 0, 1, 3]);
    tx.extend(agent.0);
    tx.extend(to.0);
    tx.extend([0u8; 32]);
    tx.extend([7u8; 32]);
    tx.extend([1, 2, 2, 0, 1, 12, 2, 0, 0, 0]);
    tx.extend(lamports.to_le_bytes());
    tx
}

fn verify_signed(tx: &[u8], agent: &Pubkey, signature: &[u8; 64]) {
    assert_eq!(&tx[1..65], signature);
    let key = ed25519_dalek::VerifyingKey::from_bytes(&agent.0).unwrap();
    key.verify(&tx[65..], &ed25519_dalek::Signature::from_bytes(signature)).unwrap();
}

fn kms_envelope(wrapped: &[u8], recipient_spki: &[u8]) -> Vec<u8> {
    let key = kms_key().decrypt(Oaep::<Sha256>::new(), wrapped).unwrap();
    envelope::seal(&key, recipient_spki, &OsRandom, ContentForm::Chunked).unwrap()
}

struct Wallet {
    wallet: Pubkey,
    vault_record: Vec<u8>,
    vault_provenance: Vec<u8>,
    agent: Pubkey,
    agent_record: Vec<u8>,
    grant_record: Vec<u8>,
    grant_id: [u8; 16],
    enclave_id: EnclaveId,
}

/// A wallet the way a user makes one: vault, agent, the grant message signed by the wallet key.
async fn wallet(c: &Connection, byte: u8) -> Wallet {
    let user = ed25519_dalek::SigningKey::from_bytes(&[byte; 32]);
    let wallet = Pubkey(user.verifying_key().to_bytes());
    let Reply::VaultCreated { record: vault_record, provenance: vault_provenance, .. } =
        ok(c, Op::CreateVault { wallet }).await
    else {
        panic!()
    };
    let Reply::AgentCreated { agent_pubkey, record, .. } = ok(
        c,
        Op::CreateAgent(CreateAgentOp {
            wallet,
            vault_record: vault_record.clone(),
            vault_provenance: vault_provenance.clone(),
            kind: AgentKindMsg::Seed,
            envelope: None,
        }),
    )
    .await
    else {
        panic!()
    };
    let fields =
        GrantFields { wallet, bot_id: [1; 16], agent_pubkey, ttl_seconds: 600, policy: policy() };
    let Reply::Authorization { message, nonce, issued_at, .. } =
        ok(c, Op::AuthorizeGrant(fields.clone())).await
    else {
        panic!()
    };
    let Reply::GrantCreated {
        grant_id,
        record: grant_record,
        issued_at: from,
        expires_at,
        enclave_id,
        ..
    } = ok(
        c,
        Op::CreateGrant(CreateGrantOp {
            grant: fields,
            nonce,
            issued_at,
            signature: user.sign(message.as_bytes()).to_bytes(),
            vault_record: vault_record.clone(),
            vault_provenance: vault_provenance.clone(),
            envelope: None,
        }),
    )
    .await
    else {
        panic!()
    };
    assert_eq!((from, expires_at - from), (issued_at, 600));
    Wallet {
        wallet,
        vault_record,
        vault_provenance,
        agent: agent_pubkey,
        agent_record: record,
        grant_record,
        grant_id,
        enclave_id,
    }
}

fn sign_op(w: &Wallet, tx: Vec<u8>, request_id: [u8; 16], envelope: Option<Vec<u8>>) -> Op {
    Op::Sign(SignOp {
        grant_record: w.grant_record.clone(),
        agent_key_record: w.agent_record.clone(),
        bot_id: [1; 16],
        transaction: tx,
        request_id,
        declared_notional_cents: None,
        envelope,
    })
}

async fn recipient_key(c: &Connection) -> Vec<u8> {
    let Reply::Attestation { public_key, .. } = ok(c, Op::Attest { nonce: None }).await else {
        panic!()
    };
    public_key
}

/// Signs, answering `need_key` with a KMS envelope, like the parent.
async fn sign(
    c: &Connection,
    w: &Wallet,
    tx: Vec<u8>,
    request_id: [u8; 16],
    spki: &[u8],
) -> Outcome {
    match c.call(&sign_op(w, tx.clone(), request_id, None), TIMEOUT).await.unwrap() {
        Outcome::Ok(Reply::NeedKey { wrapped_key, .. }) => {
            let env = kms_envelope(&wrapped_key, spki);
            c.call(&sign_op(w, tx, request_id, Some(env)), TIMEOUT).await.unwrap()
        }
        other => other,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operation() {
    let d = Daemon::start("ops");
    let c = d.connect().await;

    // attest: a document the attestation crate verifies against the sim root, carrying the
    // recipient key, the nonce and user data, and the PCRs `measure` predicts.
    let Reply::Attestation { document, public_key } =
        ok(&c, Op::Attest { nonce: Some(b"nonce-1".to_vec()) }).await
    else {
        panic!()
    };
    let measured = Command::new(env!("CARGO_BIN_EXE_signer-enclave"))
        .args(["measure", "--config"])
        .arg(d.dir.join("enclave.toml"))
        .output()
        .unwrap();
    assert!(measured.status.success());
    let pcrs = nitro_attestation::policy::pcrs_from_measurements_json(
        &String::from_utf8(measured.stdout).unwrap(),
    )
    .unwrap();
    let policy = AttestationPolicy {
        pcrs: pcrs.clone(),
        max_age: Some(Duration::from_secs(60)),
        nonce: Some(b"nonce-1".to_vec()),
        user_data: None,
        public_key: Some(public_key.clone()),
        allow_debug: false,
    };
    nitro_attestation::verify_with_policy(&document, &d.sim_root(), &policy, SystemTime::now())
        .unwrap();
    assert!(
        nitro_attestation::verify(&document, &TrustAnchor::aws_nitro_root_g1(), SystemTime::now())
            .is_err()
    );

    // create_agent (both kinds) and create_grant
    let w = wallet(&c, 3).await;
    let Reply::AgentCreated { agent_pubkey, .. } = ok(
        &c,
        Op::CreateAgent(CreateAgentOp {
            wallet: w.wallet,
            vault_record: w.vault_record.clone(),
            vault_provenance: w.vault_provenance.clone(),
            kind: AgentKindMsg::Mnemonic { account: 1 },
            envelope: None,
        }),
    )
    .await
    else {
        panic!()
    };
    assert_ne!(agent_pubkey, w.agent);

    // sign: need_key first, then signed with the envelope, then a cache hit without one.
    let tx = transfer_tx(&w.agent, &Pubkey([9; 32]), 5);
    let Reply::NeedKey { record_id, wrapped_key, .. } =
        ok(&c, sign_op(&w, tx.clone(), [1; 16], None)).await
    else {
        panic!()
    };
    assert_eq!(record_id, w.grant_id);
    let env = kms_envelope(&wrapped_key, &public_key);
    let Reply::Signed { signature, transaction, record_id, receipt } =
        ok(&c, sign_op(&w, tx.clone(), [1; 16], Some(env))).await
    else {
        panic!()
    };
    assert_eq!(record_id, w.grant_id);
    // Its receipt names this request and grant (docs/receipts.md).
    let receipt = signer_receipts::Receipt::decode(&receipt.unwrap()).unwrap();
    let signer_receipts::Body::Signed(body) = receipt.body else { panic!("{receipt:?}") };
    assert_eq!((body.request_id, body.grant_id), ([1; 16], w.grant_id));
    verify_signed(&transaction, &w.agent, &signature);
    let Reply::Signed { .. } =
        ok(&c, sign_op(&w, transfer_tx(&w.agent, &Pubkey([9; 32]), 6), [2; 16], None)).await
    else {
        panic!("cached grant should sign without an envelope")
    };
    // Denied by policy: the rule and numbers travel back.
    let e =
        err(&c, sign_op(&w, transfer_tx(&w.agent, &Pubkey([9; 32]), 2_000_000_000), [3; 16], None))
            .await;
    assert_eq!(e.code, ErrorCode::PolicyDenied);
    let denial = e.denial.unwrap();
    // The agent's 5 000-lamport fee counts in the per-transaction SOL limit.
    assert_eq!((denial.limit, denial.requested), (Some(1_000_000_000), Some(2_000_005_000)));

    // sign_scheduled
    let seed = Secret32::new([0x51; 32]);
    let agent =
        Pubkey(ed25519_dalek::SigningKey::from_bytes(seed.expose()).verifying_key().to_bytes());
    let intent = Intent { destination: [9; 32], mint: [0; 32], amount: 42 };
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let header = ScheduledHeader {
        wallet: w.wallet,
        schedule_id: [0x5c; 16],
        agent_pubkey: agent,
        not_before: now - 60,
        not_after: now + 3600,
        max_fee_lamports: 5_000,
        intent_hash: intent.hash(),
        created_at: now - 60,
        enclave_id: w.enclave_id,
    };
    let record =
        seal_scheduled(&header, &seed, KeyWrap::Rsa(&kms_key().to_public_key()), &OsRandom)
            .unwrap();
    let stx = transfer_tx(&agent, &Pubkey([9; 32]), 42);
    let op = |envelope| {
        Op::SignScheduled(SignScheduledOp {
            scheduled_record: record.clone(),
            transaction: stx.clone(),
            request_id: [0x10; 16],
            envelope,
        })
    };
    let Reply::NeedKey { wrapped_key, .. } = ok(&c, op(None)).await else { panic!() };
    let Reply::Signed { signature, transaction, .. } =
        ok(&c, op(Some(kms_envelope(&wrapped_key, &public_key)))).await
    else {
        panic!()
    };
    verify_signed(&transaction, &agent, &signature);

    // kill_switch, revoke, status
    let Reply::KillSwitch { engaged: true } = ok(&c, Op::KillSwitch { engaged: true }).await else {
        panic!()
    };
    assert_eq!(err(&c, sign_op(&w, tx.clone(), [4; 16], None)).await.code, ErrorCode::KillSwitch);
    let Reply::KillSwitch { engaged: false } = ok(&c, Op::KillSwitch { engaged: false }).await
    else {
        panic!()
    };
    let Reply::Revoked { dropped: 1 } =
        ok(&c, Op::Revoke { target: RevokeMsg::Record(w.grant_id) }).await
    else {
        panic!()
    };
    assert_eq!(err(&c, sign_op(&w, tx.clone(), [5; 16], None)).await.code, ErrorCode::GrantRevoked);
    let Reply::Revoked { .. } =
        ok(&c, Op::Revoke { target: RevokeMsg::Wallet(Pubkey([77; 32])) }).await
    else {
        panic!()
    };
    let Reply::Status(s) = ok(&c, Op::Status).await else { panic!() };
    assert_eq!(
        (s.signatures, s.denials, s.cached_grants, s.revocations, s.scheduled_ids),
        (3, 1, 0, 2, 1)
    );
    assert!(s.connections >= 1 && s.request_ids == 3, "{s:?}");
    assert!(!d.log().contains(&hex::encode([3u8; 32])), "logs never carry a UMK");
}

/// Sends raw bytes and returns the decoded response frames until the server closes or goes quiet.
async fn raw_exchange(socket: &Path, bytes: &[u8]) -> (Vec<Response>, bool) {
    let mut s = UnixStream::connect(socket).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut responses = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(3), read_frame(&mut s, 1 << 20)).await {
            Ok(Ok(Some(frame))) => responses.push(decode::<Response>(&frame).unwrap()),
            Ok(Ok(None)) | Ok(Err(_)) => return (responses, true),
            Err(_) => return (responses, false),
        }
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

fn hello() -> Vec<u8> {
    frame(
        &encode(
            &signer_protocol::Request {
                id: 1,
                op: Op::Hello { version: signer_protocol::PROTOCOL_VERSION },
            },
            0,
        )
        .unwrap(),
    )
}

fn error_code(r: &Response) -> ErrorCode {
    match &r.outcome {
        Outcome::Err(e) => e.code,
        Outcome::Ok(reply) => panic!("expected an error, got {reply:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_frames_get_error_frames_and_the_daemon_keeps_serving() {
    let d = Daemon::start("frames");
    let healthy = d.connect().await;

    // Oversized length: an error frame (id 0), then the connection is closed.
    let (r, closed) =
        raw_exchange(&d.socket, &[hello(), vec![0x7f, 0xff, 0xff, 0xff]].concat()).await;
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!((r[1].id, error_code(&r[1])), (0, ErrorCode::BadRequest));
    assert!(closed);

    // Garbage CBOR and an unknown op: error frames, connection stays usable.
    let mut unknown = Vec::new();
    ciborium::into_writer(
        &ciborium::Value::Map(vec![
            (ciborium::Value::Text("id".into()), ciborium::Value::Integer(9.into())),
            (
                ciborium::Value::Text("op".into()),
                ciborium::Value::Map(vec![(
                    ciborium::Value::Text("format_disk".into()),
                    ciborium::Value::Null,
                )]),
            ),
        ]),
        &mut unknown,
    )
    .unwrap();
    let status = encode(&signer_protocol::Request { id: 10, op: Op::Status }, 0).unwrap();
    let (r, closed) = raw_exchange(
        &d.socket,
        &[hello(), frame(b"\xff\xfe garbage"), frame(&unknown), frame(&status)].concat(),
    )
    .await;
    assert!(!closed, "garbage does not close the connection");
    assert_eq!(r.len(), 4);
    assert_eq!((r[1].id, error_code(&r[1])), (0, ErrorCode::BadRequest));
    assert_eq!(
        (r[2].id, error_code(&r[2])),
        (9, ErrorCode::BadRequest),
        "unknown op answered with its id"
    );
    assert!(matches!(r[3].outcome, Outcome::Ok(Reply::Status(_))));

    // An attestation request that names its own `user_data` (a caller could otherwise have the
    // enclave vouch for any provenance or handover binding): refused, no document.
    let mut chosen = Vec::new();
    let bytes = |b: &[u8]| ciborium::Value::Bytes(b.to_vec());
    ciborium::into_writer(
        &ciborium::Value::Map(vec![
            (ciborium::Value::Text("id".into()), ciborium::Value::Integer(11.into())),
            (
                ciborium::Value::Text("op".into()),
                ciborium::Value::Map(vec![(
                    ciborium::Value::Text("attest".into()),
                    ciborium::Value::Map(vec![
                        (ciborium::Value::Text("nonce".into()), bytes(b"n")),
                        (ciborium::Value::Text("user_data".into()), bytes(&[7; 32])),
                    ]),
                )]),
            ),
        ]),
        &mut chosen,
    )
    .unwrap();
    let (r, _) = raw_exchange(&d.socket, &[hello(), frame(&chosen)].concat()).await;
    assert_eq!((r[1].id, error_code(&r[1])), (11, ErrorCode::BadRequest), "{:?}", r[1]);

    // Truncated frame: the server waits, then sees the connection end; nothing breaks.
    let (r, _) = raw_exchange(&d.socket, &[hello(), vec![0, 0, 0, 50, 1, 2, 3]].concat()).await;
    assert_eq!(r.len(), 1);

    // Wrong version and a missing hello: an error frame, then the connection is closed.
    let wrong = frame(
        &encode(&signer_protocol::Request { id: 3, op: Op::Hello { version: 99 } }, 0).unwrap(),
    );
    let (r, closed) = raw_exchange(&d.socket, &wrong).await;
    assert_eq!((r.len(), r[0].id, error_code(&r[0]), closed), (1, 3, ErrorCode::BadRequest, true));
    if let Outcome::Err(e) = &r[0].outcome {
        assert!(e.message.contains("version 99"), "{}", e.message);
    }
    let (r, closed) = raw_exchange(&d.socket, &frame(&status)).await;
    assert_eq!((r.len(), error_code(&r[0]), closed), (1, ErrorCode::BadRequest, true));
    // Empty payload and a zero-length write.
    let (r, _) = raw_exchange(&d.socket, &[hello(), frame(b"")].concat()).await;
    assert_eq!(error_code(&r[1]), ErrorCode::BadRequest);

    // A request the enclave refuses for its content, on the healthy connection.
    let garbage_sign = sign_op(
        &Wallet {
            wallet: Pubkey([0; 32]),
            vault_record: vec![],
            vault_provenance: vec![],
            agent: Pubkey([0; 32]),
            agent_record: vec![1],
            grant_record: vec![2; 3],
            grant_id: [0; 16],
            enclave_id: EnclaveId::default(),
        },
        vec![3],
        [0; 16],
        Some(vec![4]),
    );
    assert_eq!(err(&healthy, garbage_sign).await.code, ErrorCode::RecordInvalid);

    // The first connection never noticed any of this.
    let Reply::Status(s) = ok(&healthy, Op::Status).await else { panic!() };
    assert_eq!(s.signatures, 0);
    assert!(d.child_is_running());
}

impl Daemon {
    fn child_is_running(&self) -> bool {
        // `try_wait` needs `&mut`; the process table is enough here.
        Path::new(&format!("/proc/{}", self.child.id())).exists()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_requests_over_sixteen_connections() {
    let d = Daemon::start("load");
    let setup = d.connect().await;
    let spki = recipient_key(&setup).await;
    let w = Arc::new(wallet(&setup, 8).await);
    // Open the grant once.
    let Outcome::Ok(Reply::Signed { .. }) =
        sign(&setup, &w, transfer_tx(&w.agent, &Pubkey([1; 32]), 1), [0xff; 16], &spki).await
    else {
        panic!()
    };
    let mut connections = Vec::new();
    for _ in 0..16 {
        connections.push(Arc::new(d.connect().await));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000u32 {
        let (c, w) = (Arc::clone(&connections[i as usize % 16]), Arc::clone(&w));
        tasks.spawn(async move {
            let to = Pubkey([(i % 200) as u8 + 10; 32]);
            let lamports = u64::from(i) + 1;
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_le_bytes());
            let outcome = c
                .call(&sign_op(&w, transfer_tx(&w.agent, &to, lamports), id, None), TIMEOUT)
                .await
                .unwrap();
            (i, lamports, to, outcome)
        });
    }
    let mut answered = 0;
    while let Some(result) = tasks.join_next().await {
        let (i, lamports, to, outcome) = result.unwrap();
        let Outcome::Ok(Reply::Signed { signature, transaction, .. }) = outcome else {
            panic!("request {i}: {outcome:?}")
        };
        assert_eq!(
            transaction[65 + 4 + 32..65 + 4 + 64],
            to.0,
            "request {i} got its own transaction back"
        );
        assert_eq!(transaction[transaction.len() - 8..], lamports.to_le_bytes());
        verify_signed(&transaction, &w.agent, &signature);
        answered += 1;
    }
    assert_eq!(answered, 1000);
    let Reply::Status(s) = ok(&setup, Op::Status).await else { panic!() };
    assert_eq!(s.signatures, 1001);
    assert_eq!(s.connections, 17);
}

/// Opens a connection, retrying while the readiness probe's connection still holds a slot.
async fn connect_when_a_slot_frees(d: &Daemon) -> Connection {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        match Connection::open(&d.endpoint(), TIMEOUT).await {
            Ok(c) => return c,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("no slot freed up: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_over_the_limit_is_refused_with_the_limit_and_the_others_keep_serving() {
    let d = Daemon::start_with("limit", |c| c.max_connections = 2);
    let first = connect_when_a_slot_frees(&d).await;
    let second = connect_when_a_slot_frees(&d).await;
    let refused = Connection::open(&d.endpoint(), TIMEOUT).await.err();
    assert_eq!(
        refused.map(|e| e.to_string()),
        Some("the enclave refused the connection: too many connections (limit 2)".to_string()),
        "the client learns why, not just that the socket closed"
    );
    // The two admitted connections keep serving.
    for c in [&first, &second] {
        let Reply::Status(s) = ok(c, Op::Status).await else { panic!() };
        assert_eq!(s.connections, 2);
    }
    // Closing one frees its slot for a new connection.
    drop(first);
    let third = connect_when_a_slot_frees(&d).await;
    let Reply::Status(s) = ok(&third, Op::Status).await else { panic!() };
    assert_eq!(s.connections, 2);
    assert!(d.log().contains("connection refused: too many connections"), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_in_flight_work_and_exits_cleanly() {
    let mut d = Daemon::start("shutdown");
    let c = d.connect().await;
    let spki = recipient_key(&c).await;
    let w = wallet(&c, 9).await;
    let Outcome::Ok(Reply::Signed { .. }) =
        sign(&c, &w, transfer_tx(&w.agent, &Pubkey([1; 32]), 1), [1; 16], &spki).await
    else {
        panic!()
    };
    // A burst of requests, then SIGTERM while they are in flight.
    let c = Arc::new(c);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50u8 {
        let (c, op) = (
            Arc::clone(&c),
            sign_op(&w, transfer_tx(&w.agent, &Pubkey([i + 10; 32]), 1), [i + 100; 16], None),
        );
        tasks.spawn(async move { c.call(&op, TIMEOUT).await });
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    Command::new("kill").args(["-TERM", &d.child.id().to_string()]).status().unwrap();
    let mut definite = 0;
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(Outcome::Ok(Reply::Signed { .. })) => definite += 1,
            // Requests not yet read when shutdown began see the connection close.
            Err(signer_protocol::ClientError::Closed { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    let status = d.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(!d.socket.exists(), "socket removed");
    let log = d.log();
    assert!(log.contains("SIGTERM") && log.contains("shutdown complete"), "{log}");
    eprintln!("{definite} of 50 in-flight requests completed before shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn vsock_listener_serves_and_the_connector_fails_cleanly_without_loopback() {
    // This machine has /dev/vsock but no loopback transport: the daemon binds and serves on
    // vsock, and the parent's connector (same code as for Unix sockets above the socket) gets a
    // clean, typed connection error instead of hanging.
    let port = 20_000 + (std::process::id() % 10_000);
    let mut d = Daemon::spawn("vsock", &format!("vsock:{port}"), |_| {});
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !d.log().contains("serving") && std::time::Instant::now() < deadline {
        assert!(d.child.try_wait().unwrap().is_none(), "exited: {}", d.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(d.log().contains(&format!("listen=vsock:{port}")), "{}", d.log());
    for cid in [1u32, 2, 3] {
        let started = std::time::Instant::now();
        let r = Connection::open(&Endpoint::Vsock { cid, port }, Duration::from_secs(2)).await;
        assert!(
            matches!(r, Err(signer_protocol::ClientError::Connect { .. })),
            "cid {cid}: {:?}",
            r.err()
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    Command::new("kill").args(["-TERM", &d.child.id().to_string()]).status().unwrap();
    assert!(d.child.wait().unwrap().success());
}

#[test]
fn bad_configs_are_refused_with_a_reason() {
    let dir = std::env::temp_dir().join(format!("enclave-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let der = kms_key().to_public_key().to_public_key_der().unwrap();
    let good = FileConfig::new(der.as_bytes(), None, authorization()).to_toml().unwrap();
    let small_key = {
        let mut rng = enclave_core::secret::seeded_rng(&OsRandom).unwrap();
        let k = RsaPrivateKey::new(&mut rng, 2048).unwrap();
        FileConfig::new(
            k.to_public_key().to_public_key_der().unwrap().as_bytes(),
            None,
            authorization(),
        )
        .to_toml()
        .unwrap()
    };
    for (name, text, needle) in [
        ("typo", format!("{good}max_grant_tll_seconds = 5\n"), "unknown field"),
        (
            "ttl",
            good.replace("max_grant_ttl_seconds = 3600", "max_grant_ttl_seconds = 30"),
            "max_grant_ttl_seconds",
        ),
        (
            "ttl over 30 days",
            good.replace("max_grant_ttl_seconds = 3600", "max_grant_ttl_seconds = 2592001"),
            "max_grant_ttl_seconds",
        ),
        (
            "bits",
            good.replace("recipient_key_bits = 2048", "recipient_key_bits = 1024"),
            "recipient_key_bits",
        ),
        ("key", good.replace("kms_public_key = \"", "kms_public_key = \"!!"), "base64"),
        ("2048-bit KMS key", small_key, "RSA_3072 or RSA_4096"),
        ("not toml", "{{".to_string(), "config"),
        (
            "predecessor without PCR0",
            format!("{good}\n[[predecessors]]\nPCR8 = \"{}\"\n", "ab".repeat(48)),
            "PCR0",
        ),
    ] {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_signer-enclave"))
            .args([
                "--listen",
                "unix:/nonexistent/x.sock",
                "--nsm",
                "sim",
                "--sim-ca",
                "/tmp/unused.pem",
                "--config",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{name}: {stderr}");
    }
    // Production mode outside an enclave: a clear error, not a crash.
    let path = dir.join("good.toml");
    std::fs::write(&path, &good).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_signer-enclave"))
        .args(["--listen", "vsock:5000", "--nsm", "nitro", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Nitro Secure Module is not available"));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = LineEnding::LF;
}

/// The live handover between two real daemons (the test relays, playing the parent and KMS), and
/// every forged, replayed or misdirected step refused.
#[tokio::test(flavor = "multi_thread")]
async fn handover_between_two_daemons_refuses_forged_and_replayed_steps() {
    let p = Daemon::start("handover-p");
    let s = Daemon::start_sharing_ca("handover-s", &p);
    let third = Daemon::start_sharing_ca("handover-t", &p);
    let (pc, sc, tc) = (p.connect().await, s.connect().await, third.connect().await);
    let w = wallet(&pc, 0x44).await;
    let p_spki = recipient_key(&pc).await;
    let tx = transfer_tx(&w.agent, &Pubkey([9; 32]), 5);
    let Outcome::Ok(Reply::Signed { signature: before, .. }) =
        sign(&pc, &w, tx.clone(), [1; 16], &p_spki).await
    else {
        panic!("the predecessor signs")
    };

    let Reply::HandoverOffer { document: offer } = ok(&sc, Op::HandoverOffer).await else {
        panic!()
    };
    let Reply::HandoverPrepared { document, wrapped_key, successor } =
        ok(&pc, Op::HandoverPrepare { successor_document: offer }).await
    else {
        panic!()
    };
    let s_spki = recipient_key(&sc).await;
    assert_eq!(successor, EnclaveId::from_recipient_key(&s_spki));
    // KMS unwraps the handover key for the successor's attested key only.
    let envelope = kms_envelope(&wrapped_key, &s_spki);
    // Misdirected: the third enclave, holding an offer of its own, is handed P's document and
    // an envelope made for it: the document binds S, so it refuses.
    ok(&tc, Op::HandoverOffer).await;
    let t_spki = recipient_key(&tc).await;
    let e = err(
        &tc,
        Op::HandoverAccept {
            predecessor_document: document.clone(),
            wrapped_key: wrapped_key.clone(),
            envelope: kms_envelope(&wrapped_key, &t_spki),
        },
    )
    .await;
    assert_eq!(e.code, ErrorCode::HandoverRefused, "{}", e.message);
    // Forged: a proof made up by the host ends the handover on the predecessor.
    let e = err(&pc, Op::HandoverExport { proof: [7; 32] }).await;
    assert_eq!(e.code, ErrorCode::HandoverRefused);
    let Reply::Signed { .. } = ok(&pc, sign_op(&w, tx.clone(), [1; 16], None)).await else {
        panic!("the predecessor keeps deciding")
    };

    // The genuine handover.
    let Reply::HandoverOffer { document: offer } = ok(&sc, Op::HandoverOffer).await else {
        panic!()
    };
    let Reply::HandoverPrepared { document, wrapped_key, .. } =
        ok(&pc, Op::HandoverPrepare { successor_document: offer }).await
    else {
        panic!()
    };
    let envelope_for_s = kms_envelope(&wrapped_key, &s_spki);
    assert_ne!(envelope_for_s, envelope);
    let Reply::HandoverAccepted { proof } = ok(
        &sc,
        Op::HandoverAccept {
            predecessor_document: document,
            wrapped_key,
            envelope: envelope_for_s,
        },
    )
    .await
    else {
        panic!()
    };
    let Reply::HandoverExported { chunks } = ok(&pc, Op::HandoverExport { proof }).await else {
        panic!()
    };
    let mut recorded = Vec::new();
    let mut proof = None;
    for index in 0..chunks {
        let Reply::HandoverChunk { chunk } = ok(&pc, Op::HandoverChunk { index }).await else {
            panic!()
        };
        recorded.push(chunk.clone());
        let Reply::HandoverImported { imported, .. } =
            ok(&sc, Op::HandoverImport { index, total: chunks, chunk }).await
        else {
            panic!()
        };
        assert_eq!(imported.is_some(), index + 1 == chunks);
        proof = imported;
    }
    let Reply::HandoverCommitted { token } =
        ok(&pc, Op::HandoverCommit { imported: proof.unwrap() }).await
    else {
        panic!()
    };
    let Reply::HandoverFinished(done) = ok(&sc, Op::HandoverFinish { token }).await else {
        panic!()
    };
    assert_eq!(done.predecessor, w.enclave_id);
    assert_eq!(done.request_ids, 1);
    // The predecessor refuses; the successor answers identically for the predecessor's grant.
    let e = err(&pc, sign_op(&w, tx.clone(), [2; 16], None)).await;
    assert_eq!(e.code, ErrorCode::EnclaveHandedOver);
    let Outcome::Ok(Reply::Signed { signature: after, .. }) =
        sign(&sc, &w, tx.clone(), [1; 16], &s_spki).await
    else {
        panic!("the successor answers for the predecessor's grant")
    };
    assert_eq!(after, before, "an identical retry is the identical signature");
    // Replayed: the recorded state to the successor again is only answered again (a lost
    // reply) and changes nothing; to the third enclave it opens nothing.
    let Reply::HandoverImported { imported: Some(_), .. } =
        ok(&sc, Op::HandoverImport { index: 0, total: chunks, chunk: recorded[0].clone() }).await
    else {
        panic!("a repeated chunk after the take-over is answered again")
    };
    let Reply::Identity { answers_for, .. } = ok(&sc, Op::Identity).await else { panic!() };
    assert_eq!(answers_for.len(), 2, "the successor and its one predecessor");
    let e =
        err(&tc, Op::HandoverImport { index: 0, total: chunks, chunk: recorded[0].clone() }).await;
    assert_eq!(e.code, ErrorCode::HandoverRefused);
    let Reply::Identity { answers_for, .. } = ok(&tc, Op::Identity).await else { panic!() };
    assert_eq!(answers_for.len(), 1, "the third enclave answers for itself only");
}
