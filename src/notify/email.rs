//! The e-mail channel: one message per outbox row, over SMTP with [`lettre`].
//!
//! lettre owns the protocol (EHLO, STARTTLS or implicit TLS through rustls, AUTH PLAIN/LOGIN,
//! MAIL/RCPT/DATA with dot-stuffing) and the MIME encoding (RFC 2047 subject words, a UTF-8
//! text body in quoted-printable or base64, whichever is shorter). This module builds the
//! message, picks the transport from `[notify.email]`, and sorts lettre's errors into the
//! outbox's three outcomes: a 4xx reply or a broken connection is retried, a 5xx reply gives
//! up (the relay said no for good: a bad recipient, a refused sender, wrong credentials).

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::DeliveryError;
use crate::config::{EmailConfig, SmtpTls};

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub subject: String,
    /// Plain text, `\n` line ends.
    pub body: String,
    /// Becomes the `Message-ID` (receivers' mail clients thread and dedupe on it).
    pub event_id: String,
    pub kind: String,
    /// RFC 5322 date, e.g. `Sun, 22 Nov 2026 20:36:00 +0300`.
    pub date: String,
}

/// The message (headers, MIME body, envelope) for the configured sender and recipients (pure).
/// Fails only on an address the config validation would have refused.
pub fn build_message(cfg: &EmailConfig, m: &Mail) -> Result<Message, String> {
    // Header values from outside never carry a line break into the header block.
    let clean = |s: &str| s.replace(['\r', '\n'], " ");
    let msg_id: String = m
        .event_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '.'
            }
        })
        .collect();
    let from = cfg
        .from
        .parse()
        .map(|a| Mailbox::new(Some("perezvon".into()), a))
        .map_err(|e| format!("notify.email.from {:?}: {e}", cfg.from))?;
    let mut b = Message::builder()
        .from(from)
        .subject(clean(&m.subject))
        .message_id(Some(format!("<{msg_id}@perezvon>")));
    for to in &cfg.to {
        let to: Mailbox = to
            .parse()
            .map_err(|e| format!("notify.email.to {to:?}: {e}"))?;
        b = b.to(to);
    }
    let mut msg = b
        .singlepart(SinglePart::plain(m.body.clone()))
        .map_err(|e| format!("cannot build the message: {e}"))?;
    let h = msg.headers_mut();
    // The date in the PBX's zone, as rendered (lettre's own would be UTC).
    h.insert_raw(HeaderValue::new(
        HeaderName::new_from_ascii_str("Date"),
        clean(&m.date),
    ));
    h.insert_raw(HeaderValue::new(
        HeaderName::new_from_ascii_str("X-Perezvon-Event"),
        clean(&m.kind),
    ));
    h.insert_raw(HeaderValue::new(
        HeaderName::new_from_ascii_str("X-Perezvon-Event-Id"),
        clean(&m.event_id),
    ));
    Ok(msg)
}

/// The transport for one session, as `[notify.email]` describes it.
fn transport(cfg: &EmailConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, DeliveryError> {
    let tls_params = || {
        let mut p = TlsParameters::builder(cfg.smtp_host.clone());
        if let Some((path, pem)) = &cfg.ca {
            let cert = Certificate::from_pem(pem).map_err(|e| {
                DeliveryError::Permanent(format!("notify.email.ca_file {}: {e}", path.display()))
            })?;
            p = p.add_root_certificate(cert);
        }
        p.build_rustls()
            .map_err(|e| DeliveryError::Permanent(format!("TLS setup: {}", chain(&e))))
    };
    let tls = match cfg.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::StartTls => Tls::Required(tls_params()?),
        SmtpTls::Tls => Tls::Wrapper(tls_params()?),
    };
    // `builder_dangerous` only means "no TLS preset": the mode is set right below.
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.smtp_host.as_str())
        .port(cfg.smtp_port)
        .tls(tls)
        .hello_name(ClientId::Domain(cfg.helo.clone()))
        .timeout(Some(cfg.timeout));
    if let Some((user, password)) = &cfg.auth {
        b = b
            .credentials(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            ))
            .authentication(vec![Mechanism::Plain, Mechanism::Login]);
    }
    Ok(b.build())
}

