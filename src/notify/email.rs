//! The e-mail channel: plain SMTP (RFC 5321) to a relay, on a tokio `TcpStream`.
//!
//! No TLS and no authentication on purpose: perezvon talks to a local relay (postfix, msmtp-mta,
//! OpenSMTPD) that owns the TLS/auth dialogue with the mail provider and its own queue. The
//! dialogue is EHLO (HELO when refused), MAIL FROM, RCPT TO per recipient, DATA with
//! dot-stuffing, QUIT. The body is quoted-printable UTF-8 so it passes any 7-bit relay; the
//! subject is an RFC 2047 encoded word when it is not plain ASCII.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::DeliveryError;
use crate::config::EmailConfig;

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

/// The complete message (headers + body) with CRLF line ends, before dot-stuffing.
pub fn build_message(cfg: &EmailConfig, m: &Mail) -> String {
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
    let mut s = String::new();
    s.push_str(&format!("Date: {}\r\n", clean(&m.date)));
    s.push_str(&format!("From: perezvon <{}>\r\n", cfg.from));
    s.push_str(&format!("To: {}\r\n", cfg.to.join(", ")));
    s.push_str(&format!(
        "Subject: {}\r\n",
        encode_subject(&clean(&m.subject))
    ));
    s.push_str(&format!("Message-ID: <{msg_id}@perezvon>\r\n"));
    s.push_str("MIME-Version: 1.0\r\n");
    s.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    s.push_str("Content-Transfer-Encoding: quoted-printable\r\n");
    s.push_str(&format!("X-Perezvon-Event: {}\r\n", clean(&m.kind)));
    s.push_str(&format!("X-Perezvon-Event-Id: {}\r\n", clean(&m.event_id)));
    s.push_str("\r\n");
    s.push_str(&quoted_printable(&m.body));
    s
}

/// RFC 2047 `=?UTF-8?B?...?=` words (folded) for a non-ASCII subject; ASCII stays as it is.
pub fn encode_subject(subject: &str) -> String {
    if subject.chars().all(|c| (' '..='~').contains(&c)) && !subject.contains("=?") {
        return subject.to_string();
    }
    // 45 bytes of UTF-8 -> 60 base64 chars -> a 72-char encoded word, under the 75 limit.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in subject.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
    }
    words.join("\r\n ")
}

pub fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Quoted-printable (RFC 2045) with CRLF line ends and soft breaks at 76 columns.
pub fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let bytes = line.as_bytes();
        let mut col = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let last = i + 1 == bytes.len();
            let literal =
                (b == b' ' || b == b'\t') && !last || (33..=126).contains(&b) && b != b'=';
            let piece = if literal {
                (b as char).to_string()
            } else {
                format!("={b:02X}")
            };
            if col + piece.len() > 75 {
                out.push_str("=\r\n");
                col = 0;
            }
            out.push_str(&piece);
            col += piece.len();
        }
        out.push_str("\r\n");
    }
    out
}

/// SMTP transparency (RFC 5321 4.5.2): a line starting with `.` gets one more.
pub fn dot_stuff(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 16);
    for line in message.split_inclusive("\r\n") {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
    }
    out
}

struct Smtp {
    reader: BufReader<TcpStream>,
}

impl Smtp {
    /// Reads one (possibly multi-line) reply: its code and text.
    async fn reply(&mut self) -> Result<(u16, String), DeliveryError> {
        let mut text = String::new();
        for _ in 0..100 {
            let mut line = Vec::new();
            let n = (&mut self.reader)
                .take(4096)
                .read_until(b'\n', &mut line)
                .await
                .map_err(DeliveryError::Io)?;
            if n == 0 {
                return Err(DeliveryError::Protocol(
                    "relay closed the connection".into(),
                ));
            }
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end();
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| DeliveryError::Protocol(format!("not an SMTP reply: {line:?}")))?;
            text.push_str(line.get(4..).unwrap_or(""));
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, text));
            }
            text.push('\n');
        }
        Err(DeliveryError::Protocol(
            "SMTP reply of over 100 lines".into(),
        ))
    }

    async fn send(&mut self, line: &str) -> Result<(), DeliveryError> {
        let s = self.reader.get_mut();
        s.write_all(line.as_bytes())
            .await
            .map_err(DeliveryError::Io)?;
        s.write_all(b"\r\n").await.map_err(DeliveryError::Io)
    }

    /// Sends a command and expects a reply whose code starts with `expect` (2 or 3).
    async fn command(&mut self, line: &str, expect: u16) -> Result<(u16, String), DeliveryError> {
        self.send(line).await?;
        let (code, text) = self.reply().await?;
        if code / 100 != expect {
            let verb = line.split([' ', ':']).next().unwrap_or(line);
            return Err(DeliveryError::Rejected(format!("{verb}: {code} {text}")));
        }
        Ok((code, text))
    }
}

/// Sends one mail through the relay. The caller bounds it with the configured timeout.
pub async fn send(cfg: &EmailConfig, mail: &Mail) -> Result<(), DeliveryError> {
    let stream = TcpStream::connect((cfg.smtp_host.as_str(), cfg.smtp_port))
        .await
        .map_err(|e| DeliveryError::Connect {
            addr: format!("{}:{}", cfg.smtp_host, cfg.smtp_port),
            source: e,
        })?;
    let mut s = Smtp {
        reader: BufReader::new(stream),
    };
    let (code, text) = s.reply().await?;
    if code != 220 {
        return Err(DeliveryError::Rejected(format!("greeting: {code} {text}")));
    }
    s.send(&format!("EHLO {}", cfg.helo)).await?;
    let (code, _) = s.reply().await?;
    if code / 100 != 2 {
        // An old relay without ESMTP.
        s.command(&format!("HELO {}", cfg.helo), 2).await?;
    }
    s.command(&format!("MAIL FROM:<{}>", cfg.from), 2).await?;
    for to in &cfg.to {
        s.command(&format!("RCPT TO:<{to}>"), 2).await?;
    }
    s.command("DATA", 3).await?;
    let data = dot_stuff(&build_message(cfg, mail));
    {
        let w = s.reader.get_mut();
        w.write_all(data.as_bytes())
            .await
            .map_err(DeliveryError::Io)?;
        w.write_all(b".\r\n").await.map_err(DeliveryError::Io)?;
    }
    let (code, text) = s.reply().await?;
    if code / 100 != 2 {
        return Err(DeliveryError::Rejected(format!("message: {code} {text}")));
    }
    // The relay has the message: a failing QUIT changes nothing.
    let _ = s.command("QUIT", 2).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn subjects() {
        assert_eq!(encode_subject("Missed call"), "Missed call");
        let s = encode_subject("Пропущенный звонок от +79161234567, потерян в очереди");
        for w in s.split("\r\n ") {
            assert!(
                w.starts_with("=?UTF-8?B?") && w.ends_with("?=") && w.len() <= 75,
                "{w}"
            );
        }
        assert!(s.contains("\r\n "));
    }

    #[test]
    fn qp() {
        assert_eq!(quoted_printable("a=b \nc"), "a=3Db=20\r\nc\r\n");
        assert_eq!(quoted_printable("ж"), "=D0=B6\r\n");
        let long = quoted_printable(&"x".repeat(200));
        assert!(long.split("\r\n").all(|l| l.len() <= 76));
        assert_eq!(long.replace("=\r\n", "").trim_end(), "x".repeat(200));
    }

    #[test]
    fn stuffing() {
        assert_eq!(dot_stuff(".a\r\nb.\r\n.\r\n"), "..a\r\nb.\r\n..\r\n");
    }
}
