//! A large, realistic AMI stream built from the fixtures, for the decode bench and the blaster.
//!
//! Every capture's events are repeated until the stream reaches the wanted size. Each repetition
//! rewrites the id headers (`Uniqueid`, `Linkedid`, `DestUniqueid`, ...) with a `-r<n>` suffix, so
//! a consumer that tracks calls sees distinct calls, not the same ones again.

use std::path::Path;

use perezvon::ami::{codec::decode_all, Kind, Message};

pub const BANNER: &[u8] = b"Asterisk Call Manager/11.0.0\r\n";

/// The events of every capture under `dir`, in file order.
pub fn fixture_events(dir: &Path) -> Vec<Message> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ami"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        let (msgs, _) = decode_all(&bytes);
        out.extend(msgs.into_iter().filter(|m| m.kind() == Kind::Event));
    }
    out
}

fn is_id(name: &[u8]) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(b"uniqueid") || lower.ends_with(b"linkedid")
}

/// Banner + events (no login reply) of at least `min_bytes`. Returns the bytes and the number of
/// events in them.
pub fn build(dir: &Path, min_bytes: usize) -> (Vec<u8>, u64) {
    let events = fixture_events(dir);
    assert!(!events.is_empty(), "no events under {}", dir.display());
    let mut out = Vec::with_capacity(min_bytes + 1024 * 1024);
    out.extend_from_slice(BANNER);
    let mut n = 0u64;
    let mut rep = 0u64;
    while out.len() < min_bytes {
        let suffix = format!("-r{rep}");
        for m in &events {
            for (name, value) in m.headers() {
                out.extend_from_slice(name);
                out.extend_from_slice(b": ");
                out.extend_from_slice(value);
                if is_id(name) && !value.is_empty() {
                    out.extend_from_slice(suffix.as_bytes());
                }
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
            n += 1;
        }
        rep += 1;
    }
    (out, n)
}
