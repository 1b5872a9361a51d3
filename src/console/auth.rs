//! Who is logged in: argon2 password hashes, sessions in an HMAC-signed cookie, CSRF tokens
//! bound to the session, and the login rate limits. The primitives are RustCrypto's (`argon2`,
//! `hmac` + `sha2`, constant-time `verify_slice`); this file only decides what is signed.
//!
//! A session cookie is `v1.<base64url(payload)>.<base64url(HMAC-SHA256(key, payload))>` with
//! the payload `user|issued|expires|nonce|pw`: `pw` is a MAC of the user's password hash, so
//! changing a password (or removing the user from the configuration) ends that user's sessions
//! at the next request, without any server-side session table.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::WebUser;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of a generated key, and the least a `secret_file` must hold.
pub const KEY_LEN: usize = 32;

/// An argon2id hash (the crate's defaults: the OWASP minimum, m=19 MiB, t=2, p=1) with a random
/// salt, as a PHC string.
pub fn hash_password(pw: &str) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| format!("no random numbers: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| format!("salt: {e}"))?;
    let hash = Argon2::default()
        .hash_password(pw.as_bytes(), &salt)
        .map_err(|e| format!("hashing failed: {e}"))?;
    Ok(hash.to_string())
}

/// Whether `pw` matches the PHC string `hash` (the parameters are the hash's own).
pub fn verify_password(hash: &str, pw: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(h) => Argon2::default().verify_password(pw.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// A hash no password matches, verified for unknown user names so that a wrong name costs the
/// same time as a wrong password (no probing for names).
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let mut pw = [0u8; 24];
        let _ = getrandom::getrandom(&mut pw);
        hash_password(&B64.encode(pw)).unwrap_or_default()
    })
}

/// The key that signs sessions and CSRF tokens.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(***)")
    }
}

impl Key {
    pub fn from_bytes(b: &[u8]) -> Result<Key, String> {
        if b.len() < KEY_LEN {
            return Err(format!(
                "the key holds {} bytes; at least {KEY_LEN} are needed (head -c 32 /dev/urandom > FILE)",
                b.len()
            ));
        }
        Ok(Key(b.to_vec()))
    }

    /// A fresh random key (tests, or before it is stored).
    pub fn random() -> Result<Key, String> {
        let mut b = [0u8; KEY_LEN];
        getrandom::getrandom(&mut b).map_err(|e| format!("no random numbers: {e}"))?;
        Ok(Key(b.to_vec()))
    }

    /// Reads the key of `path`, or, when `create` and the file does not exist, writes a new
    /// random one there (mode 0600, never overwriting: two starts racing keep the first).
    pub fn load_or_create(path: &Path, create: bool) -> Result<Key, String> {
        match std::fs::read(path) {
            Ok(b) => Key::from_bytes(&b).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let key = Key::random()?;
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                match opts.open(path) {
                    Ok(mut f) => {
                        use std::io::Write;
                        f.write_all(&key.0)
                            .and_then(|()| f.sync_all())
                            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                        Ok(key)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Key::load_or_create(path, false)
                    }
                    Err(e) => Err(format!("cannot create {}: {e}", path.display())),
                }
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        // HMAC takes a key of any length.
        let mut m = <HmacSha256 as Mac>::new_from_slice(&self.0).expect("HMAC accepts any key");
        for p in parts {
            m.update(p);
            // A separator no part contains, so ("ab","c") and ("a","bc") differ.
            m.update(&[0]);
        }
        m
    }

    fn tag(&self, parts: &[&[u8]]) -> Vec<u8> {
        self.mac(parts).finalize().into_bytes().to_vec()
    }

    fn check(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        self.mac(parts).verify_slice(tag).is_ok()
    }
}

/// A logged-in user's session, as the cookie carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    /// Unix seconds.
    pub issued: i64,
    pub expires: i64,
    /// Random, per login: the CSRF token is derived from it.
    pub nonce: String,
}

/// The cookie's name.
pub const SESSION_COOKIE: &str = "perezvon_session";

/// What binds a session to the user's current password hash.
fn password_tag(key: &Key, u: &WebUser) -> String {
    B64.encode(&key.tag(&[b"pw", u.password_hash.as_bytes()])[..12])
}

impl Session {
    pub fn new(user: &str, now: i64, ttl: Duration) -> Result<Session, String> {
        let mut n = [0u8; 16];
        getrandom::getrandom(&mut n).map_err(|e| format!("no random numbers: {e}"))?;
        Ok(Session {
            user: user.to_string(),
            issued: now,
            expires: now.saturating_add(ttl.as_secs() as i64),
            nonce: B64.encode(n),
        })
    }