/// Sends one mail through the relay. The caller bounds it with the configured timeout too.
pub async fn send(cfg: &EmailConfig, mail: &Mail) -> Result<(), DeliveryError> {
    let message = build_message(cfg, mail).map_err(DeliveryError::Permanent)?;
    let transport = transport(cfg)?;
    match transport.send(message).await {
        Ok(_) => Ok(()),
        Err(e) => Err(classify(cfg, e)),
    }
}

/// The outbox outcome of a failed session: a 5xx reply is permanent, a 4xx reply, a timeout, a
/// refused or broken connection and a TLS failure are retried (a relay restarts, a certificate
/// gets renewed; `give_up_after` bounds the wait).
fn classify(cfg: &EmailConfig, e: lettre::transport::smtp::Error) -> DeliveryError {
    let text = chain(&e);
    if e.is_permanent() {
        DeliveryError::Permanent(format!("relay refused: {text}"))
    } else if e.is_transient() {
        DeliveryError::Rejected(text)
    } else {
        DeliveryError::Connect {
            addr: format!("{}:{}", cfg.smtp_host, cfg.smtp_port),
            source: std::io::Error::other(text),
        }
    }
}

/// An error with its causes, `: `-separated, without repeating a cause the message already
/// ends with.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let c_text = c.to_string();
        if !s.ends_with(&c_text) {
            s.push_str(": ");
            s.push_str(&c_text);
        }
        src = c.source();
    }
    s
}

// --- the scheduled report (the reporting work) ---------------------------------------------

/// The report as a mail: a plain-text and an HTML alternative (the HTML page is self-contained:
/// styles and SVG charts inline, nothing for a mail client to fetch), to the report's own
/// recipients (`report.email.to`) through `[notify.email]`'s relay and sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportMail {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// Becomes the `Message-ID`.
    pub id: String,
    /// RFC 5322 date in the configured zone.
    pub date: String,
}

/// The report message (pure).
pub fn build_report_message(cfg: &EmailConfig, m: &ReportMail) -> Result<Message, String> {
    let clean = |s: &str| s.replace(['\r', '\n'], " ");
    let msg_id: String =
        m.id.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '.'
                }
            })
            .collect();
    let from = cfg
        .from
        .parse()
        .map(|a| Mailbox::new(Some("perezvon".into()), a))
        .map_err(|e| format!("notify.email.from {:?}: {e}", cfg.from))?;
    let mut b = Message::builder()
        .from(from)
        .subject(clean(&m.subject))
        .message_id(Some(format!("<{msg_id}@perezvon>")));
    for to in &m.to {
        let to: Mailbox = to
            .parse()
            .map_err(|e| format!("report.email.to {to:?}: {e}"))?;
        b = b.to(to);
    }
    let mut msg = b
        .multipart(lettre::message::MultiPart::alternative_plain_html(
            m.text.clone(),
            m.html.clone(),
        ))
        .map_err(|e| format!("cannot build the message: {e}"))?;
    let h = msg.headers_mut();
    h.insert_raw(HeaderValue::new(
        HeaderName::new_from_ascii_str("Date"),
        clean(&m.date),
    ));
    h.insert_raw(HeaderValue::new(
        HeaderName::new_from_ascii_str("X-Perezvon-Event"),
        "report".into(),
    ));
    Ok(msg)
}

/// Sends the report through the relay of `[notify.email]`, bounded by its timeout.
pub async fn send_report(cfg: &EmailConfig, mail: &ReportMail) -> Result<(), DeliveryError> {
    let message = build_report_message(cfg, mail).map_err(DeliveryError::Permanent)?;
    let transport = transport(cfg)?;
    match tokio::time::timeout(cfg.timeout, transport.send(message)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(classify(cfg, e)),
        Err(_) => Err(DeliveryError::Timeout(cfg.timeout)),
    }
}
