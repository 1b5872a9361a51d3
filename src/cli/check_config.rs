//! `perezvon check-config`: validates a configuration file the way `run` would load it and says
//! what is wrong, every problem at once, so an admin fixes the file in one pass before a restart.
//!
//! Problems go to stderr as `section.key: what is wrong (hint)` and the exit code is 78
//! (`EX_CONFIG`); a valid file prints its warnings and a short summary and exits 0. As for `run`,
//! a file without any `[[asterisk]]` server is invalid.
//!
//! Beyond the schema, the AMI link is reviewed ([`review_ami`]): an empty or placeholder secret
//! is a problem (78), a plain-TCP link to a host that is not this machine a warning. With
//! `--connect` every server is logged in to, as the daemon would, and the privileges perezvon
//! needs are checked with `ListCommands` ([`crate::ami::privileges`]); one line per server says
//! what to add to manager.conf, and any failing server makes the exit code 78.

use std::fmt::Write as _;
use std::io::Write as _;

use super::{CheckConfigArgs, CmdResult, DEFAULT_CONFIG};
use crate::ami::privileges::{self, READ_CLASSES};
use crate::config::{AsteriskConfig, AuthType, CallbackMode, Config, Target, EXIT_CONFIG};

/// Secrets that are examples, defaults of PBX distributions or guesses, never a real secret.
const PLACEHOLDER_SECRETS: [&str; 14] = [
    "change-me",
    "changeme",
    "change_me",
    "secret",
    "password",
    "passw0rd",
    "amp111",
    "admin",
    "asterisk",
    "manager",
    "1234",
    "12345",
    "123456",
    "perezvon",
];

/// How long `--connect` listens for events after the login.
const LISTEN: std::time::Duration = std::time::Duration::from_secs(2);

pub fn run(args: &CheckConfigArgs) -> CmdResult {
    let path = args.config.clone().unwrap_or_else(|| DEFAULT_CONFIG.into());
    let mut err = std::io::stderr().lock();
    match Config::load_for_daemon(&path) {
        Ok(cfg) => {
            for w in &cfg.warnings {
                writeln!(err, "warning: {w}")?;
            }
            let (problems, warnings) = review_ami(&cfg);
            for w in &warnings {
                writeln!(err, "warning: {w}")?;
            }
            if !problems.is_empty() {
                let n = problems.len();
                writeln!(
                    err,
                    "{}: {n} problem{}",
                    path.display(),
                    if n == 1 { "" } else { "s" }
                )?;
                for p in &problems {
                    writeln!(err, "{p}")?;
                }
                return Ok(EXIT_CONFIG);
            }
            print!("{}", summary(&cfg, &path.display().to_string()));
            if args.connect {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let mut failed = false;
                for a in &cfg.asterisk {
                    let (ok, line) = rt.block_on(connect_check(&cfg, a));
                    println!("{line}");
                    failed |= !ok;
                }
                if failed {
                    return Ok(EXIT_CONFIG);
                }
            }
            Ok(0)
        }
        Err(e) => {
            let n = e.problems.len();
            writeln!(
                err,
                "{}: {n} problem{}",
                e.source_name,
                if n == 1 { "" } else { "s" }
            )?;
            for p in &e.problems {
                writeln!(err, "{p}")?;
            }
            Ok(EXIT_CONFIG)
        }
    }
}

/// The AMI link's security: problems (an empty or placeholder secret) and warnings (plain TCP
/// beyond this machine), as `asterisk[i].key: what (hint)` lines.
pub fn review_ami(cfg: &Config) -> (Vec<String>, Vec<String>) {
    let (mut problems, mut warnings) = (Vec::new(), Vec::new());
    for (i, a) in cfg.asterisk.iter().enumerate() {
        let secret = a.secret.expose().trim();
        if secret.is_empty() {
            problems.push(format!(
                "asterisk[{i}].secret: empty (set the secret of the manager.conf user {:?})",
                a.username
            ));
        } else if PLACEHOLDER_SECRETS
            .iter()
            .any(|p| p.eq_ignore_ascii_case(secret))
        {
            // The value is a well-known word: naming it discloses nothing.
            problems.push(format!(
                "asterisk[{i}].secret: {secret:?} is a placeholder, not a secret (set a long random \
                 secret for the user {:?} in manager.conf and here, e.g. `openssl rand -hex 16`)",
                a.username
            ));
        }
        if !is_loopback(&a.host) {
            let secret_note = match a.auth {
                AuthType::Plain => "the AMI secret and ",
                AuthType::Md5 => "",
            };
            warnings.push(format!(
                "asterisk[{i}].host: {} is not this machine and AMI is plain TCP: {secret_note}all \
                 call data (numbers, names, what happens to every call) cross the network in clear \
                 (perezvon speaks no AMI over TLS: run it on the PBX host, or reach AMI through an \
                 SSH tunnel or stunnel listening on 127.0.0.1)",
                a.host
            ));
        }
    }
    (problems, warnings)
}

