//! The task that owns one device: its connection, its queue, its polls.

use std::sync::Arc;
use std::time::Duration;

use avgate_drivers::{DriverSettings, Output, Protocol, Request, SessionError};
use tokio::io::{AsyncRead, AsyncWrite, WriteHalf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Job;
use super::backoff::{AUTH_FLOOR, Backoff};
use crate::command::{ErrorCode, Failure};
use crate::config::profile::{DataBits, FlowControl, Parity, SerialSettings, StopBits};
use crate::config::{DeviceConfig, Link};
use crate::journal::Journal;

/// A session that worked at least this long before closing is taken to have been closed
/// on purpose (PJLink projectors drop idle connections): reconnect at once, quietly. One
/// that dies sooner counts as a failure, so a device that accepts and drops at once gets
/// backoff rather than a busy loop.
const HEALTHY_SESSION: Duration = Duration::from_secs(1);

/// Consecutive failed sessions (an unanswered request, a garbled reply) before the device
/// is declared offline. One lost or garbled reply only costs a quiet reconnect.
const FAILURES_BEFORE_OFFLINE: u32 = 2;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 2048;

pub(super) struct DeviceTask {
    config: DeviceConfig,
    journal: Arc<Journal>,
    jobs: mpsc::Receiver<Job>,
    cancel: CancellationToken,
    backoff: Backoff,
    polls: Vec<PollState>,
    consecutive_failures: u32,
}

struct PollState {
    query: String,
    every: Duration,
    due: Instant,
}

/// The request on the wire and who is waiting for it.
struct InFlight {
    what: String,
    job: Option<Job>,
    deadline: Instant,
}

/// Why a session ended, which decides what happens next.
enum SessionEnd {
    /// The gateway is stopping.
    Shutdown,
    /// The device closed or the link failed.
    Lost { error: String, healthy: bool },
    /// A request went unanswered, or the device said something out of step: worth one
    /// quiet reconnect.
    Failed { error: String },
    /// The device refused our credentials: retrying soon will not help.
    AuthFailed(SessionError),
}

impl DeviceTask {
    pub(super) fn new(
        config: DeviceConfig,
        journal: Arc<Journal>,
        jobs: mpsc::Receiver<Job>,
        cancel: CancellationToken,
    ) -> Self {
        let polls = config
            .polls
            .iter()
            .map(|p| PollState {
                query: p.query.clone(),
                every: p.every,
                due: Instant::now(),
            })
            .collect();
        Self {
            config,
            journal,
            jobs,
            cancel,
            backoff: Backoff::default(),
            polls,
            consecutive_failures: 0,
        }
    }

    pub(super) async fn run(mut self) {
        let settings = DriverSettings {
            options: self.config.profile.options.clone(),
            password: self.config.password.clone(),
        };
        let mut protocol = match (self.config.profile.driver_info.build)(&settings) {
            Ok(p) => p,
            Err(why) => {
                // Profiles are checked at load, so this only happens with a broken build.
                self.go_offline(format!(
                    "driver `{}` cannot start: {why}",
                    self.config.profile.driver
                ));
                return;
            }
        };
        loop {
            let end = tokio::select! {
                _ = self.cancel.cancelled() => SessionEnd::Shutdown,
                opened = self.open() => match opened {
                    Ok(stream) => self.run_session(protocol.as_mut(), stream).await,
                    Err(error) => SessionEnd::Lost { error, healthy: false },
                },
            };
            let delay = match end {
                SessionEnd::Shutdown => break,
                SessionEnd::Lost {
                    healthy: true,
                    error,
                } => {
                    debug!("{error}; reconnecting");
                    continue;
                }
                SessionEnd::Failed { error }
                    if self.consecutive_failures < FAILURES_BEFORE_OFFLINE =>
                {
                    debug!("{error}; reconnecting");
                    continue;
                }
                SessionEnd::Failed { error } | SessionEnd::Lost { error, .. } => {
                    self.go_offline(error);
                    self.backoff.next()
                }
                SessionEnd::AuthFailed(err) => {
                    self.go_offline(err.to_string());
                    self.backoff.next().max(AUTH_FLOOR)
                }
            };
            if !self.wait_offline(delay).await {
                break;
            }
        }
        self.fail_waiting(
            ErrorCode::ShuttingDown,
            "the gateway is shutting down".into(),
        );
    }

    /// Runs one connection until it ends.
    /// Connects (TCP) or opens (serial) the device's link.
    async fn open(&self) -> Result<Box<dyn LinkStream>, String> {
        match &self.config.link {
            Link::Tcp { host, port } => {
                let address = self.config.link.to_string();
                match timeout(
                    self.config.connect_timeout,
                    TcpStream::connect((host.as_str(), *port)),
                )
                .await
                {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        Ok(Box::new(stream))
                    }
                    Ok(Err(e)) => Err(format!("cannot connect to {address}: {e}")),
                    Err(_) => Err(format!(
                        "cannot connect to {address}: no answer within {:?}",
                        self.config.connect_timeout
                    )),
                }
            }
            Link::Udp { host, port } => {
                let socket = udp_link(host, *port)
                    .await
                    .map_err(|e| format!("cannot reach {}: {e}", self.config.link))?;
                Ok(Box::new(socket))
            }
            Link::Serial { path, settings } => {
                open_serial(path, settings).map(|port| Box::new(port) as Box<dyn LinkStream>)
            }
        }
    }

    async fn run_session(
        &mut self,
        protocol: &mut dyn Protocol,
        stream: Box<dyn LinkStream>,
    ) -> SessionEnd {
        let started = Instant::now();
        let (mut reader, mut writer) = tokio::io::split(stream);
        let mut buf = vec![0u8; READ_CHUNK];
        let mut ready = false;
        let ready_deadline = started + self.config.connect_timeout;
        let mut in_flight: Option<InFlight> = None;
        protocol.connected(started.into_std());

        loop {
            // Act on everything the driver has to say before waiting again.
            while let Some(output) = protocol.poll_output() {
                match output {
                    Output::Transmit(bytes) => {
                        if let Err(error) = self.write(&mut writer, &bytes).await {
                            self.finish(
                                &mut in_flight,
                                Err(Failure::new(ErrorCode::DeviceOffline, error.clone())),
                            );
                            return SessionEnd::Lost {
                                error,
                                healthy: false,
                            };
                        }
                    }
                    Output::Ready => {
                        ready = true;
                        self.backoff.reset();
                        for poll in &mut self.polls {
                            poll.due = Instant::now();
                        }
                        // A device that greets but has stopped answering stays offline
                        // until it answers something.
                        if self.consecutive_failures < FAILURES_BEFORE_OFFLINE {
                            self.go_online();
                        }
                    }
                    Output::Update { point, value } => self.publish(&point, value),
                    Output::Completed(result) => {
                        self.consecutive_failures = 0;
                        self.go_online();
                        if let (Err(e), Some(f)) = (&result, &in_flight)
                            && f.job.is_none()
                        {
                            debug!(query = %f.what, "poll failed: {e}");
                        }
                        self.finish(&mut in_flight, result.map_err(Failure::from));
                    }
                    Output::Fatal(err) => {
                        self.finish(
                            &mut in_flight,
                            Err(Failure::new(ErrorCode::DeviceError, err.to_string())),
                        );
                        warn!("{err}");
                        if matches!(err, SessionError::AuthFailed(_)) {
                            return SessionEnd::AuthFailed(err);
                        }
                        self.consecutive_failures += 1;
                        return SessionEnd::Failed {
                            error: err.to_string(),
                        };
                    }
                }
            }

            if ready && in_flight.is_none() {
                // A waiting panel command always goes before a background poll.
                let next = match self.jobs.try_recv() {
                    Ok(job) => Some((
                        Request::Command {
                            name: job.command.clone(),
                            args: job.args.clone(),
                        },
                        Some(job),
                    )),
                    Err(_) => self.due_poll().map(|query| (Request::Poll { query }, None)),
                };
                if let Some((request, job)) = next {
                    self.start(protocol, request, job, &mut in_flight);
                    continue;
                }
            }

            let idle = ready && in_flight.is_none();
            let next_poll = self.polls.iter().map(|p| p.due).min();
            let driver_timer = protocol.poll_timeout().map(Instant::from_std);
            tokio::select! {
                _ = self.cancel.cancelled() => {
                    self.finish(&mut in_flight, Err(Failure::new(ErrorCode::ShuttingDown, "the gateway is shutting down")));
                    return SessionEnd::Shutdown;
                }
                read = reader.read(&mut buf) => match read {
                    Ok(0) => {
                        let error = match &self.config.link {
                            Link::Tcp { .. } | Link::Udp { .. } => {
                                format!("{} closed the connection", self.config.id)
                            }
                            Link::Serial { path, .. } => format!("serial port {} is gone (adapter unplugged?)", path.display()),
                        };
                        self.finish(&mut in_flight, Err(Failure::new(ErrorCode::DeviceOffline, error.clone())));
                        let healthy = self.config.link.closes_when_idle() && ready && started.elapsed() >= HEALTHY_SESSION;
                        return SessionEnd::Lost { error, healthy };
                    }
                    Ok(n) => protocol.received(Instant::now().into_std(), &buf[..n]),
                    Err(e) => {
                        let error = format!("connection to {} failed: {e}", self.config.id);
                        self.finish(&mut in_flight, Err(Failure::new(ErrorCode::DeviceOffline, error.clone())));
                        return SessionEnd::Lost { error, healthy: false };
                    }
                },
                job = self.jobs.recv(), if idle => {
                    if let Some(job) = job {
                        let request = Request::Command { name: job.command.clone(), args: job.args.clone() };
                        self.start(protocol, request, Some(job), &mut in_flight);
                    }
                }
                _ = sleep_until(next_poll.unwrap_or_else(Instant::now)), if idle && next_poll.is_some() => {}
                _ = sleep_until(in_flight.as_ref().map_or_else(Instant::now, |f| f.deadline)), if in_flight.is_some() => {
                    protocol.abandon();
                    self.consecutive_failures += 1;
                    let what = in_flight.as_ref().map_or_else(String::new, |f| f.what.clone());
                    let error = format!("{} did not answer `{what}` within {:?}", self.config.id, self.config.command_timeout);
                    self.finish(&mut in_flight, Err(Failure::new(ErrorCode::Timeout, error.clone())));
                    return SessionEnd::Failed { error };
                }
                _ = sleep_until(ready_deadline), if !ready => {
                    return SessionEnd::Lost {
                        error: format!("{} accepted the connection but did not greet within {:?}", self.config.id, self.config.connect_timeout),
                        healthy: false,
                    };
                }
                _ = sleep_until(driver_timer.unwrap_or_else(Instant::now)), if driver_timer.is_some() => {
                    protocol.handle_timeout(Instant::now().into_std());
                }
            }
        }
    }

    fn start(
        &mut self,
        protocol: &mut dyn Protocol,
        request: Request,
        job: Option<Job>,
        in_flight: &mut Option<InFlight>,
    ) {
        let what = match &request {
            Request::Command { name, .. } => name.clone(),
            Request::Poll { query } => format!("poll {query}"),
        };
        match protocol.start(Instant::now().into_std(), &request) {
            Ok(()) => {
                *in_flight = Some(InFlight {
                    what,
                    job,
                    deadline: Instant::now() + self.config.command_timeout,
                });
            }
            Err(e) => {
                if let Some(job) = job {
                    let _ = job.reply.send(Err(e.into()));
                } else {
                    warn!("{what} cannot be sent: {e}");
                }
            }
        }
    }

    /// The most overdue poll, if any is due; it is rescheduled from now.
    fn due_poll(&mut self) -> Option<String> {
        let now = Instant::now();
        let poll = self
            .polls
            .iter_mut()
            .filter(|p| p.due <= now)
            .min_by_key(|p| p.due)?;
        poll.due = now + poll.every;
        Some(poll.query.clone())
    }

    fn finish(&mut self, in_flight: &mut Option<InFlight>, outcome: Result<(), Failure>) {
        if let Some(InFlight { job: Some(job), .. }) = in_flight.take() {
            // The panel may have gone; its outcome is still kept by the router.
            let _ = job.reply.send(outcome);
        }
    }

    async fn write(
        &self,
        writer: &mut WriteHalf<Box<dyn LinkStream>>,
        bytes: &[u8],
    ) -> Result<(), String> {
        match timeout(self.config.command_timeout, writer.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("writing to {} failed: {e}", self.config.id)),
            Err(_) => Err(format!("{} stopped accepting data", self.config.id)),
        }
    }

    /// Records a point the profile declares; anything else the driver reports is noise for
    /// this model and stays out of the panel protocol.
    fn publish(&self, point: &str, value: avgate_drivers::Value) {
        if self.config.profile.point(point).is_none() {
            debug!(point, %value, "not in the profile; ignored");
            return;
        }
        if let Some(seq) = self.journal.record(&self.config.id, point, value) {
            debug!(point, seq, "changed");
        }
    }

    fn go_online(&self) {
        if self
            .journal
            .set_online(&self.config.id, true, None)
            .is_some()
        {
            info!("online");
        }
    }

    fn go_offline(&self, error: String) {
        if self
            .journal
            .set_online(&self.config.id, false, Some(error.clone()))
            .is_some()
        {
            warn!("offline: {error}");
        }
    }

    /// Waits out a backoff delay. Commands that arrive meanwhile fail at once rather than
    /// wait for a device nobody knows will return. Returns false on shutdown.
    async fn wait_offline(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return false,
                _ = sleep_until(until) => return true,
                job = self.jobs.recv() => match job {
                    Some(job) => {
                        let _ = job.reply.send(Err(self.offline_failure(until)));
                    }
                    None => return false,
                },
            }
        }
    }

    fn offline_failure(&self, retry_at: Instant) -> Failure {
        let why = self
            .journal
            .device_error(&self.config.id)
            .unwrap_or_else(|| "not connected".into());
        let secs = retry_at
            .saturating_duration_since(Instant::now())
            .as_secs_f32();
        Failure::new(
            ErrorCode::DeviceOffline,
            format!(
                "{} is offline ({why}); next attempt in {secs:.1}s",
                self.config.id
            ),
        )
    }

    fn fail_waiting(&mut self, code: ErrorCode, message: String) {
        self.jobs.close();
        while let Ok(job) = self.jobs.try_recv() {
            let _ = job.reply.send(Err(Failure::new(code, message.clone())));
        }
    }
}

