//! A second `signer-parent` process beside a stack's own, on the same enclave and kms-sim, with
//! extra settings in its TOML file and JSON logs: for tests that need settings the stack does not
//! expose (short HTTP timeouts) or logs they parse.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use signer_e2e::{Api, Stack};
use signer_sim::process::{Proc, binary, wait_until};
use signer_sim::stack::free_port;

pub struct ExtraParent {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub api: Api,
    pub admin: Api,
    pub log: PathBuf,
}

impl ExtraParent {
    /// Starts the parent with `settings` (TOML) as its config file; returns once `/readyz` is 200.
    pub fn start(stack: &Stack, name: &str, settings: &str) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = stack.paths.root.join(format!("{name}.toml"));
        std::fs::write(&config, settings).unwrap();
        let log = stack.paths.logs.join(format!("{name}.log"));
        let _ = std::fs::remove_file(&log);
        let mut command = Command::new(binary("signer-parent").unwrap());
        command
            .arg("--config")
            .arg(&config)
            .arg("--json-logs")
            .env("SIGNER_HTTP_ADDR", addr.to_string())
            .env("SIGNER_ENCLAVE", format!("unix:{}", stack.paths.socket.display()))
            .env("SIGNER_API_TOKEN", &stack.api_token)
            .env("SIGNER_ADMIN_TOKEN", &stack.admin_token)
            .env("SIGNER_KMS_KEY_ID", &stack.key_arn)
            .env("SIGNER_KMS_ENDPOINT", format!("http://{}", stack.options.kms_addr))
            .env("SIGNER_KMS_REGION", "us-east-1")
            .env("SIGNER_ATTESTATION_ROOT", &stack.paths.sim_root)
            .env("SIGNER_EXPECTED_PCRS", &stack.paths.measurements)
            .env("AWS_ACCESS_KEY_ID", "sim")
            .env("AWS_SECRET_ACCESS_KEY", "sim")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env("RUST_LOG", "info");
        let mut proc = Proc::spawn("signer-parent", command, &log).unwrap();
        let api = Api::new(format!("http://{addr}"), stack.api_token.clone());
        wait_until(&mut proc, Duration::from_secs(60), "the extra parent to be ready", || {
            api.get("/readyz").is_ok_and(|r| r.status == 200)
        })
        .unwrap();
        let admin = api.with_token(&stack.admin_token);
        Self { proc, addr, api, admin, log }
    }

    /// The parent's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The JSON log lines whose target is `target`.
    pub fn log_lines(&self, target: &str) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == target)
            .collect()
    }

    /// One series of `/metrics`, 0 if absent.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.api.get_text("/metrics").unwrap();
        signer_e2e::metric(&text, series)
    }
}