/// `localhost`, 127.0.0.0/8 and ::1.
fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Logs in to one server and checks its privileges: `(ok, the line to print)`.
pub async fn connect_check(cfg: &Config, a: &AsteriskConfig) -> (bool, String) {
    let head = format!("server {} ({}:{}):", a.name, a.host, a.port);
    let probe = match privileges::probe(a, LISTEN).await {
        Ok(p) => p,
        Err(e @ crate::ami::AmiError::AuthFailed { .. }) => {
            return (false, format!("{head} connected, LOGIN FAILED: {e}"));
        }
        Err(e @ crate::ami::AmiError::Rejected { .. }) => {
            return (
                false,
                format!("{head} connected, login ok, ListCommands failed: {e}"),
            );
        }
        Err(e) => return (false, format!("{head} CANNOT CONNECT: {e}")),
    };
    let needed = privileges::needed_actions(cfg, a);
    let missing = privileges::missing_actions(&needed, &probe.allowed);
    let mut line = format!("{head} connected, login ok");
    let unseen: Vec<&str> = READ_CLASSES
        .iter()
        .copied()
        .filter(|c| !probe.seen.contains(*c))
        .collect();
    let read_note = if unseen.is_empty() {
        format!("events of {} arrive", READ_CLASSES.join(", "))
    } else {
        // Asterisk reports no read classes: a quiet PBX sends none of these, so only a hint.
        format!(
            "no {} events in {}s (fine on a quiet PBX; else add `read = {}` to manager.conf)",
            unseen.join("/"),
            LISTEN.as_secs(),
            READ_CLASSES.join(",")
        )
    };
    if missing.is_empty() {
        let names: Vec<&str> = needed.iter().map(|n| n.action).collect();
        line.push_str(&format!(
            ", privileges ok ({}); {read_note}",
            names.join(", ")
        ));
        return (true, line);
    }
    let what: Vec<String> = missing
        .iter()
        .map(|n| {
            format!(
                "{} (needs write = {}: {})",
                n.action,
                n.classes.join(" or "),
                n.why
            )
        })
        .collect();
    line.push_str(&format!(
        ", MISSING PRIVILEGES: {} (or the module that provides it is not loaded); in manager.conf [{}] set `{}` and `read = {}`, then `manager reload`; {read_note}",
        what.join(", "),
        a.username,
        privileges::write_line(&needed, &probe.allowed).unwrap_or_default(),
        READ_CLASSES.join(",")
    ));
    (false, line)
}

