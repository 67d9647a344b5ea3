//! Member-to-member messages over untrusted relays.
//!
//! Each message is one HPKE (RFC 9180) **Auth mode** single-shot encryption, suite
//! `DHKEM(X25519, HKDF-SHA256)` / `HKDF-SHA256` / `AES-256-GCM`: the sender authenticates with its
//! static [`MemberKey`] and seals to the recipient's attested channel key, so only the recipient
//! can open it and only the sender could have made it.
//!
//! ```text
//! info = "signer/cluster/channel/v1" ‖ sender[16] ‖ recipient[16]
//! aad  = the 73-byte header below
//!
//! offset  size   field
//! 0       1      version u8 = 1
//! 1       16     sender enclave id
//! 17      16     recipient enclave id
//! 33      8      seq u64 little-endian, ≥ 1
//! 41      32     enc (the sender's ephemeral X25519 public key)
//! 73      n+16   ciphertext: AES-256-GCM of the payload (n bytes) ‖ 16-byte tag
//! ```
//!
//! Payloads are 0..=[`MAX_PAYLOAD_LEN`] (240 KiB) bytes, so a message (at most
//! [`MAX_MESSAGE_LEN`] = 240 KiB + 89 bytes) fits the 256 KiB parent↔enclave frame.
//!
//! **Sequence numbers.** A [`Sealer`] (one per sender and recipient) numbers its messages 1, 2, 3…
//! and never reuses a number. Channel keys are generated at every boot, so a number never repeats
//! for the same pair of keys. A sender must keep one `Sealer` per peer for the life of its key:
//! a second one would start again at 1 and the peer would refuse its messages as replays.
//!
//! **Replay protection.** An [`Opener`] keeps, per sender (enclave id and channel key), the
//! highest number it accepted and a [`REPLAY_WINDOW`]-bit bitmap of the numbers below it. A
//! message whose number was accepted before, or is [`REPLAY_WINDOW`] or more below the highest, is
//! refused; other reordering is accepted, each number once. The window moves only after the
//! message decrypts: unauthenticated bytes never change it.
//!
//! **One answer.** Failures before the cryptographic step depend only on the cleartext header the
//! relay already sees (length, version, sequence 0, recipient, unknown sender) and are specific.
//! Every failure from the cryptographic step on (decapsulation, tag, replay) is
//! [`ChannelError::Rejected`] with one fixed text, after the same work, so a relaying host learns
//! nothing from which check failed. The tag is checked by the AEAD in constant time.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hpke::aead::{AeadTag, AesGcm256};
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable as _, OpModeR, OpModeS, Serializable as _};
use signer_types::ids::EnclaveId;
use thiserror::Error;
use zeroize::Zeroizing;

use super::member::{MemberKey, hpke_public_key};
use crate::error::RandomError;
use crate::secret::{SecureRandom, seeded_rng};

/// The only message format.
pub const CHANNEL_VERSION: u8 = 1;
/// Domain separator at the start of the HPKE `info`.
pub const CHANNEL_INFO_DOMAIN: &[u8] = b"signer/cluster/channel/v1";
/// Cleartext header: version, sender, recipient, seq, enc.
pub const HEADER_LEN: usize = 1 + 16 + 16 + 8 + 32;
/// AES-256-GCM tag.
pub const TAG_LEN: usize = 16;
/// Largest payload: leaves room for the header, the tag and the frame's own envelope within the
/// 256 KiB parent↔enclave frame.
pub const MAX_PAYLOAD_LEN: usize = 240 * 1024;
/// Largest message.
pub const MAX_MESSAGE_LEN: usize = HEADER_LEN + MAX_PAYLOAD_LEN + TAG_LEN;
/// Smallest message (an empty payload).
pub const MIN_MESSAGE_LEN: usize = HEADER_LEN + TAG_LEN;
/// How far below the highest accepted sequence number a message may still arrive.
pub const REPLAY_WINDOW: u64 = 1024;

const WINDOW_WORDS: usize = 16;
const _: () = assert!(WINDOW_WORDS as u64 * 64 == REPLAY_WINDOW);

