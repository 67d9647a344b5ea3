//! Cluster members: attested identities ([`verify_member`], with documents signed by the sim CA
//! and a real AWS document) and the member-to-member channel under a hostile relay (tampering,
//! replay, reordering, impersonation, misdirection, garbage).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use enclave_core::OsRandom;
use enclave_core::cluster::channel::{HEADER_LEN, MAX_PAYLOAD_LEN, TAG_LEN};
use enclave_core::cluster::{
    ChannelError, MemberCard, MemberError, MemberKey, Opener, Sealer, member_binding,
    verify_member, verify_member_at_own_time,
};
use enclave_core::envelope::RecipientKey;
use enclave_core::ids::EnclaveId;
use nitro_attestation::sim::{SimCa, SimDocument, SimLeaf};
use nitro_attestation::{ChainError, PolicyError, TrustAnchor, VerifyError};

/// 2026-01-01T12:00:00Z.
const T0: u64 = 1_767_268_800;

fn at(unix: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix)
}

/// A member as the channel sees it: its id and its channel key.
struct Node {
    id: EnclaveId,
    key: Arc<MemberKey>,
}

fn node(byte: u8) -> Node {
    Node { id: EnclaveId([byte; 16]), key: Arc::new(MemberKey::generate(&OsRandom).unwrap()) }
}

fn directory(nodes: &[&Node]) -> HashMap<EnclaveId, [u8; 32]> {
    nodes.iter().map(|n| (n.id, *n.key.public())).collect()
}

fn sealer(from: &Node, to: &Node) -> Sealer {
    Sealer::new(from.key.clone(), from.id, to.id, to.key.public()).unwrap()
}

fn opener(of: &Node) -> Opener {
    Opener::new(of.key.clone(), of.id)
}

mod cluster_channel {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn messages_round_trip_both_ways_from_empty_to_the_largest_payload() {
        let (a, b) = (node(1), node(2));
        let members = directory(&[&a, &b]);
        let (ab, ba) = (sealer(&a, &b), sealer(&b, &a));
        let (mut open_a, mut open_b) = (opener(&a), opener(&b));
        let largest = vec![0x5a; MAX_PAYLOAD_LEN];
        for payload in [&b""[..], b"vote request", &largest] {
            let message = ab.seal(&OsRandom, payload).unwrap();
            assert_eq!(message.len(), HEADER_LEN + payload.len() + TAG_LEN);
            let opened = open_b.open(&message, &members).unwrap();
            assert_eq!((opened.sender, opened.payload.as_slice()), (a.id, payload));
            let reply = ba.seal(&OsRandom, payload).unwrap();
            assert_eq!(open_a.open(&reply, &members).unwrap().payload.as_slice(), payload);
        }
        assert_eq!(
            ab.seal(&OsRandom, &vec![0; MAX_PAYLOAD_LEN + 1]).unwrap_err(),
            ChannelError::PayloadTooLarge { actual: MAX_PAYLOAD_LEN + 1, limit: MAX_PAYLOAD_LEN }
        );
    }

    #[test]
    fn every_tampered_byte_is_refused_and_moves_no_window() {
        let (a, b) = (node(1), node(2));
        let members = directory(&[&a, &b]);
        let message = sealer(&a, &b).seal(&OsRandom, b"entries 1..=4").unwrap();
        let mut open_b = opener(&b);
        for i in 0..message.len() {
            for bit in [0x01, 0x80] {
                let mut tampered = message.clone();
                tampered[i] ^= bit;
                let err = open_b.open(&tampered, &members).unwrap_err();
                let expected = match i {
                    0 => ChannelError::Version(tampered[0]),
                    1..=16 => {
                        ChannelError::UnknownSender(EnclaveId(tampered[1..17].try_into().unwrap()))
                    }
                    17..=32 => ChannelError::WrongRecipient {
                        expected: b.id,
                        actual: EnclaveId(tampered[17..33].try_into().unwrap()),
                    },
                    // Sequence (with bit 0x01 of byte 33 it becomes 0), enc and ciphertext.
                    33 if bit == 0x01 => ChannelError::ZeroSequence,
                    _ => ChannelError::Rejected,
                };
                assert_eq!(err, expected, "byte {i} bit {bit:#x}");
            }
        }
        // A forged higher sequence number (byte 34 flipped: seq 257 or 32769) did not move the
        // window, or seq 1 would now be refused; and the genuine message opens once.
        assert_eq!(open_b.open(&message, &members).unwrap().seq, 1);
        assert_eq!(open_b.open(&message, &members).unwrap_err(), ChannelError::Rejected);
    }

