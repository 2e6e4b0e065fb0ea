//! The accept loop. `axum::serve` gives no access to hyper's connection
//! builder, so a client that opens connections and sends their headers a
//! byte at a time (slowloris) would hold them, and their file descriptors,
//! for ever. Here every connection's request headers must arrive within
//! `request_timeout_secs`; request bodies are held to the same idle bound
//! where they are read (`push`, `wire::read_body`).

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

use crate::Config;

/// Serves `app` on `listener` until `shutdown` completes, then lets open
/// requests finish.
pub async fn run(
    listener: tokio::net::TcpListener,
    app: Router,
    config: &Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let timeout = Duration::from_secs(config.request_timeout_secs.max(1));
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: wait, do not spin.
                Err(e) => {
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}

/// The next piece of a request body, or an error if the client sent
/// nothing for `idle_secs`.
pub async fn next_chunk<S, E>(
    stream: &mut S,
    idle_secs: u64,
) -> Result<Option<Result<axum::body::Bytes, E>>, crate::error::HttpError>
where
    S: futures::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
{
    use futures::StreamExt;
    tokio::time::timeout(Duration::from_secs(idle_secs.max(1)), stream.next()).await.map_err(|_| {
        crate::error::HttpError::new(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            format!("the request body stalled for more than {idle_secs} s"),
        )
    })
}
