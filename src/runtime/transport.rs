//! Opening a link: a TCP connection, a connected UDP socket or a serial port, all seen as
//! one byte stream so the link task does not care which.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::config::Link;
use crate::config::profile::{DataBits, FlowControl, Parity, SerialSettings, StopBits};

/// Connects (TCP, UDP) or opens (serial) `link`.
pub(super) async fn open(
    link: &Link,
    connect_timeout: Duration,
) -> Result<Box<dyn LinkStream>, String> {
    match link {
        Link::Tcp { host, port } => connect_tcp(host, *port, connect_timeout)
            .await
            .map(|stream| Box::new(stream) as Box<dyn LinkStream>)
            .map_err(|why| format!("cannot connect to {link}: {why}")),
        Link::Udp { host, port } => {
            let socket = udp_link(host, *port)
                .await
                .map_err(|e| format!("cannot reach {link}: {e}"))?;
            Ok(Box::new(socket))
        }
        Link::Serial { path, settings } => {
            open_serial(path, settings).map(|port| Box::new(port) as Box<dyn LinkStream>)
        }
    }
}

/// A TCP connection to a device, with Nagle's algorithm off: device protocols are small
/// requests each waiting for its answer, and with Nagle on, a request sent while the last
/// one's ACK is still delayed by the device waits up to 40 ms (200 ms on some stacks).
async fn connect_tcp(host: &str, port: u16, limit: Duration) -> Result<TcpStream, String> {
    let stream = match timeout(limit, TcpStream::connect((host, port))).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err(format!("no answer within {limit:?}")),
    };
    if let Err(e) = stream.set_nodelay(true) {
        // Still usable, only slower.
        tracing::warn!("cannot turn Nagle's algorithm off for {host}:{port}: {e}");
    }
    Ok(stream)
}

/// A device's byte stream: a TCP connection or a serial port.
pub(super) trait LinkStream: AsyncRead + AsyncWrite + Unpin + Send {}
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
    async fn device_tcp_links_send_small_requests_without_delay() {
        let device = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = device.local_addr().unwrap().port();
        let link = connect_tcp("127.0.0.1", port, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(link.nodelay().unwrap(), "Nagle's algorithm is off");
    }

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