    #[test]
    fn truncated_extended_and_oversized_messages_are_refused() {
        let (a, b) = (node(1), node(2));
        let members = directory(&[&a, &b]);
        let message = sealer(&a, &b).seal(&OsRandom, b"heartbeat").unwrap();
        let mut open_b = opener(&b);
        for len in [0, 1, HEADER_LEN, HEADER_LEN + TAG_LEN - 1] {
            assert!(matches!(
                open_b.open(&message[..len], &members),
                Err(ChannelError::Length { .. })
            ));
        }
        // Cut inside the ciphertext, or with bytes appended: the tag no longer verifies.
        for cut in [message.len() - 1, HEADER_LEN + TAG_LEN] {
            assert_eq!(open_b.open(&message[..cut], &members).unwrap_err(), ChannelError::Rejected);
        }
        let mut longer = message.clone();
        longer.push(0);
        assert_eq!(open_b.open(&longer, &members).unwrap_err(), ChannelError::Rejected);
        let huge = vec![1u8; HEADER_LEN + MAX_PAYLOAD_LEN + TAG_LEN + 1];
        assert!(matches!(open_b.open(&huge, &members), Err(ChannelError::Length { .. })));
        assert_eq!(open_b.open(&message, &members).unwrap().payload.as_slice(), b"heartbeat");
    }

    #[test]
    fn a_replayed_message_is_refused() {
        let (a, b) = (node(1), node(2));
        let members = directory(&[&a, &b]);
        let ab = sealer(&a, &b);
        let mut open_b = opener(&b);
        let first = ab.seal(&OsRandom, b"one").unwrap();
        let second = ab.seal(&OsRandom, b"two").unwrap();
        open_b.open(&first, &members).unwrap();
        open_b.open(&second, &members).unwrap();
        for replay in [&first, &second, &first] {
            assert_eq!(open_b.open(replay, &members).unwrap_err(), ChannelError::Rejected);
        }
        // A replay gets the same answer, with the same text, as a forgery.
        let mut forged = second.clone();
        *forged.last_mut().unwrap() ^= 1;
        let forged = open_b.open(&forged, &members).unwrap_err();
        let replayed = open_b.open(&second, &members).unwrap_err();
        assert_eq!(forged, replayed);
        assert_eq!(forged.to_string(), replayed.to_string());
        assert_eq!(forged.to_string(), "message rejected");
    }

    #[test]
    fn reordered_messages_within_the_window_are_accepted_once_each() {
        let (a, b) = (node(1), node(2));
        let members = directory(&[&a, &b]);
        let ab = sealer(&a, &b);
        let messages: Vec<Vec<u8>> =
            (0..200u32).map(|i| ab.seal(&OsRandom, &i.to_le_bytes()).unwrap()).collect();
        let mut open_b = opener(&b);
        // Newest first, then the rest interleaved from both ends.
        let mut order: Vec<usize> = vec![199];
        let (mut lo, mut hi) = (0, 198);
        while lo <= hi {
            order.push(lo);
            if hi != lo {
                order.push(hi);
            }
            lo += 1;
            hi -= 1;
        }
        for &i in &order {
            let opened = open_b.open(&messages[i], &members).unwrap();
            assert_eq!(
                (opened.seq, opened.payload.as_slice()),
                (i as u64 + 1, &(i as u32).to_le_bytes()[..])
            );
        }
        for &i in &order {
            assert_eq!(open_b.open(&messages[i], &members).unwrap_err(), ChannelError::Rejected);
        }
    }

