//! One AMI message: an ordered list of `Key: Value` headers over a shared byte buffer.
//!
//! Why not a map: AMI repeats keys (`Variable`, `ChanVariable`, `Output`) and their order matters.
//! Why bytes: a CallerIDName may be cp1251 or cut in the middle of a UTF-8 sequence; nothing here
//! may fail on that, so values are `&[u8]` with lossy-UTF-8 accessors on top.
//!
//! A decoded message keeps the frame it came from (`Bytes`, shared, no copy) and a table of
//! offsets into it, so looking a header up copies nothing. The codec writes the tables of many
//! messages one after another into one shared buffer (`TableWriter`), so decoding a message
//! allocates nothing: it takes a reference on the frame's buffer and one on the table's. (So a
//! message kept for long keeps those two buffers alive; perezvon keeps none for long: the tracker
//! copies out what it needs.)

use std::borrow::Cow;
use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// What a message is, decided by its headers (`Event` first: `OriginateResponse` also has `Response`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Asterisk Call Manager/x.y.z`, the first line of every session.
    Banner,
    /// A reply to one action; carries the action's `ActionID`.
    Response,
    /// Unsolicited (or list item, with the ActionID of the list's action).
    Event,
    /// A client request (`Action:`), as the encoder writes it or a fake server reads it.
    Action,
    /// None of the above: still delivered, never dropped.
    Unknown,
}

/// Offsets of one header inside [`Message::buf`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) name: (u32, u32),
    pub(crate) value: (u32, u32),
}

impl Span {
    const SIZE: usize = 16;

