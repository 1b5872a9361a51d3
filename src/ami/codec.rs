//! The AMI codec: frame first, parse second.
//!
//! The framer (`super::scan`) finds the end of a message (an empty line, `\r\n` or bare `\n`)
//! from a remembered index, so a message that arrives one byte at a time is scanned once, not
//! once per read, and splits an ordinary frame's lines into headers as it goes. Legacy
//! `Response: Follows` frames and a stream cut by EOF go to the nom parser (`parse_slow`), the
//! same grammar, property-tested equal. Everything odd a real Asterisk sends is accepted: the
//! banner line, extra blank lines, `\r\n\n`, `Follows` bodies that contain blank lines, lines
//! with no colon (skipped and counted). A message larger than the cap is skipped up to the next
//! boundary and counted; the session goes on. "Need more bytes" is `Ok(None)`, never an error:
//! this decoder has no error path at all.

use bytes::{Buf, Bytes, BytesMut};
use nom::{
    bytes::complete::{tag, take_till1},
    character::complete::char,
    combinator::opt,
    IResult,
};
use tokio_util::codec::{Decoder, Encoder};

use super::message::{Message, Span, Table};
use super::scan::{FrameScan, Simd, BANNER_PREFIX, END_COMMAND, FOLLOWS};

/// Default cap on one message: far above anything Asterisk sends, small enough to bound memory.
pub const DEFAULT_MAX_MESSAGE: usize = 1024 * 1024;

/// Marks a span whose name is the synthetic `Output` (a legacy `Follows` body line).
const OUTPUT_NAME: (u32, u32) = (u32::MAX, u32::MAX);

/// Counters of what the decoder saw; nothing is dropped without being counted here.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DecodeStats {
    /// Messages delivered (banner included).
    pub messages: u64,
    /// Bytes consumed from the stream.
    pub bytes: u64,
    /// Lines without a colon inside a message: skipped.
    pub malformed_lines: u64,
    /// Frames that held no usable header at all: skipped.
    pub empty_messages: u64,
    /// Messages over the size cap: skipped up to the next boundary.
    pub oversized: u64,
    /// A message cut off by the end of the stream.
    pub truncated: u64,
}

impl DecodeStats {
    /// Anything skipped or damaged.
    pub fn problems(&self) -> u64 {
        self.malformed_lines + self.empty_messages + self.oversized + self.truncated
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Start of a session: the first line may be the banner.
    Banner,
    /// Looking for the end of the current message.
    Frame,
    /// Discarding an oversized message up to the next empty line.
    Skip,
}

/// tokio-util codec for the AMI stream (both directions: the encoder writes any [`Message`]).
#[derive(Debug)]
pub struct AmiCodec {
    max_message: usize,
    state: State,
    simd: Simd,
    /// The frame being scanned (Frame state) or skipped (Skip state).
    st: FrameScan,
    /// In Skip: bytes of the line now at the buffer start were already dropped, so that line is
    /// not empty even if what is left of it is.
    carry_nonempty: bool,
    /// In Skip: the oversized frame is a banner line, which ends at its line end.
    skip_line: bool,
    stats: DecodeStats,
}

impl Default for AmiCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl AmiCodec {
    pub fn new() -> AmiCodec {
        Self::with_max_message(DEFAULT_MAX_MESSAGE)
    }

    /// A codec that skips messages larger than `max` bytes.
    pub fn with_max_message(max: usize) -> AmiCodec {
        AmiCodec {
            max_message: max.max(64),
            state: State::Banner,
            simd: Simd::detect(),
            st: FrameScan::new(),
            carry_nonempty: false,
            skip_line: false,
            stats: DecodeStats::default(),
        }
    }

    /// A codec whose framer uses `simd` (tests: every masker must decode identically).
    #[cfg(test)]
    fn with_simd(max: usize, simd: Simd) -> AmiCodec {
        AmiCodec {
            simd,
            ..Self::with_max_message(max)
        }
    }

