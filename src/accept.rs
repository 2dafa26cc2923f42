//! Accepting connections: who gets in, how long they may stay silent, and how a full
//! descriptor table is survived.
//!
//! Every connection (a panel, an HTTP request, a socket that never says anything) takes a
//! slot; past the global cap or the per-peer cap a new one is closed at once, before any
//! byte is read. A connection has `header_read_timeout` to send its request headers, and a
//! panel then `hello_timeout` (in the hub) to say hello, so silent sockets cannot pile up.
//! The global cap is held below the process's open-file limit, leaving descriptors for
//! device links, the journal and the listener itself.
//!
//! The caps and the header deadline live in a [`Gate`] that a reload changes: each new
//! connection is judged by the limits in force when it arrives. Lowering a cap closes
//! nothing already open; new connections are refused until enough have closed.
//!
//! Accepted sockets get TCP_NODELAY: panels exchange small frames, and with Nagle's
//! algorithm each one after the first would wait for the panel's delayed ACK (40 ms on
//! Linux, 200 ms on Windows). The session writer batches what it sends instead.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// Descriptors kept free for everything that is not a panel: the listener, the journal
/// file, logs, and slack for short-lived needs, on top of one per device link.
const RESERVED_DESCRIPTORS: u64 = 64;

/// First and longest pause after a failed `accept` (out of descriptors, say), so the loop
/// backs off instead of spinning while the condition lasts.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What the accept loop lets in.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one peer address.
    pub max_per_peer: usize,
    /// How long a connection has to send its request headers.
    pub header_read_timeout: Duration,
}

impl Limits {
    /// The limits `[server]` sets, before [`Limits::within_open_files`].
    pub fn of(server: &crate::config::site::Server) -> Self {
        Self {
            max_connections: server.max_connections,
            max_per_peer: server.max_connections_per_peer,
            header_read_timeout: server.header_read_timeout,
        }
    }

    /// Lowers `max_connections` so that panels can never take the descriptors that
    /// `links` device links (and the gateway's own files) need, given a soft limit of
    /// `open_files` descriptors per process.
    pub fn within_open_files(mut self, open_files: u64, links: usize) -> Self {
        let reserved = RESERVED_DESCRIPTORS + links as u64;
        let room = open_files.saturating_sub(reserved).max(1);
        let room = usize::try_from(room).unwrap_or(usize::MAX);
        if room < self.max_connections {
            warn!(
                configured = self.max_connections,
                allowed = room,
                "[server] max_connections lowered: the open-file limit is {open_files} and {reserved} descriptors are kept for device links and the gateway's files; raise LimitNOFILE (systemd) or ulimit -n to allow more"
            );
            self.max_connections = room;
        }
        self.max_per_peer = self.max_per_peer.min(self.max_connections);
        self
    }
}

/// Raises the process's soft open-file limit to its hard limit (systemd's default soft
/// limit of 1024 is far below what a busy gateway needs), and returns the soft limit now
/// in force.
pub fn raise_open_file_limit() -> u64 {
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        // rlim_t is u64 on Linux but not everywhere.
        #[allow(clippy::unnecessary_cast)]
        let soft = limit.rlim_cur as u64;
        soft
    }
}

/// The limits in force and the connections they admitted, shared by the accept loop and
/// whoever changes the limits (a reload).
#[derive(Clone)]
pub struct Gate {
    slots: Arc<Slots>,
    /// The process's soft open-file limit, which every change of limits is fitted under.
    open_files: u64,
}

impl Gate {
    /// `limits` fitted under `open_files` descriptors with `links` device links.
    pub fn new(limits: Limits, open_files: u64, links: usize) -> Gate {
        let fitted = limits.within_open_files(open_files, links);
        Gate {
            slots: Arc::new(Slots {
                open: Mutex::new(Open::new(fitted)),
            }),
            open_files,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.slots.lock().limits
    }

    /// Serves HTTPS with `tls` (plain HTTP with none) to connections arriving from now on.
    pub fn set_tls(&self, tls: Option<TlsAcceptor>) {
        self.slots.lock().tls = tls;
    }

    /// Whether connections get TLS.
    pub fn has_tls(&self) -> bool {
        self.slots.lock().tls.is_some()
    }

    /// Judges connections arriving from now on by `limits` (fitted as in [`Gate::new`]).
    pub fn set_limits(&self, limits: Limits, links: usize) {
        let fitted = limits.within_open_files(self.open_files, links);
        self.slots.lock().limits = fitted;
    }
}

/// Open connections, in total and per peer address.
struct Slots {
    open: Mutex<Open>,
}

struct Open {
    limits: Limits,
    /// The certificate new connections are served with; a reload may renew it.
    tls: Option<TlsAcceptor>,
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
    /// Connections refused since the last warning, so a flood logs a line a second, not
    /// a line per socket.
    refused: u64,
    warned: Option<tokio::time::Instant>,
}

impl Open {
    fn new(limits: Limits) -> Open {
        Open {
            limits,
            tls: None,
            total: 0,
            per_peer: HashMap::new(),
            refused: 0,
            warned: None,
        }
    }
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection from `peer`, or `None` when a cap is reached.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let mut open = self.lock();
        let from_peer = open.per_peer.get(&peer).copied().unwrap_or(0);
        let cap = if open.total >= open.limits.max_connections {
            Some("max_connections")
        } else if from_peer >= open.limits.max_per_peer {
            Some("max_connections_per_peer")
        } else {
            None
        };
        if let Some(cap) = cap {
            open.refused += 1;
            let now = tokio::time::Instant::now();
            if open
                .warned
                .is_none_or(|at| now - at >= Duration::from_secs(1))
            {
                warn!(
                    %peer,
                    refused = open.refused,
                    open = open.total,
                    from_peer,
                    "connection refused: [server] {cap} reached"
                );
                open.refused = 0;
                open.warned = Some(now);
            }
            return None;
        }
        open.total += 1;
        *open.per_peer.entry(peer).or_default() += 1;
        Some(Slot {
            slots: self.clone(),
            peer,
        })
    }
}

