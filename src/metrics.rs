//! Counters and gauges of the daemon and a Prometheus text endpoint (exposition format 0.0.4).
//!
//! [`Metrics`] is a fixed registry of atomics: the hot paths (every AMI event, every verdict)
//! update it with one relaxed `fetch_add` and never take a lock. Per-server handles
//! ([`ServerMetrics`]) are looked up once when a connection starts. [`Metrics::render`] is pure;
//! [`serve`] is the thin HTTP edge: plain HTTP/1.1 on tokio, `GET /metrics` and nothing else,
//! bound to 127.0.0.1 by default because it has no authentication.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::calls::record::{CallRecord, CallbackOutcome, Direction, LostAt, Status};

const DIRECTIONS: [Direction; 4] = [
    Direction::Inbound,
    Direction::Outbound,
    Direction::Internal,
    Direction::Callback,
];
const STATUSES: [Status; 4] = [
    Status::Answered,
    Status::Missed,
    Status::Ignored,
    Status::Unknown,
];
/// Notification channels, in the order of the counters (every `[[notify.http]]` is `http`).
pub const CHANNELS: [&str; 6] = ["webhook", "email", "bitrix24", "amocrm", "telegram", "http"];
const RESULTS: [&str; 3] = ["delivered", "failed", "given_up"];

fn direction_str(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
        Direction::Internal => "internal",
        Direction::Callback => "callback",
    }
}

fn status_str(s: Status) -> &'static str {
    match s {
        Status::Answered => "answered",
        Status::Missed => "missed",
        Status::Ignored => "ignored",
        Status::Unknown => "unknown",
    }
}

/// Counters of one `[[asterisk]]` server.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    link_up: AtomicI64,
    events: AtomicU64,
    decode_problems: AtomicU64,
    reconnects: AtomicU64,
}

impl ServerMetrics {
    pub fn set_link_up(&self, up: bool) {
        self.link_up.store(i64::from(up), Relaxed);
    }
    pub fn event_received(&self) {
        self.events.fetch_add(1, Relaxed);
    }
    pub fn events_received(&self, n: u64) {
        self.events.fetch_add(n, Relaxed);
    }
    /// Messages the codec skipped (oversized, malformed).
    pub fn decode_problems(&self, n: u64) {
        self.decode_problems.fetch_add(n, Relaxed);
    }
    /// Sets the running total of skipped input (the AMI handle keeps the count).
    pub fn set_decode_problems(&self, total: u64) {
        self.decode_problems.store(total, Relaxed);
    }
    pub fn reconnected(&self) {
        self.reconnects.fetch_add(1, Relaxed);
    }
}

/// The registry. Share it as `Arc<Metrics>`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Missed calls by `LostAt::ALL` index; the last slot counts misses without a category.
    missed: [AtomicU64; 8],
    calls: [[AtomicU64; 4]; 4],
    callbacks: [AtomicU64; 6],
    servers: RwLock<BTreeMap<String, Arc<ServerMetrics>>>,
    pending_tasks: AtomicI64,
    outbox_pending: AtomicI64,
    held_verdicts: AtomicI64,
    notifications: [[AtomicU64; 3]; CHANNELS.len()],
}

