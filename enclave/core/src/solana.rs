//! Zero-copy parser for serialized Solana transactions (legacy and v0), with the runtime's
//! sanitize rules, and signing of exactly the parsed message bytes.
//!
//! Wire format (all counts are compact-u16: 1–3 bytes, 7 bits each, little-endian groups,
//! canonical only — no zero continuation byte, no third byte above 3):
//!
//! ```text
//! transaction = count(sigs) sig[64]*  message
//! message     = [0x80 | version]?                       ; absent = legacy; 0x80 = v0
//!               num_required_signatures u8  num_readonly_signed u8  num_readonly_unsigned u8
//!               count(keys) key[32]*  recent_blockhash[32]
//!               count(ixs) ( program_id_index u8  count(accts) u8*  count(data) u8* )*
//!               ; v0 only:
//!               count(lookups) ( table[32]  count(w) u8*  count(r) u8* )*
//! ```
//!
//! Accepted only when: total length ≤ [`MAX_TRANSACTION_LEN`] (1232, the packet limit) and no
//! trailing bytes; version legacy or 0 (0x81 = v1 and 0xff are refused by name); signature count
//! equals `num_required_signatures` and does not exceed the static keys;
//! `num_readonly_signed < num_required_signatures`; `num_required_signatures +
//! num_readonly_unsigned ≤ static keys`; every lookup loads ≥ 1 account and static + loaded ≤ 256;
//! program ids are static keys and never index 0 (the fee payer); account indexes are in range; no
//! static key appears twice (the runtime's `AccountLoadedTwice`).

use ed25519_dalek::{Signer as _, SigningKey};
use thiserror::Error;

/// Largest serialized transaction (Solana's `PACKET_DATA_SIZE`).
pub const MAX_TRANSACTION_LEN: usize = 1232;
pub const SIGNATURE_LEN: usize = 64;
pub const PUBKEY_LEN: usize = 32;
/// Static plus lookup-table accounts a message may reference.
pub const MAX_ACCOUNTS: usize = 256;

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum TxError {
    #[error("transaction is {actual} bytes; the limit is {MAX_TRANSACTION_LEN}")]
    TooLarge { actual: usize },
    #[error("transaction truncated: {what} at offset {offset}")]
    Truncated { what: &'static str, offset: usize },
    #[error("invalid compact-u16 length at offset {offset}")]
    CompactU16 { offset: usize },
    #[error("unsupported message version byte 0x{0:02x} (only legacy and v0 are accepted)")]
    UnsupportedVersion(u8),
    #[error("{0}")]
    Sanitize(String),
    #[error("{count} trailing byte(s) after the message")]
    TrailingBytes { count: usize },
}

fn sanitize(msg: impl Into<String>) -> TxError {
    TxError::Sanitize(msg.into())
}

/// Message version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Legacy,
    V0,
}

/// The three header counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub num_required_signatures: u8,
    pub num_readonly_signed: u8,
    pub num_readonly_unsigned: u8,
}

/// One top-level instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instruction<'a> {
    pub program_id_index: u8,
    pub accounts: &'a [u8],
    pub data: &'a [u8],
}

/// One v0 address-table lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lookup<'a> {
    pub table: &'a [u8; 32],
    pub writable: &'a [u8],
    pub readonly: &'a [u8],
}

