//! The web console over real HTTP (axum on 127.0.0.1:0, reqwest as the client) against a
//! database in a temporary directory: login, redirects, sessions, CSRF, rate limits, roles,
//! the actions and what they change in the store, bad input. The browser test is
//! `console_browser.rs`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use perezvon::callback::planner::{Task, TaskState};
use perezvon::calls::record::{LostAt, Timestamp};
use perezvon::config::Config;
use perezvon::console::{self, auth};
use perezvon::metrics::Metrics;
use perezvon::store::Store;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

const OLGA: &str = "olga-secret-1";
const IVAN: &str = "ivan-secret-2";

fn hashes() -> &'static (String, String) {
    static H: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    H.get_or_init(|| {
        (
            auth::hash_password(OLGA).unwrap(),
            auth::hash_password(IVAN).unwrap(),
        )
    })
}

fn config(extra: &str) -> Config {
    let (o, i) = hashes();
    Config::from_toml(&format!(
        r#"
[pbx]
country_code = "7"

[callback]
allow = ["^7\\d{{10}}$"]

[hours]
timezone = "Europe/Moscow"

[web]
listen = "127.0.0.1:0"
{extra}

[[web.users]]
name = "olga"
password_hash = "{o}"
role = "supervisor"

[[web.users]]
name = "ivan"
password_hash = "{i}"
role = "viewer"
"#
    ))
    .unwrap()
}

