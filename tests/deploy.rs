//! No drift between the deployment scripts, the image and the code: the config
//! `scripts/kms-setup.sh` writes is the one `Dockerfile.enclave` bakes in and the enclave parses;
//! the policy it applies pins the measurements; ports, paths and example configs agree.
//! The AWS CLI is replaced by a stub that records its calls: these tests check what only a
//! stub can see (the exact arguments the script passes, that every call names the region, that
//! no option only one CLI major version has is used). `tests/aws_cli.rs` runs the same script
//! with the real AWS CLI against kms-sim.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use rsa::pkcs8::EncodePublicKey;
use signer_e2e::{data_dir, random};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin(name: &str) -> PathBuf {
    signer_sim::process::binary(name).unwrap()
}

const KEY_ARN: &str = "arn:aws:kms:eu-west-1:111122223333:key/11111111-2222-3333-4444-555555555555";
const ROLE: &str = "arn:aws:iam::111122223333:role/signer-parent";

/// A fake `aws` that logs its arguments, keeps the policy files it is given and answers
/// create-key / get-public-key / describe-key.
fn stub_aws(dir: &Path, public_key_b64: &str) -> PathBuf {
    let stub_dir = dir.join("stub-bin");
    std::fs::create_dir_all(&stub_dir).unwrap();
    let script = format!(
        r#"#!/usr/bin/env bash
echo "$*" >> "{log}"
keep() {{ for a in "$@"; do case "$a" in file://*) cp "${{a#file://}}" "{dir}/$1" ;; esac; done; }}
case "$2" in
  create-key) keep created-policy.json "$@"; echo "{arn}" ;;
  get-public-key) echo "{pk}" ;;
  describe-key) echo "{arn}" ;;
  put-key-policy) keep applied-policy.json "$@" ;;
  create-alias) ;;
  *) echo "unexpected aws call: $*" >&2; exit 1 ;;
esac
"#,
        log = dir.join("aws.log").display(),
        pk = public_key_b64,
        dir = dir.display(),
        arn = KEY_ARN,
    );
    let path = stub_dir.join("aws");
    std::fs::write(&path, script).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    stub_dir
}

/// Every call names the region and uses only options the AWS CLI v1 and v2 both have.
fn assert_portable_calls(log: &str) {
    assert!(!log.is_empty());
    for line in log.lines() {
        assert!(line.starts_with("kms "), "{line}");
        assert!(line.contains(" --region eu-west-1"), "no region: {line}");
        for v2_only in
            ["--cli-binary-format", "--no-cli-pager", "--cli-auto-prompt", "--no-cli-auto-prompt"]
        {
            assert!(!line.contains(v2_only), "{v2_only} is AWS CLI v2 only: {line}");
        }
    }
}

