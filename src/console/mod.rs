//! The web console (`[web] listen`): what a call-centre manager looks at (Now, To call back,
//! Missed calls, Report) and what a supervisor does (call now, cancel, retry), served by the
//! daemon on its own listener, beside `/metrics`.
//!
//! - [`auth`]: argon2 passwords, the signed session cookie, CSRF tokens, login rate limits.
//! - [`i18n`]: English and Russian.
//! - [`queues`]: the queues now (`QueueStatus` of every connected server).
//! - [`pages`]: the server-rendered HTML; `static/` holds the stylesheet and the one small
//!   script (SSE on the Now page), both compiled into the binary.
//! - this file: the router, the security headers, the handlers and the live feed.
//!
//! Security model: every page but `/login` and `/static/*` needs a session (else a redirect to
//! `/login`); every POST needs the session's CSRF token (the login form instead refuses a
//! cross-site `Origin`); acting needs the `supervisor` role. Actions go through the store as
//! `perezvon callbacks` does, so the dialer applies the same planner rules and toll-fraud guard;
//! the console checks the guard first only to say at once that a number will never be dialled.

pub mod auth;
pub mod i18n;
pub mod pages;
pub mod queues;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use futures::StreamExt as _;
use jiff::Timestamp;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::ami::{Action, AmiHandle};
use crate::callback::hours::Hours;
use crate::callback::planner::{Policy, TaskState};
use crate::config::{Config, WebRole, WebUser};
use crate::metrics::{Metrics, ServerSnapshot};
use crate::status::{QueueStatus, TodayStatus};
use crate::store::console::MissedFilter;
use crate::store::report::MissedCall;
use crate::store::tasks::Attempt;
use crate::store::{Store, StoreError};

use auth::{Key, Limiter, Session, SESSION_COOKIE};
use i18n::{Lang, LANG_COOKIE};

const CSS: &str = include_str!("static/console.css");
const JS: &str = include_str!("static/console.js");

/// How often the live feed looks at the daemon.
const LIVE_TICK: Duration = Duration::from_secs(1);
/// The store is read again at least this often even when nothing was committed (day roll-over,
/// a writer the data version does not see).
const LIVE_REFRESH: Duration = Duration::from_secs(15);
/// How often the queues are asked for (one small action per server).
const QUEUE_EVERY: Duration = Duration::from_secs(3);
/// How long a server may take to list its queues.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(3);
/// Rows of the Missed calls page.
const MISSED_LIMIT: u32 = 500;

/// What the Now page shows, refreshed by one task for every viewer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NowData {
    pub servers: Vec<ServerSnapshot>,
    pub calls_in_progress: u64,
    pub held: u64,
    pub queue: QueueStatus,
    pub today: TodayStatus,
    pub in_flight: Vec<Attempt>,
    pub recent: Vec<MissedCall>,
    /// The queues of the connected servers (`QueueStatus`, every 3 s).
    pub queues: Vec<queues::QueueNow>,
    /// The store could not be read (the rest is the last good reading).
    pub error: Option<String>,
    /// When this reading last changed.
    pub at: Option<Timestamp>,
}

impl NowData {
    /// Calls in progress of one server (only the total is known today: `None` per server
    /// unless there is a single one).
    pub fn in_progress_of(&self, _server: &str) -> Option<u64> {
        (self.servers.len() == 1).then_some(self.calls_in_progress)
    }
}

/// Everything the handlers share.
pub struct Console {
    cfg: Arc<Config>,
    key: Key,
    db: PathBuf,
    limiter: Limiter,
    /// One connection for the pages and the actions (the live feed has its own).
    store: Arc<Mutex<Option<Store>>>,
    live: watch::Receiver<Arc<NowData>>,
    shutdown: CancellationToken,
    /// Sessions logged out before their expiry (nonce -> expiry): a copied cookie dies with
    /// the logout. In memory: a restart forgets them, the expiry still holds.
    revoked: Mutex<HashMap<String, i64>>,
}

/// Logged-out sessions remembered at most (they leave at their expiry).
const MAX_REVOKED: usize = 100_000;

type S = Arc<Console>;

/// The console's key: `web.secret_file`, or `console.key` beside the database (created).
pub fn load_key(cfg: &Config, db: &std::path::Path) -> Result<Key, String> {
    match &cfg.web.secret_file {
        Some(p) => Key::load_or_create(p, false),
        None => {
            let dir = db
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            Key::load_or_create(&dir.join("console.key"), true)
        }
    }
}

