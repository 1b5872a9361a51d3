//! `[callback]`: the callbacks perezvon places, their guard and their windows.

use super::*;

/// `[callback]`: everything about one section's own values; what it needs of `[[asterisk]]` is
/// checked by [`super::callback_against_servers`], what an enabled one needs by [`enabled_callback`].
pub(super) fn callback(v: &mut V, cb: &RawCallback) -> CallbackConfig {
    let mode = match cb.mode.as_deref().unwrap_or("customer-first") {
        "customer-first" => CallbackMode::CustomerFirst,
        "agent-first" => CallbackMode::AgentFirst,
        other => {
            v.err(
                "callback.mode",
                format!("unknown mode {other:?}"),
                Some("customer-first or agent-first"),
            );
            CallbackMode::CustomerFirst
        }
    };
    let dial_template = cb
        .dial_template
        .clone()
        .unwrap_or_else(|| "PJSIP/{number}@provider".into());
    if !["{number}", "{e164}", "{national}"]
        .iter()
        .any(|p| dial_template.contains(p))
    {
        v.err(
            "callback.dial_template",
            "does not contain {number}, {e164} or {national}",
            Some("e.g. \"PJSIP/{national}@provider\""),
        );
    }
    if dial_template.contains(['\r', '\n']) {
        v.err("callback.dial_template", "contains a line break", None);
    }
    let target = match &cb.target {
        None => Target::Queue("sales".into()),
        Some(t) => {
            let n = [
                t.context.is_some() || t.exten.is_some(),
                t.queue.is_some(),
                t.endpoint.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if n != 1 {
                v.err(
                    "callback.target",
                    "set exactly one of {context, exten}, queue or endpoint",
                    Some("e.g. target = { queue = \"sales\" }"),
                );
                Target::Queue("sales".into())
            } else if let Some(q) = &t.queue {
                Target::Queue(q.clone())
            } else if let Some(e) = &t.endpoint {
                Target::Endpoint(e.clone())
            } else {
                match (&t.context, &t.exten) {
                    (Some(c), Some(e)) => Target::Dialplan {
                        context: c.clone(),
                        exten: e.clone(),
                        priority: t.priority.unwrap_or(1).clamp(1, i64::from(u32::MAX)) as u32,
                    },
                    _ => {
                        v.err("callback.target", "context and exten go together", None);
                        Target::Queue("sales".into())
                    }
                }
            }
        }
    };
    let wire_ok = |s: &str| !s.is_empty() && !s.contains(['\r', '\n', ',']) && s.len() < 200;
    match &target {
        Target::Dialplan { context, exten, .. } if !(wire_ok(context) && wire_ok(exten)) => v.err(
            "callback.target",
            "context/exten must be short single-line names without commas",
            None,
        ),
        Target::Queue(q) | Target::Endpoint(q) if !wire_ok(q) => v.err(
            "callback.target",
            "must be a short single-line name without commas",
            None,
        ),
        _ => {}
    }
    let caller_id = cb.caller_id.clone().unwrap_or_default();
    if !caller_id.chars().all(|c| c.is_ascii_digit() || c == '+') || caller_id.len() > 32 {
        v.err(
            "callback.caller_id",
            format!("{caller_id:?} must be a phone number"),
            Some("digits and an optional leading +"),
        );
    }
    let caller_name = cb.caller_name.clone().unwrap_or_else(|| "Callback".into());
    if caller_name.contains(['\r', '\n', '"', '<', '>']) || caller_name.len() > 64 {
        v.err(
            "callback.caller_name",
            "must be a short name without quotes, angle brackets or line breaks",
            None,
        );
    }
    let lost_at = cb
        .lost_at
        .clone()
        .unwrap_or_else(|| LOST_AT.iter().map(|s| s.to_string()).collect());
    for (i, l) in lost_at.iter().enumerate() {
        if !LOST_AT.contains(&l.as_str()) {
            v.err(
                format!("callback.lost_at[{i}]"),
                format!("unknown category {l:?}"),
                Some("one of ivr, voicemail, invalid_number, queue, group, external, user"),
            );
        }
    }
    let marker_variable = cb
        .marker_variable
        .clone()
        .unwrap_or_else(|| "PEREZVON_CALLBACK_ID".into());
    if marker_variable.is_empty()
        || !marker_variable
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        v.err(
            "callback.marker_variable",
            format!("{marker_variable:?} is not a channel variable name"),
            Some("letters, digits and _"),
        );
    }
    let agent_context = cb
        .agent_context
        .clone()
        .unwrap_or_else(|| "from-internal".into());
    if !wire_ok(&agent_context) || agent_context.contains(['@', '/']) {
        v.err(
            "callback.agent_context",
            format!("{agent_context:?} is not a dialplan context name"),
            Some("e.g. \"from-internal\""),
        );
    }
    let retry_backoff = cb.retry_backoff.unwrap_or(1.0);
    if !(1.0..=10.0).contains(&retry_backoff) {
        v.err(
            "callback.retry_backoff",
            format!("{retry_backoff} must be between 1.0 and 10.0"),
            Some("1.0 = fixed spacing, 2.0 = doubling"),
        );
    }
    let callback = CallbackConfig {
        enabled: cb.enabled.unwrap_or(false),
        mode,
        server: cb.server.clone(),
        dial_template,
        caller_id,
        caller_name,
        target,
        fallback_queue: cb.target.as_ref().and_then(|t| t.fallback_queue.clone()),
        delay: v.duration("callback.delay", &cb.delay, "1m"),
        max_attempts: v.positive("callback.max_attempts", cb.max_attempts, 3, 100) as u32,
        retry_every: v.duration("callback.retry_every", &cb.retry_every, "10m"),
        retry_busy_every: cb
            .retry_busy_every
            .as_ref()
            .map(|_| v.duration("callback.retry_busy_every", &cb.retry_busy_every, "5m")),
        retry_backoff,
        give_up_after: v.duration("callback.give_up_after", &cb.give_up_after, "24h"),
        originate_timeout: v.duration("callback.originate_timeout", &cb.originate_timeout, "30s"),
        max_concurrent: v.positive("callback.max_concurrent", cb.max_concurrent, 2, 1000) as u32,
        max_concurrent_per_target: v.positive(
            "callback.max_concurrent_per_target",
            cb.max_concurrent_per_target,
            1,
            1000,
        ) as u32,
        require_free_agent: cb.require_free_agent.unwrap_or(true),
        spread: v.duration("callback.spread", &cb.spread, "15m"),
        lost_at,
        // National mobile numbers of the default country (Russia): the toll-fraud guard.
        allow: v.regexes("callback.allow", &cb.allow, &["^79\\d{9}$"]),
        deny: v.regexes("callback.deny", &cb.deny, &[]),
        kind_guard: kind_guard(v, cb),
        marker_variable,
        agent_context,
        request: request_settings(v, cb),
        max_per_number_24h: cb
            .max_per_number_24h
            .map(|n| v.positive("callback.max_per_number_24h", Some(n), 3, 1000) as u32),
        max_per_number_day: cb
            .max_per_number_day
            .map(|n| v.positive("callback.max_per_number_day", Some(n), 3, 1000) as u32),
        customer_hours: cb
            .customer_hours
            .clone()
            .map(|w| window(v, "callback.customer_hours", w.into_vec())),
        customer_hours_weekend: cb
            .customer_hours_weekend
            .clone()
            .map(|w| window(v, "callback.customer_hours_weekend", w.into_vec())),
        customer_unknown_region: match cb.customer_unknown_region.as_deref() {
            None | Some("all_zones") => UnknownRegion::AllZones,
            Some("business_zone") => UnknownRegion::BusinessZone,
            Some(other) => {
                v.err(
                    "callback.customer_unknown_region",
                    format!("unknown rule {other:?}"),
                    Some("\"all_zones\" (the window must hold in every zone of the country) or \"business_zone\""),
                );
                UnknownRegion::AllZones
            }
        },
        customer_unknown_country: match cb.customer_unknown_country.as_deref() {
            None | Some("business_zone") => UnknownCountry::BusinessZone,
            Some("never") => UnknownCountry::Never,
            Some(other) => {
                v.err(
                    "callback.customer_unknown_country",
                    format!("unknown rule {other:?}"),
                    Some("\"business_zone\" or \"never\""),
                );
                UnknownCountry::BusinessZone
            }
        },
        customer_zones: customer_zones(v, cb.customer_zones.as_ref()),
        expire_after: cb
            .expire_after
            .as_ref()
            .map(|_| v.duration("callback.expire_after", &cb.expire_after, "3d")),
        expire_at_close: cb.expire_at_close.unwrap_or(false),
        queue_reserve: match cb.queue_reserve {
            None => 0,
            Some(n) if (0..=1000).contains(&n) => n as u32,
            Some(n) => {
                v.err(
                    "callback.queue_reserve",
                    format!("must be between 0 and 1000, got {n}"),
                    Some("agents of each queue kept free for inbound callers"),
                );
                0
            }
        },
        queue_reserves: cb
            .queue_reserves
            .iter()
            .flatten()
            .filter_map(|(q, n)| {
                if !(0..=1000).contains(n) {
                    v.err(
                        format!("callback.queue_reserves.{q}"),
                        format!("must be between 0 and 1000, got {n}"),
                        None,
                    );
                    return None;
                }
                Some((q.clone(), *n as u32))
            })
            .collect(),
    };
    if callback.customer_hours.is_none() {
        for (key, set) in [
            (
                "callback.customer_hours_weekend",
                cb.customer_hours_weekend.is_some(),
            ),
            ("callback.customer_zones", cb.customer_zones.is_some()),
            (
                "callback.customer_unknown_region",
                cb.customer_unknown_region.is_some(),
            ),
            (
                "callback.customer_unknown_country",
                cb.customer_unknown_country.is_some(),
            ),
        ] {
            if set {
                v.warn(
                    key,
                    "has no effect without callback.customer_hours",
                    Some("set customer_hours = \"09:00-21:00\" to call within the customer's own hours"),
                );
            }
        }
    }
    if let (Some(a), Some(b)) = (callback.max_per_number_24h, callback.max_per_number_day) {
        if b > a {
            v.warn(
                "callback.max_per_number_day",
                format!("{b} per day can never be reached under max_per_number_24h = {a}"),
                None,
            );
        }
    }
    callback
}

