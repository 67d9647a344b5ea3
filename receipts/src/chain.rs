//! The chain a decider appends to: its last seq and head. One encoding and one SHA-256 per
//! receipt; checkpoints are built from the current head.

use crate::checkpoint::Checkpoint;
use crate::receipt::{Body, Receipt, ReceiptError, encode_parts, receipt_hash};

/// A receipt just written: its seq, hash and bytes (what the enclave returns and keeps).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub hash: [u8; 32],
    pub bytes: Vec<u8>,
}

/// The state of one decider's chain: the seq and hash of its last receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chain {
    decider: [u8; 16],
    seq: u64,
    head: [u8; 32],
}

impl Chain {
    /// A new chain that names no predecessor (boot, or restart after a crash): writes its
    /// `chain_start` receipt at seq 0.
    pub fn start(decider: [u8; 16], time: u64) -> Result<(Self, Appended), ReceiptError> {
        let receipt = Receipt { seq: 0, decider, time, prev: [0; 32], body: Body::ChainStart };
        Self::first(receipt)
    }

    /// Continues `predecessor`'s chain after a handover: writes the `handover_in` receipt at
    /// `predecessor_seq + 1` with `prev = predecessor_head` (the hash of the predecessor's last
    /// receipt, its `handover_out`).
    pub fn handover_in(
        decider: [u8; 16],
        time: u64,
        predecessor: [u8; 16],
        predecessor_seq: u64,
        predecessor_head: [u8; 32],
    ) -> Result<(Self, Appended), ReceiptError> {
        let seq = predecessor_seq
            .checked_add(1)
            .ok_or(ReceiptError::SeqExhausted { seq: predecessor_seq })?;
        let receipt = Receipt {
            seq,
            decider,
            time,
            prev: predecessor_head,
            body: Body::HandoverIn { predecessor, predecessor_seq, predecessor_head },
        };
        Self::first(receipt)
    }

    /// Continues this decider's own chain from its last receipt (`seq`, `head`), e.g. after a
    /// snapshot install in a cluster. Writes nothing.
    pub fn resume(decider: [u8; 16], seq: u64, head: [u8; 32]) -> Self {
        Self { decider, seq, head }
    }

    fn first(receipt: Receipt) -> Result<(Self, Appended), ReceiptError> {
        let bytes = receipt.encode()?;
        let hash = receipt_hash(&bytes);
        let chain = Self { decider: receipt.decider, seq: receipt.seq, head: hash };
        Ok((chain, Appended { seq: receipt.seq, hash, bytes }))
    }

    /// Appends `body` at `time`: seq + 1, prev = head. A `chain_start` or `handover_in` begins a
    /// chain ([`Chain::start`], [`Chain::handover_in`]) and is refused here. On error the chain
    /// is unchanged.
    pub fn append(&mut self, time: u64, body: &Body) -> Result<Appended, ReceiptError> {
        if matches!(body, Body::ChainStart | Body::HandoverIn { .. }) {
            return Err(ReceiptError::NotAppendable { kind: body.kind_name() });
        }
        let seq = self.seq.checked_add(1).ok_or(ReceiptError::SeqExhausted { seq: self.seq })?;
        let bytes = encode_parts(seq, &self.decider, time, &self.head, body)?;
        let hash = receipt_hash(&bytes);
        self.seq = seq;
        self.head = hash;
        Ok(Appended { seq, hash, bytes })
    }

    /// The decider.
    pub fn decider(&self) -> [u8; 16] {
        self.decider
    }

    /// The seq of the last receipt.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The hash of the last receipt.
    pub fn head(&self) -> [u8; 32] {
        self.head
    }

