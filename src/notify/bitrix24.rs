//! The Bitrix24 channel, through an inbound webhook (`https://<portal>/rest/<user>/<token>/`):
//! every call is `POST <webhook_url><method>.json` with a JSON body.
//!
//! - `missed`: the customer's entity is the one linked to the number (an earlier event created or
//!   found it), else the contact `crm.duplicate.findbycomm` finds by phone; it gets a timeline
//!   comment (`crm.timeline.comment.add`). Without either, a lead is created (`crm.lead.add`,
//!   `ASSIGNED_BY_ID` = `responsible_id`). The entity is remembered for the number.
//! - `resolved`, `callback`: a comment on the linked (or found) entity; nothing when the CRM knows
//!   no entity of the number.
//!
//! Bitrix24 answers `{"result": ...}`, or `{"error": CODE, "error_description": ...}`: HTTP 503
//! `QUERY_LIMIT_EXCEEDED` is its rate limit (retried), 401 `invalid_token`/`NO_AUTH_FOUND` and
//! the like are permanent until the configuration changes, other 4xx are permanent, 5xx are
//! retried. The webhook URL holds the token and is never logged.

use std::time::Duration;

use serde_json::{json, Value};

use super::http::{self, Answer};
use super::text::Values;
use super::DeliveryError;
use crate::config::{Bitrix24Config, Language};
use crate::store::crm::CrmLink;

pub const CHANNEL: &str = "bitrix24";

/// Error codes that mean the webhook URL, its token or its rights are wrong.
const AUTH_ERRORS: [&str; 8] = [
    "invalid_token",
    "expired_token",
    "NO_AUTH_FOUND",
    "INVALID_CREDENTIALS",
    "insufficient_scope",
    "ACCESS_DENIED",
    "authorization_error",
    "WRONG_AUTH_TYPE",
];

/// The `result` of a call, or what its failure means.
pub fn classify(method: &str, a: &Answer) -> Result<Value, DeliveryError> {
    let v = a.json().unwrap_or(Value::Null);
    let code = v["error"].as_str().unwrap_or("");
    let description = v["error_description"].as_str().unwrap_or("");
    let what = || {
        let mut s = format!("bitrix24 {method}: HTTP {}", a.status);
        if !code.is_empty() {
            s.push_str(&format!(" {code}"));
        }
        if !description.is_empty() {
            s.push_str(&format!(": {description}"));
        }
        s
    };
    if (200..300).contains(&a.status) && code.is_empty() {
        return match v.get("result") {
            Some(r) => Ok(r.clone()),
            None => Err(DeliveryError::Protocol(format!(
                "bitrix24 {method}: an answer without a result: {}",
                a.snippet()
            ))),
        };
    }
    if code == "QUERY_LIMIT_EXCEEDED" || a.status == 503 || a.status == 429 {
        return Err(DeliveryError::RateLimited {
            why: what(),
            // Bitrix24 refills its request budget at about two requests a second.
            after: Some(a.retry_after.unwrap_or(Duration::from_secs(2))),
        });
    }
    if a.status == 401 || AUTH_ERRORS.contains(&code) {
        return Err(DeliveryError::Permanent(format!(
            "{} (check notify.bitrix24.webhook_url and the webhook's CRM rights)",
            what()
        )));
    }
    match a.status {
        408 => Err(DeliveryError::Rejected(what())),
        400..=499 => Err(DeliveryError::Permanent(what())),
        _ => Err(DeliveryError::Rejected(what())),
    }
}

async fn call(
    client: &reqwest::Client,
    cfg: &Bitrix24Config,
    method: &str,
    body: &Value,
) -> Result<Value, DeliveryError> {
    let url = reqwest::Url::parse(&format!("{}{method}.json", cfg.webhook_url.expose()))
        .map_err(|_| DeliveryError::Permanent("notify.bitrix24.webhook_url is not a URL".into()))?;
    let answer = http::send(client.post(url).json(body)).await?;
    classify(method, &answer)
}

/// `crm.duplicate.findbycomm`'s body for a phone number.
pub fn find_body(phone: &str) -> Value {
    json!({"entity_type": "CONTACT", "type": "PHONE", "values": [phone]})
}

