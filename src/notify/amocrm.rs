//! The amoCRM channel (API v4, a long-lived token as `Authorization: Bearer`).
//!
//! - `missed`: the entity linked to the number, else the contact `GET /api/v4/contacts?query=`
//!   finds (204 = none), gets a task (`POST /api/v4/tasks`: call back, due `task_due` after the
//!   miss, `responsible_user_id`). Without either, an unsorted lead with the caller as its contact
//!   is added (`POST /api/v4/leads/unsorted/forms`); its lead is remembered for the number.
//! - `resolved`, `callback`: a note on the linked (or found) entity
//!   (`POST /api/v4/{contacts|leads}/{id}/notes`); nothing when the CRM knows no such number.
//!
//! Answers: 2xx success; 429 is the rate limit (7 requests a second), retried; 401 is a wrong or
//! revoked token and 402/403/404 a disabled account or missing rights: permanent, as is any
//! other 4xx (amoCRM explains it in `title`/`detail`); 5xx are retried.

use std::time::Duration;

use reqwest::header::AUTHORIZATION;
use serde_json::{json, Value};

use super::http::{self, Answer};
use super::text::Values;
use super::DeliveryError;
use crate::config::{AmoCrmConfig, Language};
use crate::store::crm::CrmLink;

pub const CHANNEL: &str = "amocrm";

/// The answer's body (`Null` for an empty one), or what its failure means.
pub fn classify(what: &str, a: &Answer) -> Result<Value, DeliveryError> {
    let v = a.json().unwrap_or(Value::Null);
    if (200..300).contains(&a.status) {
        return Ok(v);
    }
    let mut msg = format!("amocrm {what}: HTTP {}", a.status);
    for k in ["title", "detail"] {
        if let Some(s) = v[k].as_str().filter(|s| !s.is_empty()) {
            msg.push_str(&format!(": {s}"));
        }
    }
    if let Some(errors) = v["validation-errors"].as_array() {
        msg.push_str(&format!(": {}", Value::Array(errors.clone())));
    }
    match a.status {
        429 => Err(DeliveryError::RateLimited {
            why: msg,
            after: Some(a.retry_after.unwrap_or(Duration::from_secs(1))),
        }),
        401 => Err(DeliveryError::Permanent(format!(
            "{msg} (the token is wrong or revoked: check notify.amocrm.token)"
        ))),
        408 => Err(DeliveryError::Rejected(msg)),
        400..=499 => Err(DeliveryError::Permanent(msg)),
        _ => Err(DeliveryError::Rejected(msg)),
    }
}

fn url(cfg: &AmoCrmConfig, path: &str) -> reqwest::Url {
    let mut u = cfg.base_url.clone();
    u.set_path(path);
    u
}

async fn send(
    cfg: &AmoCrmConfig,
    what: &str,
    req: reqwest::RequestBuilder,
) -> Result<Value, DeliveryError> {
    let req = req.header(AUTHORIZATION, format!("Bearer {}", cfg.token.expose()));
    let answer = http::send(req).await?;
    classify(what, &answer)
}

/// The first contact id of a contacts list (`{"_embedded": {"contacts": [{"id": 5}]}}`).
pub fn found_contact(v: &Value) -> Option<String> {
    v["_embedded"]["contacts"].as_array()?.first()?["id"]
        .as_i64()
        .map(|id| id.to_string())
}

/// `POST /api/v4/tasks`'s body.
pub fn task_body(
    cfg: &AmoCrmConfig,
    entity: (&str, &str),
    text: &str,
    now: jiff::Timestamp,
) -> Value {
    let due = now
        .as_second()
        .saturating_add(cfg.task_due.as_secs() as i64);
    let mut task = json!({
        "task_type_id": cfg.task_type_id,
        "text": text,
        "complete_till": due,
        "entity_id": entity.1.parse::<i64>().unwrap_or_default(),
        "entity_type": entity.0,
    });
    if let Some(id) = cfg.responsible_user_id {
        task["responsible_user_id"] = json!(id);
    }
    json!([task])
}

/// `POST /api/v4/{type}/{id}/notes`'s body.
pub fn note_body(text: &str) -> Value {
    json!([{"note_type": "common", "params": {"text": text}}])
}

