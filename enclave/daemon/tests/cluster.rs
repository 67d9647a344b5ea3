//! Three members over an in-memory relay that a nemesis controls (drop, duplicate, delay and
//! reorder every message; cut links), each a real `Enclave` with a simulated NSM, Raft
//! (`openraft`) and the attested channel: decisions are committed by a majority and survive the
//! leader's death; a member cut off from the majority decides nothing; a newcomer admitted in
//! the dead member's place catches up; a card that is not a trusted member's is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
#![cfg(feature = "sim")]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use enclave_core::authorization::MessageDomain;
use enclave_core::enclave::{AuthorizeGrant, RevokeTarget};
use enclave_core::envelope::RecipientKey;
use enclave_core::policy::Policy;
use enclave_core::{Enclave, EnclaveConfig, EnclaveError, OsRandom, Pubkey, SystemClock};
use rand::{RngExt, SeedableRng};
use rsa::pkcs8::EncodePublicKey;
use signer_enclave::cluster::node::{Node, Transport};
use signer_enclave::cluster::raft::Member;
use signer_enclave::nsm::NsmAttester;
use signer_enclave::sim_nsm::SimNsm;

/// The relay between members, with faults.
struct Nemesis {
    nodes: Mutex<HashMap<[u8; 16], Weak<Node>>>,
    /// Directed links that deliver nothing.
    cut: Mutex<HashSet<([u8; 16], [u8; 16])>>,
    drop_percent: u32,
    duplicate_percent: u32,
    max_delay_ms: u64,
    rng: Mutex<rand::rngs::StdRng>,
}

struct Endpoint {
    nemesis: Arc<Nemesis>,
    from: [u8; 16],
}

impl Transport for Endpoint {
    fn send(&self, to: &Member, message: Vec<u8>) {
        let n = &self.nemesis;
        if n.cut.lock().unwrap().contains(&(self.from, to.enclave_id)) {
            return;
        }
        let (drop, copies, delays) = {
            let mut rng = n.rng.lock().unwrap();
            let drop = rng.random_range(0..100) < n.drop_percent;
            let copies = if rng.random_range(0..100) < n.duplicate_percent { 2 } else { 1 };
            let delays: Vec<u64> =
                (0..copies).map(|_| rng.random_range(0..=n.max_delay_ms)).collect();
            (drop, copies, delays)
        };
        if drop {
            return;
        }
        let target = n.nodes.lock().unwrap().get(&to.enclave_id).cloned();
        let Some(target) = target else { return };
        for delay in delays.into_iter().take(copies) {
            let (target, message, nemesis, from, to) =
                (target.clone(), message.clone(), Arc::clone(n), self.from, to.enclave_id);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                // A link cut while the message was in flight loses it.
                if nemesis.cut.lock().unwrap().contains(&(from, to)) {
                    return;
                }
                if let Some(node) = target.upgrade() {
                    let _ = node.deliver(&message);
                }
            });
        }
    }
}

fn domain() -> MessageDomain {
    MessageDomain {
        domain: "app.example.com".into(),
        uri: "https://app.example.com".into(),
        chain_id: "devnet".into(),
        validity_seconds: 600,
        registry: Default::default(),
    }
}

