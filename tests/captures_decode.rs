//! Every capture decodes cleanly, whatever way the bytes are split across reads.

use bytes::BytesMut;
use perezvon::ami::{codec::decode_all, AmiCodec, Message};
use tokio_util::codec::Decoder;

fn captures() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir("fixtures/asterisk-22")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ami"))
        .collect();
    v.sort();
    v
}

fn split_decode(bytes: &[u8], chunk: usize) -> Vec<Message> {
    let mut codec = AmiCodec::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for c in bytes.chunks(chunk) {
        buf.extend_from_slice(c);
        while let Some(m) = codec.decode(&mut buf).unwrap() {
            out.push(m);
        }
    }
    while let Some(m) = codec.decode_eof(&mut buf).unwrap() {
        out.push(m);
    }
    out
}

#[test]
fn every_capture_decodes_to_one_message_per_blank_line_terminator() {
    for p in captures() {
        let bytes = std::fs::read(&p).unwrap();
        let (msgs, stats) = decode_all(&bytes);
        // Expected: the banner plus one message per "\r\n\r\n" (captures are clean CRLF streams).
        let terminators = memchr::memmem::find_iter(&bytes, b"\r\n\r\n").count();
        assert_eq!(msgs.len(), terminators + 1, "{}", p.display());
        assert_eq!(stats.problems(), 0, "{}: {stats:?}", p.display());
        assert_eq!(stats.bytes, bytes.len() as u64, "{}", p.display());
        let events = msgs.iter().filter(|m| m.event().is_some()).count();
        let want = bytes.windows(7).filter(|w| *w == b"\nEvent:").count();
        assert_eq!(events, want, "{}", p.display());
    }
}

#[test]
fn every_chunk_size_from_1_to_64_gives_the_same_messages() {
    for p in captures() {
        let bytes = std::fs::read(&p).unwrap();
        let (whole, _) = decode_all(&bytes);
        for chunk in 1..=64 {
            assert!(
                split_decode(&bytes, chunk) == whole,
                "{} chunk {chunk}",
                p.display()
            );
        }
    }
}

#[test]
fn a_small_capture_split_in_two_at_every_byte() {
    let bytes = std::fs::read("fixtures/asterisk-22/ivr_abandon.ami").unwrap();
    let (whole, _) = decode_all(&bytes);
    for at in 0..=bytes.len() {
        let mut codec = AmiCodec::new();
        let mut buf = BytesMut::from(&bytes[..at]);
        let mut out = Vec::new();
        while let Some(m) = codec.decode(&mut buf).unwrap() {
            out.push(m);
        }
        buf.extend_from_slice(&bytes[at..]);
        while let Some(m) = codec.decode(&mut buf).unwrap() {
            out.push(m);
        }
        while let Some(m) = codec.decode_eof(&mut buf).unwrap() {
            out.push(m);
        }
        assert!(out == whole, "cut at {at}");
    }
}
