//! An Extron switcher on a TCP socket: the [`model`](super::model) as a kit
//! [`DeviceModel`] ([`Switcher`]) on the kit's server, the way a unit serves Telnet, plus a
//! [`Handle`] for front-panel changes and fault injection.
//! [`Handle::serve_pty`] also puts it on a pseudo-terminal, as if on its RS-232 port: no
//! banner, no login, no idle timeout there, as on a real unit's serial port.
//!
//! On connect it sends its banner lines, then `\r\nPassword:` if a password is set (a wrong
//! one gets the prompt again, the right one `\r\nLogin Administrator\r\n`). Each connection
//! starts in verbose mode 0, as Telnet does; `\x1b3CV\r` (or `W3CV\r`) switches it. Front-
//! panel changes made through the [`Handle`] are reported to every connection in verbose
//! mode 1 or 3, like a real unit.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use avgate_drivers::extron::simulator::{self, Config};
//! let switcher = simulator::start(Config { outputs: 4, ..Config::default() }).await?;
//! println!("switcher listening on {}", switcher.local_addr());
//! switcher.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

use super::frame::{self, Command, CommandReader, ErrorCode, PASSWORD_PROMPT, Response};
use super::model::{Model, Settings};
use crate::kit::{self, DeviceModel, Served};

pub use super::frame::TieKind;
pub use super::model::{OutputState, State};

/// How the simulated switcher is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; port 0 picks a free one (see [`Handle::local_addr`]).
    pub listen: SocketAddr,
    pub inputs: u16,
    /// 1 makes a single-output product (`82V`, `1Z`), more a matrix (`1*50V`, `1*1Z`).
    pub outputs: u16,
    /// `None`: no login, commands are taken right after the banner.
    pub password: Option<String>,
    /// Lines sent on connect, each followed by CR LF.
    pub banner: Vec<String>,
    /// `Q` answer.
    pub firmware: String,
    /// `N` answer.
    pub part_number: String,
    /// Top of the raw volume scale (higher values get E13).
    pub volume_max: u16,
    /// Volume of every output at start.
    pub volume: u16,
    /// A connection with no command for this long is closed (Extron's default: 300 s).
    pub idle_timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            inputs: 8,
            outputs: 8,
            password: None,
            banner: vec![
                "(c) Copyright 2024, Extron Electronics, avgate SIS simulator, V1.05, 60-0000-01"
                    .into(),
                "Tue, 04 Jun 2024 10:21:07".into(),
            ],
            firmware: "1.05".into(),
            part_number: "60-0000-01".into(),
            volume_max: 100,
            volume: 50,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

impl Config {
    fn switcher(&self) -> Settings {
        Settings {
            inputs: self.inputs,
            outputs: self.outputs,
            volume_max: self.volume_max,
            volume: self.volume,
            firmware: self.firmware.clone(),
            part_number: self.part_number.clone(),
        }
    }
}

/// Misbehaviour to inject, so tests can check how a client copes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The next command is carried out but gets no reply.
    DropNextReply,
    /// The next reply comes back reversed (`llA 10nI 20tuO`), as line noise would.
    GarbleNextReply,
    /// The next command is not carried out: the connection closes instead.
    CloseOnNextCommand,
    /// The next command is not carried out and answered with this code (e.g. `"E13"`).
    ErrorNextCommand(&'static str),
    /// Every reply waits this long first; `Duration::ZERO` ends it.
    DelayReplies(Duration),
}

/// Faults waiting for the next command on any connection.
#[derive(Debug, Default)]
struct Pending {
    drop_reply: bool,
    garble_reply: bool,
    close: bool,
    error: Option<&'static str>,
    delay: Duration,
}

/// Front-panel reports kept for connections that have not passed them on yet.
const KEPT_REPORTS: usize = 64;