    /// The cookie value for `user` (whose password hash the session is bound to).
    pub fn encode(&self, key: &Key, user: &WebUser) -> String {
        let payload = format!(
            "{}|{}|{}|{}|{}",
            self.user,
            self.issued,
            self.expires,
            self.nonce,
            password_tag(key, user)
        );
        let tag = key.tag(&[b"session", payload.as_bytes()]);
        format!("v1.{}.{}", B64.encode(payload), B64.encode(tag))
    }

    /// The session of a cookie value, if the signature holds, it has not expired at `now`, and
    /// its user is still configured with the same password. Anything else is `None`: a forged,
    /// truncated or stale cookie is simply no session.
    pub fn decode<'u>(
        value: &str,
        key: &Key,
        users: &'u [WebUser],
        now: i64,
    ) -> Option<(Session, &'u WebUser)> {
        // Cookies are small; a huge value is not ours.
        if value.len() > 1024 {
            return None;
        }
        let mut parts = value.split('.');
        let (v, p, t) = (parts.next()?, parts.next()?, parts.next()?);
        if v != "v1" || parts.next().is_some() {
            return None;
        }
        let payload = B64.decode(p).ok()?;
        let tag = B64.decode(t).ok()?;
        if !key.check(&[b"session", &payload], &tag) {
            return None;
        }
        let payload = String::from_utf8(payload).ok()?;
        let f: Vec<&str> = payload.split('|').collect();
        let [user, issued, expires, nonce, pw] = f.as_slice() else {
            return None;
        };
        let (issued, expires) = (issued.parse::<i64>().ok()?, expires.parse::<i64>().ok()?);
        if now >= expires || issued > now + 300 {
            return None;
        }
        let u = users.iter().find(|u| u.name == *user)?;
        if password_tag(key, u) != *pw {
            return None;
        }
        Some((
            Session {
                user: user.to_string(),
                issued,
                expires,
                nonce: nonce.to_string(),
            },
            u,
        ))
    }

    /// The CSRF token of this session: every form carries it, every POST checks it.
    pub fn csrf(&self, key: &Key) -> String {
        B64.encode(key.tag(&[b"csrf", self.nonce.as_bytes()]))
    }

    pub fn csrf_ok(&self, key: &Key, token: &str) -> bool {
        match B64.decode(token) {
            Ok(t) => key.check(&[b"csrf", self.nonce.as_bytes()], &t),
            Err(_) => false,
        }
    }
}

/// Failed logins allowed per client address within [`WINDOW`].
pub const PER_IP: usize = 20;
/// Failed logins allowed per user name within [`WINDOW`].
pub const PER_USER: usize = 5;
/// How long a failure counts.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Addresses and names tracked at once: a flood of made-up names cannot grow memory.
const MAX_KEYS: usize = 10_000;

/// Login rate limits: at most [`PER_IP`] failures per address and [`PER_USER`] per user name in
/// a sliding [`WINDOW`]. While a limit is reached every attempt is refused before the password
/// is looked at, so guessing goes no faster, whatever the attacker's luck.
#[derive(Debug, Default)]
pub struct Limiter {
    inner: Mutex<LimiterInner>,
}

#[derive(Debug, Default)]
struct LimiterInner {
    ip: HashMap<IpAddr, VecDeque<Instant>>,
    user: HashMap<String, VecDeque<Instant>>,
}

fn prune(q: &mut VecDeque<Instant>, now: Instant) {
    while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
        q.pop_front();
    }
}

fn wait_of(q: Option<&mut VecDeque<Instant>>, limit: usize, now: Instant) -> Option<Duration> {
    let q = q?;
    prune(q, now);
    if q.len() < limit {
        return None;
    }
    // Free again when the oldest failure that keeps it at the limit leaves the window.
    let t = q[q.len() - limit];
    Some(
        WINDOW
            .saturating_sub(now.duration_since(t))
            .max(Duration::from_secs(1)),
    )
}

fn push<K: std::hash::Hash + Eq + Clone>(
    m: &mut HashMap<K, VecDeque<Instant>>,
    k: &K,
    limit: usize,
    now: Instant,
) {
    if !m.contains_key(k) && m.len() >= MAX_KEYS {
        m.retain(|_, q| {
            prune(q, now);
            !q.is_empty()
        });
        if m.len() >= MAX_KEYS {
            // Still full of live entries: forget one rather than grow.
            if let Some(victim) = m.keys().next().cloned() {
                m.remove(&victim);
            }
        }
    }
    let q = m.entry(k.clone()).or_default();
    q.push_back(now);
    while q.len() > limit {
        q.pop_front();
    }
}

/// A user name as the limiter keys it (what was typed, bounded).
fn user_key(name: &str) -> String {
    name.chars().take(64).collect::<String>().to_lowercase()
}

