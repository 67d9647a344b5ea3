//! Open-loop load: requests fall due at a fixed rate, and each one's latency is measured from the
//! moment it fell due, so time a request spends waiting behind a slow one counts (coordinated
//! omission corrected, as wrk2 does). A closed loop, by contrast, stops sending while the system
//! is slow and under-reports exactly the latency users see at a given rate.
//!
//! `connections` blocking keep-alive HTTP/1.1 connections (one thread each) share one schedule:
//! request `k` is due at `start + k / rate`. A free connection takes the next `k`, sleeps until it
//! is due (unless it is late already), sends it, and records `now − due`. When every connection is
//! busy, due requests wait, and that wait is latency. Threads ask the kernel for 1 µs timer slack
//! so a sleep ends within microseconds of the due time, not the default 50 µs.

use std::collections::BTreeMap;
use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{Load, Prepared, RUN_NUMBER, request_id};

/// Longest response accepted (a signed transaction in JSON is under 2 KiB).
const MAX_RESPONSE: usize = 64 * 1024;

/// One blocking keep-alive connection speaking just enough HTTP/1.1 for `POST /v1/sign` and
/// `GET /v1/enclave`.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl Connection {
    fn open(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Self { stream, buffer: Vec::with_capacity(4096) })
    }

    /// Sends one request (head and body in one write) and reads the response: (status, body).
    fn exchange(&mut self, request: &[u8]) -> io::Result<(u16, &[u8])> {
        self.stream.write_all(request)?;
        self.buffer.clear();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if self.buffer.len() > MAX_RESPONSE {
                return Err(invalid("response head too long"));
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buffer.extend_from_slice(chunk.get(..n).unwrap_or_default());
        };
        let head = std::str::from_utf8(self.buffer.get(..head_end).unwrap_or_default())
            .map_err(|_| invalid("response head is not UTF-8"))?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| invalid("no status code"))?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .ok_or_else(|| invalid("no content-length"))?;
        let total = head_end + length;
        if total > MAX_RESPONSE {
            return Err(invalid("response too long"));
        }
        while self.buffer.len() < total {
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buffer.extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
        Ok((status, self.buffer.get(head_end..total).unwrap_or_default()))
    }
}

/// The request bytes for body `prepared` with request id number `n` from connection `id`.
fn request_bytes(out: &mut Vec<u8>, authorization: &str, prepared: &Prepared, run: u64, k: u64) {
    out.clear();
    let Prepared::Sign { prefix, suffix, route } = prepared else {
        let head = format!(
            "GET /v1/enclave HTTP/1.1\r\nhost: bench\r\nauthorization: {authorization}\r\n\r\n"
        );
        out.extend_from_slice(head.as_bytes());
        return;
    };
    let body = format!("{prefix}{}{suffix}", request_id(run, 0, k));
    let route = route.as_ref().map(|r| format!("x-signer-route: {r}\r\n")).unwrap_or_default();
    let head = format!(
        "POST /v1/sign HTTP/1.1\r\nhost: bench\r\nauthorization: {authorization}\r\ncontent-type: application/json\r\n{route}content-length: {}\r\n\r\n",
        body.len()
    );
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body.as_bytes());
}

/// Drives `rate` requests per second for `duration` over `connections` connections.
pub fn run(
    addr: SocketAddr,
    token: &str,
    bodies: &Arc<Vec<Prepared>>,
    rate: f64,
    connections: usize,
    duration: Duration,
) -> Result<Load, String> {
    if !(rate.is_finite() && rate > 0.0) {
        return Err(format!("rate {rate}: must be a positive number of requests per second"));
    }
    let total = (rate * duration.as_secs_f64()).ceil() as u64;
    let run = RUN_NUMBER.fetch_add(1, Ordering::Relaxed);
    let next = Arc::new(AtomicU64::new(0));
    let authorization = Arc::new(format!("Bearer {token}"));
    let interval_ns = 1e9 / rate;
    // Every connection is open and has answered once before the schedule starts, so connection
    // setup is not measured as latency of the first requests.
    let connections = connections.max(1);
    let ready = Arc::new(std::sync::Barrier::new(connections + 1));
    let start_at = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)
        .map_err(|e| e.to_string())?;
    let handles: Vec<_> = (0..connections)
        .map(|_| {
            let next = Arc::clone(&next);
            let bodies = Arc::clone(bodies);
            let authorization = Arc::clone(&authorization);
            let histogram = histogram.clone();
            let (ready, start_at) = (Arc::clone(&ready), Arc::clone(&start_at));
            std::thread::spawn(move || {
                let connection = Connection::open(addr).and_then(|mut c| {
                    c.exchange(b"GET /healthz HTTP/1.1\r\nhost: bench\r\n\r\n")?;
                    Ok(c)
                });
                ready.wait();
                ready.wait();
                let start = start_at.get().copied().unwrap_or_else(Instant::now);
                connection_thread(
                    histogram,
                    connection.ok(),
                    addr,
                    run,
                    &next,
                    total,
                    start,
                    interval_ns,
                    &bodies,
                    &authorization,
                )
            })
        })
        .collect();
    ready.wait();
    let start = Instant::now() + Duration::from_millis(5);
    let _ = start_at.set(start);
    ready.wait();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut sent = 0;
    let mut last_done = start;
    for handle in handles {
        let result = handle.join().map_err(|_| "a load thread panicked".to_string())?;
        histogram.add(&result.histogram).map_err(|e| e.to_string())?;
        for (code, n) in result.errors {
            *errors.entry(code).or_default() += n;
        }
        sent += result.sent;
        last_done = last_done.max(result.last_done);
    }
    let elapsed = last_done.saturating_duration_since(start).as_secs_f64();
    Ok(Load { sent, elapsed, histogram, errors })
}

