//! One AMI connection: connect, banner, login, then a task that owns the socket.
//!
//! Shape (after tokio-postgres): `Connection` owns the TCP stream, the read buffer and the
//! codec; an [`AmiHandle`] (cheap to clone) talks to it over a channel. The connection task
//! routes what it reads:
//! - a `Response` whose `ActionID` matches a pending action goes to that action's caller;
//! - items of a pending `send_list` action (same `ActionID`, up to `EventList: Complete`) go to
//!   that caller only;
//! - everything else, *every* other event included, goes to the consumer's bounded channel. An
//!   event is never taken as a response even when its `ActionID` matches: `OriginateResponse`
//!   carries the originator's ActionID and, with `Async`, may arrive before the Response.
//!
//! Why a hand-written read loop and not `Framed`: the raw tap (`perezvon record`) needs the bytes
//! exactly as read, and decoding a whole read at once delivers a batch per wake-up.
//!
//! Keepalive: a `Ping` every `ping_interval`; a Ping still unanswered when the next one is due
//! means a dead link, so a dead peer is noticed within two intervals. Time spent waiting for a
//! slow consumer does not count against the Ping (the socket was not being read meanwhile).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use super::action::{Action, ActionError};
use super::codec::AmiCodec;
use super::message::{Kind, Message};
use super::supervisor::LinkEvent;
use crate::config::{AsteriskConfig, AuthType};

/// Read buffer growth per read. Decoded messages share this memory (zero copy), so it is also
/// the granularity at which it is freed.
const READ_CHUNK: usize = 64 * 1024;

/// ActionIDs of the login exchange: fixed, so a fake server (and a packet capture) can match
/// them byte for byte. They never collide with [`AmiHandle`]'s ids, which carry a random prefix.
pub const CHALLENGE_ID: &str = "perezvon-challenge";
pub const LOGIN_ID: &str = "perezvon-login";

/// Why an action or a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum AmiError {
    #[error("not connected to Asterisk (the link is down; it reconnects by itself)")]
    NotConnected,
    #[error("no response to {action} within {timeout:?}")]
    Timeout { action: String, timeout: Duration },
    #[error("{action} rejected by Asterisk: {message}")]
    Rejected { action: String, message: String },
    #[error(
        "login as {username:?} refused: {message} (check username and secret against manager.conf)"
    )]
    AuthFailed { username: String, message: String },
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connect to {addr}: timed out after {timeout:?}")]
    ConnectTimeout { addr: String, timeout: Duration },
    #[error("AMI socket: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Invalid(#[from] ActionError),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("connection closed by Asterisk{}", partial_note(*.partial))]
    Closed {
        /// Bytes of an unfinished message discarded: a cut message is never delivered.
        partial: usize,
    },
    #[error("no answer to Ping within {0:?}: link is dead")]
    PingTimeout(Duration),
    #[error("link lost before the response to {action}")]
    ConnectionLost { action: String },
    #[error("ActionID {0:?} is already waiting for a response")]
    DuplicateActionId(String),
    #[error("the event consumer is gone")]
    ConsumerGone,
    #[error("shutting down")]
    Shutdown,
}

fn partial_note(partial: usize) -> String {
    if partial == 0 {
        String::new()
    } else {
        format!(" in the middle of a message ({partial} bytes discarded)")
    }
}

/// What the connection task hands back for one action.
#[derive(Debug)]
pub(crate) enum Reply {
    Single(Message),
    List(Message, Vec<Message>),
}

/// One action on its way to the connection task.
pub(crate) struct Request {
    id: Vec<u8>,
    name: String,
    bytes: Bytes,
    list: bool,
    reply: oneshot::Sender<Result<Reply, AmiError>>,
}

