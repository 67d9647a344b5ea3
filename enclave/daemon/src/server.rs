//! The connection server, shared by both transports.
//!
//! Per connection: a reader loop decodes frames and spawns one task per request (so a slow
//! request never holds up the others), a writer task sends responses in completion order.
//! Millisecond-scale operations run on the blocking pool; the in-flight semaphore bounds work
//! in progress (reading pauses when it is exhausted). Bad frames get an error frame: a frame whose
//! length exceeds the limit also closes that connection (the stream cannot be re-synchronised),
//! anything else (garbage CBOR, unknown op, wrong version) leaves it open. Other connections are
//! never affected. Every decoded request gets exactly one response, even if its handler panics.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use enclave_core::error::ErrorCode;
use signer_protocol::frame::{FrameError, MAX_FRAME_LEN, read_frame, write_frame, write_queued};
use signer_protocol::messages::{decode, encode, request_id_of};
use signer_protocol::{ErrorReply, Listener, Op, Outcome, Request, Response, Stream};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handler::Handler;

/// Server limits (from the measured config).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub max_in_flight: usize,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
}

/// Accepts connections until `shutdown` fires, then waits (bounded) for in-flight work.
pub async fn serve(
    listener: Listener,
    handler: Arc<Handler>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match Arc::clone(&connections).try_acquire_owned() {
                    Ok(permit) => {
                        let (handler, in_flight, shutdown) = (Arc::clone(&handler), Arc::clone(&in_flight), shutdown.clone());
                        tracker.spawn(async move {
                            connection(stream, &peer, handler, in_flight, shutdown).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tracing::warn!(%peer, limit = limits.max_connections, "connection refused: too many connections");
                        tracker.spawn(refuse(stream, limits.max_connections));
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    drop(listener);
    tracker.close();
    tracing::info!("no longer accepting; draining in-flight requests");
    if tokio::time::timeout(limits.drain_timeout, tracker.wait()).await.is_err() {
        tracing::warn!(timeout = ?limits.drain_timeout, "drain timed out");
    }
}

async fn refuse(stream: Stream, limit: usize) {
    let (_, writer) = stream.into_split();
    let mut writer = BufWriter::new(writer);
    let reply = ErrorReply::new(
        ErrorCode::EnclaveUnavailable,
        format!("too many connections (limit {limit})"),
    );
    send_now(&mut writer, 0, Outcome::Err(reply)).await;
}

async fn send_now<W: tokio::io::AsyncWrite + Unpin>(writer: &mut W, id: u64, outcome: Outcome) {
    if let Ok(frame) = encode(&Response { id, outcome }, 256) {
        let _ = write_frame(writer, &frame).await;
        let _ = writer.flush().await;
    }
}

fn frame_of(id: u64, outcome: Outcome) -> Option<Vec<u8>> {
    match encode(&Response { id, outcome }, 1024) {
        Ok(frame) => Some(frame.to_vec()),
        Err(e) => {
            tracing::error!(id, error = %e, "cannot encode a response");
            None
        }
    }
}

fn error(code: ErrorCode, message: impl Into<String>) -> Outcome {
    Outcome::Err(ErrorReply::new(code, message))
}

struct ConnectionCount<'a>(&'a Handler);

impl Drop for ConnectionCount<'_> {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn connection(
    stream: Stream,
    peer: &str,
    handler: Arc<Handler>,
    in_flight: Arc<Semaphore>,
    shutdown: CancellationToken,
) {
    handler.connections.fetch_add(1, Ordering::Relaxed);
    let _count = ConnectionCount(&handler);
    tracing::info!(%peer, "connection opened");
    let (reader, writer) = stream.into_split();
    // Buffered: one read syscall carries many request frames under load.
    let mut reader = tokio::io::BufReader::with_capacity(64 * 1024, reader);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1024);
    let writer_task = tokio::spawn(async move { write_queued(writer, &mut rx).await });
    let send = |id: u64, outcome: Outcome| {
        let tx = tx.clone();
        async move {
            if let Some(frame) = frame_of(id, outcome) {
                let _ = tx.send(frame).await;
            }
        }
    };

    let mut greeted = false;
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => break,
            frame = read_frame(&mut reader, MAX_FRAME_LEN) => frame,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(FrameError::TooLarge { len, max }) => {
                tracing::warn!(%peer, len, max, "oversized frame; closing the connection");
                send(
                    0,
                    error(
                        ErrorCode::BadRequest,
                        format!("frame of {len} bytes exceeds the {max}-byte limit"),
                    ),
                )
                .await;
                break;
            }
            Err(e) => {
                tracing::info!(%peer, error = %e, "connection ended mid-frame");
                break;
            }
        };
        let request: Request = match decode(&frame) {
            Ok(request) => request,
            Err(e) => {
                let id = request_id_of(&frame);
                tracing::info!(%peer, id, error = %e, "malformed request");
                send(id, error(ErrorCode::BadRequest, format!("malformed request: {e}"))).await;
                continue;
            }
        };
        drop(frame);
        if !greeted {
            if !matches!(request.op, Op::Hello { .. }) {
                send(
                    request.id,
                    error(ErrorCode::BadRequest, "the first request on a connection must be hello"),
                )
                .await;
                break;
            }
            let outcome = handler.handle(request.op);
            greeted = matches!(outcome, Outcome::Ok(_));
            send(request.id, outcome).await;
            if !greeted {
                break;
            }
            continue;
        }
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else { break };
        let (handler, tx) = (Arc::clone(&handler), tx.clone());
        tokio::spawn(async move {
            let Request { id, op } = request;
            let name = op.name();
            let started = Instant::now();
            handler.in_flight.fetch_add(1, Ordering::Relaxed);
            let outcome = if crate::cluster::relay::is_cluster_op(&op) {
                match handler.cluster.handle(op).await {
                    Ok(reply) => Outcome::Ok(reply),
                    Err(e) => Outcome::Err(crate::handler::error_reply(&e)),
                }
            } else if handler.runs_blocking(&op) {
                let h = Arc::clone(&handler);
                tokio::task::spawn_blocking(move || h.handle(op))
                    .await
                    .unwrap_or_else(|_| error(ErrorCode::Internal, "the operation panicked"))
            } else {
                std::panic::catch_unwind(AssertUnwindSafe(|| handler.handle(op)))
                    .unwrap_or_else(|_| error(ErrorCode::Internal, "the operation panicked"))
            };
            handler.in_flight.fetch_sub(1, Ordering::Relaxed);
            match &outcome {
                Outcome::Ok(_) => tracing::debug!(
                    id,
                    op = name,
                    micros = started.elapsed().as_micros() as u64,
                    "ok"
                ),
                Outcome::Err(e) => tracing::info!(
                    id,
                    op = name,
                    code = e.code.as_str(),
                    micros = started.elapsed().as_micros() as u64,
                    "refused"
                ),
            }
            if let Some(frame) = frame_of(id, outcome) {
                let _ = tx.send(frame).await;
            }
            drop(permit);
        });
    }
    drop(tx);
    // The writer finishes once every in-flight request of this connection has answered.
    let _ = writer_task.await;
    tracing::info!(%peer, "connection closed");
}