/// What an enabled callback needs: a toll-fraud guard that guards, and a caller id.
pub(super) fn enabled_callback(v: &mut V, cb: &CallbackConfig) {
    if cb.enabled {
        check_toll_fraud_guard(v, &cb.allow, &cb.deny, &cb.kind_guard);
    }
    if cb.enabled && cb.caller_id.is_empty() {
        v.err(
            "callback.caller_id",
            "missing",
            Some("the number customers see, e.g. your main line"),
        );
    }
}

/// `callback.allow_kinds` and `callback.allow_countries`, each value checked.
fn kind_guard(v: &mut V, cb: &RawCallback) -> KindGuard {
    let mut g = KindGuard::default();
    for (i, k) in cb.allow_kinds.iter().flatten().enumerate() {
        match NumberKind::parse(k) {
            Some(kind) => g.kinds.push(kind),
            None => v.err(
                format!("callback.allow_kinds[{i}]"),
                format!("unknown kind {k:?}"),
                Some("mobile, fixed_line, fixed_line_or_mobile, toll_free, premium_rate, shared_cost, personal_number, voip, pager, uan or voicemail"),
            ),
        }
    }
    if cb.allow_kinds.as_ref().is_some_and(|k| k.is_empty()) {
        v.err(
            "callback.allow_kinds",
            "empty: no number would be dialled",
            Some("e.g. [\"mobile\", \"fixed_line\"], or drop the key to allow every kind"),
        );
    }
    for (i, c) in cb.allow_countries.iter().flatten().enumerate() {
        if is_known_country(c) {
            g.countries.push(c.clone());
        } else {
            v.err(
                format!("callback.allow_countries[{i}]"),
                format!("{c:?} is not a country code with a numbering plan"),
                Some("ISO 3166 two upper-case letters, e.g. \"RU\", \"KZ\", \"BY\""),
            );
        }
    }
    if cb.allow_countries.as_ref().is_some_and(|c| c.is_empty()) {
        v.err(
            "callback.allow_countries",
            "empty: no number would be dialled",
            Some("e.g. [\"RU\"], or drop the key to allow every country"),
        );
    }
    for costly in [NumberKind::PremiumRate, NumberKind::SharedCost] {
        if g.kinds.contains(&costly) {
            v.warn(
                "callback.allow_kinds",
                format!("admits {costly} numbers: each callback there is billed at a premium"),
                Some("keep mobile and fixed_line"),
            );
        }
    }
    g
}