impl Metrics {
    /// A registry with the given servers present from the start (their link shows as down until
    /// it comes up, rather than being absent).
    pub fn new<'a>(servers: impl IntoIterator<Item = &'a str>) -> Metrics {
        let m = Metrics::default();
        for s in servers {
            m.server(s);
        }
        m
    }

    /// The handle of one server; created on first use. Keep it: updates through it take no lock.
    pub fn server(&self, name: &str) -> Arc<ServerMetrics> {
        if let Some(s) = self
            .servers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return s.clone();
        }
        self.servers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Counts a stored verdict.
    pub fn record_call(&self, r: &CallRecord) {
        let d = DIRECTIONS
            .iter()
            .position(|x| *x == r.direction)
            .unwrap_or(0);
        let s = STATUSES.iter().position(|x| *x == r.status).unwrap_or(3);
        self.calls[d][s].fetch_add(1, Relaxed);
        if r.status == Status::Missed {
            let i = r
                .lost_at
                .and_then(|l| LostAt::ALL.iter().position(|x| *x == l))
                .unwrap_or(7);
            self.missed[i].fetch_add(1, Relaxed);
        }
    }

    pub fn record_callback(&self, outcome: CallbackOutcome) {
        let i = CallbackOutcome::ALL
            .iter()
            .position(|x| *x == outcome)
            .unwrap_or(0);
        self.callbacks[i].fetch_add(1, Relaxed);
    }

    pub fn set_pending_callback_tasks(&self, n: u64) {
        self.pending_tasks
            .store(i64::try_from(n).unwrap_or(i64::MAX), Relaxed);
    }

    pub fn set_outbox_pending(&self, n: u64) {
        self.outbox_pending
            .store(i64::try_from(n).unwrap_or(i64::MAX), Relaxed);
    }

    /// Verdicts held in memory because the database refuses writes (0 when it works).
    pub fn set_held_verdicts(&self, n: usize) {
        self.held_verdicts
            .store(i64::try_from(n).unwrap_or(i64::MAX), Relaxed);
    }

    fn notification(&self, channel: &str, result: usize) {
        if let Some(c) = CHANNELS.iter().position(|x| *x == channel) {
            self.notifications[c][result].fetch_add(1, Relaxed);
        }
    }
    pub fn notification_delivered(&self, channel: &str) {
        self.notification(channel, 0);
    }
    pub fn notification_failed(&self, channel: &str) {
        self.notification(channel, 1);
    }
    pub fn notification_given_up(&self, channel: &str) {
        self.notification(channel, 2);
    }

    /// The exposition text (Prometheus text format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut w = Writer(&mut out);

        w.family(
            "perezvon_build_info",
            "gauge",
            "Always 1; the version label says which perezvon is running.",
        );
        w.sample(
            "perezvon_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );

        w.family(
            "perezvon_missed_calls_total",
            "counter",
            "Missed inbound calls, by where the caller was lost.",
        );
        for (i, l) in LostAt::ALL.iter().enumerate() {
            w.sample(
                "perezvon_missed_calls_total",
                &[("lost_at", l.as_str())],
                self.missed[i].load(Relaxed),
            );
        }
        w.sample(
            "perezvon_missed_calls_total",
            &[("lost_at", "unknown")],
            self.missed[7].load(Relaxed),
        );

        w.family(
            "perezvon_calls_total",
            "counter",
            "Calls whose verdict was stored, by direction and status.",
        );
        for (d, dir) in DIRECTIONS.iter().enumerate() {
            for (s, st) in STATUSES.iter().enumerate() {
                w.sample(
                    "perezvon_calls_total",
                    &[
                        ("direction", direction_str(*dir)),
                        ("status", status_str(*st)),
                    ],
                    self.calls[d][s].load(Relaxed),
                );
            }
        }

        w.family(
            "perezvon_callbacks_total",
            "counter",
            "Callback attempts that ended, by outcome.",
        );
        for (i, o) in CallbackOutcome::ALL.iter().enumerate() {
            w.sample(
                "perezvon_callbacks_total",
                &[("outcome", o.as_str())],
                self.callbacks[i].load(Relaxed),
            );
        }

        let servers: Vec<(String, Arc<ServerMetrics>)> = self
            .servers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        type Get = fn(&ServerMetrics) -> i64;
        let per_server: [(&str, &str, &str, Get); 4] = [
            (
                "perezvon_ami_link_up",
                "gauge",
                "1 while the AMI connection to the server is logged in, else 0.",
                |s| s.link_up.load(Relaxed),
            ),
            (
                "perezvon_ami_events_received_total",
                "counter",
                "AMI events received from the server.",
                |s| s.events.load(Relaxed) as i64,
            ),
            (
                "perezvon_ami_decode_problems_total",
                "counter",
                "AMI messages skipped as malformed or oversized.",
                |s| s.decode_problems.load(Relaxed) as i64,
            ),
            (
                "perezvon_ami_reconnects_total",
                "counter",
                "Reconnections to the server after a lost or failed link.",
                |s| s.reconnects.load(Relaxed) as i64,
            ),
        ];
        for (name, kind, help, get) in per_server {
            w.family(name, kind, help);
            for (server, s) in &servers {
                w.sample(name, &[("server", server)], get(s));
            }
        }

        w.family(
            "perezvon_callback_tasks_pending",
            "gauge",
            "Callback tasks waiting for an attempt or in progress.",
        );
        w.sample(
            "perezvon_callback_tasks_pending",
            &[],
            self.pending_tasks.load(Relaxed),
        );
        w.family(
            "perezvon_outbox_pending",
            "gauge",
            "Notifications waiting for delivery.",
        );
        w.sample(
            "perezvon_outbox_pending",
            &[],
            self.outbox_pending.load(Relaxed),
        );
        w.family(
            "perezvon_held_verdicts",
            "gauge",
            "Call verdicts held in memory because database writes fail (retried with backoff).",
        );
        w.sample(
            "perezvon_held_verdicts",
            &[],
            self.held_verdicts.load(Relaxed),
        );
        w.family(
            "perezvon_notifications_total",
            "counter",
            "Notification delivery attempts, by channel and result.",
        );
        for (c, ch) in CHANNELS.iter().enumerate() {
            for (r, res) in RESULTS.iter().enumerate() {
                w.sample(
                    "perezvon_notifications_total",
                    &[("channel", ch), ("result", res)],
                    self.notifications[c][r].load(Relaxed),
                );
            }
        }
        out
    }
}

