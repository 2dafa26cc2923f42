//! VISCA cameras on real sockets: the [`model`](super::model) served with tokio, plus a
//! [`Handle`] for front-panel changes and fault injection.
//!
//! - [`start_udp`]: Sony VISCA over IP, one UDP socket. Each datagram is answered to its
//!   sender; RESET is honoured, replies carry the message's sequence number, and a
//!   message that comes again with the same sequence number (a client's resend) gets the
//!   same answer again without being carried out twice. Only camera 1 answers.
//! - [`start_tcp`]: bare VISCA on TCP (PTZOptics-style), every connection talking to the
//!   same chain of cameras.
//! - [`Handle::serve_pty`]: bare VISCA on a pseudo-terminal, as on the RS-232 port of the
//!   first camera of a chain of [`Config::cameras`].
//!
//! Motion (zoom, pan, tilt) runs on the clock: positions move between inquiries.
//! [`Handle::settle`] finishes every move at once, so tests need not wait.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use avgate_drivers::visca::simulator::{self, Config};
//! let camera = simulator::start_udp(Config::default()).await?;
//! println!("VISCA over IP camera on {}", camera.local_addr());
//! camera.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{self, Instant};
use tracing::debug;

use super::frame::{self, ErrorCode, IpMessage, Message, PacketReader, Reply};
use super::model::{IpPeer, Model, Settings};
use crate::sim_server::{Link, Listener, lock, spawn_pty};

pub use super::model::{CameraState, Position};

/// How the simulated cameras are set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; port 0 picks a free one (see [`Handle::local_addr`]). VISCA over
    /// IP cameras use UDP 52381.
    pub listen: SocketAddr,
    /// Cameras on the chain (1 to 7), addressed 1..=n on serial and TCP.
    pub cameras: u8,
    /// Every camera's state at start.
    pub power: bool,
    pub zoom: u16,
    pub pan: i16,
    pub tilt: i16,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cameras: 1,
            power: true,
            zoom: 0,
            pan: 0,
            tilt: 0,
        }
    }
}

impl Config {
    fn settings(&self) -> Settings {
        Settings {
            cameras: self.cameras,
            power: self.power,
            zoom: self.zoom,
            pan: self.pan,
            tilt: self.tilt,
        }
    }
}

/// Misbehaviour for the next message answered, so tests can check how a client copes.
/// Each fault applies once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The next message is carried out but none of its replies is sent; over UDP the
    /// client must resend (and gets the answer without a second execution).
    DropReply,
    /// The next command's ACK is not sent; its Completion is.
    DropAck,
    /// The next replies come with their bytes reversed, as noise would leave them.
    Garble,
    /// The next replies wait this long first (other traffic is answered meanwhile).
    Delay(Duration),
    /// The next message is not carried out and answered with this error instead.
    ErrorReply(ErrorCode),
}

/// Faults waiting for the next message.
#[derive(Debug, Default)]
struct Pending {
    drop_reply: bool,
    drop_ack: bool,
    garble: bool,
    delay: Option<Duration>,
    error: Option<ErrorCode>,
}

/// The cameras and the clock their motion runs on.
#[derive(Debug)]
struct Cameras {
    model: Model,
    last_tick: Instant,
}

/// State shared by the server tasks and every [`Handle`].
#[derive(Debug)]
struct Shared {
    cameras: Mutex<Cameras>,
    pending: Mutex<Pending>,
    received: Mutex<Vec<String>>,
    executed: Mutex<Vec<String>>,
    /// Pseudo-terminals being served (see [`Handle::serve_pty`]).
    ptys: Mutex<Vec<JoinHandle<()>>>,
}

/// What the cameras are served on.
#[derive(Debug)]
enum Server {
    Udp {
        local_addr: SocketAddr,
        stop: watch::Sender<bool>,
        task: Mutex<Option<JoinHandle<()>>>,
    },
    Tcp(Listener),
}

