//! A nemesis on the members' relay links (Jepsen-style fault injection for tests and the
//! documented long run): one HTTP proxy in front of each member's relay route
//! (`POST /v1/cluster/relay`). It answers every message at once, as a lossy network would, and
//! then drops, delays (which reorders), duplicates or replays it, or cuts it when either end is
//! isolated. It reads only the sealed message's cleartext header (the sender's enclave id at
//! bytes 1..17); it can forge nothing, which is the point.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use rand::{RngExt, SeedableRng};

use crate::StackError;

/// What the nemesis does to each message.
#[derive(Default)]
pub struct Faults {
    pub drop_percent: AtomicU32,
    pub duplicate_percent: AtomicU32,
    pub replay_percent: AtomicU32,
    pub max_delay_ms: AtomicU64,
    /// Members cut off: messages to them (by proxy) and from them (by sender id) are lost.
    isolated_members: Mutex<HashSet<usize>>,
    isolated_senders: Mutex<HashSet<[u8; 16]>>,
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
}

impl Faults {
    /// Drops, duplicates and replays this many percent of messages; delays each by up to
    /// `max_delay_ms`.
    pub fn set(&self, drop: u32, duplicate: u32, replay: u32, max_delay_ms: u64) {
        self.drop_percent.store(drop, Ordering::Relaxed);
        self.duplicate_percent.store(duplicate, Ordering::Relaxed);
        self.replay_percent.store(replay, Ordering::Relaxed);
        self.max_delay_ms.store(max_delay_ms, Ordering::Relaxed);
    }

    /// Cuts member `index` (whose enclave is `enclave_id`) off from every other.
    pub fn isolate(&self, index: usize, enclave_id: [u8; 16]) {
        self.isolated_members.lock().insert(index);
        self.isolated_senders.lock().insert(enclave_id);
    }

    /// Heals every partition.
    pub fn heal(&self) {
        self.isolated_members.lock().clear();
        self.isolated_senders.lock().clear();
    }

    fn cut(&self, to: usize, message: &[u8]) -> bool {
        let sender: Option<[u8; 16]> = message.get(1..17).and_then(|s| s.try_into().ok());
        self.isolated_members.lock().contains(&to)
            || sender.is_some_and(|s| self.isolated_senders.lock().contains(&s))
    }
}

/// The proxies, on their own runtime.
pub struct Nemesis {
    pub faults: Arc<Faults>,
    /// The relay address to announce for each member (this nemesis's proxy in front of it).
    pub relays: Vec<String>,
    runtime: tokio::runtime::Runtime,
}

struct Proxy {
    index: usize,
    /// The member's relay route.
    target: String,
    /// The member's parent, for everything else (a request forwarded to the leader).
    base: String,
    faults: Arc<Faults>,
    client: Client<HttpConnector, Full<Bytes>>,
    rng: Mutex<rand::rngs::StdRng>,
    /// Recent messages, for replays.
    recent: Mutex<VecDeque<(Option<String>, Bytes)>>,
}

impl Nemesis {
    /// One proxy per member parent in `targets`, faults from `seed`. The proxies listen on
    /// ports none of `targets` and `reserved` (addresses picked but not yet bound, like the load
    /// balancer's) use.
    pub fn start(
        targets: &[SocketAddr],
        reserved: &[SocketAddr],
        seed: u64,
    ) -> Result<Self, StackError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| StackError::Setup(format!("nemesis runtime: {e}")))?;
        let faults = Arc::new(Faults::default());
        let mut relays = Vec::new();
        for (index, target) in targets.iter().enumerate() {
            // Below the kernel's ephemeral range, where other daemons' ports are picked (by
            // binding port 0): a proxy never takes a port another process is about to bind.
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed.wrapping_add(index as u64));
            let mut attempts = 0;
            let (listener, addr) = loop {
                attempts += 1;
                let port: u16 = rng.random_range(20_000..30_000);
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                if targets.contains(&addr) || reserved.contains(&addr) {
                    continue;
                }
                match runtime.block_on(tokio::net::TcpListener::bind(addr)) {
                    Ok(listener) => break (listener, addr),
                    Err(e) if attempts > 200 => {
                        return Err(StackError::Setup(format!("nemesis listener: {e}")));
                    }
                    Err(_) => continue,
                }
            };
            relays.push(format!("http://{addr}"));
            let proxy = Arc::new(Proxy {
                index,
                target: format!("http://{target}/v1/cluster/relay"),
                base: format!("http://{target}"),
                faults: Arc::clone(&faults),
                client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
                rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed ^ index as u64)),
                recent: Mutex::new(VecDeque::new()),
            });
            runtime.spawn(serve(listener, proxy));
        }
        Ok(Self { faults, relays, runtime })
    }

    /// Stops the proxies.
    pub fn shutdown(self) {
        self.runtime.shutdown_background();
    }
}

