//! An Extron switcher on a TCP socket: the [`model`](super::model) served with tokio the
//! way a unit serves Telnet, plus a [`Handle`] for front-panel changes and fault injection.
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

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::{self, Instant};
use tracing::debug;

use super::frame::{self, Command, CommandReader, ErrorCode, PASSWORD_PROMPT, Response};
use super::model::{Model, Settings};
use crate::sim_server::{Link, Listener, lock, spawn_pty};

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

/// State shared by the accept loop, every connection and every [`Handle`].
#[derive(Debug)]
struct Shared {
    password: Option<String>,
    banner: Vec<String>,
    idle_timeout: Duration,
    model: Mutex<Model>,
    pending: Mutex<Pending>,
    commands: Mutex<Vec<String>>,
    /// Front-panel reports, fanned out to connections (each decides by its verbose mode).
    notify: broadcast::Sender<Response>,
    /// Pseudo-terminals being served (see [`Handle::serve_pty`]).
    ptys: Mutex<Vec<JoinHandle<()>>>,
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
        banner: config.banner.clone(),
        idle_timeout: config.idle_timeout,
        model: Mutex::new(Model::new(config.switcher())),
        pending: Mutex::new(Pending::default()),
        commands: Mutex::new(Vec::new()),
        notify: broadcast::Sender::new(64),
        ptys: Mutex::new(Vec::new()),
    });
    let serving = Arc::clone(&shared);
    let listener = Listener::start(config.listen, "extron simulator", move |stream, peer| {
        let idle = Some(serving.idle_timeout);
        serve(
            Arc::clone(&serving),
            Box::new(stream),
            peer.to_string(),
            idle,
        )
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

    /// The switcher's state now.
    pub fn state(&self) -> State {
        lock(&self.shared.model).state()
    }

    /// Ties `input` (0 = none) to `output` on the front panel and reports it
    /// (`Out02 In03 All`) to every connection in verbose mode 1 or 3. Returns the error
    /// code a unit would show for an input or output it does not have.
    pub fn tie(&self, input: u16, output: u16, kind: TieKind) -> Result<(), ErrorCode> {
        let report = lock(&self.shared.model).tie(input, output, kind)?;
        self.shared.front_panel(report);
        Ok(())
    }

    /// Turns `output`'s volume knob, reported as `Out01 Vol50` (or `Vol50` on a
    /// single-output product).
    pub fn set_volume(&self, output: u16, level: u16) -> Result<(), ErrorCode> {
        let mut model = lock(&self.shared.model);
        let form = model.report_form(output)?;
        let report = model.set_volume(form, level)?;
        drop(model);
        self.shared.front_panel(report);
        Ok(())
    }

    /// Presses `output`'s audio mute, reported as `Amt01*1` (or `Amt1`).
    pub fn set_audio_mute(&self, output: u16, on: bool) -> Result<(), ErrorCode> {
        let mut model = lock(&self.shared.model);
        let form = model.report_form(output)?;
        let report = model.set_audio_mute(form, on)?;
        drop(model);
        self.shared.front_panel(report);
        Ok(())
    }

    /// Presses `output`'s video mute, reported as `Vmt01*1` (or `Vmt1`).
    pub fn set_video_mute(&self, output: u16, on: bool) -> Result<(), ErrorCode> {
        let mut model = lock(&self.shared.model);
        let form = model.report_form(output)?;
        let report = model.set_video_mute(form, on)?;
        drop(model);
        self.shared.front_panel(report);
        Ok(())
    }

    pub fn inject(&self, fault: Fault) {
        let mut pending = lock(&self.shared.pending);
        match fault {
            Fault::DropNextReply => pending.drop_reply = true,
            Fault::GarbleNextReply => pending.garble_reply = true,
            Fault::CloseOnNextCommand => pending.close = true,
            Fault::ErrorNextCommand(code) => pending.error = Some(code),
            Fault::DelayReplies(delay) => pending.delay = delay,
        }
    }

    /// Every command received after login on any connection, in order, escaped
    /// (`\x1b3CV`), also those refused or answered with an error. Passwords are not kept.
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
        self.unplug();
        self.listener.shutdown().await;
    }
}