struct Shared {
    server: Arc<str>,
    action_timeout: Duration,
    /// Random per handle: ActionIDs are not namespaced per session, and OriginateResponse is
    /// broadcast to every session, so ours must not look like anybody else's.
    prefix: String,
    seq: AtomicU64,
    /// The live connection's request channel; `None` while the link is down.
    link: Mutex<Option<mpsc::Sender<Request>>>,
    /// Why the last connection attempt or session failed (for status pages and tests).
    last_error: Mutex<Option<String>>,
    /// Input the codec skipped (malformed lines, oversized or truncated messages), all sessions.
    decode_problems: Arc<AtomicU64>,
}

/// A cheap-clone handle for sending actions. It stays valid across reconnects: while the link is
/// down, [`AmiHandle::send`] fails fast with [`AmiError::NotConnected`].
#[derive(Clone)]
pub struct AmiHandle {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for AmiHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmiHandle")
            .field("server", &self.inner.server)
            .field("up", &self.is_up())
            .finish()
    }
}

impl AmiHandle {
    pub(crate) fn new(server: Arc<str>, action_timeout: Duration) -> AmiHandle {
        AmiHandle {
            inner: Arc::new(Shared {
                server,
                action_timeout,
                prefix: format!("pz{:08x}", fastrand::u32(..)),
                seq: AtomicU64::new(1),
                link: Mutex::new(None),
                last_error: Mutex::new(None),
                decode_problems: Arc::new(AtomicU64::new(0)),
            }),
        }
    }

    pub(crate) fn attach(&self, tx: mpsc::Sender<Request>) {
        *self
            .inner
            .link
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tx);
    }

    pub(crate) fn detach(&self) {
        *self
            .inner
            .link
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    pub(crate) fn set_last_error(&self, e: Option<String>) {
        *self
            .inner
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = e;
    }

    /// Why the link last failed (connect, login or a break), cleared by the next successful
    /// login. Never contains the secret.
    pub fn last_error(&self) -> Option<String> {
        self.inner
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Input the codec skipped on this server's links so far (malformed lines, oversized or
    /// truncated messages): never silent, counted here and logged as it happens.
    pub fn decode_problems(&self) -> u64 {
        self.inner.decode_problems.load(Ordering::Relaxed)
    }

    pub(crate) fn decode_problem_counter(&self) -> Arc<AtomicU64> {
        self.inner.decode_problems.clone()
    }

    /// The `[[asterisk]]` name this handle talks to.
    pub fn server(&self) -> &str {
        &self.inner.server
    }

    /// True while logged in.
    pub fn is_up(&self) -> bool {
        self.inner
            .link
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|tx| !tx.is_closed())
    }

    /// A fresh ActionID, unique in this process and unlikely to match another client's.
    pub fn next_action_id(&self) -> String {
        let n = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.inner.prefix)
    }

    /// Sends an action and waits for its Response (at most `action_timeout`). Assigns a unique
    /// ActionID when none is set. `Response: Error` becomes [`AmiError::Rejected`].
    ///
    /// On [`AmiError::Timeout`] the action may or may not have reached Asterisk: if it was still
    /// queued it is never sent (a stale Originate must not go out late); if it was sent, its late
    /// Response goes to the event stream. Events it causes (`OriginateResponse`) always go to
    /// the event stream, never here.
    pub async fn send(&self, action: Action) -> Result<Message, AmiError> {
        match self.request(action, false).await? {
            Reply::Single(m) => Ok(m),
            Reply::List(m, _) => Ok(m),
        }
    }

    /// Sends a list action (`CoreShowChannels`, `QueueStatus`...) and collects its items: the
    /// Response, then every event with this ActionID up to `EventList: Complete` (or, from old
    /// versions, an event named `<X>Complete`), which ends the list and is not among the items. The items do not reach the event stream. The whole list
    /// must arrive within `action_timeout`.
    pub async fn send_list(&self, action: Action) -> Result<(Message, Vec<Message>), AmiError> {
        match self.request(action, true).await? {
            Reply::List(m, items) => Ok((m, items)),
            Reply::Single(m) => Ok((m, Vec::new())),
        }
    }

    async fn request(&self, action: Action, list: bool) -> Result<Reply, AmiError> {
        let action = match action.id() {
            Some(_) => action,
            None => {
                let id = self.next_action_id();
                action.action_id(id)
            }
        };
        let bytes = action.encode()?;
        let name = action.name().to_string();
        let tx = self
            .inner
            .link
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(AmiError::NotConnected)?;
        let (reply, rx) = oneshot::channel();
        let req = Request {
            id: action.id().unwrap_or_default().to_vec(),
            name: name.clone(),
            bytes,
            list,
            reply,
        };
        let timeout = self.inner.action_timeout;
        let lost = name.clone();
        let work = async move {
            tx.send(req).await.map_err(|_| AmiError::NotConnected)?;
            rx.await
                .map_err(|_| AmiError::ConnectionLost { action: lost })?
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| AmiError::Timeout {
                action: name,
                timeout,
            })?
    }
}

