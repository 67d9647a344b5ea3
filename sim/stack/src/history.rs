//! A history of what clients asked and what they were told, and a checker of the cluster's
//! promises over it (Jepsen-style: the checker sees only the clients' view).
//!
//! - **One signature per request id**: every answer that signed a request id carries the same
//!   signature (the same transaction).
//! - **Limits hold**: per grant and UTC day, the lamports (plus the fee the agent pays) of the
//!   distinct request ids that were signed never exceed the grant's daily limit.
//! - **Acknowledged revocations and kill switches are never undone**: no request invoked after
//!   a revocation of its grant was acknowledged is signed; no request invoked after the kill
//!   switch was acknowledged engaged, and answered before its release was asked, is signed.
//! - **A minority never signs**: no request sent to an isolated member (and not forwarded) is
//!   signed while it is isolated.
//!
//! Requests whose outcome is unknown (a timeout, a dropped connection) may or may not have
//! been signed: the checker counts them as signed where that is the pessimistic reading for a
//! limit only when a later answer for the same request id says so.

use std::collections::{BTreeMap, HashMap};

/// Milliseconds since the history started.
pub type Millis = u64;

/// What a client asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Sign {
        request_id: String,
        grant: String,
        /// What this transaction charges the daily limit (transfer plus the agent's fee).
        charge: u64,
        /// UTC day (unix seconds / 86 400) at invocation.
        day: u64,
        /// Sent to this member only (no load balancer, not forwarded): the minority check.
        direct_to: Option<usize>,
    },
    Revoke {
        grant: String,
    },
    KillSwitch {
        engaged: bool,
    },
    /// The nemesis isolated a member (`true`) or healed every partition.
    Isolate {
        member: usize,
        isolated: bool,
    },
}

/// What a client was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Signed {
        signature: String,
    },
    /// A definite refusal with its code (nothing signed).
    Refused {
        code: String,
    },
    Ok,
    /// No definite answer.
    Unknown {
        error: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub op: Op,
    pub invoked: Millis,
    pub completed: Millis,
    pub outcome: Outcome,
}

/// A broken promise, with the events that show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    TwoSignatures { request_id: String, first: String, second: String },
    OverLimit { grant: String, day: u64, charged: u64, limit: u64 },
    SignedAfterRevocation { request_id: String, grant: String },
    SignedUnderKillSwitch { request_id: String },
    MinoritySigned { request_id: String, member: usize },
}