/// A device's byte stream: a TCP connection or a serial port.
trait LinkStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> LinkStream for T {}

/// Opens a serial port with the device's line settings. Ports open exclusively: a second
/// program (or a second device entry) on the same port gets a clear error, not garbage.
fn open_serial(
    path: &std::path::Path,
    settings: &SerialSettings,
) -> Result<tokio_serial::SerialStream, String> {
    use tokio_serial::SerialPortBuilderExt;
    let data_bits = match settings.data_bits {
        DataBits::Seven => tokio_serial::DataBits::Seven,
        DataBits::Eight => tokio_serial::DataBits::Eight,
    };
    let parity = match settings.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    let stop_bits = match settings.stop_bits {
        StopBits::One => tokio_serial::StopBits::One,
        StopBits::Two => tokio_serial::StopBits::Two,
    };
    let flow_control = match settings.flow_control {
        FlowControl::None => tokio_serial::FlowControl::None,
        FlowControl::Software => tokio_serial::FlowControl::Software,
        FlowControl::Hardware => tokio_serial::FlowControl::Hardware,
    };
    tokio_serial::new(path.to_string_lossy(), settings.baud)
        .data_bits(data_bits)
        .parity(parity)
        .stop_bits(stop_bits)
        .flow_control(flow_control)
        .open_native_async()
        .map_err(|e| {
            format!(
                "cannot open serial port {}: {e}; is the adapter plugged in and the path right? (/dev/serial/by-id/... paths survive replugging)",
                path.display()
            )
        })
}