    /// What was decoded, skipped and counted so far.
    pub fn stats(&self) -> DecodeStats {
        self.stats
    }

    fn reset_frame(&mut self) {
        self.st.reset();
        self.carry_nonempty = false;
        self.skip_line = false;
    }

    /// The framer of the Frame state (see [`super::scan`]).
    fn find_frame_end(&mut self, src: &[u8]) -> Option<usize> {
        self.st.find_end(self.simd, src)
    }

    /// Scans complete lines from `self.scan`; returns the end (exclusive) of the frame when its
    /// terminating empty line is found. Leaves `self.scan` at the first unscanned line start.
    /// Used to skip oversized messages (the Skip state).
    fn find_end(&mut self, src: &[u8]) -> Option<usize> {
        let base = self.st.scan;
        let mut line_start = base;
        for nl in memchr::memchr_iter(b'\n', &src[base..]) {
            let end = base + nl;
            if self.skip_line {
                self.st.scan = 0;
                return Some(end + 1);
            }
            let mut line = trim_cr(&src[line_start..end]);
            if std::mem::take(&mut self.carry_nonempty) && line.is_empty() {
                line = b"-";
            }
            if line_start == 0 && self.state == State::Frame {
                self.st.follows = line == FOLLOWS;
                // A banner after the first message: `record` appends a new session after a
                // reconnect, and the banner has no blank line after it.
                if line.starts_with(BANNER_PREFIX) {
                    self.st.scan = 0;
                    self.st.banner = true;
                    return Some(end + 1);
                }
            }
            if line.is_empty() {
                if !self.st.follows || self.st.end_command {
                    self.st.scan = 0;
                    return Some(end + 1);
                }
            } else if self.st.follows && line.ends_with(END_COMMAND) {
                self.st.end_command = true;
            }
            line_start = end + 1;
        }
        self.st.scan = line_start;
        None
    }