fn kms_public_key_b64() -> String {
    let mut rng = enclave_core::secret::seeded_rng(&enclave_core::OsRandom).unwrap();
    let key = rsa::RsaPrivateKey::new(&mut rng, 3072).unwrap();
    base64::engine::general_purpose::STANDARD
        .encode(key.to_public_key().to_public_key_der().unwrap().as_bytes())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}\n{}\n{}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn kms_setup_writes_the_config_the_image_bakes_in_and_the_enclave_parses() {
    let dir = data_dir("deploy-config");
    std::fs::create_dir_all(&dir).unwrap();
    let pk = kms_public_key_b64();
    let stub = stub_aws(&dir, &pk);
    let path = format!("{}:{}", stub.display(), std::env::var("PATH").unwrap_or_default());
    let config = dir.join("enclave.toml");

    let printed = run(Command::new(repo().join("scripts/kms-setup.sh"))
        .args(["create-key", "--region", "eu-west-1", "--role-arn", ROLE])
        .args(["--domain", "app.example.com", "--uri", "https://app.example.com"])
        .args(["--chain-id", "mainnet", "--config-out"])
        .arg(&config)
        .env("PATH", &path)
        .env("SIGNER_ENCLAVE_BIN", bin("signer-enclave"))
        .env("ATTEST_BIN", bin("attest"))
        .env("SIGNER_BUILD_DIR", dir.join("build")));
    assert_eq!(printed.trim(), KEY_ARN);

    // The key is created with its interim policy (never KMS's default), then aliased.
    let log = std::fs::read_to_string(dir.join("aws.log")).unwrap();
    assert_portable_calls(&log);
    let calls: Vec<&str> = log.lines().collect();
    assert_eq!(calls.len(), 3, "{log}");
    assert!(calls[0].starts_with(
        "kms create-key --region eu-west-1 --key-spec RSA_3072 --key-usage ENCRYPT_DECRYPT"
    ));
    let interim_file = dir.join("build/interim-key-policy.json");
    assert!(
        calls[0].contains(&format!("--policy file://{}", interim_file.display())),
        "{}",
        calls[0]
    );
    assert_eq!(
        calls[1],
        format!(
            "kms create-alias --region eu-west-1 --alias-name alias/signer-execution --target-key-id {KEY_ARN}"
        )
    );
    assert!(
        calls[2].starts_with(&format!("kms get-public-key --region eu-west-1 --key-id {KEY_ARN}"))
    );
    let created = std::fs::read_to_string(dir.join("created-policy.json")).unwrap();
    let expected = nitro_attestation::key_policy::generate_interim(Some(ROLE), None).unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&created).unwrap(), expected);

    // The enclave parses it, with the KMS key from `get-public-key` pinned.
    let text = std::fs::read(&config).unwrap();
    let parsed = signer_enclave::config::parse(&text).unwrap();
    assert_eq!(parsed.file.kms_public_key, pk);
    assert_eq!(parsed.file.kms_key_id.as_deref(), Some(printed.trim()));
    let auth = &parsed.file.authorization;
    assert_eq!(
        (auth.domain.as_str(), auth.uri.as_str(), auth.chain_id.as_str()),
        ("app.example.com", "https://app.example.com", "mainnet"),
        "the users' authorization messages are bound to the measured domain and chain"
    );
    let measured =
        run(Command::new(bin("signer-enclave")).args(["measure", "--config"]).arg(&config));
    let pcrs = nitro_attestation::policy::pcrs_from_measurements_json(&measured).unwrap();
    assert_eq!(pcrs.len(), 16);

    // The script's default output path is the file the Dockerfile copies, to the path its
    // entrypoint reads.
    let script = std::fs::read_to_string(repo().join("scripts/kms-setup.sh")).unwrap();
    assert!(script.contains("config_out=\"deploy/enclave.toml\""));
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile.enclave")).unwrap();
    let copy = dockerfile
        .lines()
        .find(|l| l.starts_with("COPY deploy/enclave.toml "))
        .expect("Dockerfile copies deploy/enclave.toml");
    let target = copy.split_whitespace().nth(2).unwrap();
    let entrypoint = dockerfile.lines().find(|l| l.starts_with("ENTRYPOINT")).unwrap();
    let args: Vec<String> =
        serde_json::from_str(entrypoint.trim_start_matches("ENTRYPOINT").trim()).unwrap();
    let flag =
        |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].clone()).unwrap();
    assert_eq!(flag("--config"), target);
    assert_eq!(flag("--nsm"), "nitro");
    let listen: signer_protocol::Endpoint = flag("--listen").parse().unwrap();
    let signer_protocol::Endpoint::Vsock { port, .. } = listen else {
        panic!("the image must listen on vsock")
    };
    // The binary path in the image is the one the entrypoint runs.
    assert!(dockerfile.contains(&format!("COPY --from=build /signer-enclave {}", args[0])));
    assert!(
        std::fs::read_to_string(repo().join("scripts/build-eif.sh"))
            .unwrap()
            .contains("deploy/enclave.toml")
    );

    // The parent's example config points at that port and loads with the code's own loader.
    let example = std::fs::read_to_string(repo().join("deploy/parent.toml.example")).unwrap();
    assert!(
        example.contains(&format!("enclave = \"vsock:16:{port}\"")),
        "parent example must use vsock port {port}"
    );
    std::fs::write(dir.join("measurements.json"), &measured).unwrap();
    // The KMS key configured by alias, as docs/deploy.md §5 allows.
    let example_key =
        "key_id = \"arn:aws:kms:eu-west-1:111122223333:key/00000000-0000-0000-0000-000000000000\"";
    assert!(example.contains(example_key));
    let patched = example
        .replace(
            "/etc/signer/measurements.json",
            &dir.join("measurements.json").display().to_string(),
        )
        .replace(example_key, "key_id = \"alias/signer-execution\"");
    std::fs::write(dir.join("parent.toml"), patched).unwrap();
    let settings = parent_settings(&dir.join("parent.toml"));
    assert_eq!(settings, format!("vsock:16:{port}"));
    let docs = std::fs::read_to_string(repo().join("docs/deploy.md")).unwrap();
    assert!(
        docs.contains(&format!("vsock port {port}")) || docs.contains(&format!("port **{port}**")),
        "docs/deploy.md names the vsock port"
    );
}

