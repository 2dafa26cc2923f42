//! A PJLink projector on a TCP socket: the [`model`](super::model) served with tokio, plus
//! a [`Handle`] for front-panel changes and fault injection.
//!
//! Tests, demos and panel developers use it in place of a projector. Timers use
//! `tokio::time`, so a test with a paused clock controls warm-up and idle timeouts.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use avgate_drivers::pjlink::simulator::{self, Config};
//! let projector = simulator::start(Config { password: Some("secret".into()), ..Config::default() }).await?;
//! println!("projector listening on {}", projector.local_addr());
//! projector.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{self, Instant};
use tracing::debug;

use super::frame::{self, AUTH_ERROR, DIGEST_LEN, Greeting, LineReader, MAX_LINE, Reply};
use super::model::{Login, Model, Settings};
use crate::sim_server::{Listener, lock};

pub use super::frame::{Class, Lamp, PowerState};
pub use super::model::State;

/// How the simulated projector is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; port 0 picks a free one (see [`Handle::local_addr`]).
    pub listen: SocketAddr,
    /// PJLink password; `None` greets with `PJLINK 0` (no authentication).
    pub password: Option<String>,
    /// How long `Warming` lasts after power on.
    pub warm_up: Duration,
    /// How long `Cooling` lasts after power off.
    pub cool_down: Duration,
    /// A connection with no command for this long is closed, as projectors do (30 s).
    pub idle_timeout: Duration,
    /// NAME answer.
    pub name: String,
    /// INF1 answer.
    pub manufacturer: String,
    /// INF2 answer.
    pub product: String,
    /// INFO answer.
    pub info: String,
    /// CLSS answer; class 2 also answers `%2` INPT/INST/SNUM/SVER/INNM, class 1 gives
    /// ERR1 to every `%2` command.
    pub class: Class,
    /// SNUM answer (class 2).
    pub serial_number: String,
    /// SVER answer (class 2).
    pub software_version: String,
    /// Input codes the projector has (INST answer).
    pub inputs: Vec<String>,
    /// Hours of each lamp; empty makes a laser projector (LAMP answers ERR1).
    pub lamps: Vec<u32>,
    /// Input selected at start.
    pub input: String,
    /// Start on instead of in standby.
    pub powered_on: bool,
    /// Answer ERR3 to INPT/AVMT/INST queries in standby, as NEC and Epson projectors do.
    pub err3_in_standby: bool,
    /// Close the connection after every reply, as some projector firmware does.
    pub close_after_reply: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            password: None,
            warm_up: Duration::from_secs(2),
            cool_down: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(30),
            name: "avgate-sim".into(),
            manufacturer: "avgate".into(),
            product: "PJLink simulator".into(),
            info: String::new(),
            class: Class::One,
            serial_number: "SIM0001".into(),
            software_version: "1.0".into(),
            inputs: vec!["11".into(), "31".into(), "32".into()],
            lamps: vec![1234],
            input: "11".into(),
            powered_on: false,
            err3_in_standby: false,
            close_after_reply: false,
        }
    }
}

impl Config {
    fn projector(&self) -> Settings {
        Settings {
            warm_up: self.warm_up,
            cool_down: self.cool_down,
            name: self.name.clone(),
            manufacturer: self.manufacturer.clone(),
            product: self.product.clone(),
            info: self.info.clone(),
            class: self.class,
            serial_number: self.serial_number.clone(),
            software_version: self.software_version.clone(),
            inputs: self.inputs.clone(),
            lamps: self.lamps.clone(),
            input: self.input.clone(),
            powered_on: self.powered_on,
            err3_in_standby: self.err3_in_standby,
        }
    }
}

/// Misbehaviour to inject, so tests can check how a client copes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The next command is carried out but gets no reply.
    DropNextReply,
    /// The next reply comes back with its body scrambled (`%1RWOP=OK` for `%1POWR=OK`),
    /// as line noise would, so only the echo check catches it.
    GarbleNextReply,
    /// The next command is not carried out: the connection closes instead.
    CloseOnNextCommand,
    /// While `true`, commands are recorded but neither carried out nor answered; clearing
    /// it lets them through, so a client that gave up sees late replies.
    StallReplies(bool),
}