/// An action waiting for its answer inside the connection task.
struct Pending {
    name: String,
    reply: oneshot::Sender<Result<Reply, AmiError>>,
    list: Option<ListState>,
}

#[derive(Default)]
struct ListState {
    response: Option<Message>,
    items: Vec<Message>,
}

/// A logged-in connection, before its task runs.
pub(crate) struct Connection {
    server: Arc<str>,
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    rbuf: BytesMut,
    codec: AmiCodec,
    tap: Option<mpsc::Sender<Bytes>>,
    ping_interval: Duration,
    /// Messages read during login that were not login replies: delivered first.
    early: Vec<Message>,
    prefix: String,
    /// Where skipped input is counted (the handle's counter), if anywhere.
    problems: Option<Arc<AtomicU64>>,
}

impl Connection {
    /// Counts the input this session's codec skips into `counter`.
    pub(crate) fn count_problems_in(mut self, counter: Arc<AtomicU64>) -> Connection {
        self.problems = Some(counter);
        self
    }

    /// Connects, reads the banner and logs in. The tap (if any) receives every byte read,
    /// banner and login replies included.
    pub(crate) async fn open(
        cfg: &AsteriskConfig,
        tap: Option<mpsc::Sender<Bytes>>,
    ) -> Result<Connection, AmiError> {
        let addr = format!("{}:{}", cfg.host, cfg.port);
        let stream =
            match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(&addr)).await {
                Err(_) => {
                    return Err(AmiError::ConnectTimeout {
                        addr,
                        timeout: cfg.connect_timeout,
                    })
                }
                Ok(Err(source)) => return Err(AmiError::Connect { addr, source }),
                Ok(Ok(s)) => s,
            };
        // Actions are small and latency matters more than packet count.
        stream.set_nodelay(true)?;
        let (reader, writer) = stream.into_split();
        let mut conn = Connection {
            server: Arc::from(cfg.name.as_str()),
            reader,
            writer,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            codec: AmiCodec::with_max_message(cfg.max_message),
            tap,
            ping_interval: cfg.ping_interval,
            early: Vec::new(),
            prefix: format!("pz{:08x}", fastrand::u32(..)),
            problems: None,
        };
        let step = cfg.action_timeout;
        let banner = timed(
            tokio::time::timeout(step, conn.read_message()).await,
            "banner",
            step,
        )?;
        if banner.kind() != Kind::Banner {
            return Err(AmiError::Protocol(format!(
                "expected the banner `Asterisk Call Manager/...`, got {banner:?} (is {addr} an AMI port?)"
            )));
        }
        tracing::debug!(server = %conn.server, banner = ?banner, "connected");
        conn.login(cfg).await?;
        Ok(conn)
    }

    /// Reads until one message is decoded (login phase only; the task decodes in batches).
    async fn read_message(&mut self) -> Result<Message, AmiError> {
        loop {
            if let Some(m) = self.codec.decode(&mut self.rbuf)? {
                return Ok(m);
            }
            if self.fill().await? == 0 {
                return Err(AmiError::Closed { partial: 0 });
            }
        }
    }

    /// One read from the socket into the buffer, copied to the tap as read.
    async fn fill(&mut self) -> Result<usize, AmiError> {
        self.rbuf.reserve(READ_CHUNK);
        let before = self.rbuf.len();
        let n = self.reader.read_buf(&mut self.rbuf).await?;
        tap_bytes(&self.tap, &self.rbuf[before..]).await;
        Ok(n)
    }

    /// Writes an action and reads until the response with `id` (or, for very old Asterisk, a
    /// response with no ActionID at all). Anything else read meanwhile is kept for the consumer.
    async fn exchange(&mut self, action: Action, id: &str) -> Result<Message, AmiError> {
        let bytes = action.encode()?;
        self.writer.write_all(&bytes).await?;
        loop {
            let m = self.read_message().await?;
            let reply =
                m.kind() == Kind::Response && m.action_id().is_none_or(|a| a == id.as_bytes());
            if reply {
                return Ok(m);
            }
            self.early.push(m);
        }
    }

    async fn login(&mut self, cfg: &AsteriskConfig) -> Result<(), AmiError> {
        let step = cfg.action_timeout;
        let login = match cfg.auth {
            AuthType::Md5 => {
                let challenge = Action::new("Challenge")
                    .action_id(CHALLENGE_ID)
                    .header("AuthType", "MD5");
                let r = timed(
                    tokio::time::timeout(step, self.exchange(challenge, CHALLENGE_ID)).await,
                    "Challenge",
                    step,
                )?;
                let Some(ch) = r
                    .get(b"Challenge")
                    .filter(|_| r.is(b"Response", b"Success"))
                else {
                    return Err(AmiError::AuthFailed {
                        username: cfg.username.clone(),
                        message: format!(
                            "MD5 challenge refused: {} (try auth = \"plain\")",
                            r.get_str("Message").unwrap_or_default()
                        ),
                    });
                };
                let key = md5_key(ch, cfg.secret.expose().as_bytes());
                Action::new("Login")
                    .action_id(LOGIN_ID)
                    .header("AuthType", "MD5")
                    .header("Username", &cfg.username)
                    .header("Key", key)
                    .header("Events", &cfg.events)
            }
            AuthType::Plain => Action::new("Login")
                .action_id(LOGIN_ID)
                .header("Username", &cfg.username)
                .header("Secret", cfg.secret.expose())
                .header("Events", &cfg.events),
        };
        let r = timed(
            tokio::time::timeout(step, self.exchange(login, LOGIN_ID)).await,
            "Login",
            step,
        )?;
        if !r.is(b"Response", b"Success") {
            return Err(AmiError::AuthFailed {
                username: cfg.username.clone(),
                message: r
                    .get_str("Message")
                    .map_or_else(|| "no reason given".to_string(), |m| m.into_owned()),
            });
        }
        Ok(())
    }

    /// Runs until the link breaks (the error says why) or `shutdown` (Ok).
    pub(crate) async fn run(
        self,
        requests: mpsc::Receiver<Request>,
        events: &mpsc::Sender<LinkEvent>,
        shutdown: &CancellationToken,
    ) -> Result<(), AmiError> {
        match self.serve(requests, events, shutdown).await {
            Err(AmiError::Shutdown) => Ok(()),
            other => other,
        }
    }

    async fn serve(
        self,
        mut requests: mpsc::Receiver<Request>,
        events: &mpsc::Sender<LinkEvent>,
        shutdown: &CancellationToken,
    ) -> Result<(), AmiError> {
        let Connection {
            server,
            mut reader,
            mut writer,
            mut rbuf,
            mut codec,
            tap,
            ping_interval,
            early,
            prefix,
            problems,
        } = self;
        let mut problems_seen = codec.stats().problems();
        let mut router = Router {
            server,
            events,
            shutdown,
            pending: HashMap::new(),
            ping: None,
            waited: false,
        };
        let now = jiff::Timestamp::now();
        for m in early {
            router.route(m, now).await?;
        }
        let mut pings = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
        pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut ping_seq = 0u64;
        let mut batch = Vec::with_capacity(256);
        loop {
            // Everything already buffered is delivered before waiting on anything else. Decoding
            // the whole read first, then sending in a burst, lets a consumer on another thread
            // wake once per read instead of once per message.
            let now = jiff::Timestamp::now();
            while let Some(m) = codec.decode(&mut rbuf)? {
                batch.push(m);
            }
            let p = codec.stats().problems();
            if p > problems_seen {
                let stats = codec.stats();
                tracing::warn!(
                    server = %router.server,
                    skipped = p - problems_seen,
                    malformed_lines = stats.malformed_lines,
                    oversized = stats.oversized,
                    "AMI input skipped"
                );
                if let Some(c) = &problems {
                    c.fetch_add(p - problems_seen, Ordering::Relaxed);
                }
                problems_seen = p;
            }
            for m in batch.drain(..) {
                router.route(m, now).await?;
            }
            if std::mem::take(&mut router.waited) {
                // We stopped reading while the consumer was full: give the Ping a fresh interval.
                pings.reset();
            }
            rbuf.reserve(READ_CHUNK);
            let before = rbuf.len();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    let bye = Action::new("Logoff").action_id(format!("{prefix}-logoff")).encode()?;
                    let _ = tokio::time::timeout(Duration::from_secs(1), writer.write_all(&bye)).await;
                    return Ok(());
                }
                r = reader.read_buf(&mut rbuf) => {
                    let n = r?;
                    tap_bytes(&tap, &rbuf[before..]).await;
                    if n == 0 {
                        // Complete messages were all delivered above; what is left is a message
                        // cut by the break. Delivering its first half would corrupt the event.
                        let partial = rbuf.iter().filter(|&&b| b != b'\r' && b != b'\n').count();
                        return Err(AmiError::Closed { partial });
                    }
                }
                Some(req) = requests.recv() => {
                    if req.reply.is_closed() {
                        // Its caller timed out while it queued: a stale Originate must not go out.
                        continue;
                    }
                    if router.pending.contains_key(&req.id) {
                        let id = String::from_utf8_lossy(&req.id).into_owned();
                        let _ = req.reply.send(Err(AmiError::DuplicateActionId(id)));
                        continue;
                    }
                    writer.write_all(&req.bytes).await?;
                    router.pending.insert(req.id, Pending {
                        name: req.name,
                        reply: req.reply,
                        list: req.list.then(ListState::default),
                    });
                }
                _ = pings.tick() => {
                    if router.ping.is_some() {
                        return Err(AmiError::PingTimeout(ping_interval));
                    }
                    // Callers that timed out dropped their receiver: forget them.
                    router.pending.retain(|_, p| !p.reply.is_closed());
                    ping_seq += 1;
                    let id = format!("{prefix}-ping-{ping_seq}");
                    let ping = Action::new("Ping").action_id(&id).encode()?;
                    writer.write_all(&ping).await?;
                    router.ping = Some(id.into_bytes());
                }
            }
        }
    }
}

