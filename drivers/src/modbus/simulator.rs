//! A simulated Modbus device for tests and demos: the register [`Model`] served with
//! tokio-modbus's own server, over Modbus TCP and over RTU on a pseudo-terminal. The
//! server side is tokio-modbus's framing, not [`super::frame`], so the client is checked
//! against an implementation it shares no code with.
//!
//! Several unit ids can answer on one simulator, each with its own tables built from the
//! same map (several devices on one RS-485 line, or behind one TCP gateway); requests for
//! any other unit id get no reply, as on a real bus.
//!
//! ```no_run
//! # async fn demo(map: avgate_drivers::modbus::RegisterMap) -> std::io::Result<()> {
//! use avgate_drivers::modbus::simulator::{self, Config, Fault};
//! let sim = simulator::start_tcp(Config::new(map))?;
//! sim.set_point("current1", &serde_json::json!(2.5)).unwrap();
//! sim.inject(Fault::Exception(6));
//! let serial_path = sim.serve_rtu_pty()?;
//! # Ok(()) }
//! ```

use crate::sim_server::lock;
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tokio_modbus::{ExceptionCode, Request as ModbusRequest, Response, SlaveRequest};
use tracing::debug;

use super::frame::Operation;
use super::map::{RegisterMap, Table};
use super::model::{Answer, Model};
use super::plan::Read;
use super::write::{Exception, WriteRequest};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the TCP side listens (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    pub map: RegisterMap,
    /// The unit ids that answer; the first is the one [`Handle`]'s own methods act on.
    pub units: Vec<u8>,
}

impl Config {
    /// Unit 1 on a free loopback port.
    pub fn new(map: RegisterMap) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            map,
            units: vec![1],
        }
    }
}

/// Misbehaviour for the next request(s) to a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer the next request with this exception code.
    Exception(u8),
    /// Leave the next `n` requests unanswered.
    Silent(usize),
    /// Answer the next request only after this long.
    Delay(Duration),
}

#[derive(Debug)]
struct Device {
    model: Model,
    delay: Option<Duration>,
}

type Devices = Arc<BTreeMap<u8, Mutex<Device>>>;

/// A running simulator. Dropping it leaves the servers running; call
/// [`Handle::shutdown`].
#[derive(Debug)]
pub struct Handle {
    local_addr: SocketAddr,
    devices: Devices,
    main_unit: u8,
    /// The TCP server and every pty server, aborted by [`Handle::shutdown`].
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Serves `config` over Modbus TCP. Must be called within a tokio runtime.
pub fn start_tcp(config: Config) -> io::Result<Handle> {
    let Some(&main_unit) = config.units.first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the modbus simulator needs at least one unit id in `units`",
        ));
    };
    let devices: Devices = Arc::new(
        config
            .units
            .iter()
            .map(|&unit| {
                let device = Device {
                    model: Model::new(config.map.clone()),
                    delay: None,
                };
                (unit, Mutex::new(device))
            })
            .collect(),
    );
    let listener = bind(config.listen)?;
    let local_addr = listener.local_addr()?;
    let service = Service {
        devices: Arc::clone(&devices),
    };
    let task = tokio::spawn(async move {
        let server = tokio_modbus::server::tcp::Server::new(listener);
        let on_connected = move |stream, _peer| {
            let service = service.clone();
            async move { io::Result::Ok(Some((service, stream))) }
        };
        let on_error = |error: io::Error| debug!(%error, "modbus simulator connection failed");
        if let Err(error) = server.serve(&on_connected, on_error).await {
            debug!(%error, "modbus simulator stopped listening");
        }
    });
    debug!(%local_addr, "modbus simulator listening");
    Ok(Handle {
        local_addr,
        devices,
        main_unit,
        tasks: Mutex::new(vec![task]),
    })
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // So a test can stop a simulator and start another on the same port at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(64)
}