struct Harness {
    nemesis: Arc<Nemesis>,
    kms_spki: Vec<u8>,
    ca_path: std::path::PathBuf,
    _dir: tempdir::Dir,
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Harness {
    fn new(seed: u64) -> Self {
        let mut rng = enclave_core::secret::seeded_rng(&OsRandom).unwrap();
        let kms = rsa::RsaPrivateKey::new(&mut rng, 3072).unwrap();
        let kms_spki = kms.to_public_key().to_public_key_der().unwrap().as_bytes().to_vec();
        let dir =
            std::env::temp_dir().join(format!("signer-cluster-{}-{seed}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            nemesis: Arc::new(Nemesis {
                nodes: Mutex::new(HashMap::new()),
                cut: Mutex::new(HashSet::new()),
                drop_percent: 10,
                duplicate_percent: 10,
                max_delay_ms: 15,
                rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)),
            }),
            kms_spki,
            ca_path: dir.join("sim-ca.pem"),
            _dir: tempdir::Dir(dir),
        }
    }

    /// A member of the image `image` (the sim measures the binary and config bytes).
    fn member(&self, image: &[u8]) -> Arc<Node> {
        let nsm = Arc::new(SimNsm::new(&self.ca_path, b"signer-enclave", image).unwrap());
        let anchor = nitro_attestation::sim::SimCa::from_pem(
            &std::fs::read_to_string(&self.ca_path).unwrap(),
        )
        .unwrap()
        .trust_anchor()
        .unwrap();
        let recipient = RecipientKey::generate(&OsRandom, 2048).unwrap();
        let config = EnclaveConfig::new(&self.kms_spki, domain()).unwrap();
        let enclave = Arc::new(
            Enclave::new(
                config,
                recipient,
                Arc::new(OsRandom),
                Arc::new(SystemClock),
                Arc::new(NsmAttester(nsm)),
                anchor,
            )
            .unwrap(),
        );
        let id = enclave.id().0;
        let endpoint = Arc::new(Endpoint { nemesis: Arc::clone(&self.nemesis), from: id });
        let node =
            Node::new(enclave, Arc::new(OsRandom), endpoint, format!("relay-{}", hex::encode(id)))
                .unwrap();
        self.nemesis.nodes.lock().unwrap().insert(id, Arc::downgrade(&node));
        node
    }

    /// The member cut off from every other (both directions): a crash, as the others see it.
    fn isolate(&self, node: &Node, others: &[&Arc<Node>]) {
        let mut cut = self.nemesis.cut.lock().unwrap();
        for o in others {
            cut.insert((node.enclave_id().0, o.enclave_id().0));
            cut.insert((o.enclave_id().0, node.enclave_id().0));
        }
    }
}