    fn consume(&mut self, src: &mut BytesMut, n: usize) {
        src.advance(n);
        self.stats.bytes += n as u64;
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    match line {
        [rest @ .., b'\r'] => rest,
        _ => line,
    }
}

impl Decoder for AmiCodec {
    type Item = Message;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, Self::Error> {
        loop {
            match self.state {
                State::Banner => {
                    let Some(nl) = memchr::memchr(b'\n', src) else {
                        let long = src.len() > self.max_message;
                        if long
                            || src.len() >= BANNER_PREFIX.len() && !src.starts_with(BANNER_PREFIX)
                        {
                            self.state = State::Frame;
                            continue;
                        }
                        return Ok(None);
                    };
                    self.state = State::Frame;
                    if src.starts_with(BANNER_PREFIX) && nl + 1 > self.max_message {
                        // The cap holds for the banner too (as when it comes mid-stream).
                        self.stats.oversized += 1;
                        self.consume(src, nl + 1);
                        continue;
                    }
                    if src.starts_with(BANNER_PREFIX) {
                        let line = Bytes::copy_from_slice(trim_cr(&src[..nl]));
                        self.consume(src, nl + 1);
                        self.stats.messages += 1;
                        return Ok(Some(Message::banner(line)));
                    }
                }
                State::Frame => {
                    if self.st.scan == 0 {
                        // Extra blank lines between messages (and the second `\n` of `\r\n\n`).
                        // Only whole blank lines: a `\r` before anything but `\n` is content
                        // (found by fuzzing: "\rName: v" must keep its name).
                        let mut blank = 0;
                        loop {
                            match &src[blank..] {
                                [b'\n', ..] => blank += 1,
                                [b'\r', b'\n', ..] => blank += 2,
                                _ => break,
                            }
                        }
                        if blank > 0 {
                            self.consume(src, blank);
                        }
                        // A lone `\r` may be half of a `\r\n` still to come: wait for the next byte.
                        if src.is_empty() || src[..] == b"\r"[..] {
                            return Ok(None);
                        }
                    }
                    match self.find_frame_end(src) {
                        Some(end) if end > self.max_message => {
                            self.stats.oversized += 1;
                            self.consume(src, end);
                            self.reset_frame();
                        }
                        Some(end) if self.st.banner => {
                            let line = src.split_to(end).freeze();
                            self.stats.bytes += end as u64;
                            self.reset_frame();
                            self.stats.messages += 1;
                            let len = trim_cr(&line[..end - 1]).len();
                            return Ok(Some(Message::banner(line.slice(..len))));
                        }
                        Some(end) => {
                            let frame = src.split_to(end).freeze();
                            self.stats.bytes += end as u64;
                            let parsed = if self.st.follows {
                                parse_slow(frame, true, &mut self.stats)
                            } else {
                                // The framer already split every line: the table is the parse.
                                self.stats.malformed_lines += self.st.malformed;
                                (!self.st.spans.is_empty())
                                    .then(|| Message::from_parts(frame, self.st.spans.finish()))
                            };
                            self.reset_frame();
                            match parsed {
                                Some(m) => {
                                    self.stats.messages += 1;
                                    return Ok(Some(m));
                                }
                                None => self.stats.empty_messages += 1,
                            }
                        }
                        None if src.len() > self.max_message => {
                            self.stats.oversized += 1;
                            // Still on the first line: if it is a banner, only that line goes.
                            // (Past it, `find_frame_end` would have returned the banner.)
                            self.skip_line = self.st.scan == 0 && src.starts_with(BANNER_PREFIX);
                            self.state = State::Skip;
                        }
                        None => return Ok(None),
                    }
                }
                State::Skip => {
                    // The skipped frame ends where it would have ended whole: at the next empty
                    // line, after `--END COMMAND--` for a Follows frame, at the line end for a
                    // banner. Then whole and piecewise decoding count the same.
                    match self.find_end(src) {
                        Some(end) => {
                            self.consume(src, end);
                            self.reset_frame();
                            self.state = State::Frame;
                        }
                        None => {
                            // Drop every complete line and most of the partial one, but remember
                            // that the line in progress is not empty ("x\r" + "\n" is not a
                            // boundary). Its last bytes are kept: they may begin the `\r\n` or the
                            // `--END COMMAND--` that ends this line.
                            let partial = &src[self.st.scan..];
                            let keep = partial.len().min(END_COMMAND.len() + 1);
                            let dropped_partial = partial.len() - keep;
                            let n = src.len() - keep;
                            if dropped_partial > 0 {
                                self.carry_nonempty = true;
                            }
                            self.consume(src, n);
                            self.st.scan = 0;
                            return Ok(None);
                        }
                    }
                }
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Message>, Self::Error> {
        if let Some(m) = self.decode(src)? {
            return Ok(Some(m));
        }
        if self.state == State::Skip {
            let n = src.len();
            self.consume(src, n);
            self.reset_frame();
            return Ok(None);
        }
        let rest = trim_blank(src);
        if rest.is_empty() {
            let n = src.len();
            self.consume(src, n);
            return Ok(None);
        }
        // The stream ended inside a message: deliver its complete lines, count it as truncated.
        self.stats.truncated += 1;
        let n = src.len();
        let mut frame = src.split_to(n);
        self.stats.bytes += n as u64;
        let follows = self.st.follows;
        self.reset_frame();
        // Cut at the last complete line; a half line is not a header.
        let complete = memchr::memrchr(b'\n', &frame).map_or(0, |i| i + 1);
        frame.truncate(complete);
        if frame.is_empty() {
            return Ok(None);
        }
        frame.extend_from_slice(b"\r\n");
        Ok(
            parse_slow(frame.freeze(), follows, &mut self.stats).inspect(|_| {
                self.stats.messages += 1;
            }),
        )
    }
}

fn trim_blank(src: &[u8]) -> &[u8] {
    let start = src
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(src.len());
    &src[start..]
}

/// `line = name ":" [" "] value EOL` — the name is one or more bytes up to the first colon, the
/// value is the rest of the line (it may be empty, may contain colons, may be any bytes).
fn header(line: &[u8]) -> IResult<&[u8], (&[u8], &[u8])> {
    let (rest, name) = take_till1(|b| b == b':')(line)?;
    let (rest, _) = char(':')(rest)?;
    let (value, _) = opt(tag(" "))(rest)?;
    Ok((&[], (name, value)))
}

/// Parses a complete frame (the bytes up to and including its terminating empty line) with the
/// nom [`header`] parser: the path of legacy `Follows` frames and of a stream cut by EOF (an
/// ordinary frame is split by the framer as it scans, the same grammar, property-tested equal).
///
/// In a legacy `Response: Follows` frame, the leading `Response`/`Privilege`/`ActionID`/`Message`
/// headers are headers, and every other line up to `--END COMMAND--` becomes an `Output` header,
/// the same shape Asterisk 14+ sends. Returns `None` when no header could be read.
fn parse_slow(frame: Bytes, follows: bool, stats: &mut DecodeStats) -> Option<Message> {
    let ends: Vec<u32> = memchr::memchr_iter(b'\n', &frame)
        .map(|i| i as u32)
        .collect();
    let base = frame.as_ptr() as usize;
    let offs = |s: &[u8]| {
        let start = (s.as_ptr() as usize - base) as u32;
        (start, start + s.len() as u32)
    };
    let mut spans = Vec::with_capacity(ends.len());
    let mut in_body = false;
    let mut end_seen = false;
    let mut pos = 0;
    // A frame from `decode_eof` may end without a line end: its last line still counts.
    let tail = (frame.len() > ends.last().map_or(0, |&e| e as usize + 1)).then_some(frame.len());
    for end in ends.iter().map(|&e| e as usize).chain(tail) {
        let raw = &frame[pos..end];
        pos = end + 1;
        let line = trim_cr(raw);
        if follows {
            if end_seen {
                continue;
            }
            if !in_body {
                if let Ok((_, (n, v))) = header(line) {
                    let known = [&b"Response"[..], b"Privilege", b"ActionID", b"Message"]
                        .iter()
                        .any(|k| n.eq_ignore_ascii_case(k));
                    if known {
                        spans.push(Span {
                            name: offs(n),
                            value: offs(v),
                        });
                        continue;
                    }
                }
                in_body = true;
            }
            let (body, last) = match line.strip_suffix(END_COMMAND) {
                Some(b) => (b, true),
                None => (line, false),
            };
            end_seen = last;
            if !(last && body.is_empty()) {
                spans.push(Span {
                    name: OUTPUT_NAME,
                    value: offs(body),
                });
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        match header(line) {
            Ok((_, (n, v))) => spans.push(Span {
                name: offs(n),
                value: offs(v),
            }),
            Err(_) => stats.malformed_lines += 1,
        }
    }
    if spans.is_empty() {
        return None;
    }
    Some(Message::from_parts(frame, Table::from_spans(&spans)))
}

/// Span name marker for synthetic `Output` headers.
pub(crate) fn is_output_name(name: (u32, u32)) -> bool {
    name == OUTPUT_NAME
}

impl Encoder<&Message> for AmiCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: &Message, dst: &mut BytesMut) -> Result<(), Self::Error> {
        item.write_to(dst);
        Ok(())
    }
}

impl Encoder<Bytes> for AmiCodec {
    type Error = std::io::Error;

    /// Pre-encoded, validated bytes (see `ami::action`).
    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), Self::Error> {
        dst.extend_from_slice(&item);
        Ok(())
    }
}

/// Decodes a whole byte slice (a capture) in one go. Returns the messages and the decoder's counters.
pub fn decode_all(bytes: &[u8]) -> (Vec<Message>, DecodeStats) {
    let mut codec = AmiCodec::new();
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Ok(Some(m)) = codec.decode(&mut buf) {
        out.push(m);
    }
    while let Ok(Some(m)) = codec.decode_eof(&mut buf) {
        out.push(m);
    }
    (out, codec.stats())
}

/// Bytes asked of the reader at a time by [`ReadDecoder`].
pub const READ_CHUNK: usize = 256 * 1024;

/// Decodes a byte stream (a capture file, standard input) through a bounded buffer: memory stays
/// near [`READ_CHUNK`] plus the largest message, whatever the stream's size. The messages and
/// the counters are exactly those of [`decode_all`] over the same bytes.
///
/// The buffer is reused once the messages cut from it are dropped; a consumer that keeps
/// messages keeps their read buffers alive (they share it).
#[derive(Debug)]
pub struct ReadDecoder<R> {
    reader: R,
    codec: AmiCodec,
    buf: BytesMut,
    eof: bool,
}

impl<R: std::io::Read> ReadDecoder<R> {
    pub fn new(reader: R) -> ReadDecoder<R> {
        Self::with_codec(reader, AmiCodec::new())
    }

    pub fn with_codec(reader: R, codec: AmiCodec) -> ReadDecoder<R> {
        ReadDecoder {
            reader,
            codec,
            buf: BytesMut::with_capacity(READ_CHUNK),
            eof: false,
        }
    }

    /// The next message and the stream offset just past its last byte (its terminating empty
    /// line included); `None` at the end of the stream. Only read errors are errors
    /// (`Interrupted` is retried).
    pub fn next_message(&mut self) -> std::io::Result<Option<(Message, u64)>> {
        loop {
            if self.eof {
                let m = self.codec.decode_eof(&mut self.buf)?;
                return Ok(m.map(|m| (m, self.codec.stats().bytes)));
            }
            if let Some(m) = self.codec.decode(&mut self.buf)? {
                return Ok(Some((m, self.codec.stats().bytes)));
            }
            self.fill()?;
        }
    }

    /// The next message already in the buffer, without reading: `None` when [`Self::next_message`]
    /// would have to read (or the stream ended). A consumer flushes its output then, so that
    /// what it printed is out before it waits for input.
    pub fn next_buffered(&mut self) -> Option<(Message, u64)> {
        if self.eof {
            return None;
        }
        match self.codec.decode(&mut self.buf) {
            Ok(Some(m)) => Some((m, self.codec.stats().bytes)),
            _ => None,
        }
    }

    /// One read into the buffer's free end.
    fn fill(&mut self) -> std::io::Result<()> {
        self.buf.reserve(READ_CHUNK);
        let len = self.buf.len();
        // The spare room is zeroed once per read (a memset of one chunk): no unsafe code.
        self.buf.resize(len + READ_CHUNK, 0);
        let n = loop {
            match self.reader.read(&mut self.buf[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(len + n);
        self.eof = n == 0;
        Ok(())
    }

    /// What was decoded, skipped and counted so far.
    pub fn stats(&self) -> DecodeStats {
        self.codec.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ami::message::Kind;

    fn dec(input: &[u8]) -> (Vec<Message>, DecodeStats) {
        decode_all(input)
    }

    #[test]
    fn banner_then_messages() {
        let (m, s) = dec(b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: 1\r\n\r\nEvent: X\r\n\r\n");
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].kind(), Kind::Banner);
        assert_eq!(m[0].banner_version().unwrap(), "11.0.0");
        assert_eq!(m[1].kind(), Kind::Response);
        assert_eq!(m[1].action_id(), Some(&b"1"[..]));
        assert_eq!(m[2].event(), Some(&b"X"[..]));
        assert_eq!(s.problems(), 0);
    }

    #[test]
    fn bare_lf_and_crlf_lf_and_blank_lines() {
        let (m, s) = dec(b"Event: A\nK: v\n\n\r\n\r\nEvent: B\r\nK: w\r\n\nEvent: C\r\n\r\n");
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].get(b"K"), Some(&b"w"[..]));
        assert_eq!(s.problems(), 0);
    }

    #[test]
    fn empty_value_without_space() {
        let (m, _) = dec(b"Event: RTCP\r\nReportBlock:\r\nAccountCode: \r\n\r\n");
        assert_eq!(m[0].get(b"ReportBlock"), Some(&b""[..]));
        assert_eq!(m[0].get(b"AccountCode"), Some(&b""[..]));
    }

    #[test]
    fn line_without_colon_is_skipped_and_counted() {
        let (m, s) = dec(b"Event: A\r\ngarbage line\r\nK: v\r\n\r\n");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].len(), 2);
        assert_eq!(s.malformed_lines, 1);
    }

    #[test]
    fn legacy_follows_body_with_blank_lines() {
        let input = b"Response: Follows\r\nPrivilege: Command\r\nActionID: 7\r\nline one: with colon\r\n\r\nline three\r\n--END COMMAND--\r\n\r\nEvent: After\r\n\r\n";
        let (m, s) = dec(input);
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m[0].action_id(), Some(&b"7"[..]));
        let out: Vec<_> = m[0].get_all(b"Output").collect();
        assert_eq!(out, vec![&b"line one: with colon"[..], b"", b"line three"]);
        assert_eq!(m[1].event(), Some(&b"After"[..]));
        assert_eq!(s.problems(), 0);
    }