/// Numbers no business's callbacks should reach, whatever its country: abroad on three
/// continents, a satellite network, a one-digit "number". An allow-list that admits all of them
/// admits every number.
const FRAUD_PROBES: [&str; 4] = ["447911123456", "12025550123", "8823451234567", "3"];
/// Premium-rate and international examples an allow-list is warned about when it admits them.
const COSTLY_PROBES: [(&str, &str); 3] = [
    ("78091234567", "Russian premium-rate 8-809"),
    ("37491234567", "Armenia"),
    ("882345123456", "satellite (+882)"),
];

/// The toll-fraud guard must guard: refuse an empty allow-list and one that admits every
/// number (probed with numbers abroad), warn about costly numbers it admits. A number is
/// admitted when it passes the regex lists and `allow_kinds`/`allow_countries` both, as the
/// dialer checks it.
fn check_toll_fraud_guard(
    v: &mut V,
    allow: &[regex::Regex],
    deny: &[regex::Regex],
    kinds: &KindGuard,
) {
    let admits = |n: &str| {
        allow.iter().any(|r| r.is_match(n))
            && !deny.iter().any(|r| r.is_match(n))
            && kinds.check(n).is_ok()
    };
    if allow.is_empty() {
        v.err(
            "callback.allow",
            "empty: callbacks are on but no number may be dialled",
            Some("list the numbers you call back, e.g. [\"^79\\\\d{9}$\"] for Russian mobiles"),
        );
        return;
    }
    if FRAUD_PROBES.iter().all(|n| admits(n)) {
        v.err(
            "callback.allow",
            "admits every number (it lets perezvon dial +44 7911 123456, +1 202 555 0123, satellite +882 and \"3\"): a caller ID is whatever the caller sends, so this is an open door to toll fraud",
            Some("allow only the numbers you call back, e.g. [\"^79\\\\d{9}$\"] for Russian mobiles, [\"^7\\\\d{10}$\"] for all of Russia, or set allow_kinds and allow_countries"),
        );
        return;
    }
    for (n, what) in COSTLY_PROBES {
        if admits(n) {
            // What libphonenumber's metadata says the number is, when it knows it.
            let kind = classify(n).map_or(String::new(), |c| {
                format!(
                    ", {} of {}",
                    c.kind,
                    c.country.as_deref().unwrap_or("no country")
                )
            });
            v.warn(
                "callback.allow",
                format!("admits {n} ({what}{kind}): callbacks there may be costly"),
                Some("narrow the pattern, add the prefix to callback.deny, or set callback.allow_kinds = [\"mobile\", \"fixed_line\"] and callback.allow_countries"),
            );
        }
    }
}

