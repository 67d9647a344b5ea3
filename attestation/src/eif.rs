//! Independent measurement of an Enclave Image File (EIF): PCR0, PCR1, PCR2 and, for a signed
//! image, PCR8, computed from the file's bytes alone.
//!
//! This module shares no code with the image builder (`tools/eif-build`) nor with the
//! `aws-nitro-enclaves-image-format` crate it uses: a team handed an image measures it here and
//! compares the figures with the published `measurements.json`.
//!
//! The format (big-endian throughout), as `nitro-cli` writes it:
//!
//! * the header, 548 bytes: magic `.eif`, version `u16`, flags `u16`, default memory `u64`,
//!   default CPUs `u64`, reserved `u16`, section count `u16`, 32 section offsets `u64`, 32 section
//!   sizes `u64`, unused `u32`, CRC-32 (ISO-HDLC) `u32` of everything after the header's first 544
//!   bytes up to the end of the last section (the header without its CRC field, then every
//!   section header and section);
//! * the sections back to back, each a 12-byte header (type `u16`: 1 kernel, 2 kernel command
//!   line, 3 ramdisk, 4 signature, 5 metadata; flags `u16`; size `u64`) and its data.
//!
//! Each PCR is one SHA-384 "extend" of the zero register: `SHA384(0^48 || SHA384(data))`, where
//! `data` is the concatenation, in file order, of
//!
//! * PCR0 (the image): kernel, command line and every ramdisk;
//! * PCR1 (the boot environment): kernel, command line and the first ramdisk (init and nsm.ko);
//! * PCR2 (the application): every ramdisk after the first;
//! * PCR8 (the signing certificate): the DER of the first certificate in the signature section.
//!
//! The metadata section (build time, tool, image name) is not measured.

use std::collections::BTreeMap;
use std::io::Read;

use base64::Engine as _;
use sha2::{Digest, Sha384};
use thiserror::Error;

/// `.eif`.
pub const EIF_MAGIC: [u8; 4] = *b".eif";
/// Header slots for sections.
pub const MAX_SECTIONS: usize = 32;
/// Header size in bytes.
pub const HEADER_LEN: usize = 4 + 2 + 2 + 8 + 8 + 2 + 2 + 8 * MAX_SECTIONS * 2 + 4 + 4;
/// Section header size in bytes.
pub const SECTION_HEADER_LEN: usize = 12;
/// Largest signature section accepted (a certificate and a COSE_Sign1 are a few KiB).
pub const MAX_SIGNATURE_LEN: u64 = 1024 * 1024;
/// Largest metadata section accepted (a small JSON object).
pub const MAX_METADATA_LEN: u64 = 1024 * 1024;

/// Why an EIF could not be measured.
#[derive(Debug, Error)]
pub enum EifError {
    #[error("reading the image: {0}")]
    Io(#[from] std::io::Error),
    #[error("the image ends inside the {0}")]
    Truncated(&'static str),
    #[error("not an EIF: magic is {0:02x?}, expected \".eif\"")]
    Magic([u8; 4]),
    #[error("the header declares {0} sections; at most {MAX_SECTIONS} fit")]
    SectionCount(u16),
    #[error("section {index} has unknown type {section_type}")]
    SectionType { index: usize, section_type: u16 },
    #[error("section {index} is a {found}; expected {expected} here")]
    SectionOrder { index: usize, found: &'static str, expected: &'static str },
    #[error("a second {0} section")]
    Duplicate(&'static str),
    #[error("no {0} section")]
    Missing(&'static str),
    #[error(
        "section {index} is at offset {actual_offset} with {actual_size} bytes; the header says {header_offset} and {header_size}"
    )]
    HeaderMismatch {
        index: usize,
        header_offset: u64,
        header_size: u64,
        actual_offset: u64,
        actual_size: u64,
    },
    #[error("the header declares {declared} sections; the file has {found}")]
    CountMismatch { declared: u16, found: usize },
    #[error("{what} section of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge { what: &'static str, size: u64, limit: u64 },
    #[error("CRC-32 mismatch: the header says {header:08x}, the contents give {computed:08x}")]
    Crc { header: u32, computed: u32 },
    #[error("malformed signature section: {0}")]
    Signature(String),
}

/// A section's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionKind {
    Kernel,
    Cmdline,
    Ramdisk,
    Signature,
    Metadata,
}

impl SectionKind {
    fn from_u16(value: u16) -> Option<Self> {
        match value {
            1 => Some(Self::Kernel),
            2 => Some(Self::Cmdline),
            3 => Some(Self::Ramdisk),
            4 => Some(Self::Signature),
            5 => Some(Self::Metadata),
            _ => None,
        }
    }

