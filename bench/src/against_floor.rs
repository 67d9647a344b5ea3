//! The signing path against the machine's floor, measured back to back on one stack.
//!
//! The floor is the same trip through both daemons without signing (`GET /v1/enclave`: HTTP,
//! authentication, framing, CBOR, one enclave operation): what this machine's sockets and
//! wake-ups cost before any of our signing work. What a signature costs *beyond* it, in units of
//! the raw ed25519 signature measured in the same run, is a figure that holds on any machine
//! (docs/performance.md, "Against the floor").
//!
//! After the closed-loop signing run, on the same stack: the floor in the same closed loop, then
//! the sustainable maximum signing rate, then an open loop at 50 % of it signing and then at the
//! floor, each for `--seconds`. JSON (merged into the closed loop's summary):
//!
//! - `sign_cpu_us_per_request`, `floor_cpu_us_per_request`: both daemons' CPU µs per request,
//!   saturated (the closed loop);
//! - `beyond_floor_us` = sign − floor, `beyond_floor_x_raw` = that ÷ `raw_sign_us`;
//! - `half_max`: the same four at 50 % of the maximum rate, and that rate's latency pair
//!   `p99_ms` (signing) and `floor_p99_ms` (coordinated omission corrected);
//! - `targets`: the targets and whether this run met each (`beyond_floor_x_raw` ≤ 1.3 saturated
//!   and at 50 %, `half_max.p99_ms` ≤ 1.25 × `half_max.floor_p99_ms`).

use serde_json::{Value, json};

use super::{
    Cli, Prepared, Prepped, Run, closed, measure_open, per_request_us, print_run, search_max_rate,
};

/// Targets of docs/performance.md ("Against the floor").
const MAX_BEYOND_FLOOR_X_RAW: f64 = 1.3;
const MAX_P99_TO_FLOOR: f64 = 1.25;

/// The four runs besides the closed-loop signing run, and the maximum rate found.
pub(crate) struct AgainstFloor {
    floor: Run,
    max_rate: f64,
    half_sign: Run,
    half_floor: Run,
}

/// Runs `run` on `p`'s stack with floor requests (`GET /v1/enclave`) instead of its signing
/// bodies, which are put back afterwards.
fn on_floor<T>(p: &mut Prepped, run: impl FnOnce(&Prepped) -> T) -> T {
    let sign_bodies =
        std::mem::replace(&mut p.bodies, std::sync::Arc::new(vec![Prepared::Identity]));
    let out = run(p);
    p.bodies = sign_bodies;
    out
}

/// Measures the floor and the half-maximum pair on `p`'s stack, after `sign` (its closed loop).
pub(crate) fn measure(
    cli: &Cli,
    p: &mut Prepped,
    sign: &Run,
    raw: f64,
) -> Result<AgainstFloor, String> {
    eprintln!("the floor (GET /v1/enclave) in the same closed loop…");
    let floor = on_floor(p, |p| closed(cli, p, sign.concurrency))?;
    print!("floor:  ");
    print_run(&floor, raw);
    let max_rate = search_max_rate(cli, p, sign.throughput)?;
    let half = (max_rate / 2.0).round().max(1.0);
    eprintln!("open loop at 50 % of the maximum ({half:.0} req/s): signing, then the floor…");
    let seconds = cli.seconds as f64;
    let half_sign = measure_open(cli, p, half, seconds)?;
    print!("sign at 50 % of max:  ");
    print_run(&half_sign, raw);
    let half_floor = on_floor(p, |p| measure_open(cli, p, half, seconds))?;
    print!("floor at 50 % of max: ");
    print_run(&half_floor, raw);
    Ok(AgainstFloor { floor, max_rate, half_sign, half_floor })
}

fn cpu_us(run: &Run) -> f64 {
    let total = per_request_us(run.enclave_cpu, run.requests)
        + per_request_us(run.parent_cpu, run.requests);
    (total * 10.0).round() / 10.0
}

