//! The builder's image against two independent readings of it: `nitro_attestation::eif` (this
//! workspace's own parser, no code shared with the builder) and the EIF crate's own `EifReader`;
//! and which PCR each input moves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use aws_nitro_enclaves_image_format::utils::eif_reader::EifReader;
use eif_build::{Blobs, Inputs, build};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test-fixtures")
}

/// A fresh directory under the system temp dir.
fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "eif-build-test-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Copies the stand-in inputs (and a stand-in binary) into `dir`, so a test may change a byte.
fn inputs(dir: &Path) -> Inputs {
    let blobs = dir.join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    for name in ["bzImage", "bzImage.config", "cmdline", "init", "nsm.ko"] {
        std::fs::copy(fixtures().join("blobs").join(name), blobs.join(name)).unwrap();
    }
    std::fs::copy(fixtures().join("enclave.toml"), dir.join("enclave.toml")).unwrap();
    let binary: Vec<u8> =
        (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(dir.join("signer-enclave"), binary).unwrap();
    Inputs {
        binary: dir.join("signer-enclave"),
        config: dir.join("enclave.toml"),
        blobs: Blobs::in_dir(&blobs),
        source_date_epoch: 1_700_000_000,
        image_version: "test".into(),
    }
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

fn pcrs_of(m: &BTreeMap<String, String>) -> BTreeMap<u8, String> {
    m.iter().filter_map(|(k, v)| Some((k.strip_prefix("PCR")?.parse().ok()?, v.clone()))).collect()
}

fn build_in(dir: &Path, inputs: &Inputs) -> (PathBuf, BTreeMap<u8, String>) {
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let built = build(inputs, &out).unwrap();
    (built.eif, pcrs_of(&built.measurements))
}

#[test]
fn builder_independent_parser_and_crate_reader_agree() {
    let dir = scratch("agree");
    let (eif, builder) = build_in(&dir, &inputs(&dir));
    assert_eq!(builder.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2]);

    let independent = nitro_attestation::eif::measure_file(&eif).unwrap();
    let independent: BTreeMap<u8, String> =
        independent.pcrs.iter().map(|(i, v)| (*i, hex::encode(v))).collect();
    assert_eq!(independent, builder);

    let mut reader = EifReader::from_eif(eif.to_string_lossy().into_owned()).unwrap();
    assert!(reader.check_crc());
    let crate_measurements = reader.get_measurements().unwrap();
    assert_eq!(pcrs_of(&crate_measurements), builder);

    // measurements.json is nitro-cli's shape, byte for byte what `attest measure --json` prints.
    let json = std::fs::read_to_string(dir.join("out/measurements.json")).unwrap();
    let m = nitro_attestation::eif::measure_file(&eif).unwrap();
    assert_eq!(json, format!("{}\n", m.measurements_json()));
    let parsed = nitro_attestation::policy::pcrs_from_measurements_json(&json).unwrap();
    assert_eq!(parsed, m.pcrs);

    // SHA256SUMS checks against the files beside it.
    let sums = std::fs::read_to_string(dir.join("out/SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), 4);
    assert!(sums.contains("  signer-enclave.eif\n"));
}

#[test]
fn the_same_inputs_give_the_same_bytes_whatever_their_file_metadata() {
    let a = scratch("same-a");
    let b = scratch("same-b");
    let ia = inputs(&a);
    let ib = inputs(&b);
    // Different permissions and times on the inputs do not reach the image.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&ib.binary, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&ib.config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let f = std::fs::File::options().write(true).open(&ib.blobs.init).unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(12345))
        .unwrap();
    drop(f);
    let (ea, pa) = build_in(&a, &ia);
    let (eb, pb) = build_in(&b, &ib);
    assert_eq!(pa, pb);
    assert_eq!(std::fs::read(ea).unwrap(), std::fs::read(eb).unwrap());
}

/// Which PCRs differ between the base image and one built with `change` applied.
fn moved_by(change: impl FnOnce(&Inputs)) -> Vec<u8> {
    let base_dir = scratch("base");
    let (_, base) = build_in(&base_dir, &inputs(&base_dir));
    let dir = scratch("changed");
    let changed_inputs = inputs(&dir);
    change(&changed_inputs);
    let (eif, changed) = build_in(&dir, &changed_inputs);
    // The independent measurement sees the same change.
    let independent = nitro_attestation::eif::measure_file(&eif).unwrap();
    for (i, v) in &independent.pcrs {
        assert_eq!(hex::encode(v), changed[i]);
    }
    base.keys().copied().filter(|i| base[i] != changed[i]).collect()
}

#[test]
fn one_byte_of_the_binary_or_the_config_moves_exactly_pcr0_and_pcr2() {
    assert_eq!(moved_by(|i| flip_byte(&i.binary, 5_000)), vec![0, 2]);
    assert_eq!(moved_by(|i| flip_byte(&i.config, 3)), vec![0, 2]);
}

#[test]
fn one_byte_of_the_kernel_cmdline_init_or_nsm_moves_exactly_pcr0_and_pcr1() {
    assert_eq!(moved_by(|i| flip_byte(&i.blobs.kernel, 10)), vec![0, 1]);
    assert_eq!(moved_by(|i| flip_byte(&i.blobs.cmdline, 0)), vec![0, 1]);
    assert_eq!(moved_by(|i| flip_byte(&i.blobs.init, 7)), vec![0, 1]);
    assert_eq!(moved_by(|i| flip_byte(&i.blobs.nsm, 7)), vec![0, 1]);
}

#[test]
fn the_build_time_is_not_measured() {
    let a = scratch("epoch-a");
    let b = scratch("epoch-b");
    let ia = inputs(&a);
    let mut ib = inputs(&b);
    ib.source_date_epoch += 86_400;
    assert_eq!(build_in(&a, &ia).1, build_in(&b, &ib).1);
}

#[test]
fn the_application_ramdisk_holds_only_what_the_image_needs() {
    let dir = scratch("ramdisk");
    let i = inputs(&dir);
    build_in(&dir, &i);
    let app = std::fs::read(dir.join("out/ramdisks/application.cpio")).unwrap();
    let boot = std::fs::read(dir.join("out/ramdisks/bootstrap.cpio")).unwrap();
    assert_eq!(cpio_names(&boot), vec!["dev", "init", "nsm.ko", "TRAILER!!!"]);
    assert_eq!(
        cpio_names(&app),
        vec![
            "cmd",
            "env",
            "rootfs",
            "rootfs/dev",
            "rootfs/etc",
            "rootfs/etc/signer",
            "rootfs/etc/signer/enclave.toml",
            "rootfs/proc",
            "rootfs/run",
            "rootfs/sys",
            "rootfs/tmp",
            "rootfs/usr",
            "rootfs/usr/bin",
            "rootfs/usr/bin/signer-enclave",
            "rootfs/var",
            "TRAILER!!!",
        ]
    );
    let cmd = "/usr/bin/signer-enclave\n--listen\nvsock:5000\n--nsm\nnitro\n--config\n/etc/signer/enclave.toml\n--log-format\njson\n";
    assert!(app.windows(cmd.len()).any(|w| w == cmd.as_bytes()));
}

/// Entry names of a newc archive (read independently of the writer).
fn cpio_names(bytes: &[u8]) -> Vec<String> {
    let field = |at: usize| {
        u32::from_str_radix(std::str::from_utf8(&bytes[at..at + 8]).unwrap(), 16).unwrap() as usize
    };
    let up4 = |n: usize| n.div_ceil(4) * 4;
    let mut names = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        assert_eq!(&bytes[at..at + 6], b"070701");
        assert_eq!(field(at + 22), 0, "uid");
        assert_eq!(field(at + 30), 0, "gid");
        assert_eq!(field(at + 46), 0, "mtime");
        let size = field(at + 54);
        let namesize = field(at + 94);
        let name = String::from_utf8(bytes[at + 110..at + 110 + namesize - 1].to_vec()).unwrap();
        at = up4(at + 110 + namesize);
        at = up4(at + size);
        let done = name == "TRAILER!!!";
        names.push(name);
        if done {
            break;
        }
    }
    assert_eq!(at, bytes.len());
    names
}