/// The switcher as the kit serves it: the [`Model`], its banner and password, the
/// faults a test injected and the front-panel reports for verbose connections.
#[derive(Debug)]
pub struct Switcher {
    model: Model,
    password: Option<String>,
    banner: Vec<String>,
    idle_timeout: Duration,
    pending: Pending,
    commands: Vec<String>,
    /// The latest front-panel reports; the last one is number `reported`.
    reports: VecDeque<Response>,
    reported: u64,
}

/// One client connection's side of the conversation.
#[derive(Debug, Default)]
pub struct Connection {
    reader: CommandReader,
    verbose: u8,
    /// Waiting for the password.
    logging_in: bool,
    /// On the RS-232 port: no banner, no login, no idle timeout.
    serial: bool,
    /// The number of the last front-panel report passed on (or skipped).
    seen: u64,
    closing: bool,
}

impl Switcher {
    pub fn new(config: &Config) -> Switcher {
        Switcher {
            model: Model::new(config.switcher()),
            password: config.password.clone(),
            banner: config.banner.clone(),
            idle_timeout: config.idle_timeout,
            pending: Pending::default(),
            commands: Vec::new(),
            reports: VecDeque::new(),
            reported: 0,
        }
    }

    fn prompt() -> Vec<u8> {
        format!("\r\n{PASSWORD_PROMPT}").into_bytes()
    }

    fn login(&mut self, connection: &mut Connection, line: &[u8]) -> Vec<u8> {
        if Some(line) == self.password.as_deref().map(str::as_bytes) {
            connection.logging_in = false;
            return b"\r\nLogin Administrator\r\n".to_vec();
        }
        Switcher::prompt()
    }

    fn respond(&mut self, connection: &mut Connection, command: &[u8]) -> Vec<u8> {
        debug!(command = %frame::escape(command), "extron simulator <-");
        self.commands.push(frame::escape(command));
        if std::mem::take(&mut self.pending.close) {
            connection.closing = true;
            return Vec::new();
        }
        let reply = match self.pending.error.take() {
            Some(code) => format!("{code}\r\n").into_bytes(),
            None => {
                let single = self.model.single_output();
                let response = match Command::parse(command, single) {
                    Some(Command::Verbose(mode)) => {
                        connection.verbose = mode;
                        Response::Verbose(mode)
                    }
                    Some(Command::ReadVerbose) => Response::Other(connection.verbose.to_string()),
                    _ => self
                        .model
                        .answer_tagged(command, matches!(connection.verbose, 2 | 3)),
                };
                response.encode()
            }
        };
        if std::mem::take(&mut self.pending.drop_reply) {
            return Vec::new();
        }
        if std::mem::take(&mut self.pending.garble_reply) {
            return garble(&reply);
        }
        reply
    }

    fn front_panel(&mut self, report: Response) {
        debug!(report = %report, "extron simulator: front panel");
        if self.reports.len() == KEPT_REPORTS {
            self.reports.pop_front();
        }
        self.reports.push_back(report);
        self.reported += 1;
    }
}

impl DeviceModel for Switcher {
    type Connection = Connection;

    fn greeting(&mut self, connection: &mut Connection, _now: Instant) -> Vec<u8> {
        connection.seen = self.reported;
        let mut banner = String::new();
        for line in &self.banner {
            banner.push_str(line);
            banner.push_str("\r\n");
        }
        let mut greeting = banner.into_bytes();
        if self.password.is_some() {
            connection.logging_in = true;
            greeting.extend(Switcher::prompt());
        }
        greeting
    }

    fn serial_greeting(&mut self, connection: &mut Connection, _now: Instant) -> Vec<u8> {
        connection.seen = self.reported;
        connection.serial = true;
        Vec::new()
    }

    fn received(&mut self, connection: &mut Connection, _now: Instant, data: &[u8]) -> Vec<u8> {
        connection.reader.push(data);
        let mut answers = Vec::new();
        while !connection.closing {
            let next = if connection.logging_in {
                connection.reader.next_line()
            } else {
                connection.reader.next_command()
            };
            match next {
                Ok(None) => break,
                Ok(Some(bytes)) if connection.logging_in => {
                    answers.extend(self.login(connection, &bytes));
                }
                Ok(Some(command)) => answers.extend(self.respond(connection, &command)),
                Err(e) => {
                    debug!(error = %e, "extron simulator: closing");
                    connection.closing = true;
                }
            }
        }
        answers
    }

