//! The HTTPS client every HTTP channel shares: reqwest over rustls with the system trust store,
//! plus a channel's `ca_file` and client certificate. Also the pieces of an answer the channels
//! classify (status, `Retry-After`, a bounded body) and the mapping of transport errors.
//!
//! No error that leaves this module names a URL: a Bitrix24 webhook or a Telegram bot URL holds
//! its token, so reqwest's errors are stripped of theirs.

use std::time::Duration;

use super::DeliveryError;
use crate::config::TlsFiles;

/// The most of an answer's body that is read (errors are short; anything longer is cut).
const MAX_BODY: usize = 64 * 1024;

/// A client for one channel. `timeout` bounds each whole request.
pub fn client(tls: &TlsFiles, timeout: Duration) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(concat!("perezvon/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        // A signed POST is not re-sent somewhere else: a redirect is an answer like any other.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = &tls.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| chain(&e))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if let Some(id) = &tls.identity_pem {
        let id = reqwest::Identity::from_pem(id.expose().as_bytes()).map_err(|e| chain(&e))?;
        b = b.identity(id);
    }
    b.build().map_err(|e| chain(&e))
}

/// An error's message with its causes.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}

/// What came back.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    /// `Retry-After` in seconds, when the server sent one.
    pub retry_after: Option<Duration>,
    /// Up to 64 KiB of the body, lossily decoded.
    pub body: String,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// The body cut to one short line, for an error message.
    pub fn snippet(&self) -> String {
        let one: String = self
            .body
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(200)
            .collect();
        one.trim().to_string()
    }
}

/// Sends a request and reads the answer (status, `Retry-After`, a bounded body).
pub async fn send(req: reqwest::RequestBuilder) -> Result<Answer, DeliveryError> {
    let mut resp = req.send().await.map_err(transport)?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let mut body = Vec::new();
    while body.len() < MAX_BODY {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c),
            Ok(None) => break,
            // The status is what counts; a body cut short only shortens an error message.
            Err(_) => break,
        }
    }
    body.truncate(MAX_BODY);
    Ok(Answer {
        status,
        retry_after,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// `Retry-After: <seconds>` (the HTTP-date form is rare in APIs and is ignored).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(24 * 3600)))
}

/// A transport failure, without the URL.
pub fn transport(e: reqwest::Error) -> DeliveryError {
    let e = e.without_url();
    if e.is_timeout() {
        DeliveryError::Http(format!("no answer in time: {}", chain(&e)))
    } else if e.is_connect() {
        DeliveryError::Http(format!("cannot connect: {}", chain(&e)))
    } else {
        DeliveryError::Http(chain(&e))
    }
}

/// The usual reading of a status for channels without an error format of their own: 2xx is
/// delivery, 408 and 5xx are retried, 429 is retried after `Retry-After`, any other 4xx is
/// permanent (the same request will be refused again).
pub fn classify(what: &str, a: &Answer) -> Result<(), DeliveryError> {
    match a.status {
        200..=299 => Ok(()),
        429 => Err(DeliveryError::RateLimited {
            why: format!("{what}: HTTP 429 {}", a.snippet())
                .trim()
                .to_string(),
            after: a.retry_after,
        }),
        408 => Err(DeliveryError::Rejected(format!("{what}: HTTP 408"))),
        400..=499 => Err(DeliveryError::Permanent(
            format!("{what}: HTTP {} {}", a.status, a.snippet())
                .trim()
                .to_string(),
        )),
        s => Err(DeliveryError::Rejected(
            format!("{what}: HTTP {s} {}", a.snippet())
                .trim()
                .to_string(),
        )),
    }
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
    fn retry_after_seconds_only() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("99999999"),
            Some(Duration::from_secs(86400))
        );
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn statuses() {
        assert!(classify("x", &answer(204, "")).is_ok());
        assert!(matches!(
            classify("x", &answer(429, "")),
            Err(DeliveryError::RateLimited { .. })
        ));
        assert!(matches!(
            classify("x", &answer(408, "")),
            Err(DeliveryError::Rejected(_))
        ));
        assert!(matches!(
            classify("x", &answer(503, "")),
            Err(DeliveryError::Rejected(_))
        ));
        match classify("sms", &answer(400, "bad\nnumber")) {
            Err(DeliveryError::Permanent(m)) => assert_eq!(m, "sms: HTTP 400 bad number"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_ca_file_is_an_error_not_a_panic() {
        let tls = TlsFiles {
            ca_pem: Some(
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
            ),
            identity_pem: None,
        };
        assert!(client(&tls, Duration::from_secs(1)).is_err());
    }
}