/// One-shot faults waiting for the next command on any connection.
#[derive(Debug, Default)]
struct Pending {
    drop_reply: bool,
    garble_reply: bool,
    close: bool,
}

/// State shared by the accept loop, every connection and every [`Handle`].
#[derive(Debug)]
struct Shared {
    password: Option<String>,
    idle_timeout: Duration,
    close_after_reply: bool,
    model: Mutex<Model>,
    pending: Mutex<Pending>,
    /// `true` while replies are stalled; connections wait for it to clear.
    stalled: watch::Sender<bool>,
    commands: Mutex<Vec<String>>,
}

/// Controls a running simulator. Cheap to clone; the simulator runs until
/// [`Handle::shutdown`] (or the end of the tokio runtime).
#[derive(Debug, Clone)]
pub struct Handle {
    shared: Arc<Shared>,
    listener: Arc<Listener>,
}

/// Starts a simulator listening on `config.listen`.
pub async fn start(config: Config) -> io::Result<Handle> {
    let shared = Arc::new(Shared {
        password: config.password.clone(),
        idle_timeout: config.idle_timeout,
        close_after_reply: config.close_after_reply,
        model: Mutex::new(Model::new(config.projector())),
        pending: Mutex::new(Pending::default()),
        stalled: watch::Sender::new(false),
        commands: Mutex::new(Vec::new()),
    });
    let serving = Arc::clone(&shared);
    let listener = Listener::start(config.listen, "pjlink simulator", move |stream, peer| {
        serve(Arc::clone(&serving), stream, peer)
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

    /// The projector's state now.
    pub fn state(&self) -> State {
        lock(&self.shared.model).state(now())
    }

    /// Presses the power button: like the remote, ignored while warming up or cooling down.
    /// Returns whether the projector took it.
    pub fn set_power_on(&self, on: bool) -> bool {
        lock(&self.shared.model).switch_power(now(), on).is_ok()
    }

    /// Selects an input on the front panel (any code, unchecked).
    pub fn set_input(&self, code: &str) {
        lock(&self.shared.model).set_input(code);
    }

    pub fn set_mute(&self, video: bool, audio: bool) {
        lock(&self.shared.model).set_mute(video, audio);
    }

    /// Sets the ERST digits (fan, lamp, temperature, cover, filter, other; 0 ok, 1 warning,
    /// 2 error). Other values are sent as they are, to test a client's parser.
    pub fn set_error_status(&self, status: [u8; 6]) {
        lock(&self.shared.model).set_error_status(status);
    }

    /// Sets the hours of lamp `lamp` (0-based); ignored if there is no such lamp.
    pub fn set_lamp_hours(&self, lamp: usize, hours: u32) {
        lock(&self.shared.model).set_lamp_hours(lamp, hours);
    }

    pub fn inject(&self, fault: Fault) {
        let mut pending = lock(&self.shared.pending);
        match fault {
            Fault::DropNextReply => pending.drop_reply = true,
            Fault::GarbleNextReply => pending.garble_reply = true,
            Fault::CloseOnNextCommand => pending.close = true,
            Fault::StallReplies(on) => {
                self.shared.stalled.send_replace(on);
            }
        }
    }

    /// Every command line received on any connection, in order, digest removed (also
    /// those refused or answered with an error): tests count how often a set was sent.
    pub fn commands_received(&self) -> Vec<String> {
        lock(&self.shared.commands).clone()
    }

    /// How many connections were accepted since start.
    pub fn connection_count(&self) -> usize {
        self.listener.connection_count()
    }

    /// Stops listening and closes every connection; returns once both are done, so the
    /// address can be bound again right away. Later calls return at once.
    pub async fn shutdown(&self) {
        self.listener.shutdown().await;
    }
}

async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    debug!(%peer, "pjlink simulator: connection opened");
    let (connection, greeting) = Connection::new(shared, stream, peer);
    match connection.run(greeting).await {
        Ok(()) => debug!(%peer, "pjlink simulator: connection closed"),
        Err(e) => debug!(%peer, error = %e, "pjlink simulator: connection failed"),
    }
}

/// What to do after a command line.
enum Action {
    Reply(Vec<u8>),
    Nothing,
    /// Reply, then close (authentication failure).
    ReplyAndClose(Vec<u8>),
    Close,
}

/// One client connection.
struct Connection {
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    login: Login,
    lines: LineReader,
}

impl Connection {
    /// A connection with a fresh challenge (projectors pick a new random per connection);
    /// returns the greeting to send first.
    fn new(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) -> (Connection, Greeting) {
        let random = format!("{:08x}", fastrand::u32(..));
        let (login, greeting) = Login::new(shared.password.as_deref(), &random);
        // The first line may carry a digest in front of a full-length command.
        let lines = LineReader::new(DIGEST_LEN + MAX_LINE);
        (
            Connection {
                shared,
                stream,
                peer,
                login,
                lines,
            },
            greeting,
        )
    }

    async fn run(mut self, greeting: Greeting) -> io::Result<()> {
        self.send(&greeting.encode()).await?;
        let mut idle_deadline = Instant::now() + self.shared.idle_timeout;
        loop {
            let line = match self.lines.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => {
                    if !self.read_more(idle_deadline).await? {
                        return Ok(());
                    }
                    continue;
                }
                Err(e) => {
                    debug!(peer = %self.peer, error = %e, "pjlink simulator: closing");
                    return Ok(());
                }
            };
            idle_deadline = Instant::now() + self.shared.idle_timeout;
            match self.respond(&line).await {
                Action::Reply(bytes) if self.shared.close_after_reply => {
                    return self.send(&bytes).await;
                }
                Action::Reply(bytes) => self.send(&bytes).await?,
                Action::Nothing => {}
                Action::ReplyAndClose(bytes) => return self.send(&bytes).await,
                Action::Close => return Ok(()),
            }
        }
    }

    /// Reads into the line buffer; `false` when the client closed or went idle too long.
    async fn read_more(&mut self, deadline: Instant) -> io::Result<bool> {
        let mut buf = [0; 512];
        match time::timeout_at(deadline, self.stream.read(&mut buf)).await {
            Err(_) => {
                debug!(peer = %self.peer, "pjlink simulator: idle, closing");
                Ok(false)
            }
            Ok(read) => {
                let n = read?;
                self.lines.push(&buf[..n]);
                Ok(n > 0)
            }
        }
    }

    async fn respond(&mut self, line: &[u8]) -> Action {
        debug!(peer = %self.peer, line = %frame::escape(line), "pjlink simulator <-");
        let shared = Arc::clone(&self.shared);
        shared.record(line);
        if shared.take(|p| &mut p.close) {
            return Action::Close;
        }
        let Ok(command) = self.login.admit(line) else {
            return Action::ReplyAndClose(AUTH_ERROR.to_vec());
        };
        shared.wait_while_stalled().await;
        let Some(reply) = lock(&shared.model).answer_line(now(), command) else {
            return Action::Nothing;
        };
        if shared.take(|p| &mut p.drop_reply) {
            return Action::Nothing;
        }
        if shared.take(|p| &mut p.garble_reply) {
            return Action::Reply(garble(reply).encode());
        }
        Action::Reply(reply.encode())
    }

    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        debug!(peer = %self.peer, line = %frame::escape(bytes), "pjlink simulator ->");
        self.stream.write_all(bytes).await
    }
}

