//! `perezvon check-config`: validates a configuration file the way `run` would load it and says
//! what is wrong, every problem at once, so an admin fixes the file in one pass before a restart.
//!
//! Problems go to stderr as `section.key: what is wrong (hint)` and the exit code is 78
//! (`EX_CONFIG`); a valid file prints its warnings and a short summary and exits 0. As for `run`,
//! a file without any `[[asterisk]]` server is invalid.

use std::fmt::Write as _;
use std::io::Write as _;

use super::{CheckConfigArgs, CmdResult, DEFAULT_CONFIG};
use crate::config::{CallbackMode, Config, Target, EXIT_CONFIG};

pub fn run(args: &CheckConfigArgs) -> CmdResult {
    let path = args.config.clone().unwrap_or_else(|| DEFAULT_CONFIG.into());
    let mut err = std::io::stderr().lock();
    match Config::load_for_daemon(&path) {
        Ok(cfg) => {
            for w in &cfg.warnings {
                writeln!(err, "warning: {w}")?;
            }
            print!("{}", summary(&cfg, &path.display().to_string()));
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
    let _ = writeln!(s, "database: {}", cfg.storage.database.display());
    s
}

fn hhmm(min: u16) -> String {
    format!("{:02}:{:02}", min / 60, min % 60)
}
