//! The real `kms-sim` binary driven by the unmodified AWS SDK for Rust (and boto3).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    EncryptionAlgorithmSpec, KeyEncryptionMechanism, KeySpec, KeyUsageType, RecipientInfo,
};
use enclave_core::OsRandom;
use enclave_core::envelope::{self, RecipientKey};
use nitro_attestation::key_policy::{KeyPolicyParams, generate};
use nitro_attestation::sim::{SimCa, SimDocument};
use rsa::pkcs8::DecodePublicKey;
use rsa::{Oaep, RsaPublicKey};
use sha2::Sha256;

const ROLE: &str = "arn:aws:iam::111122223333:role/signer-parent";

struct Emulator {
    child: Child,
    dir: PathBuf,
    port: u16,
    ca: SimCa,
    /// `--caller-arn` (default: the emulator's, the parent's role).
    caller: Option<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Emulator {
    fn start(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("kms-sim-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ca = SimCa::generate(&mut rand_rng(), SystemTime::now()).unwrap();
        std::fs::write(dir.join("root.pem"), ca.root_pem()).unwrap();
        let mut e =
            Self { child: Command::new("true").spawn().unwrap(), dir, port: 0, ca, caller: None };
        e.spawn();
        e
    }

    fn spawn(&mut self) {
        self.port = free_port();
        self.child = Command::new(env!("CARGO_BIN_EXE_kms-sim"))
            .args(["--listen", &format!("127.0.0.1:{}", self.port), "--data-dir"])
            .arg(self.dir.join("data"))
            .arg("--attestation-root")
            .arg(self.dir.join("root.pem"))
            .args(self.caller.iter().flat_map(|c| ["--caller-arn", c.as_str()]))
            .stderr(Stdio::from(std::fs::File::create(self.dir.join("kms.log")).unwrap()))
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("kms-sim did not start");
    }

    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.spawn();
    }

    /// The same keys, with every call now attributed to `caller`; a client for it.
    async fn become_caller(&mut self, caller: &str) -> aws_sdk_kms::Client {
        self.caller = Some(caller.to_string());
        self.restart();
        self.client().await
    }

    async fn client(&self) -> aws_sdk_kms::Client {
        let config = aws_sdk_kms::Config::builder()
            .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
            .region(aws_sdk_kms::config::Region::new("us-east-1"))
            .endpoint_url(format!("http://127.0.0.1:{}", self.port))
            .credentials_provider(aws_sdk_kms::config::Credentials::new(
                "AKIDSIM", "secret", None, None, "test",
            ))
            .build();
        aws_sdk_kms::Client::from_conf(config)
    }

    /// A sim attestation document carrying `public_key` with the given PCR0.
    fn document(&self, public_key: &[u8], pcr0: u8) -> Vec<u8> {
        self.document_at(public_key, pcr0, SystemTime::now())
    }

    /// The same, made at `now` (an earlier time makes a recorded, replayed document).
    fn document_at(&self, public_key: &[u8], pcr0: u8, now: SystemTime) -> Vec<u8> {
        let leaf = self.ca.issue_leaf("i-test-enc01", &mut rand_rng(), now).unwrap();
        let pcrs: BTreeMap<u8, Vec<u8>> =
            (0u8..16).map(|i| (i, if i == 0 { vec![pcr0; 48] } else { vec![i; 48] })).collect();
        self.ca.issue_document(
            &leaf,
            &SimDocument {
                module_id: "i-test-enc01",
                timestamp_ms: now.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis()
                    as u64,
                pcrs: &pcrs,
                public_key: Some(public_key),
                user_data: None,
                nonce: None,
            },
        )
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_rng() -> impl rand_core::CryptoRng {
    enclave_core::secret::seeded_rng(&OsRandom).unwrap()
}

fn attested_policy(pcr0: u8) -> String {
    let pcrs: BTreeMap<u8, Vec<u8>> =
        (0u8..3).map(|i| (i, if i == 0 { vec![pcr0; 48] } else { vec![i; 48] })).collect();
    generate(&KeyPolicyParams {
        role_arn: ROLE,
        pcrs: &[pcrs],
        pin: &[0, 1],
        admin_arn: None,
        encrypt_role_arn: Some(ROLE),
        break_glass_role_arn: None,
    })
    .unwrap()
    .to_string()
}

fn recipient(doc: Vec<u8>) -> RecipientInfo {
    RecipientInfo::builder()
        .key_encryption_algorithm(KeyEncryptionMechanism::RsaesOaepSha256)
        .attestation_document(Blob::new(doc))
        .build()
}

fn code<E: aws_sdk_kms::error::ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn rsa_key_lifecycle_and_attested_decrypt() {
    let mut emu = Emulator::start("rsa");
    let kms = emu.client().await;
    let created = kms
        .create_key()
        .key_spec(KeySpec::Rsa3072)
        .key_usage(KeyUsageType::EncryptDecrypt)
        .description("execution key")
        .send()
        .await
        .unwrap();
    let meta = created.key_metadata().unwrap();
    let key_id = meta.key_id().to_string();
    assert_eq!(meta.key_spec(), Some(&KeySpec::Rsa3072));
    assert!(meta.arn().unwrap().starts_with("arn:aws:kms:us-east-1:111122223333:key/"));

    let public = kms.get_public_key().key_id(&key_id).send().await.unwrap();
    let spki = public.public_key().unwrap().as_ref().to_vec();
    let rsa_pub = RsaPublicKey::from_public_key_der(&spki).unwrap();
    let mut rng = rand_rng();
    let wrapped = rsa_pub.encrypt(&mut rng, Oaep::<Sha256>::new(), &[0x11; 32]).unwrap();

    // Default policy (account root): plain Decrypt works.
    let plain = kms
        .decrypt()
        .key_id(&key_id)
        .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .ciphertext_blob(Blob::new(wrapped.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.plaintext().unwrap().as_ref(), &[0x11; 32]);

    // The attested policy: plain Decrypt is explicitly denied.
    kms.put_key_policy()
        .key_id(&key_id)
        .policy_name("default")
        .policy(attested_policy(0xaa))
        .send()
        .await
        .unwrap();
    let err = kms
        .decrypt()
        .key_id(&key_id)
        .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .ciphertext_blob(Blob::new(wrapped.clone()))
        .send()
        .await
        .unwrap_err();
    let err = err.into_service_error();
    assert_eq!(code(&err), "AccessDeniedException");
    assert!(
        err.to_string().contains("explicit deny") || format!("{err:?}").contains("explicit deny"),
        "{err:?}"
    );

    // With a Recipient whose PCR0 matches: CiphertextForRecipient only, opened by the recipient.
    let enclave_key = RecipientKey::generate(&OsRandom, 2048).unwrap();
    let ok = kms
        .decrypt()
        .key_id(&key_id)
        .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .ciphertext_blob(Blob::new(wrapped.clone()))
        .recipient(recipient(emu.document(enclave_key.spki_der(), 0xaa)))
        .send()
        .await
        .unwrap();
    assert!(ok.plaintext().is_none(), "no plaintext when a Recipient is given");
    let env = ok.ciphertext_for_recipient().unwrap().as_ref();
    assert_eq!(envelope::open(env, &enclave_key).unwrap().as_slice(), &[0x11; 32]);

    // Another image: AccessDeniedException naming the deny.
    let err = kms
        .decrypt()
        .key_id(&key_id)
        .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .ciphertext_blob(Blob::new(wrapped.clone()))
        .recipient(recipient(emu.document(enclave_key.spki_der(), 0xab)))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(code(&err), "AccessDeniedException");

    // A document from another CA: rejected before the policy.
    let stranger = SimCa::generate(&mut rand_rng(), SystemTime::now()).unwrap();
    let leaf = stranger.issue_leaf("x", &mut rand_rng(), SystemTime::now()).unwrap();
    let pcrs: BTreeMap<u8, Vec<u8>> = [(0u8, vec![0xaa; 48])].into_iter().collect();
    let foreign = stranger.issue_document(
        &leaf,
        &SimDocument {
            module_id: "x",
            timestamp_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64,
            pcrs: &pcrs,
            public_key: Some(enclave_key.spki_der()),
            user_data: None,
            nonce: None,
        },
    );
    let err = kms
        .decrypt()
        .key_id(&key_id)
        .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .ciphertext_blob(Blob::new(wrapped.clone()))
        .recipient(recipient(foreign))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(code(&err), "ValidationException");

    // A genuine document recorded ten minutes ago and replayed: refused as too old (300 s).
    let recorded =
        emu.document_at(enclave_key.spki_der(), 0xaa, SystemTime::now() - Duration::from_secs(600));
    let err = kms
        .decrypt()
        .key_id(&key_id)
        .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .ciphertext_blob(Blob::new(wrapped.clone()))
        .recipient(recipient(recorded))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(code(&err), "ValidationException", "{err:?}");
    assert!(format!("{err:?}").contains("the maximum age is 300000 ms"), "{err:?}");

    // Describe, list, get policy.
    let d = kms.describe_key().key_id(&key_id).send().await.unwrap();
    assert_eq!(d.key_metadata().unwrap().description(), Some("execution key"));
    let l = kms.list_keys().send().await.unwrap();
    assert_eq!(l.keys().len(), 1);
    let p = kms.get_key_policy().key_id(&key_id).policy_name("default").send().await.unwrap();
    assert!(p.policy().unwrap().contains("DenyDecryptWithoutAttestation"));

    // Disabling the key is the hard stop.
    kms.disable_key().key_id(&key_id).send().await.unwrap();
    let err = kms
        .decrypt()
        .key_id(&key_id)
        .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .ciphertext_blob(Blob::new(wrapped.clone()))
        .recipient(recipient(emu.document(enclave_key.spki_der(), 0xaa)))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(code(&err), "DisabledException");
    kms.enable_key().key_id(&key_id).send().await.unwrap();

    // Restart: the key, its policy and its material persist.
    emu.restart();
    let kms = emu.client().await;
    let again = kms
        .decrypt()
        .key_id(&key_id)
        .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .ciphertext_blob(Blob::new(wrapped))
        .recipient(recipient(emu.document(enclave_key.spki_der(), 0xaa)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        envelope::open(again.ciphertext_for_recipient().unwrap().as_ref(), &enclave_key)
            .unwrap()
            .as_slice(),
        &[0x11; 32]
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(emu.dir.join("data/keys.json")).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn symmetric_key_with_encryption_context_and_recipient() {
    let emu = Emulator::start("sym");
    let kms = emu.client().await;
    let key_id =
        kms.create_key().send().await.unwrap().key_metadata().unwrap().key_id().to_string();
    kms.put_key_policy().key_id(&key_id).policy(attested_policy(0xaa)).send().await.unwrap();
    let ct = kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(vec![5u8; 32]))
        .encryption_context("aad_sha256", "abc")
        .send()
        .await
        .unwrap();
    let blob = ct.ciphertext_blob().unwrap().as_ref().to_vec();
    // Encrypt without the context key the policy requires: denied.
    let err = kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(vec![5u8; 32]))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(code(&err), "AccessDeniedException");

    let enclave_key = RecipientKey::generate(&OsRandom, 2048).unwrap();
    let ok = kms
        .decrypt()
        .ciphertext_blob(Blob::new(blob.clone()))
        .encryption_context("aad_sha256", "abc")
        .recipient(recipient(emu.document(enclave_key.spki_der(), 0xaa)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        envelope::open(ok.ciphertext_for_recipient().unwrap().as_ref(), &enclave_key)
            .unwrap()
            .as_slice(),
        &[5u8; 32]
    );
    // A different context (another record's AAD): the ciphertext does not open.
    let err = kms
        .decrypt()
        .ciphertext_blob(Blob::new(blob))
        .encryption_context("aad_sha256", "abd")
        .recipient(recipient(emu.document(enclave_key.spki_der(), 0xaa)))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(code(&err), "InvalidCiphertextException");
    let err = kms
        .describe_key()
        .key_id("00000000-0000-0000-0000-000000000000")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(code(&err), "NotFoundException");
}

#[test]
fn boto3_works_against_the_emulator() {
    let ok = Command::new("python3")
        .args(["-c", "import boto3"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "python3 with boto3 is required (`pip install boto3`; .ci/run installs it)");
    let emu = Emulator::start("boto3");
    let script = r#"
import base64, os, sys, boto3
kms = boto3.client("kms", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="AKIDSIM", aws_secret_access_key="secret")
key = kms.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
pub = kms.get_public_key(KeyId=key)["PublicKey"]
ct = kms.encrypt(KeyId=key, Plaintext=b"hello boto3", EncryptionAlgorithm="RSAES_OAEP_SHA_256")["CiphertextBlob"]
pt = kms.decrypt(KeyId=key, CiphertextBlob=ct, EncryptionAlgorithm="RSAES_OAEP_SHA_256")["Plaintext"]
assert pt == b"hello boto3", pt
sym = kms.create_key()["KeyMetadata"]["KeyId"]
ct = kms.encrypt(KeyId=sym, Plaintext=b"x" * 32, EncryptionContext={"a": "b"})["CiphertextBlob"]
assert kms.decrypt(CiphertextBlob=ct, EncryptionContext={"a": "b"})["Plaintext"] == b"x" * 32
try:
    kms.decrypt(CiphertextBlob=ct, EncryptionContext={"a": "c"})
    sys.exit("decrypt with the wrong context succeeded")
except kms.exceptions.InvalidCiphertextException:
    pass
assert len(kms.list_keys()["Keys"]) == 2
print("boto3 ok", len(pub))
"#;
    let out = Command::new("python3")
        .args(["-c", script, &format!("http://127.0.0.1:{}", emu.port)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("boto3 ok"));
}

/// The `__type` of a failed call.
fn failed<T, E: aws_sdk_kms::error::ProvideErrorMetadata>(
    result: Result<T, aws_sdk_kms::error::SdkError<E, aws_sdk_kms::config::http::HttpResponse>>,
) -> String {
    match result {
        Ok(_) => panic!("the call succeeded"),
        Err(e) => code(&e),
    }
}

async fn rsa_key(kms: &aws_sdk_kms::Client, spec: KeySpec) -> String {
    let created = kms.create_key().key_spec(spec).key_usage(KeyUsageType::EncryptDecrypt);
    created.send().await.unwrap().key_metadata().unwrap().arn().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn aliases_name_keys_where_kms_accepts_them_and_are_refused_elsewhere() {
    let mut emu = Emulator::start("alias");
    let kms = emu.client().await;
    let arn = rsa_key(&kms, KeySpec::Rsa2048).await;
    let key_id = arn.rsplit_once("key/").unwrap().1.to_string();
    let name = "alias/signer-execution";
    let alias_arn = "arn:aws:kms:us-east-1:111122223333:alias/signer-execution";
    kms.create_alias().alias_name(name).target_key_id(&arn).send().await.unwrap();
    kms.put_key_policy().key_id(&key_id).policy(attested_policy(0xaa)).send().await.unwrap();

    // Accepted: DescribeKey, GetPublicKey, Encrypt, Decrypt (with Recipient, as the parent
    // calls it with `kms.key_id` = an alias name or alias ARN).
    for id in [name, alias_arn] {
        let d = kms.describe_key().key_id(id).send().await.unwrap();
        assert_eq!(d.key_metadata().unwrap().arn(), Some(arn.as_str()), "{id}");
        let p = kms.get_public_key().key_id(id).send().await.unwrap();
        assert_eq!(p.key_id(), Some(arn.as_str()));
    }
    let spki = kms.get_public_key().key_id(name).send().await.unwrap().public_key.unwrap();
    let wrapped = RsaPublicKey::from_public_key_der(spki.as_ref())
        .unwrap()
        .encrypt(&mut rand_rng(), Oaep::<Sha256>::new(), &[0x22; 32])
        .unwrap();
    let enclave_key = RecipientKey::generate(&OsRandom, 2048).unwrap();
    for id in [name, alias_arn] {
        let ok = kms
            .decrypt()
            .key_id(id)
            .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
            .ciphertext_blob(Blob::new(wrapped.clone()))
            .recipient(recipient(emu.document(enclave_key.spki_der(), 0xaa)))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.key_id(), Some(arn.as_str()));
        let env = ok.ciphertext_for_recipient().unwrap().as_ref();
        assert_eq!(envelope::open(env, &enclave_key).unwrap().as_slice(), &[0x22; 32]);
    }
    // The policy still decides: Encrypt is granted to nobody.
    let encrypt = kms
        .encrypt()
        .key_id(name)
        .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .plaintext(Blob::new(vec![1; 16]))
        .send()
        .await;
    assert_eq!(failed(encrypt), "AccessDeniedException");

    // Refused with KMS's InvalidArnException: key-id-only parameters.
    for id in [name, alias_arn] {
        let policy = kms.get_key_policy().key_id(id).policy_name("default").send().await;
        assert_eq!(failed(policy), "InvalidArnException", "{id}");
        assert_eq!(failed(kms.disable_key().key_id(id).send().await), "InvalidArnException");
        assert_eq!(failed(kms.enable_key().key_id(id).send().await), "InvalidArnException");
        let put = kms.put_key_policy().key_id(id).policy(attested_policy(0xaa)).send().await;
        assert_eq!(failed(put), "InvalidArnException");
        let schedule = kms.schedule_key_deletion().key_id(id).send().await;
        assert_eq!(failed(schedule), "InvalidArnException");
        assert_eq!(
            failed(kms.cancel_key_deletion().key_id(id).send().await),
            "InvalidArnException"
        );
        assert_eq!(failed(kms.list_aliases().key_id(id).send().await), "InvalidArnException");
    }

    // Alias rules.
    let create = |alias: &str, target: &str| {
        kms.create_alias().alias_name(alias).target_key_id(target).send()
    };
    assert_eq!(failed(create(name, &key_id).await), "AlreadyExistsException");
    assert_eq!(failed(create("alias/aws/signer", &key_id).await), "NotAuthorizedException");
    assert_eq!(failed(create("signer-execution", &key_id).await), "ValidationException");
    assert_eq!(failed(create("alias/with space", &key_id).await), "ValidationException");
    assert_eq!(failed(create("alias/", &key_id).await), "InvalidAliasNameException");
    assert_eq!(failed(create("alias/other", name).await), "ValidationException");
    let missing = "00000000-0000-0000-0000-000000000000";
    assert_eq!(failed(create("alias/other", missing).await), "NotFoundException");
    assert_eq!(failed(kms.describe_key().key_id("alias/nope").send().await), "NotFoundException");
    assert_eq!(failed(kms.describe_key().key_id("not-a-key").send().await), "NotFoundException");
    let other_account = "arn:aws:kms:us-east-1:444455556666:alias/signer-execution";
    assert_eq!(failed(kms.describe_key().key_id(other_account).send().await), "NotFoundException");

    // ListAliases, filtered by key; UpdateAlias to a key of the same kind only; DeleteAlias.
    let second = rsa_key(&kms, KeySpec::Rsa2048).await;
    kms.create_alias().alias_name("alias/second").target_key_id(&second).send().await.unwrap();
    let all = kms.list_aliases().send().await.unwrap();
    let names: Vec<&str> = all.aliases().iter().filter_map(|a| a.alias_name()).collect();
    assert_eq!(names, [name, "alias/second"]);
    let first_page = kms.list_aliases().limit(1).send().await.unwrap();
    assert!(first_page.truncated());
    let next =
        kms.list_aliases().limit(1).marker(first_page.next_marker().unwrap()).send().await.unwrap();
    assert_eq!(next.aliases()[0].alias_name(), Some("alias/second"));
    assert!(!next.truncated());
    let of_first = kms.list_aliases().key_id(&arn).send().await.unwrap();
    assert_eq!(of_first.aliases().len(), 1);
    assert_eq!(of_first.aliases()[0].alias_arn(), Some(alias_arn));
    assert_eq!(of_first.aliases()[0].target_key_id(), Some(key_id.as_str()));
    let symmetric =
        kms.create_key().send().await.unwrap().key_metadata().unwrap().key_id().to_string();
    let update = kms.update_alias().alias_name(name).target_key_id(&symmetric).send().await;
    assert_eq!(failed(update), "ValidationException");
    let update = kms.update_alias().alias_name("alias/nope").target_key_id(&second).send().await;
    assert_eq!(failed(update), "NotFoundException");
    kms.update_alias().alias_name("alias/second").target_key_id(&arn).send().await.unwrap();
    let moved = kms.describe_key().key_id("alias/second").send().await.unwrap();
    assert_eq!(moved.key_metadata().unwrap().arn(), Some(arn.as_str()));
    kms.delete_alias().alias_name("alias/second").send().await.unwrap();
    let deleted = kms.delete_alias().alias_name("alias/second").send().await;
    assert_eq!(failed(deleted), "NotFoundException");

    // Aliases persist across a restart.
    emu.restart();
    let kms = emu.client().await;
    let d = kms.describe_key().key_id(name).send().await.unwrap();
    assert_eq!(d.key_metadata().unwrap().arn(), Some(arn.as_str()));
    let after = kms.list_aliases().send().await.unwrap();
    assert_eq!(after.aliases().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn key_deletion_follows_kms_key_states_and_persists() {
    let mut emu = Emulator::start("deletion");
    let kms = emu.client().await;
    let arn = rsa_key(&kms, KeySpec::Rsa2048).await;
    kms.create_alias().alias_name("alias/retired").target_key_id(&arn).send().await.unwrap();

    for days in [6, 31] {
        let r = kms.schedule_key_deletion().key_id(&arn).pending_window_in_days(days).send().await;
        assert_eq!(failed(r), "ValidationException", "{days} days");
    }
    let before = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let scheduled =
        kms.schedule_key_deletion().key_id(&arn).pending_window_in_days(7).send().await.unwrap();
    assert_eq!(scheduled.key_id(), Some(arn.as_str()));
    assert_eq!(scheduled.key_state(), Some(&aws_sdk_kms::types::KeyState::PendingDeletion));
    assert_eq!(scheduled.pending_window_in_days(), Some(7));
    let date = scheduled.deletion_date().unwrap().secs() as u64;
    assert!((before + 7 * 86_400 - 5..=before + 7 * 86_400 + 5).contains(&date), "{date}");

    let meta = kms.describe_key().key_id("alias/retired").send().await.unwrap();
    let meta = meta.key_metadata().unwrap();
    assert_eq!(meta.key_state(), Some(&aws_sdk_kms::types::KeyState::PendingDeletion));
    assert!(!meta.enabled());
    assert_eq!(meta.deletion_date().map(|d| d.secs() as u64), Some(date));
    assert_eq!(meta.pending_deletion_window_in_days(), Some(7));

    // Pending deletion: no cryptography, no state change but cancelling, no new alias.
    let encrypt = kms
        .encrypt()
        .key_id(&arn)
        .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .plaintext(Blob::new(vec![1; 16]))
        .send()
        .await;
    assert_eq!(failed(encrypt), "KMSInvalidStateException");
    let decrypt = kms
        .decrypt()
        .key_id("alias/retired")
        .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .ciphertext_blob(Blob::new(vec![0; 256]))
        .send()
        .await;
    assert_eq!(failed(decrypt), "KMSInvalidStateException");
    assert_eq!(failed(kms.get_public_key().key_id(&arn).send().await), "KMSInvalidStateException");
    assert_eq!(failed(kms.enable_key().key_id(&arn).send().await), "KMSInvalidStateException");
    assert_eq!(failed(kms.disable_key().key_id(&arn).send().await), "KMSInvalidStateException");
    let again = kms.schedule_key_deletion().key_id(&arn).send().await;
    assert_eq!(failed(again), "KMSInvalidStateException");
    let alias = kms.create_alias().alias_name("alias/x").target_key_id(&arn).send().await;
    assert_eq!(failed(alias), "KMSInvalidStateException");
    // The policy can still be read, the key still listed.
    kms.get_key_policy().key_id(&arn).policy_name("default").send().await.unwrap();
    assert_eq!(kms.list_keys().send().await.unwrap().keys().len(), 1);

    // The state survives a restart; cancelling returns the key to Disabled, as KMS does.
    emu.restart();
    let kms = emu.client().await;
    let cancelled = kms.cancel_key_deletion().key_id(&arn).send().await.unwrap();
    assert_eq!(cancelled.key_id(), Some(arn.as_str()));
    let meta = kms.describe_key().key_id(&arn).send().await.unwrap();
    let meta = meta.key_metadata().unwrap();
    assert_eq!(meta.key_state(), Some(&aws_sdk_kms::types::KeyState::Disabled));
    assert!(meta.deletion_date().is_none());
    let r = kms.cancel_key_deletion().key_id(&arn).send().await;
    assert_eq!(failed(r), "KMSInvalidStateException");
    let encrypt = kms
        .encrypt()
        .key_id(&arn)
        .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .plaintext(Blob::new(vec![1; 16]))
        .send()
        .await;
    assert_eq!(failed(encrypt), "DisabledException");
    kms.enable_key().key_id(&arn).send().await.unwrap();
    let meta = kms.describe_key().key_id(&arn).send().await.unwrap();
    assert_eq!(
        meta.key_metadata().unwrap().key_state(),
        Some(&aws_sdk_kms::types::KeyState::Enabled)
    );

    // The default window is 30 days; once the deletion date has passed the key and its
    // aliases are gone (the date is moved into the past in the data file while stopped).
    let scheduled = kms.schedule_key_deletion().key_id(&arn).send().await.unwrap();
    assert_eq!(scheduled.pending_window_in_days(), Some(30));
    let _ = emu.child.kill();
    let _ = emu.child.wait();
    let path = emu.dir.join("data/keys.json");
    let mut file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    file["keys"][0]["pending_deletion"]["deletion_date"] = serde_json::json!(1.0);
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    emu.spawn();
    let kms = emu.client().await;
    assert_eq!(failed(kms.describe_key().key_id(&arn).send().await), "NotFoundException");
    let by_alias = kms.describe_key().key_id("alias/retired").send().await;
    assert_eq!(failed(by_alias), "NotFoundException");
    assert!(kms.list_aliases().send().await.unwrap().aliases().is_empty());
    assert!(kms.list_keys().send().await.unwrap().keys().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn interim_policy_denies_decrypt_and_lockout_check_holds() {
    let emu = Emulator::start("interim");
    let kms = emu.client().await;
    let interim = nitro_attestation::key_policy::generate_interim(Some(ROLE), None).unwrap();
    let arn = kms
        .create_key()
        .key_spec(KeySpec::Rsa2048)
        .key_usage(KeyUsageType::EncryptDecrypt)
        .policy(interim.to_string())
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    // The administrators read the public key and the policy, and may add an alias...
    let spki = kms.get_public_key().key_id(&arn).send().await.unwrap().public_key.unwrap();
    let p = kms.get_key_policy().key_id(&arn).send().await.unwrap();
    assert!(p.policy().unwrap().contains("NoDecryptUntilTheAttestedPolicy"));
    kms.create_alias().alias_name("alias/interim").target_key_id(&arn).send().await.unwrap();
    // ...but nobody decrypts, not even with a valid attestation of the right image.
    let wrapped = RsaPublicKey::from_public_key_der(spki.as_ref())
        .unwrap()
        .encrypt(&mut rand_rng(), Oaep::<Sha256>::new(), &[0x33; 32])
        .unwrap();
    let enclave_key = RecipientKey::generate(&OsRandom, 2048).unwrap();
    let decrypt = || {
        kms.decrypt()
            .key_id("alias/interim")
            .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
            .ciphertext_blob(Blob::new(wrapped.clone()))
            .recipient(recipient(emu.document(enclave_key.spki_der(), 0xaa)))
            .send()
    };
    let err = decrypt().await.unwrap_err().into_service_error();
    assert_eq!(code(&err), "AccessDeniedException");
    assert!(format!("{err:?}").contains("NoDecryptUntilTheAttestedPolicy"), "{err:?}");
    let plain = kms
        .decrypt()
        .key_id(&arn)
        .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .ciphertext_blob(Blob::new(wrapped.clone()))
        .send()
        .await;
    assert_eq!(failed(plain), "AccessDeniedException");
    // The final policy replaces it: the attested image decrypts.
    kms.put_key_policy().key_id(&arn).policy(attested_policy(0xaa)).send().await.unwrap();
    let ok = decrypt().await.unwrap();
    let env = ok.ciphertext_for_recipient().unwrap().as_ref();
    assert_eq!(envelope::open(env, &enclave_key).unwrap().as_slice(), &[0x33; 32]);

    // Lockout safety check: a policy that would stop the caller from changing it is refused,
    // unless the check is bypassed (and then the key policy is locked for this caller).
    let pcrs: BTreeMap<u8, Vec<u8>> = (0u8..3).map(|i| (i, vec![i; 48])).collect();
    let foreign_admin = generate(&KeyPolicyParams {
        role_arn: ROLE,
        pcrs: &[pcrs],
        pin: &[0],
        admin_arn: Some("arn:aws:iam::444455556666:role/admin"),
        encrypt_role_arn: None,
        break_glass_role_arn: None,
    })
    .unwrap()
    .to_string();
    let create = kms.create_key().policy(&foreign_admin).send().await;
    assert_eq!(failed(create), "MalformedPolicyDocumentException");
    let put = kms.put_key_policy().key_id(&arn).policy(&foreign_admin).send().await;
    assert_eq!(failed(put), "MalformedPolicyDocumentException");
    kms.put_key_policy()
        .key_id(&arn)
        .policy(&foreign_admin)
        .bypass_policy_lockout_safety_check(true)
        .send()
        .await
        .unwrap();
    let put = kms.put_key_policy().key_id(&arn).policy(attested_policy(0xaa)).send().await;
    assert_eq!(failed(put), "AccessDeniedException");
}

#[tokio::test(flavor = "multi_thread")]
async fn decrypt_of_unparseable_bytes_is_invalid_ciphertext_as_in_kms() {
    let emu = Emulator::start("garbage");
    let kms = emu.client().await;
    let sym = kms.create_key().send().await.unwrap().key_metadata().unwrap().key_id().to_string();
    let other = kms.create_key().send().await.unwrap().key_metadata().unwrap().key_id().to_string();
    let rsa = rsa_key(&kms, KeySpec::Rsa2048).await;
    let decrypt = |key: Option<&str>, blob: Vec<u8>, algorithm: Option<EncryptionAlgorithmSpec>| {
        let request = kms
            .decrypt()
            .set_key_id(key.map(str::to_string))
            .set_encryption_algorithm(algorithm)
            .ciphertext_blob(Blob::new(blob));
        async move { failed(request.send().await) }
    };
    let garbage = vec![0x5au8; 256];

    // Random bytes carry no key metadata: without a KeyId, KMS cannot parse them.
    assert_eq!(decrypt(None, garbage.clone(), None).await, "InvalidCiphertextException");
    // With a symmetric key named, random bytes are still not a ciphertext of any key.
    assert_eq!(decrypt(Some(&sym), garbage.clone(), None).await, "InvalidCiphertextException");
    // A truncated genuine ciphertext: corrupted, not another key's.
    let genuine = kms
        .encrypt()
        .key_id(&sym)
        .plaintext(Blob::new(vec![7u8; 32]))
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .as_ref()
        .to_vec();
    let truncated = genuine.get(..40).unwrap().to_vec();
    assert_eq!(decrypt(Some(&sym), truncated.clone(), None).await, "InvalidCiphertextException");
    assert_eq!(decrypt(None, truncated, None).await, "InvalidCiphertextException");
    // A well-formed ciphertext of one key, sent to another key: the documented IncorrectKey.
    assert_eq!(decrypt(Some(&other), genuine.clone(), None).await, "IncorrectKeyException");
    // Random bytes to an RSA key: InvalidCiphertext.
    let oaep = Some(EncryptionAlgorithmSpec::RsaesOaepSha256);
    assert_eq!(decrypt(Some(&rsa), garbage, oaep).await, "InvalidCiphertextException");
    // The genuine ciphertext still opens, with and without its KeyId.
    for key in [Some(sym.as_str()), None] {
        let out = kms
            .decrypt()
            .set_key_id(key.map(str::to_string))
            .ciphertext_blob(Blob::new(genuine.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(out.plaintext().unwrap().as_ref(), &[7u8; 32]);
    }
}

const KMS_ADMIN: &str = "arn:aws:iam::111122223333:role/kms-admin";
const BREAK_GLASS: &str = "arn:aws:iam::111122223333:role/signer-break-glass";

fn attested_policy_with_break_glass(pcr0: u8, break_glass: Option<&str>) -> String {
    let pcrs: BTreeMap<u8, Vec<u8>> =
        (0u8..3).map(|i| (i, if i == 0 { vec![pcr0; 48] } else { vec![i; 48] })).collect();
    generate(&KeyPolicyParams {
        role_arn: ROLE,
        pcrs: &[pcrs],
        pin: &[0, 1],
        admin_arn: None,
        encrypt_role_arn: None,
        break_glass_role_arn: break_glass,
    })
    .unwrap()
    .to_string()
}

/// The disaster path: administrators cannot delete the key (explicit Deny, whatever IAM says),
/// only the break-glass role can; DisableKey stays theirs and EnableKey undoes it.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_break_glass_role_schedules_deletion_and_disable_stays_reversible() {
    let mut emu = Emulator::start("break-glass");
    let kms = emu.become_caller(KMS_ADMIN).await;
    let interim =
        nitro_attestation::key_policy::generate_interim_with(Some(ROLE), None, Some(BREAK_GLASS))
            .unwrap();
    let arn = kms
        .create_key()
        .key_spec(KeySpec::Rsa2048)
        .key_usage(KeyUsageType::EncryptDecrypt)
        .policy(interim.to_string())
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let schedule = |kms: &aws_sdk_kms::Client| {
        kms.schedule_key_deletion().key_id(&arn).pending_window_in_days(7).send()
    };
    // Under the interim policy already, the administrators cannot schedule the deletion.
    let err = schedule(&kms).await.unwrap_err().into_service_error();
    assert_eq!(code(&err), "AccessDeniedException");
    assert!(format!("{err:?}").contains("DenyKeyDeletionExceptBreakGlass"), "{err:?}");
    kms.put_key_policy()
        .key_id(&arn)
        .policy(attested_policy_with_break_glass(0xaa, Some(BREAK_GLASS)))
        .send()
        .await
        .unwrap();
    let err = schedule(&kms).await.unwrap_err().into_service_error();
    assert_eq!(code(&err), "AccessDeniedException");
    assert!(format!("{err:?}").contains("explicit deny"), "{err:?}");
    let state = |kms: aws_sdk_kms::Client, arn: String| async move {
        let d = kms.describe_key().key_id(arn).send().await.unwrap();
        d.key_metadata().unwrap().key_state().unwrap().as_str().to_string()
    };

    // The parent decrypts with an attestation; DisableKey (administrators) stops it,
    // EnableKey brings it back: the reversible hard stop.
    let spki = kms.get_public_key().key_id(&arn).send().await.unwrap().public_key.unwrap();
    let wrapped = RsaPublicKey::from_public_key_der(spki.as_ref())
        .unwrap()
        .encrypt(&mut rand_rng(), Oaep::<Sha256>::new(), &[0x44; 32])
        .unwrap();
    let enclave_key = RecipientKey::generate(&OsRandom, 2048).unwrap();
    let decrypt = |kms: aws_sdk_kms::Client, doc: Vec<u8>| {
        let request = kms
            .decrypt()
            .key_id(&arn)
            .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
            .ciphertext_blob(Blob::new(wrapped.clone()))
            .recipient(recipient(doc));
        async move { request.send().await }
    };
    kms.disable_key().key_id(&arn).send().await.unwrap();
    assert_eq!(state(kms.clone(), arn.clone()).await, "Disabled");
    let parent = emu.become_caller(ROLE).await;
    assert_eq!(
        failed(decrypt(parent.clone(), emu.document(enclave_key.spki_der(), 0xaa)).await),
        "DisabledException"
    );
    let kms = emu.become_caller(KMS_ADMIN).await;
    kms.enable_key().key_id(&arn).send().await.unwrap();
    assert_eq!(state(kms.clone(), arn.clone()).await, "Enabled");
    let parent = emu.become_caller(ROLE).await;
    let ok = decrypt(parent.clone(), emu.document(enclave_key.spki_der(), 0xaa)).await.unwrap();
    let env = ok.ciphertext_for_recipient().unwrap().as_ref();
    assert_eq!(envelope::open(env, &enclave_key).unwrap().as_slice(), &[0x44; 32]);
    // The parent's role (in the account that administers the key) cannot delete it either,
    // nor can a session of the administrators' role.
    assert_eq!(failed(schedule(&parent).await), "AccessDeniedException");
    let session = emu.become_caller("arn:aws:sts::111122223333:assumed-role/kms-admin/alice").await;
    assert_eq!(failed(schedule(&session).await), "AccessDeniedException");

    // The break-glass role schedules the deletion (and may cancel it); it never decrypts.
    let glass = emu.become_caller(BREAK_GLASS).await;
    assert_eq!(
        failed(decrypt(glass.clone(), emu.document(enclave_key.spki_der(), 0xaa)).await),
        "AccessDeniedException"
    );
    let out = schedule(&glass).await.unwrap();
    assert_eq!(out.key_state().unwrap().as_str(), "PendingDeletion");
    assert_eq!(state(glass.clone(), arn.clone()).await, "PendingDeletion");
    glass.cancel_key_deletion().key_id(&arn).send().await.unwrap();
    assert_eq!(state(glass.clone(), arn.clone()).await, "Disabled");
    // Administrators may cancel a deletion too (it only ever saves the key) and re-enable it.
    let kms = emu.become_caller(KMS_ADMIN).await;
    kms.enable_key().key_id(&arn).send().await.unwrap();

    // A policy without a break-glass role denies the deletion to everyone, that role included.
    kms.put_key_policy()
        .key_id(&arn)
        .policy(attested_policy_with_break_glass(0xaa, None))
        .send()
        .await
        .unwrap();
    let err = schedule(&kms).await.unwrap_err().into_service_error();
    assert!(format!("{err:?}").contains("DenyKeyDeletionToEveryone"), "{err:?}");
    let glass = emu.become_caller(BREAK_GLASS).await;
    assert_eq!(failed(schedule(&glass).await), "AccessDeniedException");
    assert_eq!(state(glass, arn.clone()).await, "Enabled");

    // Multi-Region keys are not emulated: refused, never silently single-Region.
    let kms = emu.become_caller(KMS_ADMIN).await;
    assert_eq!(
        failed(kms.create_key().multi_region(true).send().await),
        "UnsupportedOperationException"
    );
}
