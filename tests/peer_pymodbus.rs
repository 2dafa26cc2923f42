//! Our Modbus simulator and our Modbus driver against pymodbus 3.16.1, a Modbus stack
//! nobody on this project wrote, over Modbus TCP and over Modbus RTU on a pseudo-terminal.
//!
//! - pymodbus as the client (tests/peers/modbus_client.py) reads and writes coils and
//!   holding registers of our simulator, decoding f32/u16/i32 values in two word orders
//!   with its own helpers and checking that unmapped addresses get exception 02; the test
//!   then checks the simulator's own point values show every write.
//! - our driver (the sans-IO [`Session`], run over the link as the gateway's runtime runs
//!   it) polls and writes a device served by pymodbus (tests/peers/modbus_server.py): the
//!   decoded values must equal what the script stored, writes must read back, and the
//!   script's own tables, printed when it exits, must hold what the driver wrote, in the
//!   right word order. pymodbus deviates from the spec on error paths (PROTOCOLS.md §3.7),
//!   so only the good path is checked against it.
//!
//! Needs `AVGATE_PEERS_PYTHON` = a python with pymodbus installed (CI sets it up from
//! tests/peers/requirements.txt); without it the tests print SKIP and pass.

mod peer_support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use avgate_drivers::modbus::simulator::{self, Config, Handle};
use avgate_drivers::modbus::{RegisterMap, Session};
use avgate_drivers::{DeviceError, Output, Protocol, Request};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout};

const CLIENT_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/modbus_client.py");
const SERVER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/modbus_server.py");

/// Bound on a whole script run (each of its requests is bounded at 2 s).
const LIMIT: Duration = Duration::from_secs(60);

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

// ---------------------------------------------------------------------------------------
// pymodbus client -> our simulator

/// The layout tests/peers/modbus_client.py expects (its docstring lists it).
fn client_map() -> RegisterMap {
    RegisterMap::from_options(&object(json!({
        "points": [
            { "name": "lamp", "table": "coil", "address": 0, "writable": true },
            { "name": "mute", "table": "coil", "address": 1, "writable": true },
            { "name": "fan", "table": "coil", "address": 2, "writable": true },
            { "name": "setpoint", "table": "holding", "address": 0, "type": "f32",
              "order": "ABCD", "writable": true },
            { "name": "gain", "table": "holding", "address": 2, "type": "f32",
              "order": "CDAB", "writable": true },
            { "name": "level", "table": "holding", "address": 4, "type": "u16", "writable": true },
            { "name": "offset", "table": "holding", "address": 6, "type": "i32",
              "order": "CDAB", "writable": true },
            { "name": "position", "table": "holding", "address": 8, "type": "i32",
              "order": "ABCD", "writable": true },
            { "name": "temperature", "table": "input", "address": 0, "type": "f32",
              "order": "CDAB" },
        ]
    })))
    .expect("the client map is valid")
}

/// A simulator holding the values the script expects to read first.
fn client_simulator() -> Handle {
    let device = simulator::start_tcp(Config::new(client_map())).expect("simulator starts");
    for (point, value) in [
        ("lamp", json!(true)),
        ("mute", json!(false)),
        ("fan", json!(false)),
        ("setpoint", json!(22.5)),
        ("gain", json!(-1.25)),
        ("level", json!(1234)),
        ("offset", json!(-123456)),
        ("position", json!(123456)),
        ("temperature", json!(21.5)),
    ] {
        device.set_point(point, &value).unwrap();
    }
    device
}

