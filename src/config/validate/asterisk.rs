//! `[[asterisk]]`: the AMI servers.

use super::*;

/// `[[asterisk]]`: each server's name (unique), address, AMI login, events and timeouts.
pub(super) fn asterisk(v: &mut V, servers: &[RawAsterisk]) -> Vec<AsteriskConfig> {
    let mut asterisk = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, a) in servers.iter().enumerate() {
        let k = |f: &str| format!("asterisk[{i}].{f}");
        let name = a.name.clone().unwrap_or_else(|| {
            if i == 0 {
                "default".into()
            } else {
                format!("asterisk{i}")
            }
        });
        if !names.insert(name.clone()) {
            v.err(
                k("name"),
                format!("duplicate server name {name:?}"),
                Some("every [[asterisk]] needs its own name"),
            );
        }
        let host = a.host.clone().unwrap_or_else(|| "127.0.0.1".into());
        let port = match a.port.unwrap_or(5038) {
            p @ 1..=65535 => p as u16,
            p => {
                v.err(
                    k("port"),
                    format!("{p} is not a TCP port"),
                    Some("AMI listens on 5038 by default"),
                );
                5038
            }
        };
        let username = match &a.username {
            Some(u) if !u.is_empty() && !u.contains(['\r', '\n']) => u.clone(),
            Some(_) => {
                v.err(k("username"), "must be a non-empty single line", None);
                String::new()
            }
            None => {
                v.err(
                    k("username"),
                    "missing",
                    Some("the [user] section name in manager.conf"),
                );
                String::new()
            }
        };
        let sources = [
            a.secret.is_some(),
            a.secret_file.is_some(),
            a.secret_env.is_some(),
        ];
        let secret = match sources.iter().filter(|x| **x).count() {
            0 => {
                v.err(
                    k("secret"),
                    "missing",
                    Some("set one of secret, secret_file or secret_env"),
                );
                Secret::default()
            }
            1 => {
                if let Some(s) = &a.secret {
                    Secret::new(s.clone())
                } else if let Some(p) = &a.secret_file {
                    let p = v.resolve_path(p);
                    match std::fs::read_to_string(&p) {
                        Ok(s) => {
                            #[cfg(unix)]
                            {
                                use std::os::unix::fs::PermissionsExt;
                                if let Ok(m) = std::fs::metadata(&p) {
                                    if m.permissions().mode() & 0o004 != 0 {
                                        v.warn(
                                            k("secret_file"),
                                            format!("{} is world-readable", p.display()),
                                            Some("chmod 640 it"),
                                        );
                                    }
                                }
                            }
                            Secret::new(s.trim_end_matches(['\r', '\n']).to_string())
                        }
                        Err(e) => {
                            v.err(
                                k("secret_file"),
                                format!("cannot read {}: {e}", p.display()),
                                None,
                            );
                            Secret::default()
                        }
                    }
                } else {
                    let var = a.secret_env.clone().unwrap_or_default();
                    match std::env::var(&var) {
                        Ok(s) => Secret::new(s),
                        Err(_) => {
                            v.err(
                                k("secret_env"),
                                format!("environment variable {var:?} is not set"),
                                Some("set it in the unit's Environment= or EnvironmentFile="),
                            );
                            Secret::default()
                        }
                    }
                }
            }
            _ => {
                v.err(
                    k("secret"),
                    "secret, secret_file and secret_env are exclusive",
                    Some("keep one"),
                );
                Secret::default()
            }
        };
        if secret.expose().contains(['\r', '\n']) {
            v.err(k("secret"), "contains a line break", None);
        }
        let auth = match a.auth.as_deref().unwrap_or("md5") {
            "md5" => AuthType::Md5,
            "plain" => AuthType::Plain,
            other => {
                v.err(
                    k("auth"),
                    format!("unknown auth {other:?}"),
                    Some("md5 or plain"),
                );
                AuthType::Md5
            }
        };
        let events = a.events.clone().unwrap_or_else(|| "on".into());
        if events.is_empty() || events.contains(['\r', '\n']) {
            v.err(
                k("events"),
                "must be on, off or a list of classes",
                Some("e.g. \"call,agent,dialplan\""),
            );
        }
        let max_message = v.positive(
            &k("max_message"),
            a.max_message,
            1024 * 1024,
            64 * 1024 * 1024,
        ) as usize;
        asterisk.push(AsteriskConfig {
            name,
            host,
            port,
            username,
            secret,
            auth,
            events,
            connect_timeout: v.duration(&k("connect_timeout"), &a.connect_timeout, "5s"),
            action_timeout: v.duration(&k("action_timeout"), &a.action_timeout, "10s"),
            ping_interval: v.duration(&k("ping_interval"), &a.ping_interval, "15s"),
            max_message,
            reconnect_max: v.duration(&k("reconnect_max"), &a.reconnect_max, "60s"),
        });
    }
    asterisk
}