struct ThreadResult {
    histogram: hdrhistogram::Histogram<u64>,
    errors: BTreeMap<String, u64>,
    sent: u64,
    last_done: Instant,
}

#[allow(clippy::too_many_arguments)]
fn connection_thread(
    histogram: hdrhistogram::Histogram<u64>,
    connection: Option<Connection>,
    addr: SocketAddr,
    run: u64,
    next: &AtomicU64,
    total: u64,
    start: Instant,
    interval_ns: f64,
    bodies: &[Prepared],
    authorization: &str,
) -> ThreadResult {
    // Wake up on time: the default 50 µs slack would add itself to every measured latency.
    let _ = nix::sys::prctl::set_timerslack(1_000);
    let mut result = ThreadResult { histogram, errors: BTreeMap::new(), sent: 0, last_done: start };
    let mut connection = connection;
    if connection.is_none() {
        *result.errors.entry("connect".into()).or_default() += 1;
    }
    let mut request = Vec::with_capacity(4096);
    loop {
        let k = next.fetch_add(1, Ordering::Relaxed);
        if k >= total {
            break;
        }
        let Some(prepared) = bodies.get((k as usize).wrapping_mul(7919) % bodies.len().max(1))
        else {
            break;
        };
        request_bytes(&mut request, authorization, prepared, run, k);
        let due = start + Duration::from_nanos((k as f64 * interval_ns) as u64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if connection.is_none() {
            connection = Connection::open(addr).ok();
        }
        let outcome = match connection.as_mut() {
            Some(c) => c.exchange(&request).map(|(status, body)| {
                (status, (status != 200).then(|| problem_code(status, body)))
            }),
            None => Err(io::ErrorKind::NotConnected.into()),
        };
        let done = Instant::now();
        let _ = result.histogram.record(done.saturating_duration_since(due).as_micros() as u64);
        result.sent += 1;
        result.last_done = done;
        match outcome {
            Ok((_, None)) => {}
            Ok((_, Some(code))) => *result.errors.entry(code).or_default() += 1,
            Err(_) => {
                *result.errors.entry("transport".into()).or_default() += 1;
                connection = None;
            }
        }
    }
    result
}

fn problem_code(status: u16, body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("code").and_then(serde_json::Value::as_str).map(str::to_string))
        .unwrap_or_else(|| format!("http_{status}"))
}

/// The machine's own tail: one byte sent to a sleeping thread over a Unix socket pair and echoed
/// back, on the open loop's schedule (`rate` per second, latency from the due time), with no
/// daemon involved. No request through the stack can have a shorter tail than this.
pub fn socket_probe(rate: f64, duration: Duration) -> Result<hdrhistogram::Histogram<u64>, String> {
    let _ = nix::sys::prctl::set_timerslack(1_000);
    let mut echo = Echo::start()?;
    let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)
        .map_err(|e| e.to_string())?;
    let total = (rate * duration.as_secs_f64()).ceil() as u64;
    let start = Instant::now();
    for k in 0..total {
        let due = start + Duration::from_nanos((k as f64 * 1e9 / rate) as u64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        echo.round_trip()?;
        let _ = histogram.record(Instant::now().saturating_duration_since(due).as_micros() as u64);
    }
    Ok(histogram)
}

/// One end of a Unix socket pair whose other end, on its own thread, echoes every byte back
/// (the thread ends when this is dropped): the two socket probes' bare round trip.
pub struct Echo {
    ping: std::os::unix::net::UnixStream,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Echo {
    pub fn start() -> Result<Self, String> {
        let (ping, mut pong) = std::os::unix::net::UnixStream::pair().map_err(|e| e.to_string())?;
        let thread = std::thread::spawn(move || {
            let mut byte = [0u8; 1];
            while pong.read_exact(&mut byte).is_ok() && pong.write_all(&byte).is_ok() {}
        });
        Ok(Self { ping, thread: Some(thread) })
    }

    /// One byte there and back.
    pub fn round_trip(&mut self) -> Result<(), String> {
        let mut byte = [1u8];
        self.ping
            .write_all(&byte)
            .and_then(|()| self.ping.read_exact(&mut byte))
            .map_err(|e| e.to_string())
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.ping.shutdown(std::net::Shutdown::Both);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
