#!/usr/bin/env python3
"""Where a request's CPU goes, per stage, from a `perf record` of a benchmark run.

Reads one `perf report --stdio --no-children --sort dso,sym` per daemon (leaf-symbol samples, so
a function's time counts in the stage of the function that was running) and sums each daemon's
samples into stages by symbol name. Given the daemons' CPU µs per request from the same run
(`--cpu-us`), a stage's share becomes µs per request.

    perf record -F 1999 -p ENCLAVE_PID -o enclave.data   (and the same for the parent)
    perf report -i enclave.data --stdio --no-children --sort dso,sym > enclave.txt
    scripts/perf_stages.py --enclave enclave.txt --parent parent.txt [--cpu-us E P] [--json]

`scripts/profile-stages.sh` does all of it around a benchmark run. Stages are matched in the
order of `STAGES` (first match wins).
"""

import argparse
import json
import re
import sys

# Samples of the daemons' start (the enclave's RSA-2048 key generation) are not per-request work:
# they are left out of the shares and reported apart.
STARTUP = "startup (RSA key generation, before the load)"

# (stage, pattern on "dso symbol"). Kernel first: a kernel symbol is the kernel's whatever it
# serves (socket copies, wake-ups, scheduling).
STAGES = [
    ("kernel (sockets, wake-ups, scheduling)", r"\[kernel|\[k\]|kallsyms"),
    (STARTUP, r"crypto_bigint|\brsa::|crypto_primes"),
    ("ed25519 signature", r"curve25519|ed25519|sha512|Sha512|scalar_mul|EdwardsPoint|FieldElement"),
    ("allocator (malloc/free/realloc)", r"\bmalloc|\bfree\b|_int_free|_int_malloc|realloc|cfree|tcache|arena|malloc_consolidate|unlink_chunk|__libc_calloc"),
    ("memcpy/memmove/memset", r"memcpy|memmove|memset|memcmp|__memc|__mems|bcmp"),
    ("receipts (encode, chain hash, ring)", r"signer_receipts|enclave::receipts|ReceiptLog"),
    ("SHA-256 (record digest, request digest)", r"sha2::sha256|sha256|Sha256|compress256|digest::"),
    ("base64", r"base64"),
    ("base58 and UUID text", r"base58|bs58|five8|uuid|Pubkey as core::fmt::Display"),
    ("JSON (serde_json) and UTF-8 checks", r"serde_json|from_utf8|Utf8Chunks"),
    ("CBOR frames (ciborium)", r"ciborium|serde_cbor|signer_protocol"),
    ("HTTP (hyper, axum, tower, buffers)", r"hyper|axum|tower|httparse|http::|h2::|matchit|http_body|\bbytes::"),
    ("transaction parse", r"enclave_core::transaction|solana|parse_for_agent|CompactU16|short_vec"),
    ("policy and limits", r"enclave_core::policy|evaluate_transaction|Ledger|DailyLimits"),
    ("stores (request ids, nonces, caches; their hashing)", r"enclave_core::store|TtlMap|state::|DecisionState|hashbrown|RawTable|DefaultHasher|hash_one|siphash"),
    ("records (parse, digest, cache)", r"enclave_core::records|SealedGrant|GrantHeader|SealedAgent|signer_types::records"),
    ("constant-time comparisons", r"subtle::"),
    ("clock reads", r"clock_gettime|Timespec|Instant::now|SystemTime"),
    ("enclave decision (sign path, commit)", r"enclave_core::enclave|enclave_core::"),
    ("tokio runtime and tasks", r"tokio|mio|parking_lot|futures|std::sync|std::thread|__pthread|pthread_|futex|epoll|sched_yield|PollFn"),
    ("metrics and tracing", r"prometheus|tracing"),
    ("parent glue", r"signer_parent|signer_api"),
    ("enclave daemon glue", r"signer_enclave::"),
    ("libc and libm (other)", r"libc\.so|libc-|ld-linux|libm\.so"),
]

LINE = re.compile(r"^\s*([0-9.]+)%\s+(\S+)\s+\[([.k])\]\s+(.*)$")


def parse(lines):
    """(dso, kernel?, symbol, percent) for every sample line."""
    for line in lines:
        m = LINE.match(line)
        if m:
            pct, dso, kind, sym = m.groups()
            yield dso, kind == "k", sym.strip(), float(pct)


def stage_of(dso, kernel, sym):
    if kernel:
        return STAGES[0][0]
    text = f"{dso} {sym}"
    for name, pattern in STAGES[1:]:
        if re.search(pattern, text):
            return name
    return "other"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for proc in ("enclave", "parent"):
        ap.add_argument(f"--{proc}", required=True, metavar="REPORT",
                        help=f"the {proc}'s perf report --stdio --no-children --sort dso,sym")
    ap.add_argument("--cpu-us", nargs=2, type=float, metavar=("ENCLAVE", "PARENT"),
                    help="CPU µs per request of the enclave and the parent (from the bench's "
                         "JSON): stages are then given in µs per request")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    totals = {"enclave": 0.0, "parent": 0.0}
    startup = {"enclave": 0.0, "parent": 0.0}
    stages = {}
    for proc in ("enclave", "parent"):
        with open(getattr(args, proc), encoding="utf-8", errors="replace") as f:
            for dso, kernel, sym, pct in parse(f):
                key = stage_of(dso, kernel, sym)
                if key == STARTUP:
                    startup[proc] += pct
                    continue
                totals[proc] += pct
                stages.setdefault(key, {"enclave": 0.0, "parent": 0.0})[proc] += pct
    cpu = dict(zip(("enclave", "parent"), args.cpu_us)) if args.cpu_us else None
    out = []
    for name, by in sorted(stages.items(), key=lambda kv: -(kv[1]["enclave"] + kv[1]["parent"])):
        row = {"stage": name}
        for proc in ("enclave", "parent"):
            share = by[proc] / totals[proc] if totals[proc] else 0.0
            row[f"{proc}_share"] = round(share, 4)
            if cpu:
                row[f"{proc}_us"] = round(share * cpu[proc], 2)
        out.append(row)
    if args.json:
        print(json.dumps({"stages": out, "samples_pct": totals, "startup_pct": startup}))
        return 0
    unit = "µs/req" if cpu else "share"
    print(f"{'stage':<52} {'enclave ' + unit:>16} {'parent ' + unit:>16}")
    for row in out:
        if cpu:
            e, p = f"{row['enclave_us']:.2f}", f"{row['parent_us']:.2f}"
        else:
            e, p = f"{row['enclave_share']:.1%}", f"{row['parent_share']:.1%}"
        print(f"{row['stage']:<52} {e:>16} {p:>16}")
    print(f"(left out: {STARTUP}: {startup['enclave']:.1f} % of the enclave's samples, "
          f"{startup['parent']:.1f} % of the parent's)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