    #[test]
    fn oversized_message_is_skipped_and_stream_goes_on() {
        let mut input = b"Event: Small\r\n\r\nEvent: Big\r\n".to_vec();
        for i in 0..200 {
            input.extend_from_slice(
                format!("Variable: v{i}=xxxxxxxxxxxxxxxxxxxxxxxx\r\n").as_bytes(),
            );
        }
        input.extend_from_slice(b"\r\nEvent: Next\r\n\r\n");
        let mut codec = AmiCodec::with_max_message(256);
        let mut out = Vec::new();
        // Feed in small pieces so the Skip state is exercised.
        let mut buf = BytesMut::new();
        for chunk in input.chunks(7) {
            buf.extend_from_slice(chunk);
            while let Some(m) = codec.decode(&mut buf).unwrap() {
                out.push(m);
            }
            assert!(buf.len() < 300, "skipped bytes must not accumulate");
        }
        let names: Vec<_> = out.iter().map(|m| m.event().unwrap().to_vec()).collect();
        assert_eq!(names, vec![b"Small".to_vec(), b"Next".to_vec()]);
        assert_eq!(codec.stats().oversized, 1);
    }

    #[test]
    fn banner_in_mid_stream_starts_a_new_session() {
        let input = b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\n\r\nEvent: A\r\n\r\n\
Asterisk Call Manager/12.0.0\r\nResponse: Success\r\n\r\n";
        let (m, s) = dec(input);
        let kinds: Vec<_> = m.iter().map(|m| m.kind()).collect();
        assert_eq!(
            kinds,
            vec![
                Kind::Banner,
                Kind::Response,
                Kind::Event,
                Kind::Banner,
                Kind::Response
            ]
        );
        assert_eq!(m[3].banner_version().unwrap(), "12.0.0");
        assert_eq!(s.problems(), 0);
        for chunk in 1..input.len() {
            let mut codec = AmiCodec::new();
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for c in input.chunks(chunk) {
                buf.extend_from_slice(c);
                while let Some(x) = codec.decode(&mut buf).unwrap() {
                    out.push(x);
                }
            }
            assert_eq!(out, m, "chunk {chunk}");
        }
    }

