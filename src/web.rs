//! The daemon's HTTP edge (axum): `GET /metrics` (OpenMetrics text) and `GET /status` (the
//! [`StatusReport`] JSON `perezvon status` reads). A router, so a web console can join it later.
//!
//! It has no authentication: `[metrics] listen` is 127.0.0.1 by default. Requests carry no body
//! worth reading (bodies are capped at [`MAX_BODY`]), each one must finish within
//! [`REQUEST_TIMEOUT`] (else 408), at most [`MAX_CONNECTIONS`] connections are served at once
//! (more are closed at accept), a wrong method gets 405 with `Allow`, any other path 404.
//! Cancelling the token stops accepting and lets the requests in progress finish.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, CONTENT_TYPE};
use crate::status::{self, QueueStatus, StatusReport, TodayStatus};
use crate::store::Store;

/// Longest time a request may take (a scrape renders in microseconds; the status queries the
/// database, which may wait out a writer's lock).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Request bodies beyond this are refused with 413 (no route reads one).
pub const MAX_BODY: usize = 16 * 1024;
/// Connections served at once: a scraper and an admin need a few; the cap keeps a misbehaving
/// local client from piling up tasks.
pub const MAX_CONNECTIONS: usize = 64;

/// Where `GET /status` reads the callback queue and today's counters.
#[derive(Debug, Clone)]
pub struct StatusSource {
    /// The daemon's database.
    pub db: PathBuf,
    /// For "today".
    pub timezone: jiff::tz::TimeZone,
    pub started_at: jiff::Timestamp,
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    status: Option<StatusSource>,
    /// One connection for the status queries, opened at the first request.
    store: Arc<Mutex<Option<Store>>>,
}

/// The router: `/metrics`, `/status` (when `status` is given), 404 elsewhere.
pub fn router(metrics: Arc<Metrics>, status: Option<StatusSource>) -> Router {
    let state = AppState {
        metrics,
        status,
        store: Arc::new(Mutex::new(None)),
    };
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/status", get(status_handler))
        .fallback(not_found)
        .with_state(state)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
}

async fn metrics_handler(State(s): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], s.metrics.render()).into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found; try /metrics or /status\n",
    )
        .into_response()
}

async fn status_handler(State(s): State<AppState>) -> Response {
    let Some(src) = s.status.clone() else {
        return (StatusCode::NOT_FOUND, "no status here\n").into_response();
    };
    let store = s.store.clone();
    let (db, tz) = (src.db.clone(), src.timezone.clone());
    let now = jiff::Timestamp::now();
    let queried = tokio::task::spawn_blocking(move || {
        let mut guard = store.lock().unwrap_or_else(|e| e.into_inner());
        let st = match guard.as_mut() {
            Some(st) => st,
            None => guard.insert(Store::open(&db)?),
        };
        status::from_store(st, &tz, now)
    })
    .await;
    let (queue, today): (QueueStatus, TodayStatus) = match queried {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            tracing::warn!(error = %crate::store::error_chain(&e), "status: cannot read the database");
            let body = format!(
                "cannot read the database: {}\n",
                crate::store::error_chain(&e)
            );
            return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, "status: query task failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "status query failed\n").into_response();
        }
    };
    let report: StatusReport = status::report(&s.metrics, src.started_at, queue, today, now);
    axum::Json(report).into_response()
}

/// Binds `listen` and serves `/metrics` only until `shutdown` is cancelled.
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_router(listen, router(metrics, None), shutdown).await
}

/// Binds `listen` and serves `router` until `shutdown` is cancelled.
pub async fn serve_router(
    listen: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen for metrics on {listen}: {e}"),
        )
    })?;
    serve_listener(listener, router, shutdown).await
}

/// Serves `/metrics` on a bound listener (tests bind `127.0.0.1:0`).
pub async fn serve_on(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_listener(listener, router(metrics, None), shutdown).await
}

/// Serves `router` on a bound listener until `shutdown` is cancelled; requests in progress
/// finish first.
pub async fn serve_listener(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = Limited {
        inner: listener,
        slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// The client address of a connection (`ConnectInfo<Peer>`), for the console's rate limits.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Limited>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Limited>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

/// [`serve_listener`] with each request's client address in `ConnectInfo<Peer>`.
pub async fn serve_listener_with_peers(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = Limited {
        inner: listener,
        slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
    };
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<Peer>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
}

/// A listener that holds a permit per open connection and closes connections beyond
/// [`MAX_CONNECTIONS`] at once.
pub struct Limited {
    inner: TcpListener,
    slots: Arc<tokio::sync::Semaphore>,
}

/// A connection with its permit.
pub struct Permitted {
    stream: tokio::net::TcpStream,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl tokio::io::AsyncRead for Permitted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Permitted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl axum::serve::Listener for Limited {
    type Io = Permitted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => match self.slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        return (
                            Permitted {
                                stream,
                                _slot: slot,
                            },
                            peer,
                        )
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "http: too many open connections, closing");
                    }
                },
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "http: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
