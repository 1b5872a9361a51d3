//! `[web]`: the console.

use super::*;

// ---------------------------------------------------------------------------------------------
// [web]: the console.
// ---------------------------------------------------------------------------------------------

/// A `[[web.users]]` name: what a person types at the login form.
fn valid_user_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars().count() <= 64
        && n.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

pub(super) fn web(v: &mut V, raw: &RawWeb) -> WebConfig {
    let listen = raw
        .listen
        .as_deref()
        .and_then(|s| match s.parse::<std::net::SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                v.err(
                    "web.listen",
                    format!("{s:?} is not host:port"),
                    Some("e.g. \"127.0.0.1:8088\""),
                );
                None
            }
        });
    let session_ttl = v.duration("web.session_ttl", &raw.session_ttl, "12h");
    if !(Duration::from_secs(60)..=Duration::from_secs(30 * 86_400)).contains(&session_ttl) {
        v.err(
            "web.session_ttl",
            "must be between 1 minute and 30 days",
            Some("e.g. \"12h\" (a working day)"),
        );
    }
    let secret_file = raw.secret_file.as_ref().map(|p| v.resolve_path(p));
    if let Some(p) = &secret_file {
        // Read at load, so a wrong path is a configuration error, not a console that is
        // silently off after a restart.
        match std::fs::read(p) {
            Ok(b) if b.len() < 32 => v.err(
                "web.secret_file",
                format!("{} holds {} bytes; the key needs at least 32", p.display(), b.len()),
                Some("head -c 32 /dev/urandom > FILE; chmod 600 FILE"),
            ),
            Ok(_) => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    if std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o004 != 0) {
                        v.warn(
                            "web.secret_file",
                            format!("{} is world-readable: anyone who reads it can forge a console session", p.display()),
                            Some("chmod 600 it (owned by the perezvon user)"),
                        );
                    }
                }
            }
            Err(e) => v.err(
                "web.secret_file",
                format!("cannot read {}: {e}", p.display()),
                Some("remove the key to use console.key beside the database, created at the first start"),
            ),
        }
    }
    let mut users: Vec<WebUser> = Vec::new();
    for (i, u) in raw.users.iter().flatten().enumerate() {
        let key = |k: &str| format!("web.users[{i}].{k}");
        let name = u.name.clone().unwrap_or_default();
        if name.is_empty() {
            v.err(
                key("name"),
                "missing",
                Some("the login name, e.g. \"olga\""),
            );
        } else if !valid_user_name(&name) {
            v.err(
                key("name"),
                format!("{name:?} is not a login name"),
                Some("up to 64 letters, digits and . _ - @"),
            );
        } else if users.iter().any(|x| x.name == name) {
            v.err(
                key("name"),
                format!("duplicate user {name:?}"),
                Some("every [[web.users]] needs its own name"),
            );
        }
        let hash = u.password_hash.clone().unwrap_or_default();
        if hash.is_empty() {
            v.err(
                key("password_hash"),
                "missing",
                Some("print one with: echo -n PASSWORD | perezvon passwd"),
            );
        } else {
            match argon2::PasswordHash::new(&hash) {
                Ok(h) if h.algorithm.as_str().starts_with("argon2") && h.hash.is_some() => {}
                _ => v.err(
                    key("password_hash"),
                    "not an argon2 password hash",
                    Some("it starts with $argon2id$; print one with: echo -n PASSWORD | perezvon passwd"),
                ),
            }
        }
        let role = match u.role.as_deref().unwrap_or("viewer") {
            "viewer" => WebRole::Viewer,
            "supervisor" => WebRole::Supervisor,
            other => {
                v.err(
                    key("role"),
                    format!("unknown role {other:?}"),
                    Some("viewer (looks) or supervisor (also calls back, cancels, retries)"),
                );
                WebRole::Viewer
            }
        };
        users.push(WebUser {
            name,
            password_hash: hash,
            role,
        });
    }
    if listen.is_some() && users.is_empty() {
        v.err(
            "web.users",
            "the console is on (web.listen) but has no users",
            Some("add a [[web.users]] with name, password_hash and role"),
        );
    }
    if let Some(a) = listen {
        if !a.ip().is_loopback() && !raw.https.unwrap_or(false) {
            v.warn(
                "web.listen",
                format!("the console listens on {a} over plain HTTP: passwords and sessions cross the network in clear"),
                Some("listen on 127.0.0.1 behind a TLS proxy and set web.https = true"),
            );
        }
    }
    WebConfig {
        listen,
        secret_file,
        session_ttl,
        https: raw.https.unwrap_or(false),
        users,
    }
}