async fn leader_among(nodes: &[&Arc<Node>]) -> Arc<Node> {
    for _ in 0..200 {
        for n in nodes {
            let raft = n.raft().unwrap();
            let m = raft.metrics().borrow().clone();
            // A leader that has applied its cluster's genesis decides.
            if m.current_leader == Some(m.id)
                && n.enclave().replicated_cluster() == n.cluster_id()
                && raft.ensure_linearizable().await.is_ok()
            {
                return Arc::clone(n);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader elected");
}

fn terms(wallet: u8) -> AuthorizeGrant {
    AuthorizeGrant {
        wallet: Pubkey([wallet; 32]),
        bot_id: [1; 16],
        agent_pubkey: Pubkey([2; 32]),
        ttl_seconds: 600,
        policy: Policy {
            max_lamports_per_tx: 1,
            max_lamports_per_day: 1,
            max_fee_lamports: 5000,
            tokens: vec![],
            allowed_programs: vec![],
            max_notional_cents_per_tx: 0,
            max_notional_cents_per_day: 0,
            destinations: None,
            max_tx_per_minute: None,
        },
    }
}

/// A decision on `node` (the core is synchronous and waits for the commit: a blocking thread).
async fn decide<T: Send + 'static>(
    node: &Arc<Node>,
    f: impl FnOnce(&Enclave) -> Result<T, EnclaveError> + Send + 'static,
) -> Result<T, EnclaveError> {
    let enclave = node.enclave();
    tokio::task::spawn_blocking(move || f(&enclave)).await.unwrap()
}

async fn found(h: &Harness, nodes: &[&Arc<Node>]) {
    let cards: Vec<(Vec<u8>, String)> = nodes
        .iter()
        .map(|n| (n.card().unwrap(), format!("relay-{}", hex::encode(n.enclave_id().0))))
        .collect();
    let mut ids = Vec::new();
    for n in nodes {
        ids.push(n.found(&cards).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "founders agree on the cluster id");
    let _ = h;
}

async fn scenario(seed: u64) {
    let h = Harness::new(seed);
    let (a, b, c) = (h.member(b"image"), h.member(b"image"), h.member(b"image"));
    found(&h, &[&a, &b, &c]).await;
    let cluster = a.cluster_id().unwrap();
    assert_eq!(b.cluster_id(), Some(cluster));

    let leader = leader_among(&[&a, &b, &c]).await;
    let mut issued = 0usize;
    for w in 0..20u8 {
        let t = terms(w);
        let auth = decide(&leader, move |e| e.authorize_grant(&t)).await.unwrap();
        assert!(auth.message.contains(&format!("urn:signer:enclave:{cluster}")));
        issued += 1;
    }
    decide(&leader, |e| e.revoke(RevokeTarget::Wallet(Pubkey([3; 32])))).await.unwrap();

    // The leader dies (cut off from both others); the other two elect a new one and go on.
    let survivors: Vec<&Arc<Node>> =
        [&a, &b, &c].into_iter().filter(|n| !Arc::ptr_eq(n, &leader)).collect();
    h.isolate(&leader, &survivors);
    let next = leader_among(&survivors).await;
    for w in 20..30u8 {
        let t = terms(w);
        decide(&next, move |e| e.authorize_grant(&t)).await.unwrap();
        issued += 1;
    }
    decide(&next, |e| e.set_kill_switch(true)).await.unwrap();

    // The old leader, alone, decides nothing: neither as leader nor by forwarding.
    let alone = decide(&leader, |e| e.set_kill_switch(false)).await.unwrap_err();
    assert_eq!(alone.code(), enclave_core::ErrorCode::EnclaveUnavailable, "{alone}");

    // A newcomer (a restarted enclave is a new member) takes the dead member's place.
    let newcomer = h.member(b"image");
    let current: Vec<(Vec<u8>, String)> = survivors
        .iter()
        .map(|n| (n.card().unwrap(), format!("relay-{}", hex::encode(n.enclave_id().0))))
        .collect();
    newcomer.join(cluster, &current).await.unwrap();
    next.admit(
        &newcomer.card().unwrap(),
        format!("relay-{}", hex::encode(newcomer.enclave_id().0)),
        Some(leader.enclave_id()),
        None,
    )
    .await
    .unwrap();
    decide(&next, |e| e.revoke(RevokeTarget::Record([9; 16]))).await.unwrap();

    // Everyone of the majority holds the same decisions, the newcomer included.
    let mut settled = false;
    for _ in 0..100 {
        let statuses: Vec<_> = survivors
            .iter()
            .map(|n| n.enclave().status())
            .chain(std::iter::once(newcomer.enclave().status()))
            .collect();
        // Wallet 3's unused message died with its revocation.
        if statuses.iter().all(|s| s.nonces == issued - 1 && s.kill_switch && s.revocations == 2) {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let statuses: Vec<_> = survivors
        .iter()
        .map(|n| n.enclave().status())
        .chain(std::iter::once(newcomer.enclave().status()))
        .collect();
    assert!(
        settled,
        "the majority and the newcomer converge on every committed decision: {statuses:?}"
    );
    // The dead leader never learned the kill switch.
    assert!(!leader.enclave().status().kill_switch);
    for n in [&a, &b, &c, &newcomer] {
        let _ = n.raft().unwrap().shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decisions_survive_the_leaders_death_under_a_lossy_reordering_relay_seed_1() {
    scenario(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decisions_survive_the_leaders_death_under_a_lossy_reordering_relay_seed_2() {
    scenario(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_card_of_another_image_or_a_stale_card_is_refused_admission() {
    let h = Harness::new(3);
    let (a, b) = (h.member(b"image"), h.member(b"image"));
    let other = h.member(b"another image");
    let card = |n: &Arc<Node>| (n.card().unwrap(), "relay".to_string());
    // Genesis with a founder of an untrusted image is refused outright.
    let refused = a.found(&[card(&a), card(&b), card(&other)]).await.unwrap_err();
    assert!(refused.to_string().contains("trusted"), "{refused}");
    assert!(a.cluster_id().is_none());
    found(&h, &[&a, &b]).await;
    let leader = leader_among(&[&a, &b]).await;
    let refused = leader.admit(&card(&other).0, "relay".into(), None, None).await.unwrap_err();
    assert!(refused.to_string().contains("KMS must vouch for it"), "{refused}");
    // Nor with a made-up answer to a challenge it never received (the proof of an upgrade).
    let refused =
        leader.admit(&card(&other).0, "relay".into(), None, Some([7; 32])).await.unwrap_err();
    assert!(refused.to_string().contains("did not prove"), "{refused}");
    // A card whose bytes were altered (its channel key swapped) does not bind.
    let newcomer = h.member(b"image");
    let mut forged = newcomer.card().unwrap();
    forged[20] ^= 1;
    assert!(leader.admit(&forged, "relay".into(), None, None).await.is_err());
    for n in [&a, &b] {
        let _ = n.raft().unwrap().shutdown().await;
    }
}
