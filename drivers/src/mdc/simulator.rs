//! Samsung displays on a TCP socket and on a pseudo-terminal: the [`model`](super::model)
//! served with tokio, plus a [`Handle`] for front-panel changes and fault injection.
//!
//! One simulator stands for every display on one line: [`Config::display_ids`] lists them
//! and each keeps its own state. On TCP (a display's port 1515) and on each pty from
//! [`Handle::serve_pty`] (an RS-232 daisy chain) a frame is answered by the display with
//! its id; frames for ids nobody has get no answer, and the broadcast id 0xFE is carried
//! out by all and answered by none, as on a real chain. Displays never speak unasked, so
//! front-panel changes only show in the next status read.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use avgate_drivers::mdc::simulator::{self, Config};
//! let displays = simulator::start(Config { display_ids: vec![1, 2], ..Config::default() }).await?;
//! println!("displays listening on {}", displays.local_addr());
//! println!("RS-232 chain on {}", displays.serve_pty()?);
//! displays.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio::time;
use tracing::debug;

use super::frame::{self, Frame, FrameReader, Reply};
use super::model::Model;
use crate::sim_server::{Link, Listener, lock, spawn_pty};

pub use super::model::{DisplayState, NAK_BAD_VALUE, NAK_UNSUPPORTED, PanelError};

/// How the simulated displays are set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; port 0 picks a free one (see [`Handle::local_addr`]).
    pub listen: SocketAddr,
    /// The displays on the line, by the ID set in their menus (0 to 253).
    pub display_ids: Vec<u8>,
    /// Every display's state at start.
    pub initial: DisplayState,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            display_ids: vec![1],
            initial: DisplayState::default(),
        }
    }
}

/// Misbehaviour to inject. Each fault applies to one reply, the next one any display
/// sends on any connection; several injected faults apply to the following replies in
/// the order injected. Frames nobody answers do not use one up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The command is carried out but its reply is lost.
    DropReply,
    /// Line noise (including a stray 0xAA) comes ahead of the reply, which itself is intact.
    Garble,
    /// The reply comes this much later.
    Delay(Duration),
    /// The reply's checksum is off by one.
    WrongChecksum,
    /// The command is not carried out and answered with a NAK with this error code.
    Nak(u8),
    /// The command is not carried out: the connection closes instead (on a pty, the port
    /// goes away as if unplugged).
    CloseConnection,
}

/// Bytes [`Fault::Garble`] sends ahead of the reply: a 0xAA that cannot start a reply,
/// among others.
const NOISE: &[u8] = &[0x00, 0x13, 0xAA, 0x11, 0x3C, 0xFE];

/// State shared by the accept loop, every connection and every [`Handle`].
#[derive(Debug)]
struct Shared {
    model: Mutex<Model>,
    faults: Mutex<VecDeque<Fault>>,
    /// Every well-formed frame received, as hex.
    commands: Mutex<Vec<String>>,
    /// Pseudo-terminals being served (see [`Handle::serve_pty`]).
    ptys: Mutex<Vec<JoinHandle<()>>>,
}

/// Controls running simulated displays. Cheap to clone; they run until
/// [`Handle::shutdown`] (or the end of the tokio runtime).
#[derive(Debug, Clone)]
pub struct Handle {
    shared: Arc<Shared>,
    listener: Arc<Listener>,
}

/// Starts the displays, listening on `config.listen`.
pub async fn start(config: Config) -> io::Result<Handle> {
    let shared = Arc::new(Shared {
        model: Mutex::new(Model::new(&config.display_ids, config.initial)),
        faults: Mutex::new(VecDeque::new()),
        commands: Mutex::new(Vec::new()),
        ptys: Mutex::new(Vec::new()),
    });
    let serving = Arc::clone(&shared);
    let listener = Listener::start(config.listen, "mdc simulator", move |stream, peer| {
        serve(Arc::clone(&serving), Box::new(stream), peer.to_string())
    })?;
    Ok(Handle {
        shared,
        listener: Arc::new(listener),
    })
}

impl Handle {
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// The state of display `id` now; `None` if no display has that id.
    pub fn state(&self, id: u8) -> Option<DisplayState> {
        lock(&self.shared.model).state(id)
    }

    /// Presses display `id`'s power button.
    pub fn set_power(&self, id: u8, on: bool) -> Result<(), PanelError> {
        lock(&self.shared.model).set_power(id, on)
    }