    proptest::proptest! {
        /// The framer's split (first colon, optional space) and the nom grammar agree on any line.
        #[test]
        fn fast_split_equals_nom_header(line in proptest::collection::vec(
            proptest::sample::select(vec![b'a', b':', b' ', b'\r', b'x', 0xff]), 0..80)) {
            let mut frame = b"Event: X\r\n".to_vec();
            frame.extend_from_slice(&line);
            frame.extend_from_slice(b"\n\r\n");
            let (fast, fast_stats) = dec(&frame);
            let mut stats = DecodeStats::default();
            let slow = parse_slow(Bytes::from(frame.clone()), false, &mut stats);
            let render = |m: &Message| m.headers().map(|(n, v)| (n.to_vec(), v.to_vec())).collect::<Vec<_>>();
            proptest::prop_assert_eq!(fast.iter().map(render).collect::<Vec<_>>(), slow.iter().map(render).collect::<Vec<_>>());
            proptest::prop_assert_eq!(fast_stats.malformed_lines, stats.malformed_lines);
        }
    }

    /// Pieces a stream is made of: ordinary headers, odd lines, blank lines, banners, `Follows`
    /// bodies, lines long enough to cross 64-byte blocks, colons anywhere.
    fn piece() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let fixed = proptest::sample::select(vec![
            &b"Event: Newchannel\r\n"[..],
            b"Uniqueid: 1700000000.12\r\n",
            b"K:v\n",
            b"Key:\r\n",
            b"\r\n",
            b"\n",
            b"\r\n\r\n",
            b"garbage line\r\n",
            b":no name\r\n",
            b"\rOdd: v\r\n",
            b"Response: Follows\r\n",
            b"--END COMMAND--\r\n",
            b"Asterisk Call Manager/11.0.0\r\n",
            b"Output: a: b\r\n",
        ]);
        let long = (1usize..200, 0usize..200, any::<bool>()).prop_map(|(n, colon, cr)| {
            let mut line = vec![b'a'; n];
            if colon < n {
                line[colon] = b':';
            }
            line.extend_from_slice(if cr { b"\r\n" } else { b"\n" });
            line
        });
        prop_oneof![fixed.prop_map(|p| p.to_vec()), long]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]
        /// Every masker this CPU has frames and splits exactly as the byte-by-byte one, whole
        /// and in pieces, with a small and the default size cap.
        #[test]
        fn every_masker_decodes_identically(
            pieces in proptest::collection::vec(piece(), 0..40),
            chunk in 1usize..130,
            small_cap in proptest::prelude::any::<bool>(),
        ) {
            let input = pieces.concat();
            let max = if small_cap { 128 } else { DEFAULT_MAX_MESSAGE };
            let run = |simd: Simd, chunk: usize| in_pieces(AmiCodec::with_simd(max, simd), &input, chunk);
            let reference = run(Simd::Scalar, input.len());
            proptest::prop_assert_eq!(reference.1.bytes, input.len() as u64);
            for simd in Simd::available() {
                proptest::prop_assert_eq!(&run(simd, input.len()), &reference, "{:?} whole", simd);
                proptest::prop_assert_eq!(&run(simd, chunk), &reference, "{:?} chunk {}", simd, chunk);
            }
        }
    }