impl Handle {
    /// Serves the switcher on a new pseudo-terminal, as on its RS-232 port, and returns the
    /// path of the device end (`/dev/pts/N`) for the gateway to open.
    pub fn serve_pty(&self) -> io::Result<String> {
        let shared = Arc::clone(&self.shared);
        let (path, task) = spawn_pty(|link, label| serve(shared, link, label, None))?;
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

/// Runs one connection. `idle` is the Telnet idle timeout; `None` means a serial port,
/// which has no banner, login or timeout.
async fn serve(shared: Arc<Shared>, stream: Box<dyn Link>, peer: String, idle: Option<Duration>) {
    debug!(%peer, "extron simulator: connection opened");
    let notes = shared.notify.subscribe();
    let connection = Connection {
        shared,
        stream,
        peer: peer.clone(),
        idle,
        reader: CommandReader::new(),
        verbose: 0,
        notes,
    };
    match connection.run().await {
        Ok(()) => debug!(%peer, "extron simulator: connection closed"),
        Err(e) => debug!(%peer, error = %e, "extron simulator: connection failed"),
    }
}

/// What to do after a command.
enum Action {
    Reply(Vec<u8>),
    Nothing,
    Close,
}

/// One client connection.
struct Connection {
    shared: Arc<Shared>,
    stream: Box<dyn Link>,
    peer: String,
    /// Telnet idle timeout; `None` on a serial port.
    idle: Option<Duration>,
    reader: CommandReader,
    /// 0 none (Telnet default), 1 verbose, 2 tagged, 3 verbose + tagged.
    verbose: u8,
    notes: broadcast::Receiver<Response>,
}

impl Connection {
    async fn run(mut self) -> io::Result<()> {
        if self.idle.is_some() {
            let mut banner = String::new();
            for line in &self.shared.banner {
                banner.push_str(line);
                banner.push_str("\r\n");
            }
            self.send(banner.as_bytes()).await?;
            if self.shared.password.is_some() && !self.login().await? {
                return Ok(());
            }
        }
        let mut idle_deadline = self.idle_deadline();
        loop {
            let command = match self.reader.next_command() {
                Ok(Some(command)) => command,
                Ok(None) => {
                    if !self.wait(idle_deadline).await? {
                        return Ok(());
                    }
                    continue;
                }
                Err(e) => {
                    debug!(peer = %self.peer, error = %e, "extron simulator: closing");
                    return Ok(());
                }
            };
            idle_deadline = self.idle_deadline();
            match self.respond(&command).await {
                Action::Reply(bytes) => self.send(&bytes).await?,
                Action::Nothing => {}
                Action::Close => return Ok(()),
            }
        }
    }

    /// When an idle Telnet session is closed; a serial port never is (a day stands for
    /// never, as a timer needs a time).
    fn idle_deadline(&self) -> Instant {
        Instant::now() + self.idle.unwrap_or(Duration::from_secs(86_400))
    }

    /// Prompts until the right password comes; `false` if the client left first.
    async fn login(&mut self) -> io::Result<bool> {
        let prompt = format!("\r\n{PASSWORD_PROMPT}");
        self.send(prompt.as_bytes()).await?;
        let deadline = self.idle_deadline();
        loop {
            let line = match self.reader.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => {
                    if !self.read_more(deadline).await? {
                        return Ok(false);
                    }
                    continue;
                }
                Err(_) => return Ok(false),
            };
            if Some(line.as_slice()) == self.shared.password.as_deref().map(str::as_bytes) {
                self.send(b"\r\nLogin Administrator\r\n").await?;
                return Ok(true);
            }
            self.send(prompt.as_bytes()).await?;
        }
    }

    /// Waits for bytes or a front-panel report; `false` when the client closed or went
    /// idle too long.
    async fn wait(&mut self, deadline: Instant) -> io::Result<bool> {
        loop {
            let mut buf = [0; 512];
            tokio::select! {
                read = time::timeout_at(deadline, self.stream.read(&mut buf)) => {
                    let Ok(read) = read else {
                        debug!(peer = %self.peer, "extron simulator: idle, closing");
                        return Ok(false);
                    };
                    let n = read?;
                    self.reader.push(&buf[..n]);
                    return Ok(n > 0);
                }
                note = self.notes.recv() => match note {
                    Ok(report) if matches!(self.verbose, 1 | 3) => {
                        self.send(&report.encode()).await?;
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return Ok(false),
                },
            }
        }
    }

    async fn read_more(&mut self, deadline: Instant) -> io::Result<bool> {
        let mut buf = [0; 512];
        match time::timeout_at(deadline, self.stream.read(&mut buf)).await {
            Err(_) => Ok(false),
            Ok(read) => {
                let n = read?;
                self.reader.push(&buf[..n]);
                Ok(n > 0)
            }
        }
    }

    async fn respond(&mut self, command: &[u8]) -> Action {
        debug!(peer = %self.peer, command = %frame::escape(command), "extron simulator <-");
        let shared = Arc::clone(&self.shared);
        lock(&shared.commands).push(frame::escape(command));
        if shared.take(|p| &mut p.close) {
            return Action::Close;
        }
        let injected = lock(&shared.pending).error.take();
        let reply = match injected {
            Some(code) => format!("{code}\r\n").into_bytes(),
            None => {
                let single = lock(&shared.model).single_output();
                let response = match Command::parse(command, single) {
                    Some(Command::Verbose(mode)) => {
                        self.verbose = mode;
                        Response::Verbose(mode)
                    }
                    Some(Command::ReadVerbose) => Response::Other(self.verbose.to_string()),
                    _ => lock(&shared.model).answer_tagged(command, matches!(self.verbose, 2 | 3)),
                };
                response.encode()
            }
        };
        let delay = lock(&shared.pending).delay;
        if !delay.is_zero() {
            time::sleep(delay).await;
        }
        if shared.take(|p| &mut p.drop_reply) {
            return Action::Nothing;
        }
        if shared.take(|p| &mut p.garble_reply) {
            return Action::Reply(garble(&reply));
        }
        Action::Reply(reply)
    }

    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        debug!(peer = %self.peer, bytes = %frame::escape(bytes), "extron simulator ->");
        self.stream.write_all(bytes).await
    }
}

impl Shared {
    /// Clears and returns one pending fault flag.
    fn take(&self, flag: impl FnOnce(&mut Pending) -> &mut bool) -> bool {
        std::mem::take(flag(&mut lock(&self.pending)))
    }