/// A calling window: one or more `"HH:MM-HH:MM"` ranges, sorted, not overlapping.
fn window(v: &mut V, key: &str, raw: Vec<String>) -> Vec<DayRange> {
    let mut out = Vec::new();
    if raw.is_empty() {
        v.err(key, "empty window", Some("e.g. \"09:00-21:00\""));
    }
    for (i, r) in raw.iter().enumerate() {
        match parse_range(r) {
            Some(d) => out.push(d),
            None => v.err(
                if raw.len() == 1 {
                    key.to_string()
                } else {
                    format!("{key}[{i}]")
                },
                format!("invalid range {r:?}"),
                Some("\"HH:MM-HH:MM\", start before end, e.g. \"09:00-21:00\""),
            ),
        }
    }
    out.sort_by_key(|r| r.start_min);
    if out.windows(2).any(|w| w[1].start_min < w[0].end_min) {
        v.err(key, "ranges overlap", None);
    }
    out
}

/// `customer_zones`: digit prefixes of normalised numbers -> IANA zones, longest first.
fn customer_zones(
    v: &mut V,
    raw: Option<&BTreeMap<String, String>>,
) -> Vec<(String, jiff::tz::TimeZone, String)> {
    let mut out = Vec::new();
    for (prefix, zone) in raw.into_iter().flatten() {
        let key = format!("callback.customer_zones.{prefix}");
        if prefix.is_empty() || prefix.len() > 15 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            v.err(
                &key,
                format!("{prefix:?} is not a number prefix"),
                Some("digits of the normalised number, country code first, e.g. \"7914\""),
            );
            continue;
        }
        match jiff::tz::TimeZone::get(zone) {
            Ok(tz) => out.push((prefix.clone(), tz, zone.clone())),
            Err(_) => v.err(
                &key,
                format!("unknown time zone {zone:?}"),
                Some("an IANA name like \"Asia/Vladivostok\""),
            ),
        }
    }
    out.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    out
}