struct Writer<'a>(&'a mut String);

impl Writer<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape_label(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// Label values escape `\`, `"` and line feeds (exposition format 0.0.4).
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// HELP text escapes `\` and line feeds.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Binds `listen` and serves until `shutdown` is cancelled.
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen for metrics on {listen}: {e}"),
        )
    })?;
    serve_on(listener, metrics, shutdown).await
}

/// Serves on a bound listener (tests bind `127.0.0.1:0`).
pub async fn serve_on(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // A scraper needs one connection at a time; the cap only keeps a misbehaving local client
    // from piling up tasks.
    let slots = Arc::new(tokio::sync::Semaphore::new(16));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "metrics: too many open connections, closing");
            continue;
        };
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            tokio::select! {
                _ = shutdown.cancelled() => {}
                r = tokio::time::timeout(Duration::from_secs(10), answer(stream, &metrics)) => {
                    if let Ok(Err(e)) = r {
                        tracing::debug!(%peer, error = %e, "metrics: request failed");
                    }
                }
            }
        });
    }
}

/// Reads one request head and answers it; the connection is then closed.
async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        if buf.len() > 16 * 1024 {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "",
                false,
            )
            .await;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => respond(&mut stream, "200 OK", &metrics.render(), true).await,
        (_, "/metrics") => {
            respond(&mut stream, "405 Method Not Allowed", "only GET\n", false).await
        }
        _ => respond(&mut stream, "404 Not Found", "try /metrics\n", false).await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    body: &str,
    exposition: bool,
) -> std::io::Result<()> {
    let content_type = if exposition {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
    }

    #[test]
    fn servers_are_registered_once() {
        let m = Metrics::new(["a", "b"]);
        let a = m.server("a");
        a.event_received();
        m.server("a").event_received();
        assert_eq!(a.events.load(Relaxed), 2);
        assert!(m
            .render()
            .contains("perezvon_ami_link_up{server=\"b\"} 0\n"));
    }
}