    #[test]
    fn a_message_a_whole_window_behind_is_refused() {
        let (a, b) = (node(1), node(2));
        let members = directory(&[&a, &b]);
        let ab = sealer(&a, &b);
        let messages: Vec<Vec<u8>> = (0..1026).map(|_| ab.seal(&OsRandom, b"x").unwrap()).collect();
        let mut open_b = opener(&b);
        assert_eq!(open_b.open(&messages[1025], &members).unwrap().seq, 1026);
        // seq 2 is 1024 behind 1026: outside; seq 3 is 1023 behind: inside.
        assert_eq!(open_b.open(&messages[1], &members).unwrap_err(), ChannelError::Rejected);
        assert_eq!(open_b.open(&messages[0], &members).unwrap_err(), ChannelError::Rejected);
        assert_eq!(open_b.open(&messages[2], &members).unwrap().seq, 3);
    }

    #[test]
    fn a_message_from_an_unknown_member_is_refused() {
        let (a, b, stranger) = (node(1), node(2), node(3));
        let members = directory(&[&a, &b]);
        let message = sealer(&stranger, &b).seal(&OsRandom, b"join me").unwrap();
        assert_eq!(
            opener(&b).open(&message, &members).unwrap_err(),
            ChannelError::UnknownSender(stranger.id)
        );
    }

    #[test]
    fn a_message_for_another_member_is_refused() {
        let (a, b, c) = (node(1), node(2), node(3));
        let members = directory(&[&a, &b, &c]);
        let to_b = sealer(&a, &b).seal(&OsRandom, b"for b").unwrap();
        assert_eq!(
            opener(&c).open(&to_b, &members).unwrap_err(),
            ChannelError::WrongRecipient { expected: c.id, actual: b.id }
        );
        // Rewriting the recipient to c: c cannot open what was sealed to b's key for b.
        let mut redirected = to_b.clone();
        redirected[17..33].copy_from_slice(&c.id.0);
        assert_eq!(opener(&c).open(&redirected, &members).unwrap_err(), ChannelError::Rejected);
        // Sealed to c's key but naming b (or naming c under b's id in the info): refused too.
        let mut wrong_key = Sealer::new(a.key.clone(), a.id, b.id, c.key.public()).unwrap();
        let message = wrong_key.seal(&OsRandom, b"x").unwrap();
        assert_eq!(opener(&b).open(&message, &members).unwrap_err(), ChannelError::Rejected);
        wrong_key = Sealer::new(a.key.clone(), a.id, c.id, b.key.public()).unwrap();
        let message = wrong_key.seal(&OsRandom, b"x").unwrap();
        assert_eq!(opener(&c).open(&message, &members).unwrap_err(), ChannelError::Rejected);
    }

    #[test]
    fn a_non_member_key_cannot_speak_for_a_member() {
        let (a, b) = (node(1), node(2));
        let members = directory(&[&a, &b]);
        let impostor = node(9);
        // The impostor names a as the sender and seals to b's real key with its own key.
        let forged = Sealer::new(impostor.key.clone(), a.id, b.id, b.key.public()).unwrap();
        let mut open_b = opener(&b);
        for _ in 0..3 {
            let message = forged.seal(&OsRandom, b"I am a").unwrap();
            assert_eq!(open_b.open(&message, &members).unwrap_err(), ChannelError::Rejected);
        }
        // b itself, naming a as the sender to itself, is no better.
        let reflected = Sealer::new(b.key.clone(), a.id, b.id, b.key.public()).unwrap();
        let message = reflected.seal(&OsRandom, b"I am a").unwrap();
        assert_eq!(open_b.open(&message, &members).unwrap_err(), ChannelError::Rejected);
        // The forgeries moved nothing: a's real first message still opens.
        let genuine = sealer(&a, &b).seal(&OsRandom, b"hello").unwrap();
        assert_eq!(open_b.open(&genuine, &members).unwrap().seq, 1);
    }