    fn to_bytes(self) -> [u8; Span::SIZE] {
        let mut b = [0u8; Span::SIZE];
        for (i, v) in [self.name.0, self.name.1, self.value.0, self.value.1]
            .into_iter()
            .enumerate()
        {
            b[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    #[inline]
    fn from_bytes(b: &[u8; Span::SIZE]) -> Span {
        let at =
            |i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        Span {
            name: (at(0), at(1)),
            value: (at(2), at(3)),
        }
    }
}

/// The header table of one message: its [`Span`]s in wire order, 16 bytes each, in a buffer
/// shared with the tables of other messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Table(Bytes);

impl Table {
    fn len(&self) -> usize {
        self.0.len() / Span::SIZE
    }

    #[inline]
    fn iter(&self) -> impl Iterator<Item = Span> + '_ {
        self.0
            .chunks_exact(Span::SIZE)
            .filter_map(|c| c.try_into().ok())
            .map(Span::from_bytes)
    }

    /// A table of its own (tests, the fake servers, the general parser).
    pub(crate) fn from_spans(spans: &[Span]) -> Table {
        let mut w = TableWriter::with_capacity(spans.len());
        for &s in spans {
            w.push(s);
        }
        w.finish()
    }
}

/// Writes header tables one after another into a shared buffer: [`TableWriter::finish`] hands out
/// what was pushed since the last call as a [`Table`] without copying or allocating; the buffer
/// is replaced (and the old one freed with the last message that uses it) when it is full.
#[derive(Debug, Default)]
pub(crate) struct TableWriter(BytesMut);

impl TableWriter {
    /// Room for `spans` headers before the first reallocation.
    pub(crate) fn with_capacity(spans: usize) -> TableWriter {
        TableWriter(BytesMut::with_capacity(spans * Span::SIZE))
    }

    #[inline]
    pub(crate) fn push(&mut self, span: Span) {
        self.0.extend_from_slice(&span.to_bytes());
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Drops what was pushed since the last [`TableWriter::finish`].
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// The table pushed since the last call.
    pub(crate) fn finish(&mut self) -> Table {
        Table(self.0.split().freeze())
    }
}

/// An AMI message. Cheap to clone (the bytes are shared).
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    buf: Bytes,
    spans: Table,
    kind: Kind,
}

impl Message {
    /// Builds a message from a frame and the header offsets the parser found in it.
    pub(crate) fn from_parts(buf: Bytes, spans: Table) -> Message {
        let mut m = Message {
            buf,
            spans,
            kind: Kind::Unknown,
        };
        m.kind = m.classify();
        m
    }

    /// The banner line (without its line end), e.g. `Asterisk Call Manager/11.0.0`.
    pub fn banner(line: Bytes) -> Message {
        Message {
            buf: line,
            spans: Table::default(),
            kind: Kind::Banner,
        }
    }

    /// Builds a message from header pairs, in order. Used by tests, the fake servers and the demo.
    pub fn from_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Message {
        let mut buf = BytesMut::new();
        let mut spans = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            let (k, v) = (k.as_ref(), v.as_ref());
            let ns = buf.len() as u32;
            buf.put_slice(k);
            let ne = buf.len() as u32;
            buf.put_slice(b": ");
            let vs = buf.len() as u32;
            buf.put_slice(v);
            let ve = buf.len() as u32;
            buf.put_slice(b"\r\n");
            spans.push(Span {
                name: (ns, ne),
                value: (vs, ve),
            });
        }
        Message::from_parts(buf.freeze(), Table::from_spans(&spans))
    }

    fn classify(&self) -> Kind {
        if self.get(b"Event").is_some() {
            Kind::Event
        } else if self.get(b"Response").is_some() {
            Kind::Response
        } else if self.get(b"Action").is_some() {
            Kind::Action
        } else {
            Kind::Unknown
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// For a banner: the whole line. For other kinds: the raw frame the headers point into.
    pub fn raw(&self) -> &Bytes {
        &self.buf
    }

    /// The AMI version of a banner (`11.0.0`), if this is one.
    pub fn banner_version(&self) -> Option<Cow<'_, str>> {
        if self.kind != Kind::Banner {
            return None;
        }
        let slash = memchr::memchr(b'/', &self.buf)?;
        Some(String::from_utf8_lossy(&self.buf[slash + 1..]))
    }

    fn slice(&self, (s, e): (u32, u32)) -> &[u8] {
        if super::codec::is_output_name((s, e)) {
            return b"Output";
        }
        &self.buf[s as usize..e as usize]
    }

    /// All headers, in wire order.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.spans
            .iter()
            .map(|s| (self.slice(s.name), self.slice(s.value)))
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.len() == 0
    }

    /// The first value of a header; the name compares case-insensitively (Asterisk 11 wrote `UniqueID`).
    #[inline]
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.spans.iter().find_map(|s| {
            let n = self.slice(s.name);
            (n.len() == name.len() && n.eq_ignore_ascii_case(name)).then(|| self.slice(s.value))
        })
    }

    /// Every value of a repeated header, in order.
    pub fn get_all<'a>(&'a self, name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// A header as text; invalid UTF-8 is replaced, never an error.
    pub fn get_str(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get(name.as_bytes()).map(String::from_utf8_lossy)
    }

