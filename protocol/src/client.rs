//! The parent's side: one multiplexed connection (requests tagged by id, answered in any order,
//! so a slow request never holds up the others) and a reconnecting client with backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use thiserror::Error;

use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use crate::frame::{MAX_FRAME_LEN, read_frame, write_queued};
use crate::messages::{Op, Outcome, PROTOCOL_VERSION, Reply, Response, decode, encode};
use crate::transport::{Endpoint, connect};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ClientError {
    #[error("cannot connect to the enclave at {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("the enclave connection closed {}", if *.sent { "before the response arrived" } else { "before the request was sent" })]
    Closed { sent: bool },
    #[error("the enclave did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the enclave refused the connection: {0}")]
    Refused(String),
    #[error("protocol version mismatch: parent speaks {ours}, enclave {theirs}")]
    Version { ours: u32, theirs: u32 },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("enclave unreachable; next reconnect attempt in {0:?}")]
    Backoff(Duration),
}

/// Requests awaiting their response, and whether the connection has ended.
#[derive(Default)]
struct Waiters {
    by_id: HashMap<u64, oneshot::Sender<Outcome>>,
    /// Set (under the same lock) when the reader stops, so no request can start waiting on a
    /// connection that will never answer: `Some(Some(reason))` if the enclave said why.
    ended: Option<Option<Outcome>>,
}

type Pending = Arc<Mutex<Waiters>>;

/// One open, multiplexed connection. Dropping it closes the socket in both directions.
pub struct Connection {
    tx: mpsc::Sender<Zeroizing<Vec<u8>>>,
    pending: Pending,
    next_id: AtomicU64,
    closed: Arc<AtomicBool>,
    reader: tokio::task::AbortHandle,
}

impl Drop for Connection {
    /// The writer task ends with the queue; the reader task would otherwise keep its half (and,
    /// on vsock, whose write half does not shut down on drop, the whole socket) open until the
    /// enclave hung up. Nobody can be waiting for a response: callers hold the connection.
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[derive(Serialize)]
struct RequestRef<'a> {
    id: u64,
    op: &'a Op,
}

impl Connection {
    /// Connects and performs the `hello` version handshake.
    pub async fn open(endpoint: &Endpoint, timeout: Duration) -> Result<Self, ClientError> {
        let connect_err =
            |reason: String| ClientError::Connect { endpoint: endpoint.to_string(), reason };
        let stream = tokio::time::timeout(timeout, connect(endpoint))
            .await
            .map_err(|_| connect_err("timed out".into()))?
            .map_err(|e| connect_err(e.to_string()))?;
        let (reader, writer) = stream.into_split();
        // Buffered: one read syscall carries many response frames under load.
        let mut reader = tokio::io::BufReader::with_capacity(64 * 1024, reader);
        let (tx, mut rx) = mpsc::channel::<Zeroizing<Vec<u8>>>(1024);
        let pending: Pending = Arc::new(Mutex::new(Waiters::default()));
        let closed = Arc::new(AtomicBool::new(false));

        let writer_closed = Arc::clone(&closed);
        tokio::spawn(async move {
            write_queued(writer, &mut rx).await;
            writer_closed.store(true, Ordering::Release);
        });

        let reader_pending = Arc::clone(&pending);
        let reader_closed = Arc::clone(&closed);
        let reader_task = tokio::spawn(async move {
            // An error the enclave sent for no request (id 0: a refused connection, an oversized
            // frame); if the connection then ends, it is why, and every waiter gets it.
            let mut connection_error: Option<Outcome> = None;
            while let Ok(Some(frame)) = read_frame(&mut reader, MAX_FRAME_LEN).await {
                match decode::<Response>(&frame) {
                    Ok(response) => {
                        let waiter = reader_pending.lock().by_id.remove(&response.id);
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(response.outcome);
                        } else if let (0, Outcome::Err(e)) = (response.id, &response.outcome) {
                            tracing::warn!(code = e.code.as_str(), message = %e.message, "the enclave reported a connection error");
                            connection_error = Some(response.outcome);
                        } else {
                            tracing::warn!(id = response.id, "response for an unknown request");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "undecodable response; closing the connection");
                        break;
                    }
                }
            }
            reader_closed.store(true, Ordering::Release);
            // Dropping the senders wakes every waiter with `Closed`, unless the enclave said why.
            let mut waiters = reader_pending.lock();
            for (_, waiter) in waiters.by_id.drain() {
                if let Some(reason) = &connection_error {
                    let _ = waiter.send(reason.clone());
                }
            }
            waiters.ended = Some(connection_error);
        });