struct Site {
    base: String,
    http: reqwest::Client,
    db: std::path::PathBuf,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Site {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn task(number: &str, at: Timestamp) -> Task {
    Task {
        id: 0,
        number: number.into(),
        state: TaskState::Pending,
        server: "lab".into(),
        missed_count: 2,
        attempts: 0,
        attempt_budget: 3,
        lost_at: Some(LostAt::Queue),
        first_missed_at: at,
        last_missed_at: at,
        next_attempt_at: at + jiff::SignedDuration::from_hours(2),
        give_up_at: at + jiff::SignedDuration::from_hours(48),
        last_attempt_at: None,
        last_outcome: None,
        use_fallback: false,
        routing: Default::default(),
    }
}

/// A console over a database with one miss of +79161234567 (and its task) and a task for a
/// number the toll-fraud guard refuses.
async fn site_with(extra: &str) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let now = Timestamp::now();
    {
        let st = Store::open(&db).unwrap();
        let at = now - jiff::SignedDuration::from_mins(30);
        st.insert_call(&support::inbound_miss("1764000000.1", at, 42.0))
            .unwrap();
        st.create_task(&task("79161234567", at)).unwrap();
        st.create_task(&task("88001234567", at)).unwrap();
    }
    let cfg = Arc::new(config(extra));
    let stop = CancellationToken::new();
    let key = console::load_key(&cfg, &db).unwrap();
    let metrics = Arc::new(Metrics::new(["lab"]));
    let app = console::router(cfg, key, db.clone(), metrics, Vec::new(), stop.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(perezvon::web::serve_listener_with_peers(
        listener,
        app,
        stop.clone(),
    ));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    Site {
        base,
        http,
        db,
        stop,
        _dir: dir,
    }
}

async fn site() -> Site {
    site_with("").await
}

fn location(h: &HeaderMap) -> String {
    h.get(LOCATION)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The `name=value` of the session cookie a response sets.
fn session_cookie(h: &HeaderMap) -> Option<String> {
    h.get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("perezvon_session="))
}

impl Site {
    fn url(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }

    async fn login(&self, user: &str, password: &str) -> reqwest::Response {
        self.http
            .post(self.url("/login"))
            .form(&[("user", user), ("password", password)])
            .send()
            .await
            .unwrap()
    }

    /// Logs in and returns the `Cookie` header value.
    async fn session(&self, user: &str, password: &str) -> String {
        let r = self.login(user, password).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let c = session_cookie(r.headers()).expect("a session cookie");
        c.split(';').next().unwrap().to_string()
    }

    async fn get(&self, p: &str, cookie: &str) -> reqwest::Response {
        self.http
            .get(self.url(p))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
    }

    async fn text(&self, p: &str, cookie: &str) -> (StatusCode, String) {
        let r = self.get(p, cookie).await;
        (r.status(), r.text().await.unwrap())
    }

    async fn post(&self, p: &str, cookie: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.url(p))
            .header("cookie", cookie)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// The CSRF token of the forms of a page.
    async fn csrf(&self, cookie: &str) -> String {
        let (_, body) = self.text("/now", cookie).await;
        let at = body
            .find(r#"name="csrf" value=""#)
            .expect("a form with a token")
            + 19;
        body[at..at + body[at..].find('"').unwrap()].to_string()
    }

    fn task_state(&self, id: i64) -> (TaskState, Timestamp) {
        let st = Store::open(&self.db).unwrap();
        let t = st.task(id).unwrap().unwrap().task;
        (t.state, t.next_attempt_at)
    }
}

#[tokio::test]
async fn every_page_without_a_session_redirects_to_login() {
    let s = site().await;
    for p in [
        "/",
        "/now",
        "/events",
        "/callbacks",
        "/missed?lost_at=queue",
        "/customer?number=79161234567",
        "/report?from=2026-12-01&to=2026-12-07",
        "/no/such/page",
    ] {
        let r = s.get(p, "").await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{p}");
        let to = location(r.headers());
        assert!(
            to.starts_with("/login") || (p == "/" && to == "/now"),
            "{p} -> {to}"
        );
    }
    // A forged or stale cookie is no session either.
    for c in [
        "perezvon_session=v1.b2xnYXwxfDk5OTk5OTk5OTl8eHx5.AAAA",
        "perezvon_session=garbage",
        "perezvon_session=",
    ] {
        let r = s.get("/callbacks", c).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{c}");
    }
    // Actions too, and nothing changes.
    let r = s.post("/callbacks/1/cancel", "", &[("csrf", "x")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(r.headers()).starts_with("/login"));
    assert_eq!(s.task_state(1).0, TaskState::Pending);
    // What the login page needs is public.
    for p in ["/login", "/static/console.css", "/static/console.js"] {
        assert_eq!(s.get(p, "").await.status(), StatusCode::OK, "{p}");
    }
}

#[tokio::test]
async fn login_sets_a_hardened_cookie_and_redirects() {
    let s = site().await;
    let r = s.login("olga", OLGA).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(r.headers()), "/now");
    let c = session_cookie(r.headers()).unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(c.contains(attr), "{attr} missing in {c}");
    }
    assert!(!c.contains("Secure"), "no Secure without https: {c}");
    let cookie = c.split(';').next().unwrap();
    // The open tasks, each number in E.164 form.
    let r = s.get("/callbacks", cookie).await;
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    let body = r.text().await.unwrap();
    assert!(body.contains("+79161234567"), "{body}");
    assert!(body.contains("+88001234567"));
    assert!(body.contains(r#"data-action="cancel""#));
    // Security headers on every page.
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline'; script") && !csp.contains("script-src 'self' 'unsafe"));
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "same-origin");
    assert_eq!(h["cache-control"], "no-store");
    assert!(h.get("strict-transport-security").is_none());
    // No inline script in any page.
    for p in [
        "/now",
        "/callbacks",
        "/missed",
        "/report",
        "/customer?number=79161234567",
    ] {
        let (st, body) = s.text(p, cookie).await;
        assert_eq!(st, StatusCode::OK, "{p}");
        for (i, _) in body.match_indices("<script") {
            assert!(
                body[i..].starts_with(r#"<script src="/static/"#),
                "{p}: inline script"
            );
        }
    }
    // `next` brings the user back, but never to another site.
    let r = s
        .http
        .post(s.url("/login"))
        .form(&[("user", "olga"), ("password", OLGA), ("next", "/missed")])
        .send()
        .await
        .unwrap();
    assert_eq!(location(r.headers()), "/missed");
    let r = s
        .http
        .post(s.url("/login"))
        .form(&[
            ("user", "olga"),
            ("password", OLGA),
            ("next", "//evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(location(r.headers()), "/now");
}

#[tokio::test]
async fn behind_https_cookies_are_secure_and_hsts_is_sent() {
    let s = site_with("https = true").await;
    let r = s.login("olga", OLGA).await;
    assert!(session_cookie(r.headers()).unwrap().contains("; Secure"));
    assert!(r.headers().get("strict-transport-security").is_some());
}

#[tokio::test]
async fn wrong_passwords_and_unknown_users_get_no_session() {
    let s = site().await;
    for (u, p) in [
        ("olga", "wrong-password"),
        ("olga", ""),
        ("nobody", OLGA),
        ("", ""),
        ("OLGA", OLGA),
    ] {
        let r = s.login(u, p).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{u}/{p}");
        assert!(session_cookie(r.headers()).is_none());
        let body = r.text().await.unwrap();
        assert!(body.contains("Wrong user name or password"));
    }
    // A form without the fields, or not a form at all: a clear refusal, no panic.
    let r = s.http.post(s.url("/login")).send().await.unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let r = s
        .http
        .post(s.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![0xff, 0xfe, b'=', 0x80])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let r = s
        .http
        .post(s.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'a'; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn login_is_rate_limited_per_user_then_per_address() {
    let s = site().await;
    for _ in 0..auth::PER_USER {
        assert_eq!(
            s.login("olga", "guess").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Even the right password is refused now: guessing goes no faster with luck.
    let r = s.login("olga", OLGA).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(session_cookie(r.headers()).is_none());
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 0 && wait <= auth::WINDOW.as_secs());
    // Another user from the same address still logs in.
    assert_eq!(s.login("ivan", IVAN).await.status(), StatusCode::SEE_OTHER);
    // Guessing over many names runs into the address's limit.
    for i in 0..auth::PER_IP {
        let _ = s.login(&format!("name{i}"), "guess").await;
    }
    assert_eq!(
        s.login("ivan", IVAN).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn actions_need_the_csrf_token_of_the_session() {
    let s = site().await;
    let cookie = s.session("olga", OLGA).await;
    let other = s.session("olga", OLGA).await;
    let other_token = s.csrf(&other).await;
    for form in [
        vec![],
        vec![("csrf", "")],
        vec![("csrf", "forged")],
        vec![("csrf", other_token.as_str())],
    ] {
        let r = s.post("/callbacks/1/cancel", &cookie, &form).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{form:?}");
        assert_eq!(s.task_state(1).0, TaskState::Pending);
    }
    // The right token from another site.
    let token = s.csrf(&cookie).await;
    let r = s
        .http
        .post(s.url("/callbacks/1/cancel"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(s.task_state(1).0, TaskState::Pending);
    // The right token from here.
    let r = s
        .http
        .post(s.url("/callbacks/1/cancel"))
        .header("cookie", &cookie)
        .header("origin", &s.base)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(r.headers()), "/callbacks?msg=msg.cancelled");
    assert_eq!(s.task_state(1).0, TaskState::Cancelled);
    let (_, page) = s.text("/callbacks?msg=msg.cancelled", &cookie).await;
    assert!(page.contains("Task cancelled"));
    // Logout needs it too, and then the cookie is cleared.
    let r = s.post("/logout", &cookie, &[("csrf", "forged")]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = s
        .post("/logout", &cookie, &[("csrf", token.as_str())])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(session_cookie(r.headers()).unwrap().contains("Max-Age=0"));
    // The old cookie is dead even if someone kept a copy; another session of the user lives.
    let r = s.get("/callbacks", &cookie).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(s.get("/callbacks", &other).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_viewer_looks_but_cannot_act() {
    let s = site().await;
    let cookie = s.session("ivan", IVAN).await;
    let (st, body) = s.text("/callbacks", &cookie).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains("+79161234567"));
    assert!(
        !body.contains("data-action="),
        "no action buttons for a viewer"
    );
    let token = s.csrf(&cookie).await;
    for action in ["cancel", "call", "retry"] {
        let r = s
            .post(
                &format!("/callbacks/1/{action}"),
                &cookie,
                &[("csrf", &token)],
            )
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{action}");
        assert!(r.text().await.unwrap().contains("Only a supervisor"));
    }
    assert_eq!(s.task_state(1).0, TaskState::Pending);
}

#[tokio::test]
async fn call_now_and_retry_go_through_the_store_and_the_guard() {
    let s = site().await;
    let cookie = s.session("olga", OLGA).await;
    let token = s.csrf(&cookie).await;
    let before = s.task_state(1).1;
    let r = s
        .post("/callbacks/1/call", &cookie, &[("csrf", &token)])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = location(r.headers());
    assert!(
        to == "/callbacks?msg=msg.call_now"
            || to.starts_with("/callbacks?msg=msg.call_now_closed_hours&at="),
        "{to}"
    );
    let (state, next) = s.task_state(1);
    assert_eq!(state, TaskState::Pending);
    assert!(next < before && next <= Timestamp::now(), "due now");
    // The guard (allow = ^7\d{10}$) refuses 88001234567: nothing changes.
    let before = s.task_state(2);
    let r = s
        .post("/callbacks/2/call", &cookie, &[("csrf", &token)])
        .await;
    assert_eq!(location(r.headers()), "/callbacks?msg=msg.guard");
    assert_eq!(s.task_state(2), before);
    let (_, page) = s.text("/callbacks?msg=msg.guard", &cookie).await;
    assert!(page.contains("toll-fraud guard"));
    // Retry of a closed task: pending again.
    let r = s
        .post("/callbacks/1/cancel", &cookie, &[("csrf", &token)])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(s.task_state(1).0, TaskState::Cancelled);
    let r = s
        .post("/callbacks/1/retry", &cookie, &[("csrf", &token)])
        .await;
    assert!(
        location(r.headers()).starts_with("/callbacks?msg=msg."),
        "{:?}",
        r.headers()
    );
    assert_eq!(s.task_state(1).0, TaskState::Pending);
    // Cancelling twice: said, not an error page.
    s.post("/callbacks/1/cancel", &cookie, &[("csrf", &token)])
        .await;
    let r = s
        .post("/callbacks/1/cancel", &cookie, &[("csrf", &token)])
        .await;
    assert_eq!(location(r.headers()), "/callbacks?msg=msg.not_open");
    // No such task, a bad id, an unknown action.
    let r = s
        .post("/callbacks/999/cancel", &cookie, &[("csrf", &token)])
        .await;
    assert_eq!(location(r.headers()), "/callbacks?msg=msg.no_task");
    let r = s
        .post("/callbacks/abc/cancel", &cookie, &[("csrf", &token)])
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = s
        .post("/callbacks/1/explode", &cookie, &[("csrf", &token)])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A flash key that is not ours shows nothing.
    let (_, page) = s
        .text("/callbacks?msg=%3Cscript%3Ealert(1)%3C/script%3E", &cookie)
        .await;
    assert!(!page.contains("alert(1)") && !page.contains(r#"id="flash""#));
}

#[tokio::test]
async fn missed_calls_filters_history_and_report() {
    let s = site().await;
    let cookie = s.session("olga", OLGA).await;
    let (st, body) = s.text("/missed", &cookie).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains("+79161234567") && body.contains("74951110001"));
    assert!(body.contains("/customer?number=79161234567"));
    for (q, shown) in [
        ("lost_at=queue", true),
        ("lost_at=ivr", false),
        ("did=74951110001", true),
        ("did=74951119999", false),
        ("state=unresolved", true),
        ("state=resolved", false),
        ("from=2020-01-01&to=2020-01-31", false),
    ] {
        let (st, body) = s.text(&format!("/missed?{q}"), &cookie).await;
        assert_eq!(st, StatusCode::OK, "{q}");
        assert_eq!(body.contains("+79161234567"), shown, "{q}");
    }
    // A customer's history.
    let (st, body) = s.text("/customer?number=79161234567", &cookie).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        body.contains("+79161234567") && body.contains("42 s"),
        "{body}"
    );
    let (st, _) = s
        .text("/customer?number=%2B7%20916%20123-45-67", &cookie)
        .await;
    assert_eq!(st, StatusCode::OK);
    // The report of a period.
    let (st, body) = s
        .text("/report?from=2026-12-01&to=2026-12-07", &cookie)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        body.contains(r#"id="report""#) && body.contains("2026-12-01 00:00"),
        "{body}"
    );
    assert!(body.contains(r#"value="2026-12-07""#));
    let (st, body) = s.text("/report", &cookie).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains("inbound calls"));
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_page() {
    let s = site().await;
    let cookie = s.session("olga", OLGA).await;
    for (p, says) in [
        ("/report?from=yesterday&to=2026-12-07", "is not a date"),
        (
            "/report?from=2026-12-08&to=2026-12-01",
            "ends before it starts",
        ),
        ("/report?from=2026-02-30", "is not a date"),
        (
            "/report?from=1900-01-01&to=2026-01-01",
            "longer than 10 years",
        ),
        ("/missed?lost_at=moon", "lost_at"),
        ("/missed?state=maybe", "state"),
        ("/missed?from=%FF%FE", "is not a date"),
        ("/customer?number=abc", "is not a phone number"),
        ("/customer", "is not a phone number"),
    ] {
        let (st, body) = s.text(p, &cookie).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{p}");
        assert!(body.contains(says), "{p}: {body}");
    }
    // The calls table stores each call's queue: the queue filter is offered and works.
    let (st, body) = s.text("/missed?queue=sales", &cookie).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, _) = s.text("/no/such/page", &cookie).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn russian_from_accept_language_and_the_switch() {
    let s = site().await;
    let cookie = s.session("olga", OLGA).await;
    let r = s
        .http
        .get(s.url("/callbacks"))
        .header("cookie", &cookie)
        .header("accept-language", "ru-RU,ru;q=0.9,en;q=0.5")
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(body.contains("Перезвонить") && body.contains(r#"<html lang="ru">"#));
    // The switch sets a cookie and comes back, to this site only.
    let r = s.get("/lang?set=en&back=/callbacks", "").await;
    assert_eq!(location(r.headers()), "/callbacks");
    let c = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(c.starts_with("perezvon_lang=en"));
    let r = s.get("/lang?set=ru&back=//evil.example", "").await;
    assert_eq!(location(r.headers()), "/now");
    let both = format!("{cookie}; perezvon_lang=en");
    let r = s
        .http
        .get(s.url("/callbacks"))
        .header("cookie", &both)
        .header("accept-language", "ru")
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("To call back"));
}

#[tokio::test]
async fn report_page_in_russian() {
    let s = site().await;
    let cookie = s.session("olga", OLGA).await;
    let ru = format!("{cookie}; perezvon_lang=ru");
    let (st, body) = s.text("/report?from=2026-12-01&to=2026-12-07", &ru).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains(r#"<html lang="ru">"#) && body.contains(r#"id="report""#));
    assert!(
        body.contains("<h1>Пропущенные звонки</h1>")
            && body.contains("Звонки по часам")
            && body.contains("уровень обслуживания"),
        "{body}"
    );
    assert!(
        !body.contains("Calls by hour of day") && !body.contains("inbound calls"),
        "{body}"
    );
    // Accept-Language alone does it too.
    let r = s
        .http
        .get(s.url("/report?from=2026-12-01&to=2026-12-07"))
        .header("cookie", &cookie)
        .header("accept-language", "ru-RU,ru;q=0.9")
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("Звонки по часам"));
}

#[tokio::test]
async fn events_stream_the_now_page() {
    let s = site().await;
    let cookie = s.session("ivan", IVAN).await;
    let mut r = s.get("/events", &cookie).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut got = String::new();
    while !got.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(30), r.chunk())
            .await
            .expect("an event within 30 s")
            .unwrap()
            .expect("stream open");
        got.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(got.starts_with("event: now\n"), "{got}");
    assert!(
        got.contains("+79161234567"),
        "today's miss in the feed: {got}"
    );
    // Shutdown ends the stream (a graceful stop does not wait for open pages forever).
    s.stop.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = r.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the event stream ends at shutdown");
}

#[test]
fn web_config_errors_name_their_key() {
    let (o, _) = hashes();
    let cases = [
        ("[web]\nlisten = \"127.0.0.1:8088\"\n", "web.users"),
        ("[web]\nlisten = \"localhost:x\"\n", "web.listen"),
        ("[web]\nsession_ttl = \"10s\"\n", "web.session_ttl"),
        (
            "[[web.users]]\nname = \"olga\"\npassword_hash = \"plain\"\n",
            "web.users[0].password_hash",
        ),
        ("[[web.users]]\nname = \"olga\"\n", "web.users[0].password_hash"),
        (
            &format!("[[web.users]]\nname = \"olga\"\npassword_hash = \"{o}\"\nrole = \"admin\"\n"),
            "web.users[0].role",
        ),
        (
            &format!("[[web.users]]\nname = \"ol ga\"\npassword_hash = \"{o}\"\n"),
            "web.users[0].name",
        ),
        (
            &format!("[[web.users]]\nname = \"olga\"\npassword_hash = \"{o}\"\n[[web.users]]\nname = \"olga\"\npassword_hash = \"{o}\"\n"),
            "web.users[1].name",
        ),
        ("[web]\nlisen = \"127.0.0.1:8088\"\n", "web.lisen"),
    ];
    for (text, key) in cases {
        let e = Config::from_toml(text).expect_err(text);
        assert!(
            e.problems.iter().any(|p| p.key.starts_with(key)),
            "{text}: {e}"
        );
    }
    // The key file is read at load.
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.key");
    std::fs::write(&short, b"0123456789").unwrap();
    for (path, says) in [
        (dir.path().join("missing.key"), "cannot read"),
        (short, "needs at least 32"),
    ] {
        let e = Config::from_toml(&format!(
            "[web]\nsecret_file = {:?}\n",
            path.display().to_string()
        ))
        .unwrap_err();
        assert!(
            e.problems
                .iter()
                .any(|p| p.key == "web.secret_file" && p.message.contains(says)),
            "{e}"
        );
    }
    let good = dir.path().join("good.key");
    std::fs::write(&good, [7u8; 32]).unwrap();
    Config::from_toml(&format!(
        "[web]\nsecret_file = {:?}\n",
        good.display().to_string()
    ))
    .unwrap();
    // Off by default; a role defaults to viewer.
    let c = Config::from_toml("").unwrap();
    assert!(c.web.listen.is_none() && c.web.users.is_empty());
    let c = Config::from_toml(&format!(
        "[web]\nlisten = \"0.0.0.0:8088\"\n[[web.users]]\nname = \"olga\"\npassword_hash = \"{o}\"\n"
    ))
    .unwrap();
    assert_eq!(c.web.users[0].role, perezvon::config::WebRole::Viewer);
    assert!(
        c.warnings.iter().any(|w| w.key == "web.listen"),
        "plain HTTP beyond this machine"
    );
    assert!(
        !format!("{:?}", c.web).contains("argon2"),
        "the hash stays out of Debug"
    );
}

#[test]
fn passwd_prints_a_hash_that_verifies() {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_perezvon"))
        .arg("passwd")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse battery\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hash = String::from_utf8(out.stdout).unwrap();
    let hash = hash.trim();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(auth::verify_password(hash, "correct horse battery"));
    // It is accepted by the configuration as it is.
    Config::from_toml(&format!(
        "[[web.users]]\nname = \"olga\"\npassword_hash = \"{hash}\"\nrole = \"supervisor\"\n"
    ))
    .unwrap();
    // A short password: hashed, with a warning; no password at all: exit 2 and why.
    for (input, code, says) in [
        (&b"short"[..], 0, "shorter than 8"),
        (&b""[..], 2, "no password"),
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_perezvon"))
            .arg("passwd")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(code));
        assert!(String::from_utf8_lossy(&out.stderr).contains(says));
        assert_eq!(out.stdout.starts_with(b"$argon2id$"), code == 0);
    }
}

#[tokio::test]
async fn text_from_outside_is_escaped_everywhere() {
    let s = site().await;
    {
        let st = Store::open(&s.db).unwrap();
        let at = Timestamp::now() - jiff::SignedDuration::from_mins(10);
        st.insert_call(&perezvon::calls::record::CallRecord {
            caller: Some("<script>alert(1)</script>".into()),
            caller_normalized: None,
            callee: Some("\"><img src=x onerror=alert(2)>".into()),
            agent: Some("<b>201</b>".into()),
            ..support::inbound_miss("1764000000.9", at, 12.0)
        })
        .unwrap();
    }
    let cookie = s.session("olga", OLGA).await;
    for p in ["/missed", "/now", "/missed?did=%22%3E%3Cimg%20src%3Dx%3E"] {
        let (st, body) = s.text(p, &cookie).await;
        assert_eq!(st, StatusCode::OK, "{p}");
        assert!(!body.contains("<script>alert"), "{p}");
        assert!(!body.contains("<img src=x"), "{p}");
        assert!(!body.contains("<b>201</b>"), "{p}");
    }
    let (_, body) = s.text("/missed", &cookie).await;
    assert!(body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}
