//! The demo's last step: fetch every receipt of the run (`GET /v1/receipts`, page by page) and
//! verify them as a security team would, with `attest receipts` against the sim root and the
//! measured image (`docs/receipts.md`). The files it writes stay in the data directory, so the
//! printed command can be run again by hand.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::client::Api;
use crate::process::binary;
use crate::stack::Stack;

/// Most pages fetched (a demo run writes a handful of receipts).
const MAX_PAGES: usize = 1000;

/// What the step did: the files, the command, what `attest` printed.
pub struct Verified {
    pub receipts: usize,
    pub receipts_file: PathBuf,
    pub documents: Vec<PathBuf>,
    pub command: String,
    pub output: String,
}

/// Every page after `after` (all kept when None), until the enclave says no more follow.
pub fn fetch_pages(api: &Api) -> Result<Vec<Value>, String> {
    let mut pages = Vec::new();
    let mut path = "/v1/receipts".to_string();
    for _ in 0..MAX_PAGES {
        let r = api.get(&path)?;
        if r.status != 200 {
            return Err(format!("GET {path}: HTTP {} {}", r.status, r.body));
        }
        let more = r.body.get("more").and_then(Value::as_bool) == Some(true);
        let next = r.body.get("next_after").and_then(Value::as_u64).unwrap_or(0);
        pages.push(r.body);
        if !more {
            return Ok(pages);
        }
        path = format!("/v1/receipts?after={next}");
    }
    Err(format!("more than {MAX_PAGES} pages of receipts"))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Fetches the receipts through `api`, writes them and the signing instances' documents to the
/// data directory, and runs `attest receipts` on them; an error unless it exits 0.
pub fn fetch_and_verify(stack: &Stack, api: &Api) -> Result<Verified, String> {
    let pages = fetch_pages(api)?;
    let receipts: usize =
        pages.iter().map(|p| p.get("receipts").and_then(Value::as_array).map_or(0, Vec::len)).sum();
    let receipts_file = stack.paths.root.join("receipts.json");
    let text = serde_json::to_vec_pretty(&pages).map_err(|e| e.to_string())?;
    write(&receipts_file, &text)?;
    // Each answering instance's document binds its checkpoint key; one file per instance.
    let mut documents: Vec<PathBuf> = Vec::new();
    let mut seen = Vec::new();
    for page in &pages {
        let (Some(id), Some(doc)) = (
            page.get("enclave_id").and_then(Value::as_str),
            page.get("document").and_then(Value::as_str),
        ) else {
            return Err("a receipts page without enclave_id or document".into());
        };
        if !seen.contains(&id) {
            seen.push(id);
            let path = stack.paths.root.join(format!("receipts-document-{id}.b64"));
            write(&path, doc.as_bytes())?;
            documents.push(path);
        }
    }
    let attest = binary("attest").map_err(|e| e.to_string())?;
    let mut command = Command::new(&attest);
    command.arg("receipts").arg("--receipts").arg(&receipts_file);
    for d in &documents {
        command.arg("--document").arg(d);
    }
    command
        .arg("--measurements")
        .arg(&stack.paths.measurements)
        .arg("--root")
        .arg(&stack.paths.sim_root);
    let shown = format!(
        "{} receipts --receipts {} {} --measurements {} --root {}",
        attest.display(),
        receipts_file.display(),
        documents
            .iter()
            .map(|d| format!("--document {}", d.display()))
            .collect::<Vec<_>>()
            .join(" "),
        stack.paths.measurements.display(),
        stack.paths.sim_root.display()
    );
    let out = command.output().map_err(|e| format!("{shown}: {e}"))?;
    let output =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(format!("{shown} failed ({}):\n{output}", out.status));
    }
    Ok(Verified { receipts, receipts_file, documents, command: shown, output })
}
