//! Slow and silent HTTP clients cannot hold the parent's connections (docs/deploy.md §5, "HTTP
//! timeouts"): a connection that sends nothing, or trickles its headers, is closed after
//! `header_read_timeout_ms`; a body that has not arrived by `request_read_timeout_ms` is answered
//! `408 request_timeout`; and a flood of such connections does not keep normal requests from
//! being served. The real binaries, with the timeouts shortened so the test takes seconds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use signer_e2e::*;

mod extra_parent;
use extra_parent::ExtraParent;

const HEADER_TIMEOUT: Duration = Duration::from_millis(1500);
const REQUEST_TIMEOUT: Duration = Duration::from_millis(3000);
/// Slack for a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(1500);

fn settings() -> String {
    format!(
        "header_read_timeout_ms = {}\nrequest_read_timeout_ms = {}\n",
        HEADER_TIMEOUT.as_millis(),
        REQUEST_TIMEOUT.as_millis()
    )
}

/// Reads until the server closes the connection; what it sent. Fails if it is still open after
/// `limit`.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the connection is still open after {limit:?}")
            }
            Err(_) => return out, // reset by the server: closed
        }
    }
}

fn assert_cut_off_at(elapsed: Duration, timeout: Duration, what: &str) {
    assert!(
        elapsed + Duration::from_millis(100) >= timeout && elapsed <= timeout + SLACK,
        "{what} was cut off after {elapsed:?}; the timeout is {timeout:?}"
    );
}

/// A connection that sends one header line every `every` and never finishes its headers.
fn trickle(addr: SocketAddr, every: Duration, lines: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    let mut writer = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        for i in 0..lines {
            std::thread::sleep(every);
            if writer.write_all(format!("X-Slow-{i}: a\r\n").as_bytes()).is_err() {
                return;
            }
        }
    });
    stream
}

#[test]
fn slow_and_silent_clients_are_cut_off_while_normal_requests_are_served() {
    let stack = start("slow-clients").unwrap();
    let parent = ExtraParent::start(&stack, "slow-parent", &settings());
    let addr = parent.addr;

    // A connection that sends nothing.
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).unwrap();
    let sent = read_until_closed(&mut silent, Duration::from_secs(20));
    assert!(sent.is_empty(), "{}", String::from_utf8_lossy(&sent));
    let silent_after = started.elapsed();
    assert_cut_off_at(silent_after, HEADER_TIMEOUT, "a silent connection");

    // Headers trickled one line a second (each line resets no timer): cut off mid-headers.
    let started = Instant::now();
    let mut slow = trickle(addr, Duration::from_secs(1), 30);
    read_until_closed(&mut slow, Duration::from_secs(20));
    let trickle_after = started.elapsed();
    assert_cut_off_at(trickle_after, HEADER_TIMEOUT, "a connection trickling its headers");

    // Complete headers, then a body trickled a byte every 250 ms: 408 at the request timeout.
    let started = Instant::now();
    let mut body = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /v1/sign HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        stack.api_token
    );
    body.write_all(head.as_bytes()).unwrap();
    let mut writer = body.try_clone().unwrap();
    std::thread::spawn(move || {
        for _ in 0..200 {
            std::thread::sleep(Duration::from_millis(250));
            if writer.write_all(b" ").is_err() {
                return;
            }
        }
    });
    let answer = String::from_utf8_lossy(&read_until_closed(&mut body, Duration::from_secs(20)))
        .into_owned();
    let body_after = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    assert_cut_off_at(body_after, REQUEST_TIMEOUT, "a connection trickling its body");

    // A flood: 100 silent connections and 100 trickling one header line a second, while a
    // backend keeps signing and checking health through the same parent.
    let wallet = Wallet::create(&parent.api, policy(1_000_000_000, 100_000_000_000), 600).unwrap();
    let flood_started = Instant::now();
    let flood = std::thread::spawn(move || {
        let mut conns: Vec<(TcpStream, Instant, bool)> = (0..200)
            .map(|i| {
                let mut s = TcpStream::connect(addr).unwrap();
                let trickling = i % 2 == 1;
                if trickling {
                    s.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
                }
                s.set_nonblocking(true).unwrap();
                (s, Instant::now(), trickling)
            })
            .collect();
        let mut closed_after: Vec<Duration> = Vec::new();
        let mut last_line = Instant::now();
        let mut line = 0;
        while !conns.is_empty() && flood_started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
            let write_now = last_line.elapsed() >= Duration::from_secs(1);
            if write_now {
                last_line = Instant::now();
                line += 1;
            }
            conns.retain_mut(|(s, opened, trickling)| {
                let mut buf = [0u8; 64];
                let closed = match s.read(&mut buf) {
                    Ok(0) => true,
                    Ok(_) => panic!("the parent answered a connection that sent no request"),
                    Err(e) => e.kind() != ErrorKind::WouldBlock,
                };
                if closed {
                    closed_after.push(opened.elapsed());
                    return false;
                }
                if *trickling && write_now {
                    let _ = s.write_all(format!("X-Slow-{line}: a\r\n").as_bytes());
                }
                true
            });
        }
        (closed_after, conns.len())
    });
    let (mut served, mut slowest) = (0u32, Duration::ZERO);
    let mut latencies = Vec::new();
    while !flood.is_finished() {
        let t = Instant::now();
        let r =
            parent.api.post("/v1/sign", &wallet.sign_body(&wallet.transfer(1_000), &request_id()));
        let r = r.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let h = parent.api.get("/healthz").unwrap();
        assert_eq!(h.status, 200);
        let took = t.elapsed();
        latencies.push(took);
        slowest = slowest.max(took);
        served += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let (closed_after, still_open) = flood.join().unwrap();
    assert_eq!(still_open, 0, "flood connections still open after 30 s");
    assert_eq!(closed_after.len(), 200);
    let latest = closed_after.iter().max().copied().unwrap_or_default();
    for after in &closed_after {
        assert_cut_off_at(*after, HEADER_TIMEOUT, "a flood connection");
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    eprintln!(
        "silent cut off after {silent_after:?}, trickled headers after {trickle_after:?}, \
         trickled body after {body_after:?} (408); flood of 200: all closed by {latest:?}; \
         {served} sign + health pairs served meanwhile, median {median:?}, slowest {slowest:?}"
    );
    assert!(served >= 5, "only {served} requests were served during the flood");
    assert!(slowest < Duration::from_secs(2), "a normal request took {slowest:?} during the flood");

    // The cut-offs are counted.
    assert!(parent.metric(r#"signer_http_read_timeouts_total{phase="headers"}"#) >= 202.0);
    assert_eq!(parent.metric(r#"signer_http_read_timeouts_total{phase="body"}"#), 1.0);
    assert_eq!(
        parent.metric(r#"signer_http_requests_total{code="request_timeout",route="sign"}"#),
        1.0
    );
}
