//! `[backfill]`: the CDR and queue_log files read at start.

use super::*;

/// `[backfill]` and each server's `backfill_cdr`/`backfill_queue_log`. The time zone defaults to
/// `[hours]`'s, and `backfill.server` must name one of the `[[asterisk]]` servers.
pub(super) fn backfill(
    v: &mut V,
    bf: &RawBackfill,
    raw_servers: &[RawAsterisk],
    asterisk: &[AsteriskConfig],
    hours_timezone: &jiff::tz::TimeZone,
) -> BackfillConfig {
    let backfill_timezone = match bf.timezone.as_deref() {
        None => hours_timezone.clone(),
        Some(name) => match jiff::tz::TimeZone::get(name) {
            Ok(tz) => tz,
            Err(_) => {
                v.err(
                    "backfill.timezone",
                    format!("unknown time zone {name:?}"),
                    Some("an IANA name like \"Europe/Moscow\" or \"UTC\" (usegmtime = yes)"),
                );
                jiff::tz::TimeZone::UTC
            }
        },
    };
    if let Some(name) = &bf.server {
        if !asterisk.is_empty() && !asterisk.iter().any(|a| a.name == *name) {
            v.err(
                "backfill.server",
                format!("no [[asterisk]] server is named {name:?}"),
                Some("the name of the server whose CDR and queue_log these are"),
            );
        }
    }
    for (key, path) in [
        ("backfill.cdr", &bf.cdr),
        ("backfill.queue_log", &bf.queue_log),
    ] {
        if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            v.err(key, "is empty", Some("a file path, or leave the key out"));
        }
    }
    BackfillConfig {
        cdr: bf
            .cdr
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| v.resolve_path(p)),
        queue_log: bf
            .queue_log
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| v.resolve_path(p)),
        server: bf.server.clone(),
        timezone: backfill_timezone,
        max_gap: v.duration("backfill.max_gap", &bf.max_gap, "7d"),
        per_server: raw_servers
            .iter()
            .zip(asterisk)
            .filter(|(r, _)| r.backfill_cdr.is_some() || r.backfill_queue_log.is_some())
            .map(|(r, a)| {
                (
                    a.name.clone(),
                    r.backfill_cdr.as_deref().map(|p| v.resolve_path(p)),
                    r.backfill_queue_log.as_deref().map(|p| v.resolve_path(p)),
                )
            })
            .collect(),
        first_server: asterisk.first().map(|a| a.name.clone()),
    }
}