/// `POST /api/v4/leads/unsorted/forms`'s body: a lead named after the miss, the caller as its
/// contact, the event id as `source_uid`.
pub fn unsorted_body(
    cfg: &AmoCrmConfig,
    values: &Values,
    event_id: &str,
    now: jiff::Timestamp,
) -> Value {
    let number = values.get("number").unwrap_or("");
    let (lead, form) = match cfg.channel.language {
        Language::Ru => (format!("Пропущенный звонок {number}"), "Пропущенный звонок"),
        Language::En => (format!("Missed call {number}"), "Missed call"),
    };
    let mut contact = json!({"name": number});
    if !number.is_empty() {
        contact["custom_fields_values"] =
            json!([{"field_code": "PHONE", "values": [{"value": number, "enum_code": "WORK"}]}]);
    }
    if let Some(id) = cfg.responsible_user_id {
        contact["responsible_user_id"] = json!(id);
    }
    let mut lead = json!({"name": lead.trim()});
    if let Some(id) = cfg.responsible_user_id {
        lead["responsible_user_id"] = json!(id);
    }
    let mut item = json!({
        "source_name": cfg.source_name,
        "source_uid": event_id,
        "created_at": now.as_second(),
        "_embedded": {"leads": [lead], "contacts": [contact]},
        "metadata": {
            "form_id": "perezvon-missed-call",
            "form_name": form,
            "form_page": "perezvon",
            "form_sent_at": now.as_second(),
            "ip": "127.0.0.1",
            "referer": "",
        },
    });
    if let Some(p) = cfg.pipeline_id {
        item["pipeline_id"] = json!(p);
    }
    json!([item])
}

/// The lead id of an unsorted answer.
pub fn unsorted_lead(v: &Value) -> Option<String> {
    v["_embedded"]["unsorted"].as_array()?.first()?["_embedded"]["leads"]
        .as_array()?
        .first()?["id"]
        .as_i64()
        .map(|id| id.to_string())
}

/// Delivers one event. Returns the entity to remember for the number, when it is new.
pub async fn deliver(
    client: &reqwest::Client,
    cfg: &AmoCrmConfig,
    kind: &str,
    event_id: &str,
    values: &Values,
    link: Option<&CrmLink>,
    now: jiff::Timestamp,
) -> Result<Option<CrmLink>, DeliveryError> {
    let digits = values.get("number_digits").unwrap_or("");
    let text = values.get("text").unwrap_or("");
    let new_link = |entity_type: &str, entity_id: String| CrmLink {
        channel: CHANNEL.into(),
        number: digits.to_string(),
        entity_type: entity_type.into(),
        entity_id,
        event_id: event_id.to_string(),
        created_at: now,
    };
    let (entity, found) = match link {
        Some(l) => (Some((l.entity_type.clone(), l.entity_id.clone())), false),
        None if !digits.is_empty() => {
            let mut u = url(cfg, "/api/v4/contacts");
            u.query_pairs_mut().append_pair("query", digits);
            let v = send(cfg, "contacts search", client.get(u)).await?;
            (
                found_contact(&v).map(|id| ("contacts".to_string(), id)),
                true,
            )
        }
        None => (None, false),
    };
    if let Some((entity_type, entity_id)) = entity {
        if kind == "missed" {
            let body = task_body(cfg, (&entity_type, &entity_id), text, now);
            send(
                cfg,
                "tasks",
                client.post(url(cfg, "/api/v4/tasks")).json(&body),
            )
            .await?;
        } else {
            let path = format!("/api/v4/{entity_type}/{entity_id}/notes");
            send(
                cfg,
                "notes",
                client.post(url(cfg, &path)).json(&note_body(text)),
            )
            .await?;
        }
        return Ok(found.then(|| new_link(&entity_type, entity_id)));
    }
    if kind != "missed" {
        return Ok(None);
    }
    let body = unsorted_body(cfg, values, event_id, now);
    let v = send(
        cfg,
        "unsorted",
        client
            .post(url(cfg, "/api/v4/leads/unsorted/forms"))
            .json(&body),
    )
    .await?;
    let lead = unsorted_lead(&v).ok_or_else(|| {
        DeliveryError::Protocol("amocrm unsorted: no lead id in the answer".into())
    })?;
    Ok((!digits.is_empty()).then(|| new_link("leads", lead)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            retry_after: None,
            body: body.into(),
        }
    }

    #[test]
    fn answers() {
        assert_eq!(classify("x", &answer(204, "")).unwrap(), Value::Null);
        assert!(matches!(
            classify("x", &answer(429, "")),
            Err(DeliveryError::RateLimited { .. })
        ));
        match classify(
            "x",
            &answer(
                401,
                r#"{"title":"Unauthorized","status":401,"detail":"Token expired"}"#,
            ),
        ) {
            Err(DeliveryError::Permanent(m)) => assert!(
                m.starts_with("amocrm x: HTTP 401: Unauthorized: Token expired"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify("x", &answer(502, "")),
            Err(DeliveryError::Rejected(_))
        ));
    }

    #[test]
    fn ids() {
        assert_eq!(
            found_contact(&json!({"_embedded": {"contacts": [{"id": 7}]}})),
            Some("7".into())
        );
        assert_eq!(found_contact(&Value::Null), None);
        let v = json!({"_embedded": {"unsorted": [{"uid": "u", "_embedded": {"leads": [{"id": 31}], "contacts": [{"id": 8}]}}]}});
        assert_eq!(unsorted_lead(&v), Some("31".into()));
    }
}