/// Controls a running simulator. Cheap to clone; the simulator runs until
/// [`Handle::shutdown`] (or the end of the tokio runtime). Front-panel methods act on
/// camera 1, the only one over IP.
#[derive(Debug, Clone)]
pub struct Handle {
    shared: Arc<Shared>,
    server: Arc<Server>,
}

fn shared(config: &Config) -> Arc<Shared> {
    Arc::new(Shared {
        cameras: Mutex::new(Cameras {
            model: Model::new(config.settings()),
            last_tick: Instant::now(),
        }),
        pending: Mutex::new(Pending::default()),
        received: Mutex::new(Vec::new()),
        executed: Mutex::new(Vec::new()),
        ptys: Mutex::new(Vec::new()),
    })
}

/// Starts a VISCA over IP camera on UDP `config.listen`.
///
/// The socket is bound with SO_REUSEADDR so that a client may also bind the camera's port
/// on the wildcard address, as visca-over-ip does for its inquiry socket: with the camera
/// on `127.0.0.2:<port>`, datagrams to the camera reach this more specific binding and its
/// replies to `127.0.0.1:<port>` reach only the client (PROTOCOLS.md §5.4).
pub async fn start_udp(config: Config) -> io::Result<Handle> {
    let shared = shared(&config);
    let socket = bind_reusable_udp(config.listen)?;
    let local_addr = socket.local_addr()?;
    let stop = watch::Sender::new(false);
    let task = tokio::spawn(serve_udp(
        Arc::clone(&shared),
        Arc::new(socket),
        stop.subscribe(),
    ));
    debug!(%local_addr, "visca simulator listening (VISCA over IP)");
    Ok(Handle {
        shared,
        server: Arc::new(Server::Udp {
            local_addr,
            stop,
            task: Mutex::new(Some(task)),
        }),
    })
}

/// A UDP socket on `address` with SO_REUSEADDR set before binding (tokio cannot set it).
fn bind_reusable_udp(address: SocketAddr) -> io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// Starts cameras speaking bare VISCA on TCP `config.listen`.
pub async fn start_tcp(config: Config) -> io::Result<Handle> {
    let shared = shared(&config);
    let serving = Arc::clone(&shared);
    let listener = Listener::start(config.listen, "visca simulator", move |stream, peer| {
        serve_stream(Arc::clone(&serving), Box::new(stream), peer.to_string())
    })?;
    Ok(Handle {
        shared,
        server: Arc::new(Server::Tcp(listener)),
    })
}

impl Handle {
    pub fn local_addr(&self) -> SocketAddr {
        match &*self.server {
            Server::Udp { local_addr, .. } => *local_addr,
            Server::Tcp(listener) => listener.local_addr(),
        }
    }

    /// Camera 1's state now.
    pub fn state(&self) -> CameraState {
        self.camera(1).expect("the chain always has camera 1")
    }

    /// Camera `address`'s state now, if the chain has it.
    pub fn camera(&self, address: u8) -> Option<CameraState> {
        self.shared.cameras().camera(address)
    }

    /// Finishes every move at once (zoom and pan/tilt targets reached, drives stopped).
    pub fn settle(&self) {
        self.shared.cameras().settle();
    }

    /// Presses the power button.
    pub fn set_power(&self, on: bool) {
        self.shared.cameras().set_power(1, on);
    }

    /// Puts the lens at `zoom` (0 to 0x4000).
    pub fn set_zoom(&self, zoom: u16) {
        self.shared.cameras().set_zoom(1, zoom);
    }

    /// Puts the head at `pan`, `tilt`.
    pub fn set_pan_tilt(&self, pan: i16, tilt: i16) {
        self.shared.cameras().set_pan_tilt(1, pan, tilt);
    }

    /// Stores `position` as preset `number`.
    pub fn store_preset(&self, number: u8, position: Position) {
        self.shared.cameras().store_preset(1, number, position);
    }

    pub fn inject(&self, fault: Fault) {
        let mut pending = lock(&self.shared.pending);
        match fault {
            Fault::DropReply => pending.drop_reply = true,
            Fault::DropAck => pending.drop_ack = true,
            Fault::Garble => pending.garble = true,
            Fault::Delay(delay) => pending.delay = Some(delay),
            Fault::ErrorReply(code) => pending.error = Some(code),
        }
    }

