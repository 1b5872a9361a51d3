//! The webhook channel: one JSON POST per event over HTTPS (reqwest over rustls; `http://` only
//! to a loopback receiver). A 2xx status is delivery; anything else, a refused connection, a
//! refused certificate or the timeout is a failed attempt the outbox retries, a 429 no sooner
//! than its `Retry-After`.
//!
//! Headers a receiver can rely on (docs/WEBHOOK.md):
//! `X-Perezvon-Event`, `X-Perezvon-Event-Id` = `Idempotency-Key` (stable across retries: dedupe
//! on it), `X-Perezvon-Timestamp` (unix seconds of this attempt), `X-Perezvon-Delivery-Attempt`,
//! and with a shared secret `X-Perezvon-Signature: sha256=<hex HMAC-SHA256(secret, body)>`.

use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use sha2::Sha256;

use super::http::{self, Answer};
use super::DeliveryError;
use crate::config::{Secret, WebhookConfig};

/// One request to send.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub event_id: &'a str,
    pub kind: &'a str,
    pub body: &'a str,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Unix seconds, sent as `X-Perezvon-Timestamp`.
    pub timestamp: i64,
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &Secret, body: &[u8]) -> String {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The headers of the request (pure, so what a receiver gets is testable). Values that are not
/// valid in a header (a line break) lose the offending characters: an event id is made by
/// perezvon from validated parts, but a header must never carry a line break whatever made it.
pub fn headers(secret: Option<&Secret>, r: &Request) -> HeaderMap {
    let value = |s: &str| {
        let clean: String = s.chars().filter(|c| !c.is_control()).collect();
        HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    };
    let mut h = HeaderMap::new();
    let mut put = |name: &'static str, v: HeaderValue| {
        h.insert(HeaderName::from_static(name), v);
    };
    put("idempotency-key", value(r.event_id));
    put("x-perezvon-event", value(r.kind));
    put("x-perezvon-event-id", value(r.event_id));
    put("x-perezvon-timestamp", HeaderValue::from(r.timestamp));
    put("x-perezvon-delivery-attempt", HeaderValue::from(r.attempt));
    if let Some(secret) = secret {
        put(
            "x-perezvon-signature",
            value(&signature(secret, r.body.as_bytes())),
        );
    }
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h
}

/// What an answer means for the webhook: 2xx delivered; 429 retried after `Retry-After`; every
/// other status retried with the channel's backoff (a receiver that is being deployed may answer
/// 404 for a minute).
pub fn classify(a: &Answer) -> Result<(), DeliveryError> {
    match a.status {
        200..=299 => Ok(()),
        429 => Err(DeliveryError::RateLimited {
            why: "HTTP 429".into(),
            after: a.retry_after,
        }),
        s => Err(DeliveryError::Rejected(format!("HTTP {s}"))),
    }
}

/// Posts one event; `Ok` only for a 2xx answer. The caller bounds it with the configured timeout.
pub async fn post(
    client: &reqwest::Client,
    cfg: &WebhookConfig,
    r: &Request<'_>,
) -> Result<u16, DeliveryError> {
    let req = client
        .post(cfg.endpoint.clone())
        .headers(headers(cfg.secret.as_ref(), r))
        .body(r.body.to_string());
    let answer = http::send(req).await?;
    classify(&answer).map(|()| answer.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2.
        let s = signature(&Secret::new("Jefe"), b"what do ya want for nothing?");
        assert_eq!(
            s,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn request_headers() {
        let r = Request {
            event_id: "missed:pbx1:17.1\r\nX: y",
            kind: "missed",
            body: "{\"a\":1}",
            attempt: 2,
            timestamp: 1_800_000_000,
        };
        let h = headers(Some(&Secret::new("k")), &r);
        assert_eq!(h["idempotency-key"], "missed:pbx1:17.1X: y");
        assert_eq!(h["x-perezvon-event-id"], "missed:pbx1:17.1X: y");
        assert_eq!(h["x-perezvon-delivery-attempt"], "2");
        assert_eq!(h["x-perezvon-timestamp"], "1800000000");
        assert_eq!(
            h["x-perezvon-signature"],
            signature(&Secret::new("k"), b"{\"a\":1}").as_str()
        );
        assert!(!headers(None, &r).contains_key("x-perezvon-signature"));
    }

    #[test]
    fn statuses() {
        let a = |status| Answer {
            status,
            retry_after: Some(std::time::Duration::from_secs(3)),
            body: String::new(),
        };
        assert!(classify(&a(202)).is_ok());
        assert!(matches!(
            classify(&a(429)),
            Err(DeliveryError::RateLimited { after: Some(d), .. }) if d.as_secs() == 3
        ));
        assert!(matches!(classify(&a(404)), Err(DeliveryError::Rejected(_))));
        assert!(matches!(classify(&a(500)), Err(DeliveryError::Rejected(_))));
    }
}
