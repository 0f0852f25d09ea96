//! The accept loop: HTTP/1.1 connections with a header-read timeout (which is
//! also the keep-alive idle timeout) and a cap on how many are open at once.
//!
//! `axum::serve` gives hyper no timer: a client that opens a connection and
//! sends half a request head, or nothing, holds a file descriptor forever, and a
//! thousand of them exhaust a default open-files limit. Here a connection that
//! has not sent a whole request head within the header timeout is closed (hyper
//! starts the same timer while a kept-alive connection waits for its next
//! request, so idle connections close after it too), and at most
//! `max_connections` are open: past the cap the loop stops accepting, and new
//! connections wait in the kernel's listen backlog (bounded by it), costing this
//! process nothing.
//!
//! HTTP/1.1 only: hyper's HTTP/2-or-1 detection reads the first bytes with no
//! timeout at all, and HTTP/2 belongs to the TLS-terminating proxy in front
//! (`deploy/nginx.conf`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Service;

/// What the accept loop enforces.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting,
/// lets in-flight requests finish and closes idle connections.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let mut make_service = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the slots are never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    on_accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        tracing::trace!(%peer, "connection accepted");
        let _ = stream.set_nodelay(true);
        let Ok(service) = make_service.call(peer).await;
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Connection-level errors (the peer reset before we accepted) concern that
/// connection only; others (out of file descriptors) would spin the loop, so it
/// pauses, as `axum::serve` does.
async fn on_accept_error(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; pausing for a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The soft open-files limit, when the platform tells.
pub fn open_files_limit() -> Option<u64> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}