// --- issue 14 (request): requested and owned callbacks, announcement, dispositions, DNC ---

/// A sound name for Playback()/Queue()/Dial(A()): a path under the sounds directory, no
/// extension, nothing the application arguments or the wire would split on.
fn sound_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.' | '&'))
        && !s.contains("..")
}

fn request_settings(v: &mut V, cb: &RawCallback) -> crate::config::RequestSettings {
    let d = crate::config::RequestSettings::default();
    let owner_wait = cb
        .owner_wait
        .as_ref()
        .map(|_| v.duration("callback.owner_wait", &cb.owner_wait, "10m"))
        .filter(|w| !w.is_zero());
    let owner_endpoint = cb.owner_endpoint.clone().unwrap_or(d.owner_endpoint);
    if !owner_endpoint.contains("{agent}") || !wire_ok(&owner_endpoint) {
        v.err(
            "callback.owner_endpoint",
            format!("{owner_endpoint:?} must name the agent's endpoint with {{agent}}"),
            Some("e.g. \"PJSIP/{agent}\""),
        );
    }
    let mut sound = |key: &str, raw: &Option<String>| -> Option<String> {
        let s = raw.clone()?;
        if !sound_ok(&s) {
            v.err(
                key,
                format!("{s:?} is not a sound name"),
                Some("a file under the sounds directory without extension, e.g. \"perezvon/missed-caller\""),
            );
        }
        Some(s)
    };
    let announce = sound("callback.announce", &cb.announce);
    let customer_prompt = sound("callback.customer_prompt", &cb.customer_prompt);
    let agent_caller_name = cb.agent_caller_name.clone();
    if let Some(n) = &agent_caller_name {
        if n.is_empty() || n.len() > 80 || !wire_ok(n) {
            v.err(
                "callback.agent_caller_name",
                format!("{n:?} is not a usable caller name (1-80 characters, one line)"),
                Some("e.g. \"{number} missed {count}x\""),
            );
        }
    }
    let dnc_file = cb.dnc_file.as_ref().map(std::path::PathBuf::from);
    if let Some(p) = &dnc_file {
        if p.as_os_str().is_empty() {
            v.err("callback.dnc_file", "empty path", None);
        }
    }
    crate::config::RequestSettings {
        owner_wait,
        owner_endpoint,
        announce,
        customer_prompt,
        agent_caller_name,
        dnc_file,
        call_later_after: v.duration("callback.call_later_after", &cb.call_later_after, "2h"),
    }
}

/// One line, no comma (Asterisk splits application arguments and Variable values on it).
fn wire_ok(s: &str) -> bool {
    !s.is_empty() && !s.contains(['\r', '\n', ',', '"']) && s.len() < 200
}