impl Handle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves the same units as Modbus RTU on a new pseudo-terminal; returns the path of
    /// the end a client opens (`/dev/pts/N`). Each call makes another line.
    pub fn serve_rtu_pty(&self) -> io::Result<String> {
        use tokio_serial::SerialPort;
        let (controller, device) = tokio_serial::SerialStream::pair().map_err(io::Error::other)?;
        let path = device
            .name()
            .ok_or_else(|| io::Error::other("the pseudo-terminal has no path"))?;
        let service = Service {
            devices: Arc::clone(&self.devices),
        };
        let task = tokio::spawn(async move {
            // Holding the device end open keeps the controlling end readable while no
            // client has the port open.
            let _device = device;
            let server = tokio_modbus::server::rtu::Server::new(controller);
            if let Err(error) = server.serve_forever(service).await {
                debug!(%error, "modbus simulator serial line stopped");
            }
        });
        lock(&self.tasks).push(task);
        Ok(path)
    }

    /// The unit `id`, if the simulator has it.
    pub fn unit(&self, id: u8) -> Option<Unit<'_>> {
        self.devices.get(&id).map(|device| Unit { device })
    }

    fn main(&self) -> Unit<'_> {
        Unit {
            device: &self.devices[&self.main_unit],
        }
    }

    /// Changes a point of the first unit, as its front panel or sensors would.
    pub fn set_point(&self, name: &str, value: &Value) -> Result<(), String> {
        self.main().set_point(name, value)
    }

    /// A point of the first unit as it holds it now.
    pub fn point(&self, name: &str) -> Option<Value> {
        self.main().point(name)
    }

    /// Makes the first unit misbehave (see [`Fault`]).
    pub fn inject(&self, fault: Fault) {
        self.main().inject(fault);
    }

    /// Requests the first unit received, answered or not.
    pub fn requests_received(&self) -> usize {
        self.main().requests_received()
    }

    /// Stops every server and closes their connections and serial lines.
    pub async fn shutdown(&self) {
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        debug!(local_addr = %self.local_addr, "modbus simulator stopped");
    }
}

/// One unit of a simulator.
#[derive(Debug, Clone, Copy)]
pub struct Unit<'a> {
    device: &'a Mutex<Device>,
}

impl Unit<'_> {
    pub fn set_point(&self, name: &str, value: &Value) -> Result<(), String> {
        lock(self.device).model.set_point(name, value)
    }

    pub fn point(&self, name: &str) -> Option<Value> {
        lock(self.device).model.point(name)
    }

    pub fn inject(&self, fault: Fault) {
        let mut device = lock(self.device);
        match fault {
            Fault::Exception(code) => device.model.fail_next(Exception::from_code(code)),
            Fault::Silent(count) => device.model.silence(count),
            Fault::Delay(delay) => device.delay = Some(delay),
        }
    }

    pub fn requests_received(&self) -> usize {
        lock(self.device).model.requests_received()
    }
}

/// The tokio-modbus service: routes each request to its unit's model.
#[derive(Debug, Clone)]
struct Service {
    devices: Devices,
}

type Reply = Result<Option<Response>, ExceptionCode>;

impl tokio_modbus::server::Service for Service {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Reply> + Send>>;

    fn call(&self, request: Self::Request) -> Self::Future {
        let (reply, delay) = match self.devices.get(&request.slave) {
            Some(device) => {
                let mut device = lock(device);
                let reply = answer(&mut device.model, &request.request);
                (reply, device.delay.take())
            }
            // Nobody at this unit id: silence, as on a real bus.
            None => (Ok(None), None),
        };
        Box::pin(async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            reply
        })
    }
}

