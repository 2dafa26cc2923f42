//! What every simulator's wire side shares: a TCP listener that restarts cleanly on the
//! same port and closes every connection on shutdown, and a pseudo-terminal that stands
//! for an RS-232 port. Each simulator supplies only what one connection does.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::debug;

/// Locks a mutex; a panic elsewhere while holding it leaves plain data worth reading.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Any byte stream a simulated device can talk on: a TCP socket or a pty's controlling end.
pub trait Link: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Link for T {}

/// A listening simulator: accepts connections and hands each to `serve` until shut down.
#[derive(Debug)]
pub struct Listener {
    local_addr: SocketAddr,
    /// What the logs call it ("pjlink simulator").
    name: &'static str,
    connections: Arc<AtomicUsize>,
    /// Set once by [`Listener::shutdown`]; the accept loop watches it.
    stop: watch::Sender<bool>,
    /// The accept loop, awaited by [`Listener::shutdown`] so that when it returns the port
    /// is free and every connection closed.
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Listener {
    /// Binds `addr` (with SO_REUSEADDR, so a test can stop a simulator and start another
    /// on the same port at once) and serves every connection with `serve`.
    pub fn start<F, Fut>(addr: SocketAddr, name: &'static str, serve: F) -> io::Result<Listener>
    where
        F: Fn(TcpStream, SocketAddr) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = bind(addr)?;
        let local_addr = listener.local_addr()?;
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = watch::Sender::new(false);
        let task = tokio::spawn(accept_loop(
            listener,
            name,
            stop.subscribe(),
            Arc::clone(&connections),
            serve,
        ));
        debug!(%local_addr, "{name} listening");
        Ok(Listener {
            local_addr,
            name,
            connections,
            stop,
            task: Mutex::new(Some(task)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// How many connections were accepted since start.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Stops listening and closes every connection; returns once both are done, so the
    /// address can be bound again right away. Later calls return at once.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
        debug!(local_addr = %self.local_addr, "{} stopped", self.name);
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(64)
}

async fn accept_loop<F, Fut>(
    listener: TcpListener,
    name: &'static str,
    mut stop: watch::Receiver<bool>,
    count: Arc<AtomicUsize>,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // A real device answers at once: with Nagle's algorithm on, an answer
                    // written in pieces would wait for the gateway's delayed ACK, and
                    // every measurement would carry the simulator's 40 ms.
                    let _ = stream.set_nodelay(true);
                    count.fetch_add(1, Ordering::SeqCst);
                    connections.spawn(serve(stream, peer));
                }
                Err(e) => debug!(error = %e, "{name} accept failed"),
            },
            Some(_) = connections.join_next() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// Serves a simulated device on a new pseudo-terminal, as on its RS-232 port; returns the
/// path of the device end (`/dev/pts/N`) for the gateway to open, and the task, whose
/// abort is an unplugged cable.
pub fn spawn_pty<F, Fut>(serve: F) -> io::Result<(String, JoinHandle<()>)>
where
    F: FnOnce(Box<dyn Link>, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    use tokio_serial::SerialPort;
    let (controller, device) = tokio_serial::SerialStream::pair().map_err(io::Error::other)?;
    let path = device
        .name()
        .ok_or_else(|| io::Error::other("the pseudo-terminal has no path"))?;
    let connection = serve(Box::new(controller), path.clone());
    let task = tokio::spawn(async move {
        // Holding the device end open keeps the controlling end readable while the gateway
        // has not opened the port yet (or reopens it).
        let _device = device;
        connection.await;
    });
    Ok((path, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo(mut stream: TcpStream, _: SocketAddr) {
        let mut buf = [0u8; 64];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    }

    #[tokio::test]
    async fn shutdown_closes_connections_and_frees_the_port() {
        let listener = Listener::start("127.0.0.1:0".parse().unwrap(), "echo", echo).unwrap();
        let addr = listener.local_addr();
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(listener.connection_count(), 1);

        listener.shutdown().await;
        assert_eq!(
            client.read(&mut buf).await.unwrap_or(0),
            0,
            "the connection is closed"
        );
        let again = Listener::start(addr, "echo", echo).expect("the same port binds again at once");
        again.shutdown().await;
    }

    #[tokio::test]
    async fn a_pty_serves_until_its_task_is_aborted() {
        let (path, task) = spawn_pty(|mut link, _| async move {
            let mut buf = [0u8; 16];
            if let Ok(n) = link.read(&mut buf).await {
                let _ = link.write_all(&buf[..n]).await;
            }
            std::future::pending::<()>().await;
        })
        .unwrap();
        assert!(path.starts_with("/dev/pts/"), "{path}");
        let mut port = tokio_serial::SerialStream::open(&tokio_serial::new(&path, 9600)).unwrap();
        port.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        port.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        task.abort();
        let _ = task.await;
        let mut rest = [0u8; 1];
        assert!(
            !matches!(port.read(&mut rest).await, Ok(n) if n > 0),
            "an unplugged port gives no data"
        );
    }
}