    /// Every VISCA packet received, in order, in hex (`81 01 04 00 02 FF`): resends and
    /// refused packets included.
    pub fn commands_received(&self) -> Vec<String> {
        lock(&self.shared.received).clone()
    }

    /// The packets the cameras acted on: those received, less the resends answered from
    /// memory and those refused by [`Fault::ErrorReply`].
    pub fn commands_executed(&self) -> Vec<String> {
        lock(&self.shared.executed).clone()
    }

    /// Serves the chain on a new pseudo-terminal, as on the first camera's RS-232 port,
    /// and returns the path of the device end (`/dev/pts/N`) for the gateway to open.
    pub fn serve_pty(&self) -> io::Result<String> {
        let shared = Arc::clone(&self.shared);
        let (path, task) = spawn_pty(|link, label| serve_stream(shared, link, label))?;
        lock(&self.shared.ptys).push(task);
        Ok(path)
    }

    /// Pulls the cable: every pseudo-terminal served goes away.
    pub fn unplug(&self) {
        for task in lock(&self.shared.ptys).drain(..) {
            task.abort();
        }
    }

    /// Stops serving and closes every connection and pseudo-terminal; returns once done,
    /// so the address can be bound again right away. Later calls return at once.
    pub async fn shutdown(&self) {
        self.unplug();
        match &*self.server {
            Server::Udp { stop, task, .. } => {
                stop.send_replace(true);
                let task = lock(task).take();
                if let Some(task) = task {
                    let _ = task.await;
                }
            }
            Server::Tcp(listener) => listener.shutdown().await,
        }
    }
}

impl Shared {
    /// The cameras, moved on to now.
    fn cameras(&self) -> CamerasGuard<'_> {
        let mut cameras = lock(&self.cameras);
        let now = Instant::now();
        let elapsed = now - cameras.last_tick;
        cameras.last_tick = now;
        cameras.model.advance(elapsed);
        CamerasGuard(cameras)
    }

    /// Answers one packet, or refuses it with an injected error.
    fn carry_out(&self, packet: &[u8]) -> Vec<Vec<u8>> {
        if let Some(code) = lock(&self.pending).error.take() {
            let camera = match Message::parse(packet) {
                Some((address @ 1..=7, _)) => address,
                _ => 1,
            };
            let socket = if code.0 <= 0x03 { 0 } else { 1 };
            return vec![
                Reply::Error {
                    camera,
                    socket,
                    code,
                }
                .encode(),
            ];
        }
        lock(&self.executed).push(frame::hex(packet));
        self.cameras().answer(packet)
    }

    fn record(&self, packet: &[u8]) {
        debug!(packet = %frame::hex(packet), "visca simulator <-");
        lock(&self.received).push(frame::hex(packet));
    }

    /// Applies the pending faults to the replies to one message (each given with whether
    /// it is an ACK); returns what to send and how long to wait first.
    fn outgoing(&self, replies: Vec<(Vec<u8>, bool)>) -> (Vec<Vec<u8>>, Duration) {
        let mut pending = lock(&self.pending);
        if std::mem::take(&mut pending.drop_reply) {
            return (Vec::new(), Duration::ZERO);
        }
        let drop_ack = std::mem::take(&mut pending.drop_ack);
        let garble = std::mem::take(&mut pending.garble);
        let delay = pending.delay.take().unwrap_or_default();
        let replies = replies
            .into_iter()
            .filter(|(_, ack)| !(drop_ack && *ack))
            .map(|(bytes, _)| {
                if garble {
                    bytes.into_iter().rev().collect()
                } else {
                    bytes
                }
            })
            .collect();
        (replies, delay)
    }
}

/// The locked cameras (a named type so `Shared::cameras` can advance them first).
struct CamerasGuard<'a>(MutexGuard<'a, Cameras>);

