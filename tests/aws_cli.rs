//! The deployment path as an operator runs it: the **real AWS CLI** (`pip install awscli`)
//! against `kms-sim`. `scripts/kms-setup.sh create-key` and `apply-policy` run unmodified (the
//! endpoint comes from `AWS_ENDPOINT_URL_KMS`), then every `aws kms` command that
//! `docs/deploy.md` tells an operator to run, with its results and error codes checked (but
//! `replicate-key`: kms-sim has no multi-Region keys), including the break-glass path: the
//! administrators are refused `schedule-key-deletion`, the break-glass role is not.
//! Without `aws` on PATH this test fails: `.ci/run` installs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use nitro_attestation::key_policy::{IMAGE_SHA384_KEY, KeyPolicy, Request, pcr_condition_key};
use serde_json::Value;
use signer_e2e::{data_dir, random};
use signer_sim::process::{Proc, binary};

const REGION: &str = "eu-west-1";
const ROLE: &str = "arn:aws:iam::111122223333:role/signer-parent";
/// The break-glass role (docs/deploy.md, "Break-glass role"): the only caller allowed to
/// schedule a key's deletion.
const BREAK_GLASS: &str = "arn:aws:iam::111122223333:role/signer-break-glass";
const ALIAS: &str = "alias/signer-execution";
const ALIAS_ARN: &str = "arn:aws:kms:eu-west-1:111122223333:alias/signer-execution";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin(name: &str) -> PathBuf {
    binary(name).unwrap()
}

/// kms-sim on a free port, with its data directory in `dir`.
struct Emulator {
    proc: Option<Proc>,
    port: u16,
    dir: PathBuf,
    /// `--caller-arn`: whose credentials the operator's shell holds (default: kms-sim's, the
    /// parent's role, whose account root administers the keys).
    caller: Option<String>,
}

impl Emulator {
    fn start(dir: &Path) -> Self {
        let mut e = Self { proc: None, port: 0, dir: dir.to_path_buf(), caller: None };
        e.spawn();
        e
    }

    fn spawn(&mut self) {
        self.port =
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = Command::new(bin("kms-sim"));
        command
            .args(["--listen", &format!("127.0.0.1:{}", self.port), "--region", REGION])
            .arg("--data-dir")
            .arg(self.dir.join("kms"));
        if let Some(caller) = &self.caller {
            command.args(["--caller-arn", caller]);
        }
        self.proc = Some(Proc::spawn("kms-sim", command, &self.dir.join("kms.log")).unwrap());
        for _ in 0..400 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("kms-sim did not start: {}", self.proc.as_ref().unwrap().log_tail(20));
    }

    fn restart(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(5));
        }
        self.spawn();
    }

    /// The same keys; every later call is `caller`'s (as after assuming that role).
    fn become_caller(&mut self, caller: Option<&str>) {
        self.caller = caller.map(str::to_string);
        self.restart();
    }

    /// The environment an operator's shell would have, pointed at kms-sim: no profile, no
    /// instance metadata, dummy credentials.
    fn env(&self, command: &mut Command) {
        for var in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_CA_BUNDLE"] {
            command.env_remove(var);
        }
        command
            .env("AWS_ENDPOINT_URL_KMS", format!("http://127.0.0.1:{}", self.port))
            .env("AWS_ACCESS_KEY_ID", "AKIDKMSSIM")
            .env("AWS_SECRET_ACCESS_KEY", "kms-sim-does-not-check-signatures")
            .env("AWS_REGION", REGION)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_CONFIG_FILE", self.dir.join("no-aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.dir.join("no-aws-credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_PAGER", "");
    }

    fn aws(&self, args: &[&str]) -> Output {
        let mut command = Command::new("aws");
        command.arg("kms").args(args);
        self.env(&mut command);
        command.output().unwrap()
    }

    /// `aws kms ARGS`, which must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.aws(args);
        assert!(
            out.status.success(),
            "aws kms {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// `aws kms ARGS`, which must fail with a service error: its code and message, as the CLI
    /// prints them ("An error occurred (CODE) when calling the OP operation: MESSAGE").
    fn error(&self, args: &[&str]) -> (String, String) {
        let out = self.aws(args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "aws kms {} succeeded", args.join(" "));
        let code = stderr
            .split_once("An error occurred (")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(code, _)| code.to_string())
            .unwrap_or_else(|| panic!("not a service error: aws kms {}\n{stderr}", args.join(" ")));
        (code, stderr)
    }

    fn code(&self, args: &[&str]) -> String {
        self.error(args).0
    }

    /// `scripts/kms-setup.sh ARGS`, unmodified, with the built binaries; its standard output.
    fn setup(&self, args: &[&str]) -> String {
        let mut command = Command::new(repo().join("scripts/kms-setup.sh"));
        command
            .args(args)
            .env("SIGNER_ENCLAVE_BIN", bin("signer-enclave"))
            .env("ATTEST_BIN", bin("attest"))
            .env("SIGNER_BUILD_DIR", self.dir.join("build"));
        self.env(&mut command);
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "kms-setup.sh {}\n{}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn key_state(&self, key: &str) -> String {
        self.ok(&[
            "describe-key",
            "--key-id",
            key,
            "--query",
            "KeyMetadata.KeyState",
            "--output",
            "text",
        ])
    }

    fn policy(&self, key: &str) -> Value {
        // As docs/deploy.md §6 has the security team fetch it.
        let text = self.ok(&[
            "get-key-policy",
            "--key-id",
            key,
            "--policy-name",
            "default",
            "--query",
            "Policy",
            "--output",
            "text",
        ]);
        serde_json::from_str(&text).unwrap()
    }
}