    #[test]
    fn cr_at_frame_start_is_content_not_a_blank_line() {
        // Regression (fuzz): the blank-line skipper ate the `\r` of a name beginning with `\r`,
        // so re-encoding a decoded message changed it.
        let input = b"Event: A\r\n\r\n\rOdd: v\r\n\r\n";
        let (m, _) = dec(input);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].headers().next(), Some((&b"\rOdd"[..], &b"v"[..])));
        let (again, _) = dec(&m[1].to_bytes());
        assert_eq!(again, vec![m[1].clone()]);
    }

    /// Feeds `input` to `codec` `chunk` bytes at a time, then ends the stream.
    fn in_pieces(mut codec: AmiCodec, input: &[u8], chunk: usize) -> (Vec<Message>, DecodeStats) {
        let mut b = BytesMut::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            b.extend_from_slice(piece);
            while let Some(m) = codec.decode(&mut b).unwrap() {
                out.push(m);
            }
        }
        while let Some(m) = codec.decode_eof(&mut b).unwrap() {
            out.push(m);
        }
        (out, codec.stats())
    }

    /// Decodes `input` whole and in every chunk size with cap `max`; all must agree.
    fn same_every_chunk(input: &[u8], max: usize) -> (Vec<Message>, DecodeStats) {
        let run = |chunk: usize| in_pieces(AmiCodec::with_max_message(max), input, chunk);
        let whole = run(input.len().max(1));
        for chunk in 1..input.len() {
            assert_eq!(run(chunk), whole, "chunk {chunk}");
        }
        whole
    }

    #[test]
    fn oversized_banner_and_follows_count_the_same_whole_or_in_pieces() {
        // Regression (fuzz): an oversized banner line, or an oversized Follows frame with blank
        // lines in its body, was cut at a different place when it arrived in pieces.
        let long = "x".repeat(80);
        let input = format!(
            "Asterisk Call Manager/{long}\r\nEvent: A\r\n\r\n\
             Response: Follows\r\n{long}\r\n\r\nmore\r\n{long}--END COMMAND--\r\n\r\nEvent: B\r\n\r\n\
             Event: C\r\n\r\nAsterisk Call Manager/{long}\r\nEvent: D\r\n\r\n"
        );
        let (m, s) = same_every_chunk(input.as_bytes(), 64);
        let names: Vec<_> = m
            .iter()
            .map(|m| m.event().unwrap_or(b"?").to_vec())
            .collect();
        assert_eq!(names, [&b"A"[..], b"B", b"C", b"D"]);
        assert_eq!(s.oversized, 3);
        assert_eq!(s.bytes, input.len() as u64);
    }

    /// Reads `input` at most `max` bytes per `read` call.
    struct Trickle<'a> {
        input: &'a [u8],
        max: usize,
    }

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.input.len().min(self.max).min(out.len());
            out[..n].copy_from_slice(&self.input[..n]);
            self.input = &self.input[n..];
            Ok(n)
        }
    }

    #[test]
    fn read_decoder_equals_decode_all_and_gives_end_offsets() {
        let mut input =
            b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\n\r\n\r\nEvent: A\nK: v\n\n"
                .to_vec();
        for i in 0..3000 {
            input.extend_from_slice(format!("Event: E{i}\r\nUniqueid: 1.{i}\r\n\r\n").as_bytes());
        }
        input.extend_from_slice(b"Event: Cut\r\nK: v\r\nHal");
        let (whole, stats) = decode_all(&input);
        for max in [1, 7, 4096, usize::MAX] {
            let mut d = ReadDecoder::new(Trickle { input: &input, max });
            let mut got = Vec::new();
            let mut last = 0;
            loop {
                let next = match d.next_buffered() {
                    Some(x) => Some(x),
                    None => d.next_message().unwrap(),
                };
                let Some((m, end)) = next else { break };
                assert!(end > last && end <= input.len() as u64, "{end}");
                let raw = m.raw();
                if m.event().is_some_and(|e| e != b"Cut") {
                    // A frame ends exactly at its offset.
                    assert_eq!(&input[end as usize - raw.len()..end as usize], &raw[..]);
                }
                last = end;
                got.push(m);
            }
            assert_eq!(got, whole, "max {max}");
            assert_eq!(d.stats(), stats, "max {max}");
            assert_eq!(last, input.len() as u64);
        }
    }

    #[test]
    fn truncated_tail_is_counted() {
        let (m, s) = dec(b"Event: A\r\n\r\nEvent: B\r\nK: v\r\nHal");
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].len(), 2);
        assert_eq!(s.truncated, 1);
    }
}