/// The model's answer to a tokio-modbus request, as a tokio-modbus response.
fn answer(model: &mut Model, request: &ModbusRequest<'_>) -> Reply {
    let read = |table, start: &u16, count: &u16| {
        Some(Operation::Read(Read {
            table,
            start: *start,
            count: *count,
        }))
    };
    let operation = match request {
        ModbusRequest::ReadCoils(start, count) => read(Table::Coil, start, count),
        ModbusRequest::ReadDiscreteInputs(start, count) => read(Table::DiscreteInput, start, count),
        ModbusRequest::ReadHoldingRegisters(start, count) => read(Table::Holding, start, count),
        ModbusRequest::ReadInputRegisters(start, count) => read(Table::Input, start, count),
        ModbusRequest::WriteSingleCoil(address, value) => {
            Some(Operation::Write(WriteRequest::SingleCoil {
                address: *address,
                value: *value,
            }))
        }
        ModbusRequest::WriteMultipleCoils(address, values) => {
            Some(Operation::Write(WriteRequest::MultipleCoils {
                address: *address,
                values: values.to_vec(),
            }))
        }
        ModbusRequest::WriteSingleRegister(address, value) => {
            Some(Operation::Write(WriteRequest::SingleRegister {
                address: *address,
                value: *value,
            }))
        }
        ModbusRequest::WriteMultipleRegisters(address, values) => {
            Some(Operation::Write(WriteRequest::MultipleRegisters {
                address: *address,
                values: values.to_vec(),
            }))
        }
        _ => None,
    };
    let answer = match &operation {
        Some(operation) => model.answer(operation),
        None => model.unsupported(),
    };
    let response = match (answer, request) {
        (Answer::Silent, _) => return Ok(None),
        (Answer::Exception(exception), _) => return Err(ExceptionCode::new(exception.code())),
        (Answer::Bits(bits), ModbusRequest::ReadCoils(..)) => Response::ReadCoils(bits),
        (Answer::Bits(bits), _) => Response::ReadDiscreteInputs(bits),
        (Answer::Registers(words), ModbusRequest::ReadHoldingRegisters(..)) => {
            Response::ReadHoldingRegisters(words)
        }
        (Answer::Registers(words), _) => Response::ReadInputRegisters(words),
        (Answer::Written, ModbusRequest::WriteSingleCoil(address, value)) => {
            Response::WriteSingleCoil(*address, *value)
        }
        (Answer::Written, ModbusRequest::WriteMultipleCoils(address, values)) => {
            Response::WriteMultipleCoils(*address, values.len() as u16)
        }
        (Answer::Written, ModbusRequest::WriteSingleRegister(address, value)) => {
            Response::WriteSingleRegister(*address, *value)
        }
        (Answer::Written, ModbusRequest::WriteMultipleRegisters(address, values)) => {
            Response::WriteMultipleRegisters(*address, values.len() as u16)
        }
        // The model only writes for write requests.
        (Answer::Written, _) => return Err(ExceptionCode::ServerDeviceFailure),
    };
    Ok(Some(response))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::{Map, json};
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::modbus::Session;
    use crate::modbus::plan;
    use crate::{DeviceError, DeviceErrorKind, Output, Protocol, Request};

    /// How long a test waits for a reply before calling the device silent.
    const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

    fn options(framing: &str, unit: u8) -> Map<String, Value> {
        let Value::Object(options) = json!({
            "framing": framing,
            "unit": unit,
            "busy_backoff_ms": 20,
            "poll_groups": { "fast": "500ms" },
            "points": [
                { "name": "outlet1", "table": "coil", "address": 0, "writable": true, "poll": "fast" },
                { "name": "outlet2", "table": "coil", "address": 1, "writable": true, "poll": "fast" },
                { "name": "current1", "table": "input", "address": 100, "type": "f32",
                  "order": "CDAB", "poll": "fast" },
                { "name": "current2", "table": "input", "address": 106, "type": "f32",
                  "order": "CDAB", "poll": "fast" },
                { "name": "voltage", "table": "input", "address": 0, "scale": 0.1 },
                { "name": "label", "table": "holding", "address": 20, "type": "string",
                  "length": 4, "writable": true },
                { "name": "alarm", "table": "holding", "address": 30, "bit": 4, "writable": true },
            ]
        }) else {
            unreachable!()
        };
        options
    }

    fn config(units: Vec<u8>) -> Config {
        let map = RegisterMap::from_options(&options("tcp", 1)).unwrap();
        Config {
            units,
            ..Config::new(map)
        }
    }

    fn session(framing: &str, unit: u8) -> Session {
        let mut session = Session::from_options(&options(framing, unit)).unwrap();
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
        let Value::Object(args) = json!({ "point": point, "value": value }) else {
            unreachable!()
        };
        Request::Command {
            name: "write".into(),
            args,
        }
    }

    /// What one request produced.
    #[derive(Debug)]
    struct Run {
        updates: Vec<(String, Value)>,
        result: Result<(), DeviceError>,
    }

    /// Runs one request to its end as the gateway's runtime would: sends what the session
    /// asks, feeds it what arrives, fires its retry timer. `Err(())` when the device stays
    /// silent for [`REPLY_TIMEOUT`]; the session is then abandoned.
    async fn run(
        session: &mut Session,
        link: &mut (impl AsyncRead + AsyncWrite + Unpin),
        request: Request,
    ) -> Result<Run, ()> {
        session.start(Instant::now(), &request).unwrap();
        let mut updates = Vec::new();
        let mut deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
        let mut buf = [0u8; 512];
        loop {
            while let Some(output) = session.poll_output() {
                match output {
                    Output::Transmit(bytes) => {
                        link.write_all(&bytes).await.unwrap();
                        deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
                    }
                    Output::Update { point, value } => updates.push((point, value)),
                    Output::Completed(result) => return Ok(Run { updates, result }),
                    Output::Paused => session.resume(Instant::now()),
                    other => panic!("unexpected {other:?}"),
                }
            }
            let retry = session.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                read = link.read(&mut buf) => {
                    let n = read.unwrap();
                    assert!(n > 0, "the link closed");
                    session.received(Instant::now(), &buf[..n]);
                }
                _ = tokio::time::sleep_until(retry.unwrap_or(deadline)), if retry.is_some() => {
                    session.handle_timeout(Instant::now());
                }
                _ = tokio::time::sleep_until(deadline) => {
                    session.abandon();
                    return Err(());
                }
            }
        }
    }

    fn value(run: &Run, point: &str) -> Value {
        run.updates
            .iter()
            .find(|(name, _)| name == point)
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| panic!("no update for {point}: {run:?}"))
    }

    #[tokio::test]
    async fn a_session_polls_and_writes_over_tcp() {
        let sim = start_tcp(config(vec![1])).unwrap();
        sim.set_point("current1", &json!(22.5)).unwrap();
        sim.set_point("current2", &json!(1.25)).unwrap();
        sim.set_point("voltage", &json!(230.4)).unwrap();
        let mut link = TcpStream::connect(sim.local_addr()).await.unwrap();
        let mut session = session("tcp", 1);

        let map = session.map().clone();
        let planned = plan::plan(&map, "fast").unwrap().reads.len();
        assert_eq!(planned, 2, "coils, and one read spanning both currents");
        let fast = run(&mut session, &mut link, poll("fast")).await.unwrap();
        assert_eq!(fast.result, Ok(()));
        assert_eq!(sim.requests_received(), planned);
        assert_eq!(value(&fast, "current1"), json!(22.5));
        assert_eq!(value(&fast, "current2"), json!(1.25));
        assert_eq!(value(&fast, "outlet2"), json!(false));

        let written = run(&mut session, &mut link, write("outlet2", json!(true)))
            .await
            .unwrap();
        assert_eq!(written.result, Ok(()));
        assert_eq!(written.updates, [("outlet2".into(), json!(true))]);
        assert_eq!(sim.point("outlet2"), Some(json!(true)));

        let label = run(&mut session, &mut link, write("label", json!("PDU-1")))
            .await
            .unwrap();
        assert_eq!(label.updates, [("label".into(), json!("PDU-1"))]);

        sim.set_point("alarm", &json!(false)).unwrap();
        let alarm = run(&mut session, &mut link, write("alarm", json!(true)))
            .await
            .unwrap();
        assert_eq!(alarm.updates, [("alarm".into(), json!(true))]);
        assert_eq!(sim.point("alarm"), Some(json!(true)));

        // A front-panel change shows in the next poll.
        sim.set_point("voltage", &json!(231.0)).unwrap();
        let slow = run(&mut session, &mut link, poll("default")).await.unwrap();
        assert_eq!(value(&slow, "voltage"), json!(231.0));
        assert_eq!(value(&slow, "label"), json!("PDU-1"));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn exceptions_over_tcp() {
        let sim = start_tcp(config(vec![1])).unwrap();
        let mut link = TcpStream::connect(sim.local_addr()).await.unwrap();
        let mut session = session("tcp", 1);

        sim.inject(Fault::Exception(2));
        let refused = run(&mut session, &mut link, poll("fast")).await.unwrap();
        let error = refused.result.unwrap_err();
        assert_eq!(error.kind, DeviceErrorKind::InvalidArgs);
        assert!(error.message.contains("illegal data address"), "{error}");

        sim.inject(Fault::Exception(6));
        let before = sim.requests_received();
        let retried = run(&mut session, &mut link, poll("default")).await.unwrap();
        assert_eq!(retried.result, Ok(()));
        let planned = plan::plan(session.map(), "default").unwrap().reads.len();
        assert_eq!(sim.requests_received() - before, planned + 1, "one retry");

        sim.inject(Fault::Delay(Duration::from_millis(100)));
        let started = Instant::now();
        let late = run(&mut session, &mut link, poll("fast")).await.unwrap();
        assert_eq!(late.result, Ok(()));
        assert!(started.elapsed() >= Duration::from_millis(100));
        sim.shutdown().await;
        let mut buf = [0u8; 1];
        assert_eq!(
            link.read(&mut buf).await.unwrap_or(0),
            0,
            "shutdown closes connections"
        );
    }

    #[tokio::test]
    async fn raw_requests_get_spec_answers() {
        let sim = start_tcp(config(vec![1])).unwrap();
        let mut link = TcpStream::connect(sim.local_addr()).await.unwrap();
        let cases: [(&[u8], &[u8]); 3] = [
            (
                &[0, 2, 0, 0, 0, 6, 1, 3, 0, 0xC8, 0, 1],
                &[0, 2, 0, 0, 0, 3, 1, 0x83, 2],
            ),
            (
                &[0, 3, 0, 0, 0, 6, 1, 4, 0, 0, 0, 1],
                &[0, 3, 0, 0, 0, 5, 1, 4, 2, 0, 0],
            ),
            (
                &[0, 4, 0, 0, 0, 2, 1, 0x41],
                &[0, 4, 0, 0, 0, 3, 1, 0xC1, 1],
            ),
        ];
        for (request, reply) in cases {
            link.write_all(request).await.unwrap();
            let mut answer = vec![0u8; reply.len()];
            link.read_exact(&mut answer).await.unwrap();
            assert_eq!(answer, reply, "answer to {request:02X?}");
        }
        assert_eq!(sim.requests_received(), 3);
        sim.shutdown().await;
    }

    fn open(path: &str) -> tokio_serial::SerialStream {
        tokio_serial::SerialStream::open(&tokio_serial::new(path, 9600)).unwrap()
    }

    #[tokio::test]
    async fn a_session_polls_and_writes_over_an_rtu_pty() {
        let sim = start_tcp(config(vec![1])).unwrap();
        sim.set_point("current1", &json!(-3.5)).unwrap();
        let path = sim.serve_rtu_pty().unwrap();
        let mut port = open(&path);
        let mut session = session("rtu", 1);

        let fast = run(&mut session, &mut port, poll("fast")).await.unwrap();
        assert_eq!(fast.result, Ok(()));
        assert_eq!(value(&fast, "current1"), json!(-3.5));
        assert_eq!(sim.requests_received(), 2);

        let written = run(&mut session, &mut port, write("outlet1", json!(true)))
            .await
            .unwrap();
        assert_eq!(written.updates, [("outlet1".into(), json!(true))]);
        assert_eq!(sim.point("outlet1"), Some(json!(true)));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn a_silent_unit_does_not_stop_the_other_on_one_line() {
        let sim = start_tcp(config(vec![1, 2])).unwrap();
        let path = sim.serve_rtu_pty().unwrap();
        let mut port = open(&path);
        let mut first = session("rtu", 1);
        let mut second = session("rtu", 2);
        let unit2 = sim.unit(2).unwrap();
        unit2.set_point("voltage", &json!(120.0)).unwrap();
        unit2.inject(Fault::Silent(1));

        assert!(
            run(&mut second, &mut port, poll("default")).await.is_err(),
            "unit 2 stays silent"
        );
        assert_eq!(unit2.requests_received(), 1);
        let answered = run(&mut first, &mut port, poll("default")).await.unwrap();
        assert_eq!(answered.result, Ok(()));
        assert_eq!(value(&answered, "voltage"), json!(0.0));
        let again = run(&mut second, &mut port, poll("default")).await.unwrap();
        assert_eq!(value(&again, "voltage"), json!(120.0));
        assert!(sim.unit(3).is_none());
        sim.shutdown().await;
    }
}