/// What a valid configuration will do, in a few lines.
pub fn summary(cfg: &Config, name: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{name}: OK");
    for a in &cfg.asterisk {
        let _ = writeln!(
            s,
            "server {}: {}@{}:{} (auth {}, events {})",
            a.name,
            a.username,
            a.host,
            a.port,
            match a.auth {
                crate::config::AuthType::Md5 => "md5",
                crate::config::AuthType::Plain => "plain",
            },
            a.events
        );
    }
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let week: Vec<String> = cfg
        .hours
        .week
        .iter()
        .zip(days)
        .map(|(ranges, d)| {
            if ranges.is_empty() {
                format!("{d} closed")
            } else {
                let r: Vec<String> = ranges
                    .iter()
                    .map(|r| format!("{}-{}", hhmm(r.start_min), hhmm(r.end_min)))
                    .collect();
                format!("{d} {}", r.join(","))
            }
        })
        .collect();
    let _ = writeln!(
        s,
        "hours ({}): {}; {} holiday(s), {} extra workday(s)",
        cfg.hours.timezone_name,
        week.join("; "),
        cfg.hours.holidays.len(),
        cfg.hours.workdays.len()
    );
    let cb = &cfg.callback;
    if cb.enabled {
        let target = match &cb.target {
            Target::Dialplan {
                context,
                exten,
                priority,
            } => format!("{exten}@{context} priority {priority}"),
            Target::Queue(q) => format!("queue {q}"),
            Target::Endpoint(e) => format!("endpoint {e}"),
        };
        let _ = writeln!(
            s,
            "callbacks: on via {} ({}), {target}, dial {}, caller id {}, up to {} attempt(s) every {}",
            cfg.callback_server().map(|a| a.name.as_str()).unwrap_or("?"),
            match cb.mode {
                CallbackMode::CustomerFirst => "customer-first",
                CallbackMode::AgentFirst => "agent-first",
            },
            cb.dial_template,
            cb.caller_id,
            cb.max_attempts,
            humantime::format_duration(cb.retry_every)
        );
        // Issue 14's guards, when any is set.
        let mut guards = Vec::new();
        if let Some(n) = cb.max_per_number_24h {
            guards.push(format!("at most {n} per number in 24 h"));
        }
        if let Some(n) = cb.max_per_number_day {
            guards.push(format!("{n} per number a day"));
        }
        if let Some(w) = &cb.customer_hours {
            let r: Vec<String> = w
                .iter()
                .map(|r| {
                    format!(
                        "{:02}:{:02}-{:02}:{:02}",
                        r.start_min / 60,
                        r.start_min % 60,
                        r.end_min / 60,
                        r.end_min % 60
                    )
                })
                .collect();
            guards.push(format!("customer's clock {}", r.join(",")));
        }
        if let Some(d) = cb.expire_after {
            guards.push(format!("expire after {}", humantime::format_duration(d)));
        }
        if cb.expire_at_close {
            guards.push("expire at the day's close".into());
        }
        if cb.queue_reserve > 0 || !cb.queue_reserves.is_empty() {
            guards.push(format!(
                "{} agent(s) per queue kept for inbound",
                cb.queue_reserve
            ));
        }
        if !guards.is_empty() {
            let _ = writeln!(s, "callback guards: {}", guards.join(", "));
        }
    } else {
        let _ = writeln!(s, "callbacks: off (set callback.enabled = true)");
    }
    if let Some(w) = &cfg.notify.webhook {
        let _ = writeln!(
            s,
            "webhook: {} ({}; {})",
            w.url,
            w.events.join(","),
            if w.secret.is_some() {
                "signed"
            } else {
                "unsigned"
            }
        );
    }
    if let Some(e) = &cfg.notify.email {
        let _ = writeln!(
            s,
            "email: {} via {}:{} ({})",
            e.to.join(","),
            e.smtp_host,
            e.smtp_port,
            e.events.join(",")
        );
    }
    // Only hosts: a Bitrix24 webhook URL, a Telegram URL or a template URL may hold a token.
    let host = |u: &str| {
        reqwest::Url::parse(u)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| "?".into())
    };
    if let Some(b) = &cfg.notify.bitrix24 {
        let _ = writeln!(
            s,
            "bitrix24: {} ({})",
            host(b.webhook_url.expose()),
            b.channel.events.join(",")
        );
    }
    if let Some(a) = &cfg.notify.amocrm {
        let _ = writeln!(
            s,
            "amocrm: {} ({})",
            host(a.base_url.as_str()),
            a.channel.events.join(",")
        );
    }
    if let Some(t) = &cfg.notify.telegram {
        let _ = writeln!(
            s,
            "telegram: chat {} via {} ({})",
            t.chat_id,
            host(t.api_url.as_str()),
            t.channel.events.join(",")
        );
    }
    for h in &cfg.notify.http {
        let _ = writeln!(
            s,
            "http {}: {} {} ({})",
            h.name,
            h.method,
            host(h.url.expose()),
            h.channel.events.join(",")
        );
    }
    if cfg.metrics.enabled {
        let _ = writeln!(s, "metrics: http://{}/metrics", cfg.metrics.listen);
    }
    if let Some(listen) = cfg.web.listen {
        let supervisors = cfg
            .web
            .users
            .iter()
            .filter(|u| u.role == crate::config::WebRole::Supervisor)
            .count();
        let _ = writeln!(
            s,
            "web console: http://{listen}/{} ({} users, {supervisors} supervisors)",
            if cfg.web.https {
                " behind an https proxy"
            } else {
                ""
            },
            cfg.web.users.len()
        );
    }
    let _ = writeln!(s, "database: {}", cfg.storage.database.display());
    s
}

fn hhmm(min: u16) -> String {
    format!("{:02}:{:02}", min / 60, min % 60)
}