type EncappedKey = <X25519HkdfSha256 as hpke::Kem>::EncappedKey;

/// Why a message could not be sealed or opened.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ChannelError {
    #[error("message is {actual} bytes; a message is {min}..={max} bytes")]
    Length { actual: usize, min: usize, max: usize },
    #[error("message version {0}; this enclave speaks version 1")]
    Version(u8),
    #[error("message carries sequence number 0, which is never sent")]
    ZeroSequence,
    #[error("message is addressed to {actual}, not to this member ({expected})")]
    WrongRecipient { expected: EnclaveId, actual: EnclaveId },
    #[error("message names sender {0}, which is not an admitted member")]
    UnknownSender(EnclaveId),
    /// Every failure from the cryptographic step on; deliberately says nothing more.
    #[error("message rejected")]
    Rejected,
    #[error("payload is {actual} bytes; the limit is {limit}")]
    PayloadTooLarge { actual: usize, limit: usize },
    #[error("this channel has used every sequence number; start a new member key")]
    SequenceExhausted,
    #[error("sealing failed: {0}")]
    Seal(String),
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// The cleartext header of a message (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub sender: EnclaveId,
    pub recipient: EnclaveId,
    pub seq: u64,
    pub enc: [u8; 32],
}

impl Header {
    /// The 73 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let parts: [&[u8]; 5] = [
            &[CHANNEL_VERSION],
            &self.sender.0,
            &self.recipient.0,
            &self.seq.to_le_bytes(),
            &self.enc,
        ];
        let mut at = 0;
        for part in parts {
            if let Some(dst) = out.get_mut(at..at + part.len()) {
                dst.copy_from_slice(part);
            }
            at += part.len();
        }
        out
    }

    /// Splits a message into its header, the header bytes and the ciphertext, checking only
    /// what needs no key: length, version and a non-zero sequence number.
    pub fn parse(message: &[u8]) -> Result<(Self, &[u8], &[u8]), ChannelError> {
        let length = || ChannelError::Length {
            actual: message.len(),
            min: MIN_MESSAGE_LEN,
            max: MAX_MESSAGE_LEN,
        };
        if !(MIN_MESSAGE_LEN..=MAX_MESSAGE_LEN).contains(&message.len()) {
            return Err(length());
        }
        let (header_bytes, ciphertext) = message.split_at_checked(HEADER_LEN).ok_or_else(length)?;
        let (&version, rest) = header_bytes.split_first().ok_or_else(length)?;
        if version != CHANNEL_VERSION {
            return Err(ChannelError::Version(version));
        }
        let (sender, rest) = rest.split_first_chunk::<16>().ok_or_else(length)?;
        let (recipient, rest) = rest.split_first_chunk::<16>().ok_or_else(length)?;
        let (seq, rest) = rest.split_first_chunk::<8>().ok_or_else(length)?;
        let enc = rest.first_chunk::<32>().ok_or_else(length)?;
        let seq = u64::from_le_bytes(*seq);
        if seq == 0 {
            return Err(ChannelError::ZeroSequence);
        }
        let header =
            Self { sender: EnclaveId(*sender), recipient: EnclaveId(*recipient), seq, enc: *enc };
        Ok((header, header_bytes, ciphertext))
    }
}

fn info(sender: &EnclaveId, recipient: &EnclaveId) -> Vec<u8> {
    [CHANNEL_INFO_DOMAIN, &sender.0, &recipient.0].concat()
}