    /// The checkpoint of the current head, for `signer` (this instance's enclave id) at `time`;
    /// sign it with [`crate::CheckpointKey::sign`].
    pub fn checkpoint(&self, signer: [u8; 16], time: u64) -> Checkpoint {
        Checkpoint { decider: self.decider, signer, seq: self.seq, head: self.head, time }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::*;

    #[test]
    fn each_receipt_names_the_hash_of_the_one_before() {
        let (chain, receipts) = chain_a();
        let decoded: Vec<Receipt> = receipts.iter().map(|b| Receipt::decode(b).unwrap()).collect();
        assert_eq!(decoded[0].body, Body::ChainStart);
        assert_eq!(decoded[0].prev, [0; 32]);
        for (i, pair) in decoded.windows(2).enumerate() {
            assert_eq!(pair[1].seq, pair[0].seq + 1);
            assert_eq!(pair[1].prev, receipt_hash(&receipts[i]));
            assert_eq!(pair[1].decider, ENCLAVE_A);
        }
        assert_eq!(chain.seq(), 5);
        assert_eq!(chain.head(), receipt_hash(receipts.last().unwrap()));
        assert_eq!(chain.decider(), ENCLAVE_A);
    }

    #[test]
    fn appended_carries_the_seq_hash_and_bytes() {
        let (mut chain, start) = Chain::start(ENCLAVE_A, T0).unwrap();
        assert_eq!((start.seq, start.hash), (0, receipt_hash(&start.bytes)));
        let a = chain.append(T0 + 5, &signed()).unwrap();
        assert_eq!(a.seq, 1);
        assert_eq!(a.hash, chain.head());
        let r = Receipt::decode(&a.bytes).unwrap();
        assert_eq!((r.time, r.prev, r.body), (T0 + 5, start.hash, signed()));
    }

    #[test]
    fn a_handover_continues_the_predecessors_seq_and_head() {
        let (a, b, receipts) = chain_handover();
        let out = Receipt::decode(&receipts[6]).unwrap();
        assert_eq!(out.body, Body::HandoverOut { successor: ENCLAVE_B });
        let first = Receipt::decode(&receipts[7]).unwrap();
        assert_eq!(first.seq, a.seq() + 1);
        assert_eq!(first.prev, a.head());
        assert_eq!(first.decider, ENCLAVE_B);
        assert_eq!(
            first.body,
            Body::HandoverIn {
                predecessor: ENCLAVE_A,
                predecessor_seq: 6,
                predecessor_head: a.head()
            }
        );
        assert_eq!(b.seq(), 9);
    }

    #[test]
    fn resume_continues_from_a_seq_and_head() {
        let (chain, _) = chain_a();
        let mut resumed = Chain::resume(ENCLAVE_A, chain.seq(), chain.head());
        assert_eq!(resumed, chain);
        let next = resumed.append(T0 + 9, &kill_switch(true)).unwrap();
        assert_eq!(Receipt::decode(&next.bytes).unwrap().prev, chain.head());
    }

    #[test]
    fn only_bodies_that_continue_a_chain_are_appended_and_errors_leave_it_unchanged() {
        let (mut chain, _) = chain_a();
        let before = chain;
        assert_eq!(
            chain.append(T0, &Body::ChainStart).unwrap_err(),
            ReceiptError::NotAppendable { kind: "chain_start" }
        );
        let handover_in = Body::HandoverIn {
            predecessor: ENCLAVE_B,
            predecessor_seq: 5,
            predecessor_head: chain.head(),
        };
        assert_eq!(chain.append(T0, &handover_in).unwrap_err().code(), "not_appendable");
        let Body::Refused(mut bad) = refused() else { unreachable!() };
        bad.rule = "x".repeat(257);
        assert_eq!(chain.append(T0, &Body::Refused(bad)).unwrap_err().code(), "too_long");
        assert_eq!(chain, before);

        let mut last = Chain::resume(ENCLAVE_A, u64::MAX, [1; 32]);
        assert_eq!(
            last.append(T0, &kill_switch(true)).unwrap_err(),
            ReceiptError::SeqExhausted { seq: u64::MAX }
        );
        assert_eq!(
            Chain::handover_in(ENCLAVE_B, T0, ENCLAVE_A, u64::MAX, [1; 32]).unwrap_err(),
            ReceiptError::SeqExhausted { seq: u64::MAX }
        );
    }

    #[test]
    fn checkpoints_name_the_current_head() {
        let (chain, _) = chain_a();
        let c = chain.checkpoint(ENCLAVE_A, T0 + 60);
        assert_eq!(
            (c.decider, c.signer, c.seq, c.head, c.time),
            (ENCLAVE_A, ENCLAVE_A, 5, chain.head(), T0 + 60)
        );
    }
}