/// One connection's place in [`Slots`], given back when the connection (or the WebSocket
/// it became) is dropped.
struct Slot {
    slots: Arc<Slots>,
    peer: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        open.total -= 1;
        if let Some(count) = open.per_peer.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                open.per_peer.remove(&self.peer);
            }
        }
    }
}

/// A socket that holds its slot for as long as it lives, also after hyper hands it to a
/// WebSocket.
struct SlottedStream {
    /// Declared first so it is given back before the socket closes: a peer that sees the
    /// close can connect again at once.
    _slot: Slot,
    stream: TcpStream,
}

impl AsyncRead for SlottedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SlottedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Accepts connections and serves `app` on them until `shutdown`; each connection is a
/// task on `tasks`, closed gracefully on shutdown.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    gate: Gate,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let slots = gate.slots;
    let mut backoff = ACCEPT_BACKOFF_FIRST;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = ACCEPT_BACKOFF_FIRST;
                accepted
            }
            // The peer gave up before we got to it: nothing to do about it.
            Err(e) if is_peer_gone(&e) => continue,
            Err(e) => {
                // Out of descriptors (EMFILE, ENFILE) or memory: accepting again at once
                // would fail the same way. Wait for connections to close.
                warn!("accepting a connection failed: {e}; retrying in {backoff:?}");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Some(slot) = slots.admit(peer.ip()) else {
            continue;
        };
        let (header_read_timeout, tls) = {
            let open = slots.lock();
            (open.limits.header_read_timeout, open.tls.clone())
        };
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, "cannot set TCP_NODELAY: {e}");
        }
        let stream = SlottedStream {
            _slot: slot,
            stream,
        };
        let (app, deadline, stop) = (app.clone(), header_read_timeout, shutdown.clone());
        match &tls {
            None => tasks.spawn(serve_connection(stream, peer, app, deadline, stop)),
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tasks.spawn(async move {
                    // The handshake counts against the same deadline as the headers: a
                    // socket that never finishes it holds its slot no longer.
                    match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, peer, app, deadline, stop).await,
                        Ok(Err(e)) => debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::info!(%peer, "connection closed: no TLS handshake within {deadline:?}"),
                    }
                })
            }
        };
    }
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    app: axum::Router,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        tower_service::Service::call(&mut app, request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        // A flood of these would be a line per socket; the caps' warnings summarise it.
        if e.is_timeout() {
            debug!(%peer, "connection closed: no request within {header_read_timeout:?}");
        } else {
            debug!(%peer, "connection ended: {e}");
        }
    }
}

fn is_peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize, max_per_peer: usize) -> Limits {
        Limits {
            max_connections,
            max_per_peer,
            header_read_timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn panels_never_take_the_descriptors_device_links_need() {
        let fitted = limits(4096, 256).within_open_files(1024, 100);
        assert_eq!(fitted.max_connections, 1024 - 64 - 100);
        let roomy = limits(4096, 256).within_open_files(1 << 20, 100);
        assert_eq!(roomy.max_connections, 4096);
        let tiny = limits(4096, 256).within_open_files(100, 100);
        assert_eq!((tiny.max_connections, tiny.max_per_peer), (1, 1));
    }

    #[tokio::test]
    async fn slots_are_capped_in_total_and_per_peer_and_given_back() {
        let slots = Gate::new(limits(3, 2), 1 << 20, 0).slots;
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = slots.admit(a).expect("room");
        let _second = slots.admit(a).expect("room");
        assert!(slots.admit(a).is_none(), "per-peer cap");
        let _third = slots.admit(b).expect("another peer");
        assert!(slots.admit(b).is_none(), "total cap");
        drop(first);
        assert!(
            slots.admit(a).is_some(),
            "a closed connection frees its slot"
        );
    }

    #[tokio::test]
    async fn changed_limits_judge_the_next_connection_and_close_nothing() {
        let gate = Gate::new(limits(4, 4), 1 << 20, 0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<Slot> = (0..3).map(|_| gate.slots.admit(a).unwrap()).collect();
        gate.set_limits(limits(2, 2), 0);
        assert_eq!(gate.limits().max_connections, 2);
        assert!(gate.slots.admit(a).is_none(), "over the lowered cap");
        assert_eq!(gate.slots.lock().total, 3, "the open ones stay open");
        drop(held);
        let _again = gate.slots.admit(a).expect("room once they closed");
        gate.set_limits(limits(4096, 256), 10);
        assert_eq!(gate.limits().max_per_peer, 256);
        let fitted = Gate::new(limits(4096, 256), 1024, 0);
        fitted.set_limits(limits(4096, 256), 100);
        assert_eq!(
            fitted.limits().max_connections,
            1024 - 64 - 100,
            "a change is fitted under the open-file limit too"
        );
    }
}