/// Seals this member's messages to one peer (module docs: one per peer for the key's life).
pub struct Sealer {
    key: Arc<MemberKey>,
    sender: EnclaveId,
    recipient: EnclaveId,
    recipient_public: <X25519HkdfSha256 as hpke::Kem>::PublicKey,
    /// The next sequence number to use.
    next_seq: AtomicU64,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("sender", &self.sender)
            .field("recipient", &self.recipient)
            .field("next_seq", &self.next_seq.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A channel from this member (`sender`, holding `key`) to the peer `recipient`, whose
    /// attested channel key is `recipient_public`.
    pub fn new(
        key: Arc<MemberKey>,
        sender: EnclaveId,
        recipient: EnclaveId,
        recipient_public: &[u8; 32],
    ) -> Result<Self, ChannelError> {
        let recipient_public = hpke_public_key(recipient_public).ok_or_else(|| {
            ChannelError::Seal("the peer's channel key is not an X25519 key".into())
        })?;
        Ok(Self { key, sender, recipient, recipient_public, next_seq: AtomicU64::new(1) })
    }

    /// The peer this sealer writes to.
    pub fn recipient(&self) -> EnclaveId {
        self.recipient
    }

    /// Seals `payload` as the next message (module docs for the format). A number taken by a
    /// failed seal is skipped, never reused.
    pub fn seal(&self, rng: &dyn SecureRandom, payload: &[u8]) -> Result<Vec<u8>, ChannelError> {
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(ChannelError::PayloadTooLarge {
                actual: payload.len(),
                limit: MAX_PAYLOAD_LEN,
            });
        }
        let seq = self
            .next_seq
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| s.checked_add(1))
            .map_err(|_| ChannelError::SequenceExhausted)?;
        let mut csprng = seeded_rng(rng)?;
        let mode = OpModeS::<X25519HkdfSha256>::Auth((
            self.key.hpke_private().clone(),
            self.key.hpke_public().clone(),
        ));
        let (enc, mut context) =
            hpke::setup_sender_with_rng::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
                &mode,
                &self.recipient_public,
                &info(&self.sender, &self.recipient),
                &mut csprng,
            )
            .map_err(|e| ChannelError::Seal(e.to_string()))?;
        let enc: [u8; 32] = enc
            .to_bytes()
            .as_slice()
            .try_into()
            .map_err(|_| ChannelError::Seal("HPKE enc is not 32 bytes".into()))?;
        let header = Header { sender: self.sender, recipient: self.recipient, seq, enc }.encode();
        let ciphertext =
            context.seal(payload, &header).map_err(|e| ChannelError::Seal(e.to_string()))?;
        Ok([header.as_slice(), &ciphertext].concat())
    }
}

/// Where an [`Opener`] looks up the admitted members' channel keys.
pub trait Members {
    /// The attested channel key of `id`, if it is an admitted member.
    fn channel_key(&self, id: &EnclaveId) -> Option<[u8; 32]>;
}

impl<S: std::hash::BuildHasher> Members for HashMap<EnclaveId, [u8; 32], S> {
    fn channel_key(&self, id: &EnclaveId) -> Option<[u8; 32]> {
        self.get(id).copied()
    }
}

impl Members for std::collections::BTreeMap<EnclaveId, [u8; 32]> {
    fn channel_key(&self, id: &EnclaveId) -> Option<[u8; 32]> {
        self.get(id).copied()
    }
}

impl<F: Fn(&EnclaveId) -> Option<[u8; 32]>> Members for F {
    fn channel_key(&self, id: &EnclaveId) -> Option<[u8; 32]> {
        self(id)
    }
}

/// An opened message.
pub struct Opened {
    pub sender: EnclaveId,
    pub seq: u64,
    /// The plaintext, zeroized on drop.
    pub payload: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("sender", &self.sender)
            .field("seq", &self.seq)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// The sequence numbers accepted from one sender (module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// The highest number accepted; 0 before the first.
    highest: u64,
    /// Bit `i` (word `i / 64`, bit `i % 64`) set: `highest - i` was accepted.
    seen: [u64; WINDOW_WORDS],
}

impl ReplayWindow {
    /// Whether `seq` would be accepted now (not a replay, not too old). Does not record it.
    pub fn check(&self, seq: u64) -> bool {
        if seq == 0 {
            return false;
        }
        if seq > self.highest {
            return true;
        }
        let back = self.highest - seq;
        back < REPLAY_WINDOW && !self.bit(back)
    }