/// Sign and floor CPU per request, beyond = their difference, and it in raw signatures.
fn pair(sign: &Run, floor: &Run, raw_us: f64) -> (f64, f64, f64, f64) {
    let (s, f) = (cpu_us(sign), cpu_us(floor));
    let beyond = ((s - f) * 10.0).round() / 10.0;
    (s, f, beyond, (beyond / raw_us.max(1e-9) * 100.0).round() / 100.0)
}

impl AgainstFloor {
    /// The keys of the module docs, for the closed loop's summary.
    pub(crate) fn json(&self, sign: &Run, raw: f64) -> Value {
        let raw_us = 1e6 / raw.max(1e-9);
        let (s, f, beyond, x) = pair(sign, &self.floor, raw_us);
        let (hs, hf, hbeyond, hx) = pair(&self.half_sign, &self.half_floor, raw_us);
        let p99 = self.half_sign.p99_ms;
        let floor_p99 = self.half_floor.p99_ms;
        let p99_to_floor = (p99 / floor_p99.max(1e-9) * 100.0).round() / 100.0;
        json!({
            "sign_cpu_us_per_request": s,
            "floor_cpu_us_per_request": f,
            "beyond_floor_us": beyond,
            "beyond_floor_x_raw": x,
            "floor_throughput_per_s": (self.floor.throughput * 10.0).round() / 10.0,
            "floor_errors": self.floor.errors.values().sum::<u64>(),
            "max_rate": self.max_rate,
            "half_max": {
                "rate": (self.max_rate / 2.0).round(),
                "sign_cpu_us_per_request": hs,
                "floor_cpu_us_per_request": hf,
                "beyond_floor_us": hbeyond,
                "beyond_floor_x_raw": hx,
                "p99_ms": p99,
                "floor_p99_ms": floor_p99,
                "p99_to_floor": p99_to_floor,
                "p50_ms": self.half_sign.p50_ms,
                "floor_p50_ms": self.half_floor.p50_ms,
                "errors": self.half_sign.errors.values().sum::<u64>()
                    + self.half_floor.errors.values().sum::<u64>(),
            },
            "targets": {
                "beyond_floor_x_raw_max": MAX_BEYOND_FLOOR_X_RAW,
                "p99_to_floor_max": MAX_P99_TO_FLOOR,
                "saturated_met": x <= MAX_BEYOND_FLOOR_X_RAW,
                "half_max_met": hx <= MAX_BEYOND_FLOOR_X_RAW,
                "p99_met": p99_to_floor <= MAX_P99_TO_FLOOR,
            },
        })
    }

    /// The comparison in words, after the runs.
    pub(crate) fn print(&self, sign: &Run, raw: f64) {
        let raw_us = 1e6 / raw.max(1e-9);
        let (s, f, beyond, x) = pair(sign, &self.floor, raw_us);
        let (hs, hf, hbeyond, hx) = pair(&self.half_sign, &self.half_floor, raw_us);
        println!("against the floor (same stack, back to back; raw signature {raw_us:.1} µs):");
        println!(
            "    saturated:        sign {s:.1} µs − floor {f:.1} µs = {beyond:.1} µs beyond the floor = {x:.2}× raw (target ≤ {MAX_BEYOND_FLOOR_X_RAW})"
        );
        println!(
            "    50 % of max ({:.0} req/s): sign {hs:.1} µs − floor {hf:.1} µs = {hbeyond:.1} µs = {hx:.2}× raw; p99 {:.3} ms against the floor's {:.3} ms = {:.2}× (target ≤ {MAX_P99_TO_FLOOR})",
            (self.max_rate / 2.0).round(),
            self.half_sign.p99_ms,
            self.half_floor.p99_ms,
            self.half_sign.p99_ms / self.half_floor.p99_ms.max(1e-9)
        );
    }
}