    /// Turns display `id`'s volume (0 to 100).
    pub fn set_volume(&self, id: u8, level: u8) -> Result<(), PanelError> {
        lock(&self.shared.model).set_volume(id, level)
    }

    pub fn set_mute(&self, id: u8, on: bool) -> Result<(), PanelError> {
        lock(&self.shared.model).set_mute(id, on)
    }

    /// Selects a source on display `id` by code (0x21 is HDMI 1; see
    /// [`frame::parse_source`] for names).
    pub fn set_input(&self, id: u8, code: u8) -> Result<(), PanelError> {
        lock(&self.shared.model).set_input(id, code)
    }

    /// Queues a fault for the next reply (see [`Fault`]).
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.faults).push_back(fault);
    }

    /// Every well-formed frame received on any connection, in order, as hex
    /// (`AA 11 01 01 01 14`): also those for ids nobody has, and those a fault stopped.
    pub fn commands_received(&self) -> Vec<String> {
        lock(&self.shared.commands).clone()
    }

    /// How many TCP connections were accepted since start.
    pub fn connection_count(&self) -> usize {
        self.listener.connection_count()
    }

    /// Stops listening and closes every connection and pty; returns once done, so the
    /// address can be bound again right away. Later calls return at once.
    pub async fn shutdown(&self) {
        self.unplug();
        self.listener.shutdown().await;
    }

    /// Serves the displays on a new pseudo-terminal, as on their RS-232 daisy chain, and
    /// returns the path of the device end (`/dev/pts/N`) for the gateway to open.
    pub fn serve_pty(&self) -> io::Result<String> {
        let shared = Arc::clone(&self.shared);
        let (path, task) = spawn_pty(|link, label| serve(shared, link, label))?;
        lock(&self.shared.ptys).push(task);
        Ok(path)
    }

    /// Pulls the cable: every pseudo-terminal served goes away, as an unplugged USB
    /// adapter does (the other end reads an error, the path disappears).
    pub fn unplug(&self) {
        for task in lock(&self.shared.ptys).drain(..) {
            task.abort();
        }
    }
}

/// What to do after a frame.
enum Action {
    Reply { bytes: Vec<u8>, delay: Duration },
    Nothing,
    Close,
}

/// Runs one connection or pty until the other end goes or a fault closes it.
async fn serve(shared: Arc<Shared>, mut link: Box<dyn Link>, peer: String) {
    debug!(%peer, "mdc simulator: connection opened");
    let mut reader = FrameReader::commands();
    let mut buf = [0u8; 512];
    'connection: loop {
        let n = match link.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                debug!(%peer, error = %e, "mdc simulator: read failed");
                break;
            }
        };
        reader.push(&buf[..n]);
        while let Some(item) = reader.next_frame() {
            let frame = match item {
                Ok(frame) => frame,
                Err(e) => {
                    // A display ignores what it cannot read.
                    debug!(%peer, "mdc simulator: {e}");
                    continue;
                }
            };
            match shared.respond(&frame) {
                Action::Nothing => {}
                Action::Close => break 'connection,
                Action::Reply { bytes, delay } => {
                    if !delay.is_zero() {
                        time::sleep(delay).await;
                    }
                    debug!(%peer, bytes = %frame::hex(&bytes), "mdc simulator ->");
                    if link.write_all(&bytes).await.is_err() {
                        break 'connection;
                    }
                }
            }
        }
    }
    debug!(%peer, "mdc simulator: connection closed");
}