    /// Records `seq` if [`Self::check`] accepts it; answers whether it did.
    pub fn accept(&mut self, seq: u64) -> bool {
        if !self.check(seq) {
            return false;
        }
        if seq > self.highest {
            self.shift(seq - self.highest);
            self.highest = seq;
            self.set(0);
        } else {
            self.set(self.highest - seq);
        }
        true
    }

    fn bit(&self, back: u64) -> bool {
        let (word, bit) = split(back);
        self.seen.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    fn set(&mut self, back: u64) {
        let (word, bit) = split(back);
        if let Some(w) = self.seen.get_mut(word) {
            *w |= 1 << bit;
        }
    }

    /// Moves every recorded number `by` places further back (the highest grew by `by`).
    fn shift(&mut self, by: u64) {
        if by >= REPLAY_WINDOW {
            self.seen = [0; WINDOW_WORDS];
            return;
        }
        let (words, bits) = split(by);
        let old = self.seen;
        let at = |i: usize| i.checked_sub(words).and_then(|j| old.get(j)).copied().unwrap_or(0);
        for (i, w) in self.seen.iter_mut().enumerate() {
            let high = at(i) << bits;
            // Bits that cross into the next word; none when the shift is word-aligned.
            let low = if bits == 0 { 0 } else { i.checked_sub(1).map_or(0, at) >> (64 - bits) };
            *w = high | low;
        }
    }
}

fn split(back: u64) -> (usize, u32) {
    (usize::try_from(back / 64).unwrap_or(usize::MAX), (back % 64) as u32)
}

/// Opens the messages addressed to this member (module docs).
pub struct Opener {
    key: Arc<MemberKey>,
    local: EnclaveId,
    /// Per sender and its channel key: sequence numbers only mean something for one key pair.
    windows: HashMap<(EnclaveId, [u8; 32]), ReplayWindow>,
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("local", &self.local)
            .field("senders", &self.windows.len())
            .finish_non_exhaustive()
    }
}

impl Opener {
    /// Opens messages to `local`, whose channel key is `key`.
    pub fn new(key: Arc<MemberKey>, local: EnclaveId) -> Self {
        Self { key, local, windows: HashMap::new() }
    }

    /// Checks the header (recipient, admitted sender), decrypts, then refuses replays
    /// (module docs). The replay window moves only for a message that decrypted.
    pub fn open(&mut self, message: &[u8], members: &impl Members) -> Result<Opened, ChannelError> {
        let (header, header_bytes, ciphertext) = Header::parse(message)?;
        if header.recipient != self.local {
            return Err(ChannelError::WrongRecipient {
                expected: self.local,
                actual: header.recipient,
            });
        }
        let sender_public = members
            .channel_key(&header.sender)
            .ok_or(ChannelError::UnknownSender(header.sender))?;
        // From here on every failure is `Rejected`.
        let payload = self.decrypt(&header, header_bytes, ciphertext, &sender_public);
        let window_key = (header.sender, sender_public);
        let fresh = self.windows.get(&window_key).is_none_or(|w| w.check(header.seq));
        match payload {
            Some(payload) if fresh => {
                // Only an authenticated message creates or moves a window.
                self.windows.entry(window_key).or_default().accept(header.seq);
                Ok(Opened { sender: header.sender, seq: header.seq, payload })
            }
            _ => Err(ChannelError::Rejected),
        }
    }