        let connection = Self {
            tx,
            pending,
            next_id: AtomicU64::new(1),
            closed,
            reader: reader_task.abort_handle(),
        };
        match connection.call(&Op::Hello { version: PROTOCOL_VERSION }, timeout).await? {
            Outcome::Ok(Reply::Hello { version, .. }) if version == PROTOCOL_VERSION => {
                Ok(connection)
            }
            Outcome::Ok(Reply::Hello { version, .. }) => {
                Err(ClientError::Version { ours: PROTOCOL_VERSION, theirs: version })
            }
            Outcome::Err(e) => Err(ClientError::Refused(e.message)),
            Outcome::Ok(other) => {
                Err(ClientError::Protocol(format!("unexpected hello reply {other:?}")))
            }
        }
    }

    /// True once either direction of the stream has failed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Sends one request and waits up to `timeout` for its outcome.
    pub async fn call(&self, op: &Op, timeout: Duration) -> Result<Outcome, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let size_hint = match op {
            Op::Sign(s) => {
                s.grant_record.len()
                    + s.agent_key_record.len()
                    + s.transaction.len()
                    + s.envelope.as_ref().map_or(0, Vec::len)
                    + 256
            }
            Op::CreateGrant(g) => {
                let policy = &g.grant.policy;
                4096 + g.vault_record.len()
                    + g.vault_provenance.len()
                    + g.envelope.as_ref().map_or(0, Vec::len)
                    + 48 * (policy.tokens.len() * 3
                        + policy.allowed_programs.len()
                        + policy.destinations.as_ref().map_or(0, Vec::len))
            }
            Op::CreateAgent(a) => {
                1024 + a.vault_record.len()
                    + a.vault_provenance.len()
                    + a.envelope.as_ref().map_or(0, Vec::len)
            }
            _ => 512,
        };
        let frame = encode(&RequestRef { id, op }, size_hint)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if frame.len() > MAX_FRAME_LEN {
            return Err(ClientError::Protocol(format!(
                "request of {} bytes exceeds the frame limit",
                frame.len()
            )));
        }
        let (waiter, result) = oneshot::channel();
        {
            let mut waiters = self.pending.lock();
            match &waiters.ended {
                Some(Some(reason)) => return Ok(reason.clone()),
                Some(None) => return Err(ClientError::Closed { sent: false }),
                // The writer failed: the request could not be sent.
                None if self.is_closed() => return Err(ClientError::Closed { sent: false }),
                None => waiters.by_id.insert(id, waiter),
            };
        }
        if self.tx.send(frame).await.is_err() {
            self.pending.lock().by_id.remove(&id);
            return Err(ClientError::Closed { sent: false });
        }
        match tokio::time::timeout(timeout, result).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => Err(ClientError::Closed { sent: true }),
            Err(_) => {
                self.pending.lock().by_id.remove(&id);
                Err(ClientError::Timeout(timeout))
            }
        }
    }

    /// Requests awaiting a response.
    pub fn in_flight(&self) -> usize {
        self.pending.lock().by_id.len()
    }
}

/// Reconnection backoff bounds.
pub const MIN_BACKOFF: Duration = Duration::from_millis(50);
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

struct Backoff {
    next_attempt: Option<Instant>,
    delay: Duration,
}

/// A client that (re)connects on demand, with exponential backoff between failed attempts.
pub struct EnclaveClient {
    endpoint: Mutex<Endpoint>,
    connect_timeout: Duration,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
    backoff: Mutex<Backoff>,
    connected: AtomicBool,
    reconnects: AtomicU64,
}

impl EnclaveClient {
    pub fn new(endpoint: Endpoint, connect_timeout: Duration) -> Self {
        Self {
            endpoint: Mutex::new(endpoint),
            connect_timeout,
            connection: tokio::sync::Mutex::new(None),
            backoff: Mutex::new(Backoff { next_attempt: None, delay: MIN_BACKOFF }),
            connected: AtomicBool::new(false),
            reconnects: AtomicU64::new(0),
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        self.endpoint.lock().clone()
    }

    /// Points the client at another enclave (after a handover): the current connection is
    /// dropped and the next call connects to `endpoint`, counting as a new connection.
    pub async fn switch_to(&self, endpoint: Endpoint) {
        let mut current = self.connection.lock().await;
        *self.endpoint.lock() = endpoint;
        *current = None;
        *self.backoff.lock() = Backoff { next_attempt: None, delay: MIN_BACKOFF };
        self.connected.store(false, Ordering::Release);
    }

    /// Whether the last attempt left an open connection.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Successful connections made so far.
    pub fn connections_made(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    async fn connection(&self) -> Result<Arc<Connection>, ClientError> {
        let mut current = self.connection.lock().await;
        if let Some(c) = current.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(c));
        }
        *current = None;
        self.connected.store(false, Ordering::Release);
        if let Some(at) = self.backoff.lock().next_attempt {
            let now = Instant::now();
            if now < at {
                return Err(ClientError::Backoff(at - now));
            }
        }
        let endpoint = self.endpoint.lock().clone();
        match Connection::open(&endpoint, self.connect_timeout).await {
            Ok(c) => {
                let c = Arc::new(c);
                *current = Some(Arc::clone(&c));
                *self.backoff.lock() = Backoff { next_attempt: None, delay: MIN_BACKOFF };
                self.connected.store(true, Ordering::Release);
                self.reconnects.fetch_add(1, Ordering::Relaxed);
                Ok(c)
            }
            Err(e) => {
                let mut b = self.backoff.lock();
                b.next_attempt = Some(Instant::now() + b.delay);
                b.delay = (b.delay * 2).min(MAX_BACKOFF);
                Err(e)
            }
        }
    }