    /// True when the header is present and equals `expected` (ASCII case-insensitive).
    pub fn is(&self, name: &[u8], expected: &[u8]) -> bool {
        self.get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case(expected))
    }

    /// The event name (`Newchannel`), for events.
    pub fn event(&self) -> Option<&[u8]> {
        self.get(b"Event")
    }

    pub fn action_id(&self) -> Option<&[u8]> {
        self.get(b"ActionID")
    }

    /// Channel variables carried as `ChanVariable: name=value` (12+) or
    /// `ChanVariable(Channel): name=value` (Asterisk 11). Yields `(channel, name, value)`.
    pub fn chan_variables(&self) -> impl Iterator<Item = (Option<&[u8]>, &[u8], &[u8])> + '_ {
        self.headers().filter_map(|(n, v)| {
            const P: &[u8] = b"chanvariable";
            if n.len() < P.len() || !n[..P.len()].eq_ignore_ascii_case(P) {
                return None;
            }
            let rest = &n[P.len()..];
            let chan = match rest {
                [] => None,
                [b'(', inner @ .., b')'] => Some(inner),
                _ => return None,
            };
            let eq = memchr::memchr(b'=', v)?;
            Some((chan, &v[..eq], &v[eq + 1..]))
        })
    }

    /// Writes the message in wire form (`Key: Value\r\n`... `\r\n`). A banner is written as its line.
    pub fn write_to(&self, out: &mut BytesMut) {
        if self.kind == Kind::Banner {
            out.put_slice(&self.buf);
            out.put_slice(b"\r\n");
            return;
        }
        for (n, v) in self.headers() {
            out.reserve(n.len() + v.len() + 4);
            out.put_slice(n);
            out.put_slice(b": ");
            out.put_slice(v);
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"\r\n");
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.buf.len() + 2 * self.spans.len() + 4);
        self.write_to(&mut out);
        out.freeze()
    }
}

impl fmt::Debug for Message {
    /// Shows headers as text; a `Secret`/`Key` value is redacted so a logged Login leaks nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == Kind::Banner {
            return write!(f, "Banner({:?})", String::from_utf8_lossy(&self.buf));
        }
        let mut l = f.debug_list();
        debug_headers(&mut l, self.headers());
        l.finish()
    }
}

/// Adds `Name: value` entries to a debug list; a `Secret`/`Key` value prints as `***`, so a
/// logged Login (as a [`Message`] or an `Action`) leaks nothing.
pub(crate) fn debug_headers<'a>(
    l: &mut fmt::DebugList<'_, '_>,
    headers: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) {
    for (n, v) in headers {
        let secret = n.eq_ignore_ascii_case(b"secret") || n.eq_ignore_ascii_case(b"key");
        let v = if secret {
            Cow::Borrowed("***")
        } else {
            String::from_utf8_lossy(v)
        };
        l.entry(&format_args!("{}: {}", String::from_utf8_lossy(n), v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_ordered() {
        let m = Message::from_pairs(&[
            ("Event", "VarSet"),
            ("UniqueID", "1.2"),
            ("Variable", "a=1"),
            ("Variable", "b=2"),
        ]);
        assert_eq!(m.kind(), Kind::Event);
        assert_eq!(m.get(b"Uniqueid"), Some(&b"1.2"[..]));
        let all: Vec<_> = m.get_all(b"variable").collect();
        assert_eq!(all, vec![&b"a=1"[..], &b"b=2"[..]]);
    }

    #[test]
    fn originate_response_is_an_event() {
        let m = Message::from_pairs(&[("Event", "OriginateResponse"), ("Response", "Failure")]);
        assert_eq!(m.kind(), Kind::Event);
    }

    #[test]
    fn cp1251_value_is_lossy_not_an_error() {
        let m = Message::from_pairs(&[
            ("Event", &b"Newchannel"[..]),
            ("CallerIDName", &[0xcf, 0xe5, 0xf2, 0xff][..]),
        ]);
        assert_eq!(m.get_str("CallerIDName").unwrap().chars().count(), 4);
    }

    #[test]
    fn chan_variables_both_forms() {
        let m = Message::from_pairs(&[
            ("Event", "Hangup"),
            ("ChanVariable(SIP/100-0001)", "FOO=bar"),
            ("ChanVariable", "BAZ=q=x"),
        ]);
        let v: Vec<_> = m.chan_variables().collect();
        assert_eq!(v[0], (Some(&b"SIP/100-0001"[..]), &b"FOO"[..], &b"bar"[..]));
        assert_eq!(v[1], (None, &b"BAZ"[..], &b"q=x"[..]));
    }

    #[test]
    fn debug_redacts_secrets() {
        let m = Message::from_pairs(&[("Action", "Login"), ("Secret", "hunter2")]);
        assert!(!format!("{m:?}").contains("hunter2"));
    }
}