    fn hangs_up(&self, connection: &Connection) -> bool {
        connection.closing
    }

    fn idle_timeout(&self, connection: &Connection) -> Option<Duration> {
        (!connection.serial).then_some(self.idle_timeout)
    }

    fn reply_delay(&self) -> Duration {
        self.pending.delay
    }

    /// Front-panel reports go to connections in verbose mode 1 or 3, as on a real unit.
    fn release(&mut self, connection: &mut Connection, _now: Instant) -> Vec<u8> {
        let unseen = usize::try_from(self.reported - connection.seen).unwrap_or(usize::MAX);
        connection.seen = self.reported;
        if connection.logging_in || !matches!(connection.verbose, 1 | 3) {
            return Vec::new();
        }
        let from = self.reports.len().saturating_sub(unseen);
        self.reports
            .range(from..)
            .flat_map(Response::encode)
            .collect()
    }
}

/// Controls a running simulator. Cheap to clone; the simulator runs until
/// [`Handle::shutdown`] (or the end of the tokio runtime).
#[derive(Clone)]
pub struct Handle {
    served: Arc<Served<Switcher>>,
}

/// Starts a simulator listening on `config.listen`.
pub async fn start(config: Config) -> io::Result<Handle> {
    let served = kit::serve_tcp(Switcher::new(&config), config.listen, "extron simulator")?;
    Ok(Handle {
        served: Arc::new(served),
    })
}

impl Handle {
    pub fn local_addr(&self) -> SocketAddr {
        self.served.local_addr()
    }

    /// The switcher's state now.
    pub fn state(&self) -> State {
        self.served.with(|s| s.model.state())
    }

    /// Ties `input` (0 = none) to `output` on the front panel and reports it
    /// (`Out02 In03 All`) to every connection in verbose mode 1 or 3. Returns the error
    /// code a unit would show for an input or output it does not have.
    pub fn tie(&self, input: u16, output: u16, kind: TieKind) -> Result<(), ErrorCode> {
        self.served.update(|s| {
            let report = s.model.tie(input, output, kind)?;
            s.front_panel(report);
            Ok(())
        })
    }

    /// Turns `output`'s volume knob, reported as `Out01 Vol50` (or `Vol50` on a
    /// single-output product).
    pub fn set_volume(&self, output: u16, level: u16) -> Result<(), ErrorCode> {
        self.served.update(|s| {
            let form = s.model.report_form(output)?;
            let report = s.model.set_volume(form, level)?;
            s.front_panel(report);
            Ok(())
        })
    }

    /// Presses `output`'s audio mute, reported as `Amt01*1` (or `Amt1`).
    pub fn set_audio_mute(&self, output: u16, on: bool) -> Result<(), ErrorCode> {
        self.served.update(|s| {
            let form = s.model.report_form(output)?;
            let report = s.model.set_audio_mute(form, on)?;
            s.front_panel(report);
            Ok(())
        })
    }

    /// Presses `output`'s video mute, reported as `Vmt01*1` (or `Vmt1`).
    pub fn set_video_mute(&self, output: u16, on: bool) -> Result<(), ErrorCode> {
        self.served.update(|s| {
            let form = s.model.report_form(output)?;
            let report = s.model.set_video_mute(form, on)?;
            s.front_panel(report);
            Ok(())
        })
    }

    pub fn inject(&self, fault: Fault) {
        self.served.update(|s| match fault {
            Fault::DropNextReply => s.pending.drop_reply = true,
            Fault::GarbleNextReply => s.pending.garble_reply = true,
            Fault::CloseOnNextCommand => s.pending.close = true,
            Fault::ErrorNextCommand(code) => s.pending.error = Some(code),
            Fault::DelayReplies(delay) => s.pending.delay = delay,
        });
    }