impl Shared {
    fn respond(&self, frame: &Frame) -> Action {
        debug!(%frame, "mdc simulator <-");
        lock(&self.commands).push(frame.to_string());
        let mut model = lock(&self.model);
        if !model.answers(frame.id) {
            // Broadcast (carried out by all) or an id nobody on the line has.
            let _ = model.answer(frame);
            return Action::Nothing;
        }
        let fault = lock(&self.faults).pop_front();
        let reply = match fault {
            Some(Fault::CloseConnection) => return Action::Close,
            Some(Fault::Nak(code)) => Reply::Nak {
                id: frame.id,
                cmd: frame.cmd,
                code,
            },
            _ => match model.answer(frame) {
                Some(reply) => reply,
                None => return Action::Nothing,
            },
        };
        let mut bytes = reply.encode();
        let mut delay = Duration::ZERO;
        match fault {
            Some(Fault::DropReply) => return Action::Nothing,
            Some(Fault::Garble) => {
                bytes.splice(0..0, NOISE.iter().copied());
            }
            Some(Fault::WrongChecksum) => {
                if let Some(sum) = bytes.last_mut() {
                    *sum = sum.wrapping_add(1);
                }
            }
            Some(Fault::Delay(by)) => delay = by,
            Some(Fault::Nak(_) | Fault::CloseConnection) | None => {}
        }
        Action::Reply { bytes, delay }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mdc::frame::{Command, FrameReader, Setting};
    use crate::{DeviceErrorKind, DriverSettings, Output, Protocol, Request};
    use serde_json::{Value, json};
    use tokio::io::{AsyncRead, AsyncWrite};
    use tokio::net::TcpStream;
    use tokio::time::Instant;

    /// Bound on every wait, so a broken simulator fails the test instead of hanging it.
    const PATIENCE: Duration = Duration::from_secs(5);

    /// How long to wait for a reply that should not come.
    const SILENCE: Duration = Duration::from_millis(200);

    fn now() -> std::time::Instant {
        Instant::now().into_std()
    }

    /// A raw client: writes frames, reads reply frames.
    struct Client<S> {
        io: S,
        reader: FrameReader,
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
        fn new(io: S) -> Client<S> {
            Client {
                io,
                reader: FrameReader::replies(),
            }
        }

        /// Sends `frame` and returns the reply as hex, or `None` if nothing (or the end of
        /// the connection) comes within `wait`.
        async fn ask_within(&mut self, frame: Frame, wait: Duration) -> Option<String> {
            self.io.write_all(&frame.encode()).await.unwrap();
            let deadline = Instant::now() + wait;
            loop {
                if let Some(item) = self.reader.next_frame() {
                    return Some(frame::hex(&item.unwrap().encode()));
                }
                let mut buf = [0; 256];
                match time::timeout_at(deadline, self.io.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => self.reader.push(&buf[..n]),
                    _ => return None,
                }
            }
        }

        async fn ask(&mut self, frame: Frame) -> Option<String> {
            self.ask_within(frame, PATIENCE).await
        }
    }

    async fn tcp(sim: &Handle) -> TcpStream {
        time::timeout(PATIENCE, TcpStream::connect(sim.local_addr()))
            .await
            .unwrap()
            .unwrap()
    }

    fn pty(path: &str) -> tokio_serial::SerialStream {
        tokio_serial::SerialStream::open(&tokio_serial::new(path, 9600)).unwrap()
    }

    /// A driver session with these options, connected and ready.
    fn session(options: Value) -> Box<dyn Protocol> {
        let Value::Object(options) = options else {
            panic!("options must be an object")
        };
        let settings = DriverSettings {
            options,
            password: None,
        };
        let mut session = (crate::mdc::DRIVER.build)(&settings).unwrap();
        session.connected(now());
        assert_eq!(session.poll_output(), Some(Output::Ready));
        session
    }

    /// Runs one request through the session over `io`, as the gateway's runtime would:
    /// returns its outputs once it completes, or when `wait` runs out or the link closes.
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        io: &mut S,
        session: &mut dyn Protocol,
        request: &Request,
        wait: Duration,
    ) -> Vec<Output> {
        session.start(now(), request).unwrap();
        let deadline = Instant::now() + wait;
        let mut outputs = Vec::new();
        let mut buf = [0; 512];
        loop {
            while let Some(output) = session.poll_output() {
                if let Output::Transmit(bytes) = &output {
                    io.write_all(bytes).await.unwrap();
                }
                let end = matches!(output, Output::Completed(_) | Output::Fatal(_));
                outputs.push(output);
                if end {
                    return outputs;
                }
            }
            match time::timeout_at(deadline, io.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => session.received(now(), &buf[..n]),
                _ => return outputs,
            }
        }
    }

    /// Runs requests one after another, each expected to succeed; returns every update.
    async fn run_all<S: AsyncRead + AsyncWrite + Unpin>(
        io: &mut S,
        session: &mut dyn Protocol,
        requests: &[Request],
    ) -> Vec<(String, Value)> {
        let mut updates = Vec::new();
        for request in requests {
            let outputs = run(io, session, request, PATIENCE).await;
            assert_eq!(
                outputs.last(),
                Some(&Output::Completed(Ok(()))),
                "{request:?}: {outputs:?}"
            );
            updates.extend(updates_in(&outputs));
        }
        updates
    }