/// The first contact id of a `crm.duplicate.findbycomm` result (`{"CONTACT": [5]}`; `[]` when
/// there is none).
pub fn found_contact(result: &Value) -> Option<String> {
    result["CONTACT"].as_array()?.first().map(|id| match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// `crm.lead.add`'s body.
pub fn lead_body(cfg: &Bitrix24Config, values: &Values, event_id: &str) -> Value {
    let number = values.get("number").unwrap_or("");
    let title = match cfg.channel.language {
        Language::Ru => format!("Пропущенный звонок {number}"),
        Language::En => format!("Missed call {number}"),
    };
    let mut fields = json!({
        "TITLE": title.trim(),
        "SOURCE_ID": cfg.source_id,
        "SOURCE_DESCRIPTION": format!("perezvon {event_id}"),
        "COMMENTS": values.get("text").unwrap_or(""),
        "OPENED": "Y",
    });
    if !number.is_empty() {
        fields["PHONE"] = json!([{"VALUE": number, "VALUE_TYPE": "WORK"}]);
    }
    if let Some(id) = cfg.responsible_id {
        fields["ASSIGNED_BY_ID"] = json!(id);
    }
    json!({"fields": fields, "params": {"REGISTER_SONET_EVENT": "Y"}})
}

/// `crm.timeline.comment.add`'s body.
pub fn comment_body(cfg: &Bitrix24Config, entity_type: &str, entity_id: &str, text: &str) -> Value {
    let mut fields = json!({
        "ENTITY_ID": entity_id.parse::<i64>().map(Value::from).unwrap_or_else(|_| json!(entity_id)),
        "ENTITY_TYPE": entity_type.to_ascii_lowercase(),
        "COMMENT": text,
    });
    if let Some(id) = cfg.responsible_id {
        fields["AUTHOR_ID"] = json!(id);
    }
    json!({"fields": fields})
}

fn id_of(result: &Value) -> Option<String> {
    match result {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Delivers one event. Returns the entity to remember for the number, when it is new.
pub async fn deliver(
    client: &reqwest::Client,
    cfg: &Bitrix24Config,
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
            let r = call(
                client,
                cfg,
                "crm.duplicate.findbycomm",
                &find_body(&format!("+{digits}")),
            )
            .await?;
            (
                found_contact(&r).map(|id| ("CONTACT".to_string(), id)),
                true,
            )
        }
        None => (None, false),
    };
    if let Some((entity_type, entity_id)) = entity {
        call(
            client,
            cfg,
            "crm.timeline.comment.add",
            &comment_body(cfg, &entity_type, &entity_id, text),
        )
        .await?;
        return Ok(found.then(|| new_link(&entity_type, entity_id)));
    }
    if kind != "missed" {
        // No entity to write the outcome on: the CRM never heard of this number.
        return Ok(None);
    }
    let r = call(
        client,
        cfg,
        "crm.lead.add",
        &lead_body(cfg, values, event_id),
    )
    .await?;
    let id = id_of(&r).ok_or_else(|| {
        DeliveryError::Protocol(format!("bitrix24 crm.lead.add: no lead id in {r}"))
    })?;
    Ok((!digits.is_empty()).then(|| new_link("LEAD", id)))
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
        assert_eq!(
            classify("crm.lead.add", &answer(200, r#"{"result":42,"time":{}}"#)).unwrap(),
            json!(42)
        );
        assert!(matches!(
            classify(
                "m",
                &answer(
                    503,
                    r#"{"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many requests"}"#
                )
            ),
            Err(DeliveryError::RateLimited { after: Some(_), .. })
        ));
        match classify(
            "m",
            &answer(
                401,
                r#"{"error":"invalid_token","error_description":"Unable to authorize user"}"#,
            ),
        ) {
            Err(DeliveryError::Permanent(m)) => assert!(
                m.starts_with("bitrix24 m: HTTP 401 invalid_token: Unable to authorize user"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(
                "m",
                &answer(
                    400,
                    r#"{"error":"ERROR_CORE","error_description":"bad field"}"#
                )
            ),
            Err(DeliveryError::Permanent(_))
        ));
        assert!(matches!(
            classify("m", &answer(500, "")),
            Err(DeliveryError::Rejected(_))
        ));
        assert!(matches!(
            classify("m", &answer(200, "{}")),
            Err(DeliveryError::Protocol(_))
        ));
    }

    #[test]
    fn found_contacts() {
        assert_eq!(found_contact(&json!({"CONTACT": [5, 9]})), Some("5".into()));
        assert_eq!(found_contact(&json!([])), None);
    }
}
