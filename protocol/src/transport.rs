//! Transports: vsock in production, Unix sockets in simulation. Everything above
//! [`Listener::accept`] / [`connect`] is shared.
//!
//! Endpoint syntax: `unix:/path/to.sock`, `vsock:PORT` (listen on any CID), `vsock:CID:PORT`
//! (connect; the parent reaches an enclave by its CID, e.g. `vsock:16:5000`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{UnixListener, UnixStream};
use tokio_vsock::{VMADDR_CID_ANY, VsockAddr, VsockListener, VsockStream};

/// The read half of a connection, boxed so code above the socket is not generic over the
/// transport.
pub type BoxedReader = Box<dyn AsyncRead + Unpin + Send>;
/// The write half of a connection.
pub type BoxedWriter = Box<dyn AsyncWrite + Unpin + Send>;

/// A connected stream of either kind.
pub enum Stream {
    Unix(UnixStream),
    Vsock(VsockStream),
}

impl Stream {
    /// Splits into owned halves. A Unix stream's halves share no lock, so a connection's reader
    /// and writer tasks never contend (`tokio::io::split` guards both halves with one mutex,
    /// which cost about one futex wait and wake per request when the two tasks ran on different
    /// threads). tokio-vsock 0.7's owned halves still wrap `tokio::io::split`, so on vsock they
    /// share that lock as before. Dropping a Unix write half shuts the write direction down; a
    /// vsock write half does not, so the socket closes when both halves are gone.
    pub fn into_split(self) -> (BoxedReader, BoxedWriter) {
        match self {
            Self::Unix(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            Self::Vsock(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
        }
    }
}

/// Where to listen or connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Vsock { cid: u32, port: u32 },
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("`{0}` is not an endpoint (expected unix:/path, vsock:PORT or vsock:CID:PORT)")]
pub struct EndpointParseError(pub String);

impl FromStr for Endpoint {
    type Err = EndpointParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || EndpointParseError(s.to_string());
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let rest = s.strip_prefix("vsock:").ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split(':').collect();
        let parse = |p: &str| p.parse::<u32>().map_err(|_| bad());
        match parts.as_slice() {
            [port] => Ok(Self::Vsock { cid: VMADDR_CID_ANY, port: parse(port)? }),
            [cid, port] => Ok(Self::Vsock { cid: parse(cid)?, port: parse(port)? }),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Vsock { cid, port } if *cid == VMADDR_CID_ANY => write!(f, "vsock:{port}"),
            Self::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
        }
    }
}

/// A bound listener.
pub enum Listener {
    Unix(UnixListener, PathBuf),
    Vsock(VsockListener),
}

impl Listener {
    /// Binds. A stale Unix socket file is replaced, but not one a live process still serves.
    pub async fn bind(endpoint: &Endpoint) -> std::io::Result<Self> {
        match endpoint {
            Endpoint::Unix(path) => {
                if path.exists() {
                    if UnixStream::connect(path).await.is_ok() {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::AddrInUse,
                            format!("{} is served by another process", path.display()),
                        ));
                    }
                    std::fs::remove_file(path)?;
                }
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                Ok(Self::Unix(UnixListener::bind(path)?, path.clone()))
            }
            Endpoint::Vsock { cid, port } => {
                Ok(Self::Vsock(VsockListener::bind(VsockAddr::new(*cid, *port))?))
            }
        }
    }

    /// Accepts one connection; the string describes the peer for logs.
    pub async fn accept(&self) -> std::io::Result<(Stream, String)> {
        match self {
            Self::Unix(l, _) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), "unix".to_string()))
            }
            Self::Vsock(l) => {
                let (s, addr) = l.accept().await?;
                Ok((Stream::Vsock(s), format!("vsock cid {} port {}", addr.cid(), addr.port())))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Self::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Connects to an endpoint.
pub async fn connect(endpoint: &Endpoint) -> std::io::Result<Stream> {
    match endpoint {
        Endpoint::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
        Endpoint::Vsock { cid, port } => {
            Ok(Stream::Vsock(VsockStream::connect(VsockAddr::new(*cid, *port)).await?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_print() {
        assert_eq!("unix:/tmp/e.sock".parse(), Ok(Endpoint::Unix("/tmp/e.sock".into())));
        assert_eq!("vsock:5000".parse(), Ok(Endpoint::Vsock { cid: VMADDR_CID_ANY, port: 5000 }));
        assert_eq!("vsock:16:5000".parse(), Ok(Endpoint::Vsock { cid: 16, port: 5000 }));
        for bad in ["", "unix:", "tcp:1", "vsock:", "vsock:a", "vsock:1:2:3", "vsock:-1"] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
        for s in ["unix:/tmp/e.sock", "vsock:5000", "vsock:16:5000"] {
            assert_eq!(s.parse::<Endpoint>().unwrap().to_string(), s);
        }
    }

    #[tokio::test]
    async fn vsock_listener_binds_or_fails_cleanly() {
        // This machine has /dev/vsock but no loopback transport: binding may succeed or fail
        // depending on the kernel, but it must never panic, and connecting must fail cleanly.
        let _ = Listener::bind(&Endpoint::Vsock { cid: VMADDR_CID_ANY, port: 49_999 }).await;
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            connect(&Endpoint::Vsock { cid: 1, port: 49_998 }),
        )
        .await;
        assert!(!matches!(r, Ok(Ok(_))), "nothing listens on vsock 1:49998");
    }

    #[tokio::test]
    async fn stale_unix_socket_is_replaced_but_a_live_one_is_not() {
        let dir = std::env::temp_dir().join(format!("transport-test-{}", std::process::id()));
        let path = dir.join("e.sock");
        let endpoint = Endpoint::Unix(path.clone());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, b"stale").unwrap();
        let live = Listener::bind(&endpoint).await.unwrap();
        assert!(Listener::bind(&endpoint).await.is_err(), "must not steal a live socket");
        drop(live);
        assert!(!path.exists(), "socket removed on drop");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
