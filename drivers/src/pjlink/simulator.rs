//! A PJLink projector on a TCP socket: the [`model`](super::model) as a kit
//! [`DeviceModel`] ([`Projector`]) on the kit's server, plus a [`Handle`] for front-panel
//! changes and fault injection.
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

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

use super::frame::{self, AUTH_ERROR, DIGEST_LEN, MAX_LINE, Reply};
use super::model::{Login, Model, Settings};
use crate::kit::{self, DeviceModel, Framer, Served};

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

/// The projector as the kit serves it: the [`Model`], the password each connection must
/// answer, and the faults a test has injected.
#[derive(Debug)]
pub struct Projector {
    model: Model,
    password: Option<String>,
    idle_timeout: Duration,
    close_after_reply: bool,
    pending: Pending,
    /// While set, admitted commands wait on their connection unanswered.
    stalled: bool,
    commands: Vec<String>,
}

/// One client connection's side of the conversation.
#[derive(Debug)]
pub struct Connection {
    login: Login,
    lines: Framer,
    /// Commands admitted while replies were stalled, answered in order once they are not.
    held: VecDeque<Vec<u8>>,
    closing: bool,
}

impl Default for Connection {
    fn default() -> Connection {
        Connection {
            login: Login::new(None, "").0,
            // The first line may carry a digest in front of a full-length command.
            lines: frame::line_framer(DIGEST_LEN + MAX_LINE),
            held: VecDeque::new(),
            closing: false,
        }
    }
}

impl Projector {
    pub fn new(config: &Config) -> Projector {
        Projector {
            model: Model::new(config.projector()),
            password: config.password.clone(),
            idle_timeout: config.idle_timeout,
            close_after_reply: config.close_after_reply,
            pending: Pending::default(),
            stalled: false,
            commands: Vec::new(),
        }
    }

    fn command_line(&mut self, connection: &mut Connection, now: Instant, line: &[u8]) -> Vec<u8> {
        debug!(line = %frame::escape(line), "pjlink simulator <-");
        let (_, command) = frame::split_digest(line);
        self.commands
            .push(String::from_utf8_lossy(command).into_owned());
        if std::mem::take(&mut self.pending.close) {
            connection.closing = true;
            return Vec::new();
        }
        let Ok(command) = connection.login.admit(line) else {
            connection.closing = true;
            return AUTH_ERROR.to_vec();
        };
        if self.stalled || !connection.held.is_empty() {
            connection.held.push_back(command.to_vec());
            return Vec::new();
        }
        self.answer(connection, now, command)
    }

    fn answer(&mut self, connection: &mut Connection, now: Instant, command: &[u8]) -> Vec<u8> {
        let Some(reply) = self.model.answer_line(now, command) else {
            return Vec::new();
        };
        if std::mem::take(&mut self.pending.drop_reply) {
            return Vec::new();
        }
        let reply = if std::mem::take(&mut self.pending.garble_reply) {
            garble(reply)
        } else {
            reply
        };
        connection.closing |= self.close_after_reply;
        reply.encode()
    }
}

impl DeviceModel for Projector {
    type Connection = Connection;

    /// Projectors pick a fresh challenge for every connection.
    fn greeting(&mut self, connection: &mut Connection, _now: Instant) -> Vec<u8> {
        let random = format!("{:08x}", fastrand::u32(..));
        let (login, greeting) = Login::new(self.password.as_deref(), &random);
        connection.login = login;
        greeting.encode()
    }

    fn received(&mut self, connection: &mut Connection, now: Instant, data: &[u8]) -> Vec<u8> {
        connection.lines.push(data);
        let mut answers = Vec::new();
        while !connection.closing {
            match connection.lines.next_frame() {
                None => break,
                Some(Ok(line)) => answers.extend(self.command_line(connection, now, &line)),
                Some(Err(e)) => {
                    debug!(error = %e, "pjlink simulator: closing");
                    connection.closing = true;
                }
            }
        }
        answers
    }

    fn hangs_up(&self, connection: &Connection) -> bool {
        connection.closing
    }

    fn idle_timeout(&self, _connection: &Connection) -> Option<Duration> {
        Some(self.idle_timeout)
    }

    fn release(&mut self, connection: &mut Connection, now: Instant) -> Vec<u8> {
        let mut answers = Vec::new();
        while !self.stalled && !connection.closing {
            let Some(command) = connection.held.pop_front() else {
                break;
            };
            answers.extend(self.answer(connection, now, &command));
        }
        answers
    }
}

/// Controls a running simulator. Cheap to clone; the simulator runs until
/// [`Handle::shutdown`] (or the end of the tokio runtime).
#[derive(Clone)]
pub struct Handle {
    served: Arc<Served<Projector>>,
}

/// Starts a simulator listening on `config.listen`.
pub async fn start(config: Config) -> io::Result<Handle> {
    let served = kit::serve_tcp(Projector::new(&config), config.listen, "pjlink simulator")?;
    Ok(Handle {
        served: Arc::new(served),
    })
}

impl Handle {
    pub fn local_addr(&self) -> SocketAddr {
        self.served.local_addr()
    }

    /// The projector's state now.
    pub fn state(&self) -> State {
        self.served.update(|p| p.model.state(now()))
    }

    /// Presses the power button: like the remote, ignored while warming up or cooling down.
    /// Returns whether the projector took it.
    pub fn set_power_on(&self, on: bool) -> bool {
        self.served
            .update(|p| p.model.switch_power(now(), on).is_ok())
    }