    /// The name used in messages and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kernel => "kernel",
            Self::Cmdline => "cmdline",
            Self::Ramdisk => "ramdisk",
            Self::Signature => "signature",
            Self::Metadata => "metadata",
        }
    }
}

/// One section as found in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionInfo {
    pub kind: SectionKind,
    /// Offset of the section header in the file.
    pub offset: u64,
    /// Size of the section data.
    pub size: u64,
    /// SHA-384 of the section data.
    pub sha384: [u8; 48],
}

/// What [`measure`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EifMeasurement {
    /// EIF format version from the header.
    pub version: u16,
    /// Header flags (bit 0: arm64 image).
    pub flags: u16,
    /// PCR index → 48-byte value: 0, 1, 2, and 8 for a signed image.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// The sections in file order.
    pub sections: Vec<SectionInfo>,
    /// The metadata section's bytes (JSON), if present.
    pub metadata: Option<Vec<u8>>,
}

impl EifMeasurement {
    /// The measurements in `nitro-cli`'s JSON shape (`{"Measurements": {"HashAlgorithm": …,
    /// "PCR0": …}}`), as `nitro-cli build-enclave` and `describe-eif` print them.
    pub fn measurements_json(&self) -> String {
        crate::policy::measurements_json(&self.pcrs)
    }
}

/// CRC-32/ISO-HDLC (the zlib CRC), as the EIF header carries.
struct Crc32 {
    state: u32,
}

const CRC_TABLE: [u32; 256] = crc_table();

// Evaluated at compile time only: an out-of-range index would fail the build, not panic.
#[allow(clippy::indexing_slicing)]
const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

impl Crc32 {
    fn new() -> Self {
        Self { state: 0xFFFF_FFFF }
    }

    fn update(&mut self, bytes: &[u8]) {
        let mut c = self.state;
        for &b in bytes {
            let slot = usize::from((c as u8) ^ b);
            c = CRC_TABLE.get(slot).copied().unwrap_or_default() ^ (c >> 8);
        }
        self.state = c;
    }

    fn finish(&self) -> u32 {
        self.state ^ 0xFFFF_FFFF
    }
}

/// The PCR extend of the zero register with the digest of `data`.
fn extend(data_digest: &[u8]) -> Vec<u8> {
    let mut h = Sha384::new();
    h.update([0u8; 48]);
    h.update(data_digest);
    h.finalize().to_vec()
}

fn be_u16(bytes: &[u8], at: usize) -> u16 {
    let mut b = [0u8; 2];
    if let Some(s) = bytes.get(at..at + 2) {
        b.copy_from_slice(s);
    }
    u16::from_be_bytes(b)
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = bytes.get(at..at + 4) {
        b.copy_from_slice(s);
    }
    u32::from_be_bytes(b)
}

fn be_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = bytes.get(at..at + 8) {
        b.copy_from_slice(s);
    }
    u64::from_be_bytes(b)
}

