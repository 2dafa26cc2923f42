//! The device side of the kit: a [`DeviceModel`] is a pretend device, sans-IO like a
//! session, and [`serve_tcp`], [`serve_udp`] and [`Served::serve_pty`] put any model on
//! a real socket (on [`crate::sim_server`]). The PJLink and Extron simulators are models
//! served here; the hooks past `received` (hanging up, idle timeouts, answers held back or
//! delayed, a serial port that greets differently) are what they need from a device.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::sim_server::{self, Link, Listener, lock};

/// A pretend device: bytes in, bytes out, no sockets and no clock reads.
///
/// One model stands for one device; each connection to it keeps its own
/// [`DeviceModel::Connection`] (a half-received frame, a login step), while the device's
/// state is shared by all of them, as on the real thing.
pub trait DeviceModel: Send + 'static {
    /// What one connection remembers between reads.
    type Connection: Default + Send;

    /// What the device says as a connection opens (a banner, a Telnet negotiation).
    fn greeting(&mut self, _connection: &mut Self::Connection, _now: Instant) -> Vec<u8> {
        Vec::new()
    }

    /// What the device says as its serial port is opened: the network greeting unless the
    /// device's serial port differs (no banner, no login on an Extron's RS-232).
    fn serial_greeting(&mut self, connection: &mut Self::Connection, now: Instant) -> Vec<u8> {
        self.greeting(connection, now)
    }

    /// Bytes from the controller on `connection`; returns what the device answers.
    fn received(&mut self, connection: &mut Self::Connection, now: Instant, data: &[u8])
    -> Vec<u8>;

    /// Whether the device closes `connection` once its last answer is written (a refused
    /// login; firmware that hangs up after every reply).
    fn hangs_up(&self, _connection: &Self::Connection) -> bool {
        false
    }

    /// How long the device keeps `connection` open while it sends nothing (PJLink: 30 s).
    fn idle_timeout(&self, _connection: &Self::Connection) -> Option<Duration> {
        None
    }

    /// How long the device takes before answering (an injected slow reply).
    fn reply_delay(&self) -> Duration {
        Duration::ZERO
    }

    /// Answers `connection` held back until now (a device that stalled): asked after
    /// every [`Served::change`].
    fn release(&mut self, _connection: &mut Self::Connection, _now: Instant) -> Vec<u8> {
        Vec::new()
    }
}

/// The clock a served model sees: tokio's, so a paused test clock applies.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// A model on the wire. Dropping it does not stop it; [`Served::shutdown`] does.
pub struct Served<M: DeviceModel> {
    listener: Option<Listener>,
    udp: Option<(SocketAddr, JoinHandle<()>)>,
    model: Arc<Mutex<M>>,
    /// Unsolicited bytes for every open connection (front-panel changes).
    changes: broadcast::Sender<Vec<u8>>,
    /// The connections on pseudo-terminals, ended by [`Served::unplug`].
    ptys: Mutex<Vec<JoinHandle<()>>>,
}

impl<M: DeviceModel> Served<M> {
    pub fn local_addr(&self) -> SocketAddr {
        match (&self.listener, &self.udp) {
            (Some(listener), _) => listener.local_addr(),
            (None, Some((addr, _))) => *addr,
            (None, None) => unreachable!("a served model listens somewhere"),
        }
    }

    /// How many TCP connections were accepted since start.
    pub fn connection_count(&self) -> usize {
        self.listener.as_ref().map_or(0, Listener::connection_count)
    }

    /// Reads the model's state.
    pub fn with<R>(&self, read: impl FnOnce(&M) -> R) -> R {
        read(&lock(&self.model))
    }

    /// Changes the model as its front panel would; the bytes `change` returns are sent to
    /// every open connection, as the device reports a change unprompted, and each
    /// connection is given what the model [releases](DeviceModel::release).
    pub fn change(&self, change: impl FnOnce(&mut M) -> Vec<u8>) {
        let bytes = change(&mut lock(&self.model));
        let _ = self.changes.send(bytes);
    }

    /// Changes the model without a word on the wire (an injected fault, a silent setting);
    /// returns what `update` returns.
    pub fn update<R>(&self, update: impl FnOnce(&mut M) -> R) -> R {
        let result = update(&mut lock(&self.model));
        let _ = self.changes.send(Vec::new());
        result
    }

    /// Also serves the model on a new pseudo-terminal, as on its RS-232 port; returns the
    /// path to give a site as `serial_port`.
    pub fn serve_pty(&self) -> io::Result<String> {
        let model = Arc::clone(&self.model);
        let changes = self.changes.subscribe();
        let (path, task) =
            sim_server::spawn_pty(move |link, _| serve_link(link, model, changes, true))?;
        lock(&self.ptys).push(task);
        Ok(path)
    }