    /// Every command received after login on any connection, in order, escaped
    /// (`\x1b3CV`), also those refused or answered with an error. Passwords are not kept.
    pub fn commands_received(&self) -> Vec<String> {
        self.served.with(|s| s.commands.clone())
    }

    /// How many connections were accepted since start.
    pub fn connection_count(&self) -> usize {
        self.served.connection_count()
    }

    /// Stops listening and closes every connection, serial ones included; returns once
    /// both are done, so the address can be bound again right away.
    pub async fn shutdown(&self) {
        self.served.shutdown().await;
    }

    /// Serves the switcher on a new pseudo-terminal, as on its RS-232 port, and returns the
    /// path of the device end (`/dev/pts/N`) for the gateway to open.
    pub fn serve_pty(&self) -> io::Result<String> {
        self.served.serve_pty()
    }

    /// Pulls the cable: every pseudo-terminal served goes away, as an unplugged USB
    /// adapter does (the other end reads an error, the path disappears).
    pub fn unplug(&self) {
        self.served.unplug();
    }
}

/// The line reversed, line end kept: well-formed bytes that match nothing.
fn garble(reply: &[u8]) -> Vec<u8> {
    let text = reply.strip_suffix(b"\r\n").unwrap_or(reply);
    let mut garbled: Vec<u8> = text.iter().rev().copied().collect();
    garbled.extend_from_slice(b"\r\n");
    garbled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extron::frame::{Item, LineReader};
    use crate::extron::{Options, Session};
    use crate::kit::Pair;
    use crate::{DriverSettings, Output, Protocol, Request, SessionError};
    use serde_json::{Value, json};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::time::{self, Instant};

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
                lines: LineReader::new(),
            }
        }

        /// The next line or prompt, or `None` at EOF.
        async fn item(&mut self) -> Option<Item> {
            loop {
                if let Some(item) = self.lines.next_item().unwrap() {
                    return Some(item);
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

        async fn line(&mut self) -> Option<String> {
            match self.item().await? {
                Item::Line(line) => Some(line),
                Item::PasswordPrompt => Some(PASSWORD_PROMPT.into()),
            }
        }

        async fn send(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).await.unwrap();
        }

        async fn ask(&mut self, bytes: &[u8]) -> Option<String> {
            self.send(bytes).await;
            self.line().await
        }

        /// Connects, reads the two banner lines, logs in if `password`, sets verbose mode.
        async fn ready(addr: SocketAddr, password: Option<&str>, verbose: u8) -> Client {
            let mut client = Client::connect(addr).await;
            client.line().await.unwrap();
            client.line().await.unwrap();
            if let Some(password) = password {
                assert_eq!(client.item().await, Some(Item::PasswordPrompt));
                let reply = client.ask(format!("{password}\r").as_bytes()).await;
                assert_eq!(reply.as_deref(), Some("Login Administrator"));
            }
            let reply = client.ask(format!("\x1b{verbose}CV\r").as_bytes()).await;
            assert_eq!(reply, Some(format!("Vrb{verbose}")));
            client
        }
    }

    #[tokio::test]
    async fn banner_password_verbose_and_commands() {
        let sim = start(Config {
            password: Some("extron".into()),
            outputs: 4,
            ..Config::default()
        })
        .await
        .unwrap();
        let mut client = Client::connect(sim.local_addr()).await;
        assert!(
            client
                .line()
                .await
                .unwrap()
                .starts_with("(c) Copyright 2024, Extron")
        );
        assert_eq!(
            client.line().await.as_deref(),
            Some("Tue, 04 Jun 2024 10:21:07")
        );
        assert_eq!(client.item().await, Some(Item::PasswordPrompt));
        client.send(b"wrong\r").await;
        assert_eq!(client.item().await, Some(Item::PasswordPrompt));
        assert_eq!(
            client.ask(b"extron\r").await.as_deref(),
            Some("Login Administrator")
        );
        assert_eq!(client.ask(b"\x1b3CV\r").await.as_deref(), Some("Vrb3"));
        assert_eq!(client.ask(b"1*2!").await.as_deref(), Some("Out02 In01 All"));
        assert_eq!(client.ask(b"2*40V").await.as_deref(), Some("Out02 Vol40"));
        // Verbose 3 tags query answers like the set's.
        assert_eq!(client.ask(b"2$").await.as_deref(), Some("Out02 In01 Aud"));
        assert_eq!(client.ask(b"\x1bCV\r").await.as_deref(), Some("3"));
        assert_eq!(client.ask(b"\x1b0CV\r").await.as_deref(), Some("Vrb0"));
        assert_eq!(
            client.ask(b"2$").await.as_deref(),
            Some("1"),
            "bare in mode 0"
        );
        assert_eq!(client.ask(b"\x1b3CV\r").await.as_deref(), Some("Vrb3"));
        assert_eq!(client.ask(b"99*1!").await.as_deref(), Some("E01"));
        // (The manual's `ZZZ!` vector is cut as `Z` `Z` `Z` `!` on this stream parser,
        // since `Z` alone is a mute read; the model answers `ZZZ!` as one command E10.)
        assert_eq!(client.ask(b"1*2X").await.as_deref(), Some("E10"));
        assert_eq!(
            sim.commands_received(),
            [
                "\\x1b3CV", "1*2!", "2*40V", "2$", "\\x1bCV", "\\x1b0CV", "2$", "\\x1b3CV",
                "99*1!", "1*2X"
            ]
        );
        let output = sim.state().outputs[1];
        assert_eq!((output.video, output.audio, output.volume), (1, 1, 40));
        assert_eq!(sim.connection_count(), 1);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn front_panel_changes_reach_verbose_clients_only() {
        let sim = start(Config::default()).await.unwrap();
        let mut verbose = Client::ready(sim.local_addr(), None, 3).await;
        let mut quiet = Client::ready(sim.local_addr(), None, 0).await;
        sim.tie(3, 2, TieKind::All).unwrap();
        assert_eq!(verbose.line().await.as_deref(), Some("Out02 In03 All"));
        sim.set_volume(1, 20).unwrap();
        assert_eq!(verbose.line().await.as_deref(), Some("Out01 Vol20"));
        sim.set_audio_mute(4, true).unwrap();
        assert_eq!(verbose.line().await.as_deref(), Some("Amt04*1"));
        sim.set_video_mute(4, true).unwrap();
        assert_eq!(verbose.line().await.as_deref(), Some("Vmt04*1"));
        assert_eq!(sim.tie(9, 1, TieKind::Video), Err(ErrorCode(1)));
        assert_eq!(sim.set_volume(9, 1), Err(ErrorCode(12)));
        // Verbose mode 0 hears nothing: its next line is the answer to its own query.
        assert_eq!(quiet.ask(b"2!").await.as_deref(), Some("3"));
        assert!(sim.state().outputs[3].audio_mute);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn single_output_reports_use_the_short_form() {
        let sim = start(Config {
            outputs: 1,
            password: None,
            ..Config::default()
        })
        .await
        .unwrap();
        let mut client = Client::ready(sim.local_addr(), None, 3).await;
        sim.set_volume(1, 82).unwrap();
        assert_eq!(client.line().await.as_deref(), Some("Vol82"));
        assert_eq!(client.ask(b"0Z").await.as_deref(), Some("Amt0"));
        assert_eq!(client.ask(b"w1cv\r\n").await.as_deref(), Some("Vrb1"));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn dropped_reply() {
        let sim = start(Config::default()).await.unwrap();
        let mut client = Client::ready(sim.local_addr(), None, 3).await;
        sim.inject(Fault::DropNextReply);
        client.send(b"1*2!").await;
        // The tie was carried out; only its reply was lost.
        assert_eq!(client.ask(b"2%").await.as_deref(), Some("Out02 In01 Vid"));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn garbled_reply() {
        let sim = start(Config::default()).await.unwrap();
        let mut client = Client::ready(sim.local_addr(), None, 3).await;
        sim.inject(Fault::GarbleNextReply);
        assert_eq!(client.ask(b"1*2!").await.as_deref(), Some("llA 10nI 20tuO"));
        assert_eq!(client.ask(b"1*2!").await.as_deref(), Some("Out02 In01 All"));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn close_on_next_command() {
        let sim = start(Config::default()).await.unwrap();
        let mut client = Client::ready(sim.local_addr(), None, 3).await;
        sim.inject(Fault::CloseOnNextCommand);
        assert_eq!(client.ask(b"1*2!").await, None);
        assert_eq!(sim.state().outputs[1].video, 0);
        assert_eq!(sim.commands_received(), ["\\x1b3CV", "1*2!"]);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn error_next_command() {
        let sim = start(Config::default()).await.unwrap();
        let mut client = Client::ready(sim.local_addr(), None, 3).await;
        sim.inject(Fault::ErrorNextCommand("E22"));
        assert_eq!(client.ask(b"1*2!").await.as_deref(), Some("E22"));
        assert_eq!(sim.state().outputs[1].video, 0);
        assert_eq!(client.ask(b"1*2!").await.as_deref(), Some("Out02 In01 All"));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn line_noise_is_refused_and_the_next_command_answered() {
        let sim = start(Config::default()).await.unwrap();
        let mut client = Client::ready(sim.local_addr(), None, 0).await;
        // An Esc cut short by noise is refused, as is the stray byte after it (any byte
        // that is no command is), and the tie after them is carried out at once.
        client.send(b"\x1b\x02\xfe").await;
        assert_eq!(client.line().await.as_deref(), Some("E10"));
        assert_eq!(client.line().await.as_deref(), Some("E10"));
        assert_eq!(client.ask(b"1*2!").await.as_deref(), Some("Out02 In01 All"));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn delayed_replies() {
        let sim = start(Config::default()).await.unwrap();
        let mut client = Client::ready(sim.local_addr(), None, 3).await;
        sim.inject(Fault::DelayReplies(Duration::from_millis(200)));
        let sent = Instant::now();
        assert_eq!(client.ask(b"Q").await.as_deref(), Some("Ver1.05"));
        assert!(sent.elapsed() >= Duration::from_millis(200));
        sim.inject(Fault::DelayReplies(Duration::ZERO));
        let sent = Instant::now();
        assert_eq!(client.ask(b"N").await.as_deref(), Some("Pno60-0000-01"));
        assert!(sent.elapsed() < Duration::from_millis(200));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_closes_connections_and_frees_the_port() {
        let sim = start(Config::default()).await.unwrap();
        let addr = sim.local_addr();
        let mut client = Client::ready(addr, None, 3).await;
        sim.shutdown().await;
        assert_eq!(client.line().await, None);
        sim.shutdown().await;
        let restarted = start(Config {
            listen: addr,
            ..Config::default()
        })
        .await
        .unwrap();
        let mut client = Client::ready(addr, None, 3).await;
        assert_eq!(client.ask(b"Q").await.as_deref(), Some("Ver1.05"));
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
        let mut client = Client::ready(sim.local_addr(), None, 3).await;
        assert_eq!(client.line().await, None);
        sim.shutdown().await;
    }

    /// The driver's session against the switcher in memory, connected: the clock moves
    /// to each timer the session sets (the quiet after a banner) until it is ready or
    /// gives up. Returns the pair and what the session put out.
    fn connect(
        config: &Config,
        options: Value,
        password: Option<&str>,
    ) -> (Pair<Session, Switcher>, Vec<Output>) {
        let Value::Object(options) = options else {
            panic!("options must be an object")
        };
        let settings = DriverSettings {
            options,
            password: password.map(Into::into),
        };
        let session = Session::new(Options::from_settings(&settings).unwrap());
        let mut pair = Pair::new(session, Switcher::new(config));
        let mut outputs = pair.connect();
        while !outputs
            .iter()
            .any(|o| matches!(o, Output::Ready | Output::Fatal(_)))
        {
            let at = pair
                .session
                .poll_timeout()
                .expect("the session waits for nothing");
            outputs.extend(pair.advance(at - pair.now));
        }
        (pair, outputs)
    }

    /// Runs each request to completion, returning every output.
    fn run(pair: &mut Pair<Session, Switcher>, requests: &[Request]) -> Vec<Output> {
        let mut outputs = Vec::new();
        for request in requests {
            outputs.extend(pair.run(request).unwrap());
        }
        outputs
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

    #[test]
    fn driver_session_against_the_model() {
        let config = Config {
            password: Some("pw".into()),
            outputs: 2,
            inputs: 4,
            ..Config::default()
        };
        let options = json!({"outputs": 2, "inputs": 4});
        let (mut pair, _) = connect(&config, options.clone(), Some("pw"));
        // A front-panel tie, reported as a verbose-3 connection hears it.
        let report = pair.model.model.tie(2, 1, TieKind::Video).unwrap();
        let mut outputs = pair.device_says(&report.encode());
        outputs.extend(run(
            &mut pair,
            &[
                command("route", json!({"input": 3, "output": 2})),
                command("route", json!({"input": 4, "output": 1, "kind": "audio"})),
                command("volume", json!({"level": 40, "output": 1})),
                command("mute", json!({"audio": true, "video": false, "output": 2})),
                poll("routes"),
                poll("info"),
            ],
        ));
        assert!(
            outputs
                .iter()
                .all(|o| !matches!(o, Output::Completed(Err(_)) | Output::Fatal(_))),
            "{outputs:?}"
        );
        let got = updates(&outputs);
        let has = |point: &str, value: Value| got.contains(&(point.to_string(), value));
        assert!(has("route.1", json!(2)), "{got:?}");
        assert!(
            has("route.2", json!(3)) && has("audio_route.2", json!(3)),
            "{got:?}"
        );
        assert!(has("audio_route.1", json!(4)), "{got:?}");
        assert!(has("volume.1", json!(40)), "{got:?}");
        assert!(has("audio_mute.2", json!(true)), "{got:?}");
        assert!(has("video_mute.2", json!(false)), "{got:?}");
        assert!(has("part_number", json!("60-0000-01")), "{got:?}");
        assert!(has("firmware", json!("1.05")), "{got:?}");
        // The routes poll read back what was set, video then audio per output.
        assert_eq!(
            got[got.len() - 6..got.len() - 2],
            [
                ("route.1".to_string(), json!(2)),
                ("audio_route.1".to_string(), json!(4)),
                ("route.2".to_string(), json!(3)),
                ("audio_route.2".to_string(), json!(3)),
            ]
        );
        assert_eq!(
            pair.model.commands,
            [
                "\\x1b3CV", "3*2!", "4*1$", "1*40V", "2*1Z", "2*0B", "1%", "1$", "2%", "2$", "N",
                "Q"
            ]
        );

        let (_, outputs) = connect(&config, options.clone(), Some("wrong"));
        assert!(
            matches!(outputs.last(), Some(Output::Fatal(SessionError::AuthFailed(m))) if m.contains("rejected")),
            "{outputs:?}"
        );
        let (_, outputs) = connect(&config, options, None);
        assert!(
            matches!(outputs.last(), Some(Output::Fatal(SessionError::AuthFailed(m))) if m.contains("set `password`")),
            "{outputs:?}"
        );
    }

    #[test]
    fn driver_session_without_password_uses_the_quiet_banner() {
        let config = Config {
            outputs: 1,
            ..Config::default()
        };
        let (mut pair, _) = connect(&config, json!({}), None);
        let outputs = run(
            &mut pair,
            &[command("volume", json!({"level": 82})), poll("mute")],
        );
        assert_eq!(
            updates(&outputs),
            [
                ("volume".to_string(), json!(82)),
                ("audio_mute".to_string(), json!(false)),
                ("video_mute".to_string(), json!(false)),
            ]
        );
        assert_eq!(pair.model.commands, ["\\x1b3CV", "82V", "Z", "B"]);
    }
}