/// Loads a parent config the way `signer-parent` does (in a child process so the environment
/// overrides can be set) and returns the enclave endpoint it resolved.
fn parent_settings(config: &Path) -> String {
    // An address already in use: the parent loads its config, then fails to bind and exits.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let out = Command::new(bin("signer-parent"))
        .arg("--config")
        .arg(config)
        .env("SIGNER_API_TOKEN", "an-api-token-of-enough-length")
        .env("SIGNER_ADMIN_TOKEN", "an-admin-token-of-enough-length")
        .env("SIGNER_HTTP_ADDR", &busy_addr)
        .env_remove("SIGNER_ENCLAVE")
        .env_remove("SIGNER_KMS_KEY_ID")
        .env_remove("SIGNER_EXPECTED_PCRS")
        .env_remove("SIGNER_ATTESTATION_ROOT")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Configuration errors are reported before the listener; a bind error means the config loaded.
    assert!(stderr.contains(&format!("listening on {busy_addr}")), "{stderr}");
    drop(busy);
    // The loaded endpoint, as the parent logs it at start: re-read it from the file it accepted.
    let text = std::fs::read_to_string(config).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("enclave = \"").and_then(|r| r.split('"').next()))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn kms_setup_applies_a_policy_pinned_to_every_given_image() {
    let dir = data_dir("deploy-policy");
    std::fs::create_dir_all(&dir).unwrap();
    let stub = stub_aws(&dir, "unused");
    let path = format!("{}:{}", stub.display(), std::env::var("PATH").unwrap_or_default());
    let write = |name: &str, pcr0: [u8; 48]| {
        let pcrs: std::collections::BTreeMap<u8, Vec<u8>> =
            [(0u8, pcr0.to_vec()), (1, vec![1; 48]), (2, vec![2; 48])].into_iter().collect();
        let p = dir.join(name);
        std::fs::write(&p, nitro_attestation::policy::measurements_json(&pcrs)).unwrap();
        p
    };
    let old = write("old.json", random::<48>());
    let new = write("new.json", random::<48>());
    let apply = |key: &str| {
        run(Command::new(repo().join("scripts/kms-setup.sh"))
            .args(["apply-policy", "--key-id", key, "--role-arn", ROLE, "--measurements"])
            .arg(&old)
            .arg("--measurements")
            .arg(&new)
            .env("AWS_DEFAULT_REGION", "eu-west-1")
            .env_remove("AWS_REGION")
            .env("PATH", &path)
            .env("ATTEST_BIN", bin("attest"))
            .env("SIGNER_BUILD_DIR", dir.join("build")));
    };
    // By alias: resolved with describe-key first (PutKeyPolicy takes key ids only); by key id:
    // passed through. The region comes from AWS_DEFAULT_REGION (the CLI v1's variable) too.
    apply("alias/signer-execution");
    apply("11111111-2222-3333-4444-555555555555");
    let log = std::fs::read_to_string(dir.join("aws.log")).unwrap();
    assert_portable_calls(&log);
    let policy_file = dir.join("build/key-policy.json");
    let calls: Vec<&str> = log.lines().collect();
    assert_eq!(
        calls,
        [
            "kms describe-key --region eu-west-1 --key-id alias/signer-execution --query KeyMetadata.Arn --output text".to_string(),
            format!(
                "kms put-key-policy --region eu-west-1 --key-id {KEY_ARN} --policy-name default --policy file://{}",
                policy_file.display()
            ),
            format!(
                "kms put-key-policy --region eu-west-1 --key-id 11111111-2222-3333-4444-555555555555 --policy-name default --policy file://{}",
                policy_file.display()
            ),
        ]
    );
    let applied = std::fs::read_to_string(dir.join("applied-policy.json")).unwrap();
    assert_eq!(applied, std::fs::read_to_string(&policy_file).unwrap());
    let policy = nitro_attestation::key_policy::KeyPolicy::parse(&applied).unwrap();
    for (file, allowed) in
        [(&old, true), (&new, true), (&write("other.json", random::<48>()), false)]
    {
        let pcrs = nitro_attestation::policy::pcrs_from_measurements_json(
            &std::fs::read_to_string(file).unwrap(),
        )
        .unwrap();
        let mut context = std::collections::BTreeMap::new();
        context.insert(
            nitro_attestation::key_policy::IMAGE_SHA384_KEY.to_string(),
            hex::encode(&pcrs[&0]),
        );
        for (i, v) in &pcrs {
            context.insert(nitro_attestation::key_policy::pcr_condition_key(*i), hex::encode(v));
        }
        let request = nitro_attestation::key_policy::Request {
            action: "kms:Decrypt",
            principal: Some(ROLE),
            context,
        };
        assert_eq!(policy.evaluate(&request).decision.is_allow(), allowed, "{}", file.display());
    }
}