/// Reads exactly `buf.len()` bytes, or reports whether the stream ended before any byte
/// (`Ok(false)`) or in the middle (an error naming `what`).
fn read_full(r: &mut impl Read, buf: &mut [u8], what: &'static str) -> Result<bool, EifError> {
    let mut filled = 0;
    while filled < buf.len() {
        let Some(rest) = buf.get_mut(filled..) else { break };
        match r.read(rest) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(EifError::Truncated(what)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Measures the EIF read from `r` (streamed: the image is never held whole in memory).
pub fn measure(mut r: impl Read) -> Result<EifMeasurement, EifError> {
    let mut header = [0u8; HEADER_LEN];
    if !read_full(&mut r, &mut header, "header")? {
        return Err(EifError::Truncated("header"));
    }
    let mut magic = [0u8; 4];
    magic.copy_from_slice(header.get(..4).unwrap_or(&[0; 4]));
    if magic != EIF_MAGIC {
        return Err(EifError::Magic(magic));
    }
    let version = be_u16(&header, 4);
    let flags = be_u16(&header, 6);
    let num_sections = be_u16(&header, 26);
    if usize::from(num_sections) > MAX_SECTIONS {
        return Err(EifError::SectionCount(num_sections));
    }
    let offsets_at = 28;
    let sizes_at = offsets_at + 8 * MAX_SECTIONS;
    let crc_at = HEADER_LEN - 4;
    let header_crc = be_u32(&header, crc_at);

    let mut crc = Crc32::new();
    crc.update(header.get(..crc_at).unwrap_or_default());

    let mut image = Sha384::new(); // PCR0
    let mut boot = Sha384::new(); // PCR1
    let mut app = Sha384::new(); // PCR2
    let mut cert_der: Option<Vec<u8>> = None; // PCR8
    let mut metadata = None;
    let mut sections = Vec::new();
    let mut offset = HEADER_LEN as u64;
    let mut ramdisks = 0usize;
    let mut chunk = vec![0u8; 1 << 20];

    loop {
        let mut sh = [0u8; SECTION_HEADER_LEN];
        if !read_full(&mut r, &mut sh, "section header")? {
            break;
        }
        let index = sections.len();
        let type_code = be_u16(&sh, 0);
        let size = be_u64(&sh, 4);
        let kind = SectionKind::from_u16(type_code)
            .ok_or(EifError::SectionType { index, section_type: type_code })?;
        if index >= MAX_SECTIONS {
            return Err(EifError::CountMismatch { declared: num_sections, found: index + 1 });
        }
        // Canonical order: kernel, cmdline, then metadata / ramdisks / signature.
        match (index, kind) {
            (0, SectionKind::Kernel) | (1, SectionKind::Cmdline) => {}
            (0, found) => {
                return Err(EifError::SectionOrder {
                    index,
                    found: found.name(),
                    expected: "kernel",
                });
            }
            (1, found) => {
                return Err(EifError::SectionOrder {
                    index,
                    found: found.name(),
                    expected: "cmdline",
                });
            }
            (_, SectionKind::Kernel) => return Err(EifError::Duplicate("kernel")),
            (_, SectionKind::Cmdline) => return Err(EifError::Duplicate("cmdline")),
            _ => {}
        }
        let header_offset = be_u64(&header, offsets_at + 8 * index);
        let header_size = be_u64(&header, sizes_at + 8 * index);
        if header_offset != offset || header_size != size {
            return Err(EifError::HeaderMismatch {
                index,
                header_offset,
                header_size,
                actual_offset: offset,
                actual_size: size,
            });
        }
        crc.update(&sh);

        let keep = match kind {
            SectionKind::Signature => {
                if cert_der.is_some() {
                    return Err(EifError::Duplicate("signature"));
                }
                if size > MAX_SIGNATURE_LEN {
                    return Err(EifError::TooLarge {
                        what: "signature",
                        size,
                        limit: MAX_SIGNATURE_LEN,
                    });
                }
                true
            }
            SectionKind::Metadata => {
                if metadata.is_some() {
                    return Err(EifError::Duplicate("metadata"));
                }
                if size > MAX_METADATA_LEN {
                    return Err(EifError::TooLarge {
                        what: "metadata",
                        size,
                        limit: MAX_METADATA_LEN,
                    });
                }
                true
            }
            _ => false,
        };
        let first_ramdisk = kind == SectionKind::Ramdisk && ramdisks == 0;
        let mut section_hash = Sha384::new();
        let mut kept = Vec::new();
        let mut remaining = size;
        while remaining > 0 {
            let n = usize::try_from(remaining.min(chunk.len() as u64)).unwrap_or(chunk.len());
            let Some(buf) = chunk.get_mut(..n) else { break };
            if !read_full(&mut r, buf, kind.name())? {
                return Err(EifError::Truncated(kind.name()));
            }
            crc.update(buf);
            section_hash.update(&*buf);
            match kind {
                SectionKind::Kernel | SectionKind::Cmdline => {
                    image.update(&*buf);
                    boot.update(&*buf);
                }
                SectionKind::Ramdisk => {
                    image.update(&*buf);
                    if first_ramdisk {
                        boot.update(&*buf);
                    } else {
                        app.update(&*buf);
                    }
                }
                SectionKind::Signature | SectionKind::Metadata => {}
            }
            if keep {
                kept.extend_from_slice(buf);
            }
            remaining -= n as u64;
        }
        match kind {
            SectionKind::Ramdisk => ramdisks += 1,
            SectionKind::Signature => cert_der = Some(first_certificate_der(&kept)?),
            SectionKind::Metadata => metadata = Some(kept),
            _ => {}
        }
        sections.push(SectionInfo { kind, offset, size, sha384: section_hash.finalize().into() });
        offset += (SECTION_HEADER_LEN as u64) + size;
    }

    if sections.len() != usize::from(num_sections) {
        return Err(EifError::CountMismatch { declared: num_sections, found: sections.len() });
    }
    if sections.is_empty() {
        return Err(EifError::Missing("kernel"));
    }
    if sections.len() < 2 {
        return Err(EifError::Missing("cmdline"));
    }
    if ramdisks == 0 {
        return Err(EifError::Missing("ramdisk"));
    }
    let computed = crc.finish();
    if computed != header_crc {
        return Err(EifError::Crc { header: header_crc, computed });
    }

    let mut pcrs = BTreeMap::new();
    pcrs.insert(0, extend(&image.finalize()));
    pcrs.insert(1, extend(&boot.finalize()));
    pcrs.insert(2, extend(&app.finalize()));
    if let Some(der) = cert_der {
        pcrs.insert(8, extend(&Sha384::digest(&der)));
    }
    Ok(EifMeasurement { version, flags, pcrs, sections, metadata })
}

/// Measures the EIF at `path`.
pub fn measure_file(path: &std::path::Path) -> Result<EifMeasurement, EifError> {
    let file = std::fs::File::open(path)?;
    measure(std::io::BufReader::with_capacity(1 << 20, file))
}

/// The signature section is a CBOR array of `{signing_certificate, signature}` maps (the
/// certificate as PEM, each byte string possibly written as an array of integers); PCR8 measures
/// the DER of the first certificate.
fn first_certificate_der(section: &[u8]) -> Result<Vec<u8>, EifError> {
    use ciborium::value::Value;
    let value: Value =
        ciborium::from_reader(section).map_err(|e| EifError::Signature(e.to_string()))?;
    let Value::Array(entries) = value else {
        return Err(EifError::Signature("not a CBOR array".into()));
    };
    let Some(Value::Map(first)) = entries.into_iter().next() else {
        return Err(EifError::Signature("no signature entry".into()));
    };
    let cert = first
        .into_iter()
        .find(|(k, _)| matches!(k, Value::Text(t) if t == "signing_certificate"))
        .map(|(_, v)| v)
        .ok_or_else(|| EifError::Signature("no signing_certificate".into()))?;
    let bytes = match cert {
        Value::Bytes(b) => b,
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::Integer(i) => u8::try_from(i128::from(i)).ok(),
                _ => None,
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| EifError::Signature("signing_certificate is not bytes".into()))?,
        _ => return Err(EifError::Signature("signing_certificate is not bytes".into())),
    };
    pem_to_der(&bytes)
}

fn pem_to_der(pem: &[u8]) -> Result<Vec<u8>, EifError> {
    let text = std::str::from_utf8(pem)
        .map_err(|_| EifError::Signature("the certificate is not PEM text".into()))?;
    let begin = "-----BEGIN CERTIFICATE-----";
    let end = "-----END CERTIFICATE-----";
    let start =
        text.find(begin).ok_or_else(|| EifError::Signature("no BEGIN CERTIFICATE line".into()))?
            + begin.len();
    let body = text
        .get(start..)
        .and_then(|rest| rest.find(end).and_then(|stop| rest.get(..stop)))
        .ok_or_else(|| EifError::Signature("no END CERTIFICATE line".into()))?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| EifError::Signature(format!("certificate base64: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut v = kind.to_be_bytes().to_vec();
        v.extend_from_slice(&0u16.to_be_bytes());
        v.extend_from_slice(&(data.len() as u64).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    /// A minimal EIF written by hand from the format description.
    fn tiny_eif(parts: &[(u16, &[u8])]) -> Vec<u8> {
        let mut header = Vec::new();
        header.extend_from_slice(b".eif");
        header.extend_from_slice(&4u16.to_be_bytes());
        header.extend_from_slice(&0u16.to_be_bytes());
        header.extend_from_slice(&(1u64 << 30).to_be_bytes());
        header.extend_from_slice(&2u64.to_be_bytes());
        header.extend_from_slice(&0u16.to_be_bytes());
        header.extend_from_slice(&(parts.len() as u16).to_be_bytes());
        let mut offsets = [0u64; MAX_SECTIONS];
        let mut sizes = [0u64; MAX_SECTIONS];
        let mut at = HEADER_LEN as u64;
        for (i, (_, data)) in parts.iter().enumerate() {
            offsets[i] = at;
            sizes[i] = data.len() as u64;
            at += 12 + data.len() as u64;
        }
        for o in offsets {
            header.extend_from_slice(&o.to_be_bytes());
        }
        for s in sizes {
            header.extend_from_slice(&s.to_be_bytes());
        }
        header.extend_from_slice(&0u32.to_be_bytes());
        let mut body = Vec::new();
        for (kind, data) in parts {
            body.extend_from_slice(&section(*kind, data));
        }
        let mut crc = Crc32::new();
        crc.update(&header);
        crc.update(&body);
        header.extend_from_slice(&crc.finish().to_be_bytes());
        assert_eq!(header.len(), HEADER_LEN);
        header.extend_from_slice(&body);
        header
    }

    fn pcr(data: &[u8]) -> Vec<u8> {
        extend(&Sha384::digest(data))
    }

    #[test]
    fn crc_matches_the_standard_check_value() {
        let mut c = Crc32::new();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0xCBF4_3926);
    }

    #[test]
    fn pcrs_follow_the_section_split() {
        let eif = tiny_eif(&[
            (1, b"kernel"),
            (2, b"console=ttyS0"),
            (5, b"{}"),
            (3, b"boot-ramdisk"),
            (3, b"app-ramdisk"),
        ]);
        let m = measure(&eif[..]).unwrap();
        assert_eq!(m.pcrs[&0], pcr(b"kernelconsole=ttyS0boot-ramdiskapp-ramdisk"));
        assert_eq!(m.pcrs[&1], pcr(b"kernelconsole=ttyS0boot-ramdisk"));
        assert_eq!(m.pcrs[&2], pcr(b"app-ramdisk"));
        assert!(!m.pcrs.contains_key(&8));
        assert_eq!(m.sections.len(), 5);
        assert_eq!(m.metadata.as_deref(), Some(&b"{}"[..]));
    }

    #[test]
    fn a_signed_image_has_pcr8_over_the_certificate_der() {
        use ciborium::value::Value;
        let pem = b"-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n";
        let bytes_as_ints =
            |b: &[u8]| Value::Array(b.iter().map(|x| Value::Integer((*x).into())).collect());
        let entry = Value::Map(vec![
            (Value::Text("signing_certificate".into()), bytes_as_ints(pem)),
            (Value::Text("signature".into()), bytes_as_ints(b"cose")),
        ]);
        let mut section = Vec::new();
        ciborium::into_writer(&Value::Array(vec![entry]), &mut section).unwrap();
        let unsigned = tiny_eif(&[(1, b"k"), (2, b"c"), (3, b"r0"), (3, b"r1")]);
        let signed = tiny_eif(&[(1, b"k"), (2, b"c"), (3, b"r0"), (3, b"r1"), (4, &section)]);
        let u = measure(&unsigned[..]).unwrap();
        let s = measure(&signed[..]).unwrap();
        assert_eq!(s.pcrs[&8], pcr(&[1, 2, 3]));
        for i in [0, 1, 2] {
            assert_eq!(s.pcrs[&i], u.pcrs[&i]);
        }
    }

    #[test]
    fn malformed_images_are_refused() {
        let good = tiny_eif(&[(1, b"k"), (2, b"c"), (3, b"r0"), (3, b"r1")]);
        assert!(measure(&good[..]).is_ok());

        let mut bad_crc = good.clone();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 1;
        assert!(matches!(measure(&bad_crc[..]), Err(EifError::Crc { .. })));

        let truncated = &good[..good.len() - 1];
        assert!(matches!(measure(truncated), Err(EifError::Truncated(_))));

        let mut magic = good.clone();
        magic[0] = b'x';
        assert!(matches!(measure(&magic[..]), Err(EifError::Magic(_))));

        let mut trailing = good.clone();
        trailing.extend_from_slice(&section(3, b"extra"));
        assert!(matches!(measure(&trailing[..]), Err(EifError::HeaderMismatch { .. })));

        let swapped = tiny_eif(&[(2, b"c"), (1, b"k"), (3, b"r0")]);
        assert!(matches!(measure(&swapped[..]), Err(EifError::SectionOrder { .. })));

        let unknown = tiny_eif(&[(1, b"k"), (2, b"c"), (9, b"?")]);
        assert!(matches!(measure(&unknown[..]), Err(EifError::SectionType { .. })));

        let no_ramdisk = tiny_eif(&[(1, b"k"), (2, b"c")]);
        assert!(matches!(measure(&no_ramdisk[..]), Err(EifError::Missing("ramdisk"))));
    }
}