impl Shared {
    fn record(&self, line: &[u8]) {
        let (_, command) = frame::split_digest(line);
        lock(&self.commands).push(String::from_utf8_lossy(command).into_owned());
    }

    /// Clears and returns one pending fault flag.
    fn take(&self, flag: impl FnOnce(&mut Pending) -> &mut bool) -> bool {
        std::mem::take(flag(&mut lock(&self.pending)))
    }

    async fn wait_while_stalled(&self) {
        // The sender lives in `self`, so this cannot fail while we hold `self`.
        let _ = self.stalled.subscribe().wait_for(|stalled| !*stalled).await;
    }
}

/// The reply with its body reversed: still a well-formed line, but not an echo.
fn garble(reply: Reply) -> Reply {
    let body: String = reply.body.chars().rev().collect();
    Reply { body, ..reply }
}

/// The model's clock: tokio's, so a paused test clock drives warm-up too.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DriverSettings, Output, Request};
    use serde_json::json;

    /// Bound on every wait, so a broken simulator fails the test instead of hanging it.
    const PATIENCE: Duration = Duration::from_secs(5);

    struct Client {
        stream: TcpStream,
        lines: LineReader,
    }

    impl Client {
        async fn connect(addr: SocketAddr) -> Client {
            let stream = time::timeout(PATIENCE, TcpStream::connect(addr))
                .await
                .unwrap()
                .unwrap();
            Client {
                stream,
                lines: LineReader::new(DIGEST_LEN + MAX_LINE),
            }
        }

        /// The next line, or `None` at EOF.
        async fn line(&mut self) -> Option<String> {
            loop {
                if let Some(line) = self.lines.next_line().unwrap() {
                    return Some(String::from_utf8(line).unwrap());
                }
                let mut buf = [0; 256];
                let n = match time::timeout(PATIENCE, self.stream.read(&mut buf))
                    .await
                    .expect("no reply")
                {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
                    Err(e) => panic!("read failed: {e}"),
                };
                if n == 0 {
                    return None;
                }
                self.lines.push(&buf[..n]);
            }
        }

        async fn send(&mut self, line: &str) {
            self.stream
                .write_all(format!("{line}\r").as_bytes())
                .await
                .unwrap();
        }

        async fn ask(&mut self, line: &str) -> Option<String> {
            self.send(line).await;
            self.line().await
        }

        /// Connects and passes the greeting, authenticating with `password` if challenged.
        async fn login(
            addr: SocketAddr,
            password: Option<&str>,
            first: &str,
        ) -> (Client, Option<String>) {
            let mut client = Client::connect(addr).await;
            let greeting = client.line().await.unwrap();
            let prefix = match (greeting.strip_prefix("PJLINK 1 "), password) {
                (Some(random), Some(password)) => frame::auth_digest(random, password),
                _ => String::new(),
            };
            let reply = client.ask(&format!("{prefix}{first}")).await;
            (client, reply)
        }
    }

    fn slow_projector() -> Config {
        Config {
            warm_up: Duration::from_secs(60),
            cool_down: Duration::from_secs(60),
            ..Config::default()
        }
    }

    #[tokio::test]
    async fn greets_authenticates_and_runs_a_set() {
        let sim = start(Config {
            password: Some("secret".into()),
            ..slow_projector()
        })
        .await
        .unwrap();
        let mut client = Client::connect(sim.local_addr()).await;
        let greeting = client.line().await.unwrap();
        let random = greeting.strip_prefix("PJLINK 1 ").expect("challenge");
        assert!(
            random.len() == 8 && random.bytes().all(|b| b.is_ascii_hexdigit()),
            "{greeting}"
        );
        let digest = frame::auth_digest(random, "secret");
        assert_eq!(
            client.ask(&format!("{digest}%1POWR 1")).await.as_deref(),
            Some("%1POWR=OK")
        );
        assert_eq!(client.ask("%1POWR ?").await.as_deref(), Some("%1POWR=3"));
        assert_eq!(
            client.ask("%1INPT 31").await.as_deref(),
            Some("%1INPT=ERR3")
        );
        assert_eq!(
            sim.commands_received(),
            ["%1POWR 1", "%1POWR ?", "%1INPT 31"]
        );
        assert_eq!(sim.state().power, PowerState::Warming);
        assert_eq!(sim.connection_count(), 1);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn each_connection_gets_a_fresh_challenge() {
        let sim = start(Config {
            password: Some("secret".into()),
            ..Config::default()
        })
        .await
        .unwrap();
        let mut a = Client::connect(sim.local_addr()).await;
        let mut b = Client::connect(sim.local_addr()).await;
        assert_ne!(a.line().await, b.line().await);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn wrong_password_gets_erra_and_close() {
        let sim = start(Config {
            password: Some("secret".into()),
            ..Config::default()
        })
        .await
        .unwrap();
        let (mut client, reply) = Client::login(sim.local_addr(), Some("wrong"), "%1POWR 1").await;
        assert_eq!(reply.as_deref(), Some("PJLINK ERRA"));
        assert_eq!(client.line().await, None);
        let (mut client, reply) = Client::login(sim.local_addr(), None, "%1POWR 1").await;
        assert_eq!(reply.as_deref(), Some("PJLINK ERRA"));
        assert_eq!(client.line().await, None);
        assert_eq!(sim.state().power, PowerState::Off);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_closes_connections_and_frees_the_port() {
        let sim = start(Config::default()).await.unwrap();
        let addr = sim.local_addr();
        let (mut client, _) = Client::login(addr, None, "%1POWR ?").await;
        sim.shutdown().await;
        assert_eq!(client.line().await, None);
        sim.shutdown().await;

        let restarted = start(Config {
            listen: addr,
            ..Config::default()
        })
        .await
        .unwrap();
        let (_, reply) = Client::login(addr, None, "%1POWR ?").await;
        assert_eq!(reply.as_deref(), Some("%1POWR=0"));
        restarted.shutdown().await;
    }

    #[tokio::test]
    async fn idle_connections_are_closed() {
        let sim = start(Config {
            idle_timeout: Duration::from_millis(100),
            ..Config::default()
        })
        .await
        .unwrap();
        let (mut client, _) = Client::login(sim.local_addr(), None, "%1POWR ?").await;
        assert_eq!(client.line().await, None);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn dropped_reply() {
        let sim = start(Config::default()).await.unwrap();
        let (mut client, _) = Client::login(sim.local_addr(), None, "%1POWR ?").await;
        sim.inject(Fault::DropNextReply);
        client.send("%1AVMT 31").await;
        // The mute was carried out; only its reply was lost.
        assert_eq!(client.ask("%1AVMT ?").await.as_deref(), Some("%1AVMT=31"));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn garbled_reply() {
        let sim = start(Config::default()).await.unwrap();
        let (mut client, _) = Client::login(sim.local_addr(), None, "%1POWR ?").await;
        sim.inject(Fault::GarbleNextReply);
        assert_eq!(client.ask("%1POWR ?").await.as_deref(), Some("%1RWOP=0"));
        assert_eq!(client.ask("%1POWR ?").await.as_deref(), Some("%1POWR=0"));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn close_on_next_command() {
        let sim = start(Config::default()).await.unwrap();
        let (mut client, _) = Client::login(sim.local_addr(), None, "%1POWR ?").await;
        sim.inject(Fault::CloseOnNextCommand);
        assert_eq!(client.ask("%1POWR 1").await, None);
        assert_eq!(sim.state().power, PowerState::Off);
        assert_eq!(sim.commands_received(), ["%1POWR ?", "%1POWR 1"]);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn stalled_replies_come_late() {
        let sim = start(Config::default()).await.unwrap();
        let (mut client, _) = Client::login(sim.local_addr(), None, "%1POWR ?").await;
        sim.inject(Fault::StallReplies(true));
        client.send("%1INPT ?").await;
        let deadline = Instant::now() + PATIENCE;
        while sim.commands_received().len() < 2 {
            assert!(Instant::now() < deadline, "command never arrived");
            time::sleep(Duration::from_millis(5)).await;
        }
        let mut byte = [0; 1];
        assert!(
            time::timeout(Duration::from_millis(100), client.stream.read(&mut byte))
                .await
                .is_err()
        );
        sim.inject(Fault::StallReplies(false));
        assert_eq!(client.line().await.as_deref(), Some("%1INPT=11"));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn front_panel_changes_show_in_replies() {
        let sim = start(Config {
            warm_up: Duration::ZERO,
            lamps: vec![10, 20],
            ..Config::default()
        })
        .await
        .unwrap();
        assert!(sim.set_power_on(true));
        sim.set_input("32");
        sim.set_mute(true, false);
        sim.set_error_status([0, 2, 0, 0, 1, 0]);
        sim.set_lamp_hours(1, 21);
        let (mut client, reply) = Client::login(sim.local_addr(), None, "%1POWR ?").await;
        assert_eq!(reply.as_deref(), Some("%1POWR=1"));
        assert_eq!(client.ask("%1INPT ?").await.as_deref(), Some("%1INPT=32"));
        assert_eq!(client.ask("%1AVMT ?").await.as_deref(), Some("%1AVMT=11"));
        assert_eq!(
            client.ask("%1ERST ?").await.as_deref(),
            Some("%1ERST=020010")
        );
        assert_eq!(
            client.ask("%1LAMP ?").await.as_deref(),
            Some("%1LAMP=10 1 21 1")
        );
        let state = sim.state();
        assert_eq!(
            (
                state.power,
                state.input.as_str(),
                state.video_mute,
                state.audio_mute
            ),
            (PowerState::On, "32", true, false)
        );
        sim.shutdown().await;
    }

    /// Runs requests through the real driver session against the simulator, as the
    /// gateway's runtime would (minus retries), and returns every output.
    async fn drive(addr: SocketAddr, password: Option<&str>, requests: &[Request]) -> Vec<Output> {
        let settings = DriverSettings {
            options: serde_json::Map::new(),
            password: password.map(Into::into),
        };
        let mut session = (crate::pjlink::DRIVER.build)(&settings).unwrap();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        session.connected(now());
        let mut requests = requests.iter();
        let mut outputs = Vec::new();
        let mut buf = [0; 256];
        loop {
            while let Some(output) = session.poll_output() {
                match &output {
                    Output::Transmit(bytes) => stream.write_all(bytes).await.unwrap(),
                    Output::Ready | Output::Completed(_) => match requests.next() {
                        Some(request) => session.start(now(), request).unwrap(),
                        None => return outputs,
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
            let n = time::timeout(PATIENCE, stream.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "simulator closed the connection");
            session.received(now(), &buf[..n]);
        }
    }

    #[tokio::test]
    async fn driver_session_against_simulator() {
        let config = Config {
            password: Some("pw".into()),
            warm_up: Duration::ZERO,
            ..Config::default()
        };
        let sim = start(config).await.unwrap();
        let requests = [
            Request::Command {
                name: "power".into(),
                args: json!({"on": true}).as_object().unwrap().clone(),
            },
            Request::Command {
                name: "input".into(),
                args: json!({"source": "32"}).as_object().unwrap().clone(),
            },
            Request::Poll {
                query: "lamp".into(),
            },
        ];
        let outputs = drive(sim.local_addr(), Some("pw"), &requests).await;
        let updates: Vec<_> = outputs
            .iter()
            .filter_map(|o| match o {
                Output::Update { point, value } => Some((point.as_str(), value.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            updates,
            [
                ("power", json!("on")),
                ("input", json!("32")),
                ("lamp_hours", json!(1234)),
                ("lamps", json!([{"hours": 1234, "on": true}])),
            ]
        );
        assert!(
            outputs
                .iter()
                .all(|o| !matches!(o, Output::Completed(Err(_)))),
            "{outputs:?}"
        );
        assert_eq!(
            sim.commands_received(),
            [
                "%1CLSS ?",
                "%1POWR 1",
                "%1POWR ?",
                "%1INPT 32",
                "%1INPT ?",
                "%1LAMP ?"
            ]
        );

        let outputs = drive(sim.local_addr(), Some("wrong"), &requests[2..]).await;
        assert!(
            matches!(
                outputs.last(),
                Some(Output::Fatal(crate::SessionError::AuthFailed(_)))
            ),
            "{outputs:?}"
        );
        sim.shutdown().await;
    }
}
