//! The Telegram channel: `POST {api_url}/bot<token>/sendMessage` with `{chat_id, text}`.
//!
//! Telegram answers `{"ok": true, ...}`, or `{"ok": false, "error_code": N, "description": ...}`
//! with `parameters.retry_after` on a 429 (flood control). 400 (chat not found, bad request),
//! 403 (the bot was blocked or removed) and 404/401 (a wrong token) are permanent: the same
//! message will be refused again. The token is in the URL, so no URL is ever logged.

use std::time::Duration;

use serde_json::{json, Value};

use super::http::{self, Answer};
use super::DeliveryError;
use crate::config::TelegramConfig;

/// The request body.
pub fn body(cfg: &TelegramConfig, text: &str) -> Value {
    json!({
        "chat_id": cfg.chat_id,
        "text": text,
        "disable_web_page_preview": true,
    })
}

/// What an answer means.
pub fn classify(a: &Answer) -> Result<(), DeliveryError> {
    let v = a.json().unwrap_or(Value::Null);
    let description = v["description"].as_str().unwrap_or("").to_string();
    let what = |d: &str| {
        if d.is_empty() {
            format!("telegram: HTTP {}", a.status)
        } else {
            format!("telegram: HTTP {}: {d}", a.status)
        }
    };
    match a.status {
        200..=299 if v["ok"].as_bool() != Some(false) => Ok(()),
        429 => Err(DeliveryError::RateLimited {
            why: what(&description),
            after: v["parameters"]["retry_after"]
                .as_u64()
                .map(|s| Duration::from_secs(s.min(24 * 3600)))
                .or(a.retry_after),
        }),
        401 | 404 => Err(DeliveryError::Permanent(what(
            "the bot token is wrong (check bot_token)",
        ))),
        400..=499 if a.status != 408 => Err(DeliveryError::Permanent(what(&description))),
        _ => Err(DeliveryError::Rejected(what(&description))),
    }
}

/// Sends one message.
pub async fn send(
    client: &reqwest::Client,
    cfg: &TelegramConfig,
    text: &str,
) -> Result<(), DeliveryError> {
    let mut url = cfg.api_url.clone();
    let base = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{base}/bot{}/sendMessage", cfg.bot_token.expose()));
    let answer = http::send(client.post(url).json(&body(cfg, text))).await?;
    classify(&answer)
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
        assert!(classify(&answer(200, r#"{"ok":true,"result":{"message_id":1}}"#)).is_ok());
        match classify(&answer(
            429,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#,
        )) {
            Err(DeliveryError::RateLimited { after, why }) => {
                assert_eq!(after, Some(Duration::from_secs(7)));
                assert!(why.contains("Too Many Requests"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        match classify(&answer(
            400,
            r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#,
        )) {
            Err(DeliveryError::Permanent(m)) => {
                assert_eq!(m, "telegram: HTTP 400: Bad Request: chat not found")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(&answer(
                403,
                r#"{"ok":false,"description":"Forbidden: bot was blocked by the user"}"#
            )),
            Err(DeliveryError::Permanent(_))
        ));
        assert!(matches!(
            classify(&answer(502, "<html>")),
            Err(DeliveryError::Rejected(_))
        ));
    }
}