    #[test]
    fn a_second_sealer_for_the_same_peer_repeats_numbers_and_is_refused() {
        let (a, b) = (node(1), node(2));
        let members = directory(&[&a, &b]);
        let mut open_b = opener(&b);
        open_b.open(&sealer(&a, &b).seal(&OsRandom, b"1").unwrap(), &members).unwrap();
        let again = sealer(&a, &b).seal(&OsRandom, b"1 again").unwrap();
        assert_eq!(open_b.open(&again, &members).unwrap_err(), ChannelError::Rejected);
    }

    #[test]
    fn a_closure_can_be_the_member_directory_and_forget_drops_a_window() {
        let (a, b) = (node(1), node(2));
        let a_public = *a.key.public();
        let a_id = a.id;
        let lookup = move |id: &EnclaveId| (*id == a_id).then_some(a_public);
        let message = sealer(&a, &b).seal(&OsRandom, b"via closure").unwrap();
        let mut open_b = opener(&b);
        assert_eq!(open_b.open(&message, &lookup).unwrap().payload.as_slice(), b"via closure");
        assert_eq!(open_b.open(&message, &lookup).unwrap_err(), ChannelError::Rejected);
        // Once a has left (no longer admitted), its window may go: its messages are refused
        // before the cryptographic step anyway.
        open_b.forget(&a.id);
        let nobody = |_: &EnclaveId| None;
        assert_eq!(open_b.open(&message, &nobody).unwrap_err(), ChannelError::UnknownSender(a.id));
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let (a, b) = (node(1), node(2));
        let ab = sealer(&a, &b);
        let text = format!("{:?} {:?} {:?}", a.key, ab, opener(&b));
        assert!(text.contains("<redacted>"));
        let opened = opener(&b)
            .open(&ab.seal(&OsRandom, b"secret payload").unwrap(), &directory(&[&a]))
            .unwrap();
        assert!(!format!("{opened:?}").contains("secret"));
    }

    /// Two members, their directory and one message from the first to the second.
    type Fixture = (Node, Node, HashMap<EnclaveId, [u8; 32]>, Vec<u8>);

    fn fixture() -> &'static Fixture {
        static F: OnceLock<Fixture> = OnceLock::new();
        F.get_or_init(|| {
            let (a, b) = (node(1), node(2));
            let members = directory(&[&a, &b]);
            let message = sealer(&a, &b).seal(&OsRandom, b"proptest").unwrap();
            (a, b, members, message)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic_and_never_open(
            bytes in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..200),
                proptest::collection::vec(any::<u8>(), HEADER_LEN + TAG_LEN..HEADER_LEN + 300),
            ],
            header_from_genuine in any::<bool>(),
        ) {
            let (_, b, members, message) = fixture();
            let mut bytes = bytes;
            // Half the time keep a plausible header, so the cryptographic step is reached.
            if header_from_genuine && bytes.len() >= HEADER_LEN {
                bytes[..HEADER_LEN - 32].copy_from_slice(&message[..HEADER_LEN - 32]);
            }
            prop_assert!(opener(b).open(&bytes, members).is_err());
        }

        #[test]
        fn a_mutated_genuine_message_never_opens(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
            cut in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            let (_, b, members, message) = fixture();
            let mut mutated = message.clone();
            for (index, x) in edits {
                mutated[index.index(message.len())] ^= x;
            }
            if let Some(cut) = cut {
                mutated.truncate(cut.index(message.len()));
            }
            prop_assume!(mutated != *message);
            prop_assert!(opener(b).open(&mutated, members).is_err());
        }
    }
}

mod cluster_member {
    use super::*;

    const MAX_AGE: Duration = Duration::from_secs(300);