/// Checks `history` against the promises in the module docs; `limits` is each grant's daily
/// limit in lamports.
pub fn check(history: &[Event], limits: &HashMap<String, u64>) -> Vec<Violation> {
    let mut violations = Vec::new();
    // 1. One signature per request id.
    let mut signatures: HashMap<&str, &str> = HashMap::new();
    for e in history {
        if let (Op::Sign { request_id, .. }, Outcome::Signed { signature }) = (&e.op, &e.outcome) {
            match signatures.get(request_id.as_str()) {
                Some(first) if first != signature => violations.push(Violation::TwoSignatures {
                    request_id: request_id.clone(),
                    first: (*first).to_string(),
                    second: signature.clone(),
                }),
                Some(_) => {}
                None => {
                    signatures.insert(request_id, signature);
                }
            }
        }
    }
    // 2. Limits per grant and day, over distinct signed request ids.
    let mut charged: BTreeMap<(String, u64), u64> = BTreeMap::new();
    let mut counted: HashMap<&str, ()> = HashMap::new();
    for e in history {
        if let (Op::Sign { request_id, grant, charge, day, .. }, Outcome::Signed { .. }) =
            (&e.op, &e.outcome)
            && counted.insert(request_id, ()).is_none()
        {
            let total = charged.entry((grant.clone(), *day)).or_insert(0);
            *total = total.saturating_add(*charge);
        }
    }
    for ((grant, day), total) in charged {
        let limit = limits.get(&grant).copied().unwrap_or(0);
        if total > limit {
            violations.push(Violation::OverLimit { grant, day, charged: total, limit });
        }
    }
    // 3. Revocations and the kill switch, once acknowledged.
    for r in history {
        if let (Op::Revoke { grant: revoked }, Outcome::Ok) = (&r.op, &r.outcome) {
            for e in history {
                if let (Op::Sign { request_id, grant, .. }, Outcome::Signed { .. }) =
                    (&e.op, &e.outcome)
                    && grant == revoked
                    && e.invoked > r.completed
                {
                    violations.push(Violation::SignedAfterRevocation {
                        request_id: request_id.clone(),
                        grant: grant.clone(),
                    });
                }
            }
        }
    }
    for k in history {
        if let (Op::KillSwitch { engaged: true }, Outcome::Ok) = (&k.op, &k.outcome) {
            let released = history
                .iter()
                .filter(|r| {
                    matches!(r.op, Op::KillSwitch { engaged: false }) && r.invoked > k.completed
                })
                .map(|r| r.invoked)
                .min()
                .unwrap_or(Millis::MAX);
            for e in history {
                if let (Op::Sign { request_id, .. }, Outcome::Signed { .. }) = (&e.op, &e.outcome)
                    && e.invoked > k.completed
                    && e.completed < released
                {
                    violations
                        .push(Violation::SignedUnderKillSwitch { request_id: request_id.clone() });
                }
            }
        }
    }
    // 4. A minority never signs: requests to an isolated member, within its isolation.
    let mut isolated_since: HashMap<usize, Millis> = HashMap::new();
    let mut windows: Vec<(usize, Millis, Millis)> = Vec::new();
    for e in history {
        if let Op::Isolate { member, isolated } = e.op {
            if isolated {
                isolated_since.insert(member, e.completed);
            } else if let Some(start) = isolated_since.remove(&member) {
                windows.push((member, start, e.invoked));
            }
        }
    }
    windows.extend(isolated_since.into_iter().map(|(m, s)| (m, s, Millis::MAX)));
    for e in history {
        if let (Op::Sign { request_id, direct_to: Some(member), .. }, Outcome::Signed { .. }) =
            (&e.op, &e.outcome)
            && windows
                .iter()
                .any(|(m, start, end)| m == member && e.invoked >= *start && e.completed <= *end)
        {
            violations.push(Violation::MinoritySigned {
                request_id: request_id.clone(),
                member: *member,
            });
        }
    }
    violations
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn sign(id: &str, grant: &str, charge: u64, t: (Millis, Millis), outcome: Outcome) -> Event {
        Event {
            op: Op::Sign {
                request_id: id.into(),
                grant: grant.into(),
                charge,
                day: 1,
                direct_to: None,
            },
            invoked: t.0,
            completed: t.1,
            outcome,
        }
    }

    fn signed(s: &str) -> Outcome {
        Outcome::Signed { signature: s.into() }
    }

    fn limits() -> HashMap<String, u64> {
        HashMap::from([("g".to_string(), 100)])
    }

    #[test]
    fn a_clean_history_passes() {
        let h = vec![
            sign("a", "g", 50, (0, 1), signed("s1")),
            sign("a", "g", 50, (2, 3), signed("s1")),
            sign("b", "g", 50, (4, 5), signed("s2")),
            sign("c", "g", 50, (6, 7), Outcome::Refused { code: "policy_denied".into() }),
        ];
        assert_eq!(check(&h, &limits()), vec![]);
    }

    #[test]
    fn each_broken_promise_is_reported() {
        let h = vec![
            sign("a", "g", 60, (0, 1), signed("s1")),
            sign("a", "g", 60, (2, 3), signed("other")),
            sign("b", "g", 60, (4, 5), signed("s2")),
            Event {
                op: Op::Revoke { grant: "g".into() },
                invoked: 6,
                completed: 7,
                outcome: Outcome::Ok,
            },
            sign("c", "g", 0, (8, 9), signed("s3")),
            Event {
                op: Op::KillSwitch { engaged: true },
                invoked: 10,
                completed: 11,
                outcome: Outcome::Ok,
            },
            sign("d", "h", 0, (12, 13), signed("s4")),
            Event {
                op: Op::Isolate { member: 2, isolated: true },
                invoked: 14,
                completed: 14,
                outcome: Outcome::Ok,
            },
            Event {
                op: Op::Sign {
                    request_id: "e".into(),
                    grant: "h".into(),
                    charge: 0,
                    day: 1,
                    direct_to: Some(2),
                },
                invoked: 15,
                completed: 16,
                outcome: signed("s5"),
            },
        ];
        let v = check(&h, &limits());
        assert!(v.iter().any(|v| matches!(v, Violation::TwoSignatures { .. })), "{v:?}");
        assert!(v.iter().any(|v| matches!(v, Violation::OverLimit { charged: 120, .. })), "{v:?}");
        assert!(v.iter().any(|v| matches!(v, Violation::SignedAfterRevocation { .. })), "{v:?}");
        assert!(v.iter().any(|v| matches!(v, Violation::SignedUnderKillSwitch { .. })), "{v:?}");
        assert!(
            v.iter().any(|v| matches!(v, Violation::MinoritySigned { member: 2, .. })),
            "{v:?}"
        );
    }

    #[test]
    fn a_request_signed_before_the_revocation_was_acknowledged_is_not_a_violation() {
        let h = vec![
            sign("a", "g", 10, (0, 9), signed("s1")),
            Event {
                op: Op::Revoke { grant: "g".into() },
                invoked: 5,
                completed: 7,
                outcome: Outcome::Ok,
            },
        ];
        assert_eq!(check(&h, &limits()), vec![]);
    }
}