impl std::ops::Deref for CamerasGuard<'_> {
    type Target = Model;
    fn deref(&self) -> &Model {
        &self.0.model
    }
}

impl std::ops::DerefMut for CamerasGuard<'_> {
    fn deref_mut(&mut self) -> &mut Model {
        &mut self.0.model
    }
}

fn is_ack(packet: &[u8]) -> bool {
    matches!(Reply::parse(packet), Reply::Ack { .. })
}

/// Starts a camera speaking bare VISCA in UDP datagrams on `config.listen`, without
/// Sony's header, as PTZ cameras of other vendors do (HuddleCam on 52381, Avonic on 1259).
pub async fn start_udp_raw(config: Config) -> io::Result<Handle> {
    let shared = shared(&config);
    let socket = bind_reusable_udp(config.listen)?;
    let local_addr = socket.local_addr()?;
    let stop = watch::Sender::new(false);
    let task = tokio::spawn(serve_udp_raw(
        Arc::clone(&shared),
        Arc::new(socket),
        stop.subscribe(),
    ));
    debug!(%local_addr, "visca simulator listening (raw VISCA over UDP)");
    Ok(Handle {
        shared,
        server: Arc::new(Server::Udp {
            local_addr,
            stop,
            task: Mutex::new(Some(task)),
        }),
    })
}

/// Each datagram carries bare packets; each reply goes back in a datagram of its own.
async fn serve_udp_raw(
    shared: Arc<Shared>,
    socket: Arc<UdpSocket>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = [0u8; 2048];
    loop {
        let (n, peer) = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(e) => {
                    debug!(error = %e, "visca simulator: receive failed");
                    continue;
                }
            },
        };
        let mut reader = PacketReader::commands();
        reader.push(&buf[..n]);
        while let Some(packet) = reader.next_packet() {
            shared.record(&packet);
            let replies = shared
                .carry_out(&packet)
                .into_iter()
                .map(|reply| {
                    let ack = is_ack(&reply);
                    (reply, ack)
                })
                .collect();
            let (replies, delay) = shared.outgoing(replies);
            time::sleep(delay).await;
            for reply in replies {
                debug!(%peer, reply = %frame::hex(&reply), "visca simulator ->");
                if let Err(e) = socket.send_to(&reply, peer).await {
                    debug!(%peer, error = %e, "visca simulator: send failed");
                }
            }
        }
    }
}

async fn serve_udp(shared: Arc<Shared>, socket: Arc<UdpSocket>, mut stop: watch::Receiver<bool>) {
    let mut peers: HashMap<SocketAddr, IpPeer> = HashMap::new();
    let mut buf = [0u8; 2048];
    loop {
        let (n, peer) = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(e) => {
                    debug!(error = %e, "visca simulator: receive failed");
                    continue;
                }
            },
        };
        let datagram = &buf[..n];
        let answer = peers
            .entry(peer)
            .or_default()
            .datagram(datagram, |packet| shared.carry_out(packet));
        if let Some(packet) = &answer.packet {
            shared.record(packet);
        }
        let replies = answer
            .replies
            .iter()
            .map(|reply: &IpMessage| (reply.encode(), is_ack(&reply.payload)))
            .collect();
        let (replies, delay) = shared.outgoing(replies);
        let socket = Arc::clone(&socket);
        let send = async move {
            time::sleep(delay).await;
            for reply in replies {
                debug!(%peer, reply = %frame::hex(&reply), "visca simulator ->");
                if let Err(e) = socket.send_to(&reply, peer).await {
                    debug!(%peer, error = %e, "visca simulator: send failed");
                }
            }
        };
        if delay.is_zero() {
            send.await;
        } else {
            tokio::spawn(send);
        }
    }
}