    fn decrypt(
        &self,
        header: &Header,
        header_bytes: &[u8],
        ciphertext: &[u8],
        sender_public: &[u8; 32],
    ) -> Option<Zeroizing<Vec<u8>>> {
        let sender_public = hpke_public_key(sender_public)?;
        let enc = EncappedKey::from_bytes(&header.enc).ok()?;
        let (body, tag) = ciphertext.split_at_checked(ciphertext.len().checked_sub(TAG_LEN)?)?;
        let tag = AeadTag::<AesGcm256>::from_bytes(tag).ok()?;
        let mut payload = Zeroizing::new(body.to_vec());
        hpke::single_shot_open_inout_detached::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Auth(sender_public),
            self.key.hpke_private(),
            &enc,
            &info(&header.sender, &header.recipient),
            payload.as_mut_slice().into(),
            header_bytes,
            &tag,
        )
        .ok()?;
        Some(payload)
    }

    /// Forgets the replay windows of `sender` (a member that left the cluster). Only do this
    /// once its channel key is no longer admitted: its old messages would be accepted again.
    pub fn forget(&mut self, sender: &EnclaveId) {
        self.windows.retain(|(id, _), _| id != sender);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::secret::OsRandom;

    fn pair() -> (Arc<MemberKey>, EnclaveId, Arc<MemberKey>, EnclaveId) {
        let a = Arc::new(MemberKey::generate(&OsRandom).unwrap());
        let b = Arc::new(MemberKey::generate(&OsRandom).unwrap());
        (a, EnclaveId([0xa; 16]), b, EnclaveId([0xb; 16]))
    }

    #[test]
    fn header_is_the_documented_73_bytes() {
        let header = Header {
            sender: EnclaveId([1; 16]),
            recipient: EnclaveId([2; 16]),
            seq: 3,
            enc: [4; 32],
        };
        let bytes = header.encode();
        let expected = [&[1u8][..], &[1; 16], &[2; 16], &3u64.to_le_bytes(), &[4; 32]].concat();
        assert_eq!(bytes.as_slice(), expected.as_slice());
        let message = [bytes.as_slice(), &[0; TAG_LEN]].concat();
        let (parsed, header_bytes, ciphertext) = Header::parse(&message).unwrap();
        assert_eq!(parsed, header);
        assert_eq!(header_bytes, bytes.as_slice());
        assert_eq!(ciphertext, &[0; TAG_LEN]);
    }

    #[test]
    fn sealed_message_opens_once_with_its_sender_and_number() {
        let (ka, a, kb, b) = pair();
        let sealer = Sealer::new(ka.clone(), a, b, kb.public()).unwrap();
        let mut opener = Opener::new(kb, b);
        let members = HashMap::from([(a, *ka.public())]);
        let first = sealer.seal(&OsRandom, b"append entries").unwrap();
        let second = sealer.seal(&OsRandom, b"").unwrap();
        assert_eq!(first.len(), HEADER_LEN + 14 + TAG_LEN);
        let opened = opener.open(&first, &members).unwrap();
        assert_eq!(
            (opened.sender, opened.seq, opened.payload.as_slice()),
            (a, 1, &b"append entries"[..])
        );
        let opened = opener.open(&second, &members).unwrap();
        assert_eq!((opened.seq, opened.payload.len()), (2, 0));
        assert_eq!(opener.open(&first, &members).unwrap_err(), ChannelError::Rejected);
    }

    #[test]
    fn window_accepts_each_number_once_and_nothing_a_window_behind() {
        let mut w = ReplayWindow::default();
        assert!(!w.check(0));
        assert!(w.accept(5));
        assert!(!w.accept(5));
        assert!(w.accept(3));
        assert!(!w.accept(3));
        assert!(w.accept(5 + 1023 + 64));
        // 5 + 64 is exactly 1023 below the highest: still inside.
        assert!(w.check(5 + 64));
        assert!(!w.check(5 + 63));
        assert!(!w.accept(5));
        assert!(w.accept(u64::MAX));
        assert!(!w.accept(u64::MAX));
        assert!(w.accept(u64::MAX - 1023));
        assert!(!w.accept(u64::MAX - 1024));
    }

    proptest! {
        #[test]
        fn window_agrees_with_a_set_of_everything_accepted(
            seqs in proptest::collection::vec(prop_oneof![0u64..3000, 0u64..200_000], 0..400),
        ) {
            let mut w = ReplayWindow::default();
            let mut accepted = BTreeSet::new();
            for seq in seqs {
                let highest = accepted.last().copied().unwrap_or(0);
                let expected = seq != 0
                    && !accepted.contains(&seq)
                    && (seq > highest || highest - seq < REPLAY_WINDOW);
                prop_assert_eq!(w.accept(seq), expected, "seq {}", seq);
                if expected {
                    accepted.insert(seq);
                }
            }
        }
    }
}
