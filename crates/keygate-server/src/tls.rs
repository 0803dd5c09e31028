//! A TLS listener for axum. A task accepts TCP connections and runs each handshake in a task of
//! its own (at most [`MAX_HANDSHAKES`] at once, each with a timeout), so a client that connects
//! and stays silent holds up nobody; finished connections are handed to axum through a channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;

/// Handshakes in progress at most; further connections wait to be accepted.
pub const MAX_HANDSHAKES: usize = 256;
/// How long a client has to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

type Conn = (TlsStream<tokio::net::TcpStream>, SocketAddr);

pub struct Listener {
    local: SocketAddr,
    ready: mpsc::Receiver<Conn>,
}

impl Listener {
    /// Starts accepting on `tcp` (call within a Tokio runtime).
    pub fn new(tcp: tokio::net::TcpListener, cfg: Arc<ServerConfig>) -> Self {
        let local = tcp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (tx, ready) = mpsc::channel(MAX_HANDSHAKES);
        let acceptor = TlsAcceptor::from(cfg);
        let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let Ok((stream, addr)) = tcp.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let (acceptor, conn_tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let done =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    drop(permit);
                    match done {
                        Ok(Ok(tls)) => {
                            let _ = conn_tx.send((tls, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Self { local, ready }
    }
}

impl axum::serve::Listener for Listener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task is gone (the runtime is shutting down): never yield again.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Listener>>
    for crate::Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, Listener>) -> Self {
        crate::Peer(*stream.remote_addr())
    }
}