fn require_aws_cli() {
    let version = Command::new("aws").arg("--version").output();
    match version {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "the AWS CLI (`aws`) is required on PATH for this test: `python3 -m pip install awscli` \
             (.ci/run installs it)"
        ),
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Would the policy let the parent's role `Decrypt` with an attestation carrying `pcrs`?
fn attested_decrypt_allowed(policy: &Value, pcrs: &BTreeMap<u8, Vec<u8>>) -> bool {
    let mut context = BTreeMap::new();
    context.insert(IMAGE_SHA384_KEY.to_string(), hex::encode(&pcrs[&0]));
    for (index, value) in pcrs {
        context.insert(pcr_condition_key(*index), hex::encode(value));
    }
    let request = Request { action: "kms:Decrypt", principal: Some(ROLE), context };
    KeyPolicy::parse(&policy.to_string()).unwrap().evaluate(&request).decision.is_allow()
}

fn write_measurements(dir: &Path, name: &str, pcrs: &BTreeMap<u8, Vec<u8>>) -> String {
    let path = dir.join(name);
    std::fs::write(&path, nitro_attestation::policy::measurements_json(pcrs)).unwrap();
    path.display().to_string()
}

/// A timestamp as the CLI prints it: Unix seconds (v1) or ISO 8601 (v2).
fn assert_days_ahead(value: &Value, days: u64) {
    match value {
        Value::Number(n) => {
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
            let date = n.as_f64().unwrap() as u64;
            let expected = now + days * 86_400;
            assert!(date.abs_diff(expected) < 120, "deletion date {date}, expected ~{expected}");
        }
        Value::String(s) => assert!(s.len() >= 10 && s.starts_with("20"), "{s}"),
        other => panic!("not a timestamp: {other}"),
    }
}

#[test]
fn kms_setup_and_the_runbook_commands_run_against_kms_sim_with_the_real_aws_cli() {
    require_aws_cli();
    let dir = data_dir("aws-cli");
    std::fs::create_dir_all(&dir).unwrap();
    let mut kms = Emulator::start(&dir);

    // docs/deploy.md §3: create the key (with the interim policy), its alias and the measured
    // config.
    let config = dir.join("enclave.toml");
    let config_arg = config.display().to_string();
    let key_arn = kms.setup(&[
        "create-key",
        "--region",
        REGION,
        "--role-arn",
        ROLE,
        "--break-glass-role-arn",
        BREAK_GLASS,
        "--domain",
        "app.example.com",
        "--uri",
        "https://app.example.com",
        "--chain-id",
        "mainnet",
        "--config-out",
        &config_arg,
    ]);
    let key_id = key_arn
        .strip_prefix("arn:aws:kms:eu-west-1:111122223333:key/")
        .unwrap_or_else(|| panic!("not a key ARN of the account and Region: {key_arn}"));
    uuid::Uuid::parse_str(key_id).unwrap();
    let aliases = kms.json(&["list-aliases"]);
    assert_eq!(aliases["Aliases"][0]["AliasName"], ALIAS);
    assert_eq!(aliases["Aliases"][0]["AliasArn"], ALIAS_ARN);
    assert_eq!(aliases["Aliases"][0]["TargetKeyId"], key_id);
    assert_eq!(aliases["Aliases"].as_array().unwrap().len(), 1);

    // The key never had KMS's default policy: it has the interim one, which denies Decrypt.
    let interim = kms.policy(&key_arn);
    assert_eq!(interim, read_json(&dir.join("build/interim-key-policy.json")));
    assert_eq!(interim["Id"], "signer-enclave-execution-key-interim");
    let ciphertext = dir.join("ciphertext.bin");
    std::fs::write(&ciphertext, random::<384>()).unwrap();
    let blob = format!("fileb://{}", ciphertext.display());
    let decrypt = |key: &str| {
        kms.error(&[
            "decrypt",
            "--key-id",
            key,
            "--encryption-algorithm",
            "RSAES_OAEP_SHA_256",
            "--ciphertext-blob",
            &blob,
        ])
    };
    let (code, message) = decrypt(ALIAS);
    assert_eq!(code, "AccessDeniedException");
    assert!(message.contains("NoDecryptUntilTheAttestedPolicy"), "{message}");

    // The measured config pins the key's public key, as `get-public-key` returns it by alias.
    let public_key =
        kms.ok(&["get-public-key", "--key-id", ALIAS, "--query", "PublicKey", "--output", "text"]);
    let parsed = signer_enclave::config::parse(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(parsed.file.kms_public_key, public_key);
    assert_eq!(parsed.file.kms_key_id.as_deref(), Some(key_arn.as_str()));

    // §4: the attested policy, applied by alias (resolved to the key ARN by the script).
    let out =
        Command::new(bin("signer-enclave")).args(["measure", "--config"]).arg(&config).output();
    let measured = String::from_utf8(out.unwrap().stdout).unwrap();
    let image = nitro_attestation::policy::pcrs_from_measurements_json(&measured).unwrap();
    let old_json = write_measurements(&dir, "measurements.json", &image);
    kms.setup(&[
        "apply-policy",
        "--region",
        REGION,
        "--key-id",
        ALIAS,
        "--role-arn",
        ROLE,
        "--break-glass-role-arn",
        BREAK_GLASS,
        "--measurements",
        &old_json,
    ]);
    let live = kms.policy(&key_arn);
    assert_eq!(live, read_json(&dir.join("build/key-policy.json")));
    assert!(attested_decrypt_allowed(&live, &image));
    let mut other = image.clone();
    other.insert(0, random::<48>().to_vec());
    assert!(!attested_decrypt_allowed(&live, &other));
    // GetKeyPolicy takes a key id or ARN only, as in KMS.
    let (code, message) =
        kms.error(&["get-key-policy", "--key-id", ALIAS, "--policy-name", "default"]);
    assert_eq!(code, "InvalidArnException");
    assert!(message.contains("Key Aliases are not supported for this operation"), "{message}");

    // §7 upgrade: allow both images (key named by alias ARN), then only the new one.
    let new_json = write_measurements(&dir, "new-measurements.json", &other);
    let apply = |files: &[&str]| {
        let mut args = vec!["apply-policy", "--key-id", ALIAS_ARN, "--role-arn", ROLE];
        args.extend(["--break-glass-role-arn", BREAK_GLASS]);
        for f in files {
            args.extend(["--measurements", f]);
        }
        kms.setup(&args);
        kms.policy(key_id)
    };
    let both = apply(&[&old_json, &new_json]);
    assert!(attested_decrypt_allowed(&both, &image) && attested_decrypt_allowed(&both, &other));
    let new_only = apply(&[&new_json]);
    assert!(!attested_decrypt_allowed(&new_only, &image));
    assert!(attested_decrypt_allowed(&new_only, &other));
    apply(&[&old_json]);

    // The key as described by alias and by alias ARN.
    for id in [ALIAS, ALIAS_ARN] {
        let meta = &kms.json(&["describe-key", "--key-id", id])["KeyMetadata"];
        assert_eq!(meta["Arn"], key_arn.as_str());
        assert_eq!(meta["KeyState"], "Enabled");
        assert_eq!(meta["Enabled"], true);
        assert_eq!(meta["KeySpec"], "RSA_3072");
        assert_eq!(meta["KeyUsage"], "ENCRYPT_DECRYPT");
        assert_eq!(meta["EncryptionAlgorithms"], serde_json::json!(["RSAES_OAEP_SHA_256"]));
    }

    // Nobody may use KMS for Encrypt, nor Decrypt without the enclave's attestation: the
    // backends seal records with the public key offline (docs/records.md).
    let plaintext = dir.join("plaintext.bin");
    std::fs::write(&plaintext, random::<32>()).unwrap();
    let (code, message) = kms.error(&[
        "encrypt",
        "--key-id",
        ALIAS,
        "--encryption-algorithm",
        "RSAES_OAEP_SHA_256",
        "--plaintext",
        &format!("fileb://{}", plaintext.display()),
    ]);
    assert_eq!(code, "AccessDeniedException");
    assert!(message.contains("kms:Encrypt"), "{message}");
    let (code, message) = decrypt(ALIAS);
    assert_eq!(code, "AccessDeniedException");
    assert!(message.contains("DenyDecryptWithoutAttestation"), "{message}");

    // §7 emergency stop: disable the key (by key ARN: DisableKey takes no alias), enable it.
    assert_eq!(kms.code(&["disable-key", "--key-id", ALIAS]), "InvalidArnException");
    kms.ok(&["disable-key", "--key-id", &key_arn]);
    assert_eq!(kms.key_state(ALIAS), "Disabled");
    assert_eq!(kms.json(&["describe-key", "--key-id", key_id])["KeyMetadata"]["Enabled"], false);
    assert_eq!(decrypt(ALIAS).0, "DisabledException");
    kms.ok(&["enable-key", "--key-id", &key_arn]);
    assert_eq!(kms.key_state(ALIAS), "Enabled");

    // §7 rotating the execution key: a second key and alias from the same script, the alias
    // the parents use moved to it, the old key disabled and scheduled for deletion.
    let config2 = dir.join("enclave-2.toml").display().to_string();
    let new_arn = kms.setup(&[
        "create-key",
        "--region",
        REGION,
        "--role-arn",
        ROLE,
        "--break-glass-role-arn",
        BREAK_GLASS,
        "--alias",
        "alias/signer-execution-2",
        "--domain",
        "app.example.com",
        "--uri",
        "https://app.example.com",
        "--chain-id",
        "mainnet",
        "--config-out",
        &config2,
    ]);
    assert_ne!(new_arn, key_arn);
    kms.ok(&["update-alias", "--alias-name", ALIAS, "--target-key-id", &new_arn]);
    let moved = kms.ok(&[
        "describe-key",
        "--key-id",
        ALIAS,
        "--query",
        "KeyMetadata.Arn",
        "--output",
        "text",
    ]);
    assert_eq!(moved, new_arn);
    let of_new = kms.json(&["list-aliases", "--key-id", &new_arn]);
    let names: Vec<&str> = of_new["Aliases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["AliasName"].as_str().unwrap())
        .collect();
    assert_eq!(names, [ALIAS, "alias/signer-execution-2"]);
    kms.ok(&["disable-key", "--key-id", &key_arn]);
    // Deleting is not the administrators' call: the explicit Deny binds every caller but the
    // break-glass role, whatever IAM allows.
    let schedule =
        ["schedule-key-deletion", "--key-id", &key_arn, "--pending-window-in-days", "30"];
    let (code, message) = kms.error(&schedule);
    assert_eq!(code, "AccessDeniedException");
    assert!(message.contains("DenyKeyDeletionExceptBreakGlass"), "{message}");
    assert_eq!(kms.key_state(&key_arn), "Disabled");
    kms.become_caller(Some("arn:aws:iam::111122223333:role/kms-admin"));
    assert_eq!(kms.code(&schedule), "AccessDeniedException");
    kms.ok(&["enable-key", "--key-id", &key_arn]);
    kms.ok(&["disable-key", "--key-id", &key_arn]);
    kms.become_caller(Some(BREAK_GLASS));
    // The break-glass role cannot decrypt (nor could it with an attestation: it is not the
    // parent's role).
    let plain = ["decrypt", "--key-id", &new_arn, "--ciphertext-blob", &blob];
    assert_eq!(kms.code(&plain), "AccessDeniedException");
    let scheduled = kms.json(&[
        "schedule-key-deletion",
        "--key-id",
        &key_arn,
        "--pending-window-in-days",
        "30",
    ]);
    assert_eq!(scheduled["KeyId"], key_arn.as_str());
    assert_eq!(scheduled["KeyState"], "PendingDeletion");
    assert_eq!(scheduled["PendingWindowInDays"], 30);
    assert_days_ahead(&scheduled["DeletionDate"], 30);
    let meta = &kms.json(&["describe-key", "--key-id", &key_arn])["KeyMetadata"];
    assert_eq!(meta["KeyState"], "PendingDeletion");
    assert_eq!(meta["Enabled"], false);
    assert_days_ahead(&meta["DeletionDate"], 30);
    assert_eq!(kms.code(&["get-public-key", "--key-id", &key_arn]), "KMSInvalidStateException");
    assert_eq!(kms.code(&["enable-key", "--key-id", &key_arn]), "KMSInvalidStateException");
    let again = ["schedule-key-deletion", "--key-id", &key_arn, "--pending-window-in-days", "7"];
    assert_eq!(kms.code(&again), "KMSInvalidStateException");
    let too_short =
        ["schedule-key-deletion", "--key-id", &new_arn, "--pending-window-in-days", "3"];
    assert_eq!(kms.code(&too_short), "ValidationException");
    assert_eq!(kms.code(&["schedule-key-deletion", "--key-id", ALIAS]), "InvalidArnException");
    // Changing one's mind within the window: back to Disabled, not Enabled.
    let cancelled = kms.json(&["cancel-key-deletion", "--key-id", &key_arn]);
    assert_eq!(cancelled["KeyId"], key_arn.as_str());
    assert_eq!(kms.key_state(&key_arn), "Disabled");
    assert_eq!(
        kms.code(&["cancel-key-deletion", "--key-id", &key_arn]),
        "KMSInvalidStateException"
    );
    kms.become_caller(None);

    // Alias errors as KMS returns them.
    let create =
        |name: &str| kms.code(&["create-alias", "--alias-name", name, "--target-key-id", &new_arn]);
    assert_eq!(create(ALIAS), "AlreadyExistsException");
    assert_eq!(create("alias/aws/signer"), "NotAuthorizedException");
    assert_eq!(create("signer-execution"), "ValidationException");
    let via_alias = ["create-alias", "--alias-name", "alias/x", "--target-key-id", ALIAS];
    assert_eq!(kms.code(&via_alias), "ValidationException");
    assert_eq!(kms.code(&["describe-key", "--key-id", "alias/missing"]), "NotFoundException");
    kms.ok(&["delete-alias", "--alias-name", "alias/signer-execution-2"]);
    assert_eq!(
        kms.code(&["delete-alias", "--alias-name", "alias/signer-execution-2"]),
        "NotFoundException"
    );

    // Decrypt of bytes that are no KMS ciphertext answers InvalidCiphertextException, as KMS
    // does, whether or not a key is named; IncorrectKeyException is only for a well-formed
    // ciphertext of another key (docs/deploy.md §9).
    let symmetric = |description: &str| {
        let query = ["--query", "KeyMetadata.KeyId", "--output", "text"];
        kms.ok(&[["create-key", "--description", description].as_slice(), &query].concat())
    };
    let (sym_a, sym_b) = (symmetric("grant key a"), symmetric("grant key b"));
    assert_eq!(kms.code(&["decrypt", "--ciphertext-blob", &blob]), "InvalidCiphertextException");
    assert_eq!(
        kms.code(&["decrypt", "--key-id", &sym_a, "--ciphertext-blob", &blob]),
        "InvalidCiphertextException"
    );
    let sealed = kms.ok(&[
        "encrypt",
        "--key-id",
        &sym_a,
        "--plaintext",
        &format!("fileb://{}", plaintext.display()),
        "--query",
        "CiphertextBlob",
        "--output",
        "text",
    ]);
    let sealed_file = dir.join("sealed.bin");
    std::fs::write(&sealed_file, signer_e2e::unb64(&sealed)).unwrap();
    let sealed_blob = format!("fileb://{}", sealed_file.display());
    assert_eq!(
        kms.code(&["decrypt", "--key-id", &sym_b, "--ciphertext-blob", &sealed_blob]),
        "IncorrectKeyException"
    );
    let opened = kms.ok(&[
        "decrypt",
        "--ciphertext-blob",
        &sealed_blob,
        "--query",
        "Plaintext",
        "--output",
        "text",
    ]);
    assert_eq!(signer_e2e::unb64(&opened), std::fs::read(&plaintext).unwrap());

    // Everything persists in kms-sim's data directory.
    kms.restart();
    let aliases = kms.json(&["list-aliases"]);
    assert_eq!(aliases["Aliases"].as_array().unwrap().len(), 1);
    assert_eq!(aliases["Aliases"][0]["AliasName"], ALIAS);
    assert_eq!(aliases["Aliases"][0]["TargetKeyId"], new_arn.rsplit_once("key/").unwrap().1);
    assert_eq!(kms.key_state(&key_arn), "Disabled");
    assert_eq!(kms.key_state(ALIAS), "Enabled");
    assert_eq!(kms.policy(&key_arn), read_json(&dir.join("build/key-policy.json")));
}