    fn ca() -> &'static SimCa {
        static CA: OnceLock<SimCa> = OnceLock::new();
        CA.get_or_init(|| SimCa::generate(&mut rand::rng(), at(T0 - 86_400 * 365)).unwrap())
    }

    fn other_ca() -> &'static SimCa {
        static CA: OnceLock<SimCa> = OnceLock::new();
        CA.get_or_init(|| SimCa::generate(&mut rand::rng(), at(T0 - 86_400 * 365)).unwrap())
    }

    /// The recipient SPKI of the test enclave (a real RSA-2048 key, generated once).
    fn recipient_spki() -> &'static [u8] {
        static KEY: OnceLock<RecipientKey> = OnceLock::new();
        KEY.get_or_init(|| RecipientKey::generate(&OsRandom, 2048).unwrap()).spki_der()
    }

    fn pcrs(image_byte: u8) -> BTreeMap<u8, Vec<u8>> {
        let mut pcrs: BTreeMap<u8, Vec<u8>> = (0u8..16).map(|i| (i, vec![0; 48])).collect();
        if image_byte != 0 {
            for i in 0..3 {
                pcrs.insert(i, vec![image_byte + i; 48]);
            }
        }
        pcrs
    }

    fn image(image_byte: u8) -> BTreeMap<u8, Vec<u8>> {
        pcrs(image_byte).into_iter().filter(|(i, _)| *i < 3).collect()
    }

    fn leaf(ca: &SimCa, when: u64) -> SimLeaf {
        ca.issue_leaf("i-test-enc", &mut rand::rng(), at(when)).unwrap()
    }

    /// What one document should say; defaults are a correct member of image 0x10 at T0.
    struct Doc<'a> {
        ca: &'a SimCa,
        when: u64,
        image_byte: u8,
        public_key: Option<&'a [u8]>,
        user_data: Option<Vec<u8>>,
    }

    struct Member {
        id: EnclaveId,
        key: MemberKey,
    }

    fn member() -> Member {
        Member {
            id: EnclaveId::from_recipient_key(recipient_spki()),
            key: MemberKey::generate(&OsRandom).unwrap(),
        }
    }

    impl Member {
        fn doc(&self) -> Doc<'static> {
            Doc {
                ca: ca(),
                when: T0,
                image_byte: 0x10,
                public_key: Some(recipient_spki()),
                user_data: Some(self.key.binding(&self.id).to_vec()),
            }
        }

        fn card(&self, doc: Doc<'_>) -> Vec<u8> {
            let document = doc.ca.issue_document(
                &leaf(doc.ca, doc.when),
                &SimDocument {
                    module_id: "i-test-enc",
                    timestamp_ms: doc.when * 1000,
                    pcrs: &pcrs(doc.image_byte),
                    public_key: doc.public_key,
                    user_data: doc.user_data.as_deref(),
                    nonce: None,
                },
            );
            MemberCard { enclave_id: self.id, channel_public: *self.key.public(), document }
                .encode()
                .unwrap()
        }
    }

    fn anchor() -> TrustAnchor {
        ca().trust_anchor().unwrap()
    }

    fn trusted() -> Vec<BTreeMap<u8, Vec<u8>>> {
        vec![image(0x40), image(0x10)]
    }

    fn verify(card: &[u8], now: u64) -> Result<enclave_core::cluster::VerifiedMember, MemberError> {
        verify_member(card, &anchor(), &trusted(), at(now), MAX_AGE)
    }

    #[test]
    fn a_valid_card_is_accepted() {
        let m = member();
        let card = m.card(m.doc());
        let verified = verify(&card, T0 + 10).unwrap();
        assert_eq!(verified.enclave_id, m.id);
        assert_eq!(verified.channel_public, *m.key.public());
        assert_eq!(verified.node_id(), u64::from_le_bytes(m.id.0[..8].try_into().unwrap()));
        assert_eq!(verified.document.document.public_key.as_deref(), Some(recipient_spki()));
        // A long-running member's card, checked at its own time, is accepted as well.
        let own = verify_member_at_own_time(&card, &anchor(), &trusted(), at(T0 + 10)).unwrap();
        assert_eq!((own.enclave_id, own.channel_public), (m.id, *m.key.public()));
    }

    #[test]
    fn a_document_binding_another_channel_key_is_refused() {
        let m = member();
        let other = MemberKey::generate(&OsRandom).unwrap();
        let card = m.card(Doc { user_data: Some(other.binding(&m.id).to_vec()), ..m.doc() });
        let err = verify(&card, T0).unwrap_err();
        assert_eq!(
            err,
            MemberError::BindingMismatch {
                enclave_id: m.id,
                expected: hex::encode(m.key.binding(&m.id)),
                actual: hex::encode(other.binding(&m.id)),
            }
        );
        // No user_data at all, or the binding of another enclave id: refused the same way.
        for user_data in [None, Some(member_binding(&EnclaveId([1; 16]), m.key.public()).to_vec())]
        {
            let card = m.card(Doc { user_data, ..m.doc() });
            assert!(matches!(verify(&card, T0), Err(MemberError::BindingMismatch { .. })));
        }
    }

    #[test]
    fn a_card_naming_another_enclave_than_its_public_key_is_refused() {
        let m = member();
        let impostor =
            Member { id: EnclaveId([0x77; 16]), key: MemberKey::generate(&OsRandom).unwrap() };
        // The impostor's own binding, but the document's key is the real enclave's.
        let card = impostor
            .card(Doc { user_data: Some(impostor.key.binding(&impostor.id).to_vec()), ..m.doc() });
        assert_eq!(
            verify(&card, T0).unwrap_err(),
            MemberError::EnclaveIdMismatch { card: impostor.id, attested: m.id }
        );
        let card = m.card(Doc { public_key: None, ..m.doc() });
        assert_eq!(verify(&card, T0).unwrap_err(), MemberError::NoPublicKey);
    }

    #[test]
    fn a_debug_mode_document_is_refused() {
        let m = member();
        let card = m.card(Doc { image_byte: 0, ..m.doc() });
        // Even with the all-zero image trusted.
        let mut trusted = trusted();
        trusted.push(image(0));
        let debug = MemberError::Document(VerifyError::Policy(PolicyError::DebugMode));
        assert_eq!(verify_member(&card, &anchor(), &trusted, at(T0), MAX_AGE).unwrap_err(), debug);
        assert_eq!(
            verify_member_at_own_time(&card, &anchor(), &trusted, at(T0)).unwrap_err(),
            debug
        );
    }

    #[test]
    fn a_document_of_an_untrusted_image_is_refused() {
        let m = member();
        let card = m.card(Doc { image_byte: 0x20, ..m.doc() });
        let expected = MemberError::UntrustedImage { pcr0: hex::encode([0x20; 48]), trusted: 2 };
        assert_eq!(verify(&card, T0).unwrap_err(), expected);
        assert_eq!(
            verify_member_at_own_time(&card, &anchor(), &trusted(), at(T0)).unwrap_err(),
            expected
        );
        assert!(matches!(
            verify_member(&card, &anchor(), &[], at(T0), MAX_AGE),
            Err(MemberError::UntrustedImage { trusted: 0, .. })
        ));
    }

    #[test]
    fn a_document_older_than_the_maximum_age_is_refused_unless_checked_at_its_own_time() {
        let m = member();
        let card = m.card(m.doc());
        assert!(verify(&card, T0 + 300).is_ok());
        assert_eq!(
            verify(&card, T0 + 301).unwrap_err(),
            MemberError::Document(VerifyError::Policy(PolicyError::TooOld {
                age_ms: 301_000,
                max_age_ms: 300_000
            }))
        );
        // A day later the leaf has expired: the fresh path refuses the chain, the own-time path
        // accepts the document as what that enclave said when it was signed.
        let later = T0 + 86_400;
        assert!(matches!(
            verify(&card, later),
            Err(MemberError::Document(VerifyError::Chain(ChainError::Expired { .. })))
        ));
        assert!(verify_member_at_own_time(&card, &anchor(), &trusted(), at(later)).is_ok());
    }

    #[test]
    fn a_document_from_the_future_is_refused() {
        let m = member();
        let card = m.card(Doc { when: T0 + 61, ..m.doc() });
        let future = |e: Result<_, MemberError>| {
            matches!(
                e,
                Err(MemberError::Document(VerifyError::Policy(PolicyError::FromTheFuture { .. })))
            )
        };
        assert!(future(verify_member_at_own_time(&card, &anchor(), &trusted(), at(T0))));
        assert!(verify_member_at_own_time(&card, &anchor(), &trusted(), at(T0 + 1)).is_ok());
    }

    #[test]
    fn a_document_from_another_root_is_refused() {
        let m = member();
        let card = m.card(Doc { ca: other_ca(), ..m.doc() });
        for result in
            [verify(&card, T0), verify_member_at_own_time(&card, &anchor(), &trusted(), at(T0))]
        {
            assert!(
                matches!(
                    result,
                    Err(MemberError::Document(VerifyError::Chain(
                        ChainError::UntrustedRoot { .. }
                    )))
                ),
                "{result:?}"
            );
        }
        // And accepted by its own root.
        let other_anchor = other_ca().trust_anchor().unwrap();
        assert!(verify_member(&card, &other_anchor, &trusted(), at(T0), MAX_AGE).is_ok());
    }

    #[test]
    fn malformed_cards_are_refused_before_any_document_check() {
        let m = member();
        let card = m.card(m.doc());
        let mut trailing = card.clone();
        trailing.push(0);
        assert!(matches!(verify(&trailing, T0), Err(MemberError::CardDocumentLength { .. })));
        assert!(matches!(verify(&card[..40], T0), Err(MemberError::CardLength { .. })));
        let mut version = card.clone();
        version[0] = 0;
        assert_eq!(verify(&version, T0).unwrap_err(), MemberError::CardVersion(0));
        // A card whose channel key was swapped after attestation no longer matches its binding.
        let mut swapped = card.clone();
        swapped[17] ^= 1;
        assert!(matches!(verify(&swapped, T0), Err(MemberError::BindingMismatch { .. })));
    }

    /// A real AWS document (no member binding: its `user_data` is null) passes the chain, the
    /// freshness and the image checks and is refused for the binding alone.
    #[test]
    fn a_real_aws_document_without_the_member_binding_is_refused_for_the_binding() {
        let vector = testkit::attestation_vectors()
            .into_iter()
            .find(|v| v.file == "base_nitro_validator_2024-11-30.cbor")
            .expect("vector listed in manifest.json");
        let document = vector.bytes();
        let public_key = testkit::unhex(vector.public_key.as_deref().unwrap());
        let enclave_id = EnclaveId::from_recipient_key(&public_key);
        let image: BTreeMap<u8, Vec<u8>> = ["0", "1", "2"]
            .iter()
            .map(|i| (i.parse().unwrap(), testkit::unhex(&vector.pcrs_nonzero[*i])))
            .collect();
        let channel_public = [0x42; 32];
        let card = MemberCard { enclave_id, channel_public, document }.encode().unwrap();
        let aws = TrustAnchor::aws_nitro_root_g1();
        let now = at(vector.valid_at() as u64);
        let expected = MemberError::BindingMismatch {
            enclave_id,
            expected: hex::encode(member_binding(&enclave_id, &channel_public)),
            actual: "none".into(),
        };
        let max_age = Duration::from_secs(3 * 3600);
        assert_eq!(
            verify_member(&card, &aws, std::slice::from_ref(&image), now, max_age).unwrap_err(),
            expected
        );
        // Checked at its own time, today: the chain still holds and the binding still fails.
        assert_eq!(
            verify_member_at_own_time(&card, &aws, std::slice::from_ref(&image), SystemTime::now())
                .unwrap_err(),
            expected
        );
        // Under the sim root it is refused for the chain instead.
        assert!(matches!(
            verify_member(&card, &anchor(), &[image], now, max_age),
            Err(MemberError::Document(VerifyError::Chain(ChainError::UntrustedRoot { .. })))
        ));
    }
}
