//! The webhook channel: one JSON POST per event over plain HTTP/1.1, written by hand on a tokio
//! `TcpStream` (a request this small needs no HTTP library). A 2xx status is delivery; anything
//! else, a refused connection or the timeout is a failed attempt the outbox retries.
//!
//! Headers a receiver can rely on (docs/WEBHOOK.md):
//! `X-Perezvon-Event`, `X-Perezvon-Event-Id` = `Idempotency-Key` (stable across retries: dedupe
//! on it), `X-Perezvon-Timestamp` (unix seconds of this attempt), `X-Perezvon-Delivery-Attempt`,
//! and with a shared secret `X-Perezvon-Signature: sha256=<hex HMAC-SHA256(secret, body)>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::DeliveryError;
use crate::config::{HttpUrl, Secret, WebhookConfig};

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

/// The bytes of the request (pure, so the exact wire format is testable).
pub fn build_request(url: &HttpUrl, secret: Option<&Secret>, r: &Request) -> Vec<u8> {
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let host = if url.port == 80 {
        host
    } else {
        format!("{host}:{}", url.port)
    };
    // Event ids and kinds are made by perezvon from validated parts, but a header value must
    // never carry a line break, whatever produced it.
    let clean = |s: &str| s.replace(['\r', '\n'], "");
    let mut head = format!(
        "POST {path} HTTP/1.1\r\n\
         Host: {host}\r\n\
         User-Agent: perezvon/{version}\r\n\
         Content-Type: application/json; charset=utf-8\r\n\
         Content-Length: {len}\r\n\
         Connection: close\r\n\
         Idempotency-Key: {id}\r\n\
         X-Perezvon-Event: {kind}\r\n\
         X-Perezvon-Event-Id: {id}\r\n\
         X-Perezvon-Timestamp: {ts}\r\n\
         X-Perezvon-Delivery-Attempt: {attempt}\r\n",
        path = url.path,
        version = env!("CARGO_PKG_VERSION"),
        len = r.body.len(),
        id = clean(r.event_id),
        kind = clean(r.kind),
        ts = r.timestamp,
        attempt = r.attempt,
    );
    if let Some(secret) = secret {
        head.push_str(&format!(
            "X-Perezvon-Signature: {}\r\n",
            signature(secret, r.body.as_bytes())
        ));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(r.body.as_bytes());
    bytes
}

/// Parses `HTTP/1.1 200 OK` into the status code.
pub fn parse_status_line(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.trim_end().splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok().filter(|c| (100..600).contains(c))
}

/// Posts one event; `Ok` only for a 2xx answer. The caller bounds it with the configured timeout.
pub async fn post(cfg: &WebhookConfig, r: &Request<'_>) -> Result<u16, DeliveryError> {
    let url = &cfg.endpoint;
    let mut stream = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| DeliveryError::Connect {
            addr: format!("{}:{}", url.host, url.port),
            source: e,
        })?;
    let bytes = build_request(url, cfg.secret.as_ref(), r);
    stream.write_all(&bytes).await.map_err(DeliveryError::Io)?;
    stream.flush().await.map_err(DeliveryError::Io)?;

    // Only the status line matters; a receiver's body is not read.
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    let line_end = loop {
        if let Some(i) = buf.iter().position(|b| *b == b'\n') {
            break i;
        }
        if buf.len() > 8192 {
            return Err(DeliveryError::Protocol(
                "status line longer than 8 KiB".into(),
            ));
        }
        let n = stream.read(&mut chunk).await.map_err(DeliveryError::Io)?;
        if n == 0 {
            return Err(DeliveryError::Protocol(
                "connection closed before a status line".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let line = &buf[..line_end];
    let code = parse_status_line(line).ok_or_else(|| {
        DeliveryError::Protocol(format!(
            "not an HTTP status line: {:?}",
            String::from_utf8_lossy(&line[..line.len().min(80)])
        ))
    })?;
    if (200..300).contains(&code) {
        Ok(code)
    } else {
        Err(DeliveryError::Rejected(format!(
            "HTTP {}",
            String::from_utf8_lossy(line)
                .trim()
                .trim_start_matches(|c: char| c != ' ')
                .trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 204"), Some(204));
        assert_eq!(
            parse_status_line(b"HTTP/1.1 500 Internal Server Error"),
            Some(500)
        );
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 20 OK"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 999 X"), None);
        assert_eq!(parse_status_line(b"\xff\xfe"), None);
    }

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
    fn request_bytes() {
        let url = HttpUrl::parse("http://[::1]:8080/hook?a=1").unwrap();
        let r = Request {
            event_id: "missed:pbx1:17.1\r\nX: y",
            kind: "missed",
            body: "{\"a\":1}",
            attempt: 2,
            timestamp: 1_800_000_000,
        };
        let text = String::from_utf8(build_request(&url, Some(&Secret::new("k")), &r)).unwrap();
        assert!(
            text.starts_with("POST /hook?a=1 HTTP/1.1\r\nHost: [::1]:8080\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Length: 7\r\n"));
        assert!(text.contains("Idempotency-Key: missed:pbx1:17.1X: y\r\n"));
        assert!(text.contains("X-Perezvon-Delivery-Attempt: 2\r\n"));
        assert!(text.contains(&format!(
            "X-Perezvon-Signature: {}\r\n",
            signature(&Secret::new("k"), b"{\"a\":1}")
        )));
        assert!(text.ends_with("\r\n\r\n{\"a\":1}"));
        let unsigned = String::from_utf8(build_request(&url, None, &r)).unwrap();
        assert!(!unsigned.contains("Signature"));
    }
}