async fn serve(listener: tokio::net::TcpListener, proxy: Arc<Proxy>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let proxy = Arc::clone(&proxy);
                async move {
                    if request.uri().path() != "/v1/cluster/relay" {
                        return Ok::<_, Infallible>(proxy.pass_through(request).await);
                    }
                    let token = request
                        .headers()
                        .get(hyper::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    if let Ok(body) = request.into_body().collect().await {
                        proxy.pass(token, body.to_bytes());
                    }
                    Ok(hyper::Response::new(Full::new(Bytes::from_static(b"{}"))))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Proxy {
    /// Another request between parents (a decision forwarded to the leader): passed on as it
    /// is, unless the member is isolated (then the connection fails, as across a partition).
    async fn pass_through(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<Full<Bytes>> {
        let failed = |status: u16| {
            let mut r = hyper::Response::new(Full::new(Bytes::new()));
            *r.status_mut() =
                hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
            r
        };
        if self.faults.isolated_members.lock().contains(&self.index) {
            return failed(502);
        }
        let (parts, body) = request.into_parts();
        let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else { return failed(400) };
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut forwarded =
            hyper::Request::builder().method(parts.method).uri(format!("{}{path}", self.base));
        for (name, value) in &parts.headers {
            if name != hyper::header::HOST {
                forwarded = forwarded.header(name, value);
            }
        }
        let Ok(forwarded) = forwarded.body(Full::new(body)) else { return failed(400) };
        match tokio::time::timeout(Duration::from_secs(30), self.client.request(forwarded)).await {
            Ok(Ok(response)) => {
                let (parts, body) = response.into_parts();
                match body.collect().await {
                    Ok(body) => hyper::Response::from_parts(parts, Full::new(body.to_bytes())),
                    Err(_) => failed(502),
                }
            }
            _ => failed(502),
        }
    }

    fn pass(self: &Arc<Self>, token: Option<String>, message: Bytes) {
        let f = &self.faults;
        if f.cut(self.index, &message) {
            f.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let (drop, copies, replay, delays) = {
            let mut rng = self.rng.lock();
            let drop = rng.random_range(0..100u32) < f.drop_percent.load(Ordering::Relaxed);
            let copies =
                if rng.random_range(0..100u32) < f.duplicate_percent.load(Ordering::Relaxed) {
                    2
                } else {
                    1
                };
            let replay = rng.random_range(0..100u32) < f.replay_percent.load(Ordering::Relaxed);
            let max = f.max_delay_ms.load(Ordering::Relaxed);
            let delays: Vec<u64> = (0..copies + 1).map(|_| rng.random_range(0..=max)).collect();
            (drop, copies, replay, delays)
        };
        let old = if replay {
            let recent = self.recent.lock();
            let n = recent.len();
            (n > 0).then(|| recent.get(self.rng.lock().random_range(0..n)).cloned()).flatten()
        } else {
            None
        };
        {
            let mut recent = self.recent.lock();
            recent.push_back((token.clone(), message.clone()));
            if recent.len() > 64 {
                recent.pop_front();
            }
        }
        if drop {
            f.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            for delay in delays.iter().take(copies) {
                self.forward(token.clone(), message.clone(), *delay);
            }
        }
        if let Some((token, message)) = old {
            self.forward(token, message, delays.last().copied().unwrap_or(0));
        }
    }

    fn forward(self: &Arc<Self>, token: Option<String>, message: Bytes, delay_ms: u64) {
        let proxy = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            // A partition made while the message was in flight loses it.
            if proxy.faults.cut(proxy.index, &message) {
                proxy.faults.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let mut request = hyper::Request::post(&proxy.target)
                .header(hyper::header::CONTENT_TYPE, "application/octet-stream");
            if let Some(token) = token {
                request = request.header(hyper::header::AUTHORIZATION, token);
            }
            let Ok(request) = request.body(Full::new(message)) else { return };
            if let Ok(Ok(response)) =
                tokio::time::timeout(Duration::from_secs(10), proxy.client.request(request)).await
            {
                let _ = response.into_body().collect().await;
                proxy.faults.delivered.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}