/// What the script must have left behind, seen from the simulator.
fn assert_device_after_client(device: &Handle) {
    let expected = [
        ("lamp", json!(false)),
        ("mute", json!(true)),
        ("fan", json!(true)),
        ("setpoint", json!(48.25)),
        ("gain", json!(0.5)),
        ("level", json!(4321)),
        ("offset", json!(-7)),
        // Never written: a write that spilled over its registers would change these.
        ("position", json!(123456)),
        ("temperature", json!(21.5)),
    ];
    for (point, value) in expected {
        assert_eq!(device.point(point), Some(value), "point {point}");
    }
    // 3 initial reads, 2 coil writes with 2 read-backs, 4 register writes with 1
    // read-back, 3 refused requests: nothing retried, nothing lost.
    assert_eq!(device.requests_received(), 15);
}

#[tokio::test]
async fn pymodbus_client_drives_the_simulator_over_tcp() {
    let Some(python) = peer_support::python("pymodbus==3.16.1") else {
        return;
    };
    let device = client_simulator();
    let address = device.local_addr().to_string();
    peer_support::run_script(&python, CLIENT_SCRIPT, &["--tcp", &address], LIMIT).await;
    assert_device_after_client(&device);
    device.shutdown().await;
}

#[tokio::test]
async fn pymodbus_client_drives_the_simulator_over_an_rtu_pty() {
    let Some(python) = peer_support::python("pymodbus==3.16.1") else {
        return;
    };
    let device = client_simulator();
    let path = device.serve_rtu_pty().expect("pty served");
    peer_support::run_script(&python, CLIENT_SCRIPT, &["--rtu", &path], LIMIT).await;
    assert_device_after_client(&device);
    device.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// our driver -> pymodbus server

/// How long the server script may take to start (python and pymodbus imports included).
const STARTUP_LIMIT: Duration = Duration::from_secs(30);
/// How long the driver waits for a reply before calling the device silent.
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

/// The driver's profile options for the layout tests/peers/modbus_server.py serves (its
/// docstring lists it and the values it stores).
fn server_options(framing: &str) -> Map<String, Value> {
    object(json!({
        "framing": framing,
        "unit": 1,
        "points": [
            { "name": "power", "table": "coil", "address": 0, "writable": true },
            { "name": "mute", "table": "coil", "address": 1, "writable": true },
            { "name": "setpoint", "table": "holding", "address": 0, "type": "f32",
              "order": "CDAB", "writable": true },
            { "name": "level", "table": "holding", "address": 2, "type": "u16", "writable": true },
            { "name": "offset", "table": "holding", "address": 4, "type": "i32",
              "order": "ABCD", "writable": true },
            { "name": "temperature", "table": "input", "address": 0, "type": "f32",
              "order": "CDAB" },
        ]
    }))
}

/// A running tests/peers/modbus_server.py.
struct PymodbusServer {
    child: Child,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
    stderr: tokio::task::JoinHandle<String>,
}

impl PymodbusServer {
    /// Starts the script and waits for its `ready <transport> <where>` line; returns the
    /// server and where to reach it.
    async fn start(python: &str, transport: &str) -> (PymodbusServer, String) {
        let mut child = tokio::process::Command::new(python)
            .arg(SERVER_SCRIPT)
            .arg(format!("--{transport}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
        let mut stderr = child.stderr.take().expect("stderr piped");
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        let stdout = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
        let mut server = PymodbusServer {
            child,
            stdout,
            stderr,
        };
        let line = server.next_line(STARTUP_LIMIT).await;
        let prefix = format!("ready {transport} ");
        let Some(location) = line.as_deref().and_then(|l| l.strip_prefix(&prefix)) else {
            server
                .fail(&format!("expected `{prefix}...`, got {line:?}"))
                .await
        };
        let location = location.to_string();
        (server, location)
    }

    async fn next_line(&mut self, limit: Duration) -> Option<String> {
        tokio::time::timeout(limit, self.stdout.next_line())
            .await
            .expect("pymodbus server printed its next line in time")
            .expect("pymodbus server stdout readable")
    }

    /// Closes stdin, which stops the server, and returns the tables it printed on exit.
    async fn finish(mut self) -> Value {
        drop(self.child.stdin.take());
        let line = self.next_line(LIMIT).await;
        let Some(tables) = line.as_deref().and_then(|l| l.strip_prefix("final ")) else {
            self.fail(&format!("expected `final {{...}}`, got {line:?}"))
                .await
        };
        let tables: Value = serde_json::from_str(tables).expect("final tables are JSON");
        let status = tokio::time::timeout(LIMIT, self.child.wait())
            .await
            .expect("pymodbus server exited in time")
            .expect("pymodbus server status");
        assert!(status.success(), "pymodbus server exited with {status}");
        tables
    }

    async fn fail(mut self, problem: &str) -> ! {
        let _ = self.child.kill().await;
        let stderr = tokio::time::timeout(LIMIT, self.stderr)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        panic!("pymodbus server: {problem}\n{stderr}");
    }
}

fn session(framing: &str) -> Session {
    let mut session = Session::from_options(&server_options(framing)).expect("valid options");
    session.connected(Instant::now());
    assert_eq!(session.poll_output(), Some(Output::Ready));
    session
}

fn poll(group: &str) -> Request {
    Request::Poll {
        query: group.into(),
    }
}

fn write(point: &str, value: Value) -> Request {
    Request::Command {
        name: "write".into(),
        args: object(json!({ "point": point, "value": value })),
    }
}

/// What one request produced.
#[derive(Debug)]
struct Run {
    updates: Vec<(String, Value)>,
    result: Result<(), DeviceError>,
}

impl Run {
    fn value(&self, point: &str) -> &Value {
        self.updates
            .iter()
            .find(|(name, _)| name == point)
            .map(|(_, value)| value)
            .unwrap_or_else(|| panic!("no update for {point}: {self:?}"))
    }
}

/// Runs one request to its end as the gateway's runtime would: sends what the session
/// asks, feeds it what arrives, fires its retry timer. Fails the test if the device stays
/// silent for [`REPLY_TIMEOUT`].
async fn run(
    session: &mut Session,
    link: &mut (impl AsyncRead + AsyncWrite + Unpin),
    request: Request,
) -> Run {
    session
        .start(Instant::now(), &request)
        .unwrap_or_else(|e| panic!("{request:?} refused: {e}"));
    let mut updates = Vec::new();
    let mut deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
    let mut buf = [0u8; 512];
    loop {
        while let Some(output) = session.poll_output() {
            match output {
                Output::Transmit(bytes) => {
                    link.write_all(&bytes).await.expect("link writable");
                    deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
                }
                Output::Update { point, value } => updates.push((point, value)),
                Output::Completed(result) => return Run { updates, result },
                // A poll group pauses between reads so a command could go first; with
                // none waiting here, it carries on at once.
                Output::Paused => session.resume(Instant::now()),
                other => panic!("unexpected {other:?} during {request:?}"),
            }
        }
        let retry = session.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            read = link.read(&mut buf) => {
                let n = read.expect("link readable");
                assert!(n > 0, "the device closed the link during {request:?}");
                session.received(Instant::now(), &buf[..n]);
            }
            _ = tokio::time::sleep_until(retry.unwrap_or(deadline)), if retry.is_some() => {
                session.handle_timeout(Instant::now());
            }
            _ = tokio::time::sleep_until(deadline) => {
                panic!("no answer from the pymodbus server to {request:?}");
            }
        }
    }
}

/// Registers of an f32 in CDAB order (low word first), computed here rather than by the
/// driver's codec so a codec mistake cannot cancel itself out.
fn f32_cdab(value: f32) -> [u16; 2] {
    let bits = value.to_bits();
    [bits as u16, (bits >> 16) as u16]
}

/// Registers of an i32 in ABCD order (high word first).
fn i32_abcd(value: i32) -> [u16; 2] {
    let bits = value as u32;
    [(bits >> 16) as u16, bits as u16]
}

/// Polls the script's device, writes to it, polls again; then checks the script's own
/// tables hold the writes.
async fn drive_pymodbus_server(
    server: PymodbusServer,
    framing: &str,
    link: &mut (impl AsyncRead + AsyncWrite + Unpin),
) {
    let mut session = session(framing);

    let first = run(&mut session, link, poll("default")).await;
    assert_eq!(first.result, Ok(()), "{first:?}");
    for (point, value) in [
        ("power", json!(true)),
        ("mute", json!(false)),
        ("setpoint", json!(22.5)),
        ("level", json!(1234)),
        ("offset", json!(-123456)),
        ("temperature", json!(21.5)),
    ] {
        assert_eq!(
            first.value(point),
            &value,
            "point {point} as the script set it"
        );
    }

    // Each write is read back by the driver, so its update is what the server holds.
    for (point, value) in [
        ("setpoint", json!(48.25)),
        ("level", json!(4321)),
        ("offset", json!(-7)),
        ("power", json!(false)),
        ("mute", json!(true)),
    ] {
        let written = run(&mut session, link, write(point, value.clone())).await;
        assert_eq!(written.result, Ok(()), "write {point}: {written:?}");
        assert_eq!(written.updates, [(point.to_string(), value)], "read back");
    }

    let second = run(&mut session, link, poll("default")).await;
    assert_eq!(second.result, Ok(()), "{second:?}");
    for (point, value) in [
        ("power", json!(false)),
        ("mute", json!(true)),
        ("setpoint", json!(48.25)),
        ("level", json!(4321)),
        ("offset", json!(-7)),
        ("temperature", json!(21.5)),
    ] {
        assert_eq!(
            second.value(point),
            &value,
            "point {point} after the writes"
        );
    }

    let tables = server.finish().await;
    let coils: Vec<bool> = serde_json::from_value(tables["coils"].clone()).unwrap();
    let holding: Vec<u16> = serde_json::from_value(tables["holding"].clone()).unwrap();
    let input: Vec<u16> = serde_json::from_value(tables["input"].clone()).unwrap();
    assert_eq!(coils[..2], [false, true], "coils {coils:?}");
    assert_eq!(holding[0..2], f32_cdab(48.25), "setpoint words {holding:?}");
    assert_eq!(holding[2], 4321, "level {holding:?}");
    assert_eq!(holding[4..6], i32_abcd(-7), "offset words {holding:?}");
    // Nothing else touched: no write spilled into neighbouring registers or coils.
    assert_eq!([holding[3]], [0], "{holding:?}");
    assert!(holding[6..].iter().all(|&word| word == 0), "{holding:?}");
    assert!(coils[2..].iter().all(|&bit| !bit), "{coils:?}");
    assert_eq!(input[0..2], f32_cdab(21.5), "{input:?}");
}

#[tokio::test]
async fn our_driver_polls_and_writes_a_pymodbus_server_over_tcp() {
    let Some(python) = peer_support::python("pymodbus==3.16.1") else {
        return;
    };
    let (server, address) = PymodbusServer::start(&python, "tcp").await;
    let mut link = tokio::time::timeout(LIMIT, tokio::net::TcpStream::connect(&address))
        .await
        .expect("connected in time")
        .unwrap_or_else(|e| panic!("cannot connect to {address}: {e}"));
    drive_pymodbus_server(server, "tcp", &mut link).await;
}

#[tokio::test]
async fn our_driver_polls_and_writes_a_pymodbus_server_over_an_rtu_pty() {
    let Some(python) = peer_support::python("pymodbus==3.16.1") else {
        return;
    };
    let (server, path) = PymodbusServer::start(&python, "rtu").await;
    // A pty ignores the line settings; 9600 8N1 is what a real line would use.
    let mut port = tokio_serial::SerialStream::open(&tokio_serial::new(&path, 9600))
        .unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
    drive_pymodbus_server(server, "rtu", &mut port).await;
}