    fn updates_in(outputs: &[Output]) -> Vec<(String, Value)> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Update { point, value } => Some((point.clone(), value.clone())),
                _ => None,
            })
            .collect()
    }

    fn failure(outputs: &[Output]) -> (DeviceErrorKind, String) {
        match outputs.last() {
            Some(Output::Completed(Err(e))) => (e.kind, e.message.clone()),
            other => panic!("expected a failure, got {other:?} in {outputs:?}"),
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

    fn status() -> Request {
        Request::Poll {
            query: "status".into(),
        }
    }

    fn point(name: &str, value: Value) -> (String, Value) {
        (name.to_string(), value)
    }

    fn set(setting: Setting, value: u8, id: u8) -> Frame {
        Command::Set(setting, value).frame(id)
    }

    #[tokio::test]
    async fn answers_raw_frames_over_tcp() {
        let sim = start(Config::default()).await.unwrap();
        let mut client = Client::new(tcp(&sim).await);
        assert_eq!(
            client.ask(Command::Status.frame(1)).await.as_deref(),
            Some("AA FF 01 09 41 00 00 1E 00 21 10 00 00 99")
        );
        assert_eq!(
            client.ask(set(Setting::Power, 1, 1)).await.as_deref(),
            Some("AA FF 01 03 41 11 01 56")
        );
        assert_eq!(
            client.ask(set(Setting::Volume, 55, 1)).await.as_deref(),
            Some("AA FF 01 03 41 12 37 8D")
        );
        assert_eq!(
            client.ask(set(Setting::Volume, 101, 1)).await.as_deref(),
            Some("AA FF 01 03 4E 12 02 65")
        );
        // Nobody has id 2 on this line.
        assert_eq!(
            client.ask_within(Command::Status.frame(2), SILENCE).await,
            None
        );
        assert_eq!(
            sim.commands_received(),
            [
                "AA 00 01 00 01",
                "AA 11 01 01 01 14",
                "AA 12 01 01 37 4B",
                "AA 12 01 01 65 79",
                "AA 00 02 00 02"
            ]
        );
        let state = sim.state(1).unwrap();
        assert!(state.power);
        assert_eq!(state.volume, 55);
        assert_eq!(sim.state(2), None);
        assert_eq!(sim.connection_count(), 1);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn driver_session_over_tcp() {
        let sim = start(Config::default()).await.unwrap();
        let mut io = tcp(&sim).await;
        let mut s = session(json!({"inputs": {"laptop": "hdmi2"}}));
        let updates = run_all(
            &mut io,
            s.as_mut(),
            &[
                command("power", json!({"on": true})),
                command("volume", json!({"level": 40})),
                command("mute", json!({"on": true})),
                command("input", json!({"source": "laptop"})),
                status(),
            ],
        )
        .await;
        assert_eq!(
            updates,
            [
                point("power", json!("on")),
                point("volume", json!(40)),
                point("mute", json!(true)),
                point("input", json!("laptop")),
                point("power", json!("on")),
                point("volume", json!(40)),
                point("mute", json!(true)),
                point("input", json!("laptop")),
                point("aspect", json!("pc_16_9")),
            ]
        );
        assert_eq!(
            sim.state(1),
            Some(DisplayState {
                power: true,
                volume: 40,
                mute: true,
                input: 0x23,
                aspect: 0x10
            })
        );
        // Front-panel changes show in the next status read.
        sim.set_volume(1, 12).unwrap();
        sim.set_input(1, 0x25).unwrap();
        sim.set_mute(1, false).unwrap();
        sim.set_power(1, false).unwrap();
        let updates = run_all(&mut io, s.as_mut(), &[status()]).await;
        assert_eq!(
            updates[..4],
            [
                point("power", json!("off")),
                point("volume", json!(12)),
                point("mute", json!(false)),
                point("input", json!("displayport")),
            ]
        );
        // The display refuses a source it does not have.
        let outputs = run(
            &mut io,
            s.as_mut(),
            &command("input", json!({"source": "0x5a"})),
            PATIENCE,
        )
        .await;
        let (kind, message) = failure(&outputs);
        assert_eq!(kind, DeviceErrorKind::InvalidArgs);
        assert!(message.contains("error code 2"), "{message}");
        assert_eq!(sim.set_volume(2, 1), Err(PanelError::NoSuchDisplay(2)));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn driver_session_over_a_pty() {
        let sim = start(Config::default()).await.unwrap();
        let path = sim.serve_pty().unwrap();
        assert!(path.starts_with("/dev/pts/"), "{path}");
        let mut port = pty(&path);
        let mut s = session(json!({}));
        let updates = run_all(
            &mut port,
            s.as_mut(),
            &[command("volume", json!({"level": 42})), status()],
        )
        .await;
        assert_eq!(updates[0], point("volume", json!(42)));
        assert!(
            updates.contains(&point("power", json!("off"))),
            "{updates:?}"
        );
        assert_eq!(
            sim.commands_received(),
            ["AA 12 01 01 2A 3E", "AA 00 01 00 01"]
        );
        assert_eq!(sim.connection_count(), 0, "a pty is not a TCP connection");

        // Unplugged: the port gives no more data.
        sim.unplug();
        let mut rest = [0u8; 1];
        let read = time::timeout(PATIENCE, port.read(&mut rest)).await.unwrap();
        assert!(!matches!(read, Ok(n) if n > 0), "{read:?}");
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn two_displays_on_one_rs232_line() {
        let sim = start(Config {
            display_ids: vec![1, 2],
            ..Config::default()
        })
        .await
        .unwrap();
        let mut port = pty(&sim.serve_pty().unwrap());
        // One session per display, taking turns on the same line as the gateway's link
        // task does.
        let mut first = session(json!({"display_id": 1}));
        let mut second = session(json!({"display_id": 2}));
        run_all(
            &mut port,
            first.as_mut(),
            &[command("power", json!({"on": true}))],
        )
        .await;
        run_all(
            &mut port,
            second.as_mut(),
            &[
                command("input", json!({"source": "hdmi3"})),
                command("volume", json!({"level": 5})),
            ],
        )
        .await;
        let one = run_all(&mut port, first.as_mut(), &[status()]).await;
        let two = run_all(&mut port, second.as_mut(), &[status()]).await;
        assert_eq!(
            one,
            [
                point("power", json!("on")),
                point("volume", json!(30)),
                point("mute", json!(false)),
                point("input", json!("hdmi1")),
                point("aspect", json!("pc_16_9")),
            ]
        );
        assert_eq!(
            two,
            [
                point("power", json!("off")),
                point("volume", json!(5)),
                point("mute", json!(false)),
                point("input", json!("hdmi3")),
                point("aspect", json!("pc_16_9")),
            ]
        );
        assert!(sim.state(1).unwrap().power && !sim.state(2).unwrap().power);

        // Display 2's session does not take display 1's answer for its own.
        second
            .start(now(), &command("mute", json!({"on": true})))
            .unwrap();
        while second.poll_output().is_some() {}
        let theirs = Reply::Ack {
            id: 1,
            cmd: 0x13,
            data: vec![1],
        };
        second.received(now(), &theirs.encode());
        assert_eq!(second.poll_output(), None);
        second.abandon();

        // An id nobody has gets silence; a broadcast is carried out by all, unanswered.
        let mut client = Client::new(port);
        assert_eq!(
            client.ask_within(Command::Status.frame(3), SILENCE).await,
            None
        );
        assert_eq!(
            client
                .ask_within(set(Setting::Mute, 1, frame::BROADCAST), SILENCE)
                .await,
            None
        );
        assert!(sim.state(1).unwrap().mute && sim.state(2).unwrap().mute);
        sim.shutdown().await;
    }

    /// A simulator, a TCP connection to it and a ready session.
    async fn connected() -> (Handle, TcpStream, Box<dyn Protocol>) {
        let sim = start(Config::default()).await.unwrap();
        let io = tcp(&sim).await;
        (sim, io, session(json!({})))
    }

    #[tokio::test]
    async fn fault_drop_reply() {
        let (sim, mut io, mut s) = connected().await;
        sim.inject(Fault::DropReply);
        let power_on = command("power", json!({"on": true}));
        let outputs = run(&mut io, s.as_mut(), &power_on, SILENCE).await;
        assert!(
            !outputs.iter().any(|o| matches!(o, Output::Completed(_))),
            "{outputs:?}"
        );
        // It was carried out; only the reply was lost. The runtime gives up and goes on.
        assert!(sim.state(1).unwrap().power);
        s.abandon();
        run_all(&mut io, s.as_mut(), &[status()]).await;
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn fault_garble() {
        let (sim, mut io, mut s) = connected().await;
        sim.inject(Fault::Garble);
        let updates = run_all(
            &mut io,
            s.as_mut(),
            &[command("volume", json!({"level": 9}))],
        )
        .await;
        assert_eq!(updates, [point("volume", json!(9))]);
        // The noise is really on the wire.
        sim.inject(Fault::Garble);
        let mut raw = Client::new(tcp(&sim).await);
        raw.io
            .write_all(&Command::Get(Setting::Volume).frame(1).encode())
            .await
            .unwrap();
        let mut got = Vec::new();
        while got.len() < NOISE.len() + 8 {
            let mut buf = [0; 64];
            let n = time::timeout(PATIENCE, raw.io.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(&got[..NOISE.len()], NOISE);
        assert_eq!(frame::hex(&got[NOISE.len()..]), "AA FF 01 03 41 12 09 5F");
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn fault_delay() {
        let (sim, mut io, mut s) = connected().await;
        let delay = Duration::from_millis(200);
        sim.inject(Fault::Delay(delay));
        let sent = Instant::now();
        run_all(&mut io, s.as_mut(), &[status()]).await;
        assert!(sent.elapsed() >= delay);
        // Only that reply was late.
        let sent = Instant::now();
        run_all(&mut io, s.as_mut(), &[status()]).await;
        assert!(sent.elapsed() < delay);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn fault_wrong_checksum() {
        let (sim, mut io, mut s) = connected().await;
        sim.inject(Fault::WrongChecksum);
        let outputs = run(
            &mut io,
            s.as_mut(),
            &command("power", json!({"on": true})),
            PATIENCE,
        )
        .await;
        let (kind, message) = failure(&outputs);
        assert_eq!(kind, DeviceErrorKind::Failed);
        assert!(message.contains("damaged on the line"), "{message}");
        assert!(
            message.contains("checksum 0x57, expected 0x56"),
            "{message}"
        );
        // The connection is still in step.
        let updates = run_all(&mut io, s.as_mut(), &[status()]).await;
        assert_eq!(updates[0], point("power", json!("on")));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn fault_nak() {
        let (sim, mut io, mut s) = connected().await;
        sim.inject(Fault::Nak(7));
        let outputs = run(
            &mut io,
            s.as_mut(),
            &command("volume", json!({"level": 80})),
            PATIENCE,
        )
        .await;
        let (kind, message) = failure(&outputs);
        assert_eq!(kind, DeviceErrorKind::Failed);
        assert_eq!(message, "display 1 refused `volume 80` (NAK, error code 7)");
        assert_eq!(sim.state(1).unwrap().volume, 30, "not carried out");
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn fault_close_connection() {
        let (sim, mut io, mut s) = connected().await;
        sim.inject(Fault::CloseConnection);
        let outputs = run(
            &mut io,
            s.as_mut(),
            &command("power", json!({"on": true})),
            PATIENCE,
        )
        .await;
        assert!(
            !outputs.iter().any(|o| matches!(o, Output::Completed(_))),
            "{outputs:?}"
        );
        let mut rest = [0u8; 1];
        assert!(
            !matches!(io.read(&mut rest).await, Ok(n) if n > 0),
            "closed"
        );
        assert!(!sim.state(1).unwrap().power, "not carried out");
        // The runtime reconnects.
        let mut io = tcp(&sim).await;
        s.connected(now());
        assert_eq!(s.poll_output(), Some(Output::Ready));
        run_all(
            &mut io,
            s.as_mut(),
            &[command("power", json!({"on": true}))],
        )
        .await;
        assert_eq!(sim.connection_count(), 2);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn faults_apply_in_order_and_skip_unanswered_frames() {
        let sim = start(Config::default()).await.unwrap();
        let mut client = Client::new(tcp(&sim).await);
        sim.inject(Fault::Nak(1));
        sim.inject(Fault::Nak(2));
        // Nobody answers id 9, so the first fault waits for a reply that is sent.
        assert_eq!(
            client.ask_within(Command::Status.frame(9), SILENCE).await,
            None
        );
        let nak = |code: u8| {
            Some(frame::hex(
                &Reply::Nak {
                    id: 1,
                    cmd: 0,
                    code,
                }
                .encode(),
            ))
        };
        assert_eq!(client.ask(Command::Status.frame(1)).await, nak(1));
        assert_eq!(client.ask(Command::Status.frame(1)).await, nak(2));
        assert!(
            client
                .ask(Command::Status.frame(1))
                .await
                .unwrap()
                .starts_with("AA FF 01 09 41")
        );
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_closes_connections_and_frees_the_port() {
        let sim = start(Config::default()).await.unwrap();
        let addr = sim.local_addr();
        let mut io = tcp(&sim).await;
        sim.shutdown().await;
        let mut rest = [0u8; 1];
        assert!(
            !matches!(io.read(&mut rest).await, Ok(n) if n > 0),
            "closed"
        );
        sim.shutdown().await;
        let again = start(Config {
            listen: addr,
            ..Config::default()
        })
        .await
        .unwrap();
        let mut client = Client::new(tcp(&again).await);
        assert!(client.ask(Command::Status.frame(1)).await.is_some());
        again.shutdown().await;
    }

    /// The `samsung-mdc` CLI of python-samsung-mdc 1.18.0 (PROTOCOLS.md §5) against the
    /// simulator, over TCP and over a pty. Runs when `AVGATE_PEERS_PYTHON` names a python
    /// with tests/peers/requirements.txt installed (as .ci/run sets up); otherwise prints
    /// SKIP and passes.
    #[tokio::test]
    async fn python_samsung_mdc_cli_drives_the_simulator() {
        let python = match std::env::var("AVGATE_PEERS_PYTHON") {
            Ok(python) if !python.is_empty() => python,
            _ => {
                println!(
                    "SKIP samsung-mdc peer: set AVGATE_PEERS_PYTHON to a python with python-samsung-mdc==1.18.0"
                );
                return;
            }
        };
        let sim = start(Config {
            display_ids: vec![1, 2],
            ..Config::default()
        })
        .await
        .unwrap();
        let run_cli = |args: Vec<String>| {
            let python = python.clone();
            async move {
                let output = time::timeout(
                    PATIENCE * 2,
                    tokio::process::Command::new(&python)
                        .args(["-m", "samsung_mdc"])
                        .args(&args)
                        .kill_on_drop(true)
                        .output(),
                )
                .await
                .expect("samsung-mdc did not finish")
                .expect("samsung-mdc runs");
                let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
                let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
                (output.status.success(), format!("{stdout}{stderr}"))
            }
        };
        let tcp_target = |id: u8| format!("{id}@{}", sim.local_addr());
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();

        let (ok, out) = run_cli(words(&[&tcp_target(1), "power", "on"])).await;
        assert!(ok, "{out}");
        let (ok, out) = run_cli(words(&[&tcp_target(1), "volume", "40"])).await;
        assert!(ok, "{out}");
        let (ok, out) = run_cli(words(&[&tcp_target(1), "status"])).await;
        assert!(ok, "{out}");
        assert!(
            out.contains("ON") && out.contains("40") && out.contains("HDMI1"),
            "{out}"
        );
        let state = sim.state(1).unwrap();
        assert!(state.power);
        assert_eq!(state.volume, 40);
        // A value the display refuses makes the CLI report the NAK.
        sim.inject(Fault::Nak(2));
        let (ok, out) = run_cli(words(&[&tcp_target(1), "volume", "41"])).await;
        assert!(!ok && out.contains("error_code 2"), "{out}");

        // Over the RS-232 chain, to display 2.
        let path = sim.serve_pty().unwrap();
        let (ok, out) = run_cli(words(&[
            "--mode",
            "serial",
            &format!("2@{path}"),
            "input_source",
            "HDMI3",
        ]))
        .await;
        assert!(ok, "{out}");
        assert_eq!(sim.state(2).unwrap().input, 0x31);
        assert_eq!(sim.state(1).unwrap().input, 0x21);
        eprintln!(
            "samsung-mdc CLI: {} frames exchanged",
            sim.commands_received().len()
        );
        sim.shutdown().await;
    }
}