impl Limiter {
    /// `Some(wait)` when this address or this name may not try now.
    pub fn blocked(&self, ip: IpAddr, user: &str, now: Instant) -> Option<Duration> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let a = wait_of(g.ip.get_mut(&ip), PER_IP, now);
        let b = wait_of(g.user.get_mut(&user_key(user)), PER_USER, now);
        a.max(b)
    }

    pub fn failed(&self, ip: IpAddr, user: &str, now: Instant) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        push(&mut g.ip, &ip, PER_IP, now);
        push(&mut g.user, &user_key(user), PER_USER, now);
    }

    /// A successful login clears its name's failures (not the address's: one right password
    /// must not reset a guessing run over other names).
    pub fn succeeded(&self, user: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.user.remove(&user_key(user));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WebRole;

    fn user(name: &str, hash: &str) -> WebUser {
        WebUser {
            name: name.into(),
            password_hash: hash.into(),
            role: WebRole::Supervisor,
        }
    }

    #[test]
    fn hashes_verify_and_wrong_passwords_do_not() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "correct horse "));
        assert!(!verify_password("not a hash", "x"));
        assert!(!verify_password(decoy_hash(), ""));
    }

    #[test]
    fn session_round_trip_and_every_tampering_fails() {
        let key = Key::random().unwrap();
        let users = vec![user(
            "olga",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA",
        )];
        let s = Session::new("olga", 1_000, Duration::from_secs(3600)).unwrap();
        let c = s.encode(&key, &users[0]);
        let (back, u) = Session::decode(&c, &key, &users, 1_001).unwrap();
        assert_eq!(back, s);
        assert_eq!(u.name, "olga");
        // Expired.
        assert!(Session::decode(&c, &key, &users, 1_000 + 3600).is_none());
        // Another key.
        assert!(Session::decode(&c, &Key::random().unwrap(), &users, 1_001).is_none());
        // One character changed anywhere.
        for i in 0..c.len() {
            let mut b = c.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            if let Ok(t) = String::from_utf8(b) {
                if t != c {
                    assert!(Session::decode(&t, &key, &users, 1_001).is_none(), "{t}");
                }
            }
        }
        // The user's password changed, or the user is gone.
        let changed = vec![user(
            "olga",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$b3RoZXI",
        )];
        assert!(Session::decode(&c, &key, &changed, 1_001).is_none());
        assert!(Session::decode(&c, &key, &[], 1_001).is_none());
        for junk in ["", "v1", "v1..", "v2.a.b", "v1.%%%.$$$", &"x".repeat(5000)] {
            assert!(Session::decode(junk, &key, &users, 1_001).is_none());
        }
    }

    #[test]
    fn csrf_is_bound_to_the_session() {
        let key = Key::random().unwrap();
        let a = Session::new("olga", 0, Duration::from_secs(60)).unwrap();
        let b = Session::new("olga", 0, Duration::from_secs(60)).unwrap();
        assert!(a.csrf_ok(&key, &a.csrf(&key)));
        assert!(!b.csrf_ok(&key, &a.csrf(&key)));
        assert!(!a.csrf_ok(&key, ""));
        assert!(!a.csrf_ok(&key, "not base64 !"));
    }

    #[test]
    fn limiter_blocks_after_the_limit_and_forgets_after_the_window() {
        let l = Limiter::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..PER_USER {
            assert!(l.blocked(ip, "olga", t0).is_none(), "attempt {i}");
            l.failed(ip, "olga", t0);
        }
        let wait = l.blocked(ip, "Olga", t0).unwrap();
        assert!(wait <= WINDOW && wait > WINDOW - Duration::from_secs(2));
        // Another name from the same address is still allowed (the address limit is higher).
        assert!(l.blocked(ip, "ivan", t0).is_none());
        // After the window.
        assert!(l.blocked(ip, "olga", t0 + WINDOW).is_none());
        // The address limit.
        let l = Limiter::default();
        for i in 0..PER_IP {
            l.failed(ip, &format!("u{i}"), t0);
        }
        assert!(l.blocked(ip, "new", t0).is_some());
        assert!(l.blocked("192.0.2.2".parse().unwrap(), "new", t0).is_none());
    }

    #[test]
    fn key_file_is_created_once_and_short_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("console.key");
        let a = Key::load_or_create(&p, true).unwrap();
        let b = Key::load_or_create(&p, true).unwrap();
        assert_eq!(a.0, b.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        std::fs::write(&p, b"short").unwrap();
        assert!(Key::load_or_create(&p, true)
            .unwrap_err()
            .contains("at least 32"));
        assert!(Key::load_or_create(&dir.path().join("none"), false).is_err());
    }
}