/// A parsed transaction borrowing the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction<'a> {
    raw: &'a [u8],
    signatures_offset: usize,
    pub num_signatures: usize,
    /// Exactly the bytes that signatures cover.
    pub message: &'a [u8],
    pub version: Version,
    pub header: Header,
    keys: &'a [u8],
    pub recent_blockhash: &'a [u8; 32],
    pub instructions: Vec<Instruction<'a>>,
    pub lookups: Vec<Lookup<'a>>,
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], TxError> {
        let end = self.pos.checked_add(n).ok_or(TxError::Truncated { what, offset: self.pos })?;
        let s =
            self.data.get(self.pos..end).ok_or(TxError::Truncated { what, offset: self.pos })?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, TxError> {
        self.take(1, what).map(|s| s.first().copied().unwrap_or_default())
    }

    fn array32(&mut self, what: &'static str) -> Result<&'a [u8; 32], TxError> {
        self.take(32, what)?.try_into().map_err(|_| TxError::Truncated { what, offset: self.pos })
    }

    /// Canonical compact-u16, as the runtime's `short_vec` decodes it.
    fn compact_u16(&mut self, what: &'static str) -> Result<usize, TxError> {
        let offset = self.pos;
        let mut value: u32 = 0;
        for nth in 0..3 {
            let byte = self.u8(what)?;
            if byte == 0 && nth != 0 {
                return Err(TxError::CompactU16 { offset });
            }
            value |= u32::from(byte & 0x7f) << (7 * nth);
            if byte & 0x80 == 0 {
                return u16::try_from(value)
                    .map(usize::from)
                    .map_err(|_| TxError::CompactU16 { offset });
            }
        }
        Err(TxError::CompactU16 { offset })
    }

    fn vec(&mut self, elem: usize, what: &'static str) -> Result<(usize, &'a [u8]), TxError> {
        let count = self.compact_u16(what)?;
        let bytes = self.take(
            count.checked_mul(elem).ok_or(TxError::Truncated { what, offset: self.pos })?,
            what,
        )?;
        Ok((count, bytes))
    }
}

impl<'a> Transaction<'a> {
    /// Parses and sanitizes a serialized transaction.
    pub fn parse(raw: &'a [u8]) -> Result<Self, TxError> {
        if raw.len() > MAX_TRANSACTION_LEN {
            return Err(TxError::TooLarge { actual: raw.len() });
        }
        let mut c = Cursor { data: raw, pos: 0 };
        let num_signatures = c.compact_u16("signature count")?;
        let signatures_offset = c.pos;
        c.take(num_signatures * SIGNATURE_LEN, "signatures")?;
        let message_start = c.pos;

        let first = *raw.get(c.pos).ok_or(TxError::Truncated { what: "message", offset: c.pos })?;
        let version = if first & 0x80 != 0 {
            if first != 0x80 {
                return Err(TxError::UnsupportedVersion(first));
            }
            c.pos += 1;
            Version::V0
        } else {
            Version::Legacy
        };
        let header = Header {
            num_required_signatures: c.u8("header")?,
            num_readonly_signed: c.u8("header")?,
            num_readonly_unsigned: c.u8("header")?,
        };
        let (num_keys, keys) = c.vec(PUBKEY_LEN, "account keys")?;
        let recent_blockhash = c.array32("recent blockhash")?;
        let num_instructions = c.compact_u16("instruction count")?;
        let mut instructions = Vec::with_capacity(num_instructions.min(64));
        for _ in 0..num_instructions {
            let program_id_index = c.u8("program id index")?;
            let (_, accounts) = c.vec(1, "instruction accounts")?;
            let (_, data) = c.vec(1, "instruction data")?;
            instructions.push(Instruction { program_id_index, accounts, data });
        }
        let mut lookups = Vec::new();
        if version == Version::V0 {
            let num_lookups = c.compact_u16("lookup count")?;
            for _ in 0..num_lookups {
                let table = c.array32("lookup table")?;
                let (_, writable) = c.vec(1, "lookup writable indexes")?;
                let (_, readonly) = c.vec(1, "lookup readonly indexes")?;
                lookups.push(Lookup { table, writable, readonly });
            }
        }
        if c.pos != raw.len() {
            return Err(TxError::TrailingBytes { count: raw.len() - c.pos });
        }
        let tx = Self {
            raw,
            signatures_offset,
            num_signatures,
            message: raw.get(message_start..).unwrap_or_default(),
            version,
            header,
            keys,
            recent_blockhash,
            instructions,
            lookups,
        };
        tx.sanitize(num_keys)?;
        Ok(tx)
    }

    fn sanitize(&self, num_static: usize) -> Result<(), TxError> {
        let h = self.header;
        let required = usize::from(h.num_required_signatures);
        if required + usize::from(h.num_readonly_unsigned) > num_static {
            return Err(sanitize(format!(
                "header claims {required} signers + {} read-only unsigned accounts, but only {num_static} static keys",
                h.num_readonly_unsigned
            )));
        }
        if h.num_readonly_signed >= h.num_required_signatures {
            return Err(sanitize("no writable signer (fee payer)"));
        }
        let mut loaded = 0usize;
        for lookup in &self.lookups {
            let n = lookup.writable.len() + lookup.readonly.len();
            if n == 0 {
                return Err(sanitize("address table lookup loads no accounts"));
            }
            loaded += n;
        }
        let total = num_static + loaded;
        if total > MAX_ACCOUNTS {
            return Err(sanitize(format!("{total} accounts; at most {MAX_ACCOUNTS}")));
        }
        for (i, ix) in self.instructions.iter().enumerate() {
            let program = usize::from(ix.program_id_index);
            if program >= num_static {
                return Err(sanitize(format!(
                    "instruction {i}: program id index {program} is not a static key"
                )));
            }
            if program == 0 {
                return Err(sanitize(format!(
                    "instruction {i}: the fee payer cannot be a program"
                )));
            }
            if let Some(bad) = ix.accounts.iter().find(|a| usize::from(**a) >= total) {
                return Err(sanitize(format!(
                    "instruction {i}: account index {bad} out of range ({total} accounts)"
                )));
            }
        }
        if self.num_signatures != required {
            return Err(sanitize(format!(
                "{} signature slots for {required} required signatures",
                self.num_signatures
            )));
        }
        if self.num_signatures > num_static {
            return Err(sanitize("more signatures than static keys"));
        }
        for i in 0..num_static {
            let key = self.static_key(i);
            if (i + 1..num_static).any(|j| self.static_key(j) == key) {
                return Err(sanitize(format!("account key {i} appears more than once")));
            }
        }
        Ok(())
    }

    /// Number of static account keys.
    pub fn num_static_keys(&self) -> usize {
        self.keys.len() / PUBKEY_LEN
    }

    /// Static key `index`.
    pub fn static_key(&self, index: usize) -> Option<&'a [u8; 32]> {
        let start = index.checked_mul(PUBKEY_LEN)?;
        self.keys.get(start..start + PUBKEY_LEN)?.try_into().ok()
    }

    /// Static keys in order.
    pub fn static_keys(&self) -> impl Iterator<Item = &'a [u8; 32]> + '_ {
        (0..self.num_static_keys()).filter_map(|i| self.static_key(i))
    }

    /// The account an instruction refers to by position, if it is a static key. `None` when the
    /// position is absent or the account comes from an address lookup table.
    pub fn instruction_static_account(
        &self,
        ix: &Instruction<'_>,
        position: usize,
    ) -> Option<&'a [u8; 32]> {
        let index = usize::from(*ix.accounts.get(position)?);
        self.static_key(index)
    }

    /// The program id of an instruction (always static after sanitize).
    pub fn program_id(&self, ix: &Instruction<'_>) -> Option<&'a [u8; 32]> {
        self.static_key(usize::from(ix.program_id_index))
    }

    /// Position of `signer` among the required signers.
    pub fn signer_index(&self, signer: &[u8; 32]) -> Option<usize> {
        (0..usize::from(self.header.num_required_signatures))
            .find(|i| self.static_key(*i) == Some(signer))
    }

    /// The fee payer (static key 0).
    pub fn fee_payer(&self) -> Option<&'a [u8; 32]> {
        self.static_key(0)
    }

    /// Signs the message with `key` and returns the signature and the transaction with the
    /// signer's slot filled. Fails when `key` is not a required signer.
    pub fn sign(&self, key: &SigningKey) -> Result<([u8; 64], Vec<u8>), TxError> {
        let public = key.verifying_key().to_bytes();
        let slot = self.signer_index(&public).ok_or_else(|| {
            sanitize(format!(
                "agent {} is not a required signer of this transaction",
                bs58::encode(public).into_string()
            ))
        })?;
        let signature = key.sign(self.message).to_bytes();
        Ok((signature, self.with_signature(slot, &signature)))
    }

    /// The transaction bytes with signature slot `slot` replaced.
    pub fn with_signature(&self, slot: usize, signature: &[u8; 64]) -> Vec<u8> {
        let mut out = self.raw.to_vec();
        let start = self.signatures_offset + slot * SIGNATURE_LEN;
        if let Some(dst) = out.get_mut(start..start + SIGNATURE_LEN) {
            dst.copy_from_slice(signature);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy_transfer() -> Vec<u8> {
        // 1 signature slot, header 1/0/1, keys [payer, dest, system], blockhash, 1 instruction.
        let mut tx = vec![1];
        tx.extend([0u8; 64]);
        tx.extend([1, 0, 1, 3]);
        tx.extend([1u8; 32]);
        tx.extend([2u8; 32]);
        tx.extend([0u8; 32]);
        tx.extend([9u8; 32]);
        tx.extend([1, 2, 2, 0, 1, 12, 2, 0, 0, 0]);
        tx.extend(5u64.to_le_bytes());
        tx
    }

    #[test]
    fn parses_a_minimal_transfer() {
        let raw = legacy_transfer();
        let tx = Transaction::parse(&raw).unwrap();
        assert_eq!(tx.version, Version::Legacy);
        assert_eq!(tx.num_static_keys(), 3);
        assert_eq!(tx.instructions.len(), 1);
        assert_eq!(tx.message, &raw[65..]);
        assert_eq!(tx.signer_index(&[1u8; 32]), Some(0));
        assert_eq!(tx.signer_index(&[2u8; 32]), None);
    }

    #[test]
    fn compact_u16_must_be_canonical() {
        let cases: &[(&[u8], Option<usize>)] = &[
            (&[0x00], Some(0)),
            (&[0x7f], Some(127)),
            (&[0x80, 0x01], Some(128)),
            (&[0xff, 0xff, 0x03], Some(65535)),
            (&[0x80, 0x00], None),
            (&[0xff, 0xff, 0x04], None),
            (&[0x80, 0x80, 0x80], None),
            (&[0x80], None),
        ];
        for (bytes, expected) in cases {
            let mut c = Cursor { data: bytes, pos: 0 };
            assert_eq!(c.compact_u16("x").ok(), *expected, "{bytes:02x?}");
        }
    }

    #[test]
    fn rejects_v1_and_0xff_by_name() {
        let mut raw = legacy_transfer();
        for byte in [0x81u8, 0xff] {
            raw.insert(65, byte);
            assert_eq!(Transaction::parse(&raw), Err(TxError::UnsupportedVersion(byte)));
            raw.remove(65);
        }
    }

    #[test]
    fn sanitize_rules() {
        let base = legacy_transfer();
        let edit = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut raw = base.clone();
            f(&mut raw);
            Transaction::parse(&raw).map(|_| ())
        };
        assert!(edit(&|r| r.push(0)).is_err(), "trailing byte");
        assert!(edit(&|r| r[65] = 0).is_err(), "no signer");
        assert!(edit(&|r| r[66] = 1).is_err(), "readonly signed >= required");
        assert!(edit(&|r| r[67] = 3).is_err(), "header exceeds keys");
        assert!(edit(&|r| r[65 + 3 + 1 + 96 + 32 + 1] = 0).is_err(), "program index 0");
        assert!(edit(&|r| r[65 + 3 + 1 + 96 + 32 + 1] = 3).is_err(), "program index out of range");
        assert!(edit(&|r| r[65 + 3 + 1 + 96 + 32 + 3] = 7).is_err(), "account index out of range");
        assert!(edit(&|r| r[69..101].copy_from_slice(&[2u8; 32])).is_err(), "duplicate key");
        assert!(edit(&|r| r[0] = 2).is_err(), "signature count");
        assert!(Transaction::parse(&vec![0u8; MAX_TRANSACTION_LEN + 1]).is_err());
        assert!(Transaction::parse(&[]).is_err());
        for cut in 0..base.len() {
            assert!(Transaction::parse(&base[..cut]).is_err(), "truncated at {cut}");
        }
    }
}
