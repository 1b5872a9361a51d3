//! What a person reads: the one-message text of an event (a chat message, a CRM comment, an SMS),
//! in Russian by default or in English, and the named values a `[[notify.http]]` template can
//! use. Pure: the outbox payload, the time zone and the language in, strings out.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::Language;

/// The values of one event, by placeholder name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Values(pub BTreeMap<&'static str, String>);

/// Every placeholder a template may use.
pub const NAMES: [&str; 13] = [
    "event",
    "event_id",
    "number",
    "number_digits",
    "time",
    "wait_s",
    "lost_at",
    "callee",
    "agent",
    "server",
    "outcome",
    "resolved_by",
    "text",
];

impl Values {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Values of the right shape for checking a template at load.
    pub fn sample() -> Values {
        Values(
            NAMES
                .iter()
                .map(|n| (*n, format!("sample {n} \"&=")))
                .collect(),
        )
    }

    /// The values of an outbox payload of kind `kind`.
    pub fn of(kind: &str, v: &Value, tz: &jiff::tz::TimeZone, lang: Language) -> Values {
        let call = &v["call"];
        let cb = &v["callback"];
        let s = |v: &Value| -> String {
            match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            }
        };
        let number = match (&v["number_e164"], &v["number"], &call["caller"]) {
            (Value::String(n), _, _) => n.clone(),
            (_, Value::String(n), _) => n.clone(),
            (_, _, Value::String(c)) => c.clone(),
            _ => String::new(),
        };
        let time = v["occurred_at"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(|t| {
                t.to_zoned(tz.clone())
                    .strftime("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_default();
        let mut m = BTreeMap::new();
        m.insert("event", kind.to_string());
        m.insert("event_id", s(&v["id"]));
        m.insert(
            "number_digits",
            number.chars().filter(char::is_ascii_digit).collect(),
        );
        m.insert("number", number);
        m.insert("time", time);
        m.insert(
            "wait_s",
            call["wait_secs"]
                .as_f64()
                .map(|w| format!("{}", w.max(0.0).round() as u64))
                .unwrap_or_default(),
        );
        m.insert("lost_at", s(&call["lost_at"]));
        m.insert("callee", s(&call["callee"]));
        m.insert(
            "agent",
            if kind == "callback" {
                s(&cb["agent"])
            } else {
                s(&call["agent"])
            },
        );
        m.insert("server", s(&v["server"]));
        m.insert("outcome", s(&cb["outcome"]));
        m.insert("resolved_by", s(&v["resolved_by"]));
        let mut values = Values(m);
        let text = message(kind, v, &values, lang);
        values.0.insert("text", text);
        values
    }
}

fn lost_at_label(code: &str, lang: Language) -> String {
    let ru = match code {
        "ivr" => "в голосовом меню",
        "voicemail" => "на голосовой почте",
        "invalid_number" => "неверный номер",
        "queue" => "в очереди",
        "group" => "в группе",
        "external" => "на внешнем номере",
        "user" => "у сотрудника",
        "" => "неизвестно где",
        other => other,
    };
    let en = match code {
        "" => "unknown",
        "invalid_number" => "invalid number",
        other => other,
    };
    match lang {
        Language::Ru => ru.to_string(),
        Language::En => en.to_string(),
    }
}

fn outcome_label(code: &str, lang: Language) -> String {
    let ru = match code {
        "connected" => "соединён",
        "no_answer" => "не ответил",
        "busy" => "занято",
        "failed" => "не удалось позвонить",
        "agent_missed" => "сотрудник не взял трубку",
        "too_short" => "слишком короткий разговор",
        other => other,
    };
    match lang {
        Language::Ru => ru.to_string(),
        Language::En => code.replace('_', " "),
    }
}

fn resolved_label(code: &str, lang: Language) -> String {
    match (code, lang) {
        ("caller", Language::Ru) => "клиент перезвонил сам".into(),
        ("agent", Language::Ru) => "сотрудник перезвонил".into(),
        ("callback", Language::Ru) => "обратный звонок perezvon".into(),
        ("caller", Language::En) => "the customer called again".into(),
        ("agent", Language::En) => "an agent called back".into(),
        ("callback", Language::En) => "a perezvon callback".into(),
        (other, _) => other.into(),
    }
}

fn duration(secs: f64, lang: Language) -> String {
    let s = secs.max(0.0).round() as u64;
    let (m, s) = (s / 60, s % 60);
    match (lang, m) {
        (Language::Ru, 0) => format!("{s} с"),
        (Language::Ru, _) => format!("{m} мин {s} с"),
        (Language::En, 0) => format!("{s} s"),
        (Language::En, _) => format!("{m} min {s} s"),
    }
}

/// The text of an event, one short paragraph.
pub fn message(kind: &str, v: &Value, values: &Values, lang: Language) -> String {
    let get = |n: &str| values.get(n).unwrap_or("").to_string();
    let number = match get("number") {
        n if n.is_empty() => match lang {
            Language::Ru => "скрытый номер".to_string(),
            Language::En => "a hidden number".to_string(),
        },
        n => n,
    };
    let time = get("time");
    match kind {
        "missed" => {
            let wait = duration(v["call"]["wait_secs"].as_f64().unwrap_or(0.0), lang);
            let lost = lost_at_label(&get("lost_at"), lang);
            match lang {
                Language::Ru => format!(
                    "Пропущенный звонок: {number}, {time}, ждал {wait}, потерян {lost}. Нужно перезвонить."
                ),
                Language::En => format!(
                    "Missed call: {number} at {time}, waited {wait}, lost at: {lost}. Please call back."
                ),
            }
        }
        "resolved" => {
            let by = resolved_label(&get("resolved_by"), lang);
            let after = duration(v["reaction_secs"].as_f64().unwrap_or(0.0), lang);
            match lang {
                Language::Ru => {
                    format!("Пропущенный звонок от {number} решён: {by}, через {after} ({time}).")
                }
                Language::En => {
                    format!("Missed call from {number} resolved: {by}, after {after} ({time}).")
                }
            }
        }
        "callback" => {
            let cb = &v["callback"];
            let outcome = outcome_label(&get("outcome"), lang);
            let attempt = cb["attempt"].as_u64().unwrap_or(0);
            let of = cb["max_attempts"].as_u64().unwrap_or(0);
            let talk = duration(cb["talk_secs"].as_f64().unwrap_or(0.0), lang);
            let agent = get("agent");
            match lang {
                Language::Ru => {
                    let mut t = format!(
                        "Обратный звонок {number}: {outcome} (попытка {attempt} из {of}, {time})"
                    );
                    if get("outcome") == "connected" {
                        t.push_str(&format!(", разговор {talk}"));
                        if !agent.is_empty() {
                            t.push_str(&format!(", сотрудник {agent}"));
                        }
                    }
                    t.push('.');
                    t
                }
                Language::En => {
                    let mut t = format!(
                        "Callback to {number}: {outcome} (attempt {attempt} of {of}, {time})"
                    );
                    if get("outcome") == "connected" {
                        t.push_str(&format!(", talked {talk}"));
                        if !agent.is_empty() {
                            t.push_str(&format!(", agent {agent}"));
                        }
                    }
                    t.push('.');
                    t
                }
            }
        }
        other => format!("{other}: {number} ({time})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn missed() -> Value {
        json!({
            "event": "missed", "id": "missed:pbx1:17.1", "occurred_at": "2026-12-02T15:04:05Z",
            "server": "pbx1", "number": "79161234567", "number_e164": "+79161234567",
            "call": {"wait_secs": 75.4, "lost_at": "queue", "callee": "74951110001", "agent": null}
        })
    }

    #[test]
    fn missed_in_both_languages() {
        let tz = jiff::tz::TimeZone::get("Europe/Moscow").unwrap();
        let v = Values::of("missed", &missed(), &tz, Language::Ru);
        assert_eq!(v.get("time"), Some("2026-12-02 18:04:05"));
        assert_eq!(v.get("wait_s"), Some("75"));
        assert_eq!(v.get("number_digits"), Some("79161234567"));
        assert_eq!(
            v.get("text"),
            Some("Пропущенный звонок: +79161234567, 2026-12-02 18:04:05, ждал 1 мин 15 с, потерян в очереди. Нужно перезвонить.")
        );
        let en = Values::of("missed", &missed(), &tz, Language::En);
        assert_eq!(
            en.get("text"),
            Some("Missed call: +79161234567 at 2026-12-02 18:04:05, waited 1 min 15 s, lost at: queue. Please call back.")
        );
    }

    #[test]
    fn every_name_has_a_value() {
        let v = Values::of(
            "callback",
            &json!({}),
            &jiff::tz::TimeZone::UTC,
            Language::Ru,
        );
        for n in NAMES {
            assert!(v.get(n).is_some(), "{n}");
        }
        assert!(v
            .get("text")
            .unwrap()
            .starts_with("Обратный звонок скрытый номер"));
    }
}