/// Routes decoded messages: replies to their callers, everything else to the consumer.
struct Router<'a> {
    server: Arc<str>,
    events: &'a mpsc::Sender<LinkEvent>,
    shutdown: &'a CancellationToken,
    pending: HashMap<Vec<u8>, Pending>,
    /// ActionID of the Ping in flight.
    ping: Option<Vec<u8>>,
    /// Set when delivering had to wait for the consumer.
    waited: bool,
}

impl Router<'_> {
    async fn route(&mut self, msg: Message, now: jiff::Timestamp) -> Result<(), AmiError> {
        let msg = match msg.kind() {
            Kind::Response => self.response(msg),
            Kind::Event if !self.pending.is_empty() => self.list_item(msg),
            _ => Some(msg),
        };
        let Some(msg) = msg else { return Ok(()) };
        let ev = LinkEvent::Message {
            server: self.server.clone(),
            msg,
            received_at: now,
        };
        match self.events.try_send(ev) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(ev)) => {
                self.waited = true;
                tokio::select! {
                    r = self.events.send(ev) => r.map_err(|_| AmiError::ConsumerGone),
                    _ = self.shutdown.cancelled() => Err(AmiError::Shutdown),
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(AmiError::ConsumerGone),
        }
    }

    /// Takes a Response for its pending action; returns it back if nobody waits for it.
    fn response(&mut self, msg: Message) -> Option<Message> {
        let id = msg.action_id()?;
        if self.ping.as_deref() == Some(id) {
            self.ping = None;
            return None;
        }
        let Some(p) = self.pending.get_mut(id) else {
            return Some(msg);
        };
        if p.reply.is_closed() {
            // Its caller gave up (timeout): the late reply still reaches the stream.
            let id = id.to_vec();
            self.pending.remove(&id);
            return Some(msg);
        }
        let error = msg.is(b"Response", b"Error");
        let list_start = msg.is(b"EventList", b"start");
        if let Some(list) = p.list.as_mut().filter(|_| !error && list_start) {
            list.response = Some(msg);
            return None;
        }
        let id = id.to_vec();
        let p = self.pending.remove(&id)?;
        let result = if error {
            Err(AmiError::Rejected {
                action: p.name,
                message: msg
                    .get_str("Message")
                    .map_or_else(|| "no reason given".into(), |m| m.into_owned()),
            })
        } else {
            Ok(Reply::Single(msg))
        };
        let _ = p.reply.send(result);
        None
    }

    /// Takes an event that belongs to a pending list; returns any other event back.
    fn list_item(&mut self, msg: Message) -> Option<Message> {
        let Some(id) = msg.action_id() else {
            return Some(msg);
        };
        let Some(p) = self.pending.get_mut(id) else {
            return Some(msg);
        };
        let Some(list) = p.list.as_mut() else {
            return Some(msg);
        };
        // Asterisk 12+ marks the end with `EventList: Complete`; older ones only name the event
        // `<X>Complete` (`StatusComplete`).
        let complete = msg.is(b"EventList", b"Complete")
            || msg.event().is_some_and(|e| e.ends_with(b"Complete"));
        if !complete {
            list.items.push(msg);
            return None;
        }
        let id = id.to_vec();
        let p = self.pending.remove(&id)?;
        let list = p.list.unwrap_or_default();
        if let Some(n) = msg
            .get_str("ListItems")
            .and_then(|n| n.trim().parse::<usize>().ok())
        {
            if n != list.items.len() {
                tracing::warn!(server = %self.server, action = %p.name, announced = n, received = list.items.len(), "list item count differs from ListItems");
            }
        }
        // A list whose Response never came (very old Asterisk): the Complete event stands in.
        let response = list.response.unwrap_or(msg);
        let _ = p.reply.send(Ok(Reply::List(response, list.items)));
        None
    }
}