    fn front_panel(&self, report: Response) {
        debug!(report = %report, "extron simulator: front panel");
        // No receivers (no connection) is fine.
        let _ = self.notify.send(report);
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
    use crate::{DriverSettings, Output, Request, SessionError};
    use serde_json::{Value, json};
    use tokio::net::TcpStream;

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

    fn now() -> std::time::Instant {
        Instant::now().into_std()
    }

    /// Runs requests through the real driver session against the simulator, as the
    /// gateway's runtime would (minus retries), with the session's own timers, and returns
    /// every output. `on_ready` runs once the session is ready (front-panel changes).
    async fn drive(
        addr: SocketAddr,
        options: Value,
        password: Option<&str>,
        requests: &[Request],
        on_ready: impl FnOnce(),
    ) -> Vec<Output> {
        let Value::Object(options) = options else {
            panic!("options must be an object")
        };
        let settings = DriverSettings {
            options,
            password: password.map(Into::into),
        };
        let mut session = (crate::extron::DRIVER.build)(&settings).unwrap();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        session.connected(now());
        let mut requests = requests.iter();
        let mut on_ready = Some(on_ready);
        let mut outputs = Vec::new();
        let mut buf = [0; 256];
        let give_up = Instant::now() + PATIENCE;
        loop {
            while let Some(output) = session.poll_output() {
                match &output {
                    Output::Transmit(bytes) => stream.write_all(bytes).await.unwrap(),
                    Output::Ready | Output::Completed(_) => {
                        if let Some(hook) = on_ready.take() {
                            hook();
                        }
                        match requests.next() {
                            Some(request) => session.start(now(), request).unwrap(),
                            None => {
                                outputs.push(output);
                                return outputs;
                            }
                        }
                    }
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
            match time::timeout_at(wake, stream.read(&mut buf)).await {
                Ok(read) => {
                    let n = read.unwrap();
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

    #[tokio::test]
    async fn driver_session_against_simulator() {
        let sim = start(Config {
            password: Some("pw".into()),
            outputs: 2,
            inputs: 4,
            ..Config::default()
        })
        .await
        .unwrap();
        let requests = [
            command("route", json!({"input": 3, "output": 2})),
            command("route", json!({"input": 4, "output": 1, "kind": "audio"})),
            command("volume", json!({"level": 40, "output": 1})),
            command("mute", json!({"audio": true, "video": false, "output": 2})),
            poll("routes"),
            poll("info"),
        ];
        let front_panel = sim.clone();
        let options = json!({"outputs": 2, "inputs": 4});
        let outputs = drive(
            sim.local_addr(),
            options.clone(),
            Some("pw"),
            &requests,
            move || {
                front_panel.tie(2, 1, TieKind::Video).unwrap();
            },
        )
        .await;
        assert!(
            outputs
                .iter()
                .all(|o| !matches!(o, Output::Completed(Err(_)) | Output::Fatal(_))),
            "{outputs:?}"
        );
        let got = updates(&outputs);
        let has = |point: &str, value: Value| got.contains(&(point.to_string(), value));
        // The front-panel tie arrived unsolicited, whenever it came.
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
        let polled: Vec<_> = got[got.len() - 6..got.len() - 2].to_vec();
        assert_eq!(
            polled,
            [
                ("route.1".to_string(), json!(2)),
                ("audio_route.1".to_string(), json!(4)),
                ("route.2".to_string(), json!(3)),
                ("audio_route.2".to_string(), json!(3)),
            ]
        );
        assert_eq!(
            sim.commands_received(),
            [
                "\\x1b3CV", "3*2!", "4*1$", "1*40V", "2*1Z", "2*0B", "1%", "1$", "2%", "2$", "N",
                "Q"
            ]
        );

        let outputs = drive(sim.local_addr(), options.clone(), Some("wrong"), &[], || {}).await;
        assert!(
            matches!(outputs.last(), Some(Output::Fatal(SessionError::AuthFailed(m))) if m.contains("rejected")),
            "{outputs:?}"
        );
        let outputs = drive(sim.local_addr(), options, None, &[], || {}).await;
        assert!(
            matches!(outputs.last(), Some(Output::Fatal(SessionError::AuthFailed(m))) if m.contains("set `password`")),
            "{outputs:?}"
        );
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn driver_session_without_password_uses_the_quiet_banner() {
        let sim = start(Config {
            outputs: 1,
            ..Config::default()
        })
        .await
        .unwrap();
        let requests = [command("volume", json!({"level": 82})), poll("mute")];
        let outputs = drive(sim.local_addr(), json!({}), None, &requests, || {}).await;
        assert_eq!(
            updates(&outputs),
            [
                ("volume".to_string(), json!(82)),
                ("audio_mute".to_string(), json!(false)),
                ("video_mute".to_string(), json!(false)),
            ]
        );
        assert_eq!(sim.commands_received(), ["\\x1b3CV", "82V", "Z", "B"]);
        sim.shutdown().await;
    }
}