    /// Sends `op`, connecting first if needed.
    pub async fn call(&self, op: &Op, timeout: Duration) -> Result<Outcome, ClientError> {
        let connection = self.connection().await?;
        let result = connection.call(op, timeout).await;
        if connection.is_closed() {
            self.connected.store(false, Ordering::Release);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::write_frame;
    use crate::messages::Request;
    use tokio::io::AsyncWriteExt as _;

    /// A Unix listener standing in for the enclave, in a fresh directory.
    async fn fake_enclave(name: &str) -> (Endpoint, crate::Listener, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("client-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let endpoint = Endpoint::Unix(dir.join("e.sock"));
        let listener = crate::Listener::bind(&endpoint).await.unwrap();
        (endpoint, listener, dir)
    }

    /// Accepts one connection and answers its `hello`.
    async fn accept_and_greet(listener: &crate::Listener) -> crate::BoxedWriter {
        let (stream, _) = listener.accept().await.unwrap();
        let (reader, mut writer) = stream.into_split();
        let mut reader = tokio::io::BufReader::new(reader);
        let hello = read_frame(&mut reader, MAX_FRAME_LEN).await.unwrap().unwrap();
        let request: Request = decode(&hello).unwrap();
        let reply =
            Outcome::Ok(Reply::Hello { version: PROTOCOL_VERSION, enclave_version: "test".into() });
        send(&mut writer, request.id, reply).await.unwrap();
        // The read half is dropped: nothing more is read from this client.
        writer
    }

    async fn send(
        writer: &mut crate::BoxedWriter,
        id: u64,
        outcome: Outcome,
    ) -> std::io::Result<()> {
        let frame = encode(&Response { id, outcome }, 64).unwrap();
        write_frame(writer, &frame).await.map_err(std::io::Error::other)?;
        writer.flush().await
    }

    fn too_many(limit: u32) -> Outcome {
        let code = signer_types::error::ErrorCode::EnclaveUnavailable;
        Outcome::Err(crate::ErrorReply::new(code, format!("too many connections (limit {limit})")))
    }

    /// The enclave's refusal (an id-0 error, then the socket closes) reaches the caller as the
    /// reason, never as a timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_connection_reports_the_enclaves_reason() {
        let (endpoint, listener, dir) = fake_enclave("refused").await;
        let attempts = 20;
        let server = tokio::spawn(async move {
            for _ in 0..attempts {
                let (stream, _) = listener.accept().await.unwrap();
                let (_, mut writer) = stream.into_split();
                send(&mut writer, 0, too_many(1)).await.unwrap();
            }
        });
        for attempt in 0..attempts {
            let refused = Connection::open(&endpoint, Duration::from_secs(5)).await.err();
            assert_eq!(
                refused.map(|e| e.to_string()),
                Some("the enclave refused the connection: too many connections (limit 1)".into()),
                "attempt {attempt}"
            );
        }
        server.await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A request made after the enclave ended the connection with a reason gets that reason at
    /// once; it never waits on a connection nobody reads.
    #[tokio::test]
    async fn a_request_on_a_connection_the_enclave_ended_gets_its_reason() {
        let (endpoint, listener, dir) = fake_enclave("ended").await;
        let server = tokio::spawn(async move {
            let mut writer = accept_and_greet(&listener).await;
            send(&mut writer, 0, too_many(2)).await.unwrap();
        });
        let connection = Connection::open(&endpoint, Duration::from_secs(5)).await.unwrap();
        server.await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !connection.is_closed() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(connection.is_closed());
        let outcome = connection.call(&Op::Status, Duration::from_secs(5)).await;
        assert_eq!(outcome, Ok(too_many(2)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn dropping_a_connection_closes_the_socket_both_ways() {
        let (endpoint, listener, dir) = fake_enclave("drop").await;
        let (dropped_tx, dropped_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let mut writer = accept_and_greet(&listener).await;
            dropped_rx.await.unwrap();
            // Once the client is gone, writing must fail: nobody reads this socket any more.
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if send(&mut writer, 99, Outcome::Ok(Reply::Revoked { dropped: 0 })).await.is_err()
                {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        });
        let connection = Connection::open(&endpoint, Duration::from_secs(5)).await.unwrap();
        drop(connection);
        dropped_tx.send(()).unwrap();
        assert!(server.await.unwrap(), "the dropped connection's socket still accepted writes");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