/// Flattens a login step's timeout into [`AmiError::Timeout`].
fn timed<T>(
    r: Result<Result<T, AmiError>, tokio::time::error::Elapsed>,
    what: &str,
    timeout: Duration,
) -> Result<T, AmiError> {
    r.map_err(|_| AmiError::Timeout {
        action: what.to_string(),
        timeout,
    })?
}

/// Copies freshly read bytes to the tap. Waiting here is deliberate: a recording must be exact.
async fn tap_bytes(tap: &Option<mpsc::Sender<Bytes>>, bytes: &[u8]) {
    if let Some(tap) = tap {
        if !bytes.is_empty() {
            let _ = tap.send(Bytes::copy_from_slice(bytes)).await;
        }
    }
}

/// The MD5 login key: lowercase hex of md5(challenge + secret).
pub fn md5_key(challenge: &[u8], secret: &[u8]) -> String {
    let mut h = Md5::new();
    h.update(challenge);
    h.update(secret);
    let digest = h.finalize();
    let mut s = String::with_capacity(32);
    for b in digest {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_key_is_lowercase_hex_of_challenge_then_secret() {
        // md5("123456789" + "s3cret"), computed independently with `printf %s ... | md5sum`.
        assert_eq!(
            md5_key(b"123456789", b"s3cret"),
            "d32b5714dd0e3ae70d4a845d5e524f3f"
        );
    }
}