    /// Selects an input on the front panel (any code, unchecked).
    pub fn set_input(&self, code: &str) {
        self.served.update(|p| p.model.set_input(code));
    }

    pub fn set_mute(&self, video: bool, audio: bool) {
        self.served.update(|p| p.model.set_mute(video, audio));
    }

    /// Sets the ERST digits (fan, lamp, temperature, cover, filter, other; 0 ok, 1 warning,
    /// 2 error). Other values are sent as they are, to test a client's parser.
    pub fn set_error_status(&self, status: [u8; 6]) {
        self.served.update(|p| p.model.set_error_status(status));
    }

    /// Sets the hours of lamp `lamp` (0-based); ignored if there is no such lamp.
    pub fn set_lamp_hours(&self, lamp: usize, hours: u32) {
        self.served.update(|p| p.model.set_lamp_hours(lamp, hours));
    }

    pub fn inject(&self, fault: Fault) {
        self.served.update(|p| match fault {
            Fault::DropNextReply => p.pending.drop_reply = true,
            Fault::GarbleNextReply => p.pending.garble_reply = true,
            Fault::CloseOnNextCommand => p.pending.close = true,
            Fault::StallReplies(on) => p.stalled = on,
        });
    }

    /// Every command line received on any connection, in order, digest removed (also
    /// those refused or answered with an error): tests count how often a set was sent.
    pub fn commands_received(&self) -> Vec<String> {
        self.served.with(|p| p.commands.clone())
    }

    /// How many connections were accepted since start.
    pub fn connection_count(&self) -> usize {
        self.served.connection_count()
    }

    /// Stops listening and closes every connection; returns once both are done, so the
    /// address can be bound again right away. Later calls return at once.
    pub async fn shutdown(&self) {
        self.served.shutdown().await;
    }
}

/// The reply with its body reversed: still a well-formed line, but not an echo.
fn garble(reply: Reply) -> Reply {
    let body: String = reply.body.chars().rev().collect();
    Reply { body, ..reply }
}

/// The model's clock: tokio's, so a paused test clock drives warm-up too.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kit::Pair;
    use crate::pjlink::{Options, Session};
    use crate::{DriverSettings, Output, Request};
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::time;

    /// Bound on every wait, so a broken simulator fails the test instead of hanging it.
    const PATIENCE: Duration = Duration::from_secs(5);

    struct Client {
        stream: TcpStream,
        lines: Framer,
    }

    impl Client {
        async fn connect(addr: SocketAddr) -> Client {
            let stream = time::timeout(PATIENCE, TcpStream::connect(addr))
                .await
                .unwrap()
                .unwrap();
            Client {
                stream,
                lines: frame::line_framer(DIGEST_LEN + MAX_LINE),
            }
        }

        /// The next line, or `None` at EOF.
        async fn line(&mut self) -> Option<String> {
            loop {
                if let Some(line) = self.lines.next_frame().map(Result::unwrap) {
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

    fn command(name: &str, args: serde_json::Value) -> Request {
        Request::Command {
            name: name.into(),
            args: args.as_object().unwrap().clone(),
        }
    }

    fn poll(query: &str) -> Request {
        Request::Poll {
            query: query.into(),
        }
    }

    /// The driver's session against the projector in memory, as the gateway's runtime
    /// would run it (minus retries), on the pair's clock.
    fn pair(password: &str, config: &Config) -> Pair<Session, Projector> {
        let settings = DriverSettings {
            options: serde_json::Map::new(),
            password: Some(password.into()),
        };
        let session = Session::new(Options::from_settings(&settings).unwrap());
        Pair::new(session, Projector::new(config))
    }

    fn update(point: &str, value: serde_json::Value) -> Output {
        Output::Update {
            point: point.into(),
            value,
        }
    }

    #[test]
    fn driver_session_against_the_model() {
        let config = Config {
            password: Some("pw".into()),
            ..Config::default()
        };
        let mut pair = pair("pw", &config);
        assert_eq!(pair.connect(), [Output::Ready]);
        let done = Output::Completed(Ok(()));
        let power_on = command("power", json!({"on": true}));
        assert_eq!(
            pair.run(&power_on).unwrap(),
            [update("power", json!("warming")), done.clone()]
        );
        pair.advance(config.warm_up);
        assert_eq!(
            pair.run(&poll("power")).unwrap(),
            [update("power", json!("on")), done.clone()]
        );
        assert_eq!(
            pair.run(&command("input", json!({"source": "32"})))
                .unwrap(),
            [update("input", json!("32")), done.clone()]
        );
        assert_eq!(
            pair.run(&poll("lamp")).unwrap(),
            [
                update("lamp_hours", json!(1234)),
                update("lamps", json!([{"hours": 1234, "on": true}])),
                done
            ]
        );
        assert_eq!(
            pair.model.commands,
            [
                "%1CLSS ?",
                "%1POWR 1",
                "%1POWR ?",
                "%1POWR ?",
                "%1INPT 32",
                "%1INPT ?",
                "%1LAMP ?"
            ]
        );

        let mut pair = self::pair("wrong", &config);
        assert!(
            matches!(
                pair.connect().last(),
                Some(Output::Fatal(crate::SessionError::AuthFailed(_)))
            ),
            "{:?}",
            pair.wire
        );
    }
}