/// A UDP socket connected to the device, so only its datagrams are received.
async fn udp_link(host: &str, port: u16) -> std::io::Result<DatagramLink> {
    let peer = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("the name resolves to no address"))?;
    let local: std::net::SocketAddr = if peer.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(local).await?;
    socket.connect(peer).await?;
    Ok(DatagramLink(socket))
}

/// A connected UDP socket as a byte stream: each write is sent as one datagram and each
/// read returns one datagram, so drivers see the device's message boundaries.
struct DatagramLink(tokio::net::UdpSocket);

impl AsyncRead for DatagramLink {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.0.poll_recv(cx, buf)
    }
}

impl AsyncWrite for DatagramLink {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.poll_send(cx, data)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UdpSocket;

    #[tokio::test]
    async fn a_datagram_link_keeps_message_boundaries_and_ignores_strangers() {
        let device = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = device.local_addr().unwrap().port();
        let mut link = udp_link("127.0.0.1", port).await.unwrap();

        link.write_all(b"one").await.unwrap();
        link.write_all(b"two").await.unwrap();
        let mut buf = [0u8; 64];
        let (n, gateway) = device.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"one");
        let (n, _) = device.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"two");

        let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        stranger
            .send_to(b"not from the device", gateway)
            .await
            .unwrap();
        device.send_to(b"reply-1", gateway).await.unwrap();
        device.send_to(b"reply-2", gateway).await.unwrap();
        let n = link.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"reply-1");
        let n = link.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"reply-2");
    }
}