/// Serves one byte stream (a TCP connection or a pty) until it closes.
async fn serve_stream(shared: Arc<Shared>, mut link: Box<dyn Link>, peer: String) {
    debug!(%peer, "visca simulator: connection opened");
    let mut reader = PacketReader::commands();
    let mut buf = [0u8; 512];
    loop {
        let n = match link.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        reader.push(&buf[..n]);
        while let Some(packet) = reader.next_packet() {
            shared.record(&packet);
            let replies = shared
                .carry_out(&packet)
                .into_iter()
                .map(|reply| {
                    let ack = is_ack(&reply);
                    (reply, ack)
                })
                .collect();
            let (replies, delay) = shared.outgoing(replies);
            if !delay.is_zero() {
                time::sleep(delay).await;
            }
            if link.write_all(&replies.concat()).await.is_err() {
                debug!(%peer, "visca simulator: connection lost");
                return;
            }
        }
    }
    debug!(%peer, "visca simulator: connection closed");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::visca::frame::hex;
    use crate::{DriverSettings, Output, Request};
    use serde_json::{Value, json};
    use tokio::net::TcpStream;

    /// Bound on every wait, so a broken simulator fails the test instead of hanging it.
    const PATIENCE: Duration = Duration::from_secs(5);

    fn bytes(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    async fn udp_client(sim: &Handle) -> UdpSocket {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(sim.local_addr()).await.unwrap();
        socket
    }

    /// Sends a datagram and returns the next `replies` datagrams, in hex.
    async fn exchange(socket: &UdpSocket, wire: &str, replies: usize) -> Vec<String> {
        socket.send(&bytes(wire)).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 64];
        for _ in 0..replies {
            let n = time::timeout(PATIENCE, socket.recv(&mut buf))
                .await
                .expect("no reply")
                .unwrap();
            got.push(hex(&buf[..n]));
        }
        got
    }

    #[tokio::test]
    async fn udp_answers_reset_commands_and_inquiries() {
        let sim = start_udp(Config::default()).await.unwrap();
        let client = udp_client(&sim).await;
        assert_eq!(
            exchange(&client, "02 00 00 01 00 00 00 01 01", 1).await,
            ["02 01 00 01 00 00 00 01 01"]
        );
        assert_eq!(
            exchange(&client, "01 00 00 05 00 00 00 02 81 01 00 01 FF", 1).await,
            ["01 11 00 03 00 00 00 02 90 50 FF"]
        );
        assert_eq!(
            exchange(&client, "01 00 00 06 00 00 00 03 81 01 04 00 03 FF", 2).await,
            [
                "01 11 00 03 00 00 00 03 90 41 FF",
                "01 11 00 03 00 00 00 03 90 51 FF"
            ]
        );
        assert!(!sim.state().power);
        sim.set_zoom(0x1234);
        assert_eq!(
            exchange(&client, "01 10 00 05 00 00 00 07 81 09 04 47 FF", 1).await,
            ["01 11 00 07 00 00 00 07 90 50 01 02 03 04 FF"]
        );
        assert_eq!(
            exchange(&client, "01 00 00 07 00 00 00 09 81 01 04 3F 02 02 FF", 1).await,
            ["01 11 00 04 00 00 00 09 90 62 41 FF"],
            "standby: not executable (socket 2: socket 1 ran the power-off)"
        );
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn udp_dropped_reply_is_answered_again_on_resend_without_a_second_run() {
        let sim = start_udp(Config::default()).await.unwrap();
        let client = udp_client(&sim).await;
        exchange(&client, "02 00 00 01 00 00 00 01 01", 1).await;
        sim.inject(Fault::DropReply);
        let tele = "01 00 00 06 00 00 00 02 81 01 04 07 27 FF";
        client.send(&bytes(tele)).await.unwrap();
        // The resend, same sequence number, gets the answer the first copy should have.
        assert_eq!(
            exchange(&client, tele, 2).await,
            [
                "01 11 00 03 00 00 00 02 90 41 FF",
                "01 11 00 03 00 00 00 02 90 51 FF"
            ]
        );
        assert_eq!(sim.commands_received(), ["81 01 04 07 27 FF"; 2]);
        assert_eq!(sim.commands_executed(), ["81 01 04 07 27 FF"]);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn udp_faults() {
        let sim = start_udp(Config::default()).await.unwrap();
        let client = udp_client(&sim).await;
        sim.inject(Fault::DropAck);
        assert_eq!(
            exchange(&client, "01 00 00 06 00 00 00 01 81 01 04 00 02 FF", 1).await,
            ["01 11 00 03 00 00 00 01 90 51 FF"]
        );
        sim.inject(Fault::Garble);
        assert_eq!(
            exchange(&client, "01 10 00 05 00 00 00 02 81 09 04 00 FF", 1).await,
            ["FF 02 50 90 02 00 00 00 04 00 11 01"]
        );
        sim.inject(Fault::ErrorReply(ErrorCode::BUFFER_FULL));
        assert_eq!(
            exchange(&client, "01 00 00 06 00 00 00 03 81 01 04 00 03 FF", 1).await,
            ["01 11 00 04 00 00 00 03 90 60 03 FF"]
        );
        assert!(sim.state().power, "refused, not carried out");
        sim.inject(Fault::Delay(Duration::from_millis(200)));
        let sent = Instant::now();
        exchange(&client, "01 10 00 05 00 00 00 04 81 09 04 00 FF", 1).await;
        assert!(sent.elapsed() >= Duration::from_millis(200));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn tcp_serves_a_chain_and_faults() {
        let sim = start_tcp(Config {
            cameras: 2,
            ..Config::default()
        })
        .await
        .unwrap();
        let mut stream = TcpStream::connect(sim.local_addr()).await.unwrap();
        let mut ask = async |wire: &str, expect: &str| {
            stream.write_all(&bytes(wire)).await.unwrap();
            let mut buf = vec![0; bytes(expect).len()];
            time::timeout(PATIENCE, stream.read_exact(&mut buf))
                .await
                .expect("no reply")
                .unwrap();
            assert_eq!(hex(&buf), expect, "answer to {wire}");
        };
        ask("88 30 01 FF", "88 30 03 FF").await;
        ask("82 01 04 00 03 FF", "A0 41 FF A0 51 FF").await;
        // Split across writes, with noise in front.
        ask("00 12 FF 81 09", "").await;
        ask("04 00 FF", "90 50 02 FF").await;
        sim.inject(Fault::Garble);
        ask("82 09 04 00 FF", "FF 03 50 A0").await;
        assert!(!sim.camera(2).unwrap().power);
        assert!(sim.state().power);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_frees_the_udp_port() {
        let sim = start_udp(Config::default()).await.unwrap();
        let addr = sim.local_addr();
        sim.shutdown().await;
        sim.shutdown().await;
        let again = start_udp(Config {
            listen: addr,
            ..Config::default()
        })
        .await
        .expect("the same port binds again at once");
        let client = udp_client(&again).await;
        assert_eq!(
            exchange(&client, "02 00 00 01 00 00 00 05 01", 1)
                .await
                .len(),
            1
        );
        again.shutdown().await;
    }

    fn now() -> std::time::Instant {
        Instant::now().into_std()
    }

    /// A byte pipe the test loop drives the session over.
    enum Pipe {
        Udp(UdpSocket),
        Stream(Box<dyn Link>),
    }

    impl Pipe {
        async fn send(&mut self, bytes: &[u8]) {
            match self {
                Pipe::Udp(socket) => socket.send(bytes).await.map(|_| ()),
                Pipe::Stream(stream) => stream.write_all(bytes).await,
            }
            .unwrap();
        }

        async fn recv(&mut self, buf: &mut [u8]) -> usize {
            match self {
                Pipe::Udp(socket) => socket.recv(buf).await,
                Pipe::Stream(stream) => stream.read(buf).await,
            }
            .unwrap()
        }
    }

    /// Runs requests through the real driver session against the simulator, as the
    /// gateway's runtime would (minus retries), with the session's own timers, and returns
    /// every output. `before` runs before each request with its index (fault injection).
    async fn drive(
        mut pipe: Pipe,
        options: Value,
        requests: &[Request],
        mut before: impl FnMut(usize),
    ) -> Vec<Output> {
        let Value::Object(options) = options else {
            panic!("options must be an object")
        };
        let settings = DriverSettings {
            options,
            password: None,
        };
        let mut session = (crate::visca::DRIVER.build)(&settings).unwrap();
        session.connected(now());
        let mut requests = requests.iter().enumerate();
        let mut outputs = Vec::new();
        let mut buf = [0; 256];
        let give_up = Instant::now() + PATIENCE;
        loop {
            while let Some(output) = session.poll_output() {
                match &output {
                    Output::Transmit(bytes) => pipe.send(bytes).await,
                    Output::Ready | Output::Completed(_) => match requests.next() {
                        Some((index, request)) => {
                            before(index);
                            session.start(now(), request).unwrap();
                        }
                        None => {
                            outputs.push(output);
                            return outputs;
                        }
                    },
                    Output::Fatal(_) => {
                        outputs.push(output);
                        return outputs;
                    }
                    Output::Update { .. } | Output::Discovered(_) => {}
                    Output::Paused => session.resume(now()),
                }
                outputs.push(output);
            }
            let wake = session
                .poll_timeout()
                .map_or(give_up, |t| Instant::from_std(t).min(give_up));
            assert!(Instant::now() < give_up, "session stuck: {outputs:?}");
            match time::timeout_at(wake, pipe.recv(&mut buf)).await {
                Ok(n) => {
                    assert!(n > 0, "simulator closed the connection");
                    session.received(now(), &buf[..n]);
                }
                Err(_) => session.handle_timeout(now()),
            }
        }
    }

    fn command(name: &str, args: Value) -> Request {
        let Value::Object(args) = args else {
            panic!("args must be an object")
        };
        Request::Command {
            name: name.into(),
            args,
        }
    }

    fn poll(query: &str) -> Request {
        Request::Poll {
            query: query.into(),
        }
    }

    fn updates(outputs: &[Output]) -> Vec<(String, Value)> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Update { point, value } => Some((point.clone(), value.clone())),
                _ => None,
            })
            .collect()
    }

    fn failures(outputs: &[Output]) -> Vec<String> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Completed(Err(e)) => Some(e.message.clone()),
                Output::Fatal(e) => Some(e.to_string()),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn driver_session_over_udp_with_lost_and_late_replies() {
        let sim = start_udp(Config {
            power: false,
            ..Config::default()
        })
        .await
        .unwrap();
        sim.set_pan_tilt(-16, 300);
        let requests = [
            command("power", json!({"on": true})),
            command("zoom_to", json!({"position": 0x1234})),
            poll("zoom"),
            poll("pan_tilt"),
            command("preset", json!({"action": "set", "number": 9})),
            poll("power"),
        ];
        let fault_sim = sim.clone();
        let outputs = drive(
            Pipe::Udp(udp_client(&sim).await),
            json!({"framing": "ip", "resend_interval_ms": 100}),
            &requests,
            |index| match index {
                // The power-on's replies are lost; the resend brings them.
                0 => fault_sim.inject(Fault::DropReply),
                // The answer is late, after the resend was answered: stale, ignored.
                1 => fault_sim.inject(Fault::Delay(Duration::from_millis(250))),
                2 => fault_sim.settle(),
                // Noise in place of the answer: ignored, the resend is answered.
                4 => fault_sim.inject(Fault::Garble),
                _ => {}
            },
        )
        .await;
        assert_eq!(failures(&outputs), Vec::<String>::new());
        assert_eq!(
            updates(&outputs),
            [
                ("power".to_string(), json!("on")),
                ("zoom".to_string(), json!(0x1234)),
                ("pan".to_string(), json!(-16)),
                ("tilt".to_string(), json!(300)),
                ("preset".to_string(), json!(9)),
                ("power".to_string(), json!("on")),
            ]
        );
        let executed = sim.commands_executed();
        assert_eq!(
            executed,
            [
                "81 01 04 00 02 FF",
                "81 01 04 47 01 02 03 04 FF",
                "81 09 04 47 FF",
                "81 09 06 12 FF",
                "81 01 04 3F 01 09 FF",
                "81 09 04 00 FF",
            ],
            "each once"
        );
        let received = sim.commands_received();
        let count = |packet: &str| received.iter().filter(|p| *p == packet).count();
        assert_eq!(count("81 01 04 00 02 FF"), 2);
        assert!(count("81 01 04 47 01 02 03 04 FF") >= 2);
        assert_eq!(count("81 01 04 3F 01 09 FF"), 2);
        let state = sim.state();
        assert!(state.power);
        assert_eq!(state.presets.get(&9).map(|p| p.zoom), Some(0x1234));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn driver_session_over_udp_reports_camera_errors() {
        let sim = start_udp(Config::default()).await.unwrap();
        let fault_sim = sim.clone();
        let outputs = drive(
            Pipe::Udp(udp_client(&sim).await),
            json!({}),
            &[command("zoom", json!({"action": "tele"}))],
            |_| fault_sim.inject(Fault::ErrorReply(ErrorCode::NOT_EXECUTABLE)),
        )
        .await;
        let failures = failures(&outputs);
        assert_eq!(failures.len(), 1, "{outputs:?}");
        assert!(failures[0].contains("not executable"), "{failures:?}");
        assert!(failures[0].contains("`81 01 04 07 02 FF`"), "{failures:?}");
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn driver_session_over_tcp() {
        let sim = start_tcp(Config::default()).await.unwrap();
        let stream = TcpStream::connect(sim.local_addr()).await.unwrap();
        let fault_sim = sim.clone();
        let outputs = drive(
            Pipe::Stream(Box::new(stream)),
            json!({"framing": "tcp"}),
            &[
                command("pan_tilt", json!({"direction": "up_right", "pan_speed": 2})),
                command("pan_tilt", json!({"direction": "stop"})),
                command("power", json!({"on": false})),
                poll("power"),
            ],
            |index| {
                if index == 2 {
                    // Completion alone, no ACK: still complete.
                    fault_sim.inject(Fault::DropAck);
                }
            },
        )
        .await;
        assert_eq!(failures(&outputs), Vec::<String>::new());
        assert_eq!(
            updates(&outputs),
            [
                ("power".to_string(), json!("off")),
                ("power".to_string(), json!("off")),
            ]
        );
        assert_eq!(
            sim.commands_received(),
            [
                "81 01 00 01 FF",
                "81 01 06 01 02 0A 02 01 FF",
                "81 01 06 01 0C 0A 03 03 FF",
                "81 01 04 00 03 FF",
                "81 09 04 00 FF",
            ]
        );
        assert!(!sim.state().moving);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn driver_session_on_a_pty_talks_to_its_camera_on_the_chain() {
        let sim = start_tcp(Config {
            cameras: 3,
            ..Config::default()
        })
        .await
        .unwrap();
        sim.settle();
        let path = sim.serve_pty().unwrap();
        let port = tokio_serial::SerialStream::open(&tokio_serial::new(&path, 9600)).unwrap();
        let outputs = drive(
            Pipe::Stream(Box::new(port)),
            json!({"framing": "serial", "address": 2}),
            &[
                command("power", json!({"on": false})),
                command("preset", json!({"action": "recall", "number": 3})),
                poll("zoom"),
            ],
            |_| {},
        )
        .await;
        // Recall in standby is refused by camera 2; camera 1 stays on.
        let failures = failures(&outputs);
        assert_eq!(failures.len(), 1, "{outputs:?}");
        assert!(failures[0].contains("not executable"), "{failures:?}");
        assert_eq!(
            updates(&outputs),
            [
                ("power".to_string(), json!("off")),
                ("zoom".to_string(), json!(0)),
            ]
        );
        assert!(!sim.camera(2).unwrap().power);
        assert!(sim.camera(1).unwrap().power);
        assert_eq!(sim.commands_received()[0], "82 01 00 01 FF");

        // Pulling the cable ends the port.
        sim.unplug();
        sim.shutdown().await;
    }
}