/// The console's router and the live feed's task (stopped by `shutdown`).
///
/// `servers` are the daemon's AMI connections, asked for their queues (none in tests).
pub fn router(
    cfg: Arc<Config>,
    key: Key,
    db: PathBuf,
    metrics: Arc<Metrics>,
    servers: Vec<AmiHandle>,
    shutdown: CancellationToken,
) -> Router {
    let (tx, rx) = watch::channel(Arc::new(NowData::default()));
    tokio::spawn(live_feed(
        cfg.clone(),
        db.clone(),
        metrics,
        servers,
        tx,
        shutdown.clone(),
    ));
    let state = Arc::new(Console {
        cfg,
        key,
        db,
        limiter: Limiter::default(),
        store: Arc::new(Mutex::new(None)),
        live: rx,
        shutdown,
        revoked: Mutex::new(HashMap::new()),
    });
    let https = state.cfg.web.https;
    Router::new()
        .route("/", get(|| async { redirect("/now") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/lang", get(set_lang))
        .route("/now", get(now_page))
        .route("/events", get(events))
        .route("/callbacks", get(callbacks_page))
        .route("/callbacks/{id}/{action}", post(callback_action))
        .route("/missed", get(missed_page))
        .route("/customer", get(customer_page))
        .route("/report", get(report_page))
        .route(
            "/static/console.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
        .route(
            "/static/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
        )
        .fallback(not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn(move |req, next| {
            security_headers(req, next, https)
        }))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            crate::web::MAX_BODY,
        ))
}

/// Binds `[web] listen` and serves the console until `shutdown`.
pub async fn serve(
    cfg: Arc<Config>,
    db: PathBuf,
    metrics: Arc<Metrics>,
    servers: Vec<AmiHandle>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let Some(listen) = cfg.web.listen else {
        return Ok(());
    };
    let key = load_key(&cfg, &db)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen for the web console on {listen}: {e}"))?;
    tracing::info!(%listen, users = cfg.web.users.len(), "web console listening");
    let app = router(cfg, key, db, metrics, servers, shutdown.clone());
    crate::web::serve_listener_with_peers(listener, app, shutdown)
        .await
        .map_err(|e| format!("web console: {e}"))
}

async fn security_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
    https: bool,
) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    // No inline script anywhere; the report's charts use inline styles, hence 'unsafe-inline'
    // for styles only.
    set(
        h,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "same-origin");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(
        h,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=()",
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    if https {
        set(h, "strict-transport-security", "max-age=31536000");
    }
    res
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
        .into_response()
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

/// A cookie value from the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn lang_of(headers: &HeaderMap) -> Lang {
    Lang::pick(
        cookie(headers, LANG_COOKIE),
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

/// A path of this site to go back to (never `//host` or a URL: no open redirect).
fn local_path(p: &str) -> Option<&str> {
    (p.starts_with('/')
        && !p.starts_with("//")
        && !p.starts_with("/\\")
        && p.len() <= 512
        && !p.chars().any(|c| c.is_control()))
    .then_some(p)
}

fn now_secs() -> i64 {
    Timestamp::now().as_second()
}

/// The logged-in user of a request, or the redirect to `/login`.
struct Authed {
    session: Session,
    user: WebUser,
    ctx: pages::Ctx,
}

/// The redirect to `/login` of a request without a session.
struct ToLogin(String);

impl IntoResponse for ToLogin {
    fn into_response(self) -> Response {
        redirect(&self.0)
    }
}

fn authed(s: &S, headers: &HeaderMap, here: &str) -> Result<Authed, ToLogin> {
    let found = cookie(headers, SESSION_COOKIE)
        .and_then(|v| Session::decode(v, &s.key, &s.cfg.web.users, now_secs()))
        .filter(|(session, _)| !is_revoked(s, &session.nonce));
    match found {
        Some((session, user)) => {
            let ctx = pages::Ctx {
                lang: lang_of(headers),
                user: user.name.clone(),
                role: user.role,
                csrf: session.csrf(&s.key),
                tz: s.cfg.hours.timezone.clone(),
                here: here.to_string(),
            };
            Ok(Authed {
                session,
                user: user.clone(),
                ctx,
            })
        }
        None => {
            let next = local_path(here).unwrap_or("/now");
            Err(ToLogin(format!("/login?next={}", pages::q(next))))
        }
    }
}

fn is_revoked(s: &S, nonce: &str) -> bool {
    s.revoked
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(nonce)
}

fn revoke(s: &S, session: &Session) {
    let mut r = s.revoked.lock().unwrap_or_else(|e| e.into_inner());
    if r.len() >= MAX_REVOKED {
        let now = now_secs();
        r.retain(|_, exp| *exp > now);
        if r.len() >= MAX_REVOKED {
            if let Some(k) = r.keys().next().cloned() {
                r.remove(&k);
            }
        }
    }
    r.insert(session.nonce.clone(), session.expires);
}

/// A cross-site POST (its `Origin` or `Sec-Fetch-Site` names another site) is refused
/// whatever it carries: the CSRF token is the main defence, this one also covers the login form.
fn cross_site(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .split_once("://")
        .map(|(_, h)| h.trim_end_matches('/'))
        .unwrap_or("");
    origin == "null" || !origin_host.eq_ignore_ascii_case(host)
}

fn page(status: StatusCode, html: String) -> Response {
    (status, Html(html)).into_response()
}

fn problem(c: &pages::Ctx, status: StatusCode, title: &str, detail: &str) -> Response {
    page(status, pages::problem(c, title, detail))
}

/// Runs `f` on the console's connection, off the async threads.
async fn with_store<T: Send + 'static>(
    s: &S,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    let (store, db) = (s.store.clone(), s.db.clone());
    let r = tokio::task::spawn_blocking(move || {
        let mut guard = store.lock().unwrap_or_else(|e| e.into_inner());
        let st = match guard.as_mut() {
            Some(st) => st,
            None => guard.insert(Store::open(&db)?),
        };
        f(st)
    })
    .await;
    match r {
        Ok(Ok(x)) => Ok(x),
        Ok(Err(e)) => {
            let msg = crate::store::error_chain(&e);
            tracing::warn!(error = %msg, "console: database");
            Err(msg)
        }
        Err(e) => {
            tracing::error!(error = %e, "console: query task failed");
            Err("query failed".into())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Login, logout, language.
// ---------------------------------------------------------------------------------------------

async fn login_page(
    State(s): State<S>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let lang = lang_of(&headers);
    let next = q.get("next").and_then(|n| local_path(n)).unwrap_or("/now");
    // Already logged in: straight on.
    if cookie(&headers, SESSION_COOKIE)
        .and_then(|v| Session::decode(v, &s.key, &s.cfg.web.users, now_secs()))
        .is_some()
    {
        return redirect(next);
    }
    page(StatusCode::OK, pages::login(lang, None, "", next))
}

fn session_cookie(s: &S, value: &str, max_age: u64) -> String {
    format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if s.cfg.web.https { "; Secure" } else { "" }
    )
}

async fn login(
    State(s): State<S>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let lang = lang_of(&headers);
    let user = form.get("user").map(String::as_str).unwrap_or("");
    let password = form.get("password").map(String::as_str).unwrap_or("");
    let next = form
        .get("next")
        .and_then(|n| local_path(n))
        .unwrap_or("/now")
        .to_string();
    if cross_site(&headers) {
        return page(
            StatusCode::FORBIDDEN,
            pages::login(lang, Some(lang.t("msg.csrf")), "", &next),
        );
    }
    let ip = peer(&ext);
    let now = std::time::Instant::now();
    if let Some(wait) = s.limiter.blocked(ip, user, now) {
        tracing::warn!(%ip, user = %crate::report::text::escape_unsafe(user), "console: login refused, too many failures");
        let mut r = page(
            StatusCode::TOO_MANY_REQUESTS,
            pages::login(lang, Some(lang.t("login.limited")), user, &next),
        );
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let found = s
        .cfg
        .web
        .users
        .iter()
        .find(|u| u.name == user && !user.is_empty())
        .cloned();
    let hash = found
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| auth::decoy_hash().to_string());
    let pw = password.to_string();
    // argon2 takes tens of milliseconds of CPU on purpose: not on an async thread.
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&hash, &pw))
        .await
        .unwrap_or(false);
    match found.filter(|_| ok && !password.is_empty()) {
        Some(u) => {
            s.limiter.succeeded(user);
            let session = match Session::new(&u.name, now_secs(), s.cfg.web.session_ttl) {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(error = %e, "console: cannot create a session");
                    return (StatusCode::SERVICE_UNAVAILABLE, "cannot create a session\n")
                        .into_response();
                }
            };
            tracing::info!(user = %u.name, role = u.role.as_str(), %ip, "console: logged in");
            let value = session.encode(&s.key, &u);
            let mut r = redirect(&next);
            if let Ok(v) =
                HeaderValue::from_str(&session_cookie(&s, &value, s.cfg.web.session_ttl.as_secs()))
            {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        None => {
            s.limiter.failed(ip, user, now);
            tracing::warn!(%ip, user = %crate::report::text::escape_unsafe(user), "console: login failed");
            page(
                StatusCode::UNAUTHORIZED,
                pages::login(lang, Some(lang.t("login.failed")), user, &next),
            )
        }
    }
}

/// The client's address (the connection's peer; unspecified when served without one).
fn peer(ext: &axum::http::Extensions) -> IpAddr {
    ext.get::<axum::extract::ConnectInfo<crate::web::Peer>>()
        .map(|c| c.0 .0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

async fn logout(
    State(s): State<S>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let a = match authed(&s, &headers, "/now") {
        Ok(a) => a,
        Err(_) => return redirect("/login"),
    };
    if cross_site(&headers)
        || !a
            .session
            .csrf_ok(&s.key, form.get("csrf").map(String::as_str).unwrap_or(""))
    {
        return problem(
            &a.ctx,
            StatusCode::FORBIDDEN,
            a.ctx.lang.t("bad.request"),
            a.ctx.lang.t("msg.csrf"),
        );
    }
    revoke(&s, &a.session);
    tracing::info!(user = %a.user.name, "console: logged out");
    let mut r = redirect("/login");
    if let Ok(v) = HeaderValue::from_str(&session_cookie(&s, "", 0)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn set_lang(Query(q): Query<HashMap<String, String>>) -> Response {
    let back = q.get("back").and_then(|b| local_path(b)).unwrap_or("/now");
    let mut r = redirect(back);
    if let Some(l) = q.get("set").and_then(|l| Lang::parse(l)) {
        let c = format!(
            "{LANG_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age=31536000",
            l.code()
        );
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    r
}

async fn not_found(
    State(s): State<S>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let a = match authed(&s, &headers, uri.path()) {
        Ok(a) => a,
        Err(r) if method == Method::GET => return r.into_response(),
        Err(_) => return redirect("/login"),
    };
    problem(&a.ctx, StatusCode::NOT_FOUND, "404", uri.path())
}

// ---------------------------------------------------------------------------------------------
// Now and its live feed.
// ---------------------------------------------------------------------------------------------

/// Reads what the Now page shows from the store.
fn read_now(st: &Store, tz: &jiff::tz::TimeZone, now: Timestamp) -> Result<NowData, StoreError> {
    let (queue, mut today) = crate::status::from_store(st, tz, now)?;
    let in_flight = st.unfinished_attempts()?;
    let (start, _) = crate::status::today_start(now, tz);
    // The report's definitions (accidental and unknown calls are not counted inbound), so the
    // Now page and the Report page of today give the same numbers.
    let calls = st.calls_ended_between(start, now)?;
    let count = |f: &dyn Fn(&crate::calls::record::CallRecord) -> bool| {
        calls.iter().filter(|c| f(c)).count() as u64
    };
    today.inbound = count(&|c| c.is_counted_inbound());
    today.answered =
        count(&|c| c.is_counted_inbound() && c.status == crate::calls::record::Status::Answered);
    today.missed = count(&|c| c.is_counted_miss());
    today.unresolved = count(&|c| c.is_counted_miss() && c.resolved_by.is_none());
    let (recent, _) = st.console_missed(&MissedFilter {
        from: start,
        to: now + jiff::SignedDuration::from_secs(1),
        limit: 10,
        ..MissedFilter::default()
    })?;
    Ok(NowData {
        queue,
        today,
        in_flight,
        recent,
        ..NowData::default()
    })
}

/// One task for every viewer: the metrics each second, the store when something was committed
/// (`PRAGMA data_version` moved) or every [`LIVE_REFRESH`].
async fn live_feed(
    cfg: Arc<Config>,
    db: PathBuf,
    metrics: Arc<Metrics>,
    servers: Vec<AmiHandle>,
    tx: watch::Sender<Arc<NowData>>,
    stop: CancellationToken,
) {
    let mut queues: Vec<queues::QueueNow> = Vec::new();
    let mut queues_at = std::time::Instant::now() - QUEUE_EVERY * 2;
    let tz = cfg.hours.timezone.clone();
    let store: Arc<Mutex<Option<Store>>> = Arc::new(Mutex::new(None));
    let mut last = NowData::default();
    let mut seen_version: Option<i64> = None;
    let mut last_read = std::time::Instant::now() - LIVE_REFRESH * 2;
    let mut tick = tokio::time::interval(LIVE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Timestamp::now();
        let (st, db2, tz2, seen) = (store.clone(), db.clone(), tz.clone(), seen_version);
        let stale = last_read.elapsed() >= LIVE_REFRESH;
        let read = tokio::task::spawn_blocking(move || {
            let mut guard = st.lock().unwrap_or_else(|e| e.into_inner());
            let st = match guard.as_mut() {
                Some(st) => st,
                None => guard.insert(Store::open(&db2)?),
            };
            let v = st.data_version()?;
            if !stale && seen == Some(v) {
                return Ok((v, None));
            }
            read_now(st, &tz2, now).map(|d| (v, Some(d)))
        })
        .await;
        let mut next = last.clone();
        match read {
            Ok(Ok((v, fresh))) => {
                seen_version = Some(v);
                if let Some(d) = fresh {
                    last_read = std::time::Instant::now();
                    next = d;
                }
                next.error = None;
            }
            Ok(Err(e)) => next.error = Some(crate::store::error_chain(&e)),
            Err(e) => next.error = Some(e.to_string()),
        }
        if queues_at.elapsed() >= QUEUE_EVERY {
            queues_at = std::time::Instant::now();
            queues = read_queues(&servers).await;
        }
        next.queues = queues.clone();
        next.servers = metrics.servers(now);
        next.calls_in_progress = metrics.calls_in_progress();
        next.held = metrics.held_verdicts();
        next.at = last.at;
        if next != last {
            next.at = Some(now);
            last = next.clone();
            if tx.send(Arc::new(next)).is_err() && tx.is_closed() {
                // Nobody can subscribe any more (the router is gone).
                return;
            }
        }
    }
}

/// `QueueStatus` of every connected server; a server that does not answer in time is left
/// out this round (its link state says why).
async fn read_queues(servers: &[AmiHandle]) -> Vec<queues::QueueNow> {
    let mut out = Vec::new();
    for h in servers.iter().filter(|h| h.is_up()) {
        match tokio::time::timeout(QUEUE_TIMEOUT, h.send_list(Action::new("QueueStatus"))).await {
            Ok(Ok((_, items))) => out.extend(queues::from_status(h.server(), &items)),
            Ok(Err(e)) => {
                tracing::debug!(server = h.server(), error = %e, "console: QueueStatus failed")
            }
            Err(_) => tracing::debug!(server = h.server(), "console: QueueStatus timed out"),
        }
    }
    out
}

async fn now_page(State(s): State<S>, headers: HeaderMap) -> Response {
    let a = match authed(&s, &headers, "/now") {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let d = s.live.borrow().clone();
    page(StatusCode::OK, pages::now(&a.ctx, &d))
}

/// `GET /events`: the live part of the Now page as server-sent events (`event: now`), sent
/// when it changes; the stream ends when the session expires or the daemon stops.
async fn events(State(s): State<S>, headers: HeaderMap) -> Response {
    let a = match authed(&s, &headers, "/now") {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let (lang, tz) = (a.ctx.lang, a.ctx.tz.clone());
    let expires = a.session.expires;
    let rx = s.live.clone();
    let stream =
        futures::stream::unfold((rx, None::<String>, true), move |(mut rx, last, first)| {
            let tz = tz.clone();
            async move {
                let mut first = first;
                loop {
                    if !first && rx.changed().await.is_err() {
                        return None;
                    }
                    first = false;
                    if now_secs() >= expires {
                        return None;
                    }
                    let d = rx.borrow_and_update().clone();
                    let html = pages::live_fragment(&d, lang, &tz);
                    if last.as_deref() != Some(html.as_str()) {
                        let ev = Event::default().event("now").data(html.clone());
                        return Some((Ok::<_, Infallible>(ev), (rx, Some(html), false)));
                    }
                }
            }
        })
        .take_until(s.shutdown.clone().cancelled_owned());
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// To call back.
// ---------------------------------------------------------------------------------------------

async fn callbacks_page(
    State(s): State<S>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let a = match authed(&s, &headers, "/callbacks") {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let hours = Hours::from_config(&s.cfg.hours);
    let now = Timestamp::now();
    let week_ago = now - jiff::SignedDuration::from_hours(24 * 7);
    let read = with_store(&s, move |st| {
        let rows = st.list_tasks(true, 2000)?;
        Ok(rows)
    })
    .await;
    let rows = match read {
        Ok(r) => r,
        Err(e) => {
            return problem(
                &a.ctx,
                StatusCode::SERVICE_UNAVAILABLE,
                a.ctx.lang.t("err.db"),
                &e,
            )
        }
    };
    let (mut open, mut closed) = (Vec::new(), Vec::new());
    for r in rows {
        if r.task.state.is_open() {
            let next_possible = hours.next_open(r.task.next_attempt_at.max(now));
            open.push(pages::OpenTask {
                row: r,
                next_possible,
            });
        } else if r.closed_at.is_some_and(|c| c >= week_ago) && closed.len() < 200 {
            closed.push(r);
        }
    }
    // The longest waiting first: that is who to call.
    open.sort_by_key(|o| (o.row.task.first_missed_at, o.row.task.id));
    let flash = q.get("msg").and_then(|k| flash_of(k, q.get("at"), &a.ctx));
    page(
        StatusCode::OK,
        pages::callbacks(&a.ctx, &open, &closed, flash),
    )
}

/// The flash of a redirect after an action: only keys of [`FLASHES`]; `at` only as a time.
fn flash_of(key: &str, at: Option<&String>, c: &pages::Ctx) -> Option<pages::Flash> {
    let (k, bad) = FLASHES.iter().find(|(k, _)| *k == key)?;
    let extra = at
        .and_then(|a| a.parse::<i64>().ok())
        .and_then(|secs| Timestamp::from_second(secs).ok())
        .map(|t| {
            t.to_zoned(c.tz.clone())
                .strftime("%Y-%m-%d %H:%M")
                .to_string()
        });
    Some(pages::Flash {
        key: k,
        bad: *bad,
        extra,
    })
}

const FLASHES: &[(&str, bool)] = &[
    ("msg.cancelled", false),
    ("msg.cancelled_in_flight", false),
    ("msg.call_now", false),
    ("msg.call_now_closed_hours", false),
    ("msg.retry", false),
    ("msg.guard", true),
    ("msg.not_open", true),
    ("msg.in_flight", true),
    ("msg.no_task", true),
    ("msg.other_open", true),
];

/// What an action did, as a flash key, with a time for "outside hours".
#[derive(Debug, PartialEq)]
enum Done {
    Flash(&'static str),
    FlashAt(&'static str, Timestamp),
}

async fn callback_action(
    State(s): State<S>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let a = match authed(&s, &headers, "/callbacks") {
        Ok(a) => a,
        Err(_) => return redirect("/login?next=%2Fcallbacks"),
    };
    let t = |k| a.ctx.lang.t(k);
    if cross_site(&headers)
        || !a
            .session
            .csrf_ok(&s.key, form.get("csrf").map(String::as_str).unwrap_or(""))
    {
        tracing::warn!(user = %a.user.name, "console: action refused, bad CSRF token");
        return problem(
            &a.ctx,
            StatusCode::FORBIDDEN,
            t("bad.request"),
            t("msg.csrf"),
        );
    }
    if a.user.role != WebRole::Supervisor {
        tracing::warn!(user = %a.user.name, "console: action refused, not a supervisor");
        return problem(
            &a.ctx,
            StatusCode::FORBIDDEN,
            t("bad.request"),
            t("msg.forbidden"),
        );
    }
    let Ok(id) = id.parse::<i64>() else {
        return problem(
            &a.ctx,
            StatusCode::BAD_REQUEST,
            t("bad.request"),
            &format!("{id:?}"),
        );
    };
    if !matches!(action.as_str(), "call" | "cancel" | "retry") {
        return problem(&a.ctx, StatusCode::NOT_FOUND, "404", &action);
    }
    let cfg = s.cfg.clone();
    let user = a.user.name.clone();
    let act = action.clone();
    let done = with_store(&s, move |st| {
        act_on(st, &cfg, id, &act, &user, Timestamp::now())
    })
    .await;
    match done {
        Ok(Done::Flash(k)) => redirect(&format!("/callbacks?msg={k}")),
        Ok(Done::FlashAt(k, at)) => redirect(&format!("/callbacks?msg={k}&at={}", at.as_second())),
        Err(e) => problem(&a.ctx, StatusCode::SERVICE_UNAVAILABLE, t("err.db"), &e),
    }
}

/// Carries out a supervisor's action the way `perezvon callbacks` does; the dialer sees the
/// change through `PRAGMA data_version` and applies the planner to it.
fn act_on(
    st: &Store,
    cfg: &Config,
    id: i64,
    action: &str,
    user: &str,
    now: Timestamp,
) -> Result<Done, StoreError> {
    let Some(row) = st.task(id)? else {
        return Ok(Done::Flash("msg.no_task"));
    };
    let task = &row.task;
    let policy = Policy::from_config(&cfg.callback, cfg.calls.min_talk);
    let guarded = || policy.dial_number(&task.number).is_err();
    match action {
        "cancel" => {
            if !task.state.is_open() {
                return Ok(Done::Flash("msg.not_open"));
            }
            let reason = format!("cancelled_in_console by {user}");
            if !st.close_task(id, TaskState::Cancelled, &reason, now)? {
                return Ok(Done::Flash("msg.not_open"));
            }
            tracing::info!(task = id, %user, "console: callback task cancelled");
            Ok(Done::Flash(if task.state == TaskState::InProgress {
                "msg.cancelled_in_flight"
            } else {
                "msg.cancelled"
            }))
        }
        "call" | "retry" => {
            if task.state == TaskState::InProgress {
                return Ok(Done::Flash("msg.in_flight"));
            }
            if guarded() {
                return Ok(Done::Flash("msg.guard"));
            }
            let give_up_at = jiff::SignedDuration::try_from(cfg.callback.give_up_after)
                .ok()
                .and_then(|d| now.checked_add(d).ok())
                .unwrap_or(Timestamp::MAX);
            if task.state == TaskState::Pending {
                // A pending task has its attempts still ahead: "retry" of it is "call now".
                if !st.call_task_now(id, now, give_up_at)? {
                    return Ok(Done::Flash("msg.not_open"));
                }
            } else {
                match st.retry_task(id, now, cfg.callback.max_attempts, give_up_at) {
                    Ok(()) => {}
                    Err(StoreError::Invalid(m)) if m.contains("in flight") => {
                        return Ok(Done::Flash("msg.in_flight"))
                    }
                    Err(StoreError::Invalid(m)) if m.contains("already has open") => {
                        return Ok(Done::Flash("msg.other_open"))
                    }
                    Err(StoreError::Invalid(_)) => return Ok(Done::Flash("msg.no_task")),
                    Err(e) => return Err(e),
                }
            }
            tracing::info!(task = id, %user, action, "console: callback task due now");
            let hours = Hours::from_config(&cfg.hours);
            if !hours.is_open(now) {
                if let Some(open) = hours.next_open(now) {
                    return Ok(Done::FlashAt("msg.call_now_closed_hours", open));
                }
            }
            Ok(Done::Flash(
                if action == "retry" && task.state != TaskState::Pending {
                    "msg.retry"
                } else {
                    "msg.call_now"
                },
            ))
        }
        _ => Ok(Done::Flash("msg.no_task")),
    }
}

// ---------------------------------------------------------------------------------------------
// Missed calls, a customer, the report.
// ---------------------------------------------------------------------------------------------

/// A `YYYY-MM-DD` of the form, or what is wrong with it.
fn date_param(
    q: &HashMap<String, String>,
    name: &str,
    default: jiff::civil::Date,
    lang: Lang,
) -> Result<jiff::civil::Date, String> {
    match q.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => s.parse::<jiff::civil::Date>().map_err(|_| {
            format!(
                "{name} = {:?} {}",
                crate::report::text::cell(s, 40),
                lang.t("bad.date")
            )
        }),
    }
}

/// `[from 00:00, to+1 00:00)` in the configured zone, with the checks of a period.
fn period(
    q: &HashMap<String, String>,
    tz: &jiff::tz::TimeZone,
    default_days: i64,
    lang: Lang,
) -> Result<(jiff::civil::Date, jiff::civil::Date, Timestamp, Timestamp), String> {
    let today = Timestamp::now().to_zoned(tz.clone()).date();
    let to = date_param(q, "to", today, lang)?;
    let from_default = to
        .checked_sub(jiff::Span::new().days(default_days))
        .unwrap_or(to);
    let from = date_param(q, "from", from_default, lang)?;
    if to < from {
        return Err(lang.t("bad.order").to_string());
    }
    if (to - from).get_days() > 3660 || from.year() < 1971 {
        return Err(lang.t("bad.long").to_string());
    }
    let start = from
        .to_zoned(tz.clone())
        .map(|z| z.timestamp())
        .map_err(|e| e.to_string())?;
    let end = to
        .checked_add(jiff::Span::new().days(1))
        .ok()
        .and_then(|d| d.to_zoned(tz.clone()).ok())
        .map(|z| z.timestamp())
        .unwrap_or(Timestamp::MAX);
    Ok((from, to, start, end))
}

async fn missed_page(
    State(s): State<S>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let here = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/missed");
    let a = match authed(&s, &headers, here) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let lang = a.ctx.lang;
    let bad = |msg: String| problem(&a.ctx, StatusCode::BAD_REQUEST, lang.t("bad.request"), &msg);
    let (from, to, start, end) = match period(&q, &s.cfg.hours.timezone, 6, lang) {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    let get = |k: &str| q.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
    let form = pages::MissedForm {
        from: from.to_string(),
        to: to.to_string(),
        lost_at: get("lost_at"),
        did: get("did"),
        agent: get("agent"),
        state: get("state"),
        queue: get("queue"),
        has_queue: false,
    };
    let lost_at = match form.lost_at.as_str() {
        "" => None,
        l => match crate::calls::record::LostAt::parse(l) {
            Some(x) => Some(x),
            None => return bad(format!("lost_at = {:?}", crate::report::text::cell(l, 40))),
        },
    };
    let resolved = match form.state.as_str() {
        "" => None,
        "resolved" => Some(true),
        "unresolved" => Some(false),
        other => {
            return bad(format!(
                "state = {:?}",
                crate::report::text::cell(other, 40)
            ))
        }
    };
    if [&form.did, &form.agent, &form.queue]
        .iter()
        .any(|v| v.chars().count() > 64)
    {
        return bad("did / agent / queue: too long".into());
    }
    let filter = MissedFilter {
        from: start,
        to: end,
        lost_at,
        did: Some(form.did.clone()).filter(|d| !d.is_empty()),
        agent: Some(form.agent.clone()).filter(|d| !d.is_empty()),
        resolved,
        queue: Some(form.queue.clone()).filter(|d| !d.is_empty()),
        limit: MISSED_LIMIT,
    };
    let mut form = form;
    let read = with_store(&s, move |st| {
        let has_queue = st.calls_have_queue()?;
        if filter.queue.is_some() && !has_queue {
            return Ok(None);
        }
        Ok(Some((st.console_missed(&filter)?, has_queue)))
    })
    .await;
    match read {
        Ok(None) => bad(format!(
            "queue = {:?}: this database stores no queue names",
            crate::report::text::cell(&form.queue, 40)
        )),
        Ok(Some(((rows, more), has_queue))) => {
            form.has_queue = has_queue;
            page(StatusCode::OK, pages::missed(&a.ctx, &form, &rows, more))
        }
        Err(e) => problem(
            &a.ctx,
            StatusCode::SERVICE_UNAVAILABLE,
            lang.t("err.db"),
            &e,
        ),
    }
}

async fn customer_page(
    State(s): State<S>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let here = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/missed");
    let a = match authed(&s, &headers, here) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let lang = a.ctx.lang;
    let raw = q.get("number").map(|n| n.trim()).unwrap_or("");
    // A normalised number as the links carry it, or one typed by hand (`+7 916 ...`, `8916...`).
    let number = if !raw.is_empty() && raw.len() <= 20 && raw.bytes().all(|b| b.is_ascii_digit()) {
        Some(raw.to_string())
    } else {
        s.cfg.pbx.numbers.normalize(raw).ok()
    };
    let Some(number) = number else {
        return problem(
            &a.ctx,
            StatusCode::BAD_REQUEST,
            lang.t("bad.request"),
            &format!(
                "{:?} {}",
                crate::report::text::cell(raw, 40),
                lang.t("bad.number")
            ),
        );
    };
    let n = number.clone();
    match with_store(&s, move |st| {
        Ok((st.customer_calls(&n, 500)?, st.customer_attempts(&n, 200)?))
    })
    .await
    {
        Ok((calls, attempts)) => page(
            StatusCode::OK,
            pages::customer(&a.ctx, &number, &calls, &attempts),
        ),
        Err(e) => problem(
            &a.ctx,
            StatusCode::SERVICE_UNAVAILABLE,
            lang.t("err.db"),
            &e,
        ),
    }
}

async fn report_page(
    State(s): State<S>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let here = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/report");
    let a = match authed(&s, &headers, here) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let lang = a.ctx.lang;
    let (from, to, start, end) = match period(&q, &s.cfg.hours.timezone, 6, lang) {
        Ok(p) => p,
        Err(e) => return problem(&a.ctx, StatusCode::BAD_REQUEST, lang.t("bad.request"), &e),
    };
    let cfg = s.cfg.clone();
    let now = Timestamp::now();
    let end = end.min(now.max(start));
    let built = with_store(&s, move |st| {
        // The same model and path as `perezvon report` (the rollup, the working hours, the
        // configured service level, the previous period).
        let settings = crate::report::Settings::from_config(&cfg);
        let r = crate::report::Report::load(st, &settings, start, end)?;
        Ok(crate::report::html::render_in(
            &r,
            &cfg.hours.timezone,
            lang,
        ))
    })
    .await;
    match built {
        Ok(html) => page(
            StatusCode::OK,
            pages::report(&a.ctx, &from.to_string(), &to.to_string(), &html),
        ),
        Err(e) => problem(
            &a.ctx,
            StatusCode::SERVICE_UNAVAILABLE,
            lang.t("err.db"),
            &e,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_only() {
        assert_eq!(local_path("/callbacks?x=1"), Some("/callbacks?x=1"));
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "evil",
            "",
            "/a\nb",
        ] {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cross_site_posts() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8088"));
        assert!(!cross_site(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8088"),
        );
        assert!(!cross_site(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(cross_site(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_site(&h));
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; perezvon_lang=ru; b=2"),
        );
        assert_eq!(cookie(&h, "perezvon_lang"), Some("ru"));
        assert_eq!(cookie(&h, "perezvon_session"), None);
    }
}