    /// Pulls the cable out of every pseudo-terminal served so far.
    pub fn unplug(&self) {
        for task in lock(&self.ptys).drain(..) {
            task.abort();
        }
    }

    /// Stops listening and closes every connection, serial ones included.
    pub async fn shutdown(&self) {
        self.unplug();
        if let Some(listener) = &self.listener {
            listener.shutdown().await;
        }
        if let Some((_, task)) = &self.udp {
            task.abort();
        }
    }
}

/// Serves `model` on TCP at `addr` (port 0 for any free port).
pub fn serve_tcp<M: DeviceModel>(
    model: M,
    addr: SocketAddr,
    name: &'static str,
) -> io::Result<Served<M>> {
    let model = Arc::new(Mutex::new(model));
    let (changes, _) = broadcast::channel(64);
    let listener = {
        let model = Arc::clone(&model);
        let changes = changes.clone();
        Listener::start(addr, name, move |stream, _| {
            let _ = stream.set_nodelay(true);
            serve_link(
                Box::new(stream),
                Arc::clone(&model),
                changes.subscribe(),
                false,
            )
        })?
    };
    Ok(Served {
        listener: Some(listener),
        udp: None,
        model,
        changes,
        ptys: Mutex::new(Vec::new()),
    })
}

/// Serves `model` on UDP at `addr`: every datagram is read as it comes, each sender with
/// a connection state of its own, and the answer goes back to the sender.
pub async fn serve_udp<M: DeviceModel>(model: M, addr: SocketAddr) -> io::Result<Served<M>> {
    let socket = tokio::net::UdpSocket::bind(addr).await?;
    let local = socket.local_addr()?;
    let model = Arc::new(Mutex::new(model));
    let (changes, _) = broadcast::channel(64);
    let task = {
        let model = Arc::clone(&model);
        tokio::spawn(async move {
            let mut peers: std::collections::HashMap<SocketAddr, M::Connection> =
                std::collections::HashMap::new();
            let mut buf = vec![0u8; 2048];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                // A bounded table: a flood of senders cannot grow it without end.
                if peers.len() >= 64 && !peers.contains_key(&peer) {
                    peers.clear();
                }
                let connection = peers.entry(peer).or_default();
                let reply = lock(&model).received(connection, now(), &buf[..n]);
                if !reply.is_empty() {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        })
    };
    Ok(Served {
        listener: None,
        udp: Some((local, task)),
        model,
        changes,
        ptys: Mutex::new(Vec::new()),
    })
}

async fn serve_link<M: DeviceModel>(
    mut link: Box<dyn Link>,
    model: Arc<Mutex<M>>,
    mut changes: broadcast::Receiver<Vec<u8>>,
    serial: bool,
) {
    let mut connection = M::Connection::default();
    let hello = if serial {
        lock(&model).serial_greeting(&mut connection, now())
    } else {
        lock(&model).greeting(&mut connection, now())
    };
    if !hello.is_empty() && link.write_all(&hello).await.is_err() {
        return;
    }
    if lock(&model).hangs_up(&connection) {
        return;
    }
    let mut buf = vec![0u8; 2048];
    let deadline_for = |connection: &M::Connection| {
        let timeout = lock(&model).idle_timeout(connection);
        timeout.map(|timeout| tokio::time::Instant::now() + timeout)
    };
    let mut idle_deadline_at = deadline_for(&connection);
    loop {
        let idle_deadline = idle_deadline_at;
        let idle_out = async {
            match idle_deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        let reply = tokio::select! {
            read = link.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let reply = lock(&model).received(&mut connection, now(), &buf[..n]);
                idle_deadline_at = deadline_for(&connection);
                let delay = lock(&model).reply_delay();
                if !reply.is_empty() && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                reply
            }
            change = changes.recv() => match change {
                Ok(mut bytes) => {
                    bytes.extend(lock(&model).release(&mut connection, now()));
                    bytes
                }
                Err(broadcast::error::RecvError::Lagged(_)) => Vec::new(),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            () = idle_out => return,
        };
        if !reply.is_empty() && link.write_all(&reply).await.is_err() {
            return;
        }
        if lock(&model).hangs_up(&connection) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers every byte string with itself in upper case, after a greeting; counts
    /// what it heard.
    #[derive(Default)]
    struct Shouter {
        heard: usize,
    }

    impl DeviceModel for Shouter {
        type Connection = ();

        fn greeting(&mut self, _: &mut (), _: Instant) -> Vec<u8> {
            b"hello\n".to_vec()
        }

        fn received(&mut self, _: &mut (), _: Instant, data: &[u8]) -> Vec<u8> {
            self.heard += data.len();
            data.to_ascii_uppercase()
        }
    }

    async fn read_exactly(link: &mut (impl AsyncReadExt + Unpin), n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        link.read_exact(&mut buf).await.unwrap();
        buf
    }

    #[tokio::test]
    async fn tcp_greets_answers_and_broadcasts_changes() {
        let served = serve_tcp(
            Shouter::default(),
            "127.0.0.1:0".parse().unwrap(),
            "shouter",
        )
        .unwrap();
        let mut a = tokio::net::TcpStream::connect(served.local_addr())
            .await
            .unwrap();
        let mut b = tokio::net::TcpStream::connect(served.local_addr())
            .await
            .unwrap();
        assert_eq!(read_exactly(&mut a, 6).await, b"hello\n");
        assert_eq!(read_exactly(&mut b, 6).await, b"hello\n");
        a.write_all(b"abc").await.unwrap();
        assert_eq!(read_exactly(&mut a, 3).await, b"ABC");
        served.change(|_| b"front panel\n".to_vec());
        assert_eq!(read_exactly(&mut a, 12).await, b"front panel\n");
        assert_eq!(read_exactly(&mut b, 12).await, b"front panel\n");
        assert_eq!(served.with(|m| m.heard), 3);
        assert_eq!(served.connection_count(), 2);
        served.shutdown().await;
    }

    /// Holds its answers while `closed`, hangs up after `bye`, and drops a connection
    /// that stays silent for `idle`.
    struct Gate {
        closed: bool,
        idle: Duration,
        heard: usize,
    }

    #[derive(Default)]
    struct GateConnection {
        held: Vec<u8>,
        bye: bool,
    }

    impl DeviceModel for Gate {
        type Connection = GateConnection;

        fn received(&mut self, c: &mut GateConnection, _: Instant, data: &[u8]) -> Vec<u8> {
            c.bye = data == b"bye";
            self.heard += data.len();
            if self.closed {
                c.held.extend_from_slice(data);
                return Vec::new();
            }
            data.to_vec()
        }

        fn hangs_up(&self, c: &GateConnection) -> bool {
            c.bye
        }

        fn idle_timeout(&self, _: &GateConnection) -> Option<Duration> {
            Some(self.idle)
        }

        fn release(&mut self, c: &mut GateConnection, _: Instant) -> Vec<u8> {
            if self.closed {
                return Vec::new();
            }
            std::mem::take(&mut c.held)
        }
    }

    async fn closes(link: &mut tokio::net::TcpStream) -> bool {
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(Duration::from_secs(10), link.read(&mut buf)).await;
        matches!(read, Ok(Ok(0)) | Ok(Err(_)))
    }

    #[tokio::test]
    async fn held_answers_come_on_update_and_connections_end_by_hang_up_or_idle() {
        let gate = Gate {
            closed: true,
            idle: Duration::from_secs(3600),
            heard: 0,
        };
        let served = serve_tcp(gate, "127.0.0.1:0".parse().unwrap(), "gate").unwrap();
        let mut a = tokio::net::TcpStream::connect(served.local_addr())
            .await
            .unwrap();
        a.write_all(b"late").await.unwrap();
        let heard = async {
            while served.with(|gate| gate.heard) < 4 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), heard)
            .await
            .expect("the model never heard the request");
        // The answer waited for the gate to open, and comes unasked.
        served.update(|gate| gate.closed = false);
        let answer = tokio::time::timeout(Duration::from_secs(10), read_exactly(&mut a, 4));
        assert_eq!(answer.await.expect("no held answer"), b"late");
        a.write_all(b"bye").await.unwrap();
        assert_eq!(read_exactly(&mut a, 3).await, b"bye");
        assert!(closes(&mut a).await, "no hang-up after bye");

        served.update(|gate| gate.idle = Duration::from_millis(20));
        let mut b = tokio::net::TcpStream::connect(served.local_addr())
            .await
            .unwrap();
        assert!(closes(&mut b).await, "a silent connection stayed open");
        served.shutdown().await;
    }

    #[tokio::test]
    async fn udp_answers_each_sender() {
        let served = serve_udp(Shouter::default(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(b"ping", served.local_addr()).await.unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = socket.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"PING"[..], served.local_addr()));
        served.shutdown().await;
    }

    #[tokio::test]
    async fn a_pty_carries_the_same_model() {
        let served = serve_tcp(
            Shouter::default(),
            "127.0.0.1:0".parse().unwrap(),
            "shouter",
        )
        .unwrap();
        let path = served.serve_pty().unwrap();
        let mut port = tokio_serial::SerialStream::open(&tokio_serial::new(&path, 9600)).unwrap();
        assert_eq!(read_exactly(&mut port, 6).await, b"hello\n");
        port.write_all(b"rs232").await.unwrap();
        assert_eq!(read_exactly(&mut port, 5).await, b"RS232");
        served.shutdown().await;
    }
}
